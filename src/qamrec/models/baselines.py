"""Baselines in the same harness: Popularity, text similarity, item co-occurrence."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from qamrec.data.crs import CRSData
from qamrec.graph.store import Graph
from qamrec.io import atomic_path, atomic_write_json, read_json
from qamrec.models.base import Recommender
from qamrec.models.query import Query, QueryFeaturizer

__all__ = ["Popularity", "TextSimilarity", "CoOccurrence", "BASELINES"]

TextFn = Callable[[list[str]], np.ndarray]


class _Stored(Recommender):
    """A baseline whose state is a few named arrays."""

    arrays: dict[str, np.ndarray]

    def __init__(self, encode_text: TextFn | None = None) -> None:
        super().__init__()
        self.encode_text = encode_text
        self.arrays = {}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "model.safetensors") as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in self.arrays.items()}, str(tmp))
        atomic_write_json(folder / "model.json", {"name": self.name})

    @classmethod
    def load(cls, folder: Path, graph: Graph, encode_text: TextFn | None = None) -> Recommender:  # type: ignore[override]
        if read_json(folder / "model.json").get("name") != cls.name:
            raise ValueError(f"{folder} does not hold a {cls.name} model")
        m = cls(encode_text)
        m.graph, m.arrays = graph, dict(load_file(str(folder / "model.safetensors")))
        m._ready()
        return m

    def _ready(self) -> None:
        pass


def _popularity(crs: CRSData, graph: Graph) -> np.ndarray:
    col = {e: j for j, e in enumerate(graph.meta["item_ids"])}
    counts = np.zeros(len(col), np.float32)
    for e in crs.train:
        if e.item in col:
            counts[col[e.item]] += 1
    return counts


class Popularity(_Stored):
    """Score = how often the item is the gold answer in the training examples (same for every query)."""

    name = "popularity"

    def fit(self, crs: CRSData, graph: Graph, **kwargs: Any) -> Popularity:
        self.graph = graph
        self.arrays = {"count": _popularity(crs, graph)}
        return self

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        return np.tile(self.arrays["count"], (len(queries), 1))


class TextSimilarity(_Stored):
    """Score = cosine between the query's text embedding and the candidate movie's text embedding."""

    name = "text_similarity"

    def fit(self, crs: CRSData, graph: Graph, **kwargs: Any) -> TextSimilarity:
        self.graph = graph
        x = graph.data["movie"].x_text.float().numpy()[graph.meta["candidates"]]
        self.arrays = {"items": x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)}
        return self

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        assert self.encode_text is not None, "TextSimilarity needs a text encoder"
        q = self.encode_text([x.text for x in queries])
        return (q @ self.arrays["items"].T).astype(np.float32)


class CoOccurrence(_Stored):
    r"""Item-to-item co-occurrence with the query's anchor movies :math:`A(q)`:

    .. math::
        s_j = \sum_{a \in A(q)} \big(\hat C^{dlg}_{aj} + w_r \hat C^{rat}_{aj}\big) + w_p \, \mathrm{pop}_j,
        \qquad \hat C_{aj} = C_{aj} / \sqrt{d_a d_j},

    with :math:`C^{dlg}` the co-mentions in training dialogues and :math:`C^{rat}` the co-ratings (both >= 4) of
    MovieLens users, read off the graph; :math:`w_r, w_p` are chosen on the dev examples (Recall@10)."""

    name = "cooccurrence"
    GRID_RATINGS = (0.0, 0.3, 1.0)
    GRID_POP = (0.0, 0.03, 0.1, 0.3, 1.0)

    @staticmethod
    def _cosine(m: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        co = torch.sparse.mm(m.t().coalesce(), m.index_select(1, cands).to_dense())
        co[cands, torch.arange(len(cands))] = 0.0
        deg = co.sum(1).clamp(min=1.0)
        return co / deg.sqrt()[:, None] / deg[cands].sqrt()[None, :]

    def fit(self, crs: CRSData, graph: Graph, **kwargs: Any) -> CoOccurrence:
        self.graph = graph
        d = graph.data
        n = int(d["movie"].num_nodes)
        cands = torch.tensor(graph.meta["candidates"])
        parts = {}
        for key, src, rel, attr_min in (("dialogue", "dialogue", "mentions", None), ("ratings", "user", "rates", 0.8)):
            et = (src, rel, "movie")
            co = torch.zeros(n, len(cands))
            if et in d.edge_types:
                ei = d[et].edge_index
                if attr_min is not None:
                    ei = ei[:, d[et].edge_attr.view(-1) >= attr_min]
                m = torch.sparse_coo_tensor(ei, torch.ones(ei.shape[1]), (int(d[src].num_nodes), n),
                                            check_invariants=False).coalesce()
                co = self._cosine(m, cands)
            parts[key] = co.numpy().astype(np.float32)
        pop = _popularity(crs, graph)
        self.arrays = {"dialogue": parts["dialogue"], "ratings": parts["ratings"], "pop": pop / max(pop.max(), 1.0),
                       "weights": np.array([1.0, 0.0], np.float32)}
        self._ready()
        if crs.dev:
            from qamrec.eval.evaluate import evaluate
            from qamrec.models.qamrec import example_query

            queries = [example_query(e) for e in crs.dev]
            best = (-1.0, (1.0, 0.0))
            for wr in self.GRID_RATINGS:
                for wp in self.GRID_POP:
                    self.arrays["weights"] = np.array([wr, wp], np.float32)
                    r10 = evaluate(self.score(queries), crs.dev, graph.meta["item_ids"])["recall@10"]
                    if r10 > best[0]:  # ties keep the earlier (smaller) weights
                        best = (r10, (wr, wp))
            self.arrays["weights"] = np.array(best[1], np.float32)
        return self

    def _ready(self) -> None:
        assert self.graph is not None
        self.featurizer = QueryFeaturizer(self.graph, lambda t: np.zeros((len(t), 1), np.float32), retrieved=0)

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        wr, wp = (float(x) for x in self.arrays["weights"])
        out = np.tile(1e-4 * self.arrays["pop"] + wp * self.arrays["pop"], (len(queries), 1))
        for i, q in enumerate(queries):
            anchors = self.featurizer.anchor_movies(q)
            if anchors:
                out[i] += self.arrays["dialogue"][anchors].sum(0) + wr * self.arrays["ratings"][anchors].sum(0)
        return out


BASELINES: dict[str, type[_Stored]] = {m.name: m for m in (Popularity, TextSimilarity, CoOccurrence)}
