"""The CSR neighbour sampler, checked edge by edge against the full graph, and PyG's loaders on top of it."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch_geometric.loader import LinkLoader
from torch_geometric.sampler import NegativeSampling, NodeSamplerInput

from qamrec.graph.csr import EDGE_TYPES, RATED_BY, RATES, CSRGraph
from qamrec.graph.featurestore import AttachEdgeAttr, loader_data
from qamrec.graph.sampler import CSRNeighborSampler, make_link_loader, make_node_loader, sample_neighbors

torch.set_num_threads(1)

SIZES = {"user": 60, "movie": 45, "genre": 4, "tag": 7}


def _random_edges(gen: torch.Generator, n_src: int, n_dst: int, p: float) -> torch.Tensor:
    mask = torch.rand(n_src, n_dst, generator=gen) < p
    mask[0] = True  # one source linked to everything: high degrees beside low ones
    mask[:, -1] = False  # a destination without neighbours
    return mask.nonzero().t()


@pytest.fixture(scope="module")
def graph() -> CSRGraph:
    gen = torch.Generator().manual_seed(1)
    um = _random_edges(gen, SIZES["user"], SIZES["movie"], 0.25)
    mg = _random_edges(gen, SIZES["movie"], SIZES["genre"], 0.4)
    mt = _random_edges(gen, SIZES["movie"], SIZES["tag"], 0.2)
    edges = {RATES: um, RATED_BY: um.flip(0), ("movie", "has_genre", "genre"): mg,
             ("genre", "genre_of", "movie"): mg.flip(0), ("movie", "has_tag", "tag"): mt,
             ("tag", "tag_of", "movie"): mt.flip(0)}
    # attribute encodes the edge, so a fetched attribute proves it belongs to the edge: src * 1000 + dst
    attrs = {et: (ei[0] * 1000 + ei[1]).double() for et, ei in edges.items() if et in (RATES, RATED_BY)}
    x = {"movie": torch.randn(SIZES["movie"], 8, generator=gen).half()}
    return CSRGraph.from_edge_index(SIZES, edges, attrs, x=x)


def _check_edges(g: CSRGraph, out, fanouts: list[int]) -> None:
    """Every sampled edge is in the full graph, per hop the fan-out holds, no edge twice, frontier semantics."""
    for t, nodes in out.node.items():
        assert sum(out.num_sampled_nodes[t]) == nodes.numel()
    for et in EDGE_TYPES:
        s, _, d = et
        row, col, edge = out.row[et], out.col[et], out.edge[et]
        assert sum(out.num_sampled_edges[et]) == row.numel() == col.numel() == edge.numel()
        src, dst = out.node[s][row], out.node[d][col]
        colptr, full_row = g.colptr[et], g.row[et].long()
        assert torch.equal(full_row[edge], src)  # the edge id points at this source...
        assert bool(((colptr[dst] <= edge) & (edge < colptr[dst + 1])).all())  # ...within this destination
        assert edge.unique().numel() == edge.numel()  # without replacement
        # per hop: each destination of the hop's frontier got min(deg, k) edges
        d_bounds = torch.tensor([0, *out.num_sampled_nodes[d]]).cumsum(0)
        e_bounds = torch.tensor([0, *out.num_sampled_edges[et]]).cumsum(0)
        for h, k in enumerate(fanouts):
            c = col[e_bounds[h]:e_bounds[h + 1]]
            lo, hi = int(d_bounds[h]), int(d_bounds[h + 1])
            assert bool(((c >= lo) & (c < hi)).all())
            got = torch.bincount(c - lo, minlength=hi - lo)
            deg = g.degree(et)[out.node[d][lo:hi]]
            assert torch.equal(got, deg if k < 0 else deg.clamp(max=k))
    # nodes are distinct per type and every sampled source is a known node
    for t, nodes in out.node.items():
        assert nodes.unique().numel() == nodes.numel()


def test_sample_neighbors_edge_by_edge(graph: CSRGraph) -> None:
    gen = torch.Generator().manual_seed(0)
    colptr, row = graph.colptr[RATED_BY], graph.row[RATED_BY]
    nodes = torch.arange(SIZES["user"]).repeat(3)
    deg = graph.degree(RATED_BY)[nodes]
    for k in (-1, 0, 1, 3, 10, 100):
        src, index, edge = sample_neighbors(colptr, row, nodes, k, gen)
        assert torch.equal(torch.bincount(index, minlength=nodes.numel()), deg if k < 0 else deg.clamp(max=k))
        assert bool((index[1:] >= index[:-1]).all())
        assert torch.equal(row[edge].long(), src)
        assert bool(((colptr[nodes[index]] <= edge) & (edge < colptr[nodes[index] + 1])).all())
        pairs = index * 10**6 + edge
        assert pairs.unique().numel() == pairs.numel()  # no edge twice for one seed
        few = deg <= max(k, 0) if k >= 0 else torch.ones_like(deg, dtype=torch.bool)
        for i in few.nonzero().view(-1).tolist():  # fewer neighbours than the fan-out: all of them
            n = int(nodes[i])
            assert torch.equal(src[index == i], row[colptr[n]:colptr[n + 1]].long())


def test_sample_neighbors_uniform_subsets() -> None:
    colptr, row = torch.tensor([0, 5]), torch.arange(5, dtype=torch.int32)
    n = 20_000
    src, index, _ = sample_neighbors(colptr, row, torch.zeros(n, dtype=torch.long), 2,
                                     torch.Generator().manual_seed(0))
    drawn = src.view(n, 2)
    assert bool((drawn[:, 0] != drawn[:, 1]).all())
    pairs = Counter(map(tuple, drawn.sort(dim=1).values.tolist()))
    assert len(pairs) == 10
    assert max(pairs.values()) / min(pairs.values()) < 1.15  # each of the 10 subsets ~ 2,000 times


@pytest.mark.parametrize("fanouts", [[3, 2], [2, 2, 1], [-1]])
def test_sampler_from_nodes_matches_graph(graph: CSRGraph, fanouts: list[int]) -> None:
    sampler = CSRNeighborSampler(graph, fanouts, seed=0)
    seeds = torch.tensor([5, 0, 17, 44])
    out = sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=seeds, input_type="movie"))
    assert torch.equal(out.node["movie"][:4], seeds)  # seeds first, in input order
    assert out.num_sampled_nodes["movie"][0] == 4 and out.num_sampled_nodes["user"][0] == 0
    assert all(len(v) == len(fanouts) for v in out.num_sampled_edges.values())
    _check_edges(graph, out, fanouts)


def test_sampler_per_relation_fanouts_and_determinism(graph: CSRGraph) -> None:
    nn = {RATES: [4, 1], RATED_BY: [2, 3]}
    seeds = NodeSamplerInput(input_id=None, node=torch.tensor([1, 2, 3]), input_type="user")
    a = CSRNeighborSampler(graph, nn, seed=7).sample_from_nodes(seeds)
    b = CSRNeighborSampler(graph, nn, seed=7).sample_from_nodes(seeds)
    c = CSRNeighborSampler(graph, nn, seed=8).sample_from_nodes(seeds)
    for et in EDGE_TYPES:
        assert torch.equal(a.edge[et], b.edge[et]) and torch.equal(a.row[et], b.row[et])
    assert any(not torch.equal(a.edge[et], c.edge[et]) for et in (RATES, RATED_BY))
    assert a.num_sampled_edges[("movie", "has_genre", "genre")] == [0, 0]  # relations not named sample nothing
    for et, k in nn.items():
        assert bool((torch.bincount(a.col[et]) <= max(k)).all())
    sampler = CSRNeighborSampler(graph, [3, 2], seed=1)
    first = sampler.sample_from_nodes(seeds)
    sampler.reseed(1)
    assert torch.equal(sampler.sample_from_nodes(seeds).edge[RATED_BY], first.edge[RATED_BY])
    with pytest.raises(ValueError, match="not in the graph"):
        CSRNeighborSampler(graph, {("user", "likes", "movie"): [1]})


def test_link_loader_binary(graph: CSRGraph) -> None:
    pos = graph.edge_index(RATES)
    loader = make_link_loader(graph, pos, [3, 2], batch_size=16, neg_ratio=2.0, shuffle=True, seed=0)
    seen = 0
    for batch in loader:
        st = batch[RATES]
        n = st.input_id.numel()
        eli, label = st.edge_label_index, st.edge_label
        assert eli.shape == (2, 3 * n) and torch.equal(label, torch.cat([torch.ones(n), torch.zeros(2 * n)]))
        glob = torch.stack([batch["user"].n_id[eli[0]], batch["movie"].n_id[eli[1]]])
        assert torch.equal(glob[:, :n], pos[:, st.input_id])  # positives refer to the right global nodes
        assert torch.equal(batch["movie"].x, graph.x["movie"][batch["movie"].n_id].float())
        for et in (RATES, RATED_BY):
            ei, e_id = batch[et].edge_index, batch[et].e_id
            src, dst = batch[et[0]].n_id[ei[0]], batch[et[2]].n_id[ei[1]]
            assert torch.equal(graph.row[et][e_id].long(), src)
            assert torch.equal(batch[et].edge_attr, (src * 1000 + dst).double())  # the attribute of that very edge
        for t in graph.node_types:
            assert batch[t].num_nodes == batch[t].n_id.numel()
        seen += n
    assert seen == pos.shape[1]


def test_link_loader_triplet_and_determinism(graph: CSRGraph) -> None:
    pos = graph.edge_index(RATES)[:, :40]
    data = loader_data(graph)

    def run(seed: int) -> list[torch.Tensor]:
        sampler = CSRNeighborSampler(graph, [2, 2], seed=seed)
        loader = LinkLoader(data, link_sampler=sampler, edge_label_index=(RATES, pos),
                            neg_sampling=NegativeSampling("triplet", amount=3), batch_size=10,
                            transform=AttachEdgeAttr(graph))
        outs = []
        for b in loader:
            src = b["user"].n_id[b["user"].src_index]
            dst = b["movie"].n_id[b["movie"].dst_pos_index]
            assert torch.equal(torch.stack([src, dst]), pos[:, b[RATES].input_id])
            assert b["movie"].dst_neg_index.shape == (b[RATES].input_id.numel(), 3)
            outs.append(b["movie"].n_id[b["movie"].dst_neg_index])
        return outs

    a, b = run(3), run(3)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_node_loader_seeds_first(graph: CSRGraph) -> None:
    nodes = torch.tensor([3, 9, 1, 40, 22, 8, 0])
    loader = make_node_loader(graph, "movie", nodes, [3, 2], batch_size=3, seed=0)
    got = []
    for b in loader:
        k = b["movie"].batch_size
        got.append(b["movie"].n_id[:k])
        assert torch.equal(b["movie"].x[:k], graph.x["movie"][b["movie"].n_id[:k]].float())
    assert torch.equal(torch.cat(got), nodes)


def test_bad_seed_is_an_error_and_leaves_the_sampler_clean(graph: CSRGraph) -> None:
    sampler = CSRNeighborSampler(graph, [3, 2], seed=0)
    with pytest.raises(ValueError, match="'movie' out of range"):
        sampler._sample({"user": torch.tensor([1, 2]), "movie": torch.tensor([3, 45])})
    out = sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=torch.tensor([1, 2]), input_type="user"))
    assert torch.equal(out.node["user"][:2], torch.tensor([1, 2]))
    _check_edges(graph, out, [3, 2])
