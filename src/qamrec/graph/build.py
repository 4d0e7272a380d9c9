"""``qamrec graph build``: one heterogeneous graph per CRS dataset from the prepared tables.

Node types: ``movie``, ``user`` (MovieLens raters), ``dialogue`` (training conversations only), ``tag``,
``genre``, ``entity`` (DBpedia entities of the dataset's knowledge graph that are not candidate movies).

Edge types (each also reversed, ``rev_<rel>``): ``user-rates->movie`` (rating / 5 as attribute),
``dialogue-mentions->movie`` (seeker liked / disliked / seen), ``movie-has_genre->genre``,
``movie-has_tag->tag``, ``movie-kg_<relation>->entity`` (one type per KG relation; ``kg_`` keeps relation
names apart from node type names such as ``genre``), and the movie-movie
semantic graphs of MSCRS (Wei et al., SIGIR 2025): ``comentioned`` (in at least ``comention_min`` training
dialogues), ``text_knn`` and ``poster_knn`` (top-k cosine neighbours).

Only training dialogues enter the graph: held-out and dev dialogues give neither nodes nor co-mentions.

With ``model.modality_gate`` movies also carry one embedding per semantic modality (MSMRec, Yu et al.):
``x_mod_<name>`` for each of :data:`MOVIE_MODALITIES` (plot, cast, crew, genres, tags; float16, zeros where
absent) and ``mod_mask`` [N, K], from the same catalog rows, DBpedia people and MovieLens tags as the rest of the
graph (:func:`modality_texts`); ``meta["modalities"]`` names them.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from collections import Counter
from collections.abc import Callable
from itertools import combinations

import numpy as np
import polars as pl
import torch
from torch_geometric.data import HeteroData
import torch_geometric.transforms as T

from qamrec.config import Config
from qamrec.data.crs import CRSData
from qamrec.data.prepare import load_table, step_outputs
from qamrec.graph.store import Graph

__all__ = ["build_graph", "build_or_load", "graph_key", "movie_text", "knn_edges", "MOVIE_MODALITIES",
           "modality_texts", "MODALITY_KG_RELATIONS"]

_log = logging.getLogger(__name__)
#: bump when the graph a configuration gives changes, so stale built graphs are not reused
BUILD_VERSION = 2
Encode = Callable[[list[str]], np.ndarray]
EncodeImages = Callable[[list[str]], np.ndarray]


def movie_text(row: dict) -> str:
    """The text a movie is embedded from: title (year), genres, director, cast and plot."""
    parts = [f"{row['title']} ({row['year']})" if row.get("year") else str(row["title"])]
    if row.get("genres"):
        parts.append("Genres: " + ", ".join(row["genres"]) + ".")
    if row.get("director"):
        parts.append("Directed by " + ", ".join(row["director"][:3]) + ".")
    if row.get("cast"):
        parts.append("Starring " + ", ".join(row["cast"][:5]) + ".")
    if row.get("plot"):
        parts.append(str(row["plot"]))
    return " ".join(parts)


#: the text modalities of a movie (``movie.x_mod_<name>``), in the order of ``movie.mod_mask``'s columns; the
#: poster (``x_poster`` / ``has_poster``) is the last modality of the gate where the graph has posters
MOVIE_MODALITIES: tuple[str, ...] = ("plot", "cast", "crew", "genres", "tags")
#: KG relations whose entity labels join a movie's cast / crew texts
MODALITY_KG_RELATIONS: tuple[str, ...] = ("starring", "director", "writer")


def _names(*groups: list[str], limit: int) -> list[str]:
    """The distinct (case-insensitive) non-empty names of ``groups``, in order, at most ``limit``."""
    out: dict[str, str] = {}
    for g in groups:
        for x in g or []:
            x = str(x).strip()
            if x and x.lower() not in out:
                out[x.lower()] = x
    return list(out.values())[:limit]


def modality_texts(row: dict, people: dict[str, list[str]] | None = None, tags: list[str] | None = None,
                   ) -> dict[str, str | None]:
    """The text of each of a movie's :data:`MOVIE_MODALITIES` (None where the movie has nothing for it).

    The sources are the ones :func:`movie_text` joins into one text, taken apart: ``row`` is the movie's catalog
    row (plot, cast, director, genres); ``people`` the labels of its DBpedia ``starring`` / ``director`` /
    ``writer`` entities (:data:`MODALITY_KG_RELATIONS`); ``tags`` its MovieLens user tags. The title is left out
    of every modality, so each embedding carries that modality only (MSMRec, Yu et al.).
    """
    people = people or {}
    plot = str(row.get("plot") or "").strip()
    cast = _names(row.get("cast") or [], people.get("starring", []), limit=8)
    directors = _names(row.get("director") or [], people.get("director", []), limit=3)
    writers = _names(people.get("writer", []), limit=4)
    crew = " ".join(([f"Directed by {', '.join(directors)}."] if directors else [])
                    + ([f"Written by {', '.join(writers)}."] if writers else []))
    genres = [x for x in (row.get("genres") or []) if x and x.strip() and not x.startswith("(")]
    tag_list = _names(sorted(tags or []), limit=25)
    return {"plot": plot or None, "cast": f"Starring {', '.join(cast)}." if cast else None, "crew": crew or None,
            "genres": f"Genres: {', '.join(genres)}." if genres else None,
            "tags": f"Tagged: {', '.join(tag_list)}." if tag_list else None}


def _add_modalities(data: HeteroData, rows: list[dict], people: dict[int, dict[str, list[str]]],
                    tags: dict[int, list[str]], encode_text: Encode, log: Callable[[str], None]) -> None:
    """``movie.x_mod_<name>`` [N, D] (float16; zeros where absent) per :data:`MOVIE_MODALITIES` and
    ``movie.mod_mask`` [N, K] (bool, the movie has that modality), each text through the cached encoder."""
    texts = [modality_texts(r, people.get(i), tags.get(i)) for i, r in enumerate(rows)]
    masks = []
    for name in MOVIE_MODALITIES:
        col = [t[name] for t in texts]
        present = torch.tensor([x is not None for x in col], dtype=torch.bool)
        log(f"encoding {int(present.sum()):,} movie {name} texts")
        vec = torch.from_numpy(np.asarray(encode_text([x for x in col if x is not None]), dtype=np.float32))
        dim = vec.shape[1] if vec.ndim == 2 and vec.shape[0] else int(getattr(encode_text, "dim", 1))
        table = torch.zeros(len(rows), dim)
        if vec.ndim == 2 and vec.shape[0]:
            table[present] = vec
        data["movie"][f"x_mod_{name}"] = table.half()
        masks.append(present)
    data["movie"].mod_mask = torch.stack(masks, dim=1)


def knn_edges(x: torch.Tensor, k: int, mask: torch.Tensor | None = None, chunk: int = 2048) -> torch.Tensor:
    """Top-``k`` cosine neighbours of each row of ``x`` (self excluded; rows outside ``mask`` take no part).

    Returns ``edge_index`` [2, E] from neighbour to row (messages flow neighbour -> node). Similarities <= 0
    are dropped (MSCRS sets negative similarities to 0).
    """
    idx = torch.arange(x.shape[0]) if mask is None else mask.nonzero().view(-1)
    if k == 0 or idx.numel() < 2:
        return torch.empty(2, 0, dtype=torch.long)
    z = torch.nn.functional.normalize(x[idx].float(), dim=1)
    k = min(k, idx.numel() - 1)
    src, dst = [], []
    for s in range(0, z.shape[0], chunk):
        sim = z[s:s + chunk] @ z.T
        sim[torch.arange(sim.shape[0]), torch.arange(s, s + sim.shape[0])] = -2.0
        val, nb = sim.topk(k, dim=1)
        keep = val > 0
        rows = torch.arange(s, s + sim.shape[0]).unsqueeze(1).expand_as(nb)
        src.append(idx[nb[keep]])
        dst.append(idx[rows[keep]])
    return torch.stack([torch.cat(src), torch.cat(dst)])


def _index(keys: list) -> dict:
    return {k: i for i, k in enumerate(keys)}


def _edge(pairs: list[tuple[int, int]] | np.ndarray) -> torch.Tensor:
    a = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return torch.from_numpy(np.ascontiguousarray(a.T))


def _ratings(config: Config, movies: pl.DataFrame) -> pl.DataFrame:
    """user (``<table>:<id>``), movie_id, rating of every configured MovieLens rating table."""
    parts = []
    prepared = config.prepared_dir
    for step in config.graph.ratings:
        m = step_outputs(prepared, step)
        if m is None or "ratings" not in m["tables"]:
            continue
        r = load_table(prepared, step, "ratings")
        if "ml100k_id" in r.columns:  # ML-100K has its own movie ids; the catalog maps them
            ids = movies.select(pl.col("ml100k_id").cast(pl.Int32), "movie_id").drop_nulls()
            r = r.join(ids, on="ml100k_id")
        else:
            r = r.with_columns(pl.col("movielens_id").cast(pl.Int64).alias("movie_id"))
        parts.append(r.select((pl.lit(step + ":") + pl.col("user_id").cast(pl.String)).alias("user"),
                              "movie_id", pl.col("rating").cast(pl.Float32)))
    if not parts:
        return pl.DataFrame(schema={"user": pl.String, "movie_id": pl.Int64, "rating": pl.Float32})
    return pl.concat(parts)


def _clean_label(label: str) -> str:
    return re.split(r"\s{2,}", label.strip())[0]


def build_graph(crs: CRSData, config: Config, encode_text: Encode, encode_posters: EncodeImages | None,
                log: Callable[[str], None] = lambda s: None) -> Graph:
    """Assemble the graph of ``crs`` (see the module docstring) with features from the given encoders."""
    g = config.graph
    catalog = load_table(config.prepared_dir, "catalog", "movies")
    candidates_movie = [crs.entity_movie[e] for e in crs.item_ids]
    ratings = _ratings(config, catalog)
    dialogue_movies = crs.train_dialogues if g.dialogues else crs.train_dialogues.clear()
    rest = set(ratings["movie_id"].to_list()) | set(dialogue_movies["movie_id"].to_list())
    first = list(dict.fromkeys(candidates_movie))
    movie_ids = first + sorted(rest - set(first))
    mix = _index(movie_ids)
    movies = pl.DataFrame({"movie_id": movie_ids}).join(catalog, on="movie_id", how="left", maintain_order="left")
    rows = movies.to_dicts()
    data = HeteroData()

    log(f"encoding {len(rows):,} movie texts")
    data["movie"].x_text = torch.from_numpy(encode_text([movie_text(r) for r in rows]))
    data["movie"].num_nodes = len(rows)
    has_poster = torch.tensor([bool(r.get("poster_path")) for r in rows])
    if encode_posters is not None and bool(has_poster.any()):
        log(f"encoding {int(has_poster.sum()):,} posters")
        feats = encode_posters([r["poster_path"] for r in rows if r.get("poster_path")])
        x_poster = torch.zeros(len(rows), feats.shape[1])
        x_poster[has_poster] = torch.from_numpy(feats)
        data["movie"].x_poster = x_poster
    else:
        has_poster[:] = False
    data["movie"].has_poster = has_poster

    # users and ratings
    users = sorted(set(ratings["user"].to_list()))
    if users:
        uix = _index(users)
        data["user"].num_nodes = len(users)
        data["user", "rates", "movie"].edge_index = _edge(
            [(uix[u], mix[m]) for u, m in ratings.select("user", "movie_id").iter_rows()])
        data["user", "rates", "movie"].edge_attr = torch.from_numpy(ratings["rating"].to_numpy() / 5.0).float()[:, None]

    # training dialogues
    dialogues = sorted(set(dialogue_movies["dialogue_id"].to_list()))
    if dialogues:
        dix = _index(dialogues)
        data["dialogue"].num_nodes = len(dialogues)
        dm = dialogue_movies.filter(pl.col("movie_id").is_in(movie_ids))
        data["dialogue", "mentions", "movie"].edge_index = _edge(
            [(dix[d], mix[m]) for d, m in dm.select("dialogue_id", "movie_id").iter_rows()])
        data["dialogue", "mentions", "movie"].edge_attr = torch.from_numpy(
            dm.select("liked", "disliked", "seen").to_numpy().astype(np.float32))
        pairs: Counter = Counter()
        for _, part in dm.group_by("dialogue_id"):
            for a, b in combinations(sorted(mix[m] for m in part["movie_id"]), 2):
                pairs[(a, b)] += 1
        co = [p for p, c in pairs.items() if c >= g.comention_min]
        co = co + [(b, a) for a, b in co]
        if co:
            data["movie", "comentioned", "movie"].edge_index = _edge(co)

    # genres
    genre_pairs = [(mix[r["movie_id"]], gname.strip().lower()) for r in rows for gname in (r.get("genres") or [])
                   if gname.strip() and not gname.startswith("(")]
    genres = sorted({gname for _, gname in genre_pairs})
    if genres:
        gix = _index(genres)
        data["genre"].x_text = torch.from_numpy(encode_text(genres))
        data["genre"].num_nodes = len(genres)
        data["movie", "has_genre", "genre"].edge_index = _edge(sorted({(m, gix[x]) for m, x in genre_pairs}))

    # tags
    tags: list[str] = []
    movie_tags: dict[int, list[str]] = {}  # movie node -> its tags (the tags modality)
    if g.tags and (m := step_outputs(config.prepared_dir, "movielens-small")) and "tags" in m["tables"]:
        t = (load_table(config.prepared_dir, "movielens-small", "tags")
             .select(pl.col("movielens_id").cast(pl.Int64).alias("movie_id"),
                     pl.col("tag").str.strip_chars().str.to_lowercase())
             .filter(pl.col("movie_id").is_in(movie_ids) & (pl.col("tag").str.len_chars() > 0)).unique())
        tags = sorted(set(t["tag"].to_list()))
        if tags:
            tix = _index(tags)
            data["tag"].x_text = torch.from_numpy(encode_text(tags))
            data["tag"].num_nodes = len(tags)
            data["movie", "has_tag", "tag"].edge_index = _edge(
                sorted({(mix[a], tix[b]) for a, b in t.iter_rows()}))
            for a, b in t.iter_rows():
                movie_tags.setdefault(mix[a], []).append(b)

    # knowledge graph
    entity_ids: list[int] = []
    entity_labels: list[str] = []
    movie_people: dict[int, dict[str, list[str]]] = {}  # movie node -> KG relation -> entity labels (modalities)
    if g.kg:
        ents = crs.entities.filter(~pl.col("entity_id").is_in(list(crs.entity_movie)))
        entity_ids = ents["entity_id"].to_list()
        entity_labels = ents["label"].to_list()
        eix = _index(entity_ids)
        data["entity"].x_text = torch.from_numpy(encode_text([_clean_label(x) for x in ents["label"].to_list()]))
        data["entity"].num_nodes = len(entity_ids)
        rel = crs.relations.filter(pl.col("kept") & (pl.col("uri") != "self_loop"))
        names = {r: re.sub(r"\W+", "_", lab.strip()) for r, lab in rel.select("relation_id", "label").iter_rows()}
        by_type: dict[tuple[str, str, str], set[tuple[int, int]]] = {}
        for h, r, t in crs.triples.filter(pl.col("relation_id").is_in(list(names))).iter_rows():
            if h == t:
                continue
            hm, tm = crs.entity_movie.get(h), crs.entity_movie.get(t)
            if hm is not None and tm is not None and hm in mix and tm in mix:
                by_type.setdefault(("movie", f"kg_{names[r]}", "movie"), set()).add((mix[hm], mix[tm]))
            elif hm is not None and hm in mix and t in eix:
                by_type.setdefault(("movie", f"kg_{names[r]}", "entity"), set()).add((mix[hm], eix[t]))
            elif tm is not None and tm in mix and h in eix:
                by_type.setdefault(("movie", f"kg_{names[r]}", "entity"), set()).add((mix[tm], eix[h]))
            elif h in eix and t in eix:
                by_type.setdefault(("entity", "kg_related", "entity"), set()).add((eix[h], eix[t]))
        for et, pairs_ in sorted(by_type.items()):
            data[et].edge_index = _edge(sorted(pairs_))
        for rel in MODALITY_KG_RELATIONS:
            for m_node, e in sorted(by_type.get(("movie", f"kg_{rel}", "entity"), ())):
                movie_people.setdefault(m_node, {}).setdefault(rel, []).append(_clean_label(entity_labels[e]))

    if config.model.modality_gate:  # the per-modality embeddings of MSMRec's gate (QAMRecNet's modality gate)
        _add_modalities(data, rows, movie_people, movie_tags, encode_text, log)

    # movie-movie semantic kNN graphs (MSCRS)
    if g.text_knn:
        data["movie", "text_knn", "movie"].edge_index = knn_edges(data["movie"].x_text, g.text_knn)
    if g.poster_knn and bool(has_poster.any()):
        data["movie", "poster_knn", "movie"].edge_index = knn_edges(data["movie"].x_poster, g.poster_knn, has_poster)

    data = T.ToUndirected(merge=False)(data)
    for et in list(data.edge_types):  # movie-movie relations are symmetric already: no rev_ copies
        if et[0] == et[2] == "movie" and et[1].startswith("rev_"):
            del data[et]
    meta = {
        "dataset": crs.name, "movie_ids": movie_ids, "entity_ids": entity_ids, "tags": tags, "genres": genres,
        "entity_labels": [_clean_label(x) for x in entity_labels],
        "entity_movie": {str(e): m for e, m in crs.entity_movie.items() if m in mix},
        "users": len(users), "dialogues": dialogues, "item_ids": crs.item_ids,
        "candidates": [mix[m] for m in candidates_movie], "heldout": crs.heldout, "test_sha256": crs.test_sha256,
        "config": config.graph.model_dump() | {"text_model": config.features.text_model},
    }
    if config.model.modality_gate:
        meta["modalities"] = list(MOVIE_MODALITIES)
    return Graph(data, meta)


def _text_model_key(text_model: str) -> str:
    """The bundled model by name; a local folder by its content (a folder fine-tuned again gets a new key)."""
    from qamrec.features.text import DEFAULT_TEXT_MODEL, text_model_id

    return text_model if text_model == DEFAULT_TEXT_MODEL else text_model_id(text_model)


def graph_key(name: str, config: Config) -> str:
    """What a built graph depends on: dataset, graph and feature settings, the seed (splits), the prepared
    catalog and KG steps (their manifest keys) and, only when on, ``model.modality_gate`` (the graph then
    carries per-modality movie embeddings; graphs without them keep their keys) and, only below 1,
    ``train.dialogue_fraction``."""
    import hashlib
    import json

    parts = {"version": BUILD_VERSION, "dataset": name, "graph": config.graph.model_dump(),
             "text_model": _text_model_key(config.features.text_model), "posters": config.features.posters,
             "seed": config.seed, "dev": config.train.dev_fraction,
             "steps": {s: (step_outputs(config.prepared_dir, s) or {}).get("key")
                       for s in ("catalog", name, *config.graph.ratings)}}
    if config.model.modality_gate:
        parts["modalities"] = list(MOVIE_MODALITIES)
    if config.train.dialogue_fraction < 1.0:  # fewer training dialogues in the graph
        parts["dialogue_fraction"] = config.train.dialogue_fraction
    if not config.train.extra_dialogues:  # only the base training dialogues in the graph
        parts["extra_dialogues"] = False
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def build_or_load(name: str, config: Config, log: Callable[[str], None] = lambda s: None,
                  progress: bool = False, force: bool = False) -> tuple[Graph, Path]:
    """The graph of dataset ``name`` under ``config.graph_dir/<name>-<key>``, built unless already there.

    A graph that fails its digests (see :mod:`qamrec.graph.store`) is logged and built again; the embeddings
    it needs come from the cache, so a build killed while encoding goes on from the last committed shard.
    """
    from qamrec.data.crs import load_crs
    from qamrec.errors import MissingDataError
    from qamrec.features.pipeline import poster_function, text_function
    from qamrec.graph.store import load_graph, save_graph

    folder = config.graph_dir / f"{name}-{graph_key(name, config)}"
    if not force:
        try:
            return load_graph(folder), folder
        except MissingDataError as e:  # absent, half-written by a killed build, or corrupted: build it again
            if (folder / "graph.json").exists():
                _log.warning("%s; building the graph again", e)
                log(f"{e}; building the graph again")
    crs = load_crs(name, config)
    graph = build_graph(crs, config, text_function(config, progress), poster_function(config, progress), log)
    save_graph(graph, folder)
    return load_graph(folder), folder
