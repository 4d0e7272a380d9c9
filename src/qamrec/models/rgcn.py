r"""R-GCN with basis decomposition, computed per (target, relation) pair so a CPU handles graphs of tens of
thousands of nodes."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch_geometric.nn import RGCNConv

__all__ = ["BasisRGCNConv"]


class BasisRGCNConv(RGCNConv):
    r"""PyG's :class:`~torch_geometric.nn.conv.RGCNConv` (Schlichtkrull et al., ESWC 2018) with basis
    decomposition and mean aggregation: the same parameters and the same output,

    .. math::
        \mathbf{x}'_i = \mathbf{\Theta}_{root} \mathbf{x}_i + \mathbf{b} + \sum_{r} \frac{1}{|\mathcal{N}_r(i)|}
        \sum_{j \in \mathcal{N}_r(i)} \mathbf{\Theta}_r \mathbf{x}_j, \qquad
        \mathbf{\Theta}_r = \sum_{b=1}^{B} a_{rb} \mathbf{V}_b,

    evaluated in another order: the means :math:`\mathbf{m}_{ir}` over each (target, relation) pair that has
    edges come from one constant sparse product, then :math:`\mathbf{\Theta}_r \mathbf{m}_{ir}` is one dense
    product per relation over its pairs only. PyG's CPU path (without ``pyg-lib``) instead multiplies all
    :math:`N` nodes by every relation's :math:`d \times d` matrix; on the ReDial KG (31k nodes, 25 relation
    types) this order is several times faster.
    """

    def __init__(self, in_channels: int, out_channels: int, num_relations: int, num_bases: int | None = None,
                 **kwargs) -> None:
        super().__init__(in_channels, out_channels, num_relations, num_bases=num_bases, aggr="mean", **kwargs)

    def forward(self, x: Tensor, edge_index: Tensor, edge_type: Tensor) -> Tensor:  # type: ignore[override]
        """``x`` [N, in], ``edge_index`` [2, E] (source -> target), ``edge_type`` [E] -> [N, out]."""
        n = x.shape[0]
        src, dst = edge_index
        # one row per (relation, target) pair with edges, sorted by relation
        pairs, pair_of_edge = torch.unique(edge_type * n + dst, return_inverse=True)
        deg = torch.bincount(pair_of_edge, minlength=pairs.numel()).to(x.dtype)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            mean = torch.sparse_coo_tensor(torch.stack([pair_of_edge, src]), 1.0 / deg[pair_of_edge],
                                           (pairs.numel(), n), check_invariants=False).to_sparse_csr()
            m = mean @ x  # [P, in]
        weight = self.weight
        if self.num_bases is not None:
            weight = (self.comp @ weight.view(self.num_bases, -1)).view(self.num_relations, self.in_channels_l,
                                                                       self.out_channels)
        rel = torch.div(pairs, n, rounding_mode="floor")
        sizes = torch.bincount(rel, minlength=self.num_relations).tolist()
        h = torch.cat([part @ weight[r] for r, part in enumerate(m.split(sizes)) if part.numel()])
        out = torch.zeros(n, self.out_channels, dtype=h.dtype).index_add(0, pairs - rel * n, h)
        if self.root is not None:
            out = out + x @ self.root
        if self.bias is not None:
            out = out + self.bias
        return out
