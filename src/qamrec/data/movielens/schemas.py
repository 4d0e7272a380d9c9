"""The fixed schemas of the MovieLens tables, the columns of each delimited file, and the movie table's
finishing step (title, year and genres out of the raw columns).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import polars as pl

from qamrec.data.schema import MOVIELENS_YEAR

__all__ = ["MovieIds", "Unknown", "MOVIES_SCHEMA", "LINKS_SCHEMA", "RATINGS_SCHEMA", "TAGS_SCHEMA",
           "ML100K_RATINGS_SCHEMA", "ML100K_ITEMS_SCHEMA", "ML100K_GENRES", "IMPLICIT_SCHEMA", "DESCRIPTIONS_SCHEMA",
           "Column", "RATINGS_COLS", "TAGS_COLS", "LINKS_COLS", "MOVIES_COLS", "ML100K_DATA_COLS", "INT_RE",
           "POLARS_ERRORS", "finish_movies"]

#: the movie ids a ratings/tags file may reference: a movie table (its ``movielens_id``) or the ids
MovieIds = pl.DataFrame | pl.Series | Collection[int]
#: what to do with rows whose movie is not in the movie table: raise, or drop them (logged)
Unknown = Literal["error", "drop"]

MOVIES_SCHEMA = pl.Schema(
    {"movielens_id": pl.Int64, "title": pl.String, "year": pl.Int32, "genres": pl.List(pl.String)}
)
LINKS_SCHEMA = pl.Schema({"movielens_id": pl.Int64, "imdb_id": pl.String, "tmdb_id": pl.Int64})
RATINGS_SCHEMA = pl.Schema({"user_id": pl.Int32, "movielens_id": pl.Int32, "rating": pl.Float32, "timestamp": pl.Int64})
TAGS_SCHEMA = pl.Schema({"user_id": pl.Int32, "movielens_id": pl.Int32, "tag": pl.String, "timestamp": pl.Int64})
ML100K_RATINGS_SCHEMA = pl.Schema(
    {"user_id": pl.Int32, "ml100k_id": pl.Int32, "rating": pl.Float32, "timestamp": pl.Int64}
)
ML100K_ITEMS_SCHEMA = pl.Schema(
    {
        "ml100k_id": pl.Int32,
        "title": pl.String,
        "year": pl.Int32,
        "release_date": pl.String,
        "imdb_url": pl.String,
        "genres": pl.List(pl.String),
    }
)
IMPLICIT_SCHEMA = pl.Schema({"user_id": pl.Int32, "movielens_id": pl.Int32, "split": pl.String})
DESCRIPTIONS_SCHEMA = pl.Schema({"movielens_id": pl.Int64, "description": pl.String})

#: ML-100K genre names in flag order, used when ``u.genre`` is not beside ``u.item``.
ML100K_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip

_NO_GENRES = "(no genres listed)"


INT_RE = re.compile(r"[+-]?[0-9]+")  # ASCII digits: int() would also take "١٢"


# polars' errors, and the panic its CSV reader raises on some malformed input (a BaseException)
POLARS_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException)


@dataclass(frozen=True)
class Column:
    """One column of a delimited file: its name in the file, its output name and type."""

    source: str
    name: str
    dtype: type[pl.DataType]
    nullable: bool = False


RATINGS_COLS = (
    Column("userId", "user_id", pl.Int32),
    Column("movieId", "movielens_id", pl.Int32),
    Column("rating", "rating", pl.Float32),
    Column("timestamp", "timestamp", pl.Int64),
)
TAGS_COLS = (
    Column("userId", "user_id", pl.Int32),
    Column("movieId", "movielens_id", pl.Int32),
    Column("tag", "tag", pl.String),
    Column("timestamp", "timestamp", pl.Int64),
)
LINKS_COLS = (
    Column("movieId", "movielens_id", pl.Int64),
    Column("imdbId", "imdb_id", pl.Int64),
    Column("tmdbId", "tmdb_id", pl.Int64, nullable=True),
)
MOVIES_COLS = (
    Column("movieId", "movielens_id", pl.Int64),
    Column("title", "title", pl.String),
    Column("genres", "genres", pl.String),
)
ML100K_DATA_COLS = (
    Column("user id", "user_id", pl.Int32),
    Column("item id", "ml100k_id", pl.Int32),
    Column("rating", "rating", pl.Float32),
    Column("timestamp", "timestamp", pl.Int64),
)


def finish_movies(df: pl.DataFrame) -> pl.DataFrame:
    """Columns movielens_id, title (raw), genres (``|``-joined) -> :data:`MOVIES_SCHEMA`."""
    title = pl.col("title").str.strip_chars()
    genres = pl.col("genres").str.strip_chars()
    return df.select(
        pl.col("movielens_id").cast(pl.Int64),
        title.str.replace(MOVIELENS_YEAR, "").str.strip_chars().alias("title"),
        title.str.extract(MOVIELENS_YEAR, 1).cast(pl.Int32).alias("year"),
        pl.when(genres.is_in([_NO_GENRES, ""]))
        .then(pl.lit([], dtype=pl.List(pl.String)))
        .otherwise(genres.str.split("|").list.eval(pl.element().str.strip_chars()))
        .alias("genres"),
    )
