"""The co-mention memory on a tiny graph with hand-counted co-mentions: its table, its term in the scores,
the weight chosen on dev, and a fitted model that keeps it."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from qamrec.config import ModelConfig, TrainConfig
from qamrec.eval.protocol import CRSExample
from qamrec.graph.store import Graph
from qamrec.models.memory import MENTIONS, CoMention
from qamrec.models.net import QAMRecNet
from qamrec.models.qamrec import QAMRec
from qamrec.models.query import Query, QueryFeaturizer
from tests.test_models import TEXT_DIM, fake_text, tiny_graph

ITEMS = [900, 901, 902, 903, 904]


def _graph() -> Graph:
    """tiny_graph (candidates: movies 0-4; movie 5 is no candidate) with three training dialogues:
    {0, 1, 2}, {0, 1} and {3, 5}."""
    graph = tiny_graph()
    d = graph.data
    d["dialogue"].num_nodes = 3
    d[MENTIONS].edge_index = torch.tensor([[0, 0, 0, 1, 1, 2, 2], [0, 1, 2, 0, 1, 3, 5]])
    d["movie", "rev_mentions", "dialogue"].edge_index = d[MENTIONS].edge_index.flip(0)
    return graph


def test_table_is_the_normalised_co_mention_count():
    mem = CoMention(_graph())
    # co-mentions with candidate columns: 0-1 twice, 0-2 and 1-2 once, 5-3 once (3-5 has no column: 5 is none)
    # degrees over candidate columns: movie 0: 3, 1: 3, 2: 2, 3: 0 (clamped to 1), 5: 1
    expect = np.zeros((6, 5))
    expect[0, 1] = expect[1, 0] = 2 / math.sqrt(3 * 3)
    expect[0, 2] = expect[2, 0] = 1 / math.sqrt(3 * 2)
    expect[1, 2] = expect[2, 1] = 1 / math.sqrt(3 * 2)
    expect[5, 3] = 1.0
    assert np.allclose(mem.table.to_dense().numpy(), expect, atol=1e-6)
    # a query naming movies 0 and 5 sums their rows; the weight is 0 until chosen, so nothing is added
    t = mem.term(torch.tensor([0, 5, 1]), torch.tensor([0, 0, 1]), 3)
    assert np.allclose(t.numpy(), [expect[0] + expect[5], expect[1], np.zeros(5)], atol=1e-6)
    assert not mem.active and float(mem(torch.tensor([0]), torch.tensor([0]), 1).abs().sum()) == 0.0


def test_a_graph_without_dialogues_gives_an_empty_memory():
    mem = CoMention(tiny_graph())
    mem.weight.fill_(8.0)
    assert not mem.active
    assert mem.term(torch.tensor([0]), torch.tensor([0]), 1).abs().sum() == 0


def test_choose_keeps_the_weight_with_the_best_dev_ndcg():
    mem = CoMention(_graph())
    ex = [CRSExample(i, 0, ("x",), (), ITEMS[i % 5], "") for i in range(10)]
    rng = np.random.default_rng(0)
    base = rng.standard_normal((10, 5)).astype(np.float32)
    helps = np.zeros((10, 5), np.float32)
    helps[np.arange(10), np.arange(10) % 5] = 1.0  # the memory points at each example's answer
    rows = mem.choose(base, helps, ex, ITEMS, grid=(0.0, 0.5, 100.0))
    assert float(mem.weight) == 100.0 and [r["weight"] for r in rows] == [0.0, 0.5, 100.0]
    assert rows[-1]["recall@10"] == 1.0 and rows[-1]["ndcg@10"] == 1.0 > rows[0]["ndcg@10"]
    mem.choose(base, -helps, ex, ITEMS, grid=(0.0, 0.5, 100.0))  # it points away: the model alone
    assert float(mem.weight) == 0.0


def test_net_scores_add_the_weighted_memory_for_the_named_movies():
    graph = _graph()
    torch.manual_seed(0)
    net = QAMRecNet(graph, ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=0), TEXT_DIM).eval()
    qb = QueryFeaturizer(graph, fake_text, retrieved=0)([Query("q", entities=(900,)), Query("r")])
    with torch.no_grad():
        h = net.encode_nodes()
        p, _ = net.preference(net.node_table(h), qb)
        before = net.score(p, net.items(h), qb)
        net.memory.weight.fill_(5.0)
        after = net.score(p, net.items(h), qb)
    expect = 5.0 * net.memory.term(torch.tensor([0]), torch.tensor([0]), 1)[0]
    assert torch.allclose(after[0] - before[0], expect, atol=1e-5) and expect[1] > 0
    assert torch.allclose(after[1], before[1])  # a query naming no movie gets nothing
    off = QAMRecNet(graph, ModelConfig(hidden=8, heads=2, retrieved=0, comention=False), TEXT_DIM)
    assert off.memory is None and "memory.weight" not in off.state_dict()


def test_fit_chooses_the_weight_on_dev_and_the_saved_model_keeps_it(tmp_path: Path):
    # every dev answer is a movie co-mentioned with the movie its query names; training never teaches it
    ex = lambda i, ent, item: CRSExample(i, 0, (f"dialogue {i}",), (ent,), item, "")  # noqa: E731
    crs = SimpleNamespace(train_as_test=[], dev_as_test=[], dev_in_test_file=[],
                          train=[ex(i, 903, 904) for i in range(8)],
                          dev=[ex(20 + i, 900 + i % 2, 901 - i % 2) for i in range(6)])
    m = QAMRec(ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=0),
               TrainConfig(epochs=2, patience=2, batch_size=4), fake_text, seed=0)
    m.fit(crs, _graph())  # type: ignore[arg-type]
    assert m.comention is not None and m.comention["weight"] == float(m.net.memory.weight) > 0
    best = max(m.comention["dev"], key=lambda r: r["ndcg@10"])
    assert best["weight"] == m.comention["weight"] and best["ndcg@10"] > m.comention["dev"][0]["ndcg@10"]
    m.save(tmp_path)
    back = QAMRec.load(tmp_path, _graph(), fake_text)
    assert float(back.net.memory.weight) == m.comention["weight"]
    q = [Query("dialogue 99", entities=(900,))]
    assert np.allclose(back.score(q), m.score(q), atol=1e-5)


@pytest.mark.parametrize("flag", [True, False])
@pytest.mark.parametrize("setting,module", [("comention", "memory"), ("neighbours", "neighbours")])
def test_a_model_saved_before_a_post_training_term_loads_without_it(tmp_path: Path, flag: bool, setting: str,
                                                                   module: str):
    import json

    m = QAMRec(ModelConfig(hidden=8, heads=2, retrieved=0, **{setting: flag}), TrainConfig(), fake_text, 0)
    m._setup(_graph())
    m.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    if not flag:  # as written before the setting existed
        del meta["model"][setting]
        (tmp_path / "model.json").write_text(json.dumps(meta))
    back = QAMRec.load(tmp_path, _graph(), fake_text)
    assert (getattr(back.net, module) is not None) == flag


def test_leave_out_removes_one_co_mention_of_the_queries_own_dialogue():
    mem = CoMention(_graph())
    # query 0 names movie 0 in dialogue {0, 1, 2}; query 1 names movie 5 in a dialogue {5, 4} the graph lacks
    owed = mem.leave_out(torch.tensor([0, 5]), torch.tensor([0, 1]), [{0, 1, 2}, {5, 4}]).to_dense()
    assert np.allclose(owed[0].numpy(), [0, 1 / 3, 1 / math.sqrt(6), 0, 0], atol=1e-6)
    assert owed[1].abs().sum() == 0  # movies 5 and 4 were never named together: nothing to take back
    left = mem.term(torch.tensor([0]), torch.tensor([0]), 1)[0] - owed[0]
    # what dialogue {0, 1} alone says: 0 and 1 once (degrees kept), 0 and 2 never
    assert np.allclose(left.numpy(), [0, 1 / 3, 0, 0, 0], atol=1e-6)


def test_fit_can_learn_the_weight_without_each_examples_own_dialogue(tmp_path: Path):
    # each training example answers with a movie its dialogue names with the one it asks about, and so does dev
    ex = lambda i, d, ent, item: CRSExample(d, 0, (f"dialogue {i}",), (ent,), item, "")  # noqa: E731
    crs = SimpleNamespace(train_as_test=[], dev_as_test=[], dev_in_test_file=[],
                          train=[ex(i, i % 3, 900, 901) for i in range(8)],
                          dev=[ex(20 + i, 20 + i, 900, 901) for i in range(4)])
    m = QAMRec(ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=0, comention_train=True),
               TrainConfig(epochs=2, patience=2, batch_size=4), fake_text, seed=0)
    m.fit(crs, _graph())  # type: ignore[arg-type]
    assert m.comention is not None and m.comention["learned"] != 16.0  # it moved from where it started
    assert m.comention["learned"] in [r["weight"] for r in m.comention["dev"]]
    assert not m.net.memory.weight.requires_grad and float(m.net.memory.weight) == m.comention["weight"]


def test_a_gain_on_one_example_alone_is_within_its_standard_error():
    mem = CoMention(_graph())
    ex = [CRSExample(i, 0, ("x",), (), ITEMS[0], "") for i in range(40)]
    base = np.tile(np.array([2.5, 0, 1, 3, 4], np.float32), (40, 1))  # the answer (column 0) is third
    term = np.zeros_like(base)
    term[0, 0], term[1, 0] = 1.0, -1.0  # the memory lifts it to the top for one example, last for another
    rows = mem.choose(base, term, ex, ITEMS, grid=(0.0, 10.0))
    assert rows[1]["ndcg@10"] > rows[0]["ndcg@10"] and rows[1]["ndcg@10"] - rows[0]["ndcg@10"] <= rows[1]["gain_se"]
    assert float(mem.weight) == 0.0
    term[:6, 0] = 1.0  # it lifts it for six of them: more than one standard error
    mem.choose(base, term, ex, ITEMS, grid=(0.0, 10.0))
    assert float(mem.weight) == 10.0


def test_a_run_saved_before_the_memory_is_not_reused_as_one_with_it(tmp_path: Path):
    import json

    from qamrec.config import load_config
    from qamrec.train.rundir import reusable_run

    config = load_config([], home=tmp_path)
    saved = json.loads(config.model_dump_json()) | {"dataset": "inspired"}
    (tmp_path / "metrics.json").write_text(json.dumps({"model": "qamrec"}))
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert reusable_run(tmp_path, config, "inspired", "qamrec") is not None
    del saved["model"]["comention"]  # as saved before the setting existed: that model had no memory
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert reusable_run(tmp_path, config, "inspired", "qamrec") is None
    assert reusable_run(tmp_path, load_config(["model.comention=false"], home=tmp_path), "inspired", "qamrec")
