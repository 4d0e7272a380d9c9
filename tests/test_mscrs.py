"""MSCRS: LightGCN against a dense reference, the kNN and co-mention graphs, the fast R-GCN, and a tiny
fit / score / save / load round trip on a graph built here."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.nn import RGCNConv

from qamrec.config import MSCRSConfig, TrainConfig, load_config
from qamrec.eval.protocol import CRSExample
from qamrec.graph.store import Graph
from qamrec.models import MODELS, MSCRS
from qamrec.models.lightgcn import LightGCNEncoder, comention_graph, knn_graph
from qamrec.models.query import Query
from qamrec.models.rgcn import BasisRGCNConv

TEXT_DIM = 8


def _edges(ei: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, ei.t().tolist()))


def test_lightgcn_matches_dense_reference():
    # weighted symmetric graph on 5 nodes; node 4 is isolated
    pairs = [(0, 1, 0.5), (1, 2, 1.0), (0, 2, 0.25), (2, 3, 2.0)]
    a = np.zeros((5, 5))
    for i, j, w in pairs:
        a[i, j] = a[j, i] = w
    d = a.sum(1)
    dinv = np.zeros_like(d)
    dinv[d > 0] = d[d > 0] ** -0.5
    a_hat = dinv[:, None] * a * dinv[None, :]
    x = np.random.default_rng(0).standard_normal((5, 3))
    layers = [x]
    for _ in range(3):
        layers.append(a_hat @ layers[-1])
    expected = np.mean(layers, axis=0)

    ei = torch.tensor([[i, j] for i, j, _ in pairs] + [[j, i] for i, j, _ in pairs]).t()
    w = torch.tensor([w for *_, w in pairs] * 2, dtype=torch.float32)
    enc = LightGCNEncoder(layers=3)
    out = enc(torch.from_numpy(x).float(), ei, LightGCNEncoder.normalize(ei, w, 5))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[4].numpy(), x[4] / 4, rtol=1e-6)  # isolated: only its layer-0 share
    assert LightGCNEncoder(layers=0)(torch.from_numpy(x).float(), ei, w).numpy() == pytest.approx(x)


def test_knn_graph_top_k_positive_symmetric_no_self_loops():
    angles = np.deg2rad([0, 10, 30, 100, 180, 200])  # 4 and 5 point away from 0..2: negative cosines
    x = torch.tensor(np.stack([np.cos(angles), np.sin(angles)], 1) * [[1], [2], [1], [3], [1], [1]],
                     dtype=torch.float32)  # lengths do not matter: cosine
    cos = np.cos(angles[:, None] - angles[None, :])
    for k in (1, 2):
        ei, w = knn_graph(x, k)
        got = {e: float(v) for e, v in zip(map(tuple, ei.t().tolist()), w)}
        directed = set()
        for i in range(6):
            s = cos[i].copy()
            s[i] = -np.inf
            directed |= {(i, int(j)) for j in np.argsort(-s)[:k] if s[j] > 0}
        expected = directed | {(j, i) for i, j in directed}  # union of both directions
        assert set(got) == expected
        assert all(i != j for i, j in got)  # no self loops
        assert all(got[(j, i)] == got[(i, j)] for i, j in got)  # symmetric weights
        for (i, j), v in got.items():
            assert v == pytest.approx(cos[i, j], abs=1e-6) and v > 0  # weight = the (positive) cosine
    ei, _ = knn_graph(x, 1)
    assert (0, 1) in _edges(ei) and (1, 0) in _edges(ei)
    # 4 and 5 (180 and 200 degrees) have each other as a positive neighbour, never 0 (negative cosine)
    assert (4, 5) in _edges(ei) and not {(0, 4), (4, 0), (0, 5), (5, 0)} & _edges(ei)
    # rows outside the mask take no part
    ei, _ = knn_graph(x, 2, mask=torch.tensor([True, True, False, True, True, True]))
    assert 2 not in ei.view(-1).tolist()
    assert knn_graph(x, 0)[0].shape == (2, 0)


def test_comention_graph_counts_dialogues_and_thresholds():
    # (conversation, item); a repeated mention counts once
    mentions = torch.tensor([[0, 0, 0, 0, 1, 1, 2, 2], [0, 1, 2, 0, 0, 1, 1, 3]])
    assert _edges(comention_graph(mentions, 5, 1)) == {(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1),
                                                       (1, 3), (3, 1)}
    assert _edges(comention_graph(mentions, 5, 2)) == {(0, 1), (1, 0)}  # 0 and 1 share conversations 0 and 1
    assert comention_graph(mentions, 5, 3).shape == (2, 0)
    assert comention_graph(torch.empty(2, 0, dtype=torch.long), 5).shape == (2, 0)


def test_basis_rgcn_equals_pyg_rgcnconv():
    torch.manual_seed(0)
    conv = BasisRGCNConv(6, 5, num_relations=4, num_bases=2)
    x = torch.randn(9, 6, requires_grad=True)
    ei = torch.randint(0, 9, (2, 30))
    et = torch.randint(0, 3, (30,))  # relation 3 has no edge
    ours, ref = conv(x, ei, et), RGCNConv.forward(conv, x, ei, et)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    params = [x, conv.comp, conv.weight, conv.root]
    g1 = torch.autograd.grad((ours ** 2).sum(), params)
    g2 = torch.autograd.grad((ref ** 2).sum(), params)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def tiny_graph() -> Graph:
    g = torch.Generator().manual_seed(0)
    d = HeteroData()
    n_movies = 8
    d["movie"].x_text = torch.nn.functional.normalize(torch.randn(n_movies, TEXT_DIM, generator=g), dim=1)
    d["movie"].x_poster = torch.randn(n_movies, 5, generator=g)
    d["movie"].has_poster = torch.tensor([True, True, False, True, True, True, False, True])
    d["movie"].num_nodes = n_movies
    d["entity"].x_text = torch.randn(3, TEXT_DIM, generator=g)
    d["entity"].num_nodes = 3
    d["dialogue"].num_nodes = 4
    d["dialogue", "mentions", "movie"].edge_index = torch.tensor([[0, 0, 1, 1, 2, 3, 3], [0, 1, 1, 2, 3, 4, 5]])
    d["movie", "kg_starring", "entity"].edge_index = torch.tensor([[0, 1, 4, 7], [0, 0, 2, 1]])
    d["entity", "rev_kg_starring", "movie"].edge_index = torch.tensor([[0, 0, 2, 1], [0, 1, 4, 7]])
    d["movie", "kg_director", "entity"].edge_index = torch.tensor([[2, 3], [1, 1]])
    d["entity", "rev_kg_director", "movie"].edge_index = torch.tensor([[1, 1], [2, 3]])
    d["entity", "kg_related", "entity"].edge_index = torch.tensor([[0], [2]])
    meta = {"movie_ids": [10, 11, 12, 13, 14, 15, 16, 17], "entity_ids": [100, 101, 102],
            "item_ids": [900, 901, 902, 903, 904, 905], "candidates": [0, 1, 2, 3, 4, 5],
            "entity_movie": {str(900 + i): 10 + i for i in range(6)}}
    return Graph(d, meta)  # movies 16 and 17 are not dataset items (like MovieLens-only movies)


def fake_text(texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), TEXT_DIM), np.float32)
    for i, t in enumerate(texts):
        out[i] = np.random.default_rng(sum(map(ord, t))).standard_normal(TEXT_DIM)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


fake_text.dim = TEXT_DIM  # type: ignore[attr-defined]
fake_text.model_name = "fake"  # type: ignore[attr-defined]


def _examples(n: int, seed: int) -> list[CRSExample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        item = int(rng.integers(900, 906))
        ctx = (f"I liked movie {item - 900}", "what else?")
        ents = (item, 100) if i % 2 else (101,)
        out.append(CRSExample(dialogue=i, turn=1, context=ctx, entities=ents, item=item, resp=""))
    return out


def test_mscrs_nodes_and_graphs():
    net = MSCRS(MSCRSConfig(knn=2, hidden=8), TrainConfig(), fake_text)
    net._setup(tiny_graph())
    m = net.net
    assert m.movie_nodes == [0, 1, 2, 3, 4, 5] and m.n_entities == 3  # movies 16, 17 left out
    assert m.graph_sizes["collaborative"] == 2 * 3  # pairs 0-1, 1-2, 4-5 (dialogues 0, 1, 3), both directions
    assert int(m.image_index.max()) < 6 and not {2} & set(m.image_index.view(-1).tolist())  # 2: no poster
    assert m.kg_index.shape[1] == 11 and int(m.kg_index.max()) < 9  # the 2 edges of movie 17 are dropped
    h = m.encode_nodes()
    assert h.shape == (9, 8) and m.items(h).shape == (6, 8)
    qb = net.featurize([Query("a", (900, 101, 999)), Query("b", movies=(13, 99))])
    assert qb.nodes.tolist() == [0, 7, 3] and qb.batch.tolist() == [0, 0, 1]  # 999, 99: unknown, dropped


def test_mscrs_fit_score_save_load(tmp_path: Path):
    assert MODELS["mscrs"] is MSCRS
    config = load_config(["model.mscrs.hidden=16", "model.mscrs.knn=2", "train.epochs=3", "train.batch_size=16"])
    model = MSCRS.from_config(config, fake_text)
    crs = SimpleNamespace(train_as_test=[], dev_as_test=[], dev_in_test_file=[],
                          train=_examples(60, 0), dev=_examples(12, 1))
    seen: list[dict] = []
    model.fit(crs, tiny_graph(), on_epoch=seen.append)  # type: ignore[arg-type]
    assert [r["epoch"] for r in seen] == [1, 2, 3] and seen[-1]["loss"] < seen[0]["loss"]
    queries = [Query("I liked movie 2 what else?", (902,)), Query("something new")]
    s = model.score(queries)
    assert s.shape == (2, 6) and s.dtype == np.float32 and np.isfinite(s).all()
    model.save(tmp_path)
    loaded = MSCRS.load(tmp_path, tiny_graph(), fake_text)
    np.testing.assert_allclose(loaded.score(queries), s, rtol=1e-5, atol=1e-5)
    rec = loaded.recommend(queries[0], k=3, exclude_seen=True)
    assert len(rec) == 3 and 12 not in [m for m, _ in rec]
    with pytest.raises(ValueError):
        MSCRS.load(tmp_path, tiny_graph(), None)


def test_sensitivity_sweep_trains_each_point_once_and_writes_its_plots(tmp_path: Path) -> None:
    import json

    from qamrec.eval.mscrs_sensitivity import run_mscrs_sensitivity

    config = load_config(home=tmp_path / "home")
    trained: list[tuple[int, float]] = []

    def train(dataset: str, run: Path, c) -> dict:
        k, lam = c.model.mscrs.knn, c.model.mscrs.fusion
        trained.append((k, lam))
        run.mkdir(parents=True)  # a complete run: its config and metrics, as qamrec train writes them
        m = {"model": "mscrs", "best_epoch": 3, "train_seconds": 1.0,
             "test": {"recall@1": 0.01 * k, "recall@10": 0.1 + lam / 10, "recall@50": 0.4, "ndcg@10": 0.05,
                      "n_examples": 100}}
        (run / "metrics.json").write_text(json.dumps(m))
        (run / "config.json").write_text(json.dumps(json.loads(c.model_dump_json()) | {"dataset": dataset}))
        return m

    out = tmp_path / "out"
    r = run_mscrs_sensitivity("inspired", config, out, tmp_path / "runs", train, log=lambda m: None,
                              k_values=(5, 10, 20), lambdas=(0.0, 0.5))
    assert trained == [(5, 0.5), (10, 0.5), (20, 0.5), (10, 0.0)]  # the default point (10, 0.5) once
    assert [p["x"] for p in r["k"]] == [5, 10, 20] and [p["x"] for p in r["lambda"]] == [0.0, 0.5]
    assert r["k"][2]["recall@1"] == pytest.approx(0.2) and r["lambda"][0]["recall@10"] == pytest.approx(0.1)
    for name in ("mscrs_sensitivity_inspired.json", "mscrs_sensitivity_inspired.md",
                 "mscrs_sensitivity_inspired_k.png", "mscrs_sensitivity_inspired_lambda.png"):
        assert (out / name).stat().st_size > 0
    trained.clear()  # a second sweep reuses every complete run with the same configuration
    run_mscrs_sensitivity("inspired", config, out, tmp_path / "runs", train, log=lambda m: None,
                          k_values=(5, 10, 20), lambdas=(0.0, 0.5))
    assert trained == []
