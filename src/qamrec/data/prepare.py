"""``qamrec data prepare``: parse fetched sources into typed Parquet tables, cached by input digests.

Each dataset is one :class:`Step`: the raw files it reads and a function that turns them into tables. Its
outputs live in ``prepared/<step>/`` with a ``MANIFEST.json`` written last, holding the step's key (SHA256
over its code version and its input files' digests) and each table's row count and SHA256. A step is redone
when its key changed, a table is missing, a table's digest no longer matches (a corrupted cache file is
never used) or its manifest is unreadable. Tables are computed (streamed ones written to temporary files) in
full before any is renamed into place, so bad input leaves the previous tables and manifest untouched.

A killed ``prepare`` leaves every finished step complete and at most temporary files in the step it was in
(the manifest goes just before the renames and comes back after them): the next run deletes those files and
redoes that step only. The unit of work is the step.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from qamrec.data import steps
from qamrec.data.step import Step, load_table, manifest_path, step_outputs
from qamrec.errors import MissingDataError, QamrecError
from qamrec.io import atomic_path, atomic_write_json, remove_stale_tmp, sha256_file

__all__ = ["Step", "STEPS", "prepare", "load_table", "step_outputs", "PrepareReport"]


@dataclass
class PrepareReport:
    """What :func:`run_step` did with one step: ``prepared`` (redone) or ``cached`` (its outputs were fresh)."""

    step: str
    status: str  # "prepared" or "cached"
    tables: dict[str, int]
    notes: list[str]


def _readable_outputs(prepared_dir: Path, step: str) -> dict | None:
    """The manifest of a step, or ``None`` when it is absent or unreadable (a damaged manifest means redo)."""
    try:
        m = step_outputs(prepared_dir, step)
    except QamrecError:
        return None
    return m if isinstance(m, dict) and isinstance(m.get("tables"), dict) else None


def _key(step: Step, raw_dir: Path, prepared_dir: Path) -> str:
    h = hashlib.sha256(f"{step.name}:{step.version}".encode())
    for rel in step.inputs + step.optional:
        p = raw_dir / rel
        if p.is_dir():  # a folder input (posters): every file's name and digest
            for f in sorted(p.iterdir()):
                h.update(f"{rel}/{f.name}:{sha256_file(f)}".encode())
        elif p.exists():
            h.update(f"{rel}:{sha256_file(p)}".encode())
        else:
            h.update(f"{rel}:absent".encode())
    for dep in step.depends:
        m = _readable_outputs(prepared_dir, dep)
        h.update(f"{dep}:{m.get('key') if m else 'absent'}".encode())
    return h.hexdigest()


def _is_fresh(step: Step, key: str, prepared_dir: Path) -> bool:
    m = _readable_outputs(prepared_dir, step.name)
    if m is None or m.get("key") != key:
        return False
    for name, info in m["tables"].items():
        p = prepared_dir / step.name / f"{name}.parquet"
        if not p.exists() or not isinstance(info, dict) or sha256_file(p) != info.get("sha256"):
            return False
    return True


def _missing_inputs(step: Step, raw_dir: Path) -> list[str]:
    return [rel for rel in step.inputs if not (raw_dir / rel).exists()]


def run_step(step: Step, raw_dir: Path, prepared_dir: Path, *, force: bool = False) -> PrepareReport:
    """Prepare one step unless its outputs are fresh."""
    missing = _missing_inputs(step, raw_dir)
    if missing:
        raise MissingDataError(
            f"cannot prepare '{step.name}': missing {', '.join(missing)} "
            f"(run `qamrec data fetch {step.name}` first)"
        )
    remove_stale_tmp(prepared_dir / step.name)  # what a killed earlier run of this step left
    key = _key(step, raw_dir, prepared_dir)
    if not force and _is_fresh(step, key, prepared_dir):
        m = step_outputs(prepared_dir, step.name)
        return PrepareReport(step.name, "cached", {k: v["rows"] for k, v in m["tables"].items()}, m.get("notes", []))
    notes: list[str] = []
    tables = step.run(raw_dir, prepared_dir, notes)  # parse everything before writing anything
    out = prepared_dir / step.name
    out.mkdir(parents=True, exist_ok=True)
    info: dict[str, dict] = {}
    with contextlib.ExitStack() as written:  # every table to a temporary file; renamed together at the end
        for name, table in tables.items():
            tmp = written.enter_context(atomic_path(out / f"{name}.parquet"))
            if isinstance(table, pl.DataFrame):
                table.write_parquet(tmp, compression="zstd", statistics=True)
                rows = table.height
            else:  # streamed: a parse error shows only now, and leaves the previous tables as they were
                rows = table(tmp)
            info[name] = {"rows": rows, "sha256": sha256_file(tmp)}
        manifest_path(prepared_dir, step.name).unlink(missing_ok=True)  # it would describe other tables
    for stale in out.glob("*.parquet"):
        if stale.stem not in info:
            stale.unlink()
    atomic_write_json(manifest_path(prepared_dir, step.name), {"key": key, "version": step.version,
                                                               "tables": info, "notes": notes})
    return PrepareReport(step.name, "prepared", {k: v["rows"] for k, v in info.items()}, notes)


def _steps() -> dict[str, Step]:
    return {s.name: s for s in steps.ALL}


STEPS: Callable[[], dict[str, Step]] = _steps


def available_steps(raw_dir: Path) -> list[str]:
    """Steps whose required raw inputs are all present, in dependency order (catalog last)."""
    return [n for n, s in STEPS().items() if all((raw_dir / rel).exists() for rel in s.inputs)]


def prepare(names: list[str] | None, raw_dir: Path, prepared_dir: Path, *, force: bool = False,
            on_step: Callable[[str], None] | None = None) -> list[PrepareReport]:
    """Prepare the named steps (default: every step whose inputs were fetched, then the catalog)."""
    steps = STEPS()
    unknown = [n for n in names or [] if n not in steps]
    if unknown:
        from qamrec.errors import QamrecError

        raise QamrecError(f"unknown dataset(s) {unknown} (known: {', '.join(steps)})")
    todo = names or available_steps(raw_dir)
    reports = []
    for name in steps:  # registry order respects dependencies
        if name in todo:
            if on_step is not None:
                on_step(name)
            reports.append(run_step(steps[name], raw_dir, prepared_dir, force=force))
    return reports

