"""The synthetic MovieLens-32M generator: exact sizes, no duplicates, ML-like skew, determinism."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from qamrec.data import movielens as ml
from qamrec.data.synth import SynthStats, synthesize_movielens, target_counts
from qamrec.io import sha256_file

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QAMREC_SHARED_DATA") or REPO / "../shared/data").resolve()
ML32M_MOVIES_CSV = SHARED / "movielens/ml-32m/movies.csv"
GENOME_TAGS = SHARED / "movielens/ml-25m/genome-tags.csv"
HALF_STARS = {x / 2 for x in range(1, 11)}


@pytest.fixture(scope="module")
def movies_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real ML-32M movie table when there is one, else a stand-in with its format."""
    if ML32M_MOVIES_CSV.is_file():
        return ML32M_MOVIES_CSV
    path = tmp_path_factory.mktemp("movies") / "movies.csv"
    rows = [f"{i},Movie {i} ({1950 + i % 70}),Drama|Comedy\n" for i in range(1, 87_586)]
    path.write_text("movieId,title,genres\n" + "".join(rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=[0.001, 0.01])
def generated(request: pytest.FixtureRequest, movies_csv: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp(f"synth-{request.param}")
    vocab = GENOME_TAGS if GENOME_TAGS.is_file() else None
    stats = synthesize_movielens(movies_csv, out, scale=request.param, seed=7, tag_vocab=vocab)
    return request.param, out, stats


def test_exact_sizes(generated: tuple[float, Path, SynthStats]) -> None:
    scale, out, stats = generated
    want = target_counts(scale)
    assert want.users == round(scale * 200_948) and want.ratings == round(scale * 32_000_204)
    assert want.tags == round(scale * 2_000_072)
    ratings = ml.read_ratings(out / "ratings.csv")  # the real loader reads the generated file
    assert ratings.schema == ml.RATINGS_SCHEMA
    assert ratings.height == stats.ratings == want.ratings
    assert ratings["user_id"].n_unique() == stats.users == want.users
    assert ratings["user_id"].min() == 1 and ratings["user_id"].max() == want.users
    movies = ml.read_movies(out / "movies.csv")
    assert movies.height == stats.movies == want.movies
    assert ratings["movielens_id"].cast(pl.Int64).is_in(movies["movielens_id"].implode()).all()
    tags = ml.read_tags(out / "tags.csv", movies=movies)
    assert tags.height == stats.tags == want.tags
    assert tags.select(pl.struct("user_id", "movielens_id", "tag").is_duplicated().any()).item() is False
    meta = json.loads((out / "SYNTHETIC.json").read_text())
    assert meta["stats"]["ratings"] == want.ratings and meta["synthetic"] is True
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]


def test_no_duplicates_and_min_activity(generated: tuple[float, Path, SynthStats]) -> None:
    _, out, _ = generated
    ratings = ml.read_ratings(out / "ratings.csv")
    assert not ratings.select(pl.struct("user_id", "movielens_id").is_duplicated().any()).item()
    per_user = ratings.group_by("user_id").len()["len"]
    assert per_user.min() >= 20
    assert per_user.max() > 10 * per_user.median()  # heavy tail


def test_rating_values(generated: tuple[float, Path, SynthStats]) -> None:
    _, out, stats = generated
    r = ml.read_ratings(out / "ratings.csv")
    assert set(r["rating"].unique().to_list()) <= HALF_STARS
    assert 3.3 <= r["rating"].mean() <= 3.7
    assert r["rating"].mode().to_list() == [4.0]
    assert stats.rating_mode == 4.0
    ts = r["timestamp"]
    assert ts.min() >= 789_609_600 and ts.max() <= 1_697_155_199  # 1995-01-09 .. 2023-10-12
    old = r.filter(pl.col("timestamp") < 1_045_526_400)["rating"]  # before half stars existed
    assert set(old.unique().to_list()) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_popularity_skew(generated: tuple[float, Path, SynthStats]) -> None:
    _, out, stats = generated
    r = ml.read_ratings(out / "ratings.csv")
    counts = np.zeros(stats.movies, dtype=np.int64)
    c = r.group_by("movielens_id").len()["len"].to_numpy()
    counts[: c.size] = np.sort(c)[::-1]
    top = max(1, stats.movies // 100)
    assert counts[:top].sum() / r.height > 0.10
    cs = np.sort(counts)
    gini = 2 * np.sum(np.arange(1, cs.size + 1) * cs) / (cs.size * cs.sum()) - (cs.size + 1) / cs.size
    assert gini > 0.6
    assert abs(gini - stats.movie_gini) < 1e-3


def test_user_sessions(generated: tuple[float, Path, SynthStats]) -> None:
    _, out, _ = generated
    r = ml.read_ratings(out / "ratings.csv")
    gaps = (
        r.sort("user_id", "timestamp")
        .group_by("user_id", maintain_order=True)
        .agg(pl.col("timestamp").diff().drop_nulls())
    )
    gaps = gaps.explode("timestamp")["timestamp"]
    assert (gaps < 3600).mean() > 0.8  # most consecutive ratings of a user are within the hour


def test_deterministic(movies_csv: Path, tmp_path: Path) -> None:
    a = synthesize_movielens(movies_csv, tmp_path / "a", scale=0.001, seed=3)
    b = synthesize_movielens(movies_csv, tmp_path / "b", scale=0.001, seed=3)
    c = synthesize_movielens(movies_csv, tmp_path / "c", scale=0.001, seed=4)
    for name in ("ratings.csv", "tags.csv", "movies.csv"):
        assert sha256_file(tmp_path / "a" / name) == sha256_file(tmp_path / "b" / name)
    assert sha256_file(tmp_path / "a/ratings.csv") != sha256_file(tmp_path / "c/ratings.csv")
    assert a.model_dump(exclude={"seconds"}) == b.model_dump(exclude={"seconds"})
    assert c.ratings == a.ratings


def test_linear_catalogue_is_rejected_when_infeasible(movies_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="do not fit"):
        synthesize_movielens(movies_csv, tmp_path, scale=0.001, catalog_exponent=1.0)
