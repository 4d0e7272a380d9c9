"""A built graph on disk: tensors in safetensors, names and ids in JSON, no pickle.

``graph.safetensors`` holds every tensor of the :class:`~torch_geometric.data.HeteroData` under
``node/<type>/<attr>`` and ``edge/<src>__<rel>__<dst>/<attr>``; ``graph.json`` holds everything else (node
keys, candidate items, the build config, sizes) and the SHA256 of the tensor file, so a corrupted file is
detected on load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch_geometric.data import HeteroData

from qamrec.errors import MissingDataError
from qamrec.io import atomic_path, atomic_write_json, read_json, sha256_file

__all__ = ["Graph", "save_graph", "load_graph", "EdgeType"]

EdgeType = tuple[str, str, str]
_SEP = "__"


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


def save_graph(graph: Graph, folder: Path) -> None:
    """Write ``graph.safetensors`` then ``graph.json`` (the JSON, written last, marks the graph complete)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = folder / "graph.safetensors"
    with atomic_path(tensors) as tmp:
        save_file(_flatten(graph.data), str(tmp))
    meta = dict(graph.meta, sizes=graph.sizes(), sha256=sha256_file(tensors))
    atomic_write_json(folder / "graph.json", meta)


def load_graph(folder: Path) -> Graph:
    """Read a graph written by :func:`save_graph`, checking the tensor file's digest."""
    meta_path, tensors = folder / "graph.json", folder / "graph.safetensors"
    if not meta_path.exists() or not tensors.exists():
        raise MissingDataError(f"{folder}: no built graph here (run `qamrec graph build`)")
    meta = read_json(meta_path)
    if sha256_file(tensors) != meta.get("sha256"):
        raise MissingDataError(f"{tensors}: corrupted (digest differs from graph.json); run `qamrec graph build`")
    data = HeteroData()
    for key, v in load_file(str(tensors)).items():
        kind, name, attr = key.split("/", 2)
        if kind == "node":
            if attr == "num_nodes":
                data[name].num_nodes = int(v.item())
            else:
                data[name][attr] = v
        else:
            data[tuple(name.split(_SEP))][attr] = v
    return Graph(data, meta)
