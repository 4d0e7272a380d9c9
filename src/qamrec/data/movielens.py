"""Loaders for every MovieLens format qamrec reads, each returning polars frames with a fixed schema.

* :func:`read_movies`: ``movies.csv`` (latest-small, 25M, 32M) or ML-1M ``movies.dat`` -> :data:`MOVIES_SCHEMA`
* :func:`read_links`: ``links.csv`` -> :data:`LINKS_SCHEMA`
* :func:`read_ratings`, :func:`scan_ratings`, :func:`sink_ratings` (streamed to Parquet in bounded
  memory): ``ratings.csv`` -> :data:`RATINGS_SCHEMA`; :func:`read_ml1m_ratings`: ML-1M ``ratings.dat``
* :func:`read_tags`, :func:`sink_tags`: ``tags.csv`` -> :data:`TAGS_SCHEMA`
* :func:`read_ml100k_ratings`, :func:`read_ml100k_items`: ML-100K ``u.data``, ``u.item`` + ``u.genre``
  -> :data:`ML100K_RATINGS_SCHEMA`, :data:`ML100K_ITEMS_SCHEMA`
* :func:`read_implicit_split`: ML-1M ``implicit_split/`` -> :data:`IMPLICIT_SCHEMA`;
  :func:`read_llm_descriptions`: ``llm_response_item.json`` -> :data:`DESCRIPTIONS_SCHEMA`

Malformed input raises :class:`~qamrec.errors.DataFormatError` naming the file, the 1-based line (the
header is line 1) and the field. polars' own CSV errors carry no line number, so only when polars fails
the file is examined again: a fast polars pass reading every field as text finds the first bad record,
and the :mod:`csv` module finds its line (a full csv-module rescan when the file does not even parse as
text). A row with surplus fields in a file with one free-text column (the title of ``movies.csv``, the
tag of ``tags.csv``) has an unquoted comma in that text: it is joined back and logged, not rejected.
The ratings and tags loaders can check the movie ids against a movie table (``movies=``), raising for
or dropping (``unknown="drop"``) rows of unknown movies. The lazy :func:`scan_ratings` checks the header
eagerly; value errors surface at ``collect`` as polars errors.
"""

from __future__ import annotations

import csv
import logging
import re
import tempfile
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from qamrec.errors import DataFormatError, MissingDataError
from qamrec.io import atomic_path, read_json

__all__ = [
    "MOVIES_SCHEMA",
    "LINKS_SCHEMA",
    "RATINGS_SCHEMA",
    "TAGS_SCHEMA",
    "ML100K_RATINGS_SCHEMA",
    "ML100K_ITEMS_SCHEMA",
    "ML100K_GENRES",
    "IMPLICIT_SCHEMA",
    "DESCRIPTIONS_SCHEMA",
    "read_movies",
    "read_links",
    "read_ratings",
    "scan_ratings",
    "sink_ratings",
    "read_tags",
    "sink_tags",
    "read_ml100k_ratings",
    "read_ml100k_items",
    "read_implicit_split",
    "read_llm_descriptions",
    "read_ml1m_ratings",
    "parquet_num_rows",
    "MovieIds",
    "Unknown",
]

_log = logging.getLogger(__name__)

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
# "Title (1995)", also "Title (2006–2007)" (a series) and the stray "Title (1983))" of ML-32M.
_YEAR_RE = r"\s*\((\d{4})(?:\s*[-–]\s*\d{0,4})?\)\)?$"
_YEAR_PY = re.compile(_YEAR_RE)
_INT_RE = re.compile(r"[+-]?[0-9]+")  # ASCII digits: int() would also take "١٢"
_INT_RANGE = {pl.Int32: (-(2**31), 2**31 - 1), pl.Int64: (-(2**63), 2**63 - 1)}
# what polars' number parser reads (float() would also take "1_0" and " 5", losing the bad line)
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)", re.I)
# polars' errors, and the panic its CSV reader raises on some malformed input (a BaseException)
_POLARS_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException)


@dataclass(frozen=True)
class _Col:
    """One column of a delimited file: its name in the file, its output name and type."""

    source: str
    name: str
    dtype: type[pl.DataType]
    nullable: bool = False


_RATINGS_COLS = (
    _Col("userId", "user_id", pl.Int32),
    _Col("movieId", "movielens_id", pl.Int32),
    _Col("rating", "rating", pl.Float32),
    _Col("timestamp", "timestamp", pl.Int64),
)
_TAGS_COLS = (
    _Col("userId", "user_id", pl.Int32),
    _Col("movieId", "movielens_id", pl.Int32),
    _Col("tag", "tag", pl.String),
    _Col("timestamp", "timestamp", pl.Int64),
)
_LINKS_COLS = (
    _Col("movieId", "movielens_id", pl.Int64),
    _Col("imdbId", "imdb_id", pl.Int64),
    _Col("tmdbId", "tmdb_id", pl.Int64, nullable=True),
)
_MOVIES_COLS = (
    _Col("movieId", "movielens_id", pl.Int64),
    _Col("title", "title", pl.String),
    _Col("genres", "genres", pl.String),
)
_ML100K_DATA_COLS = (
    _Col("user id", "user_id", pl.Int32),
    _Col("item id", "ml100k_id", pl.Int32),
    _Col("rating", "rating", pl.Float32),
    _Col("timestamp", "timestamp", pl.Int64),
)


# --------------------------------------------------------------------------------------------------
# Delimited files: header check, polars read, and a csv-module rescan that locates the first bad line.
# --------------------------------------------------------------------------------------------------


def _expected_columns(cols: Sequence[_Col]) -> str:
    return "columns " + ", ".join(c.source for c in cols)


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise MissingDataError(f"{path}: file not found")


def _check_header(path: Path, cols: Sequence[_Col], sep: str = ",") -> list[str]:
    """Read and check the header line of a UTF-8 delimited file; return its column names."""
    _require_file(path)
    with open(path, "rb") as f:
        first = f.readline()
    if not first.strip():
        raise DataFormatError(path, "empty file or empty header line", line=1, expected=_expected_columns(cols))
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFormatError(path, f"not valid UTF-8 at byte {e.start}", line=1, expected="UTF-8 text") from None
    header = [h.strip() for h in next(csv.reader([text], delimiter=sep))]
    missing = [c.source for c in cols if c.source not in header]
    if missing:
        raise DataFormatError(
            path,
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)}",
            line=1,
            field=missing[0],
            expected=_expected_columns(cols),
        )
    return header


def _decoded_lines(path: Path, encoding: str) -> Iterator[str]:
    """Yield the lines of ``path`` decoded one by one, so an encoding error gets its line number."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as e:
                raise DataFormatError(
                    path,
                    f"not valid {encoding.upper()}: byte 0x{raw[e.start]:02x} at column {e.start + 1}",
                    line=lineno,
                    expected=f"{encoding.upper()} text",
                ) from None
            yield text.removeprefix("\ufeff") if lineno == 1 else text


def _value_problem(value: str, col: _Col, empty_ok: bool) -> tuple[str, str] | None:
    """Why ``value`` does not fit ``col`` as (problem, expected), or None when it does."""
    if value == "":
        if col.nullable or (col.dtype == pl.String and empty_ok):
            return None
        return "empty value", "a value"
    if col.dtype in (pl.Int32, pl.Int64):
        if not _INT_RE.fullmatch(value):
            return f"{value!r} is not an integer", "an integer"
        lo, hi = _INT_RANGE[col.dtype]
        if not lo <= int(value) <= hi:
            return f"{value} is out of range", f"an {col.dtype.__name__.lower()} integer"
    elif col.dtype in (pl.Float32, pl.Float64):
        if not _FLOAT_RE.fullmatch(value):
            return f"{value!r} is not a number", "a number"
    return None


def _records(path: Path, has_header: bool, sep: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line, fields)`` for each non-blank data record of a UTF-8 delimited file."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=sep, strict=True)
        try:
            if has_header:
                next(reader, None)
            last = reader.line_num
            for row in reader:
                line, last = last + 1, reader.line_num
                if row:
                    yield line, row
        except csv.Error as e:
            raise DataFormatError(path, f"malformed CSV: {e}", line=reader.line_num) from None
        except UnicodeDecodeError:  # find its line, decoding line by line
            for _ in _decoded_lines(path, "utf-8"):
                pass
            raise DataFormatError(path, "not valid UTF-8", expected="UTF-8 text") from None


def _first_bad_record(
    path: Path, cols: Sequence[_Col], header: list[str] | None, sep: str, empty_ok: bool
) -> int | None:
    """Index of the first record with a bad value, found by a fast polars pass reading every field as
    text; None when that pass finds nothing or cannot parse the file (then the slow rescan decides)."""
    values = []
    for col in cols:
        v = pl.col(col.source)
        bad = v.is_null()  # a short row
        if not (col.nullable or (col.dtype == pl.String and empty_ok)):
            bad = bad | (v == "")
        if col.dtype != pl.String:
            bad = bad | ((v != "") & v.cast(col.dtype, strict=False).is_null())
        values.append(bad)
    try:
        found = (
            pl.scan_csv(
                path,
                separator=sep,
                has_header=header is not None,
                infer_schema=False,
                null_values=None,
                empty_string_is_null=False,
                new_columns=None if header is not None else [c.source for c in cols],
            )
            .with_row_index("_k")
            .filter(pl.any_horizontal(values))
            .select("_k")
            .head(1)
            .collect(engine="streaming")
        )
    except _POLARS_ERRORS:
        return None
    return int(found["_k"].item()) if found.height else None


def _check_record(
    path: Path, cols: Sequence[_Col], header: list[str] | None, sep: str, empty_ok: bool, k: int
) -> DataFormatError | None:
    """The error in the ``k``-th (0-based) data record of ``path``, if it has one."""
    names = header if header is not None else [c.source for c in cols]
    for i, (line, row) in enumerate(_records(path, header is not None, sep)):
        if i < k:
            continue
        if len(row) != len(names):
            return DataFormatError(
                path, f"{len(row)} fields", line=line, expected=f"{len(names)} fields ({', '.join(names)})"
            )
        for col in cols:
            problem = _value_problem(row[names.index(col.source)], col, empty_ok)
            if problem is not None:
                return DataFormatError(path, problem[0], line=line, field=col.source, expected=problem[1])
        return None
    return None


def _fit_row(row: list[str], n: int, free_at: int | None, sep: str) -> list[str] | None:
    """``row`` with surplus fields joined back into the free-text column at ``free_at`` (an unquoted
    separator inside a title or tag), or None when the row cannot have ``n`` fields."""
    if len(row) == n:
        return row
    if free_at is None or len(row) < n:
        return None
    k = len(row) - n
    return row[:free_at] + [sep.join(row[free_at : free_at + k + 1])] + row[free_at + k + 1 :]


@dataclass
class _Scan:
    """What a csv-module rescan found: the first error, and rows repaired by :func:`_fit_row`."""

    error: DataFormatError | None = None
    repaired: int = 0
    first_repaired: int | None = None


def _scan_file(
    path: Path, cols: Sequence[_Col], header: list[str] | None, *, sep: str, empty_ok: bool, free_text: str | None
) -> _Scan:
    """Rescan ``path`` with the csv module and describe its first bad line.

    ``header`` is the file's header (line 1) or None for a headerless file whose columns are ``cols``
    in order. Rows with surplus fields are repaired when ``free_text`` names the one free-text column.
    """
    names = header if header is not None else [c.source for c in cols]
    index = {c.source: names.index(c.source) for c in cols}
    free_at = names.index(free_text) if free_text is not None else None
    scan = _Scan()
    try:
        for line, row in _records(path, header is not None, sep):
            fitted = _fit_row(row, len(names), free_at, sep)
            if fitted is None:
                scan.error = DataFormatError(
                    path, f"{len(row)} fields", line=line, expected=f"{len(names)} fields ({', '.join(names)})"
                )
                return scan
            if fitted is not row:
                scan.repaired += 1
                scan.first_repaired = scan.first_repaired or line
            for col in cols:
                problem = _value_problem(fitted[index[col.source]], col, empty_ok)
                if problem is not None:
                    scan.error = DataFormatError(path, problem[0], line=line, field=col.source, expected=problem[1])
                    return scan
    except DataFormatError as e:
        scan.error = e
    return scan


def _write_repaired(path: Path, header: list[str], sep: str, free_text: str, out: Path) -> None:
    """Copy ``path`` to ``out`` with every row's surplus fields joined into ``free_text`` and quoted."""
    free_at = header.index(free_text)
    with open(out, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=sep, lineterminator="\n")
        writer.writerow(header)
        for _, row in _records(path, True, sep):
            writer.writerow(_fit_row(row, len(header), free_at, sep) or row)


def _diagnose(
    path: Path, cols: Sequence[_Col], header: list[str] | None, reason: str, *,
    sep: str = ",", empty_ok: bool = False, free_text: str | None = None,
) -> _Scan:  # fmt: skip
    """After polars failed on ``path`` for ``reason``: raise the located error, or return a scan that
    found only repairable rows (then the caller reads a repaired copy)."""
    k = _first_bad_record(path, cols, header, sep, empty_ok)
    if k is not None and (error := _check_record(path, cols, header, sep, empty_ok, k)) is not None:
        raise error
    scan = _scan_file(path, cols, header, sep=sep, empty_ok=empty_ok, free_text=free_text)
    if scan.error is not None:
        raise scan.error
    if not scan.repaired:
        first = reason.strip().splitlines()[0] if reason.strip() else "unknown problem"
        raise DataFormatError(path, f"could not be parsed: {first}", expected=_expected_columns(cols))
    _log.warning(
        "%s: %d row(s) have an unquoted %r inside the %r field (first on line %d); joined back into it",
        path, scan.repaired, sep, free_text, scan.first_repaired,
    )  # fmt: skip
    return scan


def _csv_options(cols: Sequence[_Col], sep: str, empty_ok: bool) -> dict[str, object]:
    return {
        "separator": sep,
        "schema_overrides": {c.source: c.dtype for c in cols},
        "infer_schema": False,
        "null_values": None,
        "empty_string_is_null": not empty_ok,
        "quote_char": '"',
    }


def _rename(cols: Sequence[_Col]) -> list[pl.Expr]:
    return [pl.col(c.source).alias(c.name) for c in cols]


def _has_missing(counts: pl.DataFrame, cols: Sequence[_Col], *, renamed: bool) -> bool:
    """Whether a null-count row shows nulls in a required column (an empty field or a short row)."""
    return any(counts[c.name if renamed else c.source].item() > 0 for c in cols if not c.nullable)


def _polars_read(path: Path, cols: Sequence[_Col], sep: str, empty_ok: bool) -> pl.DataFrame | str:
    """The renamed columns of ``path``, or why polars could not read them."""
    try:
        df = pl.read_csv(path, columns=[c.source for c in cols], **_csv_options(cols, sep, empty_ok))  # type: ignore[arg-type]
    except _POLARS_ERRORS as e:
        return str(e)
    return "missing values" if _has_missing(df.null_count(), cols, renamed=False) else df.select(_rename(cols))


def _read_csv(
    path: str | Path, cols: Sequence[_Col], *, sep: str = ",", empty_ok: bool = False, free_text: str | None = None
) -> pl.DataFrame:
    """Read the columns ``cols`` of a UTF-8 CSV file with a header, renamed to their output names."""
    path = Path(path)
    header = _check_header(path, cols, sep)
    result = _polars_read(path, cols, sep, empty_ok)
    if isinstance(result, pl.DataFrame):
        text = [c.name for c in cols if c.dtype == pl.String]
        if empty_ok and text and result.select(pl.any_horizontal(pl.col(text) == "").any()).item():
            # polars reads a missing last field as "": tell a short row from an empty field
            scan = _scan_file(path, cols, header, sep=sep, empty_ok=empty_ok, free_text=None)
            if scan.error is not None:
                raise scan.error
        return result
    _diagnose(path, cols, header, result, sep=sep, empty_ok=empty_ok, free_text=free_text)
    assert free_text is not None
    with tempfile.TemporaryDirectory(prefix="qamrec-repair-") as tmp:
        fixed = Path(tmp) / path.name
        _write_repaired(path, header, sep, free_text, fixed)
        result = _polars_read(fixed, cols, sep, empty_ok)
    if isinstance(result, str):
        raise DataFormatError(path, f"could not be parsed after repair: {result.splitlines()[0]}")
    return result


def _scan_csv(path: str | Path, cols: Sequence[_Col], *, empty_ok: bool = False) -> pl.LazyFrame:
    path = Path(path)
    _check_header(path, cols)
    return pl.scan_csv(path, **_csv_options(cols, ",", empty_ok)).select(_rename(cols))  # type: ignore[arg-type]


def parquet_num_rows(path: str | Path) -> int:
    """Number of rows of a Parquet file, from its footer metadata (no column data is read)."""
    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


def _polars_sink(src: Path, tmp: Path, cols: Sequence[_Col], empty_ok: bool, movies: pl.Series | None) -> str | None:
    """Stream ``src`` into the Parquet file ``tmp``; return why that failed, or None."""
    lf = pl.scan_csv(src, **_csv_options(cols, ",", empty_ok)).select(_rename(cols))  # type: ignore[arg-type]
    if movies is not None:
        lf = lf.filter(pl.col("movielens_id").cast(pl.Int64).is_in(movies.implode()))
    try:
        lf.sink_parquet(tmp, compression="zstd", statistics=True, engine="streaming")
    except _POLARS_ERRORS as e:
        return str(e)
    counts = pl.scan_parquet(tmp).select(pl.all().null_count()).collect(engine="streaming")
    return "missing values" if _has_missing(counts, cols, renamed=True) else None


def _sink_csv(
    src: str | Path, out: str | Path, cols: Sequence[_Col], *,
    empty_ok: bool = False, free_text: str | None = None, movies: MovieIds | None = None, unknown: Unknown = "error",
) -> int:  # fmt: skip
    """Stream a CSV file of any size to zstd Parquet with polars' streaming engine; return its row count."""
    src, out = Path(src), Path(out)
    header = _check_header(src, cols)
    known = _movie_ids(movies)
    drop = known if unknown == "drop" else None
    with atomic_path(out) as tmp:
        reason = _polars_sink(src, tmp, cols, empty_ok, drop)
        if reason is not None:
            _diagnose(src, cols, header, reason, empty_ok=empty_ok, free_text=free_text)
            assert free_text is not None
            with tempfile.TemporaryDirectory(prefix=f".{out.name}.repair-", dir=out.parent) as d:
                fixed = Path(d) / src.name
                _write_repaired(src, header, ",", free_text, fixed)
                reason = _polars_sink(fixed, tmp, cols, empty_ok, drop)
            if reason is not None:
                raise DataFormatError(src, f"could not be parsed after repair: {reason.splitlines()[0]}")
        if known is not None and unknown == "error":
            _check_known_lazy(src, pl.scan_parquet(tmp), known)
    n = parquet_num_rows(out)
    if drop is not None:
        _log.info("%s: kept %d rows whose movieId is in the movie table", src, n)
    return n


# --------------------------------------------------------------------------------------------------
# Referential check: ratings and tags against a movie table
# --------------------------------------------------------------------------------------------------


def _movie_ids(movies: MovieIds | None) -> pl.Series | None:
    if movies is None:
        return None
    if isinstance(movies, pl.DataFrame):
        movies = movies["movielens_id"]
    series = movies if isinstance(movies, pl.Series) else pl.Series(list(movies))
    return series.cast(pl.Int64).unique()


def _line_of_record(path: Path, k: int, has_header: bool = True) -> int | None:
    """1-based line of the ``k``-th (0-based) data record of ``path``."""
    for i, (line, _) in enumerate(_records(path, has_header, ",")):
        if i == k:
            return line
    return None


def _unknown_error(path: Path, movie: int, count: int, k: int) -> DataFormatError:
    return DataFormatError(
        path,
        f"movie {movie} is not in the movie table ({count} such row{'s' if count > 1 else ''})",
        line=_line_of_record(path, k),
        field="movieId",
        expected="a movieId of the movie table (pass unknown='drop' to skip such rows)",
    )


def _check_known(df: pl.DataFrame, path: Path, movies: MovieIds | None, unknown: Unknown) -> pl.DataFrame:
    """``df`` with rows whose movie is not in ``movies`` dropped, or an error for the first of them."""
    known = _movie_ids(movies)
    if known is None:
        return df
    ok = df["movielens_id"].cast(pl.Int64).is_in(known.implode())
    bad = (~ok).arg_true()
    if bad.len() == 0:
        return df
    if unknown == "drop":
        _log.warning("%s: dropped %d row(s) whose movieId is not in the movie table", path, bad.len())
        return df.filter(ok)
    k = int(bad[0])
    raise _unknown_error(path, int(df["movielens_id"][k]), bad.len(), k)


def _check_known_lazy(path: Path, lf: pl.LazyFrame, known: pl.Series) -> None:
    """Raise for the first row of ``lf`` whose movie is not in ``known`` (a streaming pass)."""
    found = (
        lf.with_row_index("_k")
        .filter(~pl.col("movielens_id").cast(pl.Int64).is_in(known.implode()))
        .select(pl.col("_k").first(), pl.col("movielens_id").first(), pl.len())
        .collect(engine="streaming")
    )
    if found["len"].item() > 0:
        raise _unknown_error(path, int(found["movielens_id"].item()), int(found["len"].item()), int(found["_k"].item()))


# --------------------------------------------------------------------------------------------------
# Movies and links
# --------------------------------------------------------------------------------------------------


def _split_title_year(title: str) -> tuple[str, int | None]:
    """Split a MovieLens title into (title, year): ``"Toy Story (1995) "`` -> ``("Toy Story", 1995)``."""
    title = title.strip()
    m = _YEAR_PY.search(title)
    if m is None:
        return title, None
    return title[: m.start()].strip(), int(m.group(1))


def _finish_movies(df: pl.DataFrame) -> pl.DataFrame:
    """Columns movielens_id, title (raw), genres (``|``-joined) -> :data:`MOVIES_SCHEMA`."""
    title = pl.col("title").str.strip_chars()
    genres = pl.col("genres").str.strip_chars()
    return df.select(
        pl.col("movielens_id").cast(pl.Int64),
        title.str.replace(_YEAR_RE, "").str.strip_chars().alias("title"),
        title.str.extract(_YEAR_RE, 1).cast(pl.Int32).alias("year"),
        pl.when(genres.is_in([_NO_GENRES, ""]))
        .then(pl.lit([], dtype=pl.List(pl.String)))
        .otherwise(genres.str.split("|").list.eval(pl.element().str.strip_chars()))
        .alias("genres"),
    )


def _read_text_8bit(path: Path) -> list[str]:
    """Lines of a small MovieLens ``.dat``/``u.*`` file: UTF-8 when it decodes as such, else latin-1."""
    _require_file(path)
    data = path.read_bytes()
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise DataFormatError(
            path, "contains NUL bytes: not a text file (UTF-16?)", line=line, expected="latin-1 or UTF-8 text"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # the GroupLens originals are latin-1
    return text.splitlines()


def _parse_int(path: Path, value: str, line: int, field: str) -> int:
    value = value.strip()
    if not _INT_RE.fullmatch(value):
        raise DataFormatError(path, f"{value!r} is not an integer", line=line, field=field, expected="an integer")
    return int(value)


def _read_movies_dat(path: Path) -> pl.DataFrame:
    ids: list[int] = []
    titles: list[str] = []
    genres: list[str] = []
    for lineno, line in enumerate(_read_text_8bit(path), start=1):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != 3:
            raise DataFormatError(
                path, f"{len(parts)} '::'-separated fields", line=lineno, expected="MovieID::Title::Genres"
            )
        ids.append(_parse_int(path, parts[0], lineno, "MovieID"))
        titles.append(parts[1])
        genres.append(parts[2])
    if not ids:
        raise DataFormatError(path, "no movies", expected="MovieID::Title::Genres lines")
    df = pl.DataFrame(
        {"movielens_id": ids, "title": titles, "genres": genres}, schema_overrides={"movielens_id": pl.Int64}
    )
    return _finish_movies(df)


def read_movies(path: str | Path) -> pl.DataFrame:
    """Read a MovieLens movie table: ``movies.csv`` (UTF-8) or ML-1M ``movies.dat`` (``::``, latin-1).

    Returns :data:`MOVIES_SCHEMA`: ``movielens_id`` Int64, ``title`` String (year and surrounding
    whitespace removed), ``year`` Int32 (null when the title has none), ``genres`` List(String)
    (``"(no genres listed)"`` -> ``[]``).
    """
    path = Path(path)
    if path.suffix.lower() == ".dat":
        return _read_movies_dat(path)
    df = _read_csv(path, _MOVIES_COLS, empty_ok=True, free_text="title")
    return _finish_movies(df)


def read_links(path: str | Path) -> pl.DataFrame:
    """Read ``links.csv``: :data:`LINKS_SCHEMA` (``imdb_id`` as ``"tt"`` + at least 7 zero-padded digits,
    ``tmdb_id`` null where the file has none)."""
    df = _read_csv(path, _LINKS_COLS)
    return df.with_columns(pl.concat_str(pl.lit("tt"), pl.col("imdb_id").cast(pl.String).str.zfill(7)).alias("imdb_id"))


# --------------------------------------------------------------------------------------------------
# Ratings and tags
# --------------------------------------------------------------------------------------------------


def read_ratings(path: str | Path, *, movies: MovieIds | None = None, unknown: Unknown = "error") -> pl.DataFrame:
    """Read ``ratings.csv`` (userId,movieId,rating,timestamp) into :data:`RATINGS_SCHEMA`.

    ``movies`` (optional) is the movie table the file must reference (a frame with ``movielens_id``, or
    the ids): a row whose movie is not in it raises :class:`DataFormatError` naming its line, or with
    ``unknown="drop"`` is dropped and counted in a log warning.
    """
    path = Path(path)
    return _check_known(_read_csv(path, _RATINGS_COLS), path, movies, unknown)


def scan_ratings(path: str | Path) -> pl.LazyFrame:
    """Lazily scan ``ratings.csv`` as :data:`RATINGS_SCHEMA`; the header is checked now, values at collect."""
    return _scan_csv(path, _RATINGS_COLS)


def sink_ratings(
    src_csv: str | Path, out_parquet: str | Path, *, movies: MovieIds | None = None, unknown: Unknown = "error"
) -> int:
    """Convert a ``ratings.csv`` of any size to zstd Parquet (:data:`RATINGS_SCHEMA`) in bounded memory.

    Uses polars' streaming engine; the Parquet file is written under a temporary name and renamed into
    place only when complete and checked. Returns the row count, read from the Parquet footer.
    ``movies`` and ``unknown`` are as for :func:`read_ratings`.
    """
    return _sink_csv(src_csv, out_parquet, _RATINGS_COLS, movies=movies, unknown=unknown)


def read_tags(path: str | Path, *, movies: MovieIds | None = None, unknown: Unknown = "error") -> pl.DataFrame:
    """Read ``tags.csv`` (userId,movieId,tag,timestamp; tags may be quoted) into :data:`TAGS_SCHEMA`.

    A row with an unquoted comma inside its tag is repaired (the surplus fields belong to the tag) and
    logged. ``movies`` and ``unknown`` are as for :func:`read_ratings`.
    """
    path = Path(path)
    return _check_known(_read_csv(path, _TAGS_COLS, empty_ok=True, free_text="tag"), path, movies, unknown)


def sink_tags(
    src_csv: str | Path, out_parquet: str | Path, *, movies: MovieIds | None = None, unknown: Unknown = "error"
) -> int:
    """Convert ``tags.csv`` to Parquet (:data:`TAGS_SCHEMA`) like :func:`sink_ratings`; return the row count."""
    return _sink_csv(src_csv, out_parquet, _TAGS_COLS, empty_ok=True, free_text="tag", movies=movies, unknown=unknown)


def read_ml1m_ratings(path: str | Path) -> pl.DataFrame:
    """Read ML-1M ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) into :data:`RATINGS_SCHEMA`."""
    path = Path(path)
    _require_file(path)
    names = ["UserID", "MovieID", "Rating", "Timestamp"]
    try:  # "1::1193::5::978300760" split on ':' has the fields at 0, 2, 4, 6 and empty ones between
        raw = pl.read_csv(
            path, has_header=False, separator=":", quote_char=None, infer_schema=False, null_values=None,
            new_columns=[f"c{i}" for i in range(7)], encoding="utf8-lossy",
        )  # fmt: skip
    except _POLARS_ERRORS:
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
    for lineno, line in enumerate(_read_text_8bit(path), start=1):  # locate the first bad line
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != 4:
            raise DataFormatError(path, f"{len(parts)} '::'-separated fields", line=lineno, expected="::".join(names))
        for name, value in zip(names, parts, strict=True):
            if name != "Rating":
                _parse_int(path, value, lineno, name)
                continue
            try:
                float(value)
            except ValueError:
                raise DataFormatError(path, f"{value!r} is not a number", line=lineno, field=name) from None
    raise DataFormatError(path, "no ratings or could not be parsed", expected="::".join(names) + " lines")


# --------------------------------------------------------------------------------------------------
# MovieLens 100K
# --------------------------------------------------------------------------------------------------


def read_ml100k_ratings(path: str | Path) -> pl.DataFrame:
    """Read ML-100K ``u.data`` (tab-separated user id, item id, rating, timestamp; no header).

    Returns :data:`ML100K_RATINGS_SCHEMA`.
    """
    path = Path(path)
    _require_file(path)
    cols = _ML100K_DATA_COLS
    try:
        df = pl.read_csv(
            path, has_header=False, separator="\t", schema={c.source: c.dtype for c in cols}, quote_char=None,
            null_values=None,
        )  # fmt: skip
        reason = "missing values" if _has_missing(df.null_count(), cols, renamed=False) else ""
    except _POLARS_ERRORS as e:
        reason = str(e)
    if reason:
        _diagnose(path, cols, None, reason, sep="\t")
    if df.height == 0:
        raise DataFormatError(path, "no ratings", expected="tab-separated user id, item id, rating, timestamp")
    return df.select(_rename(cols))


def _read_ml100k_genres(path: Path) -> list[str]:
    pairs: list[tuple[int, str]] = []
    for lineno, line in enumerate(_read_text_8bit(path), start=1):
        if not line.strip():
            continue
        name, sep, idx = line.rpartition("|")
        if not sep:
            raise DataFormatError(path, "no '|' separator", line=lineno, expected="name|index")
        pairs.append((_parse_int(path, idx, lineno, "index"), name))
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
    for lineno, line in enumerate(_read_text_8bit(path), start=1):
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
        title, year = _split_title_year(parts[1])
        release = parts[2].strip()
        if year is None and (m := re.search(r"(\d{4})$", release)):
            year = int(m.group(1))
        rows["ml100k_id"].append(_parse_int(path, parts[0], lineno, "movie id"))
        rows["title"].append(title)
        rows["year"].append(year)
        rows["release_date"].append(release or None)
        rows["imdb_url"].append(parts[4].strip() or None)
        rows["genres"].append([g for g, flag in zip(genres, flags, strict=True) if flag.strip() == "1"])
    if not rows["ml100k_id"]:
        raise DataFormatError(path, "no items", expected="ML-100K u.item lines")
    return pl.DataFrame(rows, schema=ML100K_ITEMS_SCHEMA)


# --------------------------------------------------------------------------------------------------
# MovieLens 1M implicit split and LLM item descriptions
# --------------------------------------------------------------------------------------------------


def _read_index_map(path: Path, what: str) -> np.ndarray:
    """Read ``<original id> <index>`` lines (indices 0..n-1) into an array ``index -> original id``."""
    originals: list[int] = []
    indices: list[int] = []
    for lineno, line in enumerate(_read_text_8bit(path), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataFormatError(path, f"{len(parts)} fields", line=lineno, expected=f"'<{what} id> <index>'")
        originals.append(_parse_int(path, parts[0], lineno, f"{what} id"))
        indices.append(_parse_int(path, parts[1], lineno, "index"))
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
    for lineno, line in enumerate(_read_text_8bit(path), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            values = np.array([int(p) for p in parts], dtype=np.int64)
        except ValueError:
            bad = next(p for p in parts if not _INT_RE.fullmatch(p))
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
    _require_file(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(
            path, f"top level is a {type(data).__name__}", expected="an object movieId -> description"
        )
    ids: list[int] = []
    texts: list[str] = []
    for key, value in data.items():
        if not _INT_RE.fullmatch(key.strip()):
            raise DataFormatError(path, f"key {key!r} is not a movie id", field=key, expected="integer keys")
        if not isinstance(value, str):
            raise DataFormatError(path, f"value is a {type(value).__name__}", field=key, expected="a string")
        ids.append(int(key))
        texts.append(value)
    return pl.DataFrame({"movielens_id": ids, "description": texts}, schema=DESCRIPTIONS_SCHEMA)
