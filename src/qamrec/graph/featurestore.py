"""PyG's :class:`~torch_geometric.data.FeatureStore` / :class:`~torch_geometric.data.GraphStore` over a
:class:`~qamrec.graph.csr.CSRGraph`, so PyG's ``LinkLoader`` / ``NodeLoader`` take it as ``data``.

The feature store serves each node type's ``x`` (memory-mapped; float16 rows are returned as float32, only the
rows a batch asks for are read). The graph store serves each relation's CSC (``(row, colptr)``, sorted). PyG's
``filter_custom_hetero_store`` collates node features only; :class:`AttachEdgeAttr`, given to a loader as its
``transform``, adds ``edge_attr`` (looked up by the sampled edge ids ``e_id``) and ``num_nodes`` for node types
without features.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import EdgeAttr, FeatureStore, GraphStore, HeteroData, TensorAttr
from torch_geometric.data.graph_store import EdgeLayout

from qamrec.graph.csr import CSRGraph
from qamrec.graph.store import EdgeType

__all__ = ["CSRFeatureStore", "CSRGraphStore", "AttachEdgeAttr", "loader_data"]


def _rows(t: Tensor, index: Any) -> Tensor:
    out = t if index is None else t[index]
    return out.float() if out.dtype in (torch.float16, torch.bfloat16) else out


class CSRFeatureStore(FeatureStore):
    """Node features of a :class:`CSRGraph` (group = node type, attribute ``x``), read-mostly.

    ``put_tensor`` adds further tensors (kept in memory); the graph's own tensors are never written.
    """

    def __init__(self, graph: CSRGraph) -> None:
        super().__init__()
        self._tensors: dict[tuple[str, str], Tensor] = {(t, "x"): v for t, v in graph.x.items()}

    def _put_tensor(self, tensor: Tensor, attr: TensorAttr) -> bool:
        key = (attr.group_name, attr.attr_name)
        if attr.index is not None and not isinstance(attr.index, slice):
            raise ValueError(f"{type(self).__name__}: tensors are put whole (got an index for {key})")
        self._tensors[key] = tensor
        return True

    def _get_tensor(self, attr: TensorAttr) -> Tensor | None:
        t = self._tensors.get((attr.group_name, attr.attr_name))
        return None if t is None else _rows(t, attr.index)

    def _remove_tensor(self, attr: TensorAttr) -> bool:
        return self._tensors.pop((attr.group_name, attr.attr_name), None) is not None

    def _get_tensor_size(self, attr: TensorAttr) -> tuple[int, ...] | None:
        t = self._tensors.get((attr.group_name, attr.attr_name))
        return None if t is None else tuple(t.shape)

    def get_all_tensor_attrs(self) -> list[TensorAttr]:
        return [TensorAttr(group_name=g, attr_name=a) for g, a in self._tensors]


class CSRGraphStore(GraphStore):
    """The CSC of every relation of a :class:`CSRGraph` (layout ``csc``, sorted), as PyG's GraphStore."""

    def __init__(self, graph: CSRGraph) -> None:
        super().__init__()
        self._edges: dict[tuple[EdgeType, EdgeLayout], tuple[Tensor, Tensor]] = {}
        self._sizes: dict[EdgeType, tuple[int, int]] = {}
        for et in graph.edge_types:
            self._edges[(et, EdgeLayout.CSC)] = (graph.row[et], graph.colptr[et])
            self._sizes[et] = (graph.num_nodes[et[0]], graph.num_nodes[et[2]])

    def _put_edge_index(self, edge_index: tuple[Tensor, Tensor], edge_attr: EdgeAttr) -> bool:
        self._edges[(edge_attr.edge_type, edge_attr.layout)] = edge_index
        if edge_attr.size is not None:
            self._sizes[edge_attr.edge_type] = tuple(edge_attr.size)  # type: ignore[assignment]
        return True

    def _get_edge_index(self, edge_attr: EdgeAttr) -> tuple[Tensor, Tensor] | None:
        pair = self._edges.get((edge_attr.edge_type, edge_attr.layout))
        return None if pair is None else (pair[0].long(), pair[1])

    def _remove_edge_index(self, edge_attr: EdgeAttr) -> bool:
        return self._edges.pop((edge_attr.edge_type, edge_attr.layout), None) is not None

    def get_all_edge_attrs(self) -> list[EdgeAttr]:
        return [EdgeAttr(et, layout, is_sorted=layout == EdgeLayout.CSC, size=self._sizes.get(et))
                for et, layout in self._edges]


class AttachEdgeAttr:
    """A loader ``transform``: ``batch[et].edge_attr = graph.edge_attr[et][batch[et].e_id]`` (float32) for every
    relation with attributes, and ``batch[t].num_nodes`` from ``n_id`` where the batch has no features of ``t``.

    Picklable (it holds the graph, whose memory-mapped tensors are shared by forked workers).
    """

    def __init__(self, graph: CSRGraph) -> None:
        self.edge_attr = graph.edge_attr

    def __call__(self, data: HeteroData) -> HeteroData:
        for t in data.node_types:
            if "n_id" in data[t] and "num_nodes" not in data[t]:
                data[t].num_nodes = int(data[t].n_id.numel())
        for et in data.edge_types:
            if et in self.edge_attr and "e_id" in data[et] and "edge_attr" not in data[et]:
                data[et].edge_attr = _rows(self.edge_attr[et], data[et].e_id)
        return data


def loader_data(graph: CSRGraph) -> tuple[CSRFeatureStore, CSRGraphStore]:
    """``(feature_store, graph_store)`` of ``graph``: what PyG's ``LinkLoader`` / ``NodeLoader`` take as ``data``."""
    return CSRFeatureStore(graph), CSRGraphStore(graph)
