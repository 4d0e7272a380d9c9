"""The MSMRec-style modality gate inside QAMRec's scorer (``model.modality_gate``): weights, masking, the net's
scores against a dense reference, the engine's reported weights, and the scorer unchanged with the gate off."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch
from test_models import TEXT_DIM, fake_text
from test_models import tiny_graph as base_graph

from qamrec.config import ModelConfig, TrainConfig
from qamrec.errors import QamrecError
from qamrec.graph.build import MOVIE_MODALITIES, modality_texts
from qamrec.graph.store import Graph, load_graph, save_graph
from qamrec.models.modality import ModalityGate
from qamrec.models.net import QAMRecNet
from qamrec.models.query import Query, QueryFeaturizer

N_MOVIES = 6


def tiny_graph(modalities: bool = True, seed: int = 0) -> Graph:
    """The tiny graph of ``test_models`` (six movies, five candidates, three entities, two genres, four users)
    with per-modality embeddings, some missing (movie 4 has none of the text modalities and no poster)."""
    graph = base_graph(seed)
    if modalities:
        g = torch.Generator().manual_seed(seed + 1)
        mask = torch.ones(N_MOVIES, len(MOVIE_MODALITIES), dtype=torch.bool)
        mask[0, 0] = mask[2, 1:3] = mask[4] = False
        for k, name in enumerate(MOVIE_MODALITIES):
            x = torch.nn.functional.normalize(torch.randn(N_MOVIES, TEXT_DIM, generator=g), dim=1)
            graph.data["movie"][f"x_mod_{name}"] = (x * mask[:, k:k + 1]).half()
        graph.data["movie"].mod_mask = mask
        graph.meta["modalities"] = list(MOVIE_MODALITIES)
    return graph


QUERIES = [Query("a horror film", entities=(901,)), Query("romantic comedy in Paris", entities=(101,)),
           Query("something else entirely")]


def _net(graph: Graph, gate: bool, **kw) -> QAMRecNet:
    torch.manual_seed(0)
    net = QAMRecNet(graph, ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=2, modality_gate=gate, **kw),
                    TEXT_DIM)
    if net.gate is not None:  # the projections start at zero; give them values so the gate does something
        with torch.no_grad():
            for p in net.gate.proj:
                p.weight.copy_(torch.randn_like(p.weight))
    return net.eval()


def test_gate_weights_sum_to_one_and_masked_modalities_get_zero():
    torch.manual_seed(0)
    gate = ModalityGate([4, 6, 3], 5, names=["a", "b", "c"])
    feats = [torch.randn(7, 4), torch.randn(7, 6), torch.randn(7, 3)]
    mask = torch.ones(7, 3, dtype=torch.bool)
    mask[1, 0] = mask[2, 1:] = mask[5] = False
    u = torch.randn(2, 5)
    modal = gate.project(feats)
    for _, alpha in (gate.score(u, torch.randn(7, 5), modal, mask),
                     gate.terms(u, modal.transpose(0, 1).contiguous(), mask)):
        assert alpha.shape == (2, 7, 3)
        sums = alpha.sum(-1)
        has = mask.any(-1)
        assert torch.allclose(sums[:, has], torch.ones_like(sums[:, has]), atol=1e-6)
        assert torch.equal(alpha[:, ~mask], torch.zeros_like(alpha[:, ~mask]))  # masked: exactly 0
        assert torch.equal(sums[:, 5], torch.zeros(2))  # no modality at all: weights 0, not NaN
    s, a = gate.score(u, torch.zeros(7, 5), modal, mask)
    t, b = gate.terms(u, modal.transpose(0, 1).contiguous(), mask)
    assert torch.allclose(s, t, atol=1e-5) and torch.allclose(a, b, atol=1e-6)


def test_net_scores_with_gate_equal_a_dense_reference():
    graph = tiny_graph()
    net = _net(graph, gate=True)
    assert net.gate is not None and net.gate.names == [*MOVIE_MODALITIES, "poster"]
    qb = QueryFeaturizer(graph, fake_text, retrieved=2)(QUERIES)
    with torch.no_grad():
        got, alpha = net.score_with_weights(*_p_items(net, qb), qb)
        assert torch.allclose(net(qb), got)
        p, items = _p_items(net, qb)
    movie = graph.data["movie"]
    cands = graph.meta["candidates"]
    mask = torch.cat([movie.mod_mask, movie.has_poster[:, None]], 1)
    feats = [movie[f"x_mod_{n}"].float() for n in MOVIE_MODALITIES] + [movie.x_poster * movie.has_poster[:, None]]
    qn = torch.nn.functional.normalize(qb.text, dim=1)
    for b in range(len(QUERIES)):
        for j, m in enumerate(cands):
            _check_one(net, p, items, qb, qn, feats, mask, got, alpha, b, j, m)
    assert torch.equal(alpha[:, 4], torch.zeros(len(QUERIES), 6))  # candidate 4 (movie 4) has no modality


@torch.no_grad()
def _check_one(net, p, items, qb, qn, feats, mask, got, alpha, b: int, j: int, m: int) -> None:
    """Candidate ``j`` (movie ``m``) for query ``b``: the score and weights by the formula, one at a time."""
    e = [net.gate.proj[k].weight @ feats[k][m] for k in range(len(feats))]
    logit = [float(p[b] @ ek) for ek in e]
    present = [k for k in range(len(e)) if mask[m, k]]
    z = sum(math.exp(logit[k]) for k in present)
    ref_alpha = [math.exp(logit[k]) / z if k in present else 0.0 for k in range(len(e))]
    v_hat = items[j] + sum(ref_alpha[k] * e[k] for k in range(len(e)))
    ref = float(p[b] @ v_hat) + float(net.bias[j]) + float(net.text_weight) * float(qn[b] @ net.cand_text[j])
    ref += float(net.mention_bonus) * bool(((qb.mentioned == j) & (qb.mentioned_batch == b)).any())
    assert got[b, j].item() == pytest.approx(ref, rel=1e-4, abs=1e-4)
    assert alpha[b, j].tolist() == pytest.approx(ref_alpha, abs=1e-5)


def _p_items(net: QAMRecNet, qb) -> tuple[torch.Tensor, torch.Tensor]:
    h = net.encode_nodes()
    p, _ = net.preference(net.node_table(h), qb)
    return p, net.items(h)


def test_gate_off_scores_unchanged():
    """Without the gate the scorer is s = p·v + b + λ cos + β·mentioned, as before; the gate does not change the
    other parameters' initialisation, and with its zero-initialised projections it scores like the net without."""
    graph = tiny_graph()
    qb = QueryFeaturizer(graph, fake_text, retrieved=2)(QUERIES)
    off = _net(graph, gate=False)
    assert off.gate is None and not any(k.startswith("gate.") for k in off.state_dict())
    with torch.no_grad():
        p, items = _p_items(off, qb)
        s, alpha = off.score_with_weights(p, items, qb)
        ref = p @ items.T + off.bias + off.text_weight * (torch.nn.functional.normalize(qb.text, dim=1)
                                                          @ off.cand_text.T)
        ref[qb.mentioned_batch, qb.mentioned] += off.mention_bonus
    assert alpha is None and torch.allclose(s, ref, atol=1e-6)
    # the same graph without modality attributes gives the very same parameters and scores
    plain = _net(tiny_graph(modalities=False), gate=False)
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in off.state_dict().items())
    torch.manual_seed(0)
    on = QAMRecNet(graph, ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=2, modality_gate=True), TEXT_DIM)
    on.eval()
    shared = {k: v for k, v in on.state_dict().items() if not k.startswith("gate.")}
    assert shared.keys() == off.state_dict().keys()
    assert all(torch.equal(v, off.state_dict()[k]) for k, v in shared.items())
    with torch.no_grad():
        assert torch.allclose(on(qb), off(qb), atol=1e-5)


def test_gate_needs_modalities_and_the_graph_keeps_them(tmp_path):
    with pytest.raises(QamrecError, match="modality_gate"):
        _net(tiny_graph(modalities=False), gate=True)
    save_graph(tiny_graph(), tmp_path)
    back = load_graph(tmp_path)
    assert back.meta["modalities"] == list(MOVIE_MODALITIES)
    assert torch.equal(back.data["movie"].mod_mask, tiny_graph().data["movie"].mod_mask)
    assert back.data["movie"].x_mod_plot.dtype == torch.float16


def test_modality_texts():
    row = {"title": "Heat", "year": 1995, "plot": "A heist.", "cast": ["Al Pacino", "Robert De Niro"],
           "director": ["Michael Mann"], "genres": ["Crime", "(no genres listed)"]}
    t = modality_texts(row, {"starring": ["Robert De Niro", "Val Kilmer"], "writer": ["Michael Mann"]},
                       ["heist", "Los Angeles"])
    assert t == {"plot": "A heist.", "cast": "Starring Al Pacino, Robert De Niro, Val Kilmer.",
                 "crew": "Directed by Michael Mann. Written by Michael Mann.", "genres": "Genres: Crime.",
                 "tags": "Tagged: Los Angeles, heist."}
    assert modality_texts({"title": "X", "genres": []}) == {m: None for m in MOVIE_MODALITIES}


def test_engine_reports_the_nets_modality_weights():
    from qamrec.models.qamrec import QAMRec
    from qamrec.serve.engine import Engine

    graph = tiny_graph()
    model = QAMRec(ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=2, modality_gate=True), TrainConfig(),
                   fake_text)
    model._setup(graph)
    with torch.no_grad():
        for p in model.net.gate.proj:  # type: ignore[union-attr]
            p.weight.copy_(torch.randn_like(p.weight))
    model.net.eval()  # type: ignore[union-attr]
    movies = pl.DataFrame({"movie_id": [10, 11, 12, 13, 14, 15], "title": [f"Movie {i}" for i in range(6)],
                           "year": [2000 + i for i in range(6)], "genres": [["Horror"]] * 6,
                           "poster_path": [None] * 6})
    engine = Engine(model, graph, movies)
    engine.refine = engine.refine.model_copy(update={"popularity": 1.0})  # the ranking as trained
    res = engine.recommend("a horror film", k=4)
    qb = model.featurizer([Query("a horror film")])
    table, items = model.precompute()
    with torch.no_grad():
        p, _ = model.net.preference(table, qb)  # type: ignore[union-attr]
        s, alpha = model.net.score_with_weights(p, items, qb)  # type: ignore[union-attr]
    names = [*MOVIE_MODALITIES, "poster"]
    picked = []
    for m in res.movies:
        j = engine.columns[m["id"]][0]
        if j == 4:  # no modality at all
            assert m["modality_weights"] is None
            continue
        picked.append(j)
        assert list(m["modality_weights"]) == names
        assert list(m["modality_weights"].values()) == pytest.approx(alpha[0, j].tolist(), abs=1e-4)
        assert sum(m["modality_weights"].values()) == pytest.approx(1.0, abs=1e-3)
    assert [engine.columns[m["id"]][0] for m in res.movies] == s[0].argsort(descending=True)[:4].tolist()
    assert res.modality_weights is not None and list(res.modality_weights) == names
    assert list(res.modality_weights.values()) == pytest.approx(alpha[0, picked].mean(0).tolist(), abs=1e-4)
    engine.GATE_ROWS = 1  # the gate's term on the best row only: the reported weights are still the net's
    for m in engine.recommend("a horror film", k=4).movies:
        j = engine.columns[m["id"]][0]
        if m["modality_weights"] is not None:
            assert list(m["modality_weights"].values()) == pytest.approx(alpha[0, j].tolist(), abs=1e-4)
    from qamrec.serve.app import _recommendations

    api = _recommendations(engine, res)
    assert api.modality_weights == res.modality_weights
    assert api.movies[0].modality_weights == res.movies[0]["modality_weights"]
    # without the gate: nothing reported
    plain = QAMRec(ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=2), TrainConfig(), fake_text)
    plain._setup(tiny_graph(modalities=False))
    plain.net.eval()  # type: ignore[union-attr]
    res2 = Engine(plain, plain.graph, movies).recommend("a horror film", k=3)
    assert res2.modality_weights is None and all("modality_weights" not in m for m in res2.movies)
    assert _recommendations(engine, res2).modality_weights is None
