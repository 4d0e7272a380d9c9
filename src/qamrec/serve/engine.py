"""The recommendation engine behind the CLI's ``recommend``, the HTTP service and the rounds benchmark.

It loads a run directory once, precomputes the candidates' representations, and answers a request with one
query encoding, one pooling step and one scoring pass; feedback of a conversation (liked / disliked / seen
movies, accepted / rejected refinements) enters through :mod:`qamrec.serve.refine`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from qamrec.config import Config, RefineConfig
from qamrec.errors import QamrecError
from qamrec.graph.store import Graph, candidate_columns
from qamrec.models.prior import content_bias
from qamrec.models.qamrec import QAMRec
from qamrec.models.query import POOLED_TYPES, ROLES, Query
from qamrec.serve.constraints import MovieFacts, Weights
from qamrec.serve.index import ItemIndex
from qamrec.serve.reasons import movie_reasons, sentence
from qamrec.serve.refine import Refinement, propagate, suggest
from qamrec.serve.titles import TitleIndex, UnknownTitleError, display_title
from qamrec.serve.understand import RequestParser, Understanding
from qamrec.serve.vocab import CONCEPTS, Concept, tag_concepts
from qamrec.serve.words import word_graph

__all__ = ["Engine", "Feedback", "Result", "UnknownTitleError", "display_title", "word_graph"]

_MOVIE_LINKS = ("comentioned", "text_knn", "poster_knn")

_RETRIEVED = ROLES.index("retrieved")


@dataclass
class Feedback:
    """What a person said about movies and refinements so far (catalog movie ids; refinement word labels)."""

    liked: list[int] = field(default_factory=list)
    disliked: list[int] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    accepted: list[tuple[str, ...]] = field(default_factory=list)
    rejected: list[tuple[str, ...]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.liked or self.disliked or self.seen or self.accepted or self.rejected)


@dataclass
class Result:
    """Ranked movies (dicts with id, title, year, genres, has_poster, score, reasons, reason), what the model
    attended to, and suggested refinements. With the model's modality gate, ``modality_weights`` is the mean gate
    weight per modality over the recommended movies (each movie's own weights are its ``modality_weights``);
    None without the gate. ``understood`` is the request's parse (:class:`~qamrec.serve.understand.Understanding`)."""

    query: str
    movies: list[dict[str, Any]]
    attended: list[dict[str, Any]]
    suggestions: list[Refinement]
    modality_weights: dict[str, float] | None = None
    #: what the request's words said (titles, kinds of movies, years, people); None when not parsed
    understood: Understanding | None = None
    #: the text embedding of the query as the encoder read it [dim] (what a reply's templates are retrieved by)
    query_vector: np.ndarray | None = None


class Engine:
    """A loaded recommender ready to answer queries.

    Args:
        model: a fitted :class:`~qamrec.models.qamrec.QAMRec`.
        graph: its graph.
        movies: catalog rows (movie_id, title, year, genres, poster_path) for the graph's movies.
        refine: feedback settings.
        encode_query: texts -> embeddings (uncached); defaults to the model's own text function.
        raw_dir: where poster paths are relative to.
    """

    def __init__(self, model: QAMRec, graph: Graph, movies: pl.DataFrame, refine: RefineConfig | None = None,
                 encode_query: Any = None, raw_dir: Path | None = None, name: str = "") -> None:
        self.model, self.graph, self.name = model, graph, name
        self.refine = refine or RefineConfig()
        self.encode_query = encode_query or model.encode_text
        #: recent query texts -> embeddings: feedback on a conversation re-scores the same text
        self.query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.query_cache_size = 256
        self._cache_lock = threading.Lock()
        self.raw_dir = raw_dir
        meta = graph.meta
        self.movie_ids: list[int] = list(meta["movie_ids"])
        self.cands = np.asarray(meta["candidates"], dtype=np.int64)
        self.cand_movie = np.asarray(self.movie_ids, dtype=np.int64)[self.cands]
        self.node_of = {m: i for i, m in enumerate(self.movie_ids)}
        self.columns = candidate_columns(self.cand_movie.tolist())  # catalog movie id -> its candidate columns
        known = movies.filter(pl.col("movie_id").is_in(self.movie_ids))
        rows = known.select("movie_id", "title", "year", "genres", "poster_path").to_dicts()
        #: catalog movie id -> its director(s) and cast, where the catalog has them (people a request may name)
        self.people: dict[int, list[str]] = {}
        for c in ("director", "cast"):
            if c in known.columns:
                for m, names in known.select("movie_id", c).iter_rows():
                    self.people.setdefault(m, []).extend(x for x in names or () if x)
        self.info: dict[int, dict[str, Any]] = {}
        for r in rows:
            title = display_title(r["title"] or f"movie {r['movie_id']}")
            self.info[r["movie_id"]] = {"id": r["movie_id"], "title": title,
                                        "year": r["year"], "genres": [g for g in (r["genres"] or []) if g],
                                        "poster_path": r["poster_path"]}
        self.model.precompute()
        net = self.model.net
        assert net is not None
        self._has_text = bool(net.cfg.text_features)
        self._gate = self._gate_table()
        #: one row per recommendable movie, [v_j | b_j | x_j]: the candidates, then movies outside the graph
        self.index = ItemIndex(self._candidate_rows(), "float32")
        self.extra_movies = np.zeros(0, dtype=np.int64)  # movies outside the graph (see extend_catalog)
        self.new_movie_links = 0  # text neighbours a movie outside the graph is linked to (0: none)
        self.new_movie_genres = False  # link a movie outside the graph to its genres' nodes
        self.new_movie_bias = "median"  # a movie outside the graph's bias: "median", or "content" (from its text)
        self.comention = True  # add the model's co-mention memory, if it has one (serve.comention)
        self.neighbours = True  # add the model's neighbour vote, if it has one (serve.neighbours)
        self.all_movies = self.cand_movie  # the movie of every index row
        self._text_index: ItemIndex | None = None  # the query's text retrieval over the graph's movies
        self.words = word_graph(graph, {m: i["year"] for m, i in self.info.items()}, self.refine.min_word_movies)
        self._labels = self._node_labels()
        self._links = self._movie_links()
        bias = self.model.net.bias.detach().numpy() if self.model.net is not None else np.zeros(len(self.cands))
        popularity: dict[int, float] = {}  # movie -> its best candidate's learned popularity (ties of titles)
        for m, b in zip(self.cand_movie.tolist(), bias.tolist()):
            popularity[m] = max(b, popularity.get(m, -np.inf))
        self._popularity = popularity
        self.titles = TitleIndex(self.movie_ids, self.info, self.columns, popularity)
        self._facts: MovieFacts | None = None  # built on the first request (extend_catalog drops them)
        self._parser: RequestParser | None = None
        self._tag_concepts: tuple[Concept, ...] | None = None
        #: the configuration it was loaded with (:meth:`from_run`): where the reply index's dialogues are
        self.config: Config | None = None
        self._replier: Any = None
        self._replier_lock = threading.Lock()

    # ----------------------------------------------------------------- construction helpers
    def _node_labels(self) -> list[tuple[str, str]]:
        """(kind, label) of every row of the pooled node table, in :data:`POOLED_TYPES` order."""
        meta, d = self.graph.meta, self.graph.data
        out: list[tuple[str, str]] = []
        for t in POOLED_TYPES:
            if t not in d.node_types:
                continue
            if t == "movie":
                out += [("movie", self.label(m)) for m in self.movie_ids]
            elif t == "entity":
                out += [("entity", str(x)) for x in meta.get("entity_labels") or [""] * int(d[t].num_nodes)]
            else:
                out += [(t, str(x)) for x in meta[t + "s"]]
        return out

    def _candidate_rows(self) -> torch.Tensor:
        """[v_j | b_j | x_j] of every candidate: its representation, popularity bias and normalized text."""
        net = self.model.net
        _, items = self.model.precompute()
        cols = [items, net.bias.detach()[:, None]] + ([net.cand_text] if self._has_text else [])
        return torch.cat(cols, 1)

    def _movie_links(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (indptr, global pooled ids) of each movie node's genres, tags, entities and linked movies."""
        d, feat = self.graph.data, self.model.featurizer
        src, dst = [], []
        for (s, rel, t) in d.edge_types:
            if s != "movie" or t not in feat.offsets:
                continue
            if t == "movie" and rel not in _MOVIE_LINKS:
                continue
            ei = d[(s, rel, t)].edge_index
            src.append(ei[0])
            dst.append(ei[1] + feat.offsets[t])
            if t == "movie":  # movie-movie links count both ways
                src.append(ei[1])
                dst.append(ei[0] + feat.offsets[t])
        s_all = torch.cat(src).numpy() if src else np.zeros(0, np.int64)
        d_all = torch.cat(dst).numpy() if dst else np.zeros(0, np.int64)
        order = np.argsort(s_all, kind="stable")
        indptr = np.searchsorted(s_all[order], np.arange(len(self.movie_ids) + 1))
        return indptr, d_all[order]

    @classmethod
    def from_run(cls, run: Path, config: Config) -> Engine:
        """Load a run directory (and the catalog of the data home it was prepared in)."""
        from qamrec.data.prepare import load_table
        from qamrec.features.onnx_text import OnnxTextEncoder
        from qamrec.features.pipeline import text_encoder
        from qamrec.train.run import load_run

        model, graph, saved = load_run(run, config)
        if not isinstance(model, QAMRec):
            raise QamrecError(f"{run}: model {model.name!r} cannot serve; train the qamrec model")
        movies = load_table(config.prepared_dir, "catalog", "movies")
        run_cfg = config.model_copy(update={"features": config.features.model_copy(
            update={"text_model": saved.get("features", {}).get("text_model", config.features.text_model)})})
        # one query at a time: through ONNX Runtime (or the traced copy where that fails)
        enc = OnnxTextEncoder(text_encoder(run_cfg), config.cache_dir, threads=config.serve.threads)
        engine = cls(model, graph, movies, config.refine, enc.encode, config.raw_dir,
                     name=f"{saved.get('dataset', '?')}:{run.name}")
        engine.config = run_cfg
        engine.new_movie_genres = config.serve.new_movie_genres
        engine.new_movie_bias = config.serve.new_movie_bias
        engine.comention = config.serve.comention
        engine.neighbours = config.serve.neighbours
        return engine

    def replier(self) -> Any:
        """The :class:`~qamrec.serve.reply.ReplyBuilder` that words this engine's answers, built once: from the
        data home's dialogues when the engine was loaded with :meth:`from_run`, else from the engine's own
        catalog facts and no templates."""
        from qamrec.serve.reply import ReplyBuilder

        with self._replier_lock:
            if self._replier is None:
                self._replier = (ReplyBuilder.for_engine(self, self.config) if self.config is not None
                                 else ReplyBuilder.minimal(self))
            return self._replier

    @torch.no_grad()
    def extend_catalog(self, movies: pl.DataFrame, text: np.ndarray, dtype: str = "int8", rank: int = 160) -> int:
        """Make movies outside the graph recommendable (e.g. a whole MovieLens-32M catalog).

        ``movies`` has movie_id, title, year, genres (and optionally poster_path); ``text`` [n, D] their text
        embeddings; ``dtype`` how their score matrix is multiplied (see :class:`~qamrec.serve.index.ItemIndex`:
        ``"int8"`` reads a quarter of the memory and re-scores its best rows exactly; ``rank`` narrows its first
        pass to the matrix's top singular directions, 0 keeps every column). A movie in the graph that
        is not a candidate keeps its graph representation; one outside it is encoded from its text as an
        isolated node, or linked and encoded inductively by the trained GAT
        (:meth:`~qamrec.models.net.QAMRecNet.new_movies`): with ``new_movie_links = k > 0`` to its ``k`` nearest
        graph movies by text, with ``new_movie_genres`` to its genres' nodes. Its bias is the candidates' median,
        or with ``new_movie_bias = "content"`` regressed on the text of the graph's movies as this extension
        embeds them (:func:`~qamrec.models.prior.content_bias`). None of these links ranked dev answers scored as
        new movies higher (``benchmark graph-probe --new-movies-only``), so the defaults are off. They carry no
        words, so reasons and refinements come from the graph's candidates. A later call replaces the earlier
        extension.
        With ``"int8"`` the query's text retrieval over the graph's movies is scored the same way.
        Returns the number of movies added.
        """
        net = self.model.net
        assert net is not None
        keep = ~np.isin(movies["movie_id"].to_numpy(), self.cand_movie)
        text = np.asarray(text, dtype=np.float32)
        known = torch.from_numpy(text[~keep])  # candidates' movies, embedded as the new ones are
        known_ids = movies["movie_id"].to_numpy()[~keep]
        movies, text = movies.filter(pl.Series(keep)), text[keep]
        if movies.height == 0:
            return 0
        ids = movies["movie_id"].to_list()
        x = torch.from_numpy(text)
        genres = self._genre_links(movies) if self.new_movie_genres else None
        h = net.new_movies(x, k=self.new_movie_links, genres=genres)
        table, _ = self.model.precompute()  # movies in the graph keep their graph representation
        node = torch.tensor([self.node_of.get(m, -1) for m in ids])
        in_graph = node >= 0
        h[in_graph] = table[self.model.featurizer.offsets["movie"] + node[in_graph]]
        fields = ["movie_id", "title", "year", "genres"] + (["poster_path"] if "poster_path" in movies.columns else [])
        for r in movies.select(fields).to_dicts():
            if r["movie_id"] in self.info:  # a graph movie: the catalog facts are already there
                continue
            self.info[r["movie_id"]] = {"id": r["movie_id"], "title": display_title(r["title"] or ""),
                                        "year": r["year"], "genres": [g for g in (r["genres"] or []) if g],
                                        "poster_path": r.get("poster_path")}
        if self.new_movie_bias == "content" and len(known) > 1:
            b_new = content_bias(known, self._movie_bias(known_ids), x).unsqueeze(1)
        else:
            b_new = net.bias.detach().median().expand(len(ids), 1)
        cols = [net.item(h), b_new]
        if self._has_text:
            cols.append(torch.nn.functional.normalize(x, dim=1))
        # one row per movie: [v_j | b_j | x_j], scored by one product with [p | popularity | lambda q]
        self.index = ItemIndex(torch.cat([self._candidate_rows(), torch.cat(cols, 1)]), dtype, rank=rank)
        self.extra_movies = np.asarray(ids, dtype=np.int64)
        self.all_movies = np.concatenate([self.cand_movie, self.extra_movies])
        self._facts = None
        self._text_index = ItemIndex(self.model.featurizer.movie_text, "int8") if dtype == "int8" else None
        return len(ids)

    def _exact_top(self, s: torch.Tensor, raw: torch.Tensor, qvec: torch.Tensor, n: int) -> torch.Tensor:
        """What makes the ``n`` best rows of ``s`` exact: [len(s)] the exact product minus the first pass's
        score ``raw`` at those rows (0 elsewhere, and at rows already exact). ``raw`` is updated to the exact
        scores, so that a later call corrects only rows lifted since."""
        top = torch.topk(s, n).indices
        exact = self.index.exact(top, qvec)
        out = torch.zeros_like(s)
        out[top] = exact - raw[top]
        raw[top] = exact
        return out

    def _movie_bias(self, movie_ids: np.ndarray) -> torch.Tensor:
        """[n] the learned bias of each (candidate) movie: the largest of its candidates'."""
        return torch.tensor([self._popularity[int(m)] for m in movie_ids], dtype=torch.float32)

    def _genre_links(self, movies: pl.DataFrame) -> torch.Tensor:
        """[2, G] (genre node, row of ``movies``): each movie's genres that the graph has a node for."""
        gix = {g: i for i, g in enumerate(self.graph.meta.get("genres") or [])}
        pairs = [(gix[g.strip().lower()], r) for r, gs in enumerate(movies["genres"].to_list())
                 for g in (gs or []) if g and g.strip().lower() in gix]
        return torch.tensor(pairs, dtype=torch.long).T.reshape(2, -1)

    @property
    def catalog_size(self) -> int:
        """Distinct movies this engine can recommend."""
        n = len(set(self.cand_movie.tolist()))
        return n + len(self.extra_movies)

    # ----------------------------------------------------------------- lookups
    @property
    def dataset(self) -> str:
        return str(self.graph.meta.get("dataset", ""))

    def label(self, movie_id: int) -> str:
        i = self.info.get(movie_id)
        if i is None:
            return f"movie {movie_id}"
        return f"{i['title']} ({i['year']})" if i["year"] else i["title"]

    def movie(self, movie_id: int) -> dict[str, Any] | None:
        """Catalog facts of a movie the engine knows, or None."""
        i = self.info.get(movie_id)
        return None if i is None else {k: v for k, v in i.items() if k != "poster_path"} | {
            "has_poster": bool(i["poster_path"])}

    def poster_file(self, movie_id: int) -> Path | None:
        """The prepared poster file of a movie, if the catalog has one (it may still be missing on disk)."""
        i = self.info.get(movie_id)
        if i is None or not i["poster_path"] or self.raw_dir is None:
            return None
        return self.raw_dir / i["poster_path"]

    def resolve(self, title: str) -> int:
        """A catalog movie id for a title such as "Ocean's Eleven (2001)" (fuzzy; year breaks ties)."""
        return self.titles.resolve(title)

    # ----------------------------------------------------------------- understanding the request
    @property
    def facts(self) -> MovieFacts:
        """Genres, words, people and year of every index row (what request constraints are checked against)."""
        if self._facts is None:
            self._facts = MovieFacts(self.all_movies, self.info, self.words, self.people)
            if self._tag_concepts is None:  # the graph's tags a request may name, people's names aside
                self._tag_concepts = tag_concepts(
                    [w for w, k in zip(self.words.labels, self.words.kinds) if k == "tag"], set(self._facts.names))
            self._facts.add_concepts(self._tag_concepts)
        return self._facts

    def understand(self, text: str) -> Understanding:
        """The parse of a request: titles it names, kinds of movies, years and people it asks for or against."""
        if self._parser is None:
            years = [i["year"] for m in self.movie_ids if (i := self.info.get(m)) and i["year"]]
            names = self.facts.names
            self._parser = RequestParser(self.titles, names, latest_year=max(years, default=2020),
                                         concepts=CONCEPTS + (self._tag_concepts or ()))
        return self._parser.parse(text)

    # ----------------------------------------------------------------- answering
    def _feedback_scores(self, fb: Feedback) -> torch.Tensor | None:
        if not fb or self.refine.mode != "propagation":
            return None
        col = self.columns
        items: dict[int, float] = {}
        for m in fb.liked:
            for j in col.get(m, ()):
                items[j] = items.get(j, 0.0) + 1.0
        neg = self.refine.negative
        for m in fb.disliked:
            for j in col.get(m, ()):
                items[j] = items.get(j, 0.0) - neg
        words: dict[int, float] = {}
        for group, sign in ((fb.accepted, 1.0), (fb.rejected, -neg)):
            for ws in group:
                idx = [self.words.index[w.lower()] for w in ws if w.lower() in self.words.index]
                for w in idx:
                    words[w] = words.get(w, 0.0) + sign / (1.0 if sign > 0 else len(idx))  # one wrong word suffices
        if not items and not words:
            return None
        r, _ = propagate(self.words, items, words, self.refine.damping, self.refine.steps)
        return r / r.abs().max().clamp(min=1e-9)

    def _retrieve(self, qn: torch.Tensor) -> torch.Tensor:
        """Text similarity of a query to every graph movie, exact for the few the featurizer keeps."""
        assert self._text_index is not None
        return self._text_index.scores(qn, rerank=max(32, 2 * self.model.featurizer.retrieved))

    def _embed(self, text: str) -> np.ndarray:
        """The query embedding [1, D], from the cache of recent texts when it is there."""
        with self._cache_lock:  # requests run on several threads
            hit = self.query_cache.get(text)
            if hit is not None:
                self.query_cache.move_to_end(text)
                return hit
        emb = self.encode_query([text])
        with self._cache_lock:
            if self.query_cache_size:
                self.query_cache[text] = emb
                while len(self.query_cache) > self.query_cache_size:
                    self.query_cache.popitem(last=False)
        return emb

    @torch.no_grad()
    def recommend(self, text: str, feedback: Feedback | None = None, k: int = 10,
                  suggestions: int | None = None, anchors: Sequence[int] = (), understand: bool = True) -> Result:
        """Rank the candidates for ``text`` and the session's feedback; top ``k`` distinct movies.

        ``anchors`` are movies the request names (e.g. "like Ocean's Eleven"): anchor nodes of the query, not
        recommended back. ``feedback`` is a conversation's: with ``refine.mode="propagation"`` liked movies
        become anchors too, accepted refinements join the query text, and all of it is propagated as labels;
        in every mode but ``none``, liked, disliked and seen movies are not recommended again.

        With ``understand`` the text is parsed first (:meth:`understand`): the titles it names as liked are
        anchors, every title it names is not recommended, the encoder reads it without what it rules out, and
        its kinds of movies, years and people adjust the scores (:meth:`MovieFacts.adjust`).
        """
        fb = feedback or Feedback()
        u = self.understand(text) if understand else None
        if u is not None:
            anchors = [*anchors, *(m for m, _ in u.anchors)]
            if u.disliked and self.refine.mode == "propagation":
                fb = replace(fb, disliked=[*fb.disliked, *(m for m, _ in u.disliked)])
        use_fb = self.refine.mode != "none"  # naive: feedback only removes movies; propagation: all of it
        full_fb = self.refine.mode == "propagation"
        words = [w for ws in fb.accepted for w in ws] if full_fb else []
        full = " ".join([text.strip()] + words)
        read = " ".join([u.text.strip()] + words) if u is not None else full  # what the encoder reads
        q = Query(text=read, movies=tuple(dict.fromkeys([*anchors, *(fb.liked if full_fb else ())])))
        net = self.model.net
        assert net is not None
        qb = self.model.featurizer([q], text=self._embed(read),
                                   text_index=self._retrieve if self._text_index is not None else None)
        table, _ = self.model.precompute()
        p, alpha = net.preference(table, qb)
        n_c = len(self.cands)
        qn = torch.nn.functional.normalize(qb.text, dim=1)[0]
        # the model's score (QAMRecNet.score) of every index row at once, the popularity bias weighed
        qv = [p[0], torch.tensor([self.refine.popularity])] + ([net.text_weight * qn] if self._has_text else [])
        banned = set(anchors) | (u.named if u is not None else set())
        banned |= {x for m in list(banned) for x in self.titles.same_title(m)}  # "Ocean's Eleven": either one
        if use_fb:
            banned |= set(fb.disliked) | set(fb.seen) | set(fb.liked)
        qvec = torch.cat(qv)
        top_n = min(len(self.index), 5 * k + len(banned))
        s = self.index.scores(qvec, rerank=max(256, top_n))  # exact where it is read
        raw = s.clone() if self.index.approximate else None
        if qb.mentioned.numel():  # (no QAMRecNet.below_top here: a named movie is never recommended back)
            s[qb.mentioned] += net.mention_bonus
        if self.comention and net.memory is not None and net.memory.active:  # QAMRecNet.score's co-mention term
            s[:n_c] += net.memory(qb.anchors, qb.anchor_batch, 1)[0]
        if self.neighbours and net.neighbours is not None and net.neighbours.active:  # QAMRecNet.score's vote
            s[:n_c] += net.neighbours(qb.text, qb.anchors, qb.anchor_batch)[0]
        gated = self._add_gate(p, s, n_c) if self._gate is not None else None  # the modality gate (_add_gate)
        if raw is not None:  # these terms lift rows the first pass did not re-score: score the new top exactly
            s += self._exact_top(s, raw, qvec, top_n)
        sd, mu = torch.std_mean(s)
        final = (s - mu) / sd.clamp(min=1e-6)  # standardized, so that feedback labels have a common scale
        r = self._feedback_scores(fb) if full_fb else None
        if r is not None:
            final[:n_c] += self.refine.weight * r
        if u:
            final += torch.from_numpy(self.facts.adjust(u, Weights(every_concept=self.refine.every_concept)))
            if raw is not None:  # so do the facts
                final += self._exact_top(final, raw, qvec, top_n) / sd.clamp(min=1e-6)
        all_movies = self.all_movies
        picked: list[int] = []
        taken: set[int] = set()
        start, want = 0, min(len(final), 5 * k + len(banned))
        while len(picked) < k and start < len(final):  # the top few suffice unless most are banned or repeats
            for j in torch.topk(final, want).indices.tolist()[start:]:
                m = int(all_movies[j])
                if m in taken or m in banned:
                    continue
                taken.add(m)
                picked.append(j)
                if len(picked) == k:
                    break
            start, want = want, min(len(final), 2 * want)
        per_movie, per_query = self._gate_report(p, picked, gated)
        att = sorted(zip(qb.nodes.tolist(), alpha.tolist()), key=lambda x: -x[1])
        attended = [{"kind": self._labels[n][0], "label": self._labels[n][1], "weight": round(float(a), 4)}
                    for n, a in att]
        # a reason is something the request named: movies the encoder retrieved by text similarity are not
        # ("Like Home Alone: The Holiday Heist" for a heist request said more about the titles than the movie)
        retrieved = {n for n, r in zip(qb.nodes.tolist(), qb.role.tolist()) if r == _RETRIEVED}
        said = [(n, a) for n, a in att if n not in retrieved]
        movies = []
        cand_text = getattr(net, "cand_text", None)
        for j in picked:
            m = int(all_movies[j])
            if j < n_c:
                node = int(self.cands[j])
                reasons = movie_reasons(self._links, self._labels, self.model.featurizer.offsets["movie"] + node,
                                        node, said, r[j].item() if r is not None else 0.0,
                                        float(cand_text[j] @ qn) if cand_text is not None else None)
            else:
                c = float(self.index.row(j)[-qn.shape[0]:] @ qn) if self._has_text else 0.0
                reasons = [{"kind": "text", "label": "close to your words", "weight": round(c, 4)}]
            info = self.movie(m) or {"id": m, "title": f"movie {m}", "year": None, "genres": [], "has_poster": False}
            movies.append(info | {"score": round(float(final[j]), 4), "reasons": reasons,
                                  "reason": sentence(reasons)}
                          | ({"modality_weights": per_movie.get(j)} if per_query is not None else {}))
        n_sugg = self.refine.suggestions if suggestions is None else suggestions
        ex_words = {self.words.index[w.lower()] for ws in fb.accepted + fb.rejected for w in ws
                    if w.lower() in self.words.index}
        sugg = suggest(self.words, final[:n_c].numpy(), n=n_sugg, exclude_words=ex_words) if n_sugg else []
        return Result(full, movies, attended, sugg, per_query, u, np.asarray(qb.text[0], dtype=np.float32))

    # ----------------------------------------------------------------- the modality gate (model.modality_gate)
    #: graph candidates (those with the best scores before the gate) whose scores get the modality gate's term
    GATE_ROWS = 256

    @torch.no_grad()
    def _gate_table(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The candidates' projected modality embeddings [n_candidates, K, hidden] (item-major) and their mask
        [n_candidates, K], computed once; None when the model has no modality gate (no cost at all then)."""
        net = self.model.net
        if net is None or net.gate is None:
            return None
        net.eval()
        return net.modal_table().transpose(0, 1).contiguous(), net.mod_mask

    def _add_gate(self, p: torch.Tensor, s: torch.Tensor, n_c: int) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Add the gate's term :math:`\sum_k \alpha_{q,j,k} \langle p, e_{j,k} \rangle` to the scores ``s``
        (in place) of the :attr:`GATE_ROWS` graph candidates with the best scores so far; returns those rows and
        their weights :math:`\alpha` [rows, K].

        Only those rows: K x hidden multiply-adds each, where all 6,281 ReDial candidates would cost about as
        much as the whole product with the item matrix. Like the int8 product's re-scoring, the top of the
        ranking is the model's unless the term lifts a candidate from beyond those rows into it. Movies of an
        extended catalog have no modality embeddings and get no term.
        """
        modal, mask = self._gate  # type: ignore[misc]
        rows = torch.topk(s[:n_c], min(self.GATE_ROWS, n_c), sorted=False).indices
        terms, alpha = self.model.net.gate.terms(  # type: ignore[union-attr]
            p, modal.index_select(0, rows), mask.index_select(0, rows))
        s.index_add_(0, rows, terms[0])
        return rows, alpha[0]

    def _gate_report(self, p: torch.Tensor, picked: Sequence[int], gated: tuple[torch.Tensor, torch.Tensor] | None,
                     ) -> tuple[dict[int, dict[str, float]], dict[str, float] | None]:
        r"""The gate's weights :math:`\alpha_{q,j}` ({modality: weight}) of each picked graph candidate ``j`` that
        has a modality, and their mean over those movies: the query's (``({}, None)`` without a gate).

        The weights come from :meth:`_add_gate`'s rows, or are computed here for a pick from beyond them
        (feedback can lift a movie that far).
        """
        if self._gate is None or gated is None:
            return {}, None
        modal, mask = self._gate
        names = self.model.net.gate.names  # type: ignore[union-attr]
        rows, alpha = gated
        at = {j: i for i, j in enumerate(rows.tolist())}
        has = mask.any(-1)
        keep = [j for j in picked if j < modal.shape[0] and bool(has[j])]
        if not keep:
            return {}, {n: 0.0 for n in names}
        missing = [j for j in keep if j not in at]
        extra = None
        if missing:
            idx = torch.tensor(missing)
            extra = self.model.net.gate.terms(p, modal[idx], mask[idx])[1][0]  # type: ignore[union-attr]
        where = {j: i for i, j in enumerate(missing)}
        a = torch.stack([alpha[at[j]] if j in at else extra[where[j]] for j in keep])  # type: ignore[index]
        a = a.double()  # four decimals that print as such
        rounded = (a * 1e4).round().div(1e4).tolist()
        mean = (a.mean(0) * 1e4).round().div(1e4).tolist()
        return ({j: dict(zip(names, w)) for j, w in zip(keep, rounded)}, dict(zip(names, mean)))
