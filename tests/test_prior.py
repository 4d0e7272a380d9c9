"""ItemPrior: a movie no training example targets keeps the bias its popularity and content predict."""

from __future__ import annotations

import pytest
import torch

from qamrec.models.prior import ItemPrior, prior_features
from tests.test_models import tiny_graph


def _toy(n: int = 20) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Popularity features where MovieLens ratings predict how often a movie is the answer; movie ``n - 1`` is
    the most rated and never an answer, movie 0 is rarely rated and an answer once."""
    ratings = torch.arange(n, dtype=torch.float32)
    phi = torch.stack([torch.log1p(ratings * 10), torch.zeros(n), torch.zeros(n), torch.ones(n)], 1)
    counts = ratings.clone()
    counts[0], counts[-1] = 1.0, 0.0
    return phi, counts, torch.arange(n)


def _train(prior: torch.nn.Module, counts: torch.Tensor, l2: float, steps: int = 300) -> None:
    targets = torch.repeat_interleave(torch.arange(len(counts)), counts.long())
    opt = torch.optim.Adam(prior.parameters(), lr=0.05)
    for _ in range(steps):
        logits = prior().expand(len(targets), -1)
        loss = torch.nn.functional.cross_entropy(logits, targets) + l2 * prior.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_never_targeted_popular_movie_outranks_a_rarely_targeted_one():
    phi, counts, cands = _toy()
    prior = ItemPrior(phi, None, cands)
    prior.init_from_counts(counts)
    _train(prior, counts, l2=1e-2)
    b = prior().detach()
    assert b[-1] > b[0] + 0.5  # never an answer, but the features say it is popular
    assert b[-1] > b[1:4].max()  # and movies that were answers 1 to 3 times
    # a free bias per movie (no penalty) learns the opposite: never an answer -> lowest
    free = ItemPrior(phi, None, cands)
    free.weight.weight.requires_grad_(False)
    free.weight.bias.requires_grad_(False)
    _train(free, counts, l2=0.0)
    fb = free().detach()
    assert fb[-1] < fb[0] and int(fb.argmin()) == len(fb) - 1


def test_candidates_of_one_movie_share_their_bias():
    phi, counts, _ = _toy(6)
    cands = torch.tensor([0, 1, 2, 2, 3, 4, 5])  # the UniCRS entity space names movie 2 twice
    prior = ItemPrior(phi, torch.randn(6, 8), cands)
    with torch.no_grad():
        prior.free.copy_(torch.randn(6))
    b = prior()
    assert b.shape == (7,) and b[2] == b[3]
    assert prior.penalty() > 0


def test_prior_features_count_ratings_and_posters():
    graph = tiny_graph()
    phi = prior_features(graph)
    assert phi.shape == (6, 4)
    # ratings edges point at movies 0, 1, 1, 2, 3, 5
    assert torch.allclose(phi[:, 0], torch.log1p(torch.tensor([1.0, 2, 1, 1, 0, 1])))
    assert phi[:, 1].abs().sum() == 0 and phi[:, 2].abs().sum() == 0  # no dialogue or co-mention relations
    assert phi[:, 3].tolist() == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]


def test_init_starts_targeted_movies_at_their_log_popularity():
    phi, counts, cands = _toy()
    prior = ItemPrior(phi, None, cands)
    prior.init_from_counts(counts)
    b = prior().detach()
    y = torch.log1p(counts) - torch.log1p(counts).mean()
    targeted = counts > 0
    assert torch.allclose(b[targeted], y[targeted], atol=1e-5)  # as a free bias would start
    assert prior.free[~targeted].abs().sum() == 0 and b[-1] > y[-1] + 1.0  # the never-targeted one: its prediction


def test_content_bias_gives_a_new_movie_the_bias_of_the_movies_its_text_resembles():
    from qamrec.models.prior import content_bias

    g = torch.Generator().manual_seed(0)
    popular, obscure = torch.randn(16, generator=g), torch.randn(16, generator=g)
    noise = 0.1 * torch.randn(40, 16, generator=g)
    text = torch.cat([popular + noise[:20], obscure + noise[20:]])
    bias = torch.cat([torch.full((20,), 2.0), torch.full((20,), -2.0)])
    new = torch.stack([popular, obscure, torch.randn(16, generator=g)])
    b = content_bias(text, bias, new, l2=0.1)
    assert b[0] > 1.5 and b[1] < -1.5  # near the popular / the obscure movies
    assert float(content_bias(text, bias, new, l2=1e6)[2]) == pytest.approx(0.0, abs=1e-3)  # all shrunk: the mean
    assert b.dtype == bias.dtype and b.shape == (3,)
