"""GATEncoder: graph attention over a heterogeneous graph, one attention per relation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv

__all__ = ["GATEncoder"]

EdgeType = tuple[str, str, str]


class GATEncoder(nn.Module):
    r"""Relation-wise graph attention (Veličković et al., "Graph Attention Networks", ICLR 2018).

    For every relation :math:`r` with source type :math:`s` and target node :math:`i`,

    .. math::
        \alpha^r_{ij} = \mathrm{softmax}_{j \in \mathcal{N}_r(i)}
            \big(\mathrm{LeakyReLU}(\mathbf{a}_r^\top [\mathbf{W}_r \mathbf{h}_i \,\|\, \mathbf{W}_r \mathbf{h}_j
            \,\|\, \mathbf{W}^e_r \mathbf{e}_{ij}])\big),

    and a layer sums the relations with a self term (the :math:`j = i` of GAT, which a bipartite relation
    cannot hold as a self-loop):

    .. math::
        \mathbf{h}'_i = \mathrm{LayerNorm}\Big(\mathbf{h}_i + \mathrm{ELU}\big(\mathbf{W}_0 \mathbf{h}_i +
            \textstyle\sum_r \sum_{j \in \mathcal{N}_r(i)} \alpha^r_{ij} \mathbf{W}_r \mathbf{h}_j\big)\Big).

    Heads are concatenated (``hidden / heads`` channels each). Edge attributes (ratings; liked/seen) enter the
    attention where a relation has them. Each relation has its own :class:`~torch_geometric.nn.GATConv`, summed
    as :class:`~torch_geometric.nn.HeteroConv` with ``aggr="sum"`` would, except that each convolution sees only
    the nodes its relation touches (a KG relation with a few hundred edges does not project every movie and
    entity), which makes a full-graph pass several times faster on CPU.

    Args:
        node_types: node types of the graph.
        edge_types: relations to attend over.
        hidden: channels in and out.
        layers: number of attention layers.
        heads: attention heads per relation (``hidden`` must divide by it).
        dropout: dropout on each layer's output (attention coefficients are not dropped: on CPU that costs
            more than it helps).
        edge_dims: edge attribute width per relation that has one.
    """

    def __init__(self, node_types: list[str], edge_types: list[EdgeType], hidden: int, layers: int = 2,
                 heads: int = 2, dropout: float = 0.2, edge_dims: dict[EdgeType, int] | None = None) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden={hidden} is not divisible by heads={heads}")
        edge_dims = edge_dims or {}
        self.dropout = dropout
        self.convs = nn.ModuleList()
        self.roots = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.edge_types = list(edge_types)
        for _ in range(layers):
            self.convs.append(nn.ModuleDict({
                "__".join(et): GATConv((hidden, hidden), hidden // heads, heads=heads, concat=True,
                                       add_self_loops=False, edge_dim=edge_dims.get(et))
                for et in edge_types
            }))
            self.roots.append(nn.ModuleDict({t: nn.Linear(hidden, hidden) for t in node_types}))
            self.norms.append(nn.ModuleDict({t: nn.LayerNorm(hidden) for t in node_types}))
        self._local: dict[EdgeType, tuple[tuple[int, ...], Tensor, Tensor, Tensor]] = {}

    def _subgraph(self, et: EdgeType, edge_index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(source nodes, target nodes, edge_index renumbered into them) of a relation, cached per tensor."""
        key = (edge_index.data_ptr(), edge_index.shape[1], int(edge_index[:, :64].sum()))
        hit = self._local.get(et)
        if hit is None or hit[0] != key:
            src, src_inv = torch.unique(edge_index[0], return_inverse=True)
            dst, dst_inv = torch.unique(edge_index[1], return_inverse=True)
            hit = (key, src, dst, torch.stack([src_inv, dst_inv]))
            self._local[et] = hit
        return hit[1], hit[2], hit[3]

    def relation(self, layer: int, et: EdgeType, x_dict: dict[str, Tensor], edge_index: Tensor,
                 edge_attr: Tensor | None, trace: dict[str, Any] | None = None) -> tuple[Tensor, Tensor]:
        """Messages of relation ``et`` in ``layer``: (target node ids, their aggregated messages).

        With ``trace`` (a dict), the attention coefficients ``alpha`` [E, heads] and the edge index renumbered
        into the target nodes ``local_dst`` [E] are stored in it (for :mod:`qamrec.eval.graph_probe`)."""
        src, dst, local = self._subgraph(et, edge_index)
        conv = self.convs[layer]["__".join(et)]
        x = (x_dict[et[0]][src], x_dict[et[2]][dst])
        if trace is None:
            return dst, conv(x, local, edge_attr)
        msg, (ei, alpha) = conv(x, local, edge_attr, return_attention_weights=True)
        trace.update(alpha=alpha.detach(), local_dst=ei[1], dst=dst, msg=msg.detach())
        return dst, msg

    def forward(self, x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor],
                edge_attr_dict: dict[EdgeType, Tensor] | None = None,
                trace: dict[tuple[int, EdgeType], dict[str, Any]] | None = None) -> dict[str, Tensor]:
        """Node representations after every layer (same shapes as ``x_dict``).

        ``trace`` (optional) receives, per (layer, relation), what :meth:`relation` records, and per
        (layer, node type) under ``(layer, ("root", t, t))`` the self term ``msg``."""
        edge_attr_dict = edge_attr_dict or {}
        for layer, (root, norm) in enumerate(zip(self.roots, self.norms)):
            out = {t: root[t](x) for t, x in x_dict.items()}
            if trace is not None:
                for t, v in out.items():
                    trace[(layer, ("root", t, t))] = {"msg": v.detach()}
            for et, ei in edge_index_dict.items():
                if ei.shape[1] == 0:
                    continue
                rec = trace.setdefault((layer, et), {}) if trace is not None else None
                dst, msg = self.relation(layer, et, x_dict, ei, edge_attr_dict.get(et), rec)
                out[et[2]] = out[et[2]].index_add(0, dst, msg)
            new = {}
            for t, x in x_dict.items():
                m = out[t]
                m = nn.functional.dropout(nn.functional.elu(m), self.dropout, self.training)
                new[t] = norm[t](x + m)
            x_dict = new
        return x_dict
