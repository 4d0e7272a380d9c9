"""SASRec with a user-conditioned mixture of semantic modalities (MSMRec-style; Yu et al.).

The sequence encoder is :class:`~qamrec.models.sasrec.SASRec`. Items enter the sequence as their ID embedding
plus a static mixture of their modality embeddings,

.. math::
    x_i = e_i + \\sum_k \\beta_k e_{i,k}, \\qquad \\beta = \\operatorname{softmax}(w) \\text{ over its modalities},

and are scored with the user-conditioned gate of :class:`~qamrec.models.modality.ModalityGate`, the user vector
being the encoder's state :math:`h_t`:

.. math::
    r_{t,i} = \\langle h_t, e_i \\rangle + \\sum_k \\alpha_{t,i,k} \\langle h_t, e_{i,k} \\rangle, \\qquad
    \\alpha_{t,i,k} = \\operatorname{softmax}_k \\langle h_t, e_{i,k} \\rangle / \\tau.

The modality projections start at zero, so an untrained mixture scores exactly like its SASRec; loading a trained
SASRec's weights (``load_state_dict(sasrec.state_dict(), strict=False)``) and training on is a warm start.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qamrec.models.modality import ModalityGate
from qamrec.models.sasrec import SASRec

__all__ = ["MSMRec"]


class MSMRec(SASRec):
    """SASRec whose item representations mix frozen modality features by a user-conditioned gate.

    Args:
        n_items: catalogue size (items ``1..n_items``, ``0`` pads).
        features: ``K`` frozen feature tables ``[n_items + 1, D_k]`` (row 0, padding, is ignored).
        mask: ``[n_items + 1, K]`` bool, the item has modality ``k`` (default: all).
        names: a name per modality.
        temperature: :math:`\\tau` of the gate.
        modality_dropout: dropout on the projected modality embeddings.
        **kwargs: the :class:`SASRec` arguments (``dim``, ``max_len``, ``blocks``, ``heads``, ``dropout``, ``loss``).
    """

    def __init__(self, n_items: int, features: Sequence[Tensor], mask: Tensor | None = None,
                 names: Sequence[str] | None = None, temperature: float = 1.0, modality_dropout: float = 0.2,
                 **kwargs) -> None:
        super().__init__(n_items, **kwargs)
        for k, f in enumerate(features):
            if f.shape[0] != n_items + 1:
                raise ValueError(f"feature table {k} has {f.shape[0]} rows, expected {n_items + 1}")
            self.register_buffer(f"feature_{k}", f.detach().float().clone(), persistent=True)
        self.n_modalities = len(features)
        m = torch.ones(n_items + 1, len(features), dtype=torch.bool) if mask is None else mask.bool().clone()
        m[0] = False
        self.register_buffer("modality_mask", m, persistent=True)
        self.gate = ModalityGate([f.shape[1] for f in features], self.dim, dropout=modality_dropout,
                                 temperature=temperature, names=names)
        self.input_logits = nn.Parameter(torch.zeros(len(features)))
        for proj in self.gate.proj:  # e_{i,k} = 0 at the start: the model starts as the plain SASRec
            nn.init.zeros_(proj.weight)

    @property
    def names(self) -> list[str]:
        return self.gate.names

    def modal_table(self) -> Tensor:
        """``[K, n_items + 1, d]`` projected modality embeddings :math:`e_{i,k}` (0 where an item lacks one)."""
        feats = [getattr(self, f"feature_{k}") for k in range(self.n_modalities)]
        return self.gate.project(feats) * self.modality_mask.T.unsqueeze(-1)

    def embed_items(self, seq: Tensor) -> Tensor:
        modal = self.modal_table()
        mask = self.modality_mask
        beta = torch.softmax(self.input_logits.expand_as(mask).masked_fill(~mask, -1e9), dim=-1) * mask
        table = self.item_table() + torch.einsum("nk,knd->nd", beta, modal)
        return F.embedding(seq, table, padding_idx=0)

    def scores_and_weights(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """``h [..., d]`` -> ``(scores [..., n_items + 1], α [..., n_items + 1, K])``; column 0 scores ``-inf``."""
        lead = h.shape[:-1]
        s, alpha = self.gate.score(h.reshape(-1, self.dim), self.item_table(), self.modal_table(), self.modality_mask)
        s = s.index_fill(-1, torch.tensor([0], device=s.device), float("-inf"))
        return s.reshape(*lead, -1), alpha.reshape(*lead, *alpha.shape[-2:])

    def logits(self, h: Tensor) -> Tensor:
        lead = h.shape[:-1]
        s, _ = self.gate.score(h.reshape(-1, self.dim), self.item_table()[1:], self.modal_table()[:, 1:],
                               self.modality_mask[1:])
        return s.reshape(*lead, -1)

    def pair_scores(self, h: Tensor, items: Tensor) -> Tensor:
        modal = self.modal_table().transpose(0, 1)[items]  # [N, C, K, d]
        mixed, _ = self.gate.mix(h, self.item_table()[items], modal, self.modality_mask[items])
        return (h.unsqueeze(1) * mixed).sum(-1)

    @torch.no_grad()
    def predict_with_weights(self, seq: Tensor) -> tuple[Tensor, Tensor]:
        """Next-item scores ``[B, n_items + 1]`` and the gate's weights ``[B, n_items + 1, K]``."""
        return self.scores_and_weights(self.last_hidden(seq))
