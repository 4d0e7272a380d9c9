"""Building a :class:`~qamrec.graph.csr.CSRGraph` from MovieLens-format files (real or synthetic ML-32M).

:func:`build_scale_graph` reads the CSV files with polars (only the needed columns, typed), builds every CSC
with numpy / torch sorts and counts (no Python loop over edges), holds out each user's latest rating as the
validation pair and writes the folder with :meth:`~qamrec.graph.csr.CSRGraph.save`. At the full 32M-rating
scale it takes about 40 s and 2.1 GB peak RSS on this project's 2-core CPU (``qamrec graph scale``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import Tensor

from qamrec.errors import DataFormatError, MissingDataError
from qamrec.graph.csr import (
    GENRE_OF,
    HAS_GENRE,
    HAS_TAG,
    RATED_BY,
    RATES,
    TAG_OF,
    CSRGraph,
    _lex_sorted,
    _stable_argsort,
    csc_from_coo,
    peak_rss_gb,
)
from qamrec.graph.store import EdgeType
from qamrec.io import read_json, sha256_file

__all__ = ["build_scale_graph", "movie_texts", "scale_sources"]

_log = logging.getLogger(__name__)
ProgressFn = Callable[[str], None]
_MAX_LUT = 1 << 27  # largest movieId served by a dense lookup table (512 MB of int32)


@dataclass
class _Movies:
    ids: np.ndarray  # MovieLens id per movie node (file order)
    lut: np.ndarray  # movieId -> node (-1: unknown); or [2, n] (sorted ids, nodes) for huge ids
    frame: pl.DataFrame  # MOVIES_SCHEMA


def _read_movies(path: Path) -> _Movies:
    from qamrec.data.movielens import read_movies

    df = read_movies(path)
    ids = df["movielens_id"].to_numpy().astype(np.int64)
    if ids.size == 0:
        raise DataFormatError(path, "no movies", expected="movieId,title,genres rows")
    if ids.min() < 0:
        raise DataFormatError(path, f"negative movieId {int(ids.min())}", field="movieId")
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.size != ids.size:
        raise DataFormatError(path, f"movieId {int(uniq[counts > 1][0])} appears more than once", field="movieId")
    if int(ids.max()) < _MAX_LUT:  # a dense id -> node table (MovieLens ids are < 300k)
        lut = np.full(int(ids.max()) + 1, -1, dtype=np.int32)
        lut[ids] = np.arange(ids.size, dtype=np.int32)
    else:  # sparse huge ids: the table holds (sorted ids, their nodes) for a binary search
        order = np.argsort(ids)
        lut = np.stack([ids[order], order])
    return _Movies(ids, lut, df)


def _movie_nodes(movies: _Movies, mid: np.ndarray, path: Path, movies_path: Path) -> np.ndarray:
    """Node of each MovieLens movie id; an id missing from the movie table is an error naming both files."""
    if movies.lut.ndim == 1:
        ok = (mid >= 0) & (mid < movies.lut.size)
        node = np.where(ok, movies.lut[np.where(ok, mid, 0)], -1)
    else:
        keys, nodes = movies.lut
        at = np.minimum(np.searchsorted(keys, mid), keys.size - 1)
        node = np.where(keys[at] == mid, nodes[at], -1)
    bad = np.flatnonzero(node < 0)
    if bad.size:
        raise DataFormatError(path, f"movie {int(mid[bad[0]])} is not in {movies_path} ({bad.size} row(s); "
                              f"first is data row {int(bad[0]) + 1})", field="movieId")
    return node.astype(np.int32, copy=False)


def _read_ratings(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(userId int32, movieId int32, rating float32, timestamp int64) of a ratings file, via polars."""
    from qamrec.data.movielens import scan_ratings

    try:
        lf = pl.scan_parquet(path) if path.suffix == ".parquet" else scan_ratings(path)
        df = lf.select("user_id", "movielens_id", "rating", "timestamp").collect()
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as e:
        from qamrec.data.movielens import read_ratings

        read_ratings(path)  # the eager loader locates the bad line and raises a DataFormatError naming it
        raise DataFormatError(path, f"could not be read: {str(e).splitlines()[0]}") from None
    if df.null_count().sum_horizontal().item():
        raise DataFormatError(path, "empty fields", expected="userId,movieId,rating,timestamp without gaps")
    cols = [df[c].rechunk().to_numpy() for c in ("user_id", "movielens_id", "rating", "timestamp")]
    del df
    return cols[0], cols[1], cols[2], cols[3]  # type: ignore[return-value]


def _user_nodes(uid: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(node per row int32, userId per node int64): users numbered in ascending userId order."""
    if uid.size and int(uid.min()) < 0:
        raise DataFormatError(path, f"negative userId {int(uid.min())}", field="userId")
    present = np.bincount(uid, minlength=1) > 0
    lut = np.cumsum(present, dtype=np.int64) - 1
    return lut[uid].astype(np.int32), np.flatnonzero(present).astype(np.int64)


def _holdout_latest(u: np.ndarray, m: np.ndarray, ts: np.ndarray, colptr: np.ndarray) -> np.ndarray:
    """Boolean mask of each user's latest rating over rows sorted by user (``m``: MovieLens movie ids).

    Method: one int64 key per row, ``(ts - min ts) << bits(max movieId) | movieId`` (so ties on the
    timestamp go to the larger movieId), the per-user maximum by ``np.maximum.reduceat`` over the user
    segments of ``colptr``, and a comparison of every row with its user's maximum (exactly one row per user
    matches, as (user, movie) pairs are unique).
    """
    bits = max(1, int(m.max()).bit_length()) if m.size else 1
    t0 = ts - ts.min() if ts.size else ts
    if t0.size and int(t0.max()) >= 1 << (62 - bits):
        raise DataFormatError("ratings", "timestamps span too wide a range", field="timestamp")
    key = (t0 << bits) | m.astype(np.int64)
    counts = np.diff(colptr)
    starts = colptr[:-1][counts > 0]
    seg_max = np.full(counts.size, -1, dtype=np.int64)
    seg_max[counts > 0] = np.maximum.reduceat(key, starts)
    return key == np.repeat(seg_max, counts)


def _ratings_csc(
    path: Path, movies: _Movies, movies_path: Path, step: Callable[[str], None]
) -> tuple[dict[str, Any], np.ndarray]:
    """Both rating relations, the held-out pairs and the user ids, from a ratings file."""
    uid, mid, rating, ts = _read_ratings(path)
    step("read ratings")
    m = _movie_nodes(movies, mid, path, movies_path)
    u, user_ids = _user_nodes(uid, path)
    del uid
    n_users, n_movies = int(user_ids.size), int(movies.ids.size)
    # rated_by: destination user, sources (movies) ascending within each user
    colptr_u, row_m, perm = csc_from_coo(m, u, n_users)
    if perm is not None:
        u, mid, rating, ts = u[perm], mid[perm], rating[perm], ts[perm]
    del perm, m
    if not _lex_sorted(u, row_m, strict=True):  # sorted now, so not strictly: a (user, movie) pair twice
        k = int(np.flatnonzero((u[1:] == u[:-1]) & (row_m[1:] == row_m[:-1]))[0])
        raise DataFormatError(path, f"user {int(user_ids[u[k]])} rated movie {int(movies.ids[row_m[k]])} "
                              "more than once", field="movieId", expected="one rating per (user, movie)")
    step("sorted ratings by user")
    val_mask = _holdout_latest(u, mid, ts, colptr_u)
    del ts, mid
    val = np.stack([u[val_mask], row_m[val_mask]]).astype(np.int64)
    keep = ~val_mask
    u, row_m, rating = u[keep], row_m[keep], rating[keep]
    del keep, val_mask
    colptr_u = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(u, minlength=n_users), out=colptr_u[1:])
    attr_u = (rating / np.float32(5.0)).astype(np.float16)
    del rating
    step("held out each user's latest rating")
    # rates: destination movie; users stay ascending within a movie because the sort is stable
    order = _stable_argsort(row_m)
    row_u = u[order]
    attr_m = attr_u[order]
    colptr_m = np.zeros(n_movies + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_m, minlength=n_movies), out=colptr_m[1:])
    del order, u
    step("built user-rates->movie")
    rel = {
        "rated_by": (colptr_u, row_m, attr_u),
        "rates": (colptr_m, row_u.astype(np.int32, copy=False), attr_m),
        "val": val,
    }
    return rel, user_ids


def _genre_edges(movies: _Movies) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(genre names sorted, movie node per pair, genre node per pair), names lower-cased."""
    ex = (movies.frame.select(pl.int_range(pl.len(), dtype=pl.Int32).alias("m"), pl.col("genres"))
          .explode("genres").drop_nulls()
          .with_columns(pl.col("genres").str.strip_chars().str.to_lowercase())
          .filter(pl.col("genres").str.len_chars() > 0).unique())
    names = sorted(ex["genres"].unique().to_list())
    g = ex["genres"].replace_strict(names, list(range(len(names))), return_dtype=pl.Int32)
    return names, ex["m"].to_numpy(), g.to_numpy()


def _tag_edges(path: Path, movies: _Movies, movies_path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(tag names sorted, movie node, tag node, count) per distinct (movie, lower-cased stripped tag).

    Method: normalize only the distinct raw strings, map every row to a tag id (one hash lookup), then count
    distinct ``movie * n_tags + tag`` keys with ``np.unique`` (no string group-by over all rows).
    """
    from qamrec.data.movielens import read_tags

    df = read_tags(path)
    raw = df["tag"].unique()
    norm = raw.str.strip_chars().str.to_lowercase()
    names = sorted(set(norm.filter(norm.str.len_chars() > 0).to_list()))
    index = {n: i for i, n in enumerate(names)}
    ids = [index.get(n, -1) for n in norm.to_list()]
    t = df["tag"].replace_strict(raw, ids, return_dtype=pl.Int64).to_numpy()
    m = _movie_nodes(movies, df["movielens_id"].to_numpy(), path, movies_path).astype(np.int64)
    keep = t >= 0
    key, counts = np.unique(m[keep] * max(1, len(names)) + t[keep], return_counts=True)
    n = max(1, len(names))
    return names, (key // n).astype(np.int32), (key % n).astype(np.int32), counts.astype(np.float32)


def movie_texts(frame: pl.DataFrame) -> list[str]:
    """``"title (year) | genre, genre"`` per movie row (the year and genres only where known)."""
    out = []
    for title, year, genres in frame.select("title", "year", "genres").iter_rows():
        head = f"{title} ({year})" if year is not None else str(title)
        out.append(f"{head} | {', '.join(genres)}" if genres else head)
    return out


def _pair(graph_parts: dict[EdgeType, tuple], et: EdgeType, rev: EdgeType, src: np.ndarray, dst: np.ndarray,
          n_src: int, n_dst: int, attr: np.ndarray | None = None) -> None:
    """Add ``et`` (src -> dst) and its reverse ``rev`` to ``graph_parts`` as CSCs."""
    for e, s, d, nd in ((et, src, dst, n_dst), (rev, dst, src, n_src)):
        c, r, perm = csc_from_coo(s, d, nd)
        a = None if attr is None else (attr if perm is None else attr[perm])
        graph_parts[e] = (c, r, a)


def _source_digests(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return {k: {"path": str(p), "bytes": p.stat().st_size, "sha256": sha256_file(p)} for k, p in paths.items()}


def build_scale_graph(
    ratings: Path,
    tags: Path | None,
    movies: Path,
    out: Path,
    *,
    seed: int = 0,
    features: bool | Callable[[list[str]], np.ndarray] = True,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Build the :class:`CSRGraph` of MovieLens-format files and save it to ``out``; return its stats.

    ``ratings`` is a ``ratings.csv`` (or its Parquet table), ``tags`` a ``tags.csv`` (or None: no tag
    nodes), ``movies`` the ``movies.csv`` fixing the movie node order. ``features``: True encodes
    ``"title (year) | genres"`` with the configured text encoder through the embedding cache, a callable
    ``texts -> [n, d]`` is used as the encoder, False builds without features (no ``x``). ``seed`` is
    recorded (the build is deterministic). Returns ``build_s``, ``peak_rss_gb``, ``nodes``, ``edges``,
    ``val``, ``steps`` (seconds per step) and ``folder``.
    """
    t_start = time.perf_counter()
    ratings, movies, out = Path(ratings), Path(movies), Path(out)
    steps: dict[str, float] = {}
    last = [t_start]

    def step(name: str) -> None:
        now = time.perf_counter()
        steps[name] = round(now - last[0], 3)
        last[0] = now
        if progress is not None:
            progress(name)

    for p in (ratings, movies, *(() if tags is None else (Path(tags),))):
        if not p.exists():
            raise MissingDataError(f"{p}: missing (needed to build the scale graph)")
    srcs = {"ratings": ratings, "movies": movies} | ({} if tags is None else {"tags": Path(tags)})
    pool = ThreadPoolExecutor(1)  # hashing releases the GIL: it overlaps the single-threaded numpy steps
    digests = pool.submit(_source_digests, srcs)
    try:
        return _build(ratings, tags, movies, out, seed, features, step, t_start, steps, digests)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _build(ratings: Path, tags: Path | None, movies: Path, out: Path, seed: int,
           features: bool | Callable[[list[str]], np.ndarray], step: Callable[[str], None], t_start: float,
           steps: dict[str, float], digests: Future) -> dict[str, Any]:
    mv = _read_movies(movies)
    n_movies = int(mv.ids.size)
    step("read movies")
    rel, user_ids = _ratings_csc(ratings, mv, movies, step)
    n_users = int(user_ids.size)
    parts: dict[EdgeType, tuple] = {RATES: rel["rates"], RATED_BY: rel["rated_by"]}
    genres, gm, gg = _genre_edges(mv)
    _pair(parts, HAS_GENRE, GENRE_OF, gm, gg, n_movies, len(genres))
    tag_names: list[str] = []
    tm, tt, tc = np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
    if tags is not None:
        tag_names, tm, tt, tc = _tag_edges(Path(tags), mv, movies)
    _pair(parts, HAS_TAG, TAG_OF, tm, tt, n_movies, len(tag_names), tc)  # empty without a tags file
    step("genres and tags")
    x: dict[str, Tensor] = {}
    if features is not False:
        encode = features if callable(features) else _default_encoder()
        emb = np.asarray(encode(movie_texts(mv.frame)), dtype=np.float16)
        x["movie"] = torch.from_numpy(emb)
        step("movie text features")
    num_nodes = {"user": n_users, "movie": n_movies, "genre": len(genres), "tag": len(tag_names)}
    graph = CSRGraph(
        num_nodes,
        {et: torch.from_numpy(p[0]) for et, p in parts.items()},
        {et: torch.from_numpy(p[1]) for et, p in parts.items()},
        {et: torch.from_numpy(p[2]) for et, p in parts.items() if p[2] is not None},
        x,
        {"movie_ids": mv.ids, "user_ids": user_ids, "genres": genres, "tags": tag_names, "seed": seed,
         "features": bool(x), "text": "title (year) | genres"},
        torch.from_numpy(rel["val"]),
    )
    graph.meta["sources"] = digests.result()
    step("source digests (waited)")
    stats: dict[str, Any] = {"folder": str(out), **graph.sizes(), "val": int(graph.val.shape[1])}
    graph.meta["build"] = {"build_s": round(time.perf_counter() - t_start, 2), "peak_rss_gb": round(peak_rss_gb(), 3),
                           "steps": dict(steps)}
    graph.save(out)
    step("saved")
    stats |= {"build_s": round(time.perf_counter() - t_start, 2), "peak_rss_gb": round(peak_rss_gb(), 3),
              "steps": steps}
    _log.info("scale graph %s: %s", out, stats)
    return stats


def scale_sources(config: Any, source: str = "synth", scale: float | None = None
                  ) -> tuple[Path, Path | None, Path, str]:
    """``(ratings, tags or None, movies, name)`` for :func:`build_scale_graph` from a :class:`~qamrec.config.Config`.

    ``source="synth"``: the synthetic data under ``raw/movielens/ml-32m-synth`` of the data home, generated
    first (from ``raw/movielens/ml-32m/movies.csv``) when ``scale`` is given and the data there is missing or
    of another scale; name ``synth-<scale>``. Otherwise ``source`` is a folder with MovieLens ``ratings.csv``,
    ``movies.csv`` and optionally ``tags.csv`` (e.g. the real ML-32M); name: the folder's name.
    """
    if source != "synth":
        folder = Path(source).expanduser()
        ratings, movies, tags = folder / "ratings.csv", folder / "movies.csv", folder / "tags.csv"
        for p in (ratings, movies):
            if not p.exists():
                raise MissingDataError(f"{p}: missing (--source needs a folder with ratings.csv and movies.csv)")
        return ratings, tags if tags.exists() else None, movies, folder.name
    synth = config.raw_dir / "movielens/ml-32m-synth"
    info = synth / "SYNTHETIC.json"
    have = read_json(info).get("stats", {}).get("scale") if info.exists() else None
    if scale is not None and have != scale:
        from qamrec.data.synth import synthesize_movielens

        real = config.raw_dir / "movielens/ml-32m/movies.csv"
        if not real.exists():
            raise MissingDataError(f"{real}: missing (run `qamrec data fetch movielens-32m` first)")
        vocab = config.raw_dir / "movielens/ml-25m/genome-tags.csv"
        synthesize_movielens(real, synth, scale=scale, tag_vocab=vocab if vocab.exists() else None)
        have = scale
    if have is None:
        raise MissingDataError(f"{info}: missing (run `qamrec data synth movielens-32m --scale F` or pass --scale)")
    return synth / "ratings.csv", synth / "tags.csv", synth / "movies.csv", f"synth-{have:g}"


def _default_encoder() -> Callable[[list[str]], np.ndarray]:
    from qamrec.config import load_config
    from qamrec.features.pipeline import text_function

    return text_function(load_config())
