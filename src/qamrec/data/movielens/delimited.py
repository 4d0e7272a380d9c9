"""Reading MovieLens' delimited files with located errors: header check, polars read, and a csv-module rescan
that finds the first bad line; streaming to Parquet; the check of movie ids against a movie table; the small
``.dat`` / ``u.*`` text files.
"""

from __future__ import annotations

import csv
import logging
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from qamrec.data.movielens.schemas import INT_RE, POLARS_ERRORS, Column, MovieIds, Unknown
from qamrec.errors import DataFormatError, MissingDataError
from qamrec.io import atomic_path

__all__ = ["read_csv", "scan_csv", "sink_csv", "diagnose", "has_missing", "rename", "check_known", "require_file",
           "parquet_num_rows", "read_text_8bit", "parse_int"]

_log = logging.getLogger(__name__)

_INT_RANGE = {pl.Int32: (-(2**31), 2**31 - 1), pl.Int64: (-(2**63), 2**63 - 1)}
# what polars' number parser reads (float() would also take "1_0" and " 5", losing the bad line)
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)", re.I)


def _expected_columns(cols: Sequence[Column]) -> str:
    return "columns " + ", ".join(c.source for c in cols)


def require_file(path: Path) -> None:
    """Raise :class:`MissingDataError` unless ``path`` is a file."""
    if not path.is_file():
        raise MissingDataError(f"{path}: file not found")


def _check_header(path: Path, cols: Sequence[Column], sep: str = ",") -> list[str]:
    """Read and check the header line of a UTF-8 delimited file; return its column names."""
    require_file(path)
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


def _value_problem(value: str, col: Column, empty_ok: bool) -> tuple[str, str] | None:
    """Why ``value`` does not fit ``col`` as (problem, expected), or None when it does."""
    if value == "":
        if col.nullable or (col.dtype == pl.String and empty_ok):
            return None
        return "empty value", "a value"
    if col.dtype in (pl.Int32, pl.Int64):
        if not INT_RE.fullmatch(value):
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
    path: Path, cols: Sequence[Column], header: list[str] | None, sep: str, empty_ok: bool
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
    except POLARS_ERRORS:
        return None
    return int(found["_k"].item()) if found.height else None


def _check_record(
    path: Path, cols: Sequence[Column], header: list[str] | None, sep: str, empty_ok: bool, k: int
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
    path: Path, cols: Sequence[Column], header: list[str] | None, *, sep: str, empty_ok: bool, free_text: str | None
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


def diagnose(
    path: Path, cols: Sequence[Column], header: list[str] | None, reason: str, *,
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


def _csv_options(cols: Sequence[Column], sep: str, empty_ok: bool) -> dict[str, object]:
    return {
        "separator": sep,
        "schema_overrides": {c.source: c.dtype for c in cols},
        "infer_schema": False,
        "null_values": None,
        "empty_string_is_null": not empty_ok,
        "quote_char": '"',
    }


def rename(cols: Sequence[Column]) -> list[pl.Expr]:
    """The columns ``cols`` under their output names."""
    return [pl.col(c.source).alias(c.name) for c in cols]


def has_missing(counts: pl.DataFrame, cols: Sequence[Column], *, renamed: bool) -> bool:
    """Whether a null-count row shows nulls in a required column (an empty field or a short row)."""
    return any(counts[c.name if renamed else c.source].item() > 0 for c in cols if not c.nullable)


def _polars_read(path: Path, cols: Sequence[Column], sep: str, empty_ok: bool) -> pl.DataFrame | str:
    """The renamed columns of ``path``, or why polars could not read them."""
    try:
        df = pl.read_csv(path, columns=[c.source for c in cols], **_csv_options(cols, sep, empty_ok))  # type: ignore[arg-type]
    except POLARS_ERRORS as e:
        return str(e)
    return "missing values" if has_missing(df.null_count(), cols, renamed=False) else df.select(rename(cols))


def read_csv(
    path: str | Path, cols: Sequence[Column], *, sep: str = ",", empty_ok: bool = False, free_text: str | None = None
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
    diagnose(path, cols, header, result, sep=sep, empty_ok=empty_ok, free_text=free_text)
    assert free_text is not None
    with tempfile.TemporaryDirectory(prefix="qamrec-repair-") as tmp:
        fixed = Path(tmp) / path.name
        _write_repaired(path, header, sep, free_text, fixed)
        result = _polars_read(fixed, cols, sep, empty_ok)
    if isinstance(result, str):
        raise DataFormatError(path, f"could not be parsed after repair: {result.splitlines()[0]}")
    return result


def scan_csv(path: str | Path, cols: Sequence[Column], *, empty_ok: bool = False) -> pl.LazyFrame:
    path = Path(path)
    _check_header(path, cols)
    return pl.scan_csv(path, **_csv_options(cols, ",", empty_ok)).select(rename(cols))  # type: ignore[arg-type]


def parquet_num_rows(path: str | Path) -> int:
    """Number of rows of a Parquet file, from its footer metadata (no column data is read)."""
    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


def _polars_sink(src: Path, tmp: Path, cols: Sequence[Column], empty_ok: bool, movies: pl.Series | None) -> str | None:
    """Stream ``src`` into the Parquet file ``tmp``; return why that failed, or None."""
    lf = pl.scan_csv(src, **_csv_options(cols, ",", empty_ok)).select(rename(cols))  # type: ignore[arg-type]
    if movies is not None:
        lf = lf.filter(pl.col("movielens_id").cast(pl.Int64).is_in(movies.implode()))
    try:
        lf.sink_parquet(tmp, compression="zstd", statistics=True, engine="streaming")
    except POLARS_ERRORS as e:
        return str(e)
    counts = pl.scan_parquet(tmp).select(pl.all().null_count()).collect(engine="streaming")
    return "missing values" if has_missing(counts, cols, renamed=True) else None


def sink_csv(
    src: str | Path, out: str | Path, cols: Sequence[Column], *,
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
            diagnose(src, cols, header, reason, empty_ok=empty_ok, free_text=free_text)
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


def check_known(df: pl.DataFrame, path: Path, movies: MovieIds | None, unknown: Unknown) -> pl.DataFrame:
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


def read_text_8bit(path: Path) -> list[str]:
    """Lines of a small MovieLens ``.dat``/``u.*`` file: UTF-8 when it decodes as such, else latin-1."""
    require_file(path)
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


def parse_int(path: Path, value: str, line: int, field: str) -> int:
    """``value`` as an integer (ASCII digits), or a :class:`DataFormatError` naming its line and field."""
    value = value.strip()
    if not INT_RE.fullmatch(value):
        raise DataFormatError(path, f"{value!r} is not an integer", line=line, field=field, expected="an integer")
    return int(value)
