"""A built graph on disk: tensors in safetensors, names and ids in JSON, no pickle.

``graph.safetensors`` holds every tensor of the :class:`~torch_geometric.data.HeteroData` under
``node/<type>/<attr>`` and ``edge/<src>__<rel>__<dst>/<attr>``; ``graph.json`` holds everything else (node
keys, candidate items, the build config, sizes), the SHA256 of the tensor file (``sha256``) and the SHA256 of
its own other fields (``json_sha256``), so a corrupted or truncated file of either kind is detected on load.
``graph.json`` is written last and only after the tensors: a folder without it holds no graph, and a killed
save leaves at most a stray temporary file, deleted by the next save.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch_geometric.data import HeteroData

from qamrec.errors import MissingDataError, QamrecError
from qamrec.io import atomic_path, atomic_write_json, read_json, remove_stale_tmp, sha256_bytes, sha256_file

__all__ = ["Graph", "save_graph", "load_graph", "candidate_columns", "EdgeType"]

EdgeType = tuple[str, str, str]
_SEP = "__"


def candidate_columns(movies: Iterable[int]) -> dict[int, list[int]]:
    """Each movie (a node, or a catalog id) -> the candidate columns that name it, in order, from the movie of
    each column (``meta["candidates"]``; a dataset's entity space can name one film by several ids)."""
    out: dict[int, list[int]] = {}
    for j, m in enumerate(movies):
        out.setdefault(m, []).append(j)
    return out


@dataclass
class Graph:
    """A heterogeneous graph with the ids that tie its nodes to the catalog and the dataset.

    ``meta`` keys: ``movie_ids`` (catalog id per movie node), ``entity_ids`` (dataset entity id per entity
    node), ``tags``, ``genres`` (names), ``item_ids`` (candidate entity ids) and ``candidates`` (movie node of
    each candidate), ``dialogues`` (training dialogue ids), ``config`` and ``sizes``.
    """

    data: HeteroData
    meta: dict[str, Any] = field(default_factory=dict)

    def sizes(self) -> dict[str, dict[str, int]]:
        """Node count per node type and edge count per edge type (``src__rel__dst``)."""
        return {
            "nodes": {t: int(self.data[t].num_nodes) for t in self.data.node_types},
            "edges": {_SEP.join(et): int(self.data[et].edge_index.shape[1]) for et in self.data.edge_types},
        }


def _flatten(data: HeteroData) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()

    def own(v: torch.Tensor) -> torch.Tensor:  # safetensors refuses tensors sharing memory (rev_ edge copies)
        v = v.contiguous()
        if v.untyped_storage().data_ptr() in seen:
            v = v.clone()
        seen.add(v.untyped_storage().data_ptr())
        return v

    for t in data.node_types:
        out[f"node/{t}/num_nodes"] = torch.tensor([data[t].num_nodes])
        for k, v in data[t].items():
            if isinstance(v, torch.Tensor):
                out[f"node/{t}/{k}"] = own(v)
    for et in data.edge_types:
        for k, v in data[et].items():
            if isinstance(v, torch.Tensor):
                out[f"edge/{_SEP.join(et)}/{k}"] = own(v)
    return out


def _meta_digest(meta: dict[str, Any]) -> str:
    """SHA256 of a graph.json's fields other than ``json_sha256``, as they read back from JSON."""
    body = json.loads(json.dumps({k: v for k, v in meta.items() if k != "json_sha256"}))
    return sha256_bytes(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def save_graph(graph: Graph, folder: Path) -> None:
    """Write ``graph.safetensors`` then ``graph.json`` (the JSON, written last, marks the graph complete)."""
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(folder)
    (folder / "graph.json").unlink(missing_ok=True)  # never a graph.json beside tensors it does not describe
    tensors = folder / "graph.safetensors"
    with atomic_path(tensors) as tmp:
        save_file(_flatten(graph.data), str(tmp))
    meta = {k: v for k, v in graph.meta.items() if k != "json_sha256"} | {"sizes": graph.sizes(),
                                                                         "sha256": sha256_file(tensors)}
    atomic_write_json(folder / "graph.json", meta | {"json_sha256": _meta_digest(meta)})


def load_graph(folder: Path) -> Graph:
    """Read a graph written by :func:`save_graph`, checking both files' digests.

    A missing, unreadable or corrupted file raises :class:`MissingDataError` naming it (a ``graph.json``
    written before ``json_sha256`` existed is taken as it is; its tensor file is still checked).
    """
    meta_path, tensors = folder / "graph.json", folder / "graph.safetensors"
    if not meta_path.exists() or not tensors.exists():
        raise MissingDataError(f"{folder}: no built graph here (run `qamrec graph build`)")
    try:
        meta = read_json(meta_path)
    except QamrecError as e:
        raise MissingDataError(f"{meta_path}: corrupted ({e}); run `qamrec graph build`") from None
    if not isinstance(meta, dict) or meta.get("json_sha256") not in (None, _meta_digest(meta)):
        raise MissingDataError(f"{meta_path}: corrupted (its digest differs); run `qamrec graph build`")
    if sha256_file(tensors) != meta.get("sha256"):
        raise MissingDataError(f"{tensors}: corrupted (digest differs from graph.json); run `qamrec graph build`")
    data = HeteroData()
    try:
        loaded = load_file(str(tensors))
    except Exception as e:  # safetensors raises its own error types; the digest did not catch this file
        raise MissingDataError(f"{tensors}: unreadable ({e}); run `qamrec graph build`") from None
    for key, v in loaded.items():
        kind, name, attr = key.split("/", 2)
        if kind == "node":
            if attr == "num_nodes":
                data[name].num_nodes = int(v.item())
            else:
                data[name][attr] = v
        else:
            data[tuple(name.split(_SEP))][attr] = v
    return Graph(data, meta)
