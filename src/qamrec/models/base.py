"""The one recommender contract every model speaks (cornac-style): ``fit``, ``score``, ``recommend``,
``save``, ``load``. Baselines, our model, the CLI and the service all use it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qamrec.models.query import Query

if TYPE_CHECKING:
    from qamrec.data.crs import CRSData
    from qamrec.graph.store import Graph

__all__ = ["Recommender"]


class Recommender(ABC):
    """Scores a graph's candidate items for queries.

    Subclasses set ``name`` and implement :meth:`fit`, :meth:`score`, :meth:`save` and :meth:`load`.
    ``score`` returns one row per query and one column per candidate (``graph.meta["item_ids"]`` order).
    """

    name: str = "recommender"

    def __init__(self) -> None:
        self.graph: Graph | None = None

    @abstractmethod
    def fit(self, crs: CRSData, graph: Graph, **kwargs: Any) -> Recommender:
        """Learn from the training examples of ``crs`` and the graph; returns ``self``."""

    @abstractmethod
    def score(self, queries: Sequence[Query]) -> np.ndarray:
        """Scores [len(queries), n_candidates] (float32); higher is better."""

    def recommend(self, query: Query, k: int = 10, exclude_seen: bool = False) -> list[tuple[int, float]]:
        """Top-``k`` (catalog movie id, score), best first; one entry per movie."""
        assert self.graph is not None, "fit or load first"
        s = self.score([query])[0]
        movie_ids = self.graph.meta["movie_ids"]
        cands = self.graph.meta["candidates"]
        seen = set(query.movies)
        if exclude_seen:
            item_movie = {e: movie_ids[cands[j]] for j, e in enumerate(self.graph.meta["item_ids"])}
            seen |= {item_movie[e] for e in query.entities if e in item_movie}
        out: list[tuple[int, float]] = []
        taken: set[int] = set()
        for j in np.argsort(-s, kind="stable"):
            m = movie_ids[cands[j]]
            if m in taken or m in seen:
                continue
            taken.add(m)
            out.append((m, float(s[j])))
            if len(out) == k:
                break
        return out

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write everything :meth:`load` needs into ``folder`` (safe formats only: safetensors, JSON)."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, graph: Graph) -> Recommender:
        """Rebuild a fitted model from ``folder`` and its graph."""
