"""ContextNeighbours: the answers of the training requests most like the query, added to the model's scores."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from qamrec.eval.choice import dev_choice
from qamrec.eval.protocol import CRSExample
from qamrec.models.memory import csr_gather

__all__ = ["ContextNeighbours"]


class ContextNeighbours(nn.Module):
    r"""A vote of the :math:`k` training examples whose context is most similar to the query:

    .. math::
        v_j = \sum_{i \in N_k(q)} \max(\sigma(q, i), 0)\; [y_i = j], \qquad
        s_j \mathrel{+}= w\, \frac{v_j}{\max_{j'} v_{j'}},

    with :math:`y_i` example :math:`i`'s answer (every candidate that names its movie, where
    ``candidate_movies`` says which movie each candidate is) and :math:`\sigma` the cosine of the two contexts' text
    embeddings (``text``), or its mean with the cosine of the sets of movies the two contexts name (``both``;
    a query that names none falls back to the text alone, scaled). User-based neighbourhood collaborative
    filtering (Herlocker et al., SIGIR 1999) with requests as the users: ReDial answers repeat across requests
    worded alike, more than a model with a few dozen dimensions per movie keeps.

    Like :class:`~qamrec.models.memory.CoMention`, :math:`w` is not learned: the training examples would find
    themselves. :meth:`remember` stores the training examples after training and :meth:`choose` sets ``both``
    and :math:`w` on the dev examples (whose dialogues are not among the stored ones) by the same
    standard-error rule. The stored embeddings are saved with the model (float16).

    The vote goes to the answer's movie, not only to the entity id the answer used: the dev answers, read from
    the raw dialogues, always use the catalog's id of a movie the dataset names twice, and a vote for that id
    alone broke the tie with the other id in the dev answer's favour. On ReDial (seed 0) that tie was more than
    half of the vote's dev gain (NDCG@10 +0.011 per id, +0.005 per movie), a gain the test, whose answers use
    either id, could not repeat.
    """

    #: the weights :meth:`choose` tries (0: without the vote)
    GRID = (0.0, 1.0, 2.0, 4.0)

    def __init__(self, n_movies: int, n_candidates: int, k: int = 200,
                 candidate_movies: Tensor | None = None) -> None:
        super().__init__()
        self.n_movies, self.n_candidates, self.k = n_movies, n_candidates, k
        #: each candidate's movie node (``None``: every candidate its own movie)
        self.register_buffer("candidate_movies", candidate_movies, persistent=False)
        #: whether the votes go to the answer's movie (saved: a model saved before voted for the answer's id)
        self.register_buffer("per_movie", torch.tensor(candidate_movies is not None))
        self.register_buffer("keys", torch.zeros(0, 0, dtype=torch.float16))  # [n, D] normalized contexts
        self.register_buffer("gold", torch.zeros(0, dtype=torch.long))  # [n] answer columns
        self.register_buffer("inv_ptr", torch.zeros(n_movies + 1, dtype=torch.long))  # movie -> examples (CSR)
        self.register_buffer("inv_rows", torch.zeros(0, dtype=torch.long))
        self.register_buffer("both", torch.tensor(False))
        self.weight = nn.Parameter(torch.tensor(0.0), requires_grad=False)
        self._keys32: Tensor | None = None  # [D, n] float32 for scoring, made on first use (2x faster than [n, D])
        self._sizes: Tensor | None = None  # how many movies each stored example names

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        state_dict.setdefault(prefix + "per_movie", torch.tensor(False))  # saved before the votes went per movie
        # the stored examples' count is known only from the file: take the saved shapes
        for name in ("keys", "gold", "inv_ptr", "inv_rows"):
            if (t := state_dict.get(prefix + name)) is not None:
                self._buffers[name] = torch.empty_like(t)
        self._keys32 = self._sizes = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __len__(self) -> int:
        return int(self.gold.numel())

    @property
    def active(self) -> bool:
        """Whether the scores get the vote: examples, a weight, and eval mode."""
        return not self.training and bool(self.weight != 0) and len(self) > 0

    @torch.no_grad()
    def remember(self, text: Tensor, gold: Tensor, anchors: Tensor, anchor_batch: Tensor) -> None:
        """Store the training examples: their context embeddings ``text`` [n, D], answer columns ``gold`` [n]
        and the movie nodes each names (``anchors`` [M] of example ``anchor_batch`` [M])."""
        self.keys = nn.functional.normalize(text.float(), dim=1).half()
        self.gold = gold.long().clone()
        pairs = torch.unique(anchors * len(gold) + anchor_batch) if anchors.numel() else anchors
        movie, row = pairs // max(len(gold), 1), pairs % max(len(gold), 1)  # sorted by movie
        self.inv_ptr = torch.cat([torch.zeros(1, dtype=torch.long),
                                  torch.bincount(movie, minlength=self.n_movies).cumsum(0)])
        self.inv_rows = row.contiguous()
        self._keys32 = self._sizes = None

    def _set_overlap(self, anchors: Tensor, anchor_batch: Tensor, batch_size: int) -> Tensor:
        r"""``[batch_size, n]`` the cosine of each query's named movies with each stored example's."""
        n = len(self)
        out = torch.zeros(batch_size, n)
        if not anchors.numel():
            return out
        pairs = torch.unique(anchor_batch * self.n_movies + anchors)  # each named movie once per query
        b, a = pairs // self.n_movies, pairs % self.n_movies
        at, owner = csr_gather(self.inv_ptr, a)
        if at.numel():
            out.index_put_((b[owner], self.inv_rows[at]), torch.ones(at.numel()), accumulate=True)
        if self._sizes is None:
            self._sizes = torch.bincount(self.inv_rows, minlength=n).float()
        q_size = torch.bincount(b, minlength=batch_size).float()
        return out / (q_size[:, None] * self._sizes[None]).sqrt().clamp(min=1.0)

    @torch.no_grad()
    def term(self, text: Tensor, anchors: Tensor, anchor_batch: Tensor, both: bool | None = None,
             chunk: int = 512) -> Tensor:
        """``[B, n_candidates]`` the votes, divided by each query's largest (0 with nothing stored);
        ``both`` overrides the stored choice."""
        both = bool(self.both) if both is None else both
        out = torch.zeros(text.shape[0], self.n_candidates)
        if not len(self):
            return out
        if self._keys32 is None:
            self._keys32 = self.keys.float().T.contiguous()
        q = nn.functional.normalize(text.float(), dim=1)
        k = min(self.k, len(self))
        for s in range(0, len(q), chunk):
            e = min(s + chunk, len(q))
            sim = q[s:e] @ self._keys32
            if both:
                keep = (anchor_batch >= s) & (anchor_batch < e)
                sim = 0.5 * sim + 0.5 * self._set_overlap(anchors[keep], anchor_batch[keep] - s, e - s)
            val, idx = torch.topk(sim, k, dim=1)
            out[s:e].scatter_add_(1, self.gold[idx], val.clamp(min=0.0))
        if self.candidate_movies is not None and bool(self.per_movie):  # to every candidate of the movie
            m = self.candidate_movies
            out = torch.zeros(len(out), self.n_movies).index_add_(1, m, out)[:, m]
        return out / out.amax(dim=1, keepdim=True).clamp(min=1e-9)

    def forward(self, text: Tensor, anchors: Tensor, anchor_batch: Tensor) -> Tensor:
        """``[B, n_candidates]`` what the vote adds to the scores (its weight times :meth:`term`)."""
        return self.weight * self.term(text, anchors, anchor_batch)

    @torch.no_grad()
    def choose(self, base: np.ndarray, text: Tensor, anchors: Tensor, anchor_batch: Tensor,
               examples: Sequence[CRSExample], item_ids: Sequence[int],
               in_test_file: Sequence[bool] = ()) -> list[dict[str, Any]]:
        """Set ``both`` and the weight to the setting of (``text``, ``both``) x :data:`GRID` with the best dev
        NDCG@10 of ``base + w * term`` (:func:`~qamrec.eval.choice.dev_choice`: 0 unless the gain is more than
        one standard error). Returns each setting's dev metrics (with ``in_test_file``: also the gain on the
        flagged examples, :func:`~qamrec.eval.choice.dev_choice`)."""
        terms = {kind: self.term(text, anchors, anchor_batch, both=kind == "both").numpy()
                 for kind in ("text", "both")}
        settings = chain([({"kind": "none", "weight": 0.0}, base)],
                         (({"kind": kind, "weight": float(w)}, base + np.float32(w) * t)
                          for kind, t in terms.items() for w in self.GRID if w))  # one setting's scores at a time
        rows, best = dev_choice(settings, examples, item_ids, in_test_file)
        self.both.fill_(rows[best]["kind"] == "both")
        self.weight.fill_(rows[best]["weight"])
        return rows
