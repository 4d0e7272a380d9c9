"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

A user's last :math:`L` items :math:`s_1..s_L` (left-padded with index 0) are embedded with a shared item table
and a learned position table,

.. math::
    h^{(0)}_t = \\sqrt{d}\\, E_{s_t} + P_t,

passed through :math:`B` causal self-attention blocks (pre-LayerNorm, as the authors' code does; position
:math:`t` attends to positions :math:`\\le t` that are not padding),

.. math::
    h \\leftarrow h + \\mathrm{Drop}(\\mathrm{MHA}(\\mathrm{LN}(h))), \\qquad
    h \\leftarrow h + \\mathrm{Drop}(\\mathrm{FFN}(\\mathrm{LN}(h))),

and a final LayerNorm. The next item after position :math:`t` is scored with the shared item table,
:math:`r_{t,i} = \\langle h_t, E_i \\rangle`. Training follows the paper (``loss="bce"``: binary cross-entropy on
the true next item and one sampled negative per position) or the full softmax over all items
(``loss="ce"``, usually stronger; Petrov & Macdonald, RecSys 2023).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SASRec"]


class _Block(nn.Module):
    """One pre-LN transformer block: causal multi-head self-attention, then a point-wise feed-forward net."""

    def __init__(self, dim: int, heads: int, dropout: float, ffn_dim: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, allowed: Tensor) -> Tensor:
        b, n, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        h = h + self.drop(self.out(a.transpose(1, 2).reshape(b, n, d)))
        return h + self.drop(self.ffn(self.ln2(h)))


class SASRec(nn.Module):
    """Self-attentive sequential recommender (Kang & McAuley 2018).

    Args:
        n_items: catalogue size; items are ``1..n_items``, ``0`` is padding.
        dim: hidden size :math:`d`.
        max_len: longest history read (the paper uses 200 for MovieLens).
        blocks: number of self-attention blocks.
        heads: attention heads per block.
        dropout: dropout on the embeddings, the attention and feed-forward outputs and inside the feed-forward net
            (not on the attention weights: on a CPU their Bernoulli draws cost more than the rest of a block).
        ffn_dim: feed-forward hidden size (default :math:`d`, as in the paper).
        loss: ``"ce"`` (softmax over all items) or ``"bce"`` (one sampled negative per position, the paper's).

    ``forward(seq)`` maps left-padded ``[B, L]`` item indices (``L <= max_len``) to ``[B, L, d]`` hidden states;
    ``scores(h)`` gives ``[..., n_items + 1]`` scores of every item (column 0, padding, is ``-inf``).
    """

    def __init__(self, n_items: int, dim: int = 64, max_len: int = 200, blocks: int = 2, heads: int = 1,
                 dropout: float = 0.2, ffn_dim: int | None = None, loss: str = "ce") -> None:
        super().__init__()
        if loss not in ("ce", "bce"):
            raise ValueError(f"loss must be 'ce' or 'bce', got {loss!r}")
        self.n_items, self.dim, self.max_len, self.loss_type = n_items, dim, max_len, loss
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, dim)
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(dim, heads, dropout, ffn_dim or dim) for _ in range(blocks))
        self.norm = nn.LayerNorm(dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)
            elif "norm" in name or "ln" in name:
                nn.init.ones_(p) if name.endswith("weight") else nn.init.zeros_(p)
            else:
                nn.init.zeros_(p)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def item_table(self) -> Tensor:
        """``[n_items + 1, d]`` item embeddings used for the input sequence and for scoring."""
        return self.item_emb.weight

    def embed_items(self, seq: Tensor) -> Tensor:
        """``[B, L, d]`` input embeddings of the items of ``seq`` (before positions)."""
        return F.embedding(seq, self.item_table(), padding_idx=0)

    def forward(self, seq: Tensor) -> Tensor:
        b, n = seq.shape
        if n > self.max_len:
            raise ValueError(f"sequence length {n} > max_len {self.max_len}")
        real = seq > 0
        pos = torch.arange(self.max_len - n, self.max_len, device=seq.device)
        h = self.embed_items(seq) * math.sqrt(self.dim) + self.pos_emb(pos)
        h = self.emb_drop(h) * real.unsqueeze(-1)
        causal = torch.ones(n, n, dtype=torch.bool, device=seq.device).tril()
        # a query attends to earlier non-padding keys, and always to itself (no empty rows for padding queries)
        allowed = (causal & real[:, None, :]) | torch.eye(n, dtype=torch.bool, device=seq.device)
        allowed = allowed.unsqueeze(1)
        for block in self.blocks:
            h = block(h, allowed) * real.unsqueeze(-1)
        return self.norm(h)

    def logits(self, h: Tensor) -> Tensor:
        """``[..., n_items]`` scores :math:`\\langle h, E_i \\rangle` of the real items, column ``i - 1`` for item ``i``
        (what the loss uses; no padding column)."""
        return h @ self.item_table()[1:].T

    def scores(self, h: Tensor) -> Tensor:
        """``[..., n_items + 1]`` scores, column ``i`` for item ``i``; column 0 (padding) is ``-inf``."""
        s = self.logits(h)
        return torch.cat([s.new_full((*s.shape[:-1], 1), float("-inf")), s], dim=-1)

    def pair_scores(self, h: Tensor, items: Tensor) -> Tensor:
        """Scores of given items: ``h [N, d]``, ``items [N, C]`` -> ``[N, C]``."""
        return (h.unsqueeze(1) * self.item_table()[items]).sum(-1)

    def last_hidden(self, seq: Tensor) -> Tensor:
        """``[B, d]`` the state after the last (most recent) item of each left-padded sequence."""
        return self.forward(seq)[:, -1]

    @torch.no_grad()
    def predict(self, seq: Tensor) -> Tensor:
        """``[B, n_items + 1]`` next-item scores of left-padded sequences (eval mode is the caller's)."""
        return self.scores(self.last_hidden(seq))

    def loss(self, seq: Tensor, target: Tensor, negatives: Tensor | None = None) -> Tensor:
        """Mean next-item loss over the non-padding positions of ``target``.

        Args:
            seq: ``[B, L]`` left-padded inputs.
            target: ``[B, L]`` the item after each input position (0 where there is none).
            negatives: ``[B, L]`` one sampled negative per position, for ``loss="bce"``.
        """
        h = self.forward(seq)
        keep = target > 0
        h, tgt = h[keep], target[keep]
        if self.loss_type == "ce":
            return F.cross_entropy(self.logits(h), tgt - 1)
        if negatives is None:
            raise ValueError("loss='bce' needs negatives")
        s = self.pair_scores(h, torch.stack([tgt, negatives[keep]], dim=1))
        labels = torch.zeros_like(s)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(s, labels)
