"""The graph probe on a tiny graph: relation ablation restores the edges, entropies on hand-made weights,
the mean pooling stand-in."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qamrec.config import ModelConfig, TrainConfig
from qamrec.eval.graph_probe import _entropy, _pooling, _without, probe_markdown, probe_model
from qamrec.eval.protocol import CRSExample
from qamrec.models.qamrec import QAMRec
from qamrec.models.query import Query
from tests.test_models import _with_text_knn, fake_text, tiny_graph

ITEMS = [900, 901, 902, 903, 904]


def _model() -> QAMRec:
    m = QAMRec(ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=2), TrainConfig(), fake_text, seed=0)
    m._setup(tiny_graph())
    m.net.eval()
    return m


def _examples() -> list[CRSExample]:
    return [CRSExample(dialogue=i, turn=0, context=(f"query {i}",), entities=(900 + i % 5,), item=900 + (i + 1) % 5,
                       resp="") for i in range(10)]


def test_entropy_of_hand_made_weights():
    alpha = torch.tensor([0.5, 0.5, 1.0, 0.0, 0.25, 0.25, 0.25, 0.25, 1.0])
    index = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2, 3])  # group 3 has one member: not counted
    ent, top, n = _entropy(alpha, index, 4)
    assert n == 3
    assert ent == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    assert top == pytest.approx((0.5 + 1.0 + 0.25) / 3)


def test_relations_removed_and_restored():
    m = _model()
    q = [Query("query 1", entities=(900,))]
    before = m.score(q)
    rel = ("user", "rates", "movie")
    with _without(m.net, [rel]):
        assert m.net.ei_user__rates__movie.shape == (2, 0)
        m._precomputed = None
        without = m.score(q)
    m._precomputed = None
    assert not np.allclose(before, without)  # the relation carried messages
    assert np.allclose(m.score(q), before)  # and is back


def test_mean_pooling_stand_in_is_the_unweighted_mean():
    m = _model()
    h = torch.randn(5, 8)
    batch = torch.tensor([0, 0, 0, 1, 1])
    with _pooling(m.net, "mean"):
        g, alpha = m.net.pool(h, torch.randn(2, 8), batch, torch.randn(5))
    assert torch.allclose(g[0], h[:3].mean(0)) and torch.allclose(g[1], h[3:].mean(0))
    assert torch.allclose(alpha, torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.5, 0.5]))
    with _pooling(m.net, "zero"):
        g, _ = m.net.pool(h, torch.randn(2, 8), batch)
    assert float(g.abs().sum()) == 0.0
    assert not hasattr(m.net.pool, "inner")  # the trained pooling is back


def test_probe_reports_every_relation_and_uniform_attention_when_logits_are_flat():
    m = _model()
    for layer in m.net.encoder.convs:  # zero attention vectors: every coefficient is 1 / degree
        for conv in layer.values():
            torch.nn.init.zeros_(conv.att_src)
            torch.nn.init.zeros_(conv.att_dst)
            if conv.att_edge is not None:
                torch.nn.init.zeros_(conv.att_edge)
    r = probe_model(m, _examples(), ITEMS)
    rels = {a["relation"] for a in r["relation_ablation"]}
    assert rels == {"__".join(et) for et in m.net.edge_types} | {"all edges"}
    with_deg2 = [a for a in r["attention"] if a["targets_deg2"]]
    assert with_deg2 and all(a["entropy"] == pytest.approx(1.0, abs=1e-5) for a in with_deg2)
    assert all(0 <= a["max_alpha"] <= 1 for a in with_deg2)
    assert {"query", "fuse", "pool"} <= set(r["gradient_norms"])
    assert any(k.startswith("relation ") and v > 0 for k, v in r["gradient_norms"].items())
    assert 0 <= r["pooling_mean"]["recall@10"] <= 1 and not math.isnan(r["pooling_attention"]["entropy"])
    md = probe_markdown(r, "tiny")
    assert "all edges" in md and "unweighted mean" in md


def test_answers_scored_as_new_movies():
    """The 'graph' row ranks each answer as the protocol does; the new-movie rows score it from its text alone."""
    from qamrec.eval.evaluate import evaluate
    from qamrec.eval.graph_probe import _as_new_movie
    from qamrec.models.qamrec import example_query

    m = _model()
    ex = _examples()
    r = _as_new_movie(m, ex, ITEMS, ks=(1, 2))
    full = evaluate(m.score([example_query(e) for e in ex]), ex, ITEMS)
    assert r["examples"] == 10 and r["graph"]["recall@1"] == pytest.approx(full["recall@1"])
    assert all(0 <= r[k][f"recall@{n}"] <= 1 for k in ("isolated", "inductive", "genres", "inductive_genres",
                                                   "genres+content_bias", "isolated+content_bias")
               for n in (1, 2))
    # without a text kNN relation the inductive representation is the isolated one
    assert r["inductive"] == r["isolated"]
    g = _with_text_knn(tiny_graph())
    m2 = QAMRec(ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=2), TrainConfig(), fake_text, seed=0)
    m2._setup(g)
    m2.net.eval()
    v_iso = m2.net.new_movies(m2.net.movie_text, k=0)
    v_ind = m2.net.new_movies(m2.net.movie_text, exclude=torch.arange(6))
    assert not torch.allclose(v_iso, v_ind, atol=1e-4)
    assert set(probe_markdown(probe_model(m2, ex, ITEMS), "tiny").split("## ")[-1].split("\n")[0:1]) == {
        "Answers scored as movies outside the graph"}
    only = probe_model(m2, ex, ITEMS, new_movies_only=True)
    assert set(only) == {"examples", "full", "as_new_movie"}
    assert only["as_new_movie"] == probe_model(m2, ex, ITEMS)["as_new_movie"]
    assert probe_markdown(only, "tiny").count("## ") == 1
