r"""A log-linear pool of fitted recommenders: one model behind the :class:`Recommender` contract.

Each member :math:`m` scores the candidates; its scores become log-probabilities by a softmax over the
candidates, and the ensemble's score is their weighted sum (a product of experts, Hinton 2002; the
logarithmic opinion pool):

.. math::
    s_{ij} = \sum_m w_m \log \operatorname{softmax}_j\big(s^{(m)}_{i\cdot}\big), \qquad w_m \ge 0,\ \sum_m w_m = 1.

The members may read different graphs and text encoders (e.g. the bundled encoder and one fine-tuned on the
training answers, :mod:`qamrec.train.text_finetune`) but must rank the same candidates. :meth:`ScoreEnsemble.fit`
chooses the weights on the dev examples from a grid on the simplex (:func:`~qamrec.eval.choice.dev_choice`: best
NDCG@10, the first member alone unless the gain is over one standard error); it does not train the members.

On disk an ensemble is a folder with ``ensemble.json`` (the members' run directories, relative to it when they
are beside it, and the weights) and the first member's ``test.jsonl`` when it has one, so ``qamrec evaluate``
tests it on the examples its members were held out from. :func:`~qamrec.train.run.pool_runs` makes one from run
directories (``qamrec ensemble``); :func:`~qamrec.train.run.load_run` loads it with its members.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qamrec.errors import DataFormatError, QamrecError
from qamrec.io import atomic_path, atomic_write_json, read_json
from qamrec.models.base import Recommender
from qamrec.models.query import Query

if TYPE_CHECKING:
    from qamrec.data.crs import CRSData
    from qamrec.graph.store import Graph

__all__ = ["ScoreEnsemble", "ENSEMBLE_FILE", "log_softmax", "simplex_grid"]

ENSEMBLE_FILE = "ensemble.json"


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise :math:`\\log \\operatorname{softmax}` of ``scores`` ``[n, n_items]`` (float64; ``-inf`` kept)."""
    s = np.asarray(scores, dtype=np.float64)
    top = s.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return s - top - np.log(np.exp(s - top).sum(axis=1, keepdims=True))


def _mix(logp: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """:math:`\\sum_m w_m \\log p^{(m)}` over the members with a positive weight (float32)."""
    out = np.zeros(logp[0].shape, dtype=np.float64)
    for lp, w in zip(logp, weights):
        if w > 0:
            out += w * lp
    return out.astype(np.float32)


def simplex_grid(n: int, step: float = 0.1) -> list[tuple[float, ...]]:
    """Weights of ``n`` members on the simplex in steps of ``step``; the first is the first member alone."""
    k = round(1 / step)
    points = [tuple(c / k for c in combo) for combo in itertools.product(range(k + 1), repeat=n) if sum(combo) == k]
    first = tuple([1.0] + [0.0] * (n - 1))
    return [first] + sorted((p for p in points if p != first), reverse=True)


class ScoreEnsemble(Recommender):
    """Fitted ``members`` pooled with ``weights`` (equal until :meth:`fit` chooses them on dev)."""

    name = "ensemble"

    def __init__(self, members: Sequence[Recommender], weights: Sequence[float] | None = None,
                 folders: Sequence[Path] | None = None) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        graphs = [m.graph for m in members]
        if any(g is None for g in graphs):
            raise ValueError("every member must be fitted or loaded first")
        first = list(graphs[0].meta["item_ids"])  # type: ignore[union-attr]
        for i, g in enumerate(graphs[1:], 1):
            if list(g.meta["item_ids"]) != first:  # type: ignore[union-attr]
                raise ValueError(f"member {i} ranks other candidates than member 0: their graphs differ in item_ids")
        self.members = list(members)
        self.graph = graphs[0]
        self.set_weights([1.0] * len(members) if weights is None else weights)
        self.folders = [Path(f) for f in folders] if folders is not None else None
        #: each tried weighting's dev metrics (set by :meth:`fit`)
        self.dev: list[dict[str, Any]] | None = None
        #: the items some member's training examples answer with (the unseen-gold slice reads it)
        self.train_targets = getattr(members[0], "train_targets", None)

    def set_weights(self, weights: Sequence[float]) -> None:
        """Use ``weights`` (one per member, non-negative), normalised to sum 1."""
        w = np.asarray(weights, dtype=float)
        if w.shape != (len(self.members),) or not np.isfinite(w).all() or (w < 0).any() or not w.sum() > 0:
            raise ValueError(f"weights must be {len(self.members)} non-negative numbers with a positive sum, "
                             f"got {list(weights)}")
        self.weights = w / w.sum()

    @staticmethod
    def pool(member_scores: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
        """:math:`\\sum_m w_m \\log \\operatorname{softmax}(s^{(m)})` (members with weight 0 are skipped)."""
        return _mix([log_softmax(s) if w > 0 else s for s, w in zip(member_scores, weights)], weights)

    def fit(self, crs: CRSData, graph: Graph | None = None, step: float = 0.1, **kwargs: Any) -> ScoreEnsemble:
        """Choose the weights on ``crs.dev`` (the members are already fitted; ``graph`` is not used)."""
        from qamrec.eval.choice import dev_choice
        from qamrec.models.qamrec import example_query

        if not crs.dev:
            raise ValueError("choosing an ensemble's weights needs dev examples")
        queries = [example_query(e) for e in crs.dev]
        logp = [log_softmax(m.score(queries)) for m in self.members]  # once, for every weighting tried
        grid = simplex_grid(len(self.members), step)
        rows, best = dev_choice((({"weights": list(w)}, _mix(logp, w)) for w in grid), crs.dev,
                                self.graph.meta["item_ids"], crs.dev_in_test_file)  # type: ignore[union-attr]
        self.set_weights(grid[best])
        self.dev = rows
        return self

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        return self.pool([m.score(queries) for m in self.members], self.weights)

    def save(self, folder: Path) -> None:
        """Write ``ensemble.json`` (and the first member's ``test.jsonl``) into ``folder``; the members stay
        where they are (:attr:`folders`: :func:`~qamrec.train.run.pool_runs` and :meth:`load` set it)."""
        if self.folders is None:
            raise ValueError("save an ensemble of run directories (qamrec.train.run.pool_runs)")
        folder.mkdir(parents=True, exist_ok=True)
        here = folder.resolve()
        members = [os.path.relpath(f.resolve(), here) if f.resolve().parent == here.parent else str(f.resolve())
                   for f in self.folders]
        if (test := self.folders[0] / "test.jsonl").is_file():
            with atomic_path(folder / "test.jsonl") as tmp:
                shutil.copyfile(test, tmp)
        atomic_write_json(folder / ENSEMBLE_FILE, {"name": self.name, "members": members,
                                                   "weights": [float(w) for w in self.weights], "dev": self.dev})

    @classmethod
    def load(cls, folder: Path, graph: Graph | None = None,  # type: ignore[override]
             load_member: Callable[[Path], Recommender] | None = None) -> ScoreEnsemble:
        """The ensemble saved in ``folder``, each member loaded from its run directory by ``load_member``
        (:func:`~qamrec.train.run.load_run` passes itself); a member that is an ensemble is refused, so a folder
        listing itself cannot loop."""
        meta = read_json(folder / ENSEMBLE_FILE)
        members, weights = meta.get("members"), meta.get("weights")
        if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members) \
                or not isinstance(weights, list) or len(weights) != len(members) \
                or not all(isinstance(w, (int, float)) for w in weights):
            raise DataFormatError(folder / ENSEMBLE_FILE, "needs 'members' (run directories) and as many 'weights'")
        folders = [folder / m for m in members]
        if nested := [f for f in folders if (f / ENSEMBLE_FILE).is_file()]:
            raise QamrecError(f"{folder / ENSEMBLE_FILE}: a member is an ensemble ({nested[0]}); pool run directories")
        if load_member is None:
            raise ValueError("ScoreEnsemble.load needs load_member (qamrec.train.run.load_run loads ensembles)")
        ens = cls([load_member(f) for f in folders], folders=folders)
        try:
            ens.set_weights(weights)
        except ValueError as e:
            raise DataFormatError(folder / ENSEMBLE_FILE, f"weights: {e}") from None
        ens.dev = meta.get("dev")
        return ens
