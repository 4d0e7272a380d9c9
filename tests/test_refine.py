"""Label propagation and refinement suggestions on a hand-made item–word graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qamrec.serve.refine import WordGraph, propagate, suggest

# items 0..4, words: 0 heist, 1 comedy, 2 horror, 3 1990s
PAIRS = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [1, 3], [2, 2], [2, 3], [3, 2], [4, 1], [4, 0], [0, 0]])


@pytest.fixture()
def g() -> WordGraph:
    return WordGraph(5, ["heist", "comedy", "horror", "1990s"], ["tag", "genre", "genre", "decade"], PAIRS)


def dense_reference(g: WordGraph, yi: np.ndarray, yw: np.ndarray, d: float, steps: int) -> np.ndarray:
    a = np.zeros((g.n_items, g.n_words))
    for i, w in np.unique(PAIRS, axis=0):
        a[i, w] = 1
    big = np.block([[np.zeros((5, 5)), a], [a.T, np.zeros((4, 4))]])
    deg = big.sum(1)
    norm = big / np.sqrt(np.outer(np.maximum(deg, 1), np.maximum(deg, 1)))
    y = np.concatenate([yi, yw])
    r = y.copy()
    for _ in range(steps):
        r = (1 - d) * y + d * norm @ r
    return r


def test_propagation_matches_dense_reference(g):
    ri, rw = propagate(g, {0: 1.0}, {2: -1.0}, damping=0.8, steps=7)
    ref = dense_reference(g, np.array([1.0, 0, 0, 0, 0]), np.array([0, 0, -1.0, 0]), 0.8, 7)
    np.testing.assert_allclose(torch.cat([ri, rw]).numpy(), ref, atol=1e-6)


def test_propagation_moves_scores_the_right_way(g):
    ri, _ = propagate(g, {0: 1.0}, {}, damping=0.85, steps=10)
    assert ri[1] > 0 and ri[4] > 0  # share heist/comedy with the liked item
    assert ri[1] > ri[2] and ri[4] > ri[3]
    ri, _ = propagate(g, {}, {2: -1.0})
    assert ri[3] < 0 and ri[2] < 0  # rejecting horror pushes horror movies down ...
    assert ri[2] < ri[0] and ri[3] < ri[4] and abs(ri[0]) < abs(ri[2]) / 5  # ... and others barely
    ri, rw = propagate(g, {}, {})
    assert not ri.any() and not rw.any()
    with pytest.raises(ValueError):
        propagate(g, {0: 1.0}, {}, damping=1.0)


def test_items_with_and_words_of(g):
    assert g.items_with([0, 1]).tolist() == [0, 1, 4]
    assert g.items_with([2, 3]).tolist() == [2]
    assert sorted(g.words_of(1).tolist()) == [0, 1, 3]
    assert g.df.tolist() == [3, 3, 2, 2]


def test_suggestions_describe_the_best_items(g):
    scores = np.array([1.0, 0.9, -3.0, -3.0, 0.6])
    out = suggest(g, scores, n=3, top=4, min_items=1)
    assert out and len(out) <= 3
    assert len({frozenset(s.words) for s in out}) == len(out)  # no repeats
    for s in out:
        assert len(set(g.kinds[w] for w in s.words)) == len(s.words)  # one word per kind
        assert len(g.items_with(list(s.words))) >= 1
        assert s.label == " · ".join(s.labels)
        assert any(set(s.words) <= set(g.words_of(i).tolist()) for i in (0, 1, 4, 2))  # describes a top item
    # words every top item has split nothing and are not suggested
    top3 = suggest(g, scores, n=3, top=3, min_items=1)
    assert [s.labels for s in top3] == [("1990s",)]  # the one word that splits the top three
    excluded = suggest(g, scores, n=3, top=5, min_items=1, exclude_words={0, 1})
    assert all(0 not in s.words and 1 not in s.words for s in excluded)
