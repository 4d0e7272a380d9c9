"""Run directories on disk: the manifest of their files, their validation, and their atomic replacement.

``MANIFEST.json`` is written last into a run directory being assembled and lists the SHA256 of every other
file. :func:`validate_run` checks a run directory before anything loads it: every required file present
(weights, config, item representations, graph, ...) and every listed file unchanged; otherwise it raises a
:class:`~qamrec.errors.QamrecError` naming the files (the service refuses to start, with that message).
``graph/graph.safetensors`` is listed but checked by :func:`~qamrec.graph.store.load_graph` against
``graph/graph.json``, which the manifest covers. A run directory written before manifests existed is checked
for its files only (a warning says so).

A run directory is assembled under a temporary name beside it and swapped into place by :func:`replace_dir`
(two renames); :func:`recover` finishes what a process killed in between left behind. Sweeps and curves
that train one run per point reuse a complete run with the same configuration (:func:`train_or_reuse`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qamrec.config import Config, saved_config
from qamrec.errors import DigestMismatchError, MissingDataError
from qamrec.io import atomic_write_json, read_json, remove_stale_tmp, sha256_file, stale_tmp, tmp_prefix

__all__ = ["MANIFEST", "RUN_FILES", "TrainFn", "write_manifest", "validate_run", "in_progress", "replace_dir",
           "recover", "reusable_run", "train_or_reuse"]

_log = logging.getLogger(__name__)
MANIFEST = "MANIFEST.json"
#: the files every complete run directory has (whatever its model)
RUN_FILES = ("config.json", "graph/graph.json", "graph/graph.safetensors", "model.json", "metrics.json")
_WHAT = {"config.json": "the resolved config", "model.json": "the model settings", "metrics.json": "the metrics",
         "model.safetensors": "the weights", "items.safetensors": "the item representations",
         "graph/graph.json": "the graph", "graph/graph.safetensors": "the graph tensors",
         "test.jsonl": "the held-out test examples"}
_OPTIONAL = ("curves.png",)  # listed when written, not needed to load or serve the run
_CHECKED_ELSEWHERE = ("graph/graph.safetensors",)


def write_manifest(folder: Path) -> None:
    """Record the SHA256 of every file under ``folder`` (hidden ones aside) in ``folder/MANIFEST.json``."""
    files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != MANIFEST and not any(s.startswith(".") for s in p.relative_to(folder).parts)}
    atomic_write_json(folder / MANIFEST, {"format": "qamrec-run-1", "files": files})


def _required(folder: Path, listed: dict[str, str] | None) -> list[str]:
    need = list(RUN_FILES) + ["model.safetensors"]
    if listed is not None:
        need += [f for f in listed if f not in _OPTIONAL]
    elif (folder / "model.json").is_file() and read_json(folder / "model.json").get("name") == "qamrec":
        need.append("items.safetensors")
    return list(dict.fromkeys(need))


def validate_run(folder: Path) -> dict[str, Any]:
    """Check run directory ``folder`` (see the module docstring); returns its manifest (empty for an old run).

    Raises :class:`MissingDataError` naming the missing files, or :class:`DigestMismatchError` naming a
    corrupted one.
    """
    retrain = f"train it again with `qamrec train --out {folder} --overwrite`"
    if not folder.is_dir():
        raise MissingDataError(f"{folder}: no run directory here (train one with `qamrec train --out {folder}`)")
    manifest = read_json(folder / MANIFEST) if (folder / MANIFEST).is_file() else {}
    listed = manifest.get("files") if isinstance(manifest, dict) and manifest else None
    missing = [f for f in _required(folder, listed) if not (folder / f).is_file()]
    if missing:
        names = ", ".join(f"{f} ({_WHAT[f]})" if f in _WHAT else f for f in missing)
        raise MissingDataError(f"{folder}: incomplete run directory, missing {names}; {retrain}")
    if listed is None:
        _log.warning("%s has no %s (written by an older version): its files are not checked for corruption",
                     folder, MANIFEST)
        return {}
    for rel, digest in listed.items():
        path = folder / rel
        if rel in _CHECKED_ELSEWHERE or (rel in _OPTIONAL and not path.exists()):
            continue
        if (actual := sha256_file(path)) != digest:
            raise DigestMismatchError(path, digest, actual)
    return manifest


def in_progress(out: Path) -> bool:
    """Whether ``out`` holds nothing but an interrupted training's checkpoint (see :mod:`.checkpoint`)."""
    from qamrec.train.checkpoint import CHECKPOINT_DIR

    return out.is_dir() and all(p.name == CHECKPOINT_DIR or p.name.startswith(".") for p in out.iterdir())


def replace_dir(tmp: Path, out: Path) -> None:
    """Put the complete folder ``tmp`` at ``out``, replacing what is there (renames only)."""
    old = out.parent / f"{tmp_prefix(out.name)}old-{uuid.uuid4().hex[:8]}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)  # a kill before this line leaves `out` missing: `recover` puts it back
    shutil.rmtree(old, ignore_errors=True)


def recover(out: Path) -> None:
    """Tidy what killed trainings left beside ``out``.

    When ``out`` is missing or only holds a checkpoint, a run directory that was fully assembled (its
    manifest written) is put in place; failing that, a checkpoint that was moved aside is put back. Every
    other leftover is deleted.
    """
    from qamrec.train.checkpoint import CHECKPOINT_DIR

    left = stale_tmp(out.parent, out.name)
    done = [p for p in left if (p / MANIFEST).is_file()]
    if done and (not out.exists() or in_progress(out)):
        replace_dir(done[-1], out)
    elif not out.exists():
        started = [p for p in left if (p / CHECKPOINT_DIR / "checkpoint.json").is_file()]
        if started:
            os.replace(started[-1], out)
    remove_stale_tmp(out.parent, out.name)


#: ``train(dataset, run_dir, config)`` -> the ``metrics.json`` of the run it wrote (sweeps and curves train
#: through it)
TrainFn = Callable[[str, Path, Config], dict[str, Any]]


def reusable_run(run: Path, config: Config, dataset: str, model: str) -> dict[str, Any] | None:
    """The metrics of a complete earlier run of ``model`` in ``run`` with exactly this configuration, else
    None (read by :func:`saved_config`: a setting added since the run was saved counts as what it did then)."""
    try:
        saved = json.loads((run / "config.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        then = saved_config(saved, qamrec=model == "qamrec")
    except (OSError, ValueError):  # pydantic's ValidationError is a ValueError: a setting since removed
        return None
    now = json.loads(config.model_dump_json())
    same = saved.get("dataset") == dataset and json.loads(then.model_dump_json()) == now
    return metrics if same and metrics.get("model") == model else None


def train_or_reuse(run: Path, config: Config, dataset: str, model: str, train: TrainFn, label: str,
                   log: Callable[[str], None]) -> dict[str, Any]:
    """The metrics of ``run``: reused when it is complete with exactly this configuration
    (:func:`reusable_run`), else trained by ``train``. ``label`` names the point in the log line."""
    m = reusable_run(run, config, dataset, model)
    if m is None:
        log(f"[{label}] training")
        return train(dataset, run, config)
    log(f"[{label}] reusing {run}")
    return m
