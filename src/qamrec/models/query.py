"""Queries and how they meet the graph: text embedding, anchor nodes, phrases matched in the text."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from qamrec.graph.store import Graph, candidate_columns

__all__ = ["Query", "QueryBatch", "QueryFeaturizer", "subset", "PhraseMatcher", "context_text", "POOLED_TYPES",
           "ROLES"]

#: node types a query's set can hold, in the order of the concatenated node table
POOLED_TYPES = ("movie", "entity", "genre", "tag")
#: why a node is in a query's set (``QueryBatch.role``): a movie the query names, another entity it names, a
#: genre / tag / entity label found in its text, a movie retrieved by text similarity
ROLES = ("named_movie", "named_entity", "phrase", "retrieved")
_WORD = re.compile(r"[a-z0-9']+")
_STOP = frozenset("""a an and are as at be but by for from have he her his i if in is it its me my no not of on or
our she so that the their them they this to too was we were what when which who will with you your like love good
great movie movies film films one see seen watch really just some more very much also""".split())


@dataclass(frozen=True)
class Query:
    """What a person asked: the conversation so far (or one request) and the movies / entities in it.

    ``entities`` are the dataset's entity ids (movies or other KG entities) mentioned in the context;
    ``movies`` are catalog movie ids (e.g. titles a user says they liked).
    """

    text: str
    entities: tuple[int, ...] = ()
    movies: tuple[int, ...] = ()


@dataclass
class QueryBatch:
    """Featurized queries: ``text`` [B, D_text]; the pooled set as ``nodes`` [N] (global ids into the node table
    ordered by :data:`POOLED_TYPES`) with ``batch`` [N] (query index) and ``prior`` [N] (a log-weight);
    ``anchors`` [M] / ``anchor_batch`` [M]: the movie nodes named in each query; ``mentioned`` [K] /
    ``mentioned_batch`` [K]: the candidate indices of those movies; ``role`` [N]: each set member's index in
    :data:`ROLES` (empty when the featurizer does not say); ``recency`` [N]: for a member the query names (a movie
    or an entity), how many named members were mentioned after it (0: the latest), -1 for the others (empty when
    the featurizer does not say)."""

    text: Tensor
    nodes: Tensor
    batch: Tensor
    prior: Tensor
    anchors: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    anchor_batch: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    mentioned: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    mentioned_batch: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    role: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    recency: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))

    def __len__(self) -> int:
        return self.text.shape[0]


def context_text(context: Sequence[str], max_words: int = 200) -> str:
    """The most recent utterances of a conversation, newest last, within ``max_words`` words."""
    out: list[str] = []
    n = 0
    for utt in reversed([c for c in context if c and c.strip()]):
        w = len(utt.split())
        if out and n + w > max_words:
            break
        out.append(utt.strip())
        n += w
    return " ".join(reversed(out))


class PhraseMatcher:
    """Find names (genres, tags, entity labels) in text: exact word n-grams, case-insensitive.

    One-word names must have 4+ characters and not be common words, so "it" or "love" never match.
    """

    def __init__(self, names: Sequence[str], max_words: int = 5) -> None:
        self.index: dict[tuple[str, ...], list[int]] = {}
        for i, name in enumerate(names):
            words = tuple(_WORD.findall(name.lower()))
            if not words or len(words) > max_words or (len(words) == 1 and (len(words[0]) < 4 or words[0] in _STOP)):
                continue
            self.index.setdefault(words, []).append(i)
        self.max_words = max(map(len, self.index), default=0)

    def match(self, text: str) -> list[int]:
        """Indices of the names found in ``text`` (first occurrence order, no repeats)."""
        words = _WORD.findall(text.lower())
        found: dict[int, None] = {}
        for n in range(self.max_words, 0, -1):
            for s in range(len(words) - n + 1):
                for i in self.index.get(tuple(words[s:s + n]), ()):
                    found.setdefault(i, None)
        return list(found)


class QueryFeaturizer:
    """Turns :class:`Query` objects into a :class:`QueryBatch` for a graph.

    The pooled set of a query is its anchor nodes (the movies and entities it names), the genre / tag /
    entity nodes whose names occur in its text, and the ``retrieved`` movies most similar to its text
    embedding (so a query with no anchor at all still has a set, from the text alone).
    """

    def __init__(self, graph: Graph, encode_text: Callable[[list[str]], np.ndarray], retrieved: int = 10) -> None:
        self.encode_text = encode_text
        self.retrieved = retrieved
        d = graph.data
        self.offsets: dict[str, int] = {}
        n = 0
        for t in POOLED_TYPES:
            self.offsets[t] = n
            n += int(d[t].num_nodes) if t in d.node_types else 0
        self.num_nodes = n
        movie_ids = graph.meta["movie_ids"]
        self.movie_node = {m: i for i, m in enumerate(movie_ids)}
        self.entity_node = {e: i for i, e in enumerate(graph.meta["entity_ids"])}
        # dataset entity id -> movie node, for candidate entities and any entity the catalog links
        cands = graph.meta["candidates"]
        self.item_node = {e: cands[j] for j, e in enumerate(graph.meta["item_ids"])}
        self.item_node.update({int(e): self.movie_node[m] for e, m in graph.meta.get("entity_movie", {}).items()
                               if m in self.movie_node})
        self.matchers = {t: PhraseMatcher(graph.meta[k]) for t, k in (("genre", "genres"), ("tag", "tags"))
                         if graph.meta.get(k)}
        if "entity" in d.node_types and graph.meta.get("entity_labels"):
            self.matchers["entity"] = PhraseMatcher(graph.meta["entity_labels"])
        self.movie_text = torch.nn.functional.normalize(d["movie"].x_text.float(), dim=1)
        self.node_cands = candidate_columns(cands)

    def anchor_movies(self, q: Query) -> list[int]:
        """Movie nodes the query names (its movie entities and catalog movies)."""
        out = [self.item_node[e] for e in q.entities if e in self.item_node]
        out += [self.movie_node[m] for m in q.movies if m in self.movie_node]
        return list(dict.fromkeys(out))

    def __call__(self, queries: Sequence[Query], text: np.ndarray | None = None,
                 text_index: Callable[[Tensor], Tensor] | None = None) -> QueryBatch:
        """Featurize; ``text`` may give precomputed text embeddings of ``[q.text for q in queries]``;
        ``text_index`` scores one normalized text embedding against every movie's (default: the exact product
        with ``movie_text``; the service passes a faster index)."""
        if text is None:
            text = self.encode_text([q.text for q in queries])
        t = torch.from_numpy(np.asarray(text, dtype=np.float32))
        nodes: list[int] = []
        batch: list[int] = []
        prior: list[float] = []
        role: list[int] = []
        recency: list[int] = []
        anchors: list[int] = []
        anchor_batch: list[int] = []
        mentioned: list[int] = []
        mentioned_batch: list[int] = []
        if self.retrieved:
            tn = torch.nn.functional.normalize(t, dim=1)
            sim = text_index(tn[0])[None] if text_index is not None and len(tn) == 1 else tn @ self.movie_text.T
            top_val, top_idx = sim.topk(min(self.retrieved, sim.shape[1]), dim=1)
        for b, q in enumerate(queries):
            members: dict[int, tuple[float, int]] = {}  # node -> (log-prior, role)
            am = self.anchor_movies(q)
            anchors += am
            anchor_batch += [b] * len(am)
            mc = [j for m in am for j in self.node_cands.get(m, ())]
            mentioned += mc
            mentioned_batch += [b] * len(mc)
            for m in am:
                members[self.offsets["movie"] + m] = (0.0, 0)
            for e in q.entities:
                if e in self.entity_node:
                    members.setdefault(self.offsets["entity"] + self.entity_node[e], (0.0, 1))
            for typ, matcher in self.matchers.items():
                for i in matcher.match(q.text):
                    members.setdefault(self.offsets[typ] + i, (0.0, 2))
            if self.retrieved:
                for v, i in zip(top_val[b].tolist(), top_idx[b].tolist()):
                    members.setdefault(self.offsets["movie"] + i, (float(np.log(max(v, 1e-6))), 3))
            last = self._mention_order(q)
            order = sorted((n for n in members if n in last), key=lambda n: -last[n])
            rank = {n: i for i, n in enumerate(order)}
            nodes += members
            prior += [p for p, _ in members.values()]
            role += [r for _, r in members.values()]
            recency += [rank.get(n, -1) for n in members]
            batch += [b] * len(members)
        long = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
        return QueryBatch(t, long(nodes), long(batch), torch.tensor(prior, dtype=torch.float32),
                          long(anchors), long(anchor_batch), long(mentioned), long(mentioned_batch), long(role),
                          long(recency))

    def _mention_order(self, q: Query) -> dict[int, int]:
        """Pooled node -> the position of its last mention among the query's named movies and entities (its
        entities in mention order, then its catalog movies)."""
        last: dict[int, int] = {}
        for i, e in enumerate(q.entities):
            if e in self.item_node:
                last[self.offsets["movie"] + self.item_node[e]] = i
            elif e in self.entity_node:
                last[self.offsets["entity"] + self.entity_node[e]] = i
        for j, m in enumerate(q.movies):
            if m in self.movie_node:
                last[self.offsets["movie"] + self.movie_node[m]] = len(q.entities) + j
        return last


def subset(qb: QueryBatch, idx: Tensor) -> QueryBatch:
    """The queries ``idx`` of ``qb``, renumbered 0..len(idx)-1 in that order."""
    remap = torch.full((len(qb),), -1, dtype=torch.long)
    remap[idx] = torch.arange(idx.numel())
    keep = remap[qb.batch] >= 0
    akeep = remap[qb.anchor_batch] >= 0
    mkeep = remap[qb.mentioned_batch] >= 0
    return QueryBatch(qb.text[idx], qb.nodes[keep], remap[qb.batch[keep]], qb.prior[keep],
                      qb.anchors[akeep], remap[qb.anchor_batch[akeep]],
                      qb.mentioned[mkeep], remap[qb.mentioned_batch[mkeep]],
                      qb.role[keep] if qb.role.numel() else qb.role,
                      qb.recency[keep] if qb.recency.numel() else qb.recency)
