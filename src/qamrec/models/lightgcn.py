r"""LightGCN propagation over item-item semantic graphs, and the graphs MSCRS builds (kNN and co-mention).

LightGCN (He et al., SIGIR 2020) propagates without weights or non-linearities and averages the layers:

.. math::
    \mathbf{E}^{(l+1)} = \mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2} \mathbf{E}^{(l)}, \qquad
    \mathbf{E} = \frac{1}{L+1} \sum_{l=0}^{L} \mathbf{E}^{(l)},

with :math:`\mathbf{D}_{ii} = \sum_j \mathbf{A}_{ij}` (an isolated node keeps only its layer-0 share). MSCRS
(Wei et al., SIGIR 2025) runs it on three item graphs: the collaborative one (co-mentions) and the text and image
similarity graphs built by :func:`knn_graph`.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torch_geometric.nn import LGConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import coalesce, to_undirected

__all__ = ["LightGCNEncoder", "knn_graph", "comention_graph"]


def knn_graph(x: Tensor, k: int, mask: Tensor | None = None, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    r"""The weighted kNN similarity graph of MSCRS over the rows of ``x``.

    :math:`\mathbf{S}_{ij} = \cos(\mathbf{x}_i, \mathbf{x}_j)`, negatives set to 0; every row keeps its ``k``
    largest entries (self excluded; zero entries are never edges), and the graph is made **symmetric** by
    taking the union of both directions, :math:`\mathbf{A} = \max(\mathbf{S}^{k}, (\mathbf{S}^{k})^\top)`, so
    an item may end with more than ``k`` edges. Rows outside ``mask`` (e.g. movies without a poster) take no
    part. Returns ``edge_index`` [2, E] (both directions) and ``edge_weight`` [E] (the cosine).
    """
    idx = torch.arange(x.shape[0]) if mask is None else mask.nonzero().view(-1)
    if k <= 0 or idx.numel() < 2:
        return torch.empty(2, 0, dtype=torch.long), torch.empty(0)
    z = nn.functional.normalize(x[idx].float(), dim=1)
    k = min(k, idx.numel() - 1)
    rows, cols, vals = [], [], []
    for s in range(0, z.shape[0], chunk):
        sim = z[s:s + chunk] @ z.T
        sim[torch.arange(sim.shape[0]), torch.arange(s, s + sim.shape[0])] = -1.0  # no self loops
        val, nb = sim.clamp(min=0.0).topk(k, dim=1)
        keep = val > 0
        rows.append(idx[torch.arange(s, s + sim.shape[0]).unsqueeze(1).expand_as(nb)[keep]])
        cols.append(idx[nb[keep]])
        vals.append(val[keep])
    ei, w = to_undirected(torch.stack([torch.cat(rows), torch.cat(cols)]), torch.cat(vals), x.shape[0],
                          reduce="max")
    return ei, w


def comention_graph(mentions: Tensor, n_items: int, min_count: int = 1) -> Tensor:
    r"""The collaborative graph: an edge :math:`i \leftrightarrow j` when :math:`\mathbf{C}_{ij} \ge` ``min_count``,
    :math:`\mathbf{C}_{ij}` = the number of conversations mentioning both ``i`` and ``j`` (``i != j``).

    ``mentions`` [2, M] holds (conversation, item) pairs (repeats count once). Unweighted and symmetric, as in
    the MSCRS code; returns ``edge_index`` [2, E] with both directions.
    """
    if mentions.numel() == 0:
        return torch.empty(2, 0, dtype=torch.long)
    pairs = coalesce(mentions)
    n_conv = int(pairs[0].max()) + 1
    m = torch.sparse_coo_tensor(pairs, torch.ones(pairs.shape[1]), (n_conv, n_items), check_invariants=False)
    with warnings.catch_warnings():  # "sparse CSR support is in beta", raised inside the product
        warnings.simplefilter("ignore", UserWarning)
        c = torch.sparse.mm(m.t().coalesce(), m.coalesce()).coalesce()
    ei, cnt = c.indices(), c.values()
    keep = (ei[0] != ei[1]) & (cnt >= min_count)
    return ei[:, keep]


class LightGCNEncoder(nn.Module):
    r"""``layers`` parameter-free :class:`~torch_geometric.nn.conv.LGConv` steps, averaged over layers 0..L.

    The symmetric normalisation :math:`\mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}` is computed once per graph
    with :meth:`normalize` (``gcn_norm`` without self loops) and passed as ``edge_weight``.
    """

    def __init__(self, layers: int = 3) -> None:
        super().__init__()
        self.layers = layers
        self.conv = LGConv(normalize=False)

    @staticmethod
    def normalize(edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int) -> Tensor:
        """The weights of :math:`\\mathbf{D}^{-1/2}\\mathbf{A}\\mathbf{D}^{-1/2}` for a symmetric ``edge_index``."""
        _, w = gcn_norm(edge_index, edge_weight, num_nodes, add_self_loops=False)
        return w

    def forward(self, x: Tensor, edge_index: Tensor, norm_weight: Tensor) -> Tensor:
        """Mean of :math:`\\mathbf{E}^{(0)} = x, \\dots, \\mathbf{E}^{(L)}` [N, D]."""
        out, h = x, x
        for _ in range(self.layers):
            h = self.conv(h, edge_index, norm_weight)
            out = out + h
        return out / (self.layers + 1)
