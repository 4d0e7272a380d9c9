"""Atomic writes and digests.

Every artifact is written to a temporary name in its target folder and renamed into place, so a reader
never sees a half-written file and a killed process leaves at most a stray ``.<name>.tmp-<pid>-*`` file
behind. The writer's process id in that name lets :func:`remove_stale_tmp` tell such leftovers (their
process is gone) from files another process is still writing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

__all__ = [
    "sha256_file",
    "sha256_bytes",
    "atomic_path",
    "tmp_prefix",
    "stale_tmp",
    "remove_stale_tmp",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "write_parquet_atomic",
    "write_figure",
    "read_json",
    "iter_jsonl",
]

_CHUNK = 1 << 20
_TMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-")


def sha256_file(path: str | Path) -> str:
    """Hex SHA256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def tmp_prefix(name: str) -> str:
    """The prefix of this process's temporary files for a target called ``name``: ``.<name>.tmp-<pid>-``."""
    return f".{name}.tmp-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def stale_tmp(folder: str | Path, name: str | None = None) -> list[Path]:
    """The temporary files and folders in ``folder`` whose writing process no longer runs, sorted by name.

    Only names made with :func:`tmp_prefix` count (for target ``name`` only, if given).
    """
    folder = Path(folder)
    out = []
    for p in sorted(folder.iterdir()) if folder.is_dir() else ():
        m = _TMP.match(p.name)
        if m is not None and (name is None or m["name"] == name) and not _alive(int(m["pid"])):
            out.append(p)
    return out


def remove_stale_tmp(folder: str | Path, name: str | None = None) -> list[Path]:
    """Delete what :func:`stale_tmp` lists (what killed processes left half-written); returns it."""
    removed = stale_tmp(folder, name)
    for p in removed:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` if the block succeeds.

    On any exception the temporary file is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=tmp_prefix(target.name), dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | Path, obj: Any) -> None:
    atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_figure(fig: Any, target: str | Path, dpi: int = 100) -> None:
    """Lay out a matplotlib figure, write it as a PNG under a temporary name, rename it, close the figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


def write_parquet_atomic(df: pl.DataFrame, target: str | Path) -> None:
    with atomic_path(target) as tmp:
        df.write_parquet(tmp, compression="zstd", statistics=True)


def read_json(path: str | Path) -> Any:
    """Load a JSON file, turning a syntax or encoding error into a :class:`DataFormatError`."""
    from qamrec.errors import DataFormatError

    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError as e:
        raise DataFormatError(path, f"not valid UTF-8 at byte {e.start}", expected="UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"invalid JSON: {e.msg}", line=e.lineno, expected="a JSON document") from None
    except RecursionError:
        raise DataFormatError(path, "JSON nested too deeply", expected="a JSON document") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, parsed object)`` for each non-blank line of a JSON-lines file.

    A line that is not valid UTF-8 or not valid JSON raises a :class:`DataFormatError` naming the line.
    """
    from qamrec.errors import DataFormatError

    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataFormatError(path, f"not valid UTF-8 at column {e.start + 1}", line=i) from None
            try:
                yield i, json.loads(text)
            except json.JSONDecodeError as e:
                raise DataFormatError(
                    path, f"invalid JSON: {e.msg} at column {e.colno}", line=i, expected="one JSON value per line"
                ) from None
            except RecursionError:
                raise DataFormatError(path, "JSON nested too deeply", line=i,
                                      expected="one JSON value per line") from None
