"""Download datasets from their official sources over HTTP(S), resumably and verified.

:func:`download` streams one URL to ``<dest>.part``, resumes a partial ``.part`` with an HTTP ``Range``
request, retries connection errors and truncated transfers, checks the SHA256 and renames the ``.part``
onto ``dest``: ``dest`` either does not exist or is complete. :func:`fetch_remote` fetches every
:class:`~qamrec.data.registry.SourceSpec` of a dataset, extracts zip archives (refusing members that would
land outside their folder) and checks each file against the digest on record. Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import ssl
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from qamrec import __version__
from qamrec.data.registry import DatasetSpec, SourceSpec
from qamrec.errors import DataFormatError, DigestMismatchError, MissingDataError, QamrecError
from qamrec.io import atomic_path, sha256_file

__all__ = ["Progress", "ProgressFactory", "download", "fetch_remote"]

#: ``progress(bytes_done, total_bytes_or_None)``
Progress = Callable[[int, int | None], None]
#: ``factory(description, total_bytes_or_None) -> progress``, e.g. one rich progress bar per download
ProgressFactory = Callable[[str, int | None], Progress]

_CHUNK = 1 << 16
_USER_AGENT = f"qamrec/{__version__} (+dataset fetch)"
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-\d+/(\d+|\*)")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}  # a local mirror or a test server may use plain http
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")
#: failures worth another attempt: refused, reset, timed out, DNS, TLS, IncompleteRead...
_TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ssl.SSLError)


class _Retry(Exception):
    """An attempt failed in a way the next attempt may fix."""


def _attempt(url: str, part: Path, timeout: float, progress: Progress | None) -> None:
    """One request: append to ``part`` (or restart it); return when it holds the whole body."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: complete if the server says the size is ours
            m = _UNSATISFIED_RANGE.match(e.headers.get("Content-Range") or "")
            e.close()
            if m is not None and int(m.group(1)) == offset:
                return
            part.unlink(missing_ok=True)  # bigger than the file, or size unknown: start over
            raise _Retry(f"HTTP 416 for a partial download of {offset} bytes") from None
        e.close()
        if e.code in _RETRYABLE_STATUS:
            raise _Retry(f"HTTP {e.code} {e.reason}") from None
        raise QamrecError(f"{url}: HTTP {e.code} {e.reason}") from None
    with resp:
        if resp.status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range") or "")
            if m is None or int(m.group(1)) != offset:
                part.unlink(missing_ok=True)
                raise _Retry(f"server resumed with Content-Range {m and m.group(0)!r}, not at byte {offset}")
            total, mode = (None if m.group(2) == "*" else int(m.group(2))), "ab"
        else:  # 200: the server ignored the Range header (or there was none); start from byte 0
            length = resp.headers.get("Content-Length")
            total, offset, mode = (int(length) if length else None), 0, "wb"
        done = offset
        if progress is not None:
            progress(done, total)
        with open(part, mode) as f:
            while chunk := resp.read(_CHUNK):
                f.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            f.flush()
            os.fsync(f.fileno())
    if total is not None and done < total:
        raise _Retry(f"transfer truncated at {done} of {total} bytes")  # keep the .part: the next try resumes
    if total is not None and done > total:
        part.unlink(missing_ok=True)
        raise _Retry(f"received {done} bytes, more than the {total} announced")


def download(
    url: str,
    dest: Path,
    *,
    sha256: str = "",
    timeout: float = 60.0,
    retries: int = 3,
    progress: Progress | None = None,
    backoff: float = 1.0,
) -> str:
    """Download ``url`` to ``dest`` atomically and return the hex SHA256 of what was written.

    The body is streamed to ``dest.name + ".part"``; a ``.part`` left by an earlier call is resumed with
    a ``Range`` request (a server that answers 200 instead of 206 is read from byte 0). Connection errors,
    timeouts, 5xx answers and truncated transfers are retried ``retries`` times, ``backoff * 2**i`` seconds
    apart, each retry resuming what the last one received. When the transfer is complete the ``.part`` is
    hashed; if ``sha256`` is given and differs, the ``.part`` is deleted (a corrupt file is never resumed
    or used) and :class:`~qamrec.errors.DigestMismatchError` is raised. Otherwise it is fsynced and renamed
    onto ``dest``, so ``dest`` either does not exist or is complete.

    Raises:
        DigestMismatchError: the downloaded bytes do not have the expected digest.
        QamrecError: a non-retryable HTTP error, or every attempt failed (the ``.part`` is kept).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(backoff * 2 ** (attempt - 1), 30.0))
        try:
            _attempt(url, part, timeout, progress)
        except _Retry as e:
            last_error = str(e)
            continue
        except QamrecError:
            raise
        except _TRANSIENT as e:
            last_error = f"{type(e).__name__}: {e}"
            continue
        digest = sha256_file(part)
        if sha256 and digest != sha256.lower():
            part.unlink(missing_ok=True)
            raise DigestMismatchError(f"{dest} (from {url})", sha256, digest)
        os.replace(part, dest)
        _fsync_dir(dest.parent)
        return digest
    received = part.stat().st_size if part.exists() else 0
    raise QamrecError(
        f"{url}: download failed after {retries + 1} attempts ({last_error}); received {received} bytes"
        + (f", kept in {part} so the next fetch resumes it" if received else "")
    )


def _fsync_dir(folder: Path) -> None:
    """Persist a rename (best effort: not every platform can open a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _safe_relative(name: str) -> PurePosixPath | None:
    """``name`` as a relative path that stays inside its folder, or ``None`` (absolute, ``..``, drive)."""
    posix = name.replace("\\", "/")
    path = PurePosixPath(posix)
    if not posix or path.is_absolute() or re.match(r"^[A-Za-z]:", posix) or ".." in path.parts:
        return None
    return path


def _join(folder: str, rel: PurePosixPath | str) -> str:
    return str(PurePosixPath(folder) / rel) if folder else str(rel)


def _extract_zip(
    spec: DatasetSpec, source: SourceSpec, archive: Path, raw_dir: Path, verify: bool
) -> dict[str, str]:
    """Extract the members of ``archive`` under ``source.strip`` to ``raw_dir/source.dest``, atomically.

    Every member name is checked before anything is written: one with an absolute path, a drive letter or
    a ``..`` component (a "zip slip") makes the whole archive refused.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        archive.unlink(missing_ok=True)
        raise DataFormatError(archive, f"not a zip archive ({e}); it was deleted", expected="a zip file") from None
    with zf:
        plan: list[tuple[zipfile.ZipInfo, str]] = []
        for info in zf.infolist():
            rel = _safe_relative(info.filename)
            if rel is None:
                raise DataFormatError(
                    archive,
                    f"member '{info.filename}' has an absolute path or a '..' component (zip slip); "
                    "refusing to extract the archive",
                    expected="relative member names",
                )
            if info.is_dir() or rel.parts[0] == "__MACOSX" or not info.filename.startswith(source.strip):
                continue
            inner = info.filename[len(source.strip) :].lstrip("/")
            if inner:
                plan.append((info, _join(source.dest, inner)))
        written: dict[str, str] = {}
        for info, path in plan:
            expected = spec.digest(path) if verify else ""
            with atomic_path(raw_dir / path) as tmp:
                h = hashlib.sha256()
                with zf.open(info) as src, open(tmp, "wb") as out:  # zipfile checks the CRC at the end
                    while chunk := src.read(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
                digest = h.hexdigest()
                if expected and digest != expected:  # raised inside the block: the target is left untouched
                    raise DigestMismatchError(path, expected, digest)
            written[path] = digest
    return written


def _check_source(spec: DatasetSpec, source: SourceSpec) -> None:
    """Refuse a registry source that is not HTTPS, would write outside the data root or contradicts a file."""
    where = f"dataset '{spec.name}', source {source.url}"
    url = urlsplit(source.url)
    if url.scheme != "https" and not (url.scheme == "http" and url.hostname in _LOOPBACK):
        raise QamrecError(f"{where}: only https:// sources are allowed (plain http only on this machine)")
    if source.archive == "none":
        ok = _safe_relative(source.path) is not None
    else:
        ok = (not source.dest or _safe_relative(source.dest) is not None) and ".." not in source.strip
    if not ok:
        raise QamrecError(f"{where}: unsafe path, dest or strip (absolute, or with '..')")
    on_record = spec.digest(source.path) if source.archive == "none" else ""
    if source.sha256 and on_record and source.sha256 != on_record:
        raise QamrecError(f"{where}: sha256 {source.sha256} contradicts {source.path}'s {on_record}")


def fetch_remote(
    spec: DatasetSpec,
    raw_dir: Path,
    *,
    verify: bool = True,
    progress_factory: ProgressFactory | None = None,
) -> dict[str, str]:
    """Download every official source of ``spec`` into ``raw_dir``; return ``{registry path: sha256}``.

    A ``zip`` source is downloaded to ``raw_dir/.downloads/<basename>``, its members under ``strip`` are
    written to ``raw_dir/dest/<member minus strip>`` and the archive is deleted; a plain source is saved to
    ``raw_dir/path``. Each file with a digest in ``spec.files`` is checked before it replaces anything
    (``verify=False`` skips every digest check, sources included). The result names everything written,
    so digests that were not on record can be recorded by the caller.

    Raises:
        MissingDataError: a ``required`` file of ``spec`` was provided by no source and is not already in
            ``raw_dir``; its ``written`` attribute holds the result so far.
        DigestMismatchError, QamrecError: as :func:`download`, or for an unsafe archive member.
    """
    if not spec.sources:
        raise QamrecError(
            f"dataset '{spec.name}' has no official download source"
            + (f" ({spec.note})" if spec.note else "") + "; fetch it from a local copy with --from DIR"
        )
    for source in spec.sources:
        _check_source(spec, source)
    raw_dir = Path(raw_dir)
    written: dict[str, str] = {}
    for source in spec.sources:
        name = PurePosixPath(urlsplit(source.url).path).name or "download"
        progress = progress_factory(f"{spec.name}: {name}", None) if progress_factory else None
        if source.archive == "zip":
            archive = raw_dir / ".downloads" / name
            download(source.url, archive, sha256=source.sha256 if verify else "", progress=progress)
            written |= _extract_zip(spec, source, archive, raw_dir, verify)
            archive.unlink(missing_ok=True)
            continue
        expected = (source.sha256 or spec.digest(source.path)) if verify else ""
        dest = raw_dir / source.path
        if expected and dest.is_file() and sha256_file(dest) == expected:
            written[source.path] = expected  # already here and verified: nothing to download
            continue
        written[source.path] = download(source.url, dest, sha256=expected, progress=progress)
    missing = [
        f.path for f in spec.files if f.required and f.path not in written and not (raw_dir / f.path).is_file()
    ]
    if missing:
        err = MissingDataError(
            f"dataset '{spec.name}': no official source provides {', '.join(missing)}"
            + (f" ({spec.note})" if spec.note else "") + "; copy them from a local folder with --from DIR"
        )
        err.written = written  # type: ignore[attr-defined]
        raise err
    return written
