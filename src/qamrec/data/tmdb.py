"""TMDB metadata: overviews, genres, poster paths and ids for MovieLens movies.

Reads ``item_features_tmdb.csv`` (ML-100K movies with TMDB fields), ``links_ml100k_imdb_tmdb.csv`` (ML-100K
id -> IMDb, TMDB) and any file in the format of The Movies Dataset's ``movies_metadata.csv``.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from qamrec.errors import DataFormatError

__all__ = ["read_tmdb_metadata", "read_ml100k_links", "TMDB_SCHEMA"]

TMDB_SCHEMA = {
    "tmdb_id": pl.Int64,
    "imdb_id": pl.String,
    "title": pl.String,
    "overview": pl.String,
    "tagline": pl.String,
    "genres": pl.List(pl.String),
    "poster_path": pl.String,
    "release_date": pl.String,
    "popularity": pl.Float64,
    "vote_average": pl.Float64,
    "vote_count": pl.Int64,
}
_NAME = re.compile(r"""['"]name['"]\s*:\s*['"]([^'"]+)['"]""")


def _read_csv(path: Path, required: set[str]) -> pl.DataFrame:
    try:
        df = pl.read_csv(path, infer_schema=False, encoding="utf8")
    except pl.exceptions.ComputeError as e:
        raise DataFormatError(path, f"unreadable CSV: {str(e).splitlines()[0]}", expected="UTF-8 CSV") from None
    missing = required - set(df.columns)
    if missing:
        raise DataFormatError(path, f"missing column(s) {sorted(missing)}", line=1,
                              expected=f"a header with {sorted(required)}")
    return df


def _int(col: str) -> pl.Expr:
    return pl.col(col).str.strip_chars().cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)


def read_tmdb_metadata(path: str | Path) -> pl.DataFrame:
    """Parse a TMDB metadata CSV (``id`` or ``tmdb_id``, ``imdb_id``, ``overview``, ``genres`` ...) to
    :data:`TMDB_SCHEMA`; rows without a numeric TMDB id are dropped (The Movies Dataset has a few)."""
    path = Path(path)
    df = _read_csv(path, {"imdb_id", "overview", "genres"})
    id_col = "tmdb_id" if "tmdb_id" in df.columns else "id"
    if id_col not in df.columns:
        raise DataFormatError(path, "missing column 'id' or 'tmdb_id'", line=1)

    def opt(col: str) -> pl.Expr:
        return pl.col(col) if col in df.columns else pl.lit(None, pl.String)

    out = df.select(
        _int(id_col).alias("tmdb_id"),
        pl.col("imdb_id").str.strip_chars(),
        opt("title"),
        pl.col("overview").str.strip_chars(),
        opt("tagline"),
        pl.col("genres").map_elements(lambda s: _NAME.findall(s or ""), return_dtype=pl.List(pl.String)),
        opt("poster_path"),
        opt("release_date"),
        opt("popularity").cast(pl.Float64, strict=False),
        opt("vote_average").cast(pl.Float64, strict=False),
        opt("vote_count").cast(pl.Float64, strict=False).cast(pl.Int64, strict=False),
    )
    out = out.with_columns(
        pl.when(pl.col("imdb_id").str.contains(r"^tt\d+$")).then(pl.col("imdb_id")).otherwise(None),
        pl.when(pl.col("overview").str.len_chars() > 0).then(pl.col("overview")).otherwise(None),
    )
    return out.filter(pl.col("tmdb_id").is_not_null()).unique("tmdb_id", keep="first", maintain_order=True)


def read_ml100k_links(path: str | Path) -> pl.DataFrame:
    """Parse ``links_ml100k_imdb_tmdb.csv``: ``movie_id, imdb_id, tmdb_id`` -> ml100k_id, imdb_id, tmdb_id."""
    path = Path(path)
    df = _read_csv(path, {"movie_id", "imdb_id", "tmdb_id"})
    return df.select(
        _int("movie_id").cast(pl.Int32).alias("ml100k_id"),
        pl.col("imdb_id").str.strip_chars(),
        _int("tmdb_id").alias("tmdb_id"),
    ).filter(pl.col("ml100k_id").is_not_null())
