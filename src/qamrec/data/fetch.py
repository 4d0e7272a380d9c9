"""``qamrec data fetch``: bring a dataset's files into the data home, verified.

With ``source`` (a local folder laid out like ``shared/data``) files are copied from there; without it they
are downloaded from the official sources (:mod:`qamrec.data.download`). Either way every file is written
under a temporary name and renamed, its SHA256 is checked against the registry when one is on record, and
the digest of what was written is recorded in ``raw/digests.json``. A dataset present only in part is taken
as far as it goes: missing optional files are named in the report, a missing required file is an error.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from qamrec.errors import DigestMismatchError, MissingDataError, QamrecError
from qamrec.io import atomic_path, atomic_write_json, read_json, sha256_file
from qamrec.data.registry import DatasetSpec, get_dataset

__all__ = ["FetchReport", "fetch", "fetched_digests", "read_manifest"]

Progress = Callable[[int, int], None]


class FetchReport(BaseModel):
    """What one fetch did."""

    dataset: str
    source: str
    copied: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    missing: dict[str, str] = Field(default_factory=dict)
    recorded: dict[str, str] = Field(default_factory=dict)


def _digests_path(raw_dir: Path) -> Path:
    return raw_dir / "digests.json"


def fetched_digests(raw_dir: Path) -> dict[str, str]:
    """The recorded ``{path: sha256}`` of every file fetched into ``raw_dir``."""
    p = _digests_path(raw_dir)
    return dict(read_json(p)) if p.exists() else {}


def _record(raw_dir: Path, digests: dict[str, str]) -> None:
    merged = fetched_digests(raw_dir) | digests
    atomic_write_json(_digests_path(raw_dir), merged)


def read_manifest(path: Path) -> dict[str, str]:
    """Parse a ``sha256sum``-style manifest into ``{file name: sha256}``."""
    from qamrec.errors import DataFormatError

    out: dict[str, str] = {}
    for i, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise DataFormatError(path, "malformed manifest line", line=i, expected="'<sha256>  <file name>'")
        out[name.strip()] = digest
    return out


def _copy_verified(src: Path, dst: Path, expected: str, known: str | None) -> tuple[str, bool]:
    """Copy ``src`` to ``dst`` atomically unless ``dst`` already holds it; return (digest, copied)."""
    if dst.exists() and known and dst.stat().st_size == src.stat().st_size:
        if (not expected or known == expected) and sha256_file(dst) == known:
            return known, False
    digest = sha256_file(src)
    if expected and digest != expected:
        raise DigestMismatchError(src, expected, digest)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
        if sha256_file(tmp) != digest:  # the source changed under us, or the copy went wrong
            raise QamrecError(f"{src}: file changed while it was being copied; run the fetch again")
    return digest, True


def _fetch_local(
    spec: DatasetSpec, source: Path, raw_dir: Path, verify: bool, progress: Progress | None
) -> FetchReport:
    if not source.is_dir():
        raise QamrecError(f"--from {source}: not a folder (expected one laid out like shared/data)")
    report = FetchReport(dataset=spec.name, source=str(source))
    known = fetched_digests(raw_dir)
    jobs: list[tuple[str, str]] = []  # (registry path, expected digest)
    for f in spec.files:
        if (source / f.path).is_file():
            jobs.append((f.path, f.sha256 if verify else ""))
        elif f.required:
            raise MissingDataError(
                f"{source / f.path}: required file of dataset '{spec.name}' is missing from --from {source}"
            )
        else:
            report.missing[f.path] = f.note or "not in the source folder"
    if spec.manifest is not None:
        manifest_path = source / spec.manifest
        folder = Path(spec.manifest).with_suffix("")  # posters.SHA256SUMS lists the files of posters/
        for name, digest in sorted(read_manifest(manifest_path).items()):
            rel = str(folder / name)
            if (source / rel).is_file():
                jobs.append((rel, digest if verify else ""))
            else:
                report.missing[rel] = "listed in the manifest but not in the source folder"
    new: dict[str, str] = {}
    for i, (rel, expected) in enumerate(jobs, 1):
        digest, copied = _copy_verified(source / rel, raw_dir / rel, expected, known.get(rel))
        (report.copied if copied else report.unchanged).append(rel)
        if known.get(rel) != digest:
            new[rel] = digest
        if progress is not None:
            progress(i, len(jobs))
    if new:
        _record(raw_dir, new)
    report.recorded = {
        k: v for k, v in new.items() if not spec.digest(k)
    }
    return report


def fetch(
    name: str,
    raw_dir: Path,
    *,
    source: Path | None = None,
    verify: bool = True,
    progress: Progress | None = None,
    progress_factory: Callable[[str, int | None], Callable[[int, int | None], None]] | None = None,
) -> FetchReport:
    """Fetch dataset ``name`` into ``raw_dir`` from ``source`` (a local folder) or the official sources.

    ``progress(done, total)`` reports files copied from ``source``; ``progress_factory(description, total)``
    makes a byte-progress callback for each download.
    """
    spec = get_dataset(name)
    raw_dir.mkdir(parents=True, exist_ok=True)
    if source is not None:
        return _fetch_local(spec, Path(source), raw_dir, verify, progress)
    from qamrec.data.download import fetch_remote

    written = fetch_remote(spec, raw_dir, verify=verify, progress_factory=progress_factory)
    report = FetchReport(dataset=name, source="official", copied=sorted(written))
    for f in spec.files:
        if f.path not in written and not (raw_dir / f.path).is_file():
            report.missing[f.path] = f.note or "not provided by the official sources"
    report.recorded = {k: v for k, v in written.items() if not spec.digest(k)}
    _record(raw_dir, written)
    return report
