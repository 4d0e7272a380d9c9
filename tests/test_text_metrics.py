"""The conversation metrics on tiny examples computed by hand (UniCRS's / NLTK's definitions)."""

from __future__ import annotations

import math

import pytest

from qamrec.eval.text_metrics import TextMetrics, bleu, distinct, item_ratio, rouge_l, rouge_n


def test_bleu_is_the_clipped_ngram_precision_times_the_brevity_penalty() -> None:
    # 4 tokens against 4: no penalty; bigrams "the cat" "cat sat" "sat down" vs ref "the cat" "cat sat" "sat up"
    assert bleu("the cat sat down", "the cat sat up", 2) == pytest.approx(2 / 3)
    assert bleu("the cat sat down", "the cat sat up", 3) == pytest.approx(1 / 2)
    # clipping: "the the the" has one "the the" match at most in "the the cat"
    assert bleu("the the the", "the the cat", 2) == pytest.approx(1 / 2)
    # brevity: 2 tokens against 4 -> exp(1 - 4/2)
    assert bleu("the cat", "the cat sat up", 2) == pytest.approx(math.exp(-1))
    # no unigram in common, or too short for a bigram
    assert bleu("dog", "the cat", 2) == 0.0
    assert bleu("the", "the cat", 2) == 0.0
    assert bleu("", "the cat", 2) == 0.0


def test_rouge() -> None:
    # bigrams: hyp {a b, b c, c d}, ref {a b, b c, c e}: overlap 2 -> P = R = 2/3
    assert rouge_n("a b c d", "a b c e", 2) == pytest.approx(2 / 3)
    # LCS of "a b c d" and "a c d e f" is "a c d" (3): P 3/4, R 3/5 -> F 2PR/(P+R)
    p, r = 3 / 4, 3 / 5
    assert rouge_l("a b c d", "a c d e f") == pytest.approx(2 * p * r / (p + r))
    assert rouge_l("x", "a b") == 0.0


def test_distinct_counts_distinct_ngrams_per_response() -> None:
    # bigrams: (a b) (b c) | (a b) (b d) -> 3 distinct over 2 responses
    assert distinct(["a b c", "a b d"], 2) == pytest.approx(1.5)
    assert distinct(["a b c", "a b d"], 3) == pytest.approx(1.0)
    assert distinct([], 2) == 0.0


def test_item_ratio_and_report() -> None:
    assert item_ratio(["have you seen <movie> ?", "what do you like?"]) == 0.5
    m = TextMetrics()
    m.add("have you seen <movie> ?", "have you seen <movie> ?")
    m.add("hi", "hello there")
    rep = m.report()
    assert rep["bleu@2"] == pytest.approx(0.5) and rep["item_ratio"] == 0.5 and rep["n"] == 2
    assert rep["rouge@L"] == pytest.approx(0.5)
