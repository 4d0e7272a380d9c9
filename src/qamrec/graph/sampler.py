"""Heterogeneous neighbour sampling over a :class:`~qamrec.graph.csr.CSRGraph` in plain torch, behind PyG's
:class:`~torch_geometric.sampler.BaseSampler` interface, so PyG's ``LinkLoader`` / ``NodeLoader`` use it.

Semantics are those of PyG's ``NeighborSampler`` (``disjoint=False``, ``subgraph_type="directional"``,
``replace=False``): hop ``h`` samples, for every relation ``(src, rel, dst)``, up to ``fan-out[h]`` distinct
in-neighbours (uniformly, without replacement; all of them when fewer; ``-1``: all) of each ``dst`` node added
in hop ``h - 1`` (hop 0: the seeds). Nodes are numbered per type in order of arrival (seeds first, then each
hop's new nodes), and the output is laid out as PyG's own hetero sampler lays it out: ``node`` (global ids),
``row`` / ``col`` (local source / destination indices), ``edge`` (edge ids: positions in the relation's CSC,
to look ``edge_attr`` up), ``num_sampled_nodes`` / ``num_sampled_edges`` per hop. Seeds and negatives go
through PyG's own ``node_sample`` / ``edge_sample`` (binary and triplet negative sampling).

Method, per hop and relation, vectorized over the frontier (no Python loop over nodes): the degree of each
frontier node from ``colptr``; nodes with at most ``k`` neighbours take all of them (``repeat_interleave``
offsets); the others draw ``k`` distinct offsets with Robert Floyd's algorithm run on all of them at once
(``k`` vectorized steps: draw ``t`` in ``[0, deg - k + i]``, take ``deg - k + i`` instead if ``t`` was already
drawn; every ``k``-subset is equally likely). New source nodes are found with a per-type lookup table
(global id -> local id), reset after each batch.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor
from torch_geometric.sampler import (
    BaseSampler,
    EdgeSamplerInput,
    HeteroSamplerOutput,
    NegativeSampling,
    NodeSamplerInput,
)
from torch_geometric.sampler.base import NumNeighbors
from torch_geometric.sampler.neighbor_sampler import edge_sample, node_sample

from qamrec.graph.csr import RATES, CSRGraph
from qamrec.graph.featurestore import AttachEdgeAttr, loader_data
from qamrec.graph.store import EdgeType

__all__ = ["CSRNeighborSampler", "sample_neighbors", "make_link_loader", "make_node_loader", "loader_data"]


def sample_neighbors(
    colptr: Tensor, row: Tensor, nodes: Tensor, k: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Up to ``k`` distinct in-neighbours of each of ``nodes`` (all when ``k < 0`` or fewer exist).

    Returns ``(src, index, edge)``: global source ids, the position in ``nodes`` of each edge's destination
    (ascending), and the edge ids (positions in the CSC). A node with at most ``k`` neighbours gets them in
    CSC order; the ``k`` drawn for a larger one come in the order drawn.
    """
    nodes = nodes.long()
    start = colptr[nodes]
    deg = colptr[nodes + 1] - start
    take = deg if k < 0 else deg.clamp(max=k)
    ptr = torch.zeros(nodes.numel() + 1, dtype=torch.long)
    torch.cumsum(take, 0, out=ptr[1:])
    total = int(ptr[-1])
    index = torch.repeat_interleave(torch.arange(nodes.numel()), take, output_size=total)
    edge = torch.arange(total) + (start - ptr[:-1])[index]  # all neighbours, in CSC order
    if k > 0:
        big = (deg > k).nonzero().view(-1)
        if big.numel():  # these have exactly k slots: fill them with k distinct offsets
            pick = _floyd(deg[big], k, generator) + start[big]  # [k, n_big]
            edge[(ptr[big] + torch.arange(k).unsqueeze(1)).view(-1)] = pick.view(-1)
    return row[edge].long(), index, edge


def _floyd(deg: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """``[k, n]``: column ``c`` holds ``k`` distinct offsets in ``[0, deg[c])`` (``deg > k``), uniform over
    k-subsets (Floyd's algorithm, all columns at once; rows are contiguous, so each step reads and writes
    contiguous memory)."""
    n = deg.numel()
    sel = torch.empty(k, n, dtype=torch.long)
    wide = n > 0 and int(deg.max()) >= 1 << 22  # float32 draws only while the bias (< deg / 2**24) is tiny
    r = torch.rand(k, n, generator=generator, dtype=torch.float64 if wide else torch.float32)
    for i in range(k):
        j = deg - (k - i)  # inclusive upper bound of this step's draw
        t = torch.minimum((r[i] * (j + 1)).long(), j)
        if i:
            t = torch.where((sel[:i] == t).any(0), j, t)
        sel[i] = t
    return sel


class CSRNeighborSampler(BaseSampler):
    """Uniform per-relation neighbour sampler without replacement over a :class:`CSRGraph` (see the module).

    ``num_neighbors``: fan-outs per hop for every relation (``[10, 5]``) or per relation
    (``{edge_type: [...]}``, missing relations sample nothing). ``seed`` fixes the sampler's own generator
    (neighbours and, in :meth:`sample_from_edges`, PyG's negatives); :meth:`reseed` sets it again. A
    DataLoader worker process draws its own stream, ``seed + 7919 * (1 + worker id)`` (unseeded: from the
    worker's torch seed). One sampler serves one thread at a time (it keeps per-type lookup tables).
    """

    def __init__(self, graph: CSRGraph, num_neighbors: list[int] | dict[EdgeType, list[int]], *,
                 seed: int | None = None) -> None:
        self.graph = graph
        self.edge_types = list(graph.edge_types)
        if isinstance(num_neighbors, dict):
            unknown = set(num_neighbors) - set(self.edge_types)
            if unknown:
                raise ValueError(f"num_neighbors: relations not in the graph: {sorted(unknown)}")
            hops = {len(v) for v in num_neighbors.values()}
            if len(hops) > 1:
                raise ValueError(f"num_neighbors: every relation needs the same number of hops (got {hops})")
            n = hops.pop() if hops else 0
            num_neighbors = {et: list(num_neighbors.get(et, [0] * n)) for et in self.edge_types}
        self.num_neighbors = NumNeighbors(num_neighbors)
        values = self.num_neighbors.get_values(self.edge_types)
        self.fanouts: dict[EdgeType, list[int]] = values  # type: ignore[assignment]
        self.num_hops = self.num_neighbors.num_hops
        self.seed = seed
        self.generator = torch.Generator()
        self.generator.manual_seed(seed if seed is not None else int(torch.empty((), dtype=torch.int64).random_()))
        self._pid = os.getpid()
        self._lut: dict[str, Tensor] = {}
        self.colptr = {et: graph.colptr[et].long() for et in self.edge_types}

    def reseed(self, seed: int) -> None:
        """Restart the sampler's generator from ``seed`` (inside a DataLoader worker: that worker's stream)."""
        self.seed = seed
        self.generator.manual_seed(_stream(seed))

    def _check_process(self) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker: its own stream, its own tables
            self._pid = os.getpid()
            self.generator.manual_seed(_stream(self.seed))
            self._lut = {}

    def _table(self, t: str) -> Tensor:
        if t not in self._lut:
            self._lut[t] = torch.full((self.graph.num_nodes[t],), -1, dtype=torch.long)
        return self._lut[t]

    # -- PyG interface --------------------------------------------------------------------------------------

    def sample_from_nodes(self, inputs: NodeSamplerInput) -> HeteroSamplerOutput:
        """Sample around ``inputs.node`` (of ``inputs.input_type``); metadata ``(input_id, time)`` as PyG's."""
        self._check_process()
        return node_sample(inputs, self._sample)

    def sample_from_edges(self, inputs: EdgeSamplerInput,
                          neg_sampling: NegativeSampling | None = None) -> HeteroSamplerOutput:
        """Sample around both ends of ``inputs`` (and negatives, binary or triplet) via PyG's ``edge_sample``.

        PyG draws negatives from torch's global generator; here that draw runs inside a forked RNG seeded
        from this sampler's generator, so a seeded sampler repeats its negatives too.
        """
        self._check_process()
        if neg_sampling is None:
            return edge_sample(inputs, self._sample, self.graph.num_nodes, False, None, None)
        fork_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(fork_seed)
            return edge_sample(inputs, self._sample, self.graph.num_nodes, False, None, neg_sampling)

    @property
    def edge_permutation(self) -> None:
        """Edge ids are CSC positions already: no permutation."""
        return None

    # -- sampling -------------------------------------------------------------------------------------------

    def _sample(self, seed: dict[str, Tensor], seed_time: dict[str, Tensor] | None = None,
                **kwargs: Any) -> HeteroSamplerOutput:
        if seed_time is not None:
            raise NotImplementedError(f"{type(self).__name__}: temporal sampling is not supported")
        node_types = self.graph.node_types
        chunks: dict[str, list[Tensor]] = {t: [] for t in node_types}
        count = dict.fromkeys(node_types, 0)
        num_nodes: dict[str, list[int]] = {t: [] for t in node_types}
        rows: dict[EdgeType, list[Tensor]] = {et: [] for et in self.edge_types}
        cols: dict[EdgeType, list[Tensor]] = {et: [] for et in self.edge_types}
        edges: dict[EdgeType, list[Tensor]] = {et: [] for et in self.edge_types}
        num_edges: dict[EdgeType, list[int]] = {et: [] for et in self.edge_types}
        frontier: dict[str, tuple[int, Tensor]] = {}
        try:
            for t in node_types:  # seeds first, in input order (duplicates kept, as PyG does)
                s = seed.get(t, torch.empty(0, dtype=torch.long)).long()
                if s.numel() and (int(s.min()) < 0 or int(s.max()) >= self.graph.num_nodes[t]):
                    raise ValueError(f"seed nodes of type '{t}' out of range 0..{self.graph.num_nodes[t] - 1}")
                if s.numel():
                    self._table(t)[s] = torch.arange(s.numel())
                    chunks[t].append(s)
                count[t] = s.numel()
                num_nodes[t].append(s.numel())
                frontier[t] = (0, s)
            for hop in range(self.num_hops):
                start, first = dict(count), {t: len(c) for t, c in chunks.items()}
                for et in self.edge_types:
                    src_t, _, dst_t = et
                    k = self.fanouts[et][hop]
                    offset, dst_nodes = frontier[dst_t]
                    if k == 0 or dst_nodes.numel() == 0:
                        num_edges[et].append(0)
                        continue
                    src, index, edge = sample_neighbors(self.colptr[et], self.graph.row[et], dst_nodes, k,
                                                        self.generator)
                    rows[et].append(self._local(src_t, src, chunks, count))
                    cols[et].append(index + offset)
                    edges[et].append(edge)
                    num_edges[et].append(int(src.numel()))
                for t in node_types:
                    new = count[t] - start[t]
                    num_nodes[t].append(new)
                    added = chunks[t][first[t]:]
                    frontier[t] = (start[t], torch.cat(added) if added else torch.empty(0, dtype=torch.long))
        except BaseException:
            self._lut = {}  # a half-updated table must not leak into the next batch
            raise
        for t in node_types:
            for c in chunks[t]:
                self._table(t)[c] = -1
        empty = torch.empty(0, dtype=torch.long)
        return HeteroSamplerOutput(
            node={t: torch.cat(c) if c else empty for t, c in chunks.items()},
            row={et: torch.cat(v) if v else empty for et, v in rows.items()},
            col={et: torch.cat(v) if v else empty for et, v in cols.items()},
            edge={et: torch.cat(v) if v else empty for et, v in edges.items()},
            batch=None,
            num_sampled_nodes=num_nodes,
            num_sampled_edges=num_edges,
        )

    def _local(self, t: str, nodes: Tensor, chunks: dict[str, list[Tensor]], count: dict[str, int]) -> Tensor:
        """Local ids of the global ``nodes`` of type ``t``, numbering unseen ones next (order of appearance).

        Method: the lookup table gives known nodes; for unseen ones a ``scatter_reduce(amin)`` of their
        positions into the table marks each distinct node's first occurrence (no sort, no ``unique``).
        """
        lut = self._table(t)
        loc = lut[nodes]
        unseen = (loc < 0).nonzero().view(-1)
        if unseen.numel():
            cand = nodes[unseen]
            pos = torch.arange(cand.numel())
            lut.scatter_reduce_(0, cand, pos, reduce="amin", include_self=False)  # first occurrence wins
            new = cand[lut[cand] == pos]  # distinct, in order of first appearance
            lut[new] = torch.arange(count[t], count[t] + new.numel())
            count[t] += new.numel()
            chunks[t].append(new)
            loc[unseen] = lut[cand]
        return loc


def _stream(seed: int | None) -> int:
    """The generator seed for this process: ``seed`` in the main process, one stream per DataLoader worker."""
    info = torch.utils.data.get_worker_info()
    if info is None:
        return seed if seed is not None else int(torch.initial_seed())
    return (seed if seed is not None else info.seed) + 7919 * (1 + int(info.id))


def _pyg_sampler_available() -> bool:
    import torch_geometric.typing as tg

    return bool(tg.WITH_PYG_LIB or tg.WITH_TORCH_SPARSE)


def _make_sampler(graph: CSRGraph, data: tuple[Any, Any], num_neighbors: list[int] | dict[EdgeType, list[int]],
                  seed: int, use_pyg: bool | None) -> BaseSampler:
    """Our sampler, or PyG's ``NeighborSampler`` when ``use_pyg`` (None: never by default, see the module)."""
    if use_pyg:
        if not _pyg_sampler_available():
            raise RuntimeError("use_pyg=True needs pyg-lib or torch-sparse; neither is installed")
        from torch_geometric.sampler import NeighborSampler

        return NeighborSampler(data, num_neighbors)  # type: ignore[arg-type]
    return CSRNeighborSampler(graph, num_neighbors, seed=seed)


def make_link_loader(
    graph: CSRGraph,
    edge_label_index: Tensor | None = None,
    num_neighbors: list[int] | dict[EdgeType, list[int]] = (10, 5),  # type: ignore[assignment]
    batch_size: int = 1024,
    neg_ratio: float = 1.0,
    shuffle: bool = True,
    seed: int = 0,
    *,
    edge_type: EdgeType = RATES,
    neg_mode: str = "binary",
    use_pyg: bool | None = None,
    **kwargs: Any,
) -> Any:
    """PyG's ``LinkLoader`` over ``graph`` with :class:`CSRNeighborSampler` (``use_pyg=True``: PyG's own).

    ``edge_label_index`` ``[2, n]`` (global src, dst of ``edge_type``; default: every edge of it), negatives
    per positive ``neg_ratio`` (``neg_mode`` ``"binary"`` or ``"triplet"``; 0: none), shuffled with a
    generator seeded by ``seed``. Batches carry ``x`` (float32), ``edge_attr`` (by ``e_id``), ``n_id``,
    ``e_id`` and PyG's ``edge_label_index`` / ``edge_label`` (binary) or ``src_index`` / ``dst_pos_index`` /
    ``dst_neg_index`` (triplet). ``kwargs`` go to the loader (``num_workers``...).
    """
    from torch_geometric.loader import LinkLoader

    if edge_label_index is None:
        edge_label_index = graph.edge_index(edge_type)
    data = loader_data(graph)
    nn = list(num_neighbors) if not isinstance(num_neighbors, dict) else num_neighbors
    neg = NegativeSampling(neg_mode, amount=neg_ratio) if neg_ratio > 0 else None
    return LinkLoader(data, link_sampler=_make_sampler(graph, data, nn, seed, use_pyg),
                      edge_label_index=(edge_type, edge_label_index), neg_sampling=neg,
                      transform=AttachEdgeAttr(graph), batch_size=batch_size, shuffle=shuffle,
                      generator=torch.Generator().manual_seed(seed), **kwargs)


def make_node_loader(
    graph: CSRGraph,
    node_type: str,
    nodes: Tensor | None = None,
    num_neighbors: list[int] | dict[EdgeType, list[int]] = (10, 5),  # type: ignore[assignment]
    batch_size: int = 1024,
    shuffle: bool = False,
    seed: int = 0,
    *,
    use_pyg: bool | None = None,
    **kwargs: Any,
) -> Any:
    """PyG's ``NodeLoader`` over ``nodes`` of ``node_type`` (default: all), seeds first in each batch
    (``batch[node_type].batch_size`` of them), with ``x``, ``edge_attr``, ``n_id`` and ``e_id``."""
    from torch_geometric.loader import NodeLoader

    if nodes is None:
        nodes = torch.arange(graph.num_nodes[node_type])
    data = loader_data(graph)
    nn = list(num_neighbors) if not isinstance(num_neighbors, dict) else num_neighbors
    return NodeLoader(data, node_sampler=_make_sampler(graph, data, nn, seed, use_pyg),
                      input_nodes=(node_type, nodes), transform=AttachEdgeAttr(graph), batch_size=batch_size,
                      shuffle=shuffle, generator=torch.Generator().manual_seed(seed), **kwargs)
