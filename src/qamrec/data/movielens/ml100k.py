"""MovieLens 100K: ``u.data`` (ratings) and ``u.item`` + ``u.genre`` (items)."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from qamrec.data.movielens.delimited import diagnose, has_missing, parse_int, read_text_8bit, rename, require_file
from qamrec.data.movielens.schemas import ML100K_DATA_COLS, ML100K_GENRES, ML100K_ITEMS_SCHEMA, POLARS_ERRORS
from qamrec.data.schema import split_title_year
from qamrec.errors import DataFormatError

__all__ = ["read_ml100k_ratings", "read_ml100k_items"]


def read_ml100k_ratings(path: str | Path) -> pl.DataFrame:
    """Read ML-100K ``u.data`` (tab-separated user id, item id, rating, timestamp; no header).

    Returns :data:`ML100K_RATINGS_SCHEMA`.
    """
    path = Path(path)
    require_file(path)
    cols = ML100K_DATA_COLS
    try:
        df = pl.read_csv(
            path, has_header=False, separator="\t", schema={c.source: c.dtype for c in cols}, quote_char=None,
            null_values=None,
        )  # fmt: skip
        reason = "missing values" if has_missing(df.null_count(), cols, renamed=False) else ""
    except POLARS_ERRORS as e:
        reason = str(e)
    if reason:
        diagnose(path, cols, None, reason, sep="\t")
    if df.height == 0:
        raise DataFormatError(path, "no ratings", expected="tab-separated user id, item id, rating, timestamp")
    return df.select(rename(cols))


def _read_ml100k_genres(path: Path) -> list[str]:
    pairs: list[tuple[int, str]] = []
    for lineno, line in enumerate(read_text_8bit(path), start=1):
        if not line.strip():
            continue
        name, sep, idx = line.rpartition("|")
        if not sep:
            raise DataFormatError(path, "no '|' separator", line=lineno, expected="name|index")
        pairs.append((parse_int(path, idx, lineno, "index"), name))
    pairs.sort()
    if [i for i, _ in pairs] != list(range(len(pairs))):
        raise DataFormatError(path, "genre indices are not 0..n-1", expected="name|index lines, indices 0..n-1")
    return [name for _, name in pairs]


def read_ml100k_items(path: str | Path, genre_path: str | Path | None = None) -> pl.DataFrame:
    """Read ML-100K ``u.item`` (``|``-separated, latin-1) into :data:`ML100K_ITEMS_SCHEMA`.

    Genre flags are mapped to the names of ``u.genre`` (``genre_path``, default: beside ``u.item``;
    :data:`ML100K_GENRES` when absent). ``year`` comes from the title, else from the release date;
    empty release dates and URLs are null.
    """
    path = Path(path)
    gpath = Path(genre_path) if genre_path is not None else path.with_name("u.genre")
    genres = _read_ml100k_genres(gpath) if gpath.is_file() else list(ML100K_GENRES)
    n_fields = 5 + len(genres)
    rows: dict[str, list[object]] = {name: [] for name in ML100K_ITEMS_SCHEMA}
    for lineno, line in enumerate(read_text_8bit(path), start=1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != n_fields:
            layout = f"movie id|title|release date|video release date|IMDb URL|{len(genres)} genre flags"
            raise DataFormatError(path, f"{len(parts)} '|'-separated fields", line=lineno, expected=layout)
        flags = parts[5:]
        for g, flag in zip(genres, flags, strict=True):
            if flag.strip() not in ("0", "1"):
                raise DataFormatError(path, f"genre flag {flag!r}", line=lineno, field=g, expected="0 or 1")
        title, year = split_title_year(parts[1], movielens=True)
        release = parts[2].strip()
        if year is None and (m := re.search(r"(\d{4})$", release)):
            year = int(m.group(1))
        rows["ml100k_id"].append(parse_int(path, parts[0], lineno, "movie id"))
        rows["title"].append(title)
        rows["year"].append(year)
        rows["release_date"].append(release or None)
        rows["imdb_url"].append(parts[4].strip() or None)
        rows["genres"].append([g for g, flag in zip(genres, flags, strict=True) if flag.strip() == "1"])
    if not rows["ml100k_id"]:
        raise DataFormatError(path, "no items", expected="ML-100K u.item lines")
    return pl.DataFrame(rows, schema=ML100K_ITEMS_SCHEMA)
