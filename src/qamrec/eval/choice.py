"""Choosing a post-training setting on the dev examples, with a standard-error guard against noise."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from qamrec.eval.evaluate import metrics_from_ranks
from qamrec.eval.metrics import NDCG, as_ranks, ranks_of
from qamrec.eval.protocol import CRSExample

__all__ = ["dev_choice"]


def dev_choice(settings: Iterable[tuple[dict[str, Any], np.ndarray]], examples: Sequence[CRSExample],
               item_ids: Sequence[int], in_test_file: Sequence[bool] = ()) -> tuple[list[dict[str, Any]], int]:
    r"""Each setting's dev recall@10 / recall@50 / NDCG@10 from its scores ``[len(examples), len(item_ids)]``
    (read one at a time: ``settings`` may be a generator),
    and the index of the one to keep: the best NDCG@10 (ties: the earlier), unless its per-example gain
    :math:`d` over the first setting (the reference, e.g. weight 0) is at most one standard error,
    :math:`\bar d \le s_d / \sqrt{n}`: then the first. Each row has its gain's standard error ``gain_se``.

    ``in_test_file`` (one flag per example; ReDial: whether its dialogue is one the test file also holds) adds to
    each row the mean NDCG@10 gain over the first on the flagged examples alone and its standard error
    (``test_file_gain``, ``test_file_gain_se``), reported, never chosen on: the dialogues most like the test's,
    where the rest of the dev comes from other copies of the training split."""
    col = {e: j for j, e in enumerate(item_ids)}
    gold = np.array([col.get(e.item, -1) for e in examples], dtype=np.int64)
    ndcg = NDCG(10)
    rows, per = [], []
    for label, scores in settings:
        ranks = ranks_of(np.asarray(scores, dtype=np.float32), gold)
        m = metrics_from_ranks(ranks, (10, 50))
        per.append(ndcg.score(as_ranks(ranks)))
        rows.append({**label, **{k: float(m[k]) for k in ("recall@10", "recall@50", "ndcg@10")}})
    flagged = np.asarray(in_test_file, dtype=bool)
    if len(flagged) and len(flagged) != len(examples):
        raise ValueError(f"in_test_file has {len(flagged)} flags for {len(examples)} examples")
    for r, p in zip(rows, per):
        d = p - per[0]
        r["gain_se"] = _se(d)
        if flagged.any():
            r["test_file_gain"], r["test_file_gain_se"] = float(d[flagged].mean()), _se(d[flagged])
    best = max(range(len(rows)), key=lambda i: (rows[i]["ndcg@10"], -i))
    if rows[best]["ndcg@10"] - rows[0]["ndcg@10"] <= rows[best]["gain_se"]:
        best = 0
    return rows, best


def _se(d: np.ndarray) -> float:
    """The standard error of the mean of ``d`` (0 for fewer than two values)."""
    return float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
