"""ItemPrior: a candidate's popularity bias predicted from what is known of the movie, not only from targets."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qamrec.graph.store import Graph

__all__ = ["ItemPrior", "prior_features", "content_bias", "PRIOR_RELATIONS"]

#: edge types whose degree at a movie node is a popularity signal: (source, relation, movie)
PRIOR_RELATIONS: tuple[tuple[str, str, str], ...] = (
    ("user", "rates", "movie"),
    ("dialogue", "mentions", "movie"),
    ("movie", "comentioned", "movie"),
)


def prior_features(graph: Graph) -> Tensor:
    r"""``[n_movies, 4]`` popularity features of every movie node: :math:`\log(1 + \deg)` in each of
    :data:`PRIOR_RELATIONS` (0 where the graph lacks the relation) and whether it has a poster."""
    data = graph.data
    n = int(data["movie"].num_nodes)
    cols = []
    for et in PRIOR_RELATIONS:
        deg = torch.zeros(n)
        if et in data.edge_types:
            dst = data[et].edge_index[1]
            deg = torch.bincount(dst, minlength=n).float()
        cols.append(torch.log1p(deg))
    has_poster = data["movie"].has_poster.float() if "has_poster" in data["movie"] else torch.zeros(n)
    cols.append(has_poster)
    return torch.stack(cols, dim=1)


class ItemPrior(nn.Module):
    r"""The score bias of each candidate :math:`j` on movie node :math:`m(j)`:

    .. math::
        b_j = \mathbf{w}^\top \boldsymbol{\phi}_{m(j)} + \mathbf{u}^\top \mathbf{x}^{text}_{m(j)} + c_{m(j)}

    where :math:`\boldsymbol{\phi}` are the standardized popularity features of :func:`prior_features`
    (MovieLens ratings, dialogue mentions, co-mentions, poster), :math:`\mathbf{x}^{text}` the frozen text
    embedding and
    :math:`c` a free per-movie residual kept small by an :math:`\ell_2` penalty (:meth:`penalty`).

    A free bias per candidate alone (what a full-softmax recommender learns) is pushed down at every step for
    every movie that no training example targets, so such a movie can never be recommended, however well its
    content fits. Here the bias is shared by the candidates of one movie (the UniCRS entity space names some
    films twice) and mostly *predicted*: a movie no dialogue names gets the bias of movies like it (in
    MovieLens popularity and content), in the spirit of the popularity priors of cold-start recommenders
    (e.g. DropoutNet, Volkovs et al. NeurIPS 2017).

    Args:
        features: ``[n_movies, F]`` popularity features.
        text: ``[n_movies, D]`` text embeddings, or None.
        candidates: ``[C]`` movie node of each candidate.
    """

    def __init__(self, features: Tensor, text: Tensor | None, candidates: Tensor) -> None:
        super().__init__()
        nodes, slot = torch.unique(candidates, return_inverse=True)
        # standardized once, in float64: the same bits whatever the number of threads (resumed trainings
        # must end with exactly the weights of uninterrupted ones); a feature that does not vary is 0
        phi = features[nodes].double()
        sd = phi.std(0) if len(phi) > 1 else torch.ones(phi.shape[1], dtype=torch.float64)
        z = torch.where(sd > 1e-3, (phi - phi.mean(0)) / sd.clamp(min=1e-3), torch.zeros_like(phi))
        self.register_buffer("z", z.float(), persistent=False)
        self.register_buffer("slot", slot, persistent=False)
        if text is not None:
            self.register_buffer("x_text", text[nodes].float(), persistent=False)
            self.text = nn.Linear(text.shape[1], 1, bias=False)
            nn.init.zeros_(self.text.weight)
        else:
            self.text = None
        self.weight = nn.Linear(z.shape[1], 1)
        nn.init.zeros_(self.weight.weight)
        nn.init.zeros_(self.weight.bias)
        self.free = nn.Parameter(torch.zeros(len(nodes)))

    def movie_bias(self) -> Tensor:
        """``[n_unique_candidate_movies]`` bias per candidate movie."""
        b = self.weight(self.z).squeeze(1) + self.free
        if self.text is not None:
            b = b + self.text(self.x_text).squeeze(1)
        return b

    def forward(self) -> Tensor:
        """``[C]`` bias per candidate."""
        return self.movie_bias()[self.slot]

    def penalty(self) -> Tensor:
        r""":math:`\sum_m c_m^2`, the size of the free residuals."""
        return (self.free ** 2).sum()

    @torch.no_grad()
    def init_from_counts(self, counts: Tensor) -> None:
        r"""Start the predicted part at a least-squares fit of :math:`y = \log(1 + \text{target count})` per
        candidate movie on the popularity features, and the residual of every movie some training example
        targets at what the fit misses, so that such a movie starts at :math:`y` (as a free bias would) and a
        movie no example targets at its prediction."""
        per_movie = torch.zeros(len(self.free), dtype=torch.float64).index_add_(0, self.slot, counts.double())
        y = torch.log1p(per_movie)
        y = y - y.mean()
        z = self.z.double()
        design = torch.cat([z, torch.ones(len(z), 1, dtype=torch.float64)], 1)
        sol = torch.linalg.lstsq(design, y[:, None]).solution.squeeze(1)  # float64: thread-independent bits
        fit = design @ sol
        self.weight.weight.copy_(sol[:-1][None].float())
        self.weight.bias.fill_(float(sol[-1]))
        self.free.copy_(torch.where(per_movie > 0, y - fit, torch.zeros_like(y)).float())


@torch.no_grad()
def content_bias(text: Tensor, bias: Tensor, new_text: Tensor, l2: float = 10.0) -> Tensor:
    r"""The bias of movies outside the graph, predicted from their text by ridge regression on the graph's:

    .. math::
        \hat b(\mathbf{x}) = \bar b + \mathbf{w}^\top \mathbf{x}, \qquad
        \mathbf{w} = (\mathbf{X}^\top \mathbf{X} + \lambda \mathbf{I})^{-1} \mathbf{X}^\top (\mathbf{b} - \bar b),

    with :math:`\mathbf{X}` the normalized text embeddings ``text`` [n, D] of movies whose learned bias ``bias``
    [n] is known, and ``new_text`` [m, D] those of the new movies: a movie outside the graph gets the bias of the
    graph movies its text resembles instead of one constant (float64, so the same bits on any thread count).
    """
    x = nn.functional.normalize(text.double(), dim=1)
    xn = nn.functional.normalize(new_text.double(), dim=1)
    b = bias.double()
    mean = b.mean()
    gram = x.T @ x + l2 * torch.eye(x.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(gram, x.T @ (b - mean))
    return (mean + xn @ w).to(bias.dtype)
