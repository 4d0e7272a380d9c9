"""MovieLens 1M: ``movies.dat`` and ``ratings.dat`` (``::``-separated, latin-1), the implicit train/test split
and the LLM item descriptions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from qamrec.data.movielens.delimited import parse_int, read_text_8bit, require_file
from qamrec.data.movielens.schemas import DESCRIPTIONS_SCHEMA, IMPLICIT_SCHEMA, INT_RE, POLARS_ERRORS, finish_movies
from qamrec.errors import DataFormatError
from qamrec.io import read_json

__all__ = ["read_movies_dat", "read_ml1m_ratings", "read_implicit_split", "read_llm_descriptions"]


def read_movies_dat(path: Path) -> pl.DataFrame:
    """Read ML-1M ``movies.dat`` (``MovieID::Title::Genres``, latin-1) into :data:`MOVIES_SCHEMA`."""
    ids: list[int] = []
    titles: list[str] = []
    genres: list[str] = []
    for lineno, line in enumerate(read_text_8bit(path), start=1):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != 3:
            raise DataFormatError(
                path, f"{len(parts)} '::'-separated fields", line=lineno, expected="MovieID::Title::Genres"
            )
        ids.append(parse_int(path, parts[0], lineno, "MovieID"))
        titles.append(parts[1])
        genres.append(parts[2])
    if not ids:
        raise DataFormatError(path, "no movies", expected="MovieID::Title::Genres lines")
    df = pl.DataFrame(
        {"movielens_id": ids, "title": titles, "genres": genres}, schema_overrides={"movielens_id": pl.Int64}
    )
    return finish_movies(df)


def read_ml1m_ratings(path: str | Path) -> pl.DataFrame:
    """Read ML-1M ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) into :data:`RATINGS_SCHEMA`."""
    path = Path(path)
    require_file(path)
    names = ["UserID", "MovieID", "Rating", "Timestamp"]
    try:  # "1::1193::5::978300760" split on ':' has the fields at 0, 2, 4, 6 and empty ones between
        raw = pl.read_csv(
            path, has_header=False, separator=":", quote_char=None, infer_schema=False, null_values=None,
            new_columns=[f"c{i}" for i in range(7)], encoding="utf8-lossy",
        )  # fmt: skip
    except POLARS_ERRORS:
        raw = None
    if raw is not None and raw.height > 0:
        df = raw.select(
            pl.col("c0").cast(pl.Int32, strict=False).alias("user_id"),
            pl.col("c2").cast(pl.Int32, strict=False).alias("movielens_id"),
            pl.col("c4").cast(pl.Float32, strict=False).alias("rating"),
            pl.col("c6").cast(pl.Int64, strict=False).alias("timestamp"),
        )
        gaps = raw.select(pl.col("c1", "c3", "c5").is_not_null().any()).row(0)
        if not any(gaps) and df.null_count().sum_horizontal().item() == 0:
            return df
    for lineno, line in enumerate(read_text_8bit(path), start=1):  # locate the first bad line
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != 4:
            raise DataFormatError(path, f"{len(parts)} '::'-separated fields", line=lineno, expected="::".join(names))
        for name, value in zip(names, parts, strict=True):
            if name != "Rating":
                parse_int(path, value, lineno, name)
                continue
            try:
                float(value)
            except ValueError:
                raise DataFormatError(path, f"{value!r} is not a number", line=lineno, field=name) from None
    raise DataFormatError(path, "no ratings or could not be parsed", expected="::".join(names) + " lines")


def _read_index_map(path: Path, what: str) -> np.ndarray:
    """Read ``<original id> <index>`` lines (indices 0..n-1) into an array ``index -> original id``."""
    originals: list[int] = []
    indices: list[int] = []
    for lineno, line in enumerate(read_text_8bit(path), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataFormatError(path, f"{len(parts)} fields", line=lineno, expected=f"'<{what} id> <index>'")
        originals.append(parse_int(path, parts[0], lineno, f"{what} id"))
        indices.append(parse_int(path, parts[1], lineno, "index"))
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size == 0 or not np.array_equal(np.sort(idx), np.arange(idx.size)):
        raise DataFormatError(
            path, "second column is not a permutation of 0..n-1", field="index", expected=f"'<{what} id> <index>'"
        )
    out = np.empty(idx.size, dtype=np.int64)
    out[idx] = originals
    return out


def _read_interactions(path: Path, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Read ``<user index> <item index> ...`` lines; return (ML user ids, MovieLens ids) per interaction."""
    user_col: list[np.ndarray] = []
    item_col: list[np.ndarray] = []
    for lineno, line in enumerate(read_text_8bit(path), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            values = np.array([int(p) for p in parts], dtype=np.int64)
        except ValueError:
            bad = next(p for p in parts if not INT_RE.fullmatch(p))
            raise DataFormatError(path, f"{bad!r} is not an integer", line=lineno, expected="integer indices") from None
        u, its = values[0], values[1:]
        if not 0 <= u < users.size:
            raise DataFormatError(path, f"user index {u} not in user_map.txt", line=lineno, field="user")
        if its.size and (its.min() < 0 or its.max() >= items.size):
            bad_item = its[(its < 0) | (its >= items.size)][0]
            raise DataFormatError(path, f"item index {bad_item} not in item_map.txt", line=lineno, field="item")
        user_col.append(np.full(its.size, users[u], dtype=np.int64))
        item_col.append(items[its])
    if not user_col:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(user_col), np.concatenate(item_col)


def read_implicit_split(folder: str | Path) -> pl.DataFrame:
    """Read the ML-1M implicit train/test split in ``folder`` into :data:`IMPLICIT_SCHEMA`.

    ``user_map.txt`` and ``item_map.txt`` hold ``<ML-1M id> <index>`` lines; ``train.txt`` and
    ``test.txt`` hold ``<user index> <item index> ...`` lines. Rows are the train interactions, then
    the test ones, in file order, with indices mapped back to ML-1M user ids and MovieLens movie ids.
    """
    folder = Path(folder)
    users = _read_index_map(folder / "user_map.txt", "user")
    items = _read_index_map(folder / "item_map.txt", "movie")
    frames = []
    for split in ("train", "test"):
        u, i = _read_interactions(folder / f"{split}.txt", users, items)
        frames.append(
            pl.DataFrame({"user_id": u, "movielens_id": i, "split": [split] * u.size}, schema=IMPLICIT_SCHEMA)
        )
    return pl.concat(frames)


def read_llm_descriptions(path: str | Path) -> pl.DataFrame:
    """Read ``llm_response_item.json`` (``{"<movieId>": "<description>", ...}``) into :data:`DESCRIPTIONS_SCHEMA`."""
    path = Path(path)
    require_file(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(
            path, f"top level is a {type(data).__name__}", expected="an object movieId -> description"
        )
    ids: list[int] = []
    texts: list[str] = []
    for key, value in data.items():
        if not INT_RE.fullmatch(key.strip()):
            raise DataFormatError(path, f"key {key!r} is not a movie id", field=key, expected="integer keys")
        if not isinstance(value, str):
            raise DataFormatError(path, f"value is a {type(value).__name__}", field=key, expected="a string")
        ids.append(int(key))
        texts.append(value)
    return pl.DataFrame({"movielens_id": ids, "description": texts}, schema=DESCRIPTIONS_SCHEMA)
