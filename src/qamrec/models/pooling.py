"""QueryAwarePooling: attention over a query's node set, conditioned on the query."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter, softmax

__all__ = ["QueryAwarePooling"]


class QueryAwarePooling(nn.Module):
    r"""Pool a variable-size set of node representations per query, weighted by their relevance to it:

    .. math::
        \alpha_i = \mathrm{softmax}_{i \in S(q)}\big(\mathrm{MLP}([\mathbf{h}_i \,\|\, \mathbf{q} \,\|\,
            \mathbf{h}_i \odot \mathbf{q}])\big), \qquad
        \mathbf{g} = \sum_{i \in S(q)} \alpha_i \mathbf{h}_i,

    in the spirit of attention aggregation (Li et al., "Gated Graph Sequence Neural Networks", 2016, as in
    PyG's :class:`~torch_geometric.nn.aggr.AttentionalAggregation`), with the gate conditioned on the query.
    With ``roles > 0`` each member also has a role :math:`r_i` (why it is in the set: a movie the query names,
    a movie retrieved by text similarity, ...) and the logit gains a query-conditioned role term
    :math:`\langle \mathbf{e}_{r_i}, \mathbf{q} \rangle + c_{r_i}` (zero at initialisation), so a query can
    lean on the movies it names rather than on retrieved ones, which a mean cannot.
    With ``positions > 0`` a member the query names also has a recency :math:`t_i` (how many named members were
    mentioned after it, capped at ``positions - 1``) and the logit gains :math:`\langle \mathbf{p}_{t_i},
    \mathbf{q} \rangle + d_{t_i}` (zero at initialisation), so the movie a seeker just talked about can weigh
    more than one from the start of the conversation.
    ``mode="mean"`` gives the unweighted mean (the ablation). A query with an empty set gets :math:`\mathbf{g}=0`.

    Args:
        channels: width of node and query representations.
        mode: ``"attention"`` or ``"mean"``.
        roles: number of member roles (0: none).
        positions: number of recency positions (0: none).
    """

    def __init__(self, channels: int, mode: str = "attention", roles: int = 0, positions: int = 0) -> None:
        super().__init__()
        if mode not in ("attention", "mean"):
            raise ValueError(f"mode must be 'attention' or 'mean', not {mode!r}")
        self.mode = mode
        self.gate = nn.Sequential(nn.Linear(3 * channels, channels), nn.ReLU(), nn.Linear(channels, 1))
        if roles:
            self.role_emb = nn.Parameter(torch.zeros(roles, channels))
            self.role_bias = nn.Parameter(torch.zeros(roles))
        else:
            self.role_emb = self.role_bias = None
        if positions:
            self.pos_emb = nn.Parameter(torch.zeros(positions, channels))
            self.pos_bias = nn.Parameter(torch.zeros(positions))
        else:
            self.pos_emb = self.pos_bias = None

    def forward(self, h: Tensor, q: Tensor, batch: Tensor, weight: Tensor | None = None,
                role: Tensor | None = None, recency: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Pool ``h`` [N, C] (set members) by ``batch`` [N] (their query index) against ``q`` [B, C].

        ``weight`` [N] (optional) adds a log-prior to each member's logit (e.g. text-retrieval similarity);
        ``role`` [N] (optional, with ``roles > 0``) each member's role; ``recency`` [N] (optional, with
        ``positions > 0``) each member's recency, -1 for members the query does not name. Returns ``g`` [B, C]
        and the attention weights ``alpha`` [N] (they sum to 1 within each query).
        """
        size = q.shape[0]
        if h.shape[0] == 0:
            return q.new_zeros(q.shape), h.new_zeros(0)
        if self.mode == "mean":
            logits = torch.zeros(h.shape[0], device=h.device)
        else:
            qi = q[batch]
            logits = self.gate(torch.cat([h, qi, h * qi], dim=-1)).squeeze(-1)
            if self.role_emb is not None and role is not None and role.numel():
                logits = logits + (self.role_emb[role] * qi).sum(-1) + self.role_bias[role]
            if self.pos_emb is not None and recency is not None and recency.numel():
                named = recency >= 0
                t = recency.clamp(0, self.pos_emb.shape[0] - 1)
                term = (self.pos_emb[t] * qi).sum(-1) + self.pos_bias[t]
                logits = logits + torch.where(named, term, torch.zeros_like(term))
        if weight is not None:
            logits = logits + weight
        if size == 1:  # one query (serving): a plain softmax and product, without the scatter kernels
            alpha = torch.softmax(logits, dim=0)
            return (alpha @ h).unsqueeze(0), alpha
        alpha = softmax(logits, batch, num_nodes=size)
        g = scatter(alpha.unsqueeze(-1) * h, batch, dim=0, dim_size=size, reduce="sum")
        return g, alpha
