"""The GAT encoder, query-aware pooling, the scorer and the baselines on tiny graphs built here."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData

from qamrec.config import ModelConfig
from qamrec.graph.build import knn_edges
from qamrec.graph.store import Graph, load_graph, save_graph
from qamrec.models.gat import GATEncoder
from qamrec.models.net import QAMRecNet
from qamrec.models.pooling import QueryAwarePooling
from qamrec.models.query import PhraseMatcher, Query, QueryFeaturizer, context_text, subset

TEXT_DIM = 8


def tiny_graph(seed: int = 0) -> Graph:
    g = torch.Generator().manual_seed(seed)
    d = HeteroData()
    d["movie"].x_text = torch.nn.functional.normalize(torch.randn(6, TEXT_DIM, generator=g), dim=1)
    d["movie"].x_poster = torch.randn(6, 5, generator=g)
    d["movie"].has_poster = torch.tensor([True, True, False, True, False, True])
    d["movie"].num_nodes = 6
    d["entity"].x_text = torch.randn(3, TEXT_DIM, generator=g)
    d["entity"].num_nodes = 3
    d["genre"].x_text = torch.randn(2, TEXT_DIM, generator=g)
    d["genre"].num_nodes = 2
    d["user"].num_nodes = 4
    d["user", "rates", "movie"].edge_index = torch.tensor([[0, 0, 1, 2, 3, 3], [0, 1, 1, 2, 3, 5]])
    d["user", "rates", "movie"].edge_attr = torch.rand(6, 1, generator=g)
    d["movie", "rev_rates", "user"].edge_index = d["user", "rates", "movie"].edge_index.flip(0)
    d["movie", "rev_rates", "user"].edge_attr = d["user", "rates", "movie"].edge_attr
    d["movie", "starring", "entity"].edge_index = torch.tensor([[0, 1, 4], [0, 0, 2]])
    d["entity", "rev_starring", "movie"].edge_index = torch.tensor([[0, 0, 2], [0, 1, 4]])
    d["movie", "has_genre", "genre"].edge_index = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 0, 1, 1, 0, 1]])
    d["genre", "rev_has_genre", "movie"].edge_index = torch.tensor([[0, 0, 1, 1, 0, 1], [0, 1, 2, 3, 4, 5]])
    meta = {"movie_ids": [10, 11, 12, 13, 14, 15], "entity_ids": [100, 101, 102], "tags": [],
            "genres": ["horror", "romantic comedy"], "entity_labels": ["Tom Hanks", "Paris", "Steven Spielberg"],
            "item_ids": [900, 901, 902, 903, 904], "candidates": [0, 1, 2, 3, 4],
            "entity_movie": {"900": 10, "901": 11, "902": 12, "903": 13, "904": 14}}
    return Graph(d, meta)


def fake_text(texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), TEXT_DIM), np.float32)
    for i, t in enumerate(texts):
        rng = np.random.default_rng(zlib.crc32(t.encode()))  # str hash() differs per process
        out[i] = rng.standard_normal(TEXT_DIM)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


fake_text.dim = TEXT_DIM  # type: ignore[attr-defined]
fake_text.model_name = "fake"  # type: ignore[attr-defined]


@pytest.mark.parametrize("attention", ["gat", "gatv2"])
def test_gat_encoder_shapes_and_gradients(attention):
    graph = tiny_graph()
    d = graph.data
    enc = GATEncoder(list(d.node_types), list(d.edge_types), hidden=8, layers=2, heads=2, dropout=0.0,
                     edge_dims={("user", "rates", "movie"): 1, ("movie", "rev_rates", "user"): 1},
                     attention=attention)
    x = {t: torch.randn(int(d[t].num_nodes), 8, requires_grad=True) for t in d.node_types}
    ea = {et: d[et].edge_attr for et in d.edge_types if "edge_attr" in d[et]}
    out = enc(x, d.edge_index_dict, ea)
    assert {t: tuple(v.shape) for t, v in out.items()} == {t: (int(d[t].num_nodes), 8) for t in d.node_types}
    (out["movie"] * torch.randn_like(out["movie"])).sum().backward()  # a plain sum of LayerNorm rows is constant
    assert x["user"].grad is not None and x["user"].grad.abs().sum() > 0  # messages flow user -> movie
    assert x["entity"].grad.abs().sum() > 0


def _eval_encoder(graph: Graph, attention: str = "gat") -> tuple[GATEncoder, dict[str, torch.Tensor], dict]:
    """A seeded 2-layer encoder in eval mode over ``graph``, random inputs and the graph's edge attributes."""
    d = graph.data
    torch.manual_seed(0)
    enc = GATEncoder(list(d.node_types), list(d.edge_types), hidden=8, layers=2, heads=2, dropout=0.0,
                     edge_dims={("user", "rates", "movie"): 1, ("movie", "rev_rates", "user"): 1},
                     attention=attention).eval()
    x = {t: torch.randn(int(d[t].num_nodes), 8) for t in d.node_types}
    ea = {et: d[et].edge_attr for et in d.edge_types if "edge_attr" in d[et]}
    return enc, x, ea


@pytest.mark.parametrize("attention", ["gat", "gatv2"])
def test_gat_encoder_permutation_equivariant(attention):
    graph = tiny_graph()
    d = graph.data
    enc, x, ea = _eval_encoder(graph, attention)
    out = enc(x, d.edge_index_dict, ea)
    perm = torch.tensor([3, 0, 2, 1])  # relabel users: new user i is old user perm[i]
    inv = torch.argsort(perm)
    x2 = dict(x, user=x["user"][perm])
    ei = dict(d.edge_index_dict)
    ei[("user", "rates", "movie")] = torch.stack([inv[ei[("user", "rates", "movie")][0]],
                                                  ei[("user", "rates", "movie")][1]])
    ei[("movie", "rev_rates", "user")] = ei[("user", "rates", "movie")].flip(0)
    out2 = enc(x2, ei, ea)
    assert torch.allclose(out["movie"], out2["movie"], atol=1e-5)
    assert torch.allclose(out["user"][perm], out2["user"], atol=1e-5)


def test_pooling_weights_sum_to_one_and_permutation_invariant():
    torch.manual_seed(0)
    pool = QueryAwarePooling(4).eval()
    h = torch.randn(7, 4)
    q = torch.randn(3, 4)
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1])  # query 2 has an empty set
    g, alpha = pool(h, q, batch)
    sums = torch.zeros(3).index_add_(0, batch, alpha)
    assert torch.allclose(sums[:2], torch.ones(2)) and sums[2] == 0
    assert torch.equal(g[2], torch.zeros(4))
    assert torch.allclose(g[0], (alpha[:3, None] * h[:3]).sum(0))
    perm = torch.tensor([2, 0, 1, 6, 4, 3, 5])
    g2, _ = pool(h[perm], q, batch[perm])
    assert torch.allclose(g, g2, atol=1e-6)
    # the query changes the weights (attention is conditioned on it), the mean ablation does not
    _, alpha_other = pool(h, torch.randn(3, 4), batch)
    assert not torch.allclose(alpha, alpha_other)
    _, alpha_mean = QueryAwarePooling(4, mode="mean")(h, q, batch)
    assert torch.allclose(alpha_mean[:3], torch.full((3,), 1 / 3))


def test_pooling_of_one_query_equals_the_batched_path():
    torch.manual_seed(1)
    pool = QueryAwarePooling(4).eval()
    h, q = torch.randn(9, 4), torch.randn(2, 4)
    batch = torch.tensor([0] * 5 + [1] * 4)
    prior = torch.randn(9)
    g_all, a_all = pool(h, q, batch, prior)
    g_one, a_one = pool(h[5:], q[1:], torch.zeros(4, dtype=torch.long), prior[5:])  # the single-query path
    assert g_one.shape == (1, 4)
    assert torch.allclose(a_one, a_all[5:], atol=1e-6) and torch.allclose(g_one[0], g_all[1], atol=1e-6)


def test_phrase_matcher_and_context_text():
    m = PhraseMatcher(["horror", "it", "romantic comedy", "love", "Tom Hanks"])
    assert m.match("Any ROMANTIC comedy with tom hanks? Or horror. I love it") == [2, 4, 0]
    assert context_text(["", "a b c", "d e", "f"], max_words=3) == "d e f"


def test_featurizer_sets_and_subset():
    graph = tiny_graph()
    f = QueryFeaturizer(graph, fake_text, retrieved=2)
    qb = f([Query("a horror film with Tom Hanks", entities=(901, 101)), Query("nothing known here")])
    off = f.offsets
    first = set(qb.nodes[qb.batch == 0].tolist())
    assert {off["movie"] + 1, off["entity"] + 1, off["genre"] + 0, off["entity"] + 0} <= first
    second = qb.nodes[qb.batch == 1].tolist()
    assert len(second) == 2 and all(off["movie"] <= n < off["entity"] for n in second)  # text alone
    assert qb.anchors.tolist() == [1] and qb.anchor_batch.tolist() == [0]
    assert qb.mentioned.tolist() == [1] and qb.mentioned_batch.tolist() == [0]  # candidate 901 is movie node 1
    s = subset(qb, torch.tensor([1]))
    assert len(s) == 1 and s.nodes.tolist() == second and s.batch.tolist() == [0, 0]


@pytest.mark.parametrize("overrides", [{}, {"encoder": "mlp"}, {"pooling": "mean"}, {"poster_features": False},
                                       {"text_features": False}, {"attention": "gatv2"}, {"id_embedding": True},
                                       {"pool_recency": 4}])
def test_net_scores_and_learns(overrides):
    graph = tiny_graph()
    cfg = ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=2, **overrides)
    torch.manual_seed(0)
    net = QAMRecNet(graph, cfg, TEXT_DIM)
    f = QueryFeaturizer(graph, fake_text, retrieved=2)
    qb = f([Query(f"query {i}", entities=(900 + i % 5,)) for i in range(10)])
    gold = torch.tensor([(i + 1) % 5 for i in range(10)])
    scores = net(qb)
    assert scores.shape == (10, 5)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    first = None
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(net(qb), gold)
        first = first if first is not None else float(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.5 * first  # it can fit a tiny mapping from anchors to the next item


def test_id_embedding_starts_as_the_content_model_and_learns_only_where_gradients_reach():
    graph = tiny_graph()
    f = QueryFeaturizer(graph, fake_text, retrieved=0)
    qb = f([Query(f"query {i}", entities=(900 + i % 3,)) for i in range(6)])
    nets = []
    for id_embedding in (False, True):
        torch.manual_seed(0)
        nets.append(QAMRecNet(graph, ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=0, encoder="mlp",
                                                 id_embedding=id_embedding), TEXT_DIM))
    plain, with_id = nets
    assert plain.movie_id is None and with_id.movie_id is not None
    assert torch.allclose(plain(qb), with_id(qb))  # zero at the start, and the other weights are the same
    opt = torch.optim.AdamW(with_id.parameters(), lr=0.05, weight_decay=1e-2)
    gold = torch.tensor([(i + 1) % 3 for i in range(6)])
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(with_id(qb), gold)
        opt.zero_grad()
        loss.backward()
        opt.step()
    moved = with_id.movie_id.weight.detach().abs().sum(dim=1) > 0
    named = set(with_id.candidates[:3].tolist())  # the movies the queries name or target (MLP: no neighbours)
    assert moved[sorted(named)].all()
    # the MLP encoder has no message passing: a movie no query names and no candidate slot holds stays at zero
    untouched = [m for m in range(len(moved)) if m not in set(with_id.candidates.tolist())]
    assert untouched and not moved[untouched].any()


def test_knn_edges():
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    ei = knn_edges(x, 1)
    pairs = set(map(tuple, ei.t().tolist()))  # (neighbour, node)
    assert (1, 0) in pairs and (0, 1) in pairs and (1, 2) in pairs
    assert all(n != node for n, node in pairs)
    assert not any(node == 3 for _, node in pairs if _ == 0)  # negative similarity is no edge
    masked = knn_edges(x, 2, mask=torch.tensor([True, False, True, True]))
    assert 1 not in masked.view(-1).tolist()


def test_graph_store_round_trip(tmp_path: Path):
    graph = tiny_graph()
    save_graph(graph, tmp_path)
    back = load_graph(tmp_path)
    assert back.sizes() == graph.sizes()
    assert torch.equal(back.data["movie"].x_poster, graph.data["movie"].x_poster)
    assert back.meta["genres"] == graph.meta["genres"]
    raw = bytearray((tmp_path / "graph.safetensors").read_bytes())
    raw[-3] ^= 0xFF
    (tmp_path / "graph.safetensors").write_bytes(bytes(raw))
    from qamrec.errors import MissingDataError

    with pytest.raises(MissingDataError, match="corrupted"):
        load_graph(tmp_path)


def test_baselines_contract(tmp_path: Path):
    from types import SimpleNamespace

    from qamrec.eval.protocol import CRSExample
    from qamrec.models.baselines import CoOccurrence, Popularity, TextSimilarity

    graph = tiny_graph()
    graph.data["user", "rates", "movie"].edge_attr = torch.ones(6, 1)
    ex = lambda item, ents=(): CRSExample(0, 0, ("hi",), ents, item, "")  # noqa: E731
    crs = SimpleNamespace(train_as_test=[], dev_as_test=[], dev_in_test_file=[],
                          train=[ex(902), ex(902), ex(903)], dev=[ex(901, (900,))])
    pop = Popularity().fit(crs, graph)
    assert pop.score([Query("x"), Query("y")]).tolist()[1] == [0, 0, 2, 1, 0]
    assert [m for m, _ in pop.recommend(Query("x"), k=2)] == [12, 13]
    co = CoOccurrence().fit(crs, graph)
    assert tuple(co.arrays["weights"]) == (0.0, 0.0)  # every weight ties on this dev set: the smallest is kept
    co.arrays["weights"] = np.array([1.0, 0.0], np.float32)
    s = co.score([Query("", entities=(900,))])[0]  # user 0 rated movies 0 and 1: candidate 901 co-occurs
    assert s.argmax() == 1 and s[0] < s[1]
    text = TextSimilarity(fake_text).fit(crs, graph)
    q = "some query"
    expect = fake_text([q]) @ graph.data["movie"].x_text[:5].numpy().T
    assert np.allclose(text.score([Query(q)]), expect / np.linalg.norm(graph.data["movie"].x_text[:5].numpy(), axis=1),
                       atol=1e-5)
    for model in (pop, co, text):
        model.save(tmp_path / model.name)
        back = type(model).load(tmp_path / model.name, graph, fake_text)
        assert np.allclose(back.score([Query("q", entities=(900,))]), model.score([Query("q", entities=(900,))]))


def test_a_model_saved_before_the_id_embedding_loads_without_it(tmp_path: Path):
    import json

    from qamrec.config import TrainConfig
    from qamrec.models.qamrec import QAMRec

    graph = tiny_graph()
    model = QAMRec(ModelConfig(hidden=8, heads=2, retrieved=0, id_embedding=False), TrainConfig(), fake_text, 0)
    model._setup(graph)
    model.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    del meta["model"]["id_embedding"], meta["model"]["attention"]  # as written before these settings existed
    (tmp_path / "model.json").write_text(json.dumps(meta))
    back = QAMRec.load(tmp_path, graph, fake_text)
    assert back.net.movie_id is None and back.model_cfg.attention == "gat"
    q = [Query("q", entities=(900,))]
    assert np.allclose(back.score(q), model.score(q), atol=1e-6)


def _tiny_fit_setup(n: int):
    """A tiny net, its featurizer, ``n`` training queries with gold answers, one dev example and the item ids."""
    from qamrec.eval.protocol import CRSExample

    graph = tiny_graph()
    torch.manual_seed(0)
    net = QAMRecNet(graph, ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=2), TEXT_DIM)
    f = QueryFeaturizer(graph, fake_text, retrieved=2)
    qb = f([Query(f"query {i}", entities=(900 + i % 5,)) for i in range(n)])
    gold = torch.tensor([(i + 1) % 5 for i in range(n)])
    dev = [CRSExample(dialogue=0, turn=0, context=("x",), entities=(900,), item=901, resp="")]
    return net, f, qb, gold, dev, [900, 901, 902, 903, 904]


@pytest.mark.parametrize("graph_every", [1, 3])
def test_fit_net_runs_the_encoder_on_every_nth_batch(graph_every, monkeypatch):
    """Historical embeddings: between two passes with gradients the batches reuse the last node representations."""
    from qamrec.config import TrainConfig
    from qamrec.train.loop import fit_net

    net, f, qb, gold, dev, items = _tiny_fit_setup(12)
    calls: list[bool] = []
    encode = net.encode_nodes
    monkeypatch.setattr(net, "encode_nodes", lambda: calls.append(torch.is_grad_enabled()) or encode())
    cfg = TrainConfig(epochs=2, batch_size=2, patience=5, graph_every=graph_every)
    enc0 = [p.detach().clone() for p in net.encoder.parameters()]
    hist = fit_net(net, qb, gold, f([Query("x", entities=(900,))]), dev, items, cfg, seed=0)
    per_epoch = -(-6 // graph_every)  # 6 batches an epoch
    assert calls.count(True) == 2 * per_epoch  # passes with gradients
    assert calls.count(False) == 2  # the dev evaluation after each epoch
    assert len(hist.epochs) == 2
    assert any(not torch.equal(a, b) for a, b in zip(enc0, net.encoder.parameters()))  # the encoder still learns


def test_featurizer_gives_each_member_its_role_and_pooling_can_prefer_named_movies():
    from qamrec.models.query import ROLES

    graph = tiny_graph()
    f = QueryFeaturizer(graph, fake_text, retrieved=3)
    qb = f([Query("a horror movie with Tom Hanks", entities=(900, 101))])
    named = {int(n) for n, r in zip(qb.nodes, qb.role) if ROLES[int(r)] == "named_movie"}
    assert named == {0}  # entity 900 is movie node 0
    kinds = {ROLES[int(r)] for r in qb.role}
    assert {"named_movie", "named_entity", "phrase", "retrieved"} <= kinds
    assert len(qb.role) == len(qb.nodes)
    assert torch.equal(subset(qb, torch.tensor([0])).role, qb.role)
    # a pooling whose role term favours named movies puts (nearly) all weight on them
    pool = QueryAwarePooling(8, roles=len(ROLES))
    h, q = torch.randn(len(qb.nodes), 8), torch.randn(1, 8)
    _, a0 = pool(h, q, qb.batch, role=qb.role)
    with torch.no_grad():
        pool.role_bias[0] = 50.0
    _, a1 = pool(h, q, qb.batch, role=qb.role)
    is_named = qb.role == 0
    assert float(a1[is_named].sum()) > 0.99 > float(a0[is_named].sum())


@pytest.mark.parametrize("shared", [True, False])
def test_entities_naming_one_movie_score_alike_with_the_shared_bias(shared):
    graph = tiny_graph()
    graph.meta["candidates"] = [0, 1, 2, 2, 3]  # items 902 and 903 are two entities of movie node 2
    torch.manual_seed(0)
    net = QAMRecNet(graph, ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=2, shared_bias=shared), TEXT_DIM)
    net.init_bias(torch.tensor([1.0, 0.0, 3.0, 0.0, 1.0]))  # only 902 was ever an answer
    assert len(net.free_bias) == (4 if shared else 5)
    qb = QueryFeaturizer(graph, fake_text, retrieved=2)([Query("q", entities=(900,))])
    gold = torch.tensor([3])  # train toward 903: with a shared bias 902 moves with it
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(net(qb), gold)
        opt.zero_grad()
        loss.backward()
        opt.step()
    s = net(qb).detach()[0]
    if shared:
        assert s[2] == s[3] and net.bias[2] == net.bias[3]
        assert float(net.bias[2]) == pytest.approx(float(net.free_bias[2]))
    else:
        assert s[2] != s[3]


def _with_text_knn(graph: Graph, k: int = 2) -> Graph:
    graph.data["movie", "text_knn", "movie"].edge_index = knn_edges(graph.data["movie"].x_text, k)
    return graph


def test_gat_inductive_pass_on_a_graph_node_reproduces_the_full_pass():
    """A node given to :meth:`GATEncoder.inductive` with its own incoming links gets its full-pass output."""
    graph = _with_text_knn(tiny_graph())
    d = graph.data
    enc, x, ea = _eval_encoder(graph)
    states: list[dict[str, torch.Tensor]] = []
    with torch.no_grad():
        out = enc(x, d.edge_index_dict, ea, states=states)
        assert len(states) == 2 and torch.equal(states[0]["movie"], x["movie"])
        node = 4  # movie 4 has no rating (the one relation with edge attributes): links without attributes
        links = {}
        for et, ei in d.edge_index_dict.items():
            if et[2] == "movie" and (ei[1] == node).any():
                assert "edge_attr" not in d[et]
                links[et] = torch.stack([ei[0][ei[1] == node], torch.zeros(int((ei[1] == node).sum()), dtype=torch.long)])
        assert ("movie", "text_knn", "movie") in links
        got = enc.inductive(states, x["movie"][node:node + 1], "movie", links)
        assert torch.allclose(got[0], out["movie"][node], atol=1e-5)
        alone = enc.inductive(states, x["movie"][node:node + 1], "movie", {})
        assert not torch.allclose(alone[0], out["movie"][node], atol=1e-3)  # the links matter


def test_new_movies_read_their_text_neighbours_in_the_graph():
    """Movies outside the graph are linked to their nearest graph movies by text and read their representations;
    without the text kNN relation (or with the MLP encoder) they are isolated nodes."""
    graph = _with_text_knn(tiny_graph())
    torch.manual_seed(0)
    net = QAMRecNet(graph, ModelConfig(hidden=8, heads=2, dropout=0.0), TEXT_DIM).eval()
    text = graph.data["movie"].x_text[[1, 3]].float() + 0.01  # near movies 1 and 3
    h = net.new_movies(text)
    assert h.shape == (2, 8)
    with torch.no_grad():  # the users' embeddings reach movies 1 and 3 (ratings), and so the new movies
        net.embed["user"].weight.add_(torch.randn_like(net.embed["user"].weight))
    h2 = net.new_movies(text)
    assert not torch.allclose(h, h2, atol=1e-4)
    assert torch.allclose(h2, net.new_movies(text, chunk=1), atol=1e-5)  # chunked kNN: the same links
    plain = QAMRecNet(tiny_graph(), ModelConfig(hidden=8, heads=2, dropout=0.0), TEXT_DIM).eval()
    a = plain.new_movies(text)
    with torch.no_grad():
        plain.embed["user"].weight.add_(1.0)
    assert torch.allclose(a, plain.new_movies(text), atol=1e-6)  # no text kNN: nothing of the graph is read
    mlp = QAMRecNet(graph, ModelConfig(hidden=8, dropout=0.0, encoder="mlp"), TEXT_DIM).eval()
    assert mlp.new_movies(text).shape == (2, 8)


def test_new_movies_linked_to_their_genres_read_the_genre_nodes():
    """A movie outside the graph linked to its genres reads those genre nodes (and only with the links)."""
    graph = tiny_graph()
    torch.manual_seed(0)
    net = QAMRecNet(graph, ModelConfig(hidden=8, heads=2, dropout=0.0), TEXT_DIM).eval()
    text = torch.nn.functional.normalize(torch.randn(3, TEXT_DIM), dim=1)
    genres = torch.tensor([[0, 1, 0], [0, 1, 2]])  # (genre node, row): rows 0 and 2 horror, row 1 romantic comedy
    text[2] = text[0]
    plain, linked = net.new_movies(text), net.new_movies(text, genres=genres)
    assert not torch.allclose(plain[:2], linked[:2], atol=1e-4)
    assert torch.allclose(linked[0], linked[2], atol=1e-6)  # same text, same genre: the same representation
    net.x_genre[1] += 1.0  # the input of genre node 1 (romantic comedy)
    after = net.new_movies(text, genres=genres)
    assert not torch.allclose(after[1], linked[1], atol=1e-4)  # row 1 reads genre 1
    assert torch.allclose(after[[0, 2]], linked[[0, 2]], atol=1e-6)  # rows 0 and 2 do not
    assert torch.allclose(net.new_movies(text), plain, atol=1e-6)  # without links nothing of the graph is read


def test_lr_factor_warms_up_then_decays_to_zero_or_stays():
    from qamrec.config import TrainConfig
    from qamrec.train.loop import lr_factor

    cos = TrainConfig(schedule="cosine", warmup=0.1)
    curve = [lr_factor(cos, t, 100) for t in range(100)]
    assert curve[:10] == pytest.approx([(t + 1) / 10 for t in range(10)])
    assert curve[10] == pytest.approx(1.0) and curve[55] == pytest.approx(0.5, abs=1e-9)
    assert all(a >= b for a, b in zip(curve[10:], curve[11:])) and curve[-1] < 1e-3
    assert {lr_factor(TrainConfig(), t, 100) for t in range(100)} == {1.0}
    assert lr_factor(TrainConfig(warmup=0.5), 0, 10) == pytest.approx(0.2)


def test_fit_net_follows_the_schedule_step_by_step(monkeypatch):
    """The optimiser's learning rate at each step is ``lr * lr_factor``, across epochs."""
    from qamrec.config import TrainConfig
    from qamrec.train.loop import fit_net, lr_factor

    net, f, qb, gold, dev, items = _tiny_fit_setup(10)
    seen: list[float] = []
    step = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: seen.append(self.param_groups[0]["lr"])
                        or step(self, *a, **k))
    cfg = TrainConfig(epochs=3, batch_size=4, patience=5, lr=0.01, schedule="cosine", warmup=0.34)
    fit_net(net, qb, gold, f([Query("x", entities=(900,))]), dev, items, cfg, seed=0)
    assert seen == pytest.approx([0.01 * lr_factor(cfg, t, 9) for t in range(9)])  # 3 batches an epoch
    assert seen[0] < seen[1] < seen[2] == max(seen) and seen[-1] < seen[4] < seen[3]  # 3 warmup steps


def test_fit_net_keeps_the_moving_average_of_the_weights(monkeypatch):
    """``train.ema``: the kept weights are the bias-corrected average of the weights after every step, by hand."""
    from qamrec.config import TrainConfig
    from qamrec.train.loop import fit_net

    net, f, qb, gold, dev, items = _tiny_fit_setup(10)
    names = [k for k, p in net.named_parameters() if p.requires_grad]
    total = {k: torch.zeros_like(p) for k, p in net.named_parameters() if p.requires_grad}
    avg: dict[str, torch.Tensor] = {}
    norm = [0.0]
    step = torch.optim.AdamW.step

    def stepped(self, *a, **k):  # sum_s 0.6^(t-s) theta_s / sum_s 0.6^(t-s): the initial weights take no part
        out = step(self, *a, **k)
        norm[0] = 0.6 * norm[0] + 1.0
        for name, p in net.named_parameters():
            if name in total:
                total[name] = 0.6 * total[name] + p.detach()
                avg[name] = total[name] / norm[0]
        return out


    monkeypatch.setattr(torch.optim.AdamW, "step", stepped)
    cfg = TrainConfig(epochs=1, batch_size=4, lr=0.05, ema=math.log(0.5) / math.log(0.6) / 3)  # 0.6 a step
    hist = fit_net(net, qb, gold, f([Query("x", entities=(900,))]), dev, items, cfg, seed=0)
    params = dict(net.named_parameters())
    assert all(torch.allclose(params[k], avg[k], atol=1e-6) for k in names)  # the only epoch: its average is kept
    assert {"dev_raw_ndcg@10", "dev_raw_recall@10", "dev_ndcg@10"} <= set(hist.epochs[0])
    # without the average the kept weights are the last step's, which differ from it
    net2, f, qb, gold, dev, items = _tiny_fit_setup(10)
    fit_net(net2, qb, gold, f([Query("x", entities=(900,))]), dev, items, cfg.model_copy(update={"ema": 0.0}),
            seed=0)
    assert any(not torch.allclose(p, avg[k], atol=1e-4) for k, p in net2.named_parameters() if k in avg)


def test_fit_net_with_an_average_resumes_as_if_never_stopped(tmp_path: Path):
    """The moving average is in the checkpoint: stopped after epoch 1 and resumed, the run ends as one that was not."""
    from qamrec.config import TrainConfig
    from qamrec.train.checkpoint import Checkpointer, checkpointing
    from qamrec.train.loop import fit_net

    cfg = TrainConfig(epochs=3, batch_size=4, lr=0.05, ema=0.5, patience=5)
    net, f, qb, gold, dev, items = _tiny_fit_setup(10)
    dev_q = f([Query("x", entities=(900,))])
    whole = fit_net(net, qb, gold, dev_q, dev, items, cfg, seed=0)

    class Stop(Exception):
        pass

    def stop(row: dict[str, float]) -> None:
        if row["epoch"] == 1:
            raise Stop

    ckpt = Checkpointer(tmp_path, {"x": 1})
    with checkpointing(ckpt):
        with pytest.raises(Stop):
            fit_net(_tiny_fit_setup(10)[0], qb, gold, dev_q, dev, items, cfg, seed=0, on_epoch=stop)
        assert ckpt.load().averaged  # type: ignore[union-attr]
        again = _tiny_fit_setup(10)[0]
        resumed = fit_net(again, qb, gold, dev_q, dev, items, cfg, seed=0)
    def untimed(rows: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in r.items() if k != "train_s"} for r in rows]

    assert untimed(resumed.epochs) == untimed(whole.epochs) and resumed.best_epoch == whole.best_epoch
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))


def test_featurizer_ranks_named_members_by_recency_and_pooling_can_prefer_the_latest():
    graph = tiny_graph()
    f = QueryFeaturizer(graph, fake_text, retrieved=2)
    # movie 902 (node 2), then entity 101, then movie 900 (node 0): node 0 is the latest, the entity second
    qb = f([Query("something", entities=(902, 101, 900)), Query("more", entities=(901,), movies=(13,))])
    off = f.offsets
    rec = {(int(b), int(n)): int(r) for b, n, r in zip(qb.batch, qb.nodes, qb.recency)}
    assert rec[(0, off["movie"] + 0)] == 0
    assert rec[(0, off["entity"] + 1)] == 1
    assert rec[(0, off["movie"] + 2)] == 2
    assert rec[(1, off["movie"] + 3)] == 0 and rec[(1, off["movie"] + 1)] == 1  # catalog movies come after entities
    named = {k for k, r in rec.items() if r >= 0}
    assert all(rec[k] == -1 for k in rec if k not in named) and len(rec) > len(named)  # retrieved: -1
    one = subset(qb, torch.tensor([1]))
    assert torch.equal(one.recency, qb.recency[qb.batch == 1])
    # zero-initialised: the same weights as without recency; a favoured position takes (nearly) all of them
    pool = QueryAwarePooling(8, positions=2)
    h, q = torch.randn(len(qb.nodes), 8), torch.randn(2, 8)
    _, a0 = pool(h, q, qb.batch)
    _, a1 = pool(h, q, qb.batch, recency=qb.recency)
    assert torch.allclose(a0, a1)
    with torch.no_grad():
        pool.pos_bias[1] = 50.0  # position 1 and beyond (capped): entity 101 and node 2 in query 0
    _, a2 = pool(h, q, qb.batch, recency=qb.recency)
    older = (qb.batch == 0) & (qb.recency >= 1)
    assert float(a2[older].sum()) > 0.99 > float(a0[older].sum())


def test_id_dropout_drops_whole_movie_embeddings_in_training_only():
    graph = tiny_graph()
    torch.manual_seed(0)
    net = QAMRecNet(graph, ModelConfig(hidden=8, heads=2, dropout=0.0, id_embedding=True, id_dropout=0.5), TEXT_DIM)
    with torch.no_grad():
        net.movie_id.weight.normal_()
    content = net.movie_in(torch.cat([net.movie_text, net.movie_poster * net.has_poster, net.has_poster], 1))
    net.eval()
    assert torch.allclose(net.node_inputs()["movie"], content + net.movie_id.weight, atol=1e-6)
    net.train()
    kept = []
    for _ in range(20):
        x = net.node_inputs()["movie"]
        full = torch.isclose(x, content + net.movie_id.weight, atol=1e-6).all(1)
        bare = torch.isclose(x, content, atol=1e-6).all(1)
        assert bool((full ^ bare).all())  # each movie has all of its embedding or none of it
        kept.append(full.float())
    share = float(torch.stack(kept).mean())
    assert 0.3 < share < 0.7


def test_cold_dropout_encodes_some_movies_as_if_outside_the_graph():
    """In training, a cold movie gets no free embedding and no incoming edge: its representation is what
    new_movies gives a movie with its text and no link (and no poster, where it has none)."""
    graph = tiny_graph()
    torch.manual_seed(0)
    cfg = ModelConfig(hidden=8, heads=2, dropout=0.0, id_embedding=True, cold_dropout=0.5)
    net = QAMRecNet(graph, cfg, TEXT_DIM)
    with torch.no_grad():
        net.movie_id.weight.normal_()
    net.eval()
    warm = net.encode_nodes()["movie"]
    isolated = net.new_movies(net.movie_text, k=0)
    net.train()
    seed = next(s for s in range(100) if 0 < int((torch.rand(6, generator=torch.Generator().manual_seed(s))
                                                 < 0.5).sum()) < 6)
    cold = torch.rand(6, generator=torch.Generator().manual_seed(seed)) < 0.5
    torch.manual_seed(seed)
    h = net.encode_nodes()["movie"]
    no_poster = ~net.has_poster.squeeze(1).bool()
    assert 0 < int(cold.sum()) < 6
    assert torch.allclose(h[cold & no_poster], isolated[cold & no_poster], atol=1e-5)
    assert torch.allclose(net.eval().encode_nodes()["movie"], warm)  # eval: every movie as it is
    h.sum().backward()  # and the renumbering of the graph's own edges was not replaced by the masked ones
    assert torch.allclose(net.eval().encode_nodes()["movie"], warm)
