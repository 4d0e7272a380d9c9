"""The CSV releases (ml-latest-small, 25M, 32M): ``movies.csv``, ``links.csv``, ``ratings.csv``, ``tags.csv``."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from qamrec.data.movielens.delimited import check_known, read_csv, scan_csv, sink_csv
from qamrec.data.movielens.ml1m import read_movies_dat
from qamrec.data.movielens.schemas import (LINKS_COLS, MOVIES_COLS, RATINGS_COLS, TAGS_COLS, MovieIds, Unknown,
                                           finish_movies)

__all__ = ["read_movies", "read_links", "read_ratings", "scan_ratings", "sink_ratings", "read_tags", "sink_tags"]


def read_movies(path: str | Path) -> pl.DataFrame:
    """Read a MovieLens movie table: ``movies.csv`` (UTF-8) or ML-1M ``movies.dat`` (``::``, latin-1).

    Returns :data:`MOVIES_SCHEMA`: ``movielens_id`` Int64, ``title`` String (year and surrounding
    whitespace removed), ``year`` Int32 (null when the title has none), ``genres`` List(String)
    (``"(no genres listed)"`` -> ``[]``).
    """
    path = Path(path)
    if path.suffix.lower() == ".dat":
        return read_movies_dat(path)
    df = read_csv(path, MOVIES_COLS, empty_ok=True, free_text="title")
    return finish_movies(df)


def read_links(path: str | Path) -> pl.DataFrame:
    """Read ``links.csv``: :data:`LINKS_SCHEMA` (``imdb_id`` as ``"tt"`` + at least 7 zero-padded digits,
    ``tmdb_id`` null where the file has none)."""
    df = read_csv(path, LINKS_COLS)
    return df.with_columns(pl.concat_str(pl.lit("tt"), pl.col("imdb_id").cast(pl.String).str.zfill(7)).alias("imdb_id"))


def read_ratings(path: str | Path, *, movies: MovieIds | None = None, unknown: Unknown = "error") -> pl.DataFrame:
    """Read ``ratings.csv`` (userId,movieId,rating,timestamp) into :data:`RATINGS_SCHEMA`.

    ``movies`` (optional) is the movie table the file must reference (a frame with ``movielens_id``, or
    the ids): a row whose movie is not in it raises :class:`DataFormatError` naming its line, or with
    ``unknown="drop"`` is dropped and counted in a log warning.
    """
    path = Path(path)
    return check_known(read_csv(path, RATINGS_COLS), path, movies, unknown)


def scan_ratings(path: str | Path) -> pl.LazyFrame:
    """Lazily scan ``ratings.csv`` as :data:`RATINGS_SCHEMA`; the header is checked now, values at collect."""
    return scan_csv(path, RATINGS_COLS)


def sink_ratings(
    src_csv: str | Path, out_parquet: str | Path, *, movies: MovieIds | None = None, unknown: Unknown = "error"
) -> int:
    """Convert a ``ratings.csv`` of any size to zstd Parquet (:data:`RATINGS_SCHEMA`) in bounded memory.

    Uses polars' streaming engine; the Parquet file is written under a temporary name and renamed into
    place only when complete and checked. Returns the row count, read from the Parquet footer.
    ``movies`` and ``unknown`` are as for :func:`read_ratings`.
    """
    return sink_csv(src_csv, out_parquet, RATINGS_COLS, movies=movies, unknown=unknown)


def read_tags(path: str | Path, *, movies: MovieIds | None = None, unknown: Unknown = "error") -> pl.DataFrame:
    """Read ``tags.csv`` (userId,movieId,tag,timestamp; tags may be quoted) into :data:`TAGS_SCHEMA`.

    A row with an unquoted comma inside its tag is repaired (the surplus fields belong to the tag) and
    logged. ``movies`` and ``unknown`` are as for :func:`read_ratings`.
    """
    path = Path(path)
    return check_known(read_csv(path, TAGS_COLS, empty_ok=True, free_text="tag"), path, movies, unknown)


def sink_tags(
    src_csv: str | Path, out_parquet: str | Path, *, movies: MovieIds | None = None, unknown: Unknown = "error"
) -> int:
    """Convert ``tags.csv`` to Parquet (:data:`TAGS_SCHEMA`) like :func:`sink_ratings`; return the row count."""
    return sink_csv(src_csv, out_parquet, TAGS_COLS, empty_ok=True, free_text="tag", movies=movies, unknown=unknown)
