"""A preparation step (:class:`Step`), the tables it returns, and reading what it prepared (:func:`load_table`).

The registry of steps (:mod:`.steps`) and the runner (:mod:`.prepare`) both build on this module; neither
imports the other's internals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from qamrec.errors import MissingDataError
from qamrec.io import read_json, sha256_file

__all__ = ["Step", "Table", "load_table", "step_outputs", "manifest_path"]

#: a table is a DataFrame, or a function that writes Parquet to the path it is given (for data that is
#: streamed rather than held in memory) and returns the row count
Table = pl.DataFrame | Callable[[Path], int]


@dataclass(frozen=True)
class Step:
    """A preparation step: ``run(raw_dir, prepared_dir, notes) -> {table name: Table}``.

    ``notes`` collects what a step skipped or repaired (rows with unknown ids, say), for the report.
    """

    name: str
    inputs: tuple[str, ...]  # raw files (relative to raw_dir); those not marked optional must exist
    run: Callable[[Path, Path, list[str]], dict[str, Table]]
    optional: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()  # steps whose outputs this one reads where they are prepared
    version: str = "1"


def manifest_path(prepared_dir: Path, step: str) -> Path:
    """Where the manifest of ``step`` is (written last, after its tables)."""
    return prepared_dir / step / "MANIFEST.json"


def step_outputs(prepared_dir: Path, step: str) -> dict | None:
    """The manifest of a prepared step, or ``None`` when it has not been prepared."""
    p = manifest_path(prepared_dir, step)
    return read_json(p) if p.exists() else None


def load_table(prepared_dir: Path, step: str, table: str) -> pl.DataFrame:
    """Read a prepared table, checking its digest against the step's manifest."""
    m = step_outputs(prepared_dir, step)
    if m is None or table not in m["tables"]:
        raise MissingDataError(f"table '{step}/{table}' is not prepared (run `qamrec data prepare {step}`)")
    p = prepared_dir / step / f"{table}.parquet"
    if not p.exists() or sha256_file(p) != m["tables"][table]["sha256"]:
        raise MissingDataError(f"{p}: missing or corrupted (digest differs); run `qamrec data prepare {step}`")
    return pl.read_parquet(p)
