"""The words of the candidate movies (MAGUS' item–word graph): what refinements and request constraints use."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qamrec.graph.store import Graph, candidate_columns
from qamrec.serve.refine import WordGraph

__all__ = ["WORD_RELATIONS", "word_graph"]

#: KG relations whose entities are refinement words: what a person would ask for (not composers, studios ...)
WORD_RELATIONS = ("director", "starring", "writer", "genre", "subject")


def word_graph(graph: Graph, years: dict[int, int | None], min_movies: int = 2) -> WordGraph:
    """The MAGUS item–word graph over the candidates: genres, tags, decades, KG directors, actors, writers and
    subjects (words of fewer than ``min_movies`` candidates are left out)."""
    d, meta = graph.data, graph.meta
    cands = np.asarray(meta["candidates"])
    node_to_cands = candidate_columns(cands.tolist())
    labels: list[str] = []
    kinds: list[str] = []
    by_label: dict[str, int] = {}  # one word per label: the tag "action" is the genre "action"
    pairs: list[np.ndarray] = []

    def add(kind: str, names: Sequence[str], movie_nodes: np.ndarray, word_local: np.ndarray) -> None:
        keep = np.isin(movie_nodes, cands)
        movie_nodes, word_local = movie_nodes[keep], word_local[keep]
        uniq, inv = np.unique(word_local, return_inverse=True)
        counts = np.bincount(inv, minlength=len(uniq))
        new_id = np.full(len(uniq), -1)
        for i, u in enumerate(uniq.tolist()):
            name = str(names[u]).strip()
            if counts[i] < min_movies or not name:
                continue
            if name.lower() not in by_label:
                by_label[name.lower()] = len(labels)
                labels.append(name)
                kinds.append(kind)
            new_id[i] = by_label[name.lower()]
        sel = new_id[inv] >= 0
        rows = [(j, w) for m, w in zip(movie_nodes[sel].tolist(), new_id[inv][sel].tolist()) for j in node_to_cands[m]]
        if rows:
            pairs.append(np.asarray(rows, dtype=np.int64))

    for et in d.edge_types:
        src, rel, dst = et
        if src != "movie":
            continue
        ei = d[et].edge_index.numpy()
        if rel == "has_genre":
            add("genre", meta["genres"], ei[0], ei[1])
        elif rel == "has_tag":
            add("tag", meta["tags"], ei[0], ei[1])
        elif rel.startswith("kg_") and rel[3:] in WORD_RELATIONS and meta.get("entity_labels"):
            add(rel[3:], meta["entity_labels"], ei[0], ei[1])
    movie_ids = meta["movie_ids"]
    dec = np.array([(years.get(movie_ids[m]) or 0) // 10 * 10 for m in cands.tolist()])
    has = dec > 0
    names = {x: f"{x}s" for x in np.unique(dec[has]).tolist()}
    add("decade", names, cands[has], dec[has])
    return WordGraph(len(cands), labels, kinds, np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64))
