"""Multi-round refinement in the manner of MAGUS (Jin et al., "Why Not Together? A Multiple-Round
Recommender System for Queries and Items", 2024).

A bipartite graph joins the candidate movies to their *words* (genres, tags, decades, and directors, actors,
writers and subjects from the knowledge graph). Each round the system shows movies and suggests refinements (word
combinations); the person's feedback on either becomes labels :math:`\\mathbf{y}` (+1 liked / accepted,
a negative label for disliked / rejected, its size set by the engine) that spread over the graph by
personalized-PageRank label propagation (Zhou et al.
2004):

.. math::
    \\mathbf{r}^{(t+1)} = (1 - d)\\,\\mathbf{y} + d\\,\\hat{\\mathbf{A}}\\,\\mathbf{r}^{(t)}, \\qquad
    \\hat{\\mathbf{A}} = \\mathbf{D}^{-1/2}\\mathbf{A}\\mathbf{D}^{-1/2},

for ``steps`` iterations with damping :math:`d`. The session's scores are the model's standardized scores plus
``weight`` times :math:`\\mathbf{r}` on the movies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["WordGraph", "propagate", "suggest", "Refinement"]


@dataclass(frozen=True)
class Refinement:
    """A suggested refinement: word indices into a :class:`WordGraph` and their labels."""

    words: tuple[int, ...]
    labels: tuple[str, ...]

    @property
    def label(self) -> str:
        return " · ".join(self.labels)


class WordGraph:
    """Items (rows) joined to words (columns) by a binary incidence ``pairs`` [E, 2] of (item, word).

    Args:
        n_items: number of items (movies).
        labels: one label per word; ``kinds``: its kind (genre, tag, decade, or a KG relation).
        pairs: (item, word) index pairs; duplicates are merged.
    """

    def __init__(self, n_items: int, labels: Sequence[str], kinds: Sequence[str], pairs: np.ndarray) -> None:
        pairs = np.unique(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=0)
        self.n_items, self.n_words = n_items, len(labels)
        self.labels, self.kinds = list(labels), list(kinds)
        self.item, self.word = torch.from_numpy(pairs[:, 0].copy()), torch.from_numpy(pairs[:, 1].copy())
        self.df = torch.bincount(self.word, minlength=self.n_words).float()  # movies per word
        self.idf = torch.log((n_items + 1) / (self.df + 1))
        self.idf_np = self.idf.numpy()
        deg_i = torch.bincount(self.item, minlength=n_items).float()
        self.norm = (deg_i[self.item].clamp(min=1) * self.df[self.word].clamp(min=1)).rsqrt()
        order = np.argsort(pairs[:, 0], kind="stable")
        self._indptr = np.searchsorted(pairs[order, 0], np.arange(n_items + 1))
        self._words_sorted = pairs[order, 1]
        order = np.argsort(pairs[:, 1], kind="stable")
        self._windptr = np.searchsorted(pairs[order, 1], np.arange(self.n_words + 1))
        self._items_sorted = pairs[order, 0]
        self.index = {lab.lower(): w for w, lab in enumerate(self.labels)}

    def words_of(self, item: int) -> np.ndarray:
        """The words of one item."""
        return self._words_sorted[self._indptr[item]:self._indptr[item + 1]]

    def items_with(self, words: Sequence[int]) -> np.ndarray:
        """Items that have every one of ``words``."""
        if not len(words):
            return np.arange(self.n_items)
        out = self._items_sorted[self._windptr[words[0]]:self._windptr[words[0] + 1]]
        for w in words[1:]:
            out = np.intersect1d(out, self._items_sorted[self._windptr[w]:self._windptr[w + 1]])
        return out


def propagate(graph: WordGraph, item_labels: dict[int, float], word_labels: dict[int, float],
              damping: float = 0.85, steps: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Personalized-PageRank label propagation of the seeds over the item–word graph.

    Returns (item scores [n_items], word scores [n_words]); all zeros when there is no seed.
    """
    if not 0.0 <= damping < 1.0:
        raise ValueError(f"damping must be in [0, 1), not {damping}")
    yi = torch.zeros(graph.n_items)
    yw = torch.zeros(graph.n_words)
    for i, v in item_labels.items():
        yi[i] += v
    for w, v in word_labels.items():
        yw[w] += v
    ri, rw = yi.clone(), yw.clone()
    for _ in range(steps):
        to_w = torch.zeros(graph.n_words).index_add_(0, graph.word, graph.norm * ri[graph.item])
        to_i = torch.zeros(graph.n_items).index_add_(0, graph.item, graph.norm * rw[graph.word])
        ri = (1 - damping) * yi + damping * to_i
        rw = (1 - damping) * yw + damping * to_w
    return ri, rw


def suggest(graph: WordGraph, scores: np.ndarray, n: int = 3, top: int = 50, max_words: int = 3,
            exclude_words: set[int] = frozenset(), min_items: int = 2) -> list[Refinement]:
    """Suggest up to ``n`` refinements (combinations of 1..``max_words`` words) that describe the best-scored
    items while still splitting them: word weight = mass among the top items' softmax weights x idf.

    Each suggestion starts from a different seed word and greedily adds words of other kinds that keep at
    least ``min_items`` of the top items; suggestions never repeat a word set.
    """
    if not 1 <= top <= 64:
        raise ValueError(f"top must be in 1..64 (one bit per item), not {top}")
    s = torch.as_tensor(np.asarray(scores, dtype=np.float32))
    k = min(top, graph.n_items)
    val, idx = s.topk(k)
    w = torch.softmax(val - val.max(), dim=0).numpy()
    # the words of the top items, and per word a bit mask of the top items that have it (bit b: the b-th best);
    # only words of the top items can be suggested, so nothing below runs over the whole vocabulary
    tops = [graph.words_of(i) for i in idx.tolist()]
    words = np.concatenate(tops) if tops else np.zeros(0, np.int64)
    if not words.size:
        return []
    pos = np.repeat(np.arange(k), [len(t) for t in tops])
    order_w = np.argsort(words, kind="stable")
    uniq, first = np.unique(words[order_w], return_index=True)
    mass = np.add.reduceat(w[pos[order_w]].astype(np.float64), first).astype(np.float32)
    bits = np.bitwise_or.reduceat(np.left_shift(np.uint64(1), pos[order_w].astype(np.uint64)), first)
    among_top = dict(zip(uniq.tolist(), bits.tolist()))
    gain = mass * graph.idf_np[uniq] * (mass < 0.95)  # a word every top movie has splits nothing
    if exclude_words:
        gain[np.isin(uniq, np.fromiter(exclude_words, np.int64, len(exclude_words)))] = 0
    best = np.argsort(-gain, kind="stable")
    order = uniq[best[gain[best] > 0]][:256].tolist()
    out: list[Refinement] = []
    seen: set[frozenset[int]] = set()
    for seed in order:
        if len(out) == n:
            break
        chosen = [seed]
        kinds = {graph.kinds[seed]}
        members = among_top[seed]
        for cand in order[:64]:
            if len(chosen) == max_words:
                break
            if cand in chosen or graph.kinds[cand] in kinds:
                continue
            both = members & among_top[cand]
            if both.bit_count() >= min_items and both != members:
                chosen.append(cand)
                kinds.add(graph.kinds[cand])
                members = both
        key = frozenset(chosen)
        if key in seen or members.bit_count() < min(min_items, k):
            continue
        seen.add(key)
        out.append(Refinement(tuple(chosen), tuple(graph.labels[x] for x in chosen)))
    return out
