"""The bonus of the movies a query names, set on dev after training (``model.mention_choice``)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from qamrec.config import ModelConfig, TrainConfig, load_config
from qamrec.eval.protocol import CRSExample
from qamrec.models.net import QAMRecNet
from qamrec.models.qamrec import QAMRec
from qamrec.models.query import Query, QueryFeaturizer
from qamrec.train.rundir import reusable_run
from tests.test_models import TEXT_DIM, fake_text, tiny_graph


def _ex(i: int, named: int, answer: int) -> CRSExample:
    return CRSExample(i, 0, (f"dialogue {i}",), (named,), answer, "")


def test_mention_term_marks_the_candidates_each_query_names():
    graph = tiny_graph()
    net = QAMRecNet(graph, ModelConfig(hidden=8, heads=2, retrieved=0), TEXT_DIM).eval()

    qb = QueryFeaturizer(graph, fake_text, 0)([Query("a", entities=(900, 902)), Query("b")])
    term = net.mention_term(qb, len(graph.meta["candidates"]))
    assert term.tolist() == [[1, 0, 1, 0, 0], [0, 0, 0, 0, 0]]
    with torch.no_grad():
        before = net(qb)
        net.mention_bonus.add_(5.0)
        after = net(qb)
    assert torch.allclose(after - before, 5.0 * term, atol=1e-5)
    with torch.no_grad():
        net.mention_bonus.add_(100.0)
        net.mention_cap.fill_(True)
        capped = net(qb)
    order = capped[0].argsort(descending=True).tolist()
    assert term[0, order[0]] == 0 and sorted(order[1:3]) == [0, 2]  # the named 0 and 2 right after the best other
    assert torch.allclose(capped[1], after[1])


def test_fit_sets_the_bonus_on_dev_when_dev_answers_name_a_context_movie_again(tmp_path: Path):
    # training answers are never named in their context (as ReDial's movie lists); every dev answer is
    crs = SimpleNamespace(train_as_test=[], dev_as_test=[], dev_in_test_file=[],
                          train=[_ex(i, 900 + i % 2, 903 + i % 2) for i in range(8)],
                          dev=[_ex(20 + i, 900 + i % 3, 900 + i % 3) for i in range(6)])
    m = QAMRec(ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=0, comention=False),
               TrainConfig(epochs=2, patience=2, batch_size=4), fake_text, seed=0)
    m.fit(crs, tiny_graph())  # type: ignore[arg-type]
    assert m.mention is not None and m.mention["dev"][0]["weight"] == m.mention["learned"]
    assert m.mention["weight"] == m.net.mention_bonus.item() > m.mention["learned"]
    chosen = next(r for r in m.mention["dev"] if r["weight"] == m.mention["weight"])
    assert chosen["ndcg@10"] == 1.0 > m.mention["dev"][0]["ndcg@10"] + chosen["gain_se"]
    m.save(tmp_path)
    back = QAMRec.load(tmp_path, tiny_graph(), fake_text)
    assert back.net.mention_bonus.item() == m.mention["weight"]
    q = [Query("dialogue 99", entities=(901,))]
    assert int(np.argmax(back.score(q)[0])) == 1  # the named movie first, as on dev


def test_fit_keeps_the_learned_bonus_when_dev_answers_are_new_and_when_switched_off():
    crs = SimpleNamespace(train_as_test=[], dev_as_test=[], dev_in_test_file=[],
                          train=[_ex(i, 900 + i % 2, 903 + i % 2) for i in range(8)],
                          dev=[_ex(20 + i, 900 + i % 2, 903 + i % 2) for i in range(6)])
    m = QAMRec(ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=0, comention=False),
               TrainConfig(epochs=2, patience=2, batch_size=4), fake_text, seed=0)
    m.fit(crs, tiny_graph())  # type: ignore[arg-type]
    assert m.mention is not None and m.mention["weight"] == m.mention["learned"] == m.net.mention_bonus.item()
    off = QAMRec(ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=0, comention=False, mention_choice=False),
                 TrainConfig(epochs=2, patience=2, batch_size=4), fake_text, seed=0)
    off.fit(crs, tiny_graph())  # type: ignore[arg-type]
    assert off.mention is None and off.net.mention_bonus.item() == m.mention["learned"]


def test_a_run_saved_before_the_choice_is_not_reused_as_one_with_it(tmp_path: Path):
    config = load_config([], home=tmp_path)
    saved = json.loads(config.model_dump_json()) | {"dataset": "inspired"}
    (tmp_path / "metrics.json").write_text(json.dumps({"model": "qamrec"}))
    del saved["model"]["mention_choice"]  # as saved before the setting existed: the learned bonus was kept
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert reusable_run(tmp_path, config, "inspired", "qamrec") is None
    assert reusable_run(tmp_path, load_config(["model.mention_choice=false"], home=tmp_path), "inspired", "qamrec")


def test_below_top_places_named_candidates_under_the_best_other_in_their_order():
    s = torch.tensor([[5.0, 9.0, 3.0, 8.0], [5.0, 9.0, 3.0, 8.0], [1.0, 2.0, 3.0, 4.0]])
    named = torch.tensor([[0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=torch.float32)
    out = QAMRecNet.below_top(s, named)
    assert out[0].argsort(descending=True).tolist() == [0, 1, 3, 2]
    assert out[0, 0] == 5.0 > out[0, 1] > out[0, 3] > 4.99 and out[0, 2] == 3.0
    assert torch.equal(out[1:], s[1:])  # nothing named, or the named one already below the others


def test_the_choice_keeps_named_movies_below_the_first_when_most_dev_answers_are_new():
    # every dev request names 900 and the model ranks 903 first, 900 last but one; the answer is 903 two times in
    # three and 900 again one time in three: a large bonus lifts 900 to first place (good for a third of the
    # requests), kept below the first it reaches second place and costs the others nothing
    graph = tiny_graph()
    crs = SimpleNamespace(dev=[_ex(20 + i, 900, 900 if i % 3 == 2 else 903) for i in range(12)],
                          dev_in_test_file=[i < 6 for i in range(12)])
    m = QAMRec(ModelConfig(hidden=8, heads=2, retrieved=0, comention=False), TrainConfig(), fake_text)
    m._setup(graph)
    dev_q = m.featurize([Query(e.context[0], entities=e.entities) for e in crs.dev])
    m.score_batch = lambda qb: np.tile(np.float32([1.1, 8.0, -2.0, 9.0, 8.5]), (len(qb), 1))  # type: ignore
    mention = m._choose_mention(dev_q, crs, graph.meta["item_ids"])  # type: ignore[arg-type]
    assert (mention["weight"], mention["below_top"]) == (8.0, True)  # no bonus of the grid puts 900 second
    assert m.net.mention_bonus.item() == 8.0 and bool(m.net.mention_cap)
    rows = {(r["weight"], r["below_top"]): r for r in mention["dev"]}
    assert rows[(8.0, True)]["ndcg@10"] == pytest.approx((2 + 1 / np.log2(3)) / 3)  # 903 first, 900 second
    assert rows[(8.0, False)]["ndcg@10"] == pytest.approx((2 / np.log2(3) + 1) / 3)  # 900 first, 903 second
    assert rows[(8.0, True)]["recall@10"] == rows[(8.0, False)]["recall@10"] == 1.0
    # the first six dev examples measured apart: the same mix of answers, so the same gain over the reference
    gain = rows[(8.0, True)]["ndcg@10"] - mention["dev"][0]["ndcg@10"]
    assert rows[(8.0, True)]["test_file_gain"] == pytest.approx(gain)
    m.model_cfg = m.model_cfg.model_copy(update={"mention_cap": False})
    assert not any(r["below_top"] for r in m._choose_mention(dev_q, crs, graph.meta["item_ids"])["dev"])


def test_a_model_saved_before_the_cap_loads_uncapped(tmp_path: Path):
    graph = tiny_graph()
    net = QAMRecNet(graph, ModelConfig(hidden=8, heads=2, retrieved=0), TEXT_DIM)
    state = {k: v for k, v in net.state_dict().items() if k != "mention_cap"}
    net.mention_cap.fill_(True)
    net.load_state_dict(state)
    assert not bool(net.mention_cap)
