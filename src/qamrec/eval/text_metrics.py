"""Automatic metrics of generated responses, computed as the CRS papers' evaluation code computes them.

UniCRS's ``ConvEvaluator`` (which KGSF, DCRS and MSCRS report with) splits responses on white space and reports,
over ``n`` responses:

* **BLEU-k**: the mean over responses of NLTK's ``sentence_bleu(reference, response, weights)`` with the weight
  1 on k-grams alone: the brevity penalty times the clipped k-gram precision (0 when no unigram matches);
* **Distinct-k**: the number of *distinct* k-grams over all responses divided by ``n`` (a count per response,
  not a ratio in [0, 1]: MSCRS's Table 3 reports 0.784 on ReDial and 4.197 on INSPIRED for Distinct-2);
* **item ratio**: the share of responses that contain a movie slot (``<movie>``).

ROUGE-2 and ROUGE-L (MSCRS) are the mean F1 of bigram overlap and of the longest common subsequence.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["tokens", "ngrams", "bleu", "rouge_n", "rouge_l", "distinct", "item_ratio", "TextMetrics"]


def tokens(text: str) -> list[str]:
    """White-space tokens, as the papers' evaluation code splits responses."""
    return text.split()


def ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def bleu(response: str, reference: str, n: int) -> float:
    """NLTK's ``sentence_bleu([reference], response, weights)`` with weight 1 on ``n``-grams (no smoothing):
    brevity penalty x clipped n-gram precision; 0 when no unigram matches."""
    hyp, ref = tokens(response), tokens(reference)
    if not hyp:
        return 0.0
    ref1 = Counter(ngrams(ref, 1))
    if not sum(min(c, ref1[g]) for g, c in Counter(ngrams(hyp, 1)).items()):
        return 0.0
    h, r = Counter(ngrams(hyp, n)), Counter(ngrams(ref, n))
    p = sum(min(c, r[g]) for g, c in h.items()) / max(1, sum(h.values()))
    c_len, r_len = len(hyp), len(ref)
    bp = 1.0 if c_len > r_len else math.exp(1 - r_len / c_len)
    return bp * p if p > 0 else 0.0


def _f1(overlap: int, n_hyp: int, n_ref: int) -> float:
    if not overlap or not n_hyp or not n_ref:
        return 0.0
    p, r = overlap / n_hyp, overlap / n_ref
    return 2 * p * r / (p + r)


def rouge_n(response: str, reference: str, n: int = 2) -> float:
    """ROUGE-N F1: clipped n-gram overlap against the n-grams of each side."""
    h, r = Counter(ngrams(tokens(response), n)), Counter(ngrams(tokens(reference), n))
    return _f1(sum((h & r).values()), sum(h.values()), sum(r.values()))


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(response: str, reference: str) -> float:
    """ROUGE-L F1: the longest common subsequence of the tokens against each side's length."""
    h, r = tokens(response), tokens(reference)
    return _f1(_lcs(h, r), len(h), len(r))


def distinct(responses: Sequence[str], n: int) -> float:
    """Distinct n-grams over all ``responses`` divided by their number (UniCRS's ``dist@n``)."""
    if not responses:
        return 0.0
    return len({g for s in responses for g in ngrams(tokens(s), n)}) / len(responses)


def item_ratio(responses: Sequence[str], slot: str = "<movie>") -> float:
    """The share of ``responses`` that contain a movie slot."""
    return sum(slot in s for s in responses) / len(responses) if responses else 0.0


@dataclass
class TextMetrics:
    """Accumulates responses and their references; :meth:`report` gives every metric."""

    responses: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)

    def add(self, response: str, reference: str) -> None:
        self.responses.append(response)
        self.references.append(reference)

    def report(self) -> dict[str, float]:
        n = len(self.responses)
        pairs = list(zip(self.responses, self.references))

        def mean(f) -> float:  # noqa: ANN001
            return sum(f(h, r) for h, r in pairs) / n if n else 0.0

        return {"bleu@2": mean(lambda h, r: bleu(h, r, 2)), "bleu@3": mean(lambda h, r: bleu(h, r, 3)),
                "rouge@2": mean(rouge_n), "rouge@L": mean(rouge_l),
                **{f"dist@{k}": distinct(self.responses, k) for k in (2, 3, 4)},
                "item_ratio": item_ratio(self.responses), "n": float(n)}
