"""A generator of synthetic MovieLens-32M-shaped data, for large-scale work without the real ratings.

At ``scale=1.0`` it writes exactly the size of MovieLens-32M: 200,948 users, the 87,585 movies of the
real ``ml-32m/movies.csv``, 32,000,204 ratings and 2,000,072 tags, in the real file formats, so the real
loaders (:func:`qamrec.data.movielens.read_ratings`, ``sink_ratings``...) read it unchanged.

The model, chosen to reproduce the shape and skew of the real data:

* **Counts at scale F**: ``round(F * n)`` users, ratings and tags (at least 1 each). The catalogue
  keeps the ``round(87,585 * F ** catalog_exponent)`` most popular movies: with ``catalog_exponent=1``
  (linear) small scales are infeasible (at F=0.001, 201 users x 88 movies = 17,688 pairs < 32,000
  ratings) or cannot be skewed (at F=0.01 the top 1% of movies, 9 movies, hold at most 5.6% of the
  ratings), so the default 0.4 grows the catalogue like the movies touched by a sample of users
  (Heaps' law; ml-latest-small's 610 users touch 11% of the movies: exponent 0.38). F=1 is exact.
* **Movie popularity** follows movie order: movies are ranked by ``log(1 + position in movieId order)``
  plus N(0, 1) noise, so earlier ids (added to MovieLens earlier) tend to be more popular, as in the
  real data; the movie at rank r has weight ``(r + popularity_offset) ** -popularity_exponent``
  (Zipf-Mandelbrot; the offset flattens the head so the top movie is rated by ~half the users, the
  exponent 1.4 gives ML's long tail where the median movie has a handful of ratings).
* **User activity** is log-normal (sigma 1.4, like ML's median 71 / mean 159 ratings per user) above
  a minimum of 20 ratings (MovieLens' selection rule), capped at 40% of the catalogue, and scaled
  to the exact rating count. Each user's movies are drawn by popularity without replacement, so there
  are no duplicate (user, movie) pairs.
* **Rating values** quantize a latent score (user bias + movie bias, popular movies slightly better,
  + noise) to the half-star scale with ML's marginal distribution (mode 4.0, mean ~3.5); ratings
  before 2003-02-18, when MovieLens introduced half stars, use whole stars.
* **Timestamps** lie in 1995-01-09 .. 2023-10-12. Users arrive at a rate growing 7% a year; each has
  1 + Poisson(0.8 ln(1 + n/10)) sessions separated by log-normal gaps (median 30 days), and rates
  movies seconds apart within a session.
* **Tags** come from a Zipfian vocabulary (the real genome tag names when ``tag_vocab`` is given,
  else generated words), applied by ~8% of users with heavy-tailed (log-normal) tagging activity,
  mostly to popular movies, half of them from a per-movie cluster of related tags; timestamps lie in
  the tagger's rating span; no duplicate (user, movie, tag) triples.

Users are generated in chunks of about 4M ratings, so memory stays bounded (~1-2 GB at scale 1), and
every chunk has its own random stream derived from ``seed``: the output is deterministic for a seed.
Every file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import csv
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from qamrec.data.movielens import read_movies
from qamrec.data.synth_sampling import (T_END, T_START, allocate, arrival_times, gini, popularity_order,
                                         quantile_cuts, sample_movies, seeded_rng, session_timestamps, zm_ranks)
from qamrec.errors import DataFormatError, MissingDataError
from qamrec.io import atomic_path, atomic_write_json, sha256_file

__all__ = [
    "ML32M_USERS",
    "ML32M_MOVIES",
    "ML32M_RATINGS",
    "ML32M_TAGS",
    "SynthCounts",
    "SynthStats",
    "ProgressFn",
    "target_counts",
    "synthesize_movielens",
]

ML32M_USERS = 200_948
ML32M_MOVIES = 87_585
ML32M_RATINGS = 32_000_204
ML32M_TAGS = 2_000_072

HALF_STARS_SINCE = 1_045_526_400  # 2003-02-18: MovieLens introduced half-star ratings

_HALF_STARS = np.arange(1, 11, dtype=np.float32) / 2  # 0.5 .. 5.0
# share of each half-star value in MovieLens (ml-latest-small / ML-25M aggregate, rounded): mean 3.5
_HALF_STAR_SHARES = np.array([1.4, 2.8, 1.8, 7.5, 5.5, 19.9, 13.0, 26.6, 8.5, 13.0])
_WHOLE_STARS = np.arange(1, 6, dtype=np.float32)
# share of each whole-star value in ML-1M (before half stars): mean 3.58
_WHOLE_STAR_SHARES = np.array([5.6, 10.8, 26.1, 34.9, 22.6])

_CHUNK_RATINGS = 4_000_000
_MIN_RATINGS = 20

#: ``progress(stage, done, total)``, called as ``"ratings"`` and ``"tags"`` are written
ProgressFn = Callable[[str, int, int], None]


class SynthCounts(BaseModel):
    """The sizes of a synthetic dataset."""

    model_config = ConfigDict(frozen=True)

    users: int
    movies: int
    ratings: int
    tags: int


class SynthStats(BaseModel):
    """What :func:`synthesize_movielens` wrote, with statistics measured on the output."""

    model_config = ConfigDict(frozen=True)

    scale: float
    seed: int
    users: int
    movies: int
    ratings: int
    tags: int
    seconds: float
    #: catalogue movies with at least one rating
    movies_rated: int
    #: Gini coefficient of the per-movie rating counts over the catalogue
    movie_gini: float
    #: share of the ratings held by the top 1% of movies
    top1pct_share: float
    #: share of the users who rated the most popular movie
    top_movie_user_share: float
    user_min: int
    user_median: float
    user_max: int
    rating_mean: float
    rating_mode: float
    #: rating value (``"0.5"`` .. ``"5.0"``) -> count
    rating_hist: dict[str, int]
    ts_min: int
    ts_max: int
    taggers: int
    tag_vocab: int


def target_counts(scale: float, *, catalog_exponent: float = 0.4) -> SynthCounts:
    """The sizes :func:`synthesize_movielens` produces at ``scale`` (see the module docstring)."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    return SynthCounts(
        users=max(1, round(scale * ML32M_USERS)),
        movies=max(1, min(ML32M_MOVIES, round(ML32M_MOVIES * scale**catalog_exponent))),
        ratings=max(1, round(scale * ML32M_RATINGS)),
        tags=max(1, round(scale * ML32M_TAGS)),
    )


# --------------------------------------------------------------------------------------------------
# Vocabulary and files
# --------------------------------------------------------------------------------------------------


def _generated_vocab(rng: np.random.Generator, size: int = 1128) -> list[str]:
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"] + ["an", "el", "or", "is", "un"]
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        w = "".join(rng.choice(syllables, size=int(rng.integers(2, 4))))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def _read_vocab(path: Path) -> list[str]:
    """Tag names from a ``genome-tags.csv``-like file (a ``tag`` column), deduplicated, in file order."""
    if not path.is_file():
        raise MissingDataError(f"{path}: file not found")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "tag" not in reader.fieldnames:
            raise DataFormatError(path, "missing column 'tag'", line=1, field="tag", expected="columns tagId, tag")
        names = [row["tag"].strip() for row in reader if row.get("tag")]
    if not names:
        raise DataFormatError(path, "no tags", expected="columns tagId, tag")
    return list(dict.fromkeys(names))


def _write_movies(src: Path, dst: Path, keep: set[int] | None) -> None:
    """Copy ``movies.csv`` to ``dst``, keeping only the movies in ``keep`` (all when None)."""
    with atomic_path(dst) as tmp:
        if keep is None:
            shutil.copyfile(src, tmp)
            return
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            fout.write(fin.readline())
            for line in fin:
                head = line.split(b",", 1)[0].strip()
                if head.isdigit() and int(head) in keep:
                    fout.write(line)


# --------------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------------


def synthesize_movielens(
    movies_csv: Path,
    out_dir: Path,
    *,
    scale: float = 1.0,
    seed: int = 0,
    progress: ProgressFn | None = None,
    tag_vocab: Path | None = None,
    catalog_exponent: float = 0.4,
    popularity_exponent: float = 1.4,
    popularity_offset: float = 60.0,
    activity_sigma: float = 1.4,
    min_ratings: int = _MIN_RATINGS,
) -> SynthStats:
    """Write a synthetic MovieLens-32M-shaped dataset to ``out_dir``; see the module docstring.

    ``movies_csv`` is the real ``ml-32m/movies.csv`` (any MovieLens ``movies.csv`` works); ``tag_vocab``
    an optional ``genome-tags.csv`` whose tag names become the tag vocabulary. Writes ``ratings.csv``
    and ``tags.csv`` (the MovieLens formats), ``movies.csv`` (the catalogue's rows of ``movies_csv``)
    and ``SYNTHETIC.json`` (parameters and measured statistics). Raises ``ValueError`` when the
    requested sizes are infeasible (more ratings than user x movie pairs).
    """
    t_begin = time.perf_counter()
    movies_csv, out_dir = Path(movies_csv), Path(out_dir)
    counts = target_counts(scale, catalog_exponent=catalog_exponent)
    movie_ids = np.sort(read_movies(movies_csv)["movielens_id"].to_numpy())
    n_users, n_ratings, n_tags = counts.users, counts.ratings, counts.tags
    n_movies = min(counts.movies, movie_ids.size)
    if n_ratings > n_users * n_movies:
        raise ValueError(
            f"scale {scale}: {n_ratings} ratings do not fit in {n_users} users x {n_movies} movies "
            "without duplicate pairs (raise catalog_exponent's effect by lowering it, or the scale)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)

    # catalogue: the n_movies most popular movies; rank r -> movieId
    order = popularity_order(movie_ids.size, seeded_rng(seed, 0))
    rank_to_id = movie_ids[order[:n_movies]].astype(np.int32)
    a, q = popularity_exponent, popularity_offset

    # user activity: min_ratings + log-normal, capped, exactly n_ratings in all
    k_min = min(min_ratings, n_ratings // n_users, n_movies)
    cap = min(n_movies, max(k_min + 1, int(0.4 * n_movies)))
    if n_users * cap < n_ratings:
        cap = n_movies
    rng = seeded_rng(seed, 1)
    activity = k_min + allocate(n_ratings - k_min * n_users, rng.lognormal(0.0, activity_sigma, n_users), cap - k_min)
    arrivals = arrival_times(rng, n_users)
    user_bias = rng.normal(0.0, 0.5, n_users)

    # latent rating score = user bias + movie bias (noise, plus a little for popularity) + noise
    logpop = -np.log(np.arange(n_movies) + q)
    movie_bias = rng.normal(0.0, 0.5, n_movies) + 0.25 * (logpop - logpop.mean()) / (logpop.std() or 1.0)
    # the cut points come from a calibration sample of users rating exactly as below
    cal = np.sort(rng.choice(n_users, size=min(n_users, 5000), replace=False))
    cal_users, cal_ranks = sample_movies(seeded_rng(seed, 5), activity[cal], n_movies, a, q)
    calib = user_bias[cal[cal_users]] + movie_bias[cal_ranks] + rng.normal(0.0, 0.85, cal_ranks.size)
    cut_half = quantile_cuts(calib, _HALF_STAR_SHARES)
    cut_whole = quantile_cuts(calib, _WHOLE_STAR_SHARES)

    movie_counts = np.zeros(n_movies, dtype=np.int64)
    hist = np.zeros(_HALF_STARS.size, dtype=np.int64)
    t_first = np.full(n_users, T_START, dtype=np.int64)  # per-user rating span, for tag times
    t_last = np.full(n_users, T_END, dtype=np.int64)
    rating_sum = 0.0
    ts_min, ts_max = T_END, T_START
    bounds = np.searchsorted(np.cumsum(activity), np.arange(_CHUNK_RATINGS, n_ratings, _CHUNK_RATINGS), side="right")
    chunks = list(zip(np.r_[0, bounds], np.r_[bounds, n_users], strict=True))

    written = 0
    with atomic_path(out_dir / "ratings.csv") as tmp, open(tmp, "wb") as f:
        for ci, (lo, hi) in enumerate(chunks):
            if hi <= lo:
                continue
            crng = seeded_rng(seed, 2, ci)
            n = activity[lo:hi]
            users, ranks = sample_movies(crng, n, n_movies, a, q)
            ts = session_timestamps(crng, n, arrivals[lo:hi])
            latent = user_bias[lo + users] + movie_bias[ranks] + crng.normal(0.0, 0.85, ranks.size)
            whole = ts < HALF_STARS_SINCE
            values = np.where(
                whole,
                _WHOLE_STARS[np.searchsorted(cut_whole, latent)],
                _HALF_STARS[np.searchsorted(cut_half, latent)],
            )
            movie_counts += np.bincount(ranks, minlength=n_movies)
            hist += np.bincount((values * 2).astype(np.int64) - 1, minlength=_HALF_STARS.size)
            rating_sum += float(values.sum(dtype=np.float64))
            ts_min, ts_max = min(ts_min, int(ts.min())), max(ts_max, int(ts.max()))
            starts, active = np.cumsum(n) - n, np.flatnonzero(n > 0)
            t_first[lo + active] = np.minimum.reduceat(ts, starts[active])
            t_last[lo + active] = np.maximum.reduceat(ts, starts[active])
            df = pl.DataFrame(
                {
                    "userId": (lo + users + 1).astype(np.int32),
                    "movieId": rank_to_id[ranks],
                    "rating": values.astype(np.float32),
                    "timestamp": ts,
                }
            ).sort("userId", "movieId")
            df.write_csv(f, include_header=written == 0)
            written += df.height
            if progress is not None:
                progress("ratings", written, n_ratings)
    assert written == n_ratings, (written, n_ratings)

    vocab = _read_vocab(Path(tag_vocab)) if tag_vocab is not None else _generated_vocab(seeded_rng(seed, 3))
    n_taggers = _write_tags(
        out_dir / "tags.csv", seeded_rng(seed, 4), n_tags, n_users, rank_to_id, vocab, t_first, t_last, a, q
    )
    if progress is not None:
        progress("tags", n_tags, n_tags)
    _write_movies(movies_csv, out_dir / "movies.csv", None if n_movies == movie_ids.size else set(rank_to_id.tolist()))

    top = max(1, n_movies // 100)
    sorted_counts = np.sort(movie_counts)[::-1]
    stats = SynthStats(
        scale=scale,
        seed=seed,
        users=n_users,
        movies=n_movies,
        ratings=n_ratings,
        tags=n_tags,
        seconds=round(time.perf_counter() - t_begin, 2),
        movies_rated=int((movie_counts > 0).sum()),
        movie_gini=round(gini(movie_counts), 4),
        top1pct_share=round(float(sorted_counts[:top].sum() / n_ratings), 4),
        top_movie_user_share=round(float(sorted_counts[0] / n_users), 4),
        user_min=int(activity.min()),
        user_median=float(np.median(activity)),
        user_max=int(activity.max()),
        rating_mean=round(rating_sum / n_ratings, 4),
        rating_mode=float(_HALF_STARS[int(np.argmax(hist))]),
        rating_hist={f"{v:.1f}": int(c) for v, c in zip(_HALF_STARS, hist, strict=True)},
        ts_min=ts_min,
        ts_max=ts_max,
        taggers=n_taggers,
        tag_vocab=len(vocab),
    )
    params = {
        "catalog_exponent": catalog_exponent,
        "popularity_exponent": a,
        "popularity_offset": q,
        "activity_sigma": activity_sigma,
        "min_ratings": k_min,
        "max_ratings": cap,
        "tag_vocab": str(tag_vocab) if tag_vocab is not None else None,
        "movies_csv": str(movies_csv),
        "chunk_ratings": _CHUNK_RATINGS,
    }
    files = {
        name: {"bytes": (out_dir / name).stat().st_size, "sha256": sha256_file(out_dir / name)}
        for name in ("ratings.csv", "tags.csv", "movies.csv")
    }
    atomic_write_json(
        out_dir / "SYNTHETIC.json",
        {
            "generator": "qamrec.data.synth.synthesize_movielens",
            "synthetic": True,
            "reference": {"users": ML32M_USERS, "movies": ML32M_MOVIES, "ratings": ML32M_RATINGS, "tags": ML32M_TAGS},
            "params": params,
            "stats": stats.model_dump(),
            "files": files,
        },
    )
    return stats


def _write_tags(
    target: Path,
    rng: np.random.Generator,
    n_tags: int,
    n_users: int,
    rank_to_id: np.ndarray,
    vocab: list[str],
    t_first: np.ndarray,
    t_last: np.ndarray,
    a: float,
    q: float,
) -> int:
    """Write ``tags.csv`` with exactly ``n_tags`` distinct (user, movie, tag) rows; return the tagger count."""
    n_movies, v = rank_to_id.size, len(vocab)
    taggers = np.sort(rng.choice(n_users, size=max(1, round(0.08 * n_users)), replace=False))
    weights = rng.lognormal(0.0, 2.0, taggers.size)
    tag_rank = rng.permutation(v)  # Zipf rank -> vocabulary index
    cluster = rng.integers(0, v, n_movies)  # each movie's own neighbourhood of related tags
    if n_tags > taggers.size * n_movies * v:
        raise ValueError(f"{n_tags} tags do not fit in {taggers.size} taggers x {n_movies} movies x {v} tags")
    keys = np.empty(0, dtype=np.int64)
    while keys.size < n_tags:
        need = int((n_tags - keys.size) * 1.1) + 16
        user = taggers[rng.choice(taggers.size, size=need, p=weights / weights.sum())]
        movie = zm_ranks(rng, need, n_movies, a, q / 2)
        own = rng.random(need) < 0.5
        tag = np.where(
            own,
            (cluster[movie] + rng.geometric(0.3, need) - 1) % v,
            tag_rank[zm_ranks(rng, need, v, 1.0, 2.0)],
        )
        new = (user.astype(np.int64) * n_movies + movie) * v + tag
        merged = np.concatenate([keys, new])
        _, first = np.unique(merged, return_index=True)
        keys = merged[np.sort(first)][:n_tags]  # keep earlier draws first, then trim
    keys.sort()
    tag = keys % v
    movie = (keys // v) % n_movies
    user = keys // (v * n_movies)
    lo, hi = t_first[user], np.maximum(t_last[user], t_first[user] + 1)
    ts = lo + (rng.random(n_tags) * (hi - lo)).astype(np.int64)
    df = pl.DataFrame(
        {
            "userId": (user + 1).astype(np.int32),
            "movieId": rank_to_id[movie],
            "tag": pl.Series(vocab, dtype=pl.String).gather(tag),
            "timestamp": ts,
        },
        schema={"userId": pl.Int32, "movieId": pl.Int32, "tag": pl.String, "timestamp": pl.Int64},
    ).sort("userId", "movieId", "timestamp", maintain_order=True)
    with atomic_path(target) as tmp:
        df.write_csv(tmp)
    return int(np.unique(user).size)
