"""GATEncoder: graph attention over a heterogeneous graph, one attention per relation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GATv2Conv

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
        attention: ``"gat"``, or ``"gatv2"`` for the dynamic attention of Brody et al. ("How Attentive are Graph
            Attention Networks?", ICLR 2022), :math:`\mathbf{a}_r^\top \mathrm{LeakyReLU}(\mathbf{W}_r
            [\mathbf{h}_i \| \mathbf{h}_j \| \mathbf{e}_{ij}])`: GAT's ranking of a target's neighbours is the
            same for every target (static), GATv2's can depend on the target.
    """

    def __init__(self, node_types: list[str], edge_types: list[EdgeType], hidden: int, layers: int = 2,
                 heads: int = 2, dropout: float = 0.2, edge_dims: dict[EdgeType, int] | None = None,
                 attention: str = "gat") -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden={hidden} is not divisible by heads={heads}")
        if attention not in ("gat", "gatv2"):
            raise ValueError(f"attention={attention!r} is neither 'gat' nor 'gatv2'")
        conv_cls = GATConv if attention == "gat" else GATv2Conv
        edge_dims = edge_dims or {}
        self.dropout = dropout
        self.convs = nn.ModuleList()
        self.roots = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.edge_types = list(edge_types)
        for _ in range(layers):
            self.convs.append(nn.ModuleDict({
                "__".join(et): conv_cls((hidden, hidden), hidden // heads, heads=heads, concat=True,
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
            hit = (key, *self._renumber(edge_index))
            self._local[et] = hit
        return hit[1], hit[2], hit[3]

    @staticmethod
    def _renumber(edge_index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(source nodes, target nodes, ``edge_index`` renumbered into them)."""
        src, src_inv = torch.unique(edge_index[0], return_inverse=True)
        dst, dst_inv = torch.unique(edge_index[1], return_inverse=True)
        return src, dst, torch.stack([src_inv, dst_inv])

    def relation(self, layer: int, et: EdgeType, x_dict: dict[str, Tensor], edge_index: Tensor,
                 edge_attr: Tensor | None, trace: dict[str, Any] | None = None,
                 cache: bool = True) -> tuple[Tensor, Tensor]:
        """Messages of relation ``et`` in ``layer``: (target node ids, their aggregated messages).

        With ``trace`` (a dict), the attention coefficients ``alpha`` [E, heads] and the edge index renumbered
        into the target nodes ``local_dst`` [E] are stored in it (for :mod:`qamrec.eval.graph_probe`).
        ``cache=False``: edges that are not the graph's (renumbered, not cached)."""
        src, dst, local = self._subgraph(et, edge_index) if cache else self._renumber(edge_index)
        conv = self.convs[layer]["__".join(et)]
        x = (x_dict[et[0]][src], x_dict[et[2]][dst])
        if trace is None:
            return dst, conv(x, local, edge_attr)
        msg, (ei, alpha) = conv(x, local, edge_attr, return_attention_weights=True)
        trace.update(alpha=alpha.detach(), local_dst=ei[1], dst=dst, msg=msg.detach())
        return dst, msg

    def forward(self, x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor],
                edge_attr_dict: dict[EdgeType, Tensor] | None = None,
                trace: dict[tuple[int, EdgeType], dict[str, Any]] | None = None,
                states: list[dict[str, Tensor]] | None = None, cache: bool = True) -> dict[str, Tensor]:
        """Node representations after every layer (same shapes as ``x_dict``).

        ``trace`` (optional) receives, per (layer, relation), what :meth:`relation` records, and per
        (layer, node type) under ``(layer, ("root", t, t))`` the self term ``msg``. ``states`` (optional, a
        list) receives each layer's input ``x_dict`` (for :meth:`inductive`). ``cache=False``: the edges are not
        the graph's own (e.g. some removed in training), so their renumbering is not cached."""
        edge_attr_dict = edge_attr_dict or {}
        for layer, (root, norm) in enumerate(zip(self.roots, self.norms)):
            if states is not None:
                states.append(x_dict)
            out = {t: root[t](x) for t, x in x_dict.items()}
            if trace is not None:
                for t, v in out.items():
                    trace[(layer, ("root", t, t))] = {"msg": v.detach()}
            for et, ei in edge_index_dict.items():
                if ei.shape[1] == 0:
                    continue
                rec = trace.setdefault((layer, et), {}) if trace is not None else None
                dst, msg = self.relation(layer, et, x_dict, ei, edge_attr_dict.get(et), rec, cache)
                out[et[2]] = out[et[2]].index_add(0, dst, msg)
            new = {}
            for t, x in x_dict.items():
                m = out[t]
                m = nn.functional.dropout(nn.functional.elu(m), self.dropout, self.training)
                new[t] = norm[t](x + m)
            x_dict = new
        return x_dict

    def inductive(self, states: list[dict[str, Tensor]], x: Tensor, node_type: str,
                  links: dict[EdgeType, Tensor]) -> Tensor:
        r"""Representations of new nodes of ``node_type`` that the graph does not hold (inputs ``x`` [n, hidden]).

        Each layer applies the trained update of :meth:`forward` to them,
        :math:`\mathbf{h}'_i = \mathrm{LayerNorm}(\mathbf{h}_i + \mathrm{ELU}(\mathbf{W}_0 \mathbf{h}_i +
        \sum_r \sum_j \alpha^r_{ij} \mathbf{W}_r \mathbf{h}_j))`, where the neighbours :math:`j` are graph nodes
        given by ``links`` (relation -> ``edge_index`` [2, E] from a graph node of the relation's source type
        to a new node) and :math:`\mathbf{h}_j` their layer inputs ``states`` of a full :meth:`forward` pass.
        The graph's own nodes are left as they are (the new nodes send no messages), so this is the inductive
        use of GAT (Veličković et al., section 3.3): a new node with no link gets the isolated-node output.
        """
        for layer, (root, norm) in enumerate(zip(self.roots, self.norms)):
            m = root[node_type](x)
            for et, ei in links.items():
                key = "__".join(et)
                if et[2] != node_type or ei.shape[1] == 0 or key not in self.convs[layer]:
                    continue
                src, dst, local = self._renumber(ei)  # not cached: these edges are not the graph's
                msg = self.convs[layer][key]((states[layer][et[0]][src], x[dst]), local)
                m = m.index_add(0, dst, msg)
            x = norm[node_type](x + nn.functional.elu(m))
        return x
