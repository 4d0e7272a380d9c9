"""A user-conditioned mixture of an item's semantic modalities (MSMRec-style; Yu et al.).

Every item :math:`i` has :math:`K` modality embeddings :math:`e_{i,k}` (frozen text embeddings of e.g. its title and
genres, its plot, its metadata, each projected to the model dimension by its own linear map :math:`W_k`). Given a
user / query vector :math:`u`, the gate weighs them by how well they match the user and adds the mixture to the
item's ID embedding :math:`e_i`:

.. math::
    e_{i,k} = W_k x_{i,k}, \\qquad
    \\alpha_{u,i,k} = \\operatorname{softmax}_k \\frac{\\langle u, e_{i,k} \\rangle}{\\tau}, \\qquad
    \\hat e_{u,i} = e_i + \\sum_k \\alpha_{u,i,k}\\, e_{i,k}.

A modality an item lacks (no plot known) is masked out of the softmax; its weights over the others still sum to 1.
The score of item :math:`i` for :math:`u` is :math:`\\langle u, \\hat e_{u,i} \\rangle = \\langle u, e_i \\rangle +
\\sum_k \\alpha_{u,i,k} \\langle u, e_{i,k} \\rangle`, which :meth:`ModalityGate.score` computes for a whole catalogue
without materialising :math:`\\hat e` per user. The weights :math:`\\alpha` are returned, so a caller can report
which modality decided a recommendation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["ModalityGate"]


class ModalityGate(nn.Module):
    """Projects frozen per-modality item features and mixes them per user.

    Args:
        in_dims: the feature dimension of each of the :math:`K` modalities.
        dim: the model dimension :math:`d`.
        dropout: dropout on the projected modality embeddings (training only).
        temperature: :math:`\\tau` of the softmax over modalities.
        names: a name per modality, for reports.
    """

    def __init__(self, in_dims: Sequence[int], dim: int, dropout: float = 0.0, temperature: float = 1.0,
                 names: Sequence[str] | None = None) -> None:
        super().__init__()
        if not in_dims:
            raise ValueError("at least one modality is needed")
        if names is not None and len(names) != len(in_dims):
            raise ValueError(f"{len(names)} names for {len(in_dims)} modalities")
        self.names = list(names) if names is not None else [f"modality_{k}" for k in range(len(in_dims))]
        self.proj = nn.ModuleList(nn.Linear(d_in, dim, bias=False) for d_in in in_dims)
        self.drop = nn.Dropout(dropout)
        self.temperature = temperature

    @property
    def n_modalities(self) -> int:
        return len(self.proj)

    def project(self, features: Sequence[Tensor]) -> Tensor:
        """``[K, N, d]`` modality embeddings :math:`e_{i,k} = W_k x_{i,k}` of ``K`` feature tables ``[N, D_k]``."""
        if len(features) != self.n_modalities:
            raise ValueError(f"{len(features)} feature tables for {self.n_modalities} modalities")
        return self.drop(torch.stack([p(x) for p, x in zip(self.proj, features, strict=True)]))

    def _weights(self, logits: Tensor, mask: Tensor | None) -> Tensor:
        if self.temperature != 1.0:
            logits = logits / self.temperature
        if mask is None:
            return torch.softmax(logits, dim=-1)
        # a large negative number, not -inf: an item with no modality at all gets weights 0, not NaN
        return torch.softmax(logits.masked_fill(~mask, -1e9), dim=-1) * mask

    def mix(self, query: Tensor, item: Tensor, modal: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mixed embeddings of given candidates.

        Args:
            query: ``[B, d]`` user vectors :math:`u`.
            item: ``[B, C, d]`` ID embeddings :math:`e_i` of each user's candidates.
            modal: ``[B, C, K, d]`` their modality embeddings :math:`e_{i,k}`.
            mask: ``[B, C, K]`` bool, the modality exists for the item (default: all).

        Returns:
            ``(ê [B, C, d], α [B, C, K])``.
        """
        alpha = self._weights(torch.einsum("bd,bckd->bck", query, modal), mask)
        return item + (alpha.unsqueeze(-1) * modal).sum(-2), alpha

    def terms(self, query: Tensor, modal: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The mixture's part of the scores, :math:`\\sum_k \\alpha_{u,i,k} \\langle u, e_{i,k} \\rangle`, and
        :math:`\\alpha`, for items laid out item-major (what a server keeps for its candidates).

        Args:
            query: ``[B, d]``.
            modal: ``[N, K, d]`` modality embeddings (:meth:`project`, transposed to item-major).
            mask: ``[N, K]`` bool, the modality exists for the item (default: all).

        Returns:
            ``(terms [B, N], α [B, N, K])``; an item with no modality gets term 0 and weights 0.
        """
        n, k, d = modal.shape
        logits = (modal.reshape(n * k, d) @ query.T).T.reshape(-1, n, k)  # [B, N, K]: <u, e_{i,k}>
        alpha = self._weights(logits, None if mask is None else mask.unsqueeze(0))
        return (alpha * logits).sum(-1), alpha

    def score(self, query: Tensor, item: Tensor, modal: Tensor, mask: Tensor | None = None,
              ) -> tuple[Tensor, Tensor]:
        """Scores of a whole catalogue, :math:`\\langle u, \\hat e_{u,i} \\rangle`.

        Args:
            query: ``[B, d]``.
            item: ``[N, d]`` ID embeddings of the catalogue.
            modal: ``[K, N, d]`` modality embeddings (:meth:`project`).
            mask: ``[N, K]`` bool, the modality exists for the item (default: all).

        Returns:
            ``(scores [B, N], α [B, N, K])``.
        """
        k, n, d = modal.shape
        # one product for the ID and every modality embedding: [B, 1 + K, N], channel 0 = <u, e_i>
        both = (query @ torch.cat([item.unsqueeze(0), modal]).reshape((1 + k) * n, d).T).view(-1, 1 + k, n)
        # additive mask: channel 0 and missing modalities get -1e9, so their softmax weight is exactly 0; then
        # score = sum_c (alpha_c + [c = 0]) * both_c  (no slicing of the large tensor, whose backward is costly)
        bias = both.new_zeros(1 + k, n)
        bias[0] = -1e9
        if mask is not None:
            bias[1:] = (~mask).T.to(both.dtype) * -1e9
        logits = both / self.temperature if self.temperature != 1.0 else both
        alpha = torch.softmax(logits + bias, dim=1)
        if mask is not None and not bool(mask.any(-1).all()):  # an item with no modality: weights 0, not uniform
            alpha = alpha * torch.cat([mask.new_zeros(1, n), mask.T]).to(both.dtype)
        one = both.new_zeros(1 + k, 1)
        one[0] = 1.0
        return (both * (alpha + one)).sum(1), alpha[:, 1:].transpose(1, 2)
