"""The neighbour vote on tiny hand-made examples: its votes, the named-movie overlap, the setting chosen on dev,
and a fitted model that keeps it through save and load."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from qamrec.config import ModelConfig, TrainConfig
from qamrec.eval.protocol import CRSExample
from qamrec.models.neighbours import ContextNeighbours
from qamrec.models.qamrec import QAMRec
from qamrec.models.query import Query
from tests.test_models import fake_text, tiny_graph

ITEMS = [900, 901, 902, 903, 904]


def _stored(k: int = 2) -> ContextNeighbours:
    """Four training examples: texts a, a', b, c (a' = a), answers 1, 1, 2, 3; example 2 names movie 4 and
    example 3 names movies 4 and 5."""
    votes = ContextNeighbours(n_movies=6, n_candidates=5, k=k)
    text = torch.from_numpy(fake_text(["a", "a", "b", "c"])) * torch.tensor([[1.0], [3.0], [1.0], [1.0]])
    votes.remember(text, torch.tensor([1, 1, 2, 3]), torch.tensor([4, 5, 4, 4]), torch.tensor([2, 3, 3, 3]))
    return votes


def test_a_near_duplicate_context_votes_for_its_answer():
    votes = _stored(k=2)
    assert len(votes) == 4 and not votes.active  # weight 0 until chosen
    t = votes.term(torch.from_numpy(fake_text(["a"])), torch.empty(0, dtype=torch.long),
                   torch.empty(0, dtype=torch.long))
    # its two nearest are the copies of "a" (cosine 1 each, the stored text is normalized): all for answer 1
    assert np.allclose(t.numpy(), [[0, 1, 0, 0, 0]], atol=1e-6)
    wide = ContextNeighbours(6, 5, k=4)
    wide.remember(votes.keys.float(), votes.gold, torch.tensor([4]), torch.tensor([2]))
    t = wide.term(torch.from_numpy(fake_text(["b"])), torch.empty(0, dtype=torch.long),
                  torch.empty(0, dtype=torch.long))[0]
    sims = fake_text(["b"]) @ fake_text(["a", "b", "c"]).T
    expect = np.zeros(5)
    expect[1], expect[2], expect[3] = 2 * max(sims[0, 0], 0), sims[0, 1], max(sims[0, 2], 0)
    assert np.allclose(t.numpy(), expect / expect.max(), atol=1e-5) and t[2] == 1.0


def test_the_vote_goes_to_every_candidate_of_the_answers_movie():
    # candidates 1 and 4 name one movie (node 1), as the UniCRS entity space names some films twice: the
    # copies of "a" vote for candidate 1, and candidate 4 gets the same vote, so no tie between them is broken
    votes = ContextNeighbours(6, 5, k=2, candidate_movies=torch.tensor([0, 1, 2, 3, 1]))
    votes.remember(_stored().keys.float(), torch.tensor([1, 1, 2, 3]), torch.tensor([4]), torch.tensor([2]))
    t = votes.term(torch.from_numpy(fake_text(["a"])), torch.empty(0, dtype=torch.long),
                   torch.empty(0, dtype=torch.long))
    assert np.allclose(t.numpy(), [[0, 1, 0, 0, 1]], atol=1e-6)
    # a model saved before the votes went per movie loads voting for the answer's id, as it was chosen
    state = {k: v for k, v in votes.state_dict().items() if k != "per_movie"}
    old = ContextNeighbours(6, 5, k=2, candidate_movies=torch.tensor([0, 1, 2, 3, 1]))
    old.load_state_dict(state)
    assert not bool(old.per_movie)
    assert np.allclose(old.term(torch.from_numpy(fake_text(["a"])), torch.empty(0, dtype=torch.long),
                                torch.empty(0, dtype=torch.long)).numpy(), [[0, 1, 0, 0, 0]], atol=1e-6)


def test_both_adds_the_cosine_of_the_named_movies():
    votes = _stored(k=4)
    q = torch.from_numpy(fake_text(["z"]))
    overlap = votes._set_overlap(torch.tensor([4, 4]), torch.tensor([0, 0]), 1)  # a repeated name counts once
    assert np.allclose(overlap.numpy(), [[0, 0, 1.0, 1 / math.sqrt(2)]], atol=1e-6)
    text_sims = (q @ votes.keys.float().T)[0]
    raw = torch.zeros(5).index_add_(0, votes.gold, (0.5 * text_sims + 0.5 * overlap[0]).clamp(min=0))
    t = votes.term(q, torch.tensor([4]), torch.tensor([0]), both=True)[0]
    assert torch.allclose(t, raw / raw.max(), atol=1e-5)
    # a query that names nothing votes by its text alone (halved, so the same once divided by the largest)
    assert torch.allclose(votes.term(q, torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long),
                                     both=True), votes.term(q, torch.empty(0, dtype=torch.long),
                                                            torch.empty(0, dtype=torch.long), both=False), atol=1e-6)


def test_choose_keeps_a_vote_that_points_at_the_dev_answers_and_drops_one_that_does_not():
    votes = _stored(k=2)
    texts = ["a", "b", "c"] * 10
    ex = [CRSExample(i, 0, (t,), (), ITEMS[{"a": 1, "b": 2, "c": 3}[t]], "") for i, t in enumerate(texts)]
    base = np.tile(np.array([3, 0, 1, 2, 2.5], np.float32), (30, 1))  # the answers rank 2nd to 5th alone
    none = (torch.empty(0, dtype=torch.long),) * 2
    rows = votes.choose(base, torch.from_numpy(fake_text(texts)), *none, ex, ITEMS)
    assert [(r["kind"], r["weight"]) for r in rows][:4] == [("none", 0.0), ("text", 1.0), ("text", 2.0),
                                                             ("text", 4.0)]
    assert float(votes.weight) > 0 and votes.eval().active and not votes.train().active  # eval mode only
    best = max(rows, key=lambda r: r["ndcg@10"])
    assert best["ndcg@10"] > rows[0]["ndcg@10"] and float(votes.weight) == best["weight"]
    wrong = [CRSExample(i, 0, (t,), (), ITEMS[4], "") for i, t in enumerate(texts)]  # answer 4: no one votes
    votes.choose(np.tile(np.array([3, 0, 1, 2, 2.5], np.float32), (30, 1)), torch.from_numpy(fake_text(texts)),
                 *none, wrong, ITEMS)
    assert float(votes.weight) == 0.0 and not votes.active


def test_fit_weighs_the_vote_on_dev_and_the_saved_model_keeps_it(tmp_path: Path):
    # dev asks what training asked; the model barely trains (one epoch, a tiny rate): the vote knows the answers
    ex = lambda i, text, item: CRSExample(i, 0, (text,), (), item, "")  # noqa: E731
    pairs = [("scary one", 900), ("funny one", 901), ("sad one", 902), ("space one", 903)]
    crs = SimpleNamespace(train_as_test=[], dev_as_test=[], dev_in_test_file=[],
                          train=[ex(i, *pairs[i % 4]) for i in range(16)],
                          dev=[ex(40 + i, *pairs[i % 4]) for i in range(16)])
    m = QAMRec(ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=0, comention=False, neighbours=True,
                           neighbours_k=3),
               TrainConfig(epochs=1, patience=1, batch_size=4, lr=1e-6), fake_text, seed=0)
    m.fit(crs, tiny_graph())  # type: ignore[arg-type]
    votes = m.net.neighbours
    assert len(votes) == 16 and m.neighbours is not None and m.neighbours["examples"] == 16
    assert m.neighbours["weight"] == float(votes.weight) > 0 and m.neighbours["kind"] in ("text", "both")
    q = [Query("funny one")]
    with_vote = m.score(q)[0]
    with torch.no_grad():
        votes.weight.fill_(0.0)
    # its three nearest are copies of the training request: all three vote for its answer, column 1
    assert np.allclose(with_vote - m.score(q)[0], [0, m.neighbours["weight"], 0, 0, 0], atol=1e-4)
    with torch.no_grad():
        votes.weight.fill_(m.neighbours["weight"])
    m.save(tmp_path)
    back = QAMRec.load(tmp_path, tiny_graph(), fake_text)
    assert len(back.net.neighbours) == 16 and float(back.net.neighbours.weight) == float(votes.weight)
    assert np.allclose(back.score(q), m.score(q), atol=1e-4)

