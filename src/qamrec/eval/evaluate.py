"""Score a model on the UniCRS recommendation protocol, and compare with published numbers.

UniCRS (``src/train_rec.py``) restricts the model's logits to the candidate items
(``logits[:, item_ids]``), takes the top 50 and maps them back to entity ids; ``RecEvaluator``
(``src/evaluate_rec.py``) then checks whether the gold entity id is among the first *k* and divides by the
number of examples. A gold entity that is not in ``item_ids`` can never be retrieved, so such an example is
a **miss** that still counts in the denominator; :func:`evaluate` does the same and reports how many there
are as ``n_gold_not_candidate``. Items already mentioned in the context are *not* excluded by UniCRS.

Two diagnostic variants are reported beside the UniCRS numbers (they are not in the published protocol):

* ``new_items.*``: every candidate item among an example's context entities gets score :math:`-\\infty`
  before ranking, and examples whose gold item is itself a context entity are dropped.
* ``cold_start.*``: only the examples whose context entities contain no candidate item (no movie mentioned
  yet), ranked as in the main protocol.
* ``unseen_gold.*`` (when the training targets are known): only the examples whose gold item is the answer of
  no training example, ranked as in the main protocol.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np
import torch

from qamrec.eval.metrics import MAP, MRR, NDCG, Precision, Recall, RankMetric, ranks_of
from qamrec.eval.protocol import CRSExample

__all__ = ["evaluate", "metrics_from_ranks", "PUBLISHED", "PUBLISHED_SOURCE", "comparison_table"]

_CHUNK = 512

PUBLISHED_SOURCE = "published, MSCRS SIGIR'25 Tab. 2"

#: Published test-set results: dataset -> model -> metric -> value (MSCRS, SIGIR 2025, Table 2).
PUBLISHED: dict[str, dict[str, dict[str, float]]] = {
    "redial": {
        "Popularity": {"recall@1": 0.011, "recall@10": 0.053, "recall@50": 0.183},
        "UniCRS": {"recall@1": 0.065, "recall@10": 0.241, "recall@50": 0.423},
        "MSCRS": {
            "recall@1": 0.081, "recall@10": 0.264, "recall@50": 0.451,
            "ndcg@10": 0.161, "ndcg@50": 0.201, "mrr@10": 0.128, "mrr@50": 0.136,
        },
    },
    "inspired": {
        "Popularity": {"recall@1": 0.031, "recall@10": 0.155, "recall@50": 0.322},
        "UniCRS": {"recall@1": 0.085, "recall@10": 0.230, "recall@50": 0.398},
        "MSCRS": {
            "recall@1": 0.096, "recall@10": 0.257, "recall@50": 0.425,
            "ndcg@10": 0.168, "ndcg@50": 0.202, "mrr@10": 0.140, "mrr@50": 0.148,
        },
    },
}

_TABLE_COLUMNS = ("recall@1", "recall@10", "recall@50", "ndcg@10", "ndcg@50", "mrr@10", "mrr@50")


def _metric_objects(ks: Iterable[int]) -> list[RankMetric]:
    ks = list(ks)
    out: list[RankMetric] = []
    for cls in (Recall, NDCG, MRR, Precision):
        out.extend(cls(k) for k in ks)
    out.append(MAP())
    return out


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = (1, 10, 50), prefix: str = "") -> dict[str, float]:
    """``{prefix + "recall@k", "ndcg@k", "mrr@k", "precision@k", "map", "n_examples"}`` of 1-based gold ranks."""
    out: dict[str, float] = {f"{prefix}n_examples": int(np.asarray(ranks).size)}
    for m in _metric_objects(ks):
        m.update(ranks)
        out[prefix + m.name] = m.compute()
    return out


def evaluate(
    scores: np.ndarray | torch.Tensor,
    examples: Sequence[CRSExample],
    item_ids: Sequence[int],
    ks: Sequence[int] = (1, 10, 50),
    seen_items: Collection[int] | None = None,
) -> dict[str, float]:
    """Evaluate ``scores`` (``[n_examples, n_items]``, column *j* = ``item_ids[j]``) on the UniCRS protocol.

    Ranks use the deterministic tie rule of :func:`~qamrec.eval.metrics.ranks_of` (UniCRS used
    ``torch.topk``, whose order among ties is unspecified).

    Returns:
        One flat dict: ``n_examples``, ``n_gold_not_candidate``, ``recall@k``, ``ndcg@k``, ``mrr@k``,
        ``precision@k`` for each ``k`` in ``ks``, ``map``; and the same keys prefixed ``new_items.`` and
        ``cold_start.`` for the two variants described in the module docstring. With ``seen_items`` (the
        items some training example has as its answer), also ``unseen_gold.*``: the examples whose gold item
        is not among them, ranked as in the main protocol, and ``unseen_gold.share`` of all examples.
    """
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    scores = np.asarray(scores)
    n, m = len(examples), len(item_ids)
    if scores.shape != (n, m):
        raise ValueError(f"scores must be [n_examples, n_items] = [{n}, {m}], got {list(scores.shape)}")
    col = {int(item): j for j, item in enumerate(item_ids)}
    if len(col) != m:
        raise ValueError("item_ids contains duplicates")

    gold = np.array([col.get(e.item, -1) for e in examples], dtype=np.int64)
    ctx_cols = [[col[x] for x in e.entities if x in col] for e in examples]
    ranks = ranks_of(scores, gold)

    out = metrics_from_ranks(ranks, ks)
    out["n_gold_not_candidate"] = int((gold < 0).sum())

    # new items: mask context items, drop examples whose gold item is a context entity
    keep = np.array([e.item not in set(e.entities) for e in examples], dtype=bool)
    kept = np.flatnonzero(keep)
    new_ranks = np.zeros(len(kept), dtype=np.int64)
    for start in range(0, len(kept), _CHUNK):
        rows = kept[start : start + _CHUNK]
        block = np.array(scores[rows], dtype=np.float64)
        for i, r in enumerate(rows):
            if ctx_cols[r]:
                block[i, ctx_cols[r]] = -np.inf
        new_ranks[start : start + _CHUNK] = ranks_of(block, gold[rows])
    out.update(metrics_from_ranks(new_ranks, ks, "new_items."))
    out["new_items.n_gold_not_candidate"] = int((gold[kept] < 0).sum())

    cold = np.array([not c for c in ctx_cols], dtype=bool)
    out.update(metrics_from_ranks(ranks[cold], ks, "cold_start."))
    out["cold_start.n_gold_not_candidate"] = int((gold[cold] < 0).sum())
    if seen_items is not None:
        seen = set(seen_items)
        unseen = np.array([e.item not in seen for e in examples], dtype=bool)
        out.update(metrics_from_ranks(ranks[unseen], ks, "unseen_gold."))
        out["unseen_gold.share"] = float(unseen.mean()) if n else float("nan")
    return out


def _cell(v: float | None) -> str:
    if v is None or v != v:  # missing or NaN
        return "–"
    return f"{v:.3f}"


def comparison_table(ours: Mapping[str, Mapping[str, float]], dataset: str) -> str:
    """A markdown table of the published rows for ``dataset`` ("redial" or "inspired") and ``ours``.

    Args:
        ours: row name -> metrics (keys like ``"recall@10"``, e.g. the dict :func:`evaluate` returns).
        dataset: which published rows to show (case-insensitive).

    Missing cells are written "–".
    """
    key = dataset.lower()
    if key not in PUBLISHED:
        raise ValueError(f"no published results for {dataset!r}; known: {sorted(PUBLISHED)}")
    head = "| model | " + " | ".join(_TABLE_COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(_TABLE_COLUMNS) + 1)]
    rows: list[tuple[str, Mapping[str, float]]] = [
        (f"{name} ({PUBLISHED_SOURCE})", vals) for name, vals in PUBLISHED[key].items()
    ]
    rows += list(ours.items())
    for name, vals in rows:
        lines.append(f"| {name} | " + " | ".join(_cell(vals.get(c)) for c in _TABLE_COLUMNS) + " |")
    return "\n".join(lines) + "\n"
