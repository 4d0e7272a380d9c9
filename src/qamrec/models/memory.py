"""CoMention: an item-to-item memory of the training dialogues, added to the model's scores."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from qamrec.eval.choice import dev_choice
from qamrec.eval.protocol import CRSExample
from qamrec.graph.store import Graph, candidate_columns

__all__ = ["CoMention", "MENTIONS", "co_mention_table", "csr_gather"]

#: the graph relation whose co-occurrences the memory counts
MENTIONS = ("dialogue", "mentions", "movie")


class CoMention(nn.Module):
    r"""How often the movies a query names were mentioned with each candidate in the training dialogues:

    .. math::
        s_j \mathrel{+}= w \sum_{a \in A(q)} \frac{C_{a\,m(j)}}{\sqrt{d_a\, d_{m(j)}}}, \qquad
        C = M^\top M - \operatorname{diag}, \quad d_a = \sum_{j} C_{a\,m(j)},

    with :math:`M` the dialogue x movie mention matrix of the graph (training dialogues only),
    :math:`A(q)` the movies the query names and :math:`m(j)` candidate :math:`j`'s movie (the normalisation
    of item-based collaborative filtering, Sarwar et al., WWW 2001; the ``cooccurrence`` baseline's first term).

    A graph model with a few dozen dimensions per movie does not memorise which of thousands of movies are
    named together; this sparse memory does, at the cost of gathering a few rows per query. Its weight
    :math:`w` is not learned by gradient: a training example's own dialogue is in the graph, so the memory
    would always hold its answer and training would learn to trust it too much. It stays 0 in training and is
    chosen afterwards on the dev examples, whose dialogues the graph does not have (:meth:`choose`). With
    ``model.comention_train`` it is learned with the rest, each training example's term without what its own
    dialogue put in the table (:meth:`leave_out`), and then chosen on dev again.
    """

    #: the weights :meth:`choose` tries (0: the model alone)
    GRID = (0.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0, 96.0, 128.0)

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        n = int(graph.data["movie"].num_nodes)
        cands = torch.tensor(graph.meta["candidates"], dtype=torch.long)
        self.n_movies, self.n_candidates = n, len(cands)
        table, deg = co_mention_table(graph)
        (rows, cols), vals = table.indices(), table.values()
        # the table as CSR arrays: a query's term gathers its named movies' rows, no sparse product
        self.register_buffer("row_ptr", torch.cat([torch.zeros(1, dtype=torch.long),
                                                   torch.bincount(rows, minlength=n).cumsum(0)]), persistent=False)
        self.register_buffer("cols", cols.contiguous(), persistent=False)
        self.register_buffer("vals", vals.contiguous(), persistent=False)
        self.register_buffer("deg", deg, persistent=False)
        self.node_cols = candidate_columns(cands.tolist())  # movie node -> its candidate columns
        #: w; a parameter so that ``model.comention_train`` can learn it (else it has no gradient)
        self.weight = nn.Parameter(torch.tensor(0.0), requires_grad=False)

    def _rows(self) -> Tensor:
        """The row (movie node) of every stored entry, as the COO table has them."""
        return torch.repeat_interleave(torch.arange(self.n_movies), self.row_ptr.diff())

    @property
    def table(self) -> Tensor:
        """``[n_movies, n_candidates]`` (sparse COO) the normalised co-mentions :math:`\\hat C`."""
        return torch.sparse_coo_tensor(torch.stack([self._rows(), self.cols]), self.vals,
                                       (self.n_movies, self.n_candidates), check_invariants=False).coalesce()

    @property
    def active(self) -> bool:
        """Whether the scores get the memory: a weight, co-mentions, and eval mode (training adds the term
        itself, without each example's own dialogue: :meth:`leave_out`)."""
        return not self.training and bool(self.weight != 0) and self.vals.numel() > 0

    def leave_out(self, anchors: Tensor, anchor_batch: Tensor, own: Sequence[set[int]]) -> Tensor:
        r"""``[len(own), n_candidates]`` (sparse) what each query's own dialogue adds to its :meth:`term`:
        :math:`\min(\hat C_{a\,m},\, 1 / \sqrt{d_a d_m})` for each named movie :math:`a` and each other movie
        :math:`m` of the dialogue (``own[b]``: movie nodes), one co-mention of the pair (degrees kept)."""
        n_c = self.n_candidates
        keys = self._rows() * n_c + self.cols  # row-major, sorted: the table was coalesced
        rows, a_s, cols, ms = [], [], [], []
        for a, b in zip(anchors.tolist(), anchor_batch.tolist()):
            for m in own[b]:
                if m != a:
                    for j in self.node_cols.get(m, ()):
                        rows.append(b), a_s.append(a), cols.append(j), ms.append(m)
        if not rows:
            return torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), (len(own), n_c))
        a_t, j_t, m_t = torch.tensor(a_s), torch.tensor(cols), torch.tensor(ms)
        q = a_t * n_c + j_t
        pos = torch.searchsorted(keys, q).clamp(max=max(len(keys) - 1, 0))
        found = keys[pos] == q
        value = torch.where(found, self.vals[pos], torch.zeros(()))
        one = 1.0 / (self.deg[a_t] * self.deg[m_t]).sqrt()
        return torch.sparse_coo_tensor(torch.stack([torch.tensor(rows), j_t]), torch.minimum(value, one),
                                       (len(own), n_c), check_invariants=False).coalesce()

    def term(self, anchors: Tensor, anchor_batch: Tensor, batch_size: int) -> Tensor:
        r"""``[batch_size, n_candidates]`` the unweighted sums :math:`\sum_{a \in A(q)} \hat C_{a\,m(j)}`."""
        out = torch.zeros(batch_size, self.n_candidates)
        if not anchors.numel():
            return out
        at, owner = csr_gather(self.row_ptr, anchors)
        if at.numel():
            out.index_put_((anchor_batch[owner], self.cols[at]), self.vals[at], accumulate=True)
        return out

    def forward(self, anchors: Tensor, anchor_batch: Tensor, batch_size: int) -> Tensor:
        """``[batch_size, n_candidates]`` what the memory adds to the scores (its weight times :meth:`term`)."""
        return self.weight * self.term(anchors, anchor_batch, batch_size)

    @torch.no_grad()
    def choose(self, base: np.ndarray, term: np.ndarray, examples: Sequence[CRSExample],
               item_ids: Sequence[int], grid: Sequence[float] = GRID,
               in_test_file: Sequence[bool] = ()) -> list[dict[str, float]]:
        r"""Set the weight to the one of ``grid`` (its first: the reference, normally 0) with the best NDCG@10 of
        ``base + w * term`` on ``examples`` (ties: the earlier), unless its per-example NDCG@10 gain over the
        first is at most one standard error (:math:`\bar d \le s_d / \sqrt{n}`): then the first
        (:func:`~qamrec.eval.choice.dev_choice`). Returns each weight's dev recall@10 / recall@50 / NDCG@10 and
        its gain's standard error (with ``in_test_file``: also its gain on the flagged examples)."""
        rows, best = dev_choice((({"weight": float(w)}, base + np.float32(w) * term) for w in grid), examples,
                                item_ids, in_test_file)
        self.weight.fill_(rows[best]["weight"])
        return rows


def csr_gather(row_ptr: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Where every stored entry of ``rows`` lies in a CSR layout with ``row_ptr`` ([n_rows + 1]), in order, and
    for each entry the position in ``rows`` it was gathered for (no Python loop over the rows)."""
    start = row_ptr[rows]
    length = row_ptr[rows + 1] - start
    first = torch.cumsum(length, 0) - length  # where each row begins in the gathered list
    at = torch.arange(int(length.sum())) - torch.repeat_interleave(first - start, length)
    return at, torch.repeat_interleave(torch.arange(len(rows)), length)


def co_mention_table(graph: Graph) -> tuple[Tensor, Tensor]:
    """``[n_movies, n_candidates]`` (sparse) the normalised co-mentions :math:`\\hat C` of :class:`CoMention`,
    and each movie's degree :math:`d` over the candidate columns (at least 1)."""
    data = graph.data
    n = int(data["movie"].num_nodes)
    cands = torch.tensor(graph.meta["candidates"], dtype=torch.long)
    if MENTIONS in data.edge_types and data[MENTIONS].edge_index.numel():
        ei = data[MENTIONS].edge_index
        m = torch.sparse_coo_tensor(ei, torch.ones(ei.shape[1]), (int(data["dialogue"].num_nodes), n),
                                    check_invariants=False).coalesce()
        m = torch.sparse_coo_tensor(m.indices(), torch.ones(m.values().shape), m.shape,
                                    check_invariants=False).coalesce()  # 0/1
        with warnings.catch_warnings():  # torch warns that its sparse-sparse product uses CSR, "in beta"
            warnings.simplefilter("ignore", UserWarning)
            co = torch.sparse.mm(m.t().coalesce(), m).coalesce()  # [movie, movie] co-mentions
        (a, b), v = co.indices(), co.values()
        col = torch.full((n,), -1, dtype=torch.long)
        col[cands] = torch.arange(len(cands))  # a movie two candidates name keeps one of them here
        keep = (a != b) & (col[b] >= 0)
        a, b, v = a[keep], b[keep], v[keep]
        deg = torch.zeros(n).index_add_(0, a, v).clamp(min=1.0)  # a movie named only with non-candidates: 0
        v = v / (deg[a] * deg[b]).sqrt()
        # every candidate column of movie b (the UniCRS entity space names some films twice)
        rows, cols, vals = [a], [col[b]], [v]
        twice = torch.bincount(cands, minlength=n) > 1
        for j in twice[cands].nonzero().view(-1).tolist():
            if col[cands[j]] != j:
                hit = b == cands[j]
                rows.append(a[hit])
                cols.append(torch.full((int(hit.sum()),), j, dtype=torch.long))
                vals.append(v[hit])
        idx = torch.stack([torch.cat(rows), torch.cat(cols)])
        table = torch.sparse_coo_tensor(idx, torch.cat(vals), (n, len(cands)), check_invariants=False)
    else:
        table = torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), (n, len(cands)),
                                        check_invariants=False)
        deg = torch.ones(n)
    return table.coalesce(), deg
