"""Top-k ranking metrics with one gold item per example, as in UniCRS ``src/evaluate_rec.py``.

Each metric takes the 1-based rank :math:`r` of the gold item in the model's ranking of the candidate
items (``0`` or ``inf`` when it is not ranked at all, e.g. not a candidate) and averages a per-example score
over every example seen:

.. math::
    \\mathrm{Recall@}k = \\mathbb{1}[r \\le k], \\quad
    \\mathrm{NDCG@}k = \\frac{\\mathbb{1}[r \\le k]}{\\log_2(r + 1)}, \\quad
    \\mathrm{MRR@}k = \\frac{\\mathbb{1}[r \\le k]}{r}.

With one relevant item the ideal DCG is 1, so NDCG needs no normalisation, and the examples whose gold item
is missed still count in the denominator (UniCRS divides by the number of examples).

The request metrics (:class:`ConstraintPrecision`, :class:`NegationViolations`, :class:`SatisfyingNDCG`) score a
top-k list by flags per position instead: whether each movie satisfies every fact of a request, or breaks one of
its negations (``qamrec benchmark requests``). A list shorter than k counts its empty places as neither.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["RankMetric", "Recall", "NDCG", "MRR", "Precision", "MAP", "ranks_of", "as_ranks", "ListMetric",
           "ConstraintPrecision", "NegationViolations", "SatisfyingNDCG"]

_CHUNK = 512


def as_ranks(ranks: np.ndarray | torch.Tensor) -> np.ndarray:
    """1-based ranks as a float64 vector with ``inf`` for "not ranked" (input ``0`` or ``inf``).

    Raises:
        ValueError: a rank is negative, NaN or not an integer.
    """
    if isinstance(ranks, torch.Tensor):
        ranks = ranks.detach().cpu().numpy()
    r = np.asarray(ranks, dtype=np.float64).reshape(-1)
    if np.isnan(r).any() or (r < 0).any():
        raise ValueError("ranks must be >= 1 (or 0 / inf for 'not in the list'), got NaN or a negative value")
    finite = np.isfinite(r)
    if (r[finite] != np.floor(r[finite])).any():
        raise ValueError("ranks must be integers")
    return np.where(r == 0, np.inf, r)


class RankMetric:
    """Mean of a per-example score of the gold item's rank; ``update`` accumulates, ``compute`` averages."""

    name: str = "metric"

    def __init__(self) -> None:
        self._sum = 0.0
        self._count = 0

    def score(self, ranks: np.ndarray) -> np.ndarray:
        """Per-example score of ``ranks`` (float64, ``inf`` = not ranked)."""
        raise NotImplementedError

    def update(self, ranks: np.ndarray | torch.Tensor) -> None:
        """Add a batch of 1-based gold ranks (``0`` or ``inf``: not in the list)."""
        r = as_ranks(ranks)
        self._sum += float(self.score(r).sum())
        self._count += r.size

    def compute(self) -> float:
        """The mean over every example seen (``nan`` if none)."""
        return self._sum / self._count if self._count else math.nan

    def reset(self) -> None:
        self._sum, self._count = 0.0, 0

    @property
    def count(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


class _AtK(RankMetric):
    prefix = ""

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        super().__init__()
        self.k = k
        self.name = f"{self.prefix}@{k}"


class Recall(_AtK):
    """Recall@k (hit rate) with one gold item: :math:`\\mathbb{1}[r \\le k]` (UniCRS ``compute_recall``)."""

    prefix = "recall"

    def score(self, ranks: np.ndarray) -> np.ndarray:
        return (ranks <= self.k).astype(np.float64)


class NDCG(_AtK):
    """NDCG@k with one gold item: :math:`1/\\log_2(r+1)` if :math:`r \\le k`, else 0 (UniCRS ``compute_ndcg``)."""

    prefix = "ndcg"

    def score(self, ranks: np.ndarray) -> np.ndarray:
        hit = ranks <= self.k
        return np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 1.0) + 1.0), 0.0)


class MRR(_AtK):
    """MRR@k: :math:`1/r` if :math:`r \\le k`, else 0 (UniCRS ``compute_mrr``; ranx ``mrr@k``)."""

    prefix = "mrr"

    def score(self, ranks: np.ndarray) -> np.ndarray:
        return np.where(ranks <= self.k, 1.0 / ranks, 0.0)


class Precision(_AtK):
    """Precision@k with one gold item per example: :math:`\\mathbb{1}[r \\le k] / k` = Recall@k / k."""

    prefix = "precision"

    def score(self, ranks: np.ndarray) -> np.ndarray:
        return (ranks <= self.k).astype(np.float64) / self.k


class MAP(RankMetric):
    """Mean average precision with one relevant item per example.

    The average precision of a ranking with a single relevant item at rank :math:`r` is
    :math:`\\mathrm{P@}r = 1/r`, so MAP is MRR over the *full* ranking (no cut-off); an unranked gold item
    scores 0.
    """

    name = "map"

    def score(self, ranks: np.ndarray) -> np.ndarray:
        return 1.0 / ranks  # 1 / inf = 0


def ranks_of(scores: np.ndarray, gold_index: np.ndarray) -> np.ndarray:
    """1-based rank of each row's gold column in a descending ranking of that row's scores.

    Ties are broken by column index, as a *stable* descending sort would
    (``np.argsort(-s, kind="stable")``, ``torch.sort(s, descending=True, stable=True)``):

    .. math::
        r_i = |\\{j : s_{ij} > s_{ig}\\}| + |\\{j < g : s_{ij} = s_{ig}\\}| + 1, \\quad g = \\text{gold\\_index}_i.

    Args:
        scores: ``[n, n_items]`` scores; larger is better; ``-inf`` allowed, NaN is not.
        gold_index: ``[n]`` column of each row's gold item; a negative index means the gold item is not a
            candidate, and its rank is ``0`` ("not in the list").

    Returns:
        ``[n]`` int64 ranks.
    """
    scores = np.asarray(scores)
    gold = np.asarray(gold_index, dtype=np.int64).reshape(-1)
    if scores.ndim != 2 or scores.shape[0] != gold.shape[0]:
        raise ValueError(f"scores must be [n, n_items] and gold_index [n], got {scores.shape} and {gold.shape}")
    n, m = scores.shape
    if (gold >= m).any():
        raise ValueError(f"gold_index out of range for {m} items")
    out = np.zeros(n, dtype=np.int64)
    cols = np.arange(m)
    for start in range(0, n, _CHUNK):
        s = scores[start : start + _CHUNK]
        if np.isnan(s).any():
            raise ValueError("scores contain NaN")
        g = gold[start : start + _CHUNK]
        ok = g >= 0
        gs = s[np.arange(len(g)), np.where(ok, g, 0)][:, None]
        greater = (s > gs).sum(axis=1)
        tied_before = ((s == gs) & (cols[None, :] < g[:, None])).sum(axis=1)
        out[start : start + _CHUNK] = np.where(ok, greater + tied_before + 1, 0)
    return out


class ListMetric:
    """Mean over requests of a score of one top-k list's per-position flags; ``update`` adds one list."""

    prefix = "list"

    def __init__(self, k: int = 10) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k, self.name = k, f"{self.prefix}@{k}"
        self._sum, self._count = 0.0, 0

    def score(self, flags: np.ndarray, n_relevant: int | None) -> float:
        raise NotImplementedError

    def update(self, flags: np.ndarray | list[bool], n_relevant: int | None = None) -> None:
        """Add one ranked list: ``flags[i]`` says whether the movie at rank i + 1 counts (only the first k are
        read); ``n_relevant`` is how many movies of the catalog would count (for NDCG's ideal list)."""
        f = np.asarray(flags, dtype=bool).reshape(-1)[: self.k]
        self._sum += float(self.score(f, n_relevant))
        self._count += 1

    def compute(self) -> float:
        """The mean over every list seen (``nan`` if none)."""
        return self._sum / self._count if self._count else math.nan

    @property
    def count(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


class ConstraintPrecision(ListMetric):
    """Share of the top k that satisfy every fact of the request (flags: satisfies all), over k."""

    prefix = "constraint_precision"

    def score(self, flags: np.ndarray, n_relevant: int | None) -> float:
        return float(flags.sum()) / self.k


class NegationViolations(ListMetric):
    """Share of the top k that have something the request rules out (flags: breaks a negated fact), over k.
    Meant for requests that negate something."""

    prefix = "negation_violations"

    def score(self, flags: np.ndarray, n_relevant: int | None) -> float:
        return float(flags.sum()) / self.k


class SatisfyingNDCG(ListMetric):
    """NDCG@k with every movie that satisfies all facts relevant (gain 1): DCG over the ideal DCG of
    min(k, ``n_relevant``) relevant movies; 0 when none is relevant."""

    prefix = "ndcg"

    def score(self, flags: np.ndarray, n_relevant: int | None) -> float:
        n = min(self.k, int(flags.sum()) if n_relevant is None else int(n_relevant))
        if n <= 0:
            return 0.0
        disc = 1.0 / np.log2(np.arange(2, self.k + 2))
        return float((flags * disc[: len(flags)]).sum() / disc[:n].sum())
