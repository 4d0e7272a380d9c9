"""One id per movie in a ranking (``model.one_id_per_movie``, :mod:`qamrec.models.listing`)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from qamrec.config import ModelConfig, TrainConfig
from qamrec.eval.protocol import CRSExample
from qamrec.graph.store import Graph, candidate_columns
from qamrec.models.listing import UNLISTED_PENALTY, unlisted_ids
from qamrec.models.qamrec import QAMRec
from qamrec.models.query import Query
from tests.test_models import fake_text, tiny_graph


def _ex(i: int, named: int, answer: int) -> CRSExample:
    return CRSExample(i, 0, (f"dialogue {i}",), (named,), answer, "")


def test_candidate_columns_lists_each_movies_columns_in_order():
    assert candidate_columns([0, 1, 1, 2, 3, 1]) == {0: [0], 1: [1, 2, 5], 2: [3], 3: [4]}
    assert candidate_columns([]) == {}


def test_each_movie_is_listed_under_the_id_its_test_format_answers_use_most():
    candidates = torch.tensor([0, 1, 1, 2, 2, 3, 3, 3])  # column -> movie node
    items = [10, 11, 12, 13, 14, 15, 16, 17]
    labelled = [_ex(0, 10, 12), _ex(1, 10, 12), _ex(2, 10, 11),  # movie 1: 12 twice, 11 once
                _ex(3, 10, 15), _ex(4, 10, 16),  # movie 3: a tie, broken by the other examples
                _ex(5, 10, 10), _ex(6, 10, 99)]  # a movie named once, an id outside the candidates
    others = [_ex(7, 10, 13)] * 5 + [_ex(8, 10, 16)] * 2  # movie 2: never answered in the test's format
    got = unlisted_ids(candidates, items, labelled, others)
    assert got.tolist() == [False, True, False, False, False, True, False, True]
    # without the others the tie goes to the first column; without labelled answers nothing is unlisted
    assert unlisted_ids(candidates, items, labelled).tolist()[5:] == [False, True, True]
    assert not unlisted_ids(candidates, items, [], others).any()


def _twice_graph() -> Graph:
    """The tiny graph with a sixth candidate id, 905, naming movie node 4 as 904 does."""
    g = tiny_graph()
    meta = dict(g.meta)
    meta["item_ids"] = [*meta["item_ids"], 905]
    meta["candidates"] = [*meta["candidates"], 4]
    return Graph(g.data, meta)


def test_fit_lists_a_movie_once_and_the_ranking_drops_its_other_id(tmp_path: Path):
    # the raw training answers use 904; the test file's own examples of training dialogues use 905
    crs = SimpleNamespace(train=[_ex(i, 900 + i % 3, 904 if i % 2 else 903) for i in range(12)],
                          dev=[_ex(30 + i, 900, 903) for i in range(4)],
                          train_as_test=[_ex(40, 900, 905), _ex(41, 901, 905), _ex(42, 900, 904)],
                          dev_as_test=[_ex(50 + i, 900 + i % 2, 905) for i in range(4)], dev_in_test_file=[])
    cfg = ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=0, comention=False)
    m = QAMRec(cfg, TrainConfig(epochs=2, patience=2, batch_size=4), fake_text, seed=0)
    queries = [Query(f"dialogue {50 + i}", entities=(900 + i % 2,)) for i in range(4)]
    m.fit(crs, _twice_graph())  # type: ignore[arg-type]
    assert m.listing is not None and m.listing["unlisted"] == [904]
    assert m.net.unlisted.tolist() == [False] * 4 + [True, False]
    once = m.score(queries)
    assert (once[:, 4] < once[:, [0, 1, 2, 3, 5]].min(1) - UNLISTED_PENALTY / 2).all()
    # the two dev rows: every id listed, then one per movie; 905 is never ranked lower with one id per movie
    rows = m.listing["dev_as_test"]
    assert [r["one_id_per_movie"] for r in rows] == [False, True] and rows[1]["ndcg@10"] >= rows[0]["ndcg@10"]
    every = once + UNLISTED_PENALTY * m.net.unlisted.numpy()
    assert np.allclose(every[:, 4], every[:, 5], atol=2e-3)  # one movie: alike before the listing (float32)
    m.save(tmp_path)
    back = QAMRec.load(tmp_path, _twice_graph(), fake_text)
    assert back.net.unlisted.tolist() == m.net.unlisted.tolist()
    assert np.allclose(back.score(queries), once, atol=1e-4)
    # a model saved before the listing existed loads with every id listed
    state = load_file(str(tmp_path / "model.safetensors"))
    del state["unlisted"]
    save_file(state, str(tmp_path / "model.safetensors"))
    assert not QAMRec.load(tmp_path, _twice_graph(), fake_text).net.unlisted.any()


def test_switched_off_or_without_test_format_answers_every_id_stays():
    crs = SimpleNamespace(train=[_ex(i, 900 + i % 3, 904) for i in range(8)], dev=[_ex(30, 900, 903)],
                          train_as_test=[], dev_as_test=[], dev_in_test_file=[])
    cfg = ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=0, comention=False)
    short = TrainConfig(epochs=1, patience=1, batch_size=4)
    m = QAMRec(cfg, short, fake_text, seed=0).fit(crs, _twice_graph())  # type: ignore[arg-type]
    assert m.listing == {"unlisted": [], "dev_as_test": []} and not m.net.unlisted.any()
    off = cfg.model_copy(update={"one_id_per_movie": False})
    crs.train_as_test = [_ex(40, 900, 905)]
    m = QAMRec(off, short, fake_text, seed=0).fit(crs, _twice_graph())  # type: ignore[arg-type]
    assert m.listing is None and not m.net.unlisted.any()


def test_named_movies_stay_below_the_best_listed_candidate():
    """With a bias per id (``model.shared_bias=false``) an unlisted id can score above every other candidate; the
    named movies are capped below the best candidate that is listed, not below that id."""
    graph = _twice_graph()
    cfg = ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=0, comention=False, shared_bias=False)
    model = QAMRec(cfg, TrainConfig(), fake_text, seed=0)
    model._setup(graph)
    qb = model.featurize([Query("a", entities=(900,))])
    with torch.no_grad():
        model.net.free_bias[5] += 1000.0  # 905, unlisted below: the best score before the listing
        model.net.mention_bonus.fill_(500.0)
        model.net.mention_cap.fill_(True)
        model.net.unlisted[5] = True
        s = model.net.eval()(qb)[0]
    order = s.argsort(descending=True).tolist()
    assert order[1] == 0 and order[0] not in (0, 5) and order[-1] == 5
