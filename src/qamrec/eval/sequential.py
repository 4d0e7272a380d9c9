"""Next-item (sequential) recommendation protocol: leave-one-out split, full and sampled ranking, HR / NDCG.

The protocol of SASRec (Kang & McAuley, ICDM 2018) as evaluated with *full ranking* in MSMRec (Table 4):

* each user's interactions are ordered by timestamp (ties keep the order of the source file: a *stable*
  sort), the last one is the **test** item, the one before it the **validation** item, the rest **training**;
* **full ranking**: every item of the catalogue is scored; the user's history (all items of the training
  sequence, and for the test step also the validation item) is removed from the ranking, the target itself
  is never removed;
* **sampled ranking** (the older SASRec protocol, reported apart and labelled ``sampled_``): the target is
  ranked against 100 negatives drawn uniformly, without replacement and with a fixed seed, from the items
  the user never interacted with (in any split).

With one relevant item at 1-based rank :math:`r` (ties broken by item index, see
:func:`~qamrec.eval.metrics.ranks_of`):

.. math::
    \\mathrm{HR@}k = \\mathbb{1}[r \\le k], \\qquad \\mathrm{NDCG@}k = \\frac{\\mathbb{1}[r \\le k]}{\\log_2(r + 1)}.

Item indices are ``1..n_items`` (``0`` pads a sequence); score matrices have ``n_items + 1`` columns, column
``i`` for item ``i`` (column 0 is never ranked).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from qamrec.eval.metrics import NDCG, RankMetric, Recall, ranks_of

__all__ = [
    "SequentialSplit",
    "leave_one_out",
    "HitRate",
    "SequentialMetrics",
    "history_mask",
    "full_ranks",
    "sample_negatives",
    "sampled_ranks",
    "evaluate_sequential",
    "popularity_groups",
    "GROUPS",
    "PUBLISHED_SEQUENTIAL",
    "PUBLISHED_SEQUENTIAL_SOURCE",
    "FULL_KEYS",
    "SAMPLED_KEYS",
]

#: the metrics of the full-ranking protocol and of the sampled one, as the benchmark reports them
FULL_KEYS: tuple[str, ...] = ("hr@10", "ndcg@10", "hr@100")
SAMPLED_KEYS: tuple[str, ...] = ("sampled_hr@10", "sampled_ndcg@10")

PUBLISHED_SEQUENTIAL_SOURCE = "published, MSMRec Tab. 4 (ML-100K, full ranking)"

#: Published ML-100K full-ranking results (MSMRec, Table 4): model -> metric -> value.
PUBLISHED_SEQUENTIAL: dict[str, dict[str, float]] = {
    "SASRec": {"hr@10": 0.1463, "ndcg@10": 0.0670, "hr@100": 0.6341},
    "SASRec+KAR": {"hr@10": 0.1497, "ndcg@10": 0.0691, "hr@100": 0.6421},
    "MSMRec": {"hr@10": 0.1479, "ndcg@10": 0.0701, "hr@100": 0.6377},
}

#: user groups by the share of popular items in their history, most popular first
GROUPS: tuple[str, ...] = ("blockbuster", "diverse", "niche")


@dataclass
class SequentialSplit:
    """A leave-one-out split of interaction sequences.

    Attributes:
        item_ids: ``[n_items]`` the source item id of item index ``i`` at position ``i - 1``.
        user_ids: ``[n_users]`` the source user ids, in the order of the other fields.
        train: per user, the training items (indices ``1..n_items``) in time order.
        valid: ``[n_users]`` validation item of each user.
        test: ``[n_users]`` test item of each user.
    """

    item_ids: np.ndarray
    user_ids: np.ndarray
    train: list[np.ndarray]
    valid: np.ndarray
    test: np.ndarray
    _seen: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_items(self) -> int:
        return int(self.item_ids.size)

    @property
    def n_users(self) -> int:
        return int(self.user_ids.size)

    def inputs(self, stage: str) -> list[np.ndarray]:
        """The sequences a model reads to predict ``stage``'s target: training items (``"valid"``), training
        items + the validation item (``"test"``)."""
        if stage == "valid":
            return self.train
        if stage == "test":
            return [np.append(t, v) for t, v in zip(self.train, self.valid, strict=True)]
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")

    def targets(self, stage: str) -> np.ndarray:
        if stage not in ("valid", "test"):
            raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")
        return self.valid if stage == "valid" else self.test

    def interacted(self) -> np.ndarray:
        """``[n_users, n_items + 1]`` bool: the user interacted with the item (any split)."""
        if self._seen is None:
            seen = np.zeros((self.n_users, self.n_items + 1), dtype=bool)
            for u, t in enumerate(self.train):
                seen[u, t] = True
            seen[np.arange(self.n_users), self.valid] = True
            seen[np.arange(self.n_users), self.test] = True
            self._seen = seen
        return self._seen


def leave_one_out(
    interactions: pl.DataFrame, user: str = "user_id", item: str = "ml100k_id", time: str = "timestamp",
    items: Sequence[int] | None = None,
) -> SequentialSplit:
    """Split each user's interactions, sorted by ``time`` (stable: ties keep the frame's row order), into
    training items, one validation item (second-to-last) and one test item (last).

    Args:
        interactions: one row per interaction.
        items: the item catalogue (source ids); default every item in ``interactions``. Indices follow the
            sorted source ids.

    Raises:
        ValueError: a user has fewer than 3 interactions, or an item is not in ``items``.
    """
    df = interactions.select(pl.col(user).alias("u"), pl.col(item).alias("i"), pl.col(time).alias("t"))
    df = df.with_row_index("_row").sort(["u", "t", "_row"])
    item_ids = np.unique(np.asarray(items if items is not None else df["i"].to_numpy()))
    idx = np.searchsorted(item_ids, df["i"].to_numpy())
    idx_clipped = np.minimum(idx, item_ids.size - 1)
    if (item_ids[idx_clipped] != df["i"].to_numpy()).any():
        raise ValueError("an interaction's item is not in the item catalogue")
    idx = idx_clipped + 1
    users, starts, counts = np.unique(df["u"].to_numpy(), return_index=True, return_counts=True)
    if (counts < 3).any():
        raise ValueError(f"user {users[counts < 3][0]} has fewer than 3 interactions (leave-one-out needs 3)")
    train = [idx[s : s + c - 2].astype(np.int64) for s, c in zip(starts, counts, strict=True)]
    valid = idx[starts + counts - 2].astype(np.int64)
    test = idx[starts + counts - 1].astype(np.int64)
    return SequentialSplit(item_ids=item_ids, user_ids=users, train=train, valid=valid, test=test)


class HitRate(Recall):
    """HR@k with one target item: :math:`\\mathbb{1}[r \\le k]` (the same number as Recall@k)."""

    prefix = "hr"


class SequentialMetrics:
    """HR@10, NDCG@10, HR@100 of full-ranking ranks and HR@10, NDCG@10 of sampled ranks, accumulated batch by
    batch (``update_full`` / ``update_sampled``) and read with ``compute``."""

    def __init__(self, ks: Sequence[int] = (10, 100), ndcg_ks: Sequence[int] = (10,),
                 sampled_ks: Sequence[int] = (10,)) -> None:
        self.full: list[RankMetric] = [HitRate(k) for k in ks] + [NDCG(k) for k in ndcg_ks]
        self.sampled: list[RankMetric] = [HitRate(k) for k in sampled_ks] + [NDCG(k) for k in sampled_ks]

    def update_full(self, ranks: np.ndarray) -> None:
        for m in self.full:
            m.update(ranks)

    def update_sampled(self, ranks: np.ndarray) -> None:
        for m in self.sampled:
            m.update(ranks)

    def compute(self) -> dict[str, float]:
        out = {m.name: m.compute() for m in self.full}
        out |= {f"sampled_{m.name}": m.compute() for m in self.sampled if m.count}
        return out


def history_mask(histories: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """``[len(histories), n_items + 1]`` bool: the items to remove from each row's ranking (the history, and
    column 0, the padding index)."""
    mask = np.zeros((len(histories), n_items + 1), dtype=bool)
    for r, h in enumerate(histories):
        mask[r, h] = True
    mask[:, 0] = True
    return mask


def full_ranks(scores: np.ndarray, targets: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
    """1-based rank of each target among all items, the row's history items removed (the target never is).

    Args:
        scores: ``[n, n_items + 1]``; column ``i`` scores item ``i``; column 0 is ignored.
        targets: ``[n]`` target item indices (``1..n_items``).
        histories: per row, the item indices to exclude.
    """
    scores = np.array(scores, dtype=np.float64, copy=True)
    targets = np.asarray(targets, dtype=np.int64)
    mask = history_mask(histories, scores.shape[1] - 1)
    mask[np.arange(len(targets)), targets] = False
    scores[mask] = -np.inf
    return ranks_of(scores, targets)


def sample_negatives(split: SequentialSplit, n: int = 100, seed: int = 0) -> np.ndarray:
    """``[n_users, n]`` item indices drawn uniformly without replacement from the items each user never
    interacted with (training, validation or test), with a fixed seed (one generator, users in order)."""
    rng = np.random.default_rng(seed)
    seen = split.interacted()
    out = np.empty((split.n_users, n), dtype=np.int64)
    for u in range(split.n_users):
        pool = np.flatnonzero(~seen[u, 1:]) + 1
        if pool.size < n:
            raise ValueError(f"user {split.user_ids[u]} has only {pool.size} items never interacted with (< {n})")
        out[u] = rng.choice(pool, size=n, replace=False)
    return out


def sampled_ranks(scores: np.ndarray, targets: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """1-based rank of each target among itself and its row's negatives (candidates in item-index order, so ties
    break as in the full ranking)."""
    targets = np.asarray(targets, dtype=np.int64)
    cands = np.concatenate([targets[:, None], np.asarray(negatives, dtype=np.int64)], axis=1)
    order = np.argsort(cands, axis=1, kind="stable")
    cands = np.take_along_axis(cands, order, axis=1)
    gold = np.argmax(order == 0, axis=1)
    return ranks_of(np.take_along_axis(np.asarray(scores), cands, axis=1), gold)


#: ``(user rows, input sequences) -> [len(rows), n_items + 1]`` scores
ScoreFn = Callable[[np.ndarray, list[np.ndarray]], np.ndarray]


def evaluate_sequential(score: ScoreFn, split: SequentialSplit, stage: str = "test",
                        negatives: np.ndarray | None = None, batch_size: int = 256) -> dict[str, float]:
    """Full-ranking HR@10, NDCG@10, HR@100 (and, given ``negatives``, sampled HR@10 / NDCG@10) of ``stage``.

    ``score`` sees each user's input sequence for the stage (:meth:`SequentialSplit.inputs`); the same
    sequence is the history removed from the full ranking.
    """
    inputs, targets = split.inputs(stage), split.targets(stage)
    metrics = SequentialMetrics()
    for s in range(0, split.n_users, batch_size):
        rows = np.arange(s, min(s + batch_size, split.n_users))
        seqs = [inputs[r] for r in rows]
        sc = np.asarray(score(rows, seqs), dtype=np.float64)
        metrics.update_full(full_ranks(sc, targets[rows], seqs))
        if negatives is not None:
            metrics.update_sampled(sampled_ranks(sc, targets[rows], negatives[rows]))
    return metrics.compute()


def popularity_groups(split: SequentialSplit, top: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Users in tertiles of the share of their training items among the ``top`` most popular items (by training
    interactions): ``(group index per user, 0 = blockbuster (highest share), 1 = diverse, 2 = niche;
    the share per user)``."""
    counts = np.bincount(np.concatenate(split.train), minlength=split.n_items + 1)[1:]
    n_top = max(1, int(round(top * split.n_items)))
    popular = np.zeros(split.n_items + 1, dtype=bool)
    popular[np.argsort(-counts, kind="stable")[:n_top] + 1] = True
    share = np.array([popular[t].mean() if t.size else 0.0 for t in split.train])
    order = np.argsort(-share, kind="stable")
    group = np.empty(split.n_users, dtype=np.int64)
    for g, part in enumerate(np.array_split(order, 3)):
        group[part] = g
    return group, share
