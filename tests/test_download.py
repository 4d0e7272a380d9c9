"""Downloads: resume, retries, digests, atomicity, zip extraction. No internet: a local HTTP server only."""

from __future__ import annotations

import hashlib
import io
import re
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from qamrec.data.download import download, fetch_remote
from qamrec.data.registry import DatasetSpec, FileSpec, SourceSpec, registry
from qamrec.errors import DataFormatError, DigestMismatchError, MissingDataError, QamrecError

BODY = bytes(range(256)) * 400  # 102,400 bytes
BODY_SHA = hashlib.sha256(BODY).hexdigest()
FAST = {"timeout": 5.0, "backoff": 0.0}


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range: bytes=N-`` unless told to ignore it; can truncate or corrupt."""

    server: "Server"

    def log_message(self, *args: object) -> None:  # keep the test output quiet
        pass

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start, rng = 0, self.headers.get("Range")
        if rng and not srv.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))  # type: ignore[union-attr]
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if srv.corrupt:
            payload = bytes(b ^ 0x5A for b in payload)
        if srv.truncate_after is not None:
            payload = payload[: srv.truncate_after]  # announce it all, send part of it, hang up
        self.wfile.write(payload)
        self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.truncate_after: int | None = None
        self.corrupt = False
        self.ignore_range = False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def ranges(self, path: str) -> list[str | None]:
        return [r for p, r in self.requests if p == path]


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    srv.files["/data.bin"] = BODY
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def part_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


# ---------------------------------------------------------------------------------------------- download()


def test_plain_download_has_the_right_digest(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "data.bin"
    seen: list[tuple[int, int | None]] = []

    def progress(done: int, total: int | None) -> None:
        assert not dest.exists()  # while bytes arrive they go to the .part only
        seen.append((done, total))

    digest = download(server.url("/data.bin"), dest, sha256=BODY_SHA, progress=progress, **FAST)
    assert digest == BODY_SHA and dest.read_bytes() == BODY
    assert not part_of(dest).exists()
    assert seen[-1] == (len(BODY), len(BODY)) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_digest_mismatch_leaves_neither_dest_nor_part(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    with pytest.raises(DigestMismatchError) as info:
        download(server.url("/data.bin"), dest, sha256="0" * 64, **FAST)
    assert info.value.actual == BODY_SHA
    assert not dest.exists() and not part_of(dest).exists()


def test_corrupted_bytes_are_never_kept(server: Server, tmp_path: Path) -> None:
    server.corrupt = True
    dest = tmp_path / "data.bin"
    with pytest.raises(DigestMismatchError):
        download(server.url("/data.bin"), dest, sha256=BODY_SHA, **FAST)
    assert not dest.exists() and not part_of(dest).exists()
    server.corrupt = False  # the next try starts from scratch, not from the corrupt bytes
    assert download(server.url("/data.bin"), dest, sha256=BODY_SHA, **FAST) == BODY_SHA
    assert server.ranges("/data.bin") == [None, None]


def test_truncated_transfer_keeps_the_part_and_the_next_call_resumes(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    url = server.url("/data.bin")
    server.truncate_after = 10_000
    with pytest.raises(QamrecError, match=r"failed after 3 attempts.*received 30000 bytes") as info:
        download(url, dest, sha256=BODY_SHA, retries=2, **FAST)
    assert url in str(info.value)
    # each retry resumed where the last one stopped; the half-written file never appears under its name
    assert server.ranges("/data.bin") == [None, "bytes=10000-", "bytes=20000-"]
    assert part_of(dest).read_bytes() == BODY[:30_000]
    assert not dest.exists()

    server.truncate_after = None
    assert download(url, dest, sha256=BODY_SHA, **FAST) == BODY_SHA
    assert server.ranges("/data.bin")[-1] == "bytes=30000-"
    assert dest.read_bytes() == BODY and not part_of(dest).exists()


def test_truncated_transfer_is_retried_to_completion(server: Server, tmp_path: Path) -> None:
    server.truncate_after = 40_000
    dest = tmp_path / "data.bin"
    assert download(server.url("/data.bin"), dest, sha256=BODY_SHA, retries=3, **FAST) == BODY_SHA
    assert server.ranges("/data.bin") == [None, "bytes=40000-", "bytes=80000-"]


def test_server_ignoring_range_restarts_from_zero(server: Server, tmp_path: Path) -> None:
    server.ignore_range = True
    dest = tmp_path / "data.bin"
    part_of(dest).write_bytes(b"stale bytes that must not survive" * 100)
    assert download(server.url("/data.bin"), dest, sha256=BODY_SHA, **FAST) == BODY_SHA
    assert server.ranges("/data.bin") == [f"bytes={33 * 100}-"]  # asked to resume, got a 200
    assert dest.read_bytes() == BODY


def test_complete_part_answered_416_is_finished(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    part_of(dest).write_bytes(BODY)
    assert download(server.url("/data.bin"), dest, sha256=BODY_SHA, **FAST) == BODY_SHA
    assert server.ranges("/data.bin") == [f"bytes={len(BODY)}-"]
    assert dest.read_bytes() == BODY and not part_of(dest).exists()


def test_http_404_is_not_retried(server: Server, tmp_path: Path) -> None:
    with pytest.raises(QamrecError, match="404"):
        download(server.url("/nope"), tmp_path / "x", retries=3, **FAST)
    assert len(server.ranges("/nope")) == 1


def test_unreachable_server_fails_after_retries(tmp_path: Path) -> None:
    srv = Server()  # bound, then closed: nothing listens on that port any more
    url = srv.url("/data.bin")
    srv.server_close()
    with pytest.raises(QamrecError, match=r"failed after 2 attempts.*received 0 bytes"):
        download(url, tmp_path / "data.bin", retries=1, **FAST)
    assert not (tmp_path / "data.bin").exists()


# ------------------------------------------------------------------------------------------ fetch_remote()


def make_zip(members: dict[str, bytes], directories: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for d in directories:
            zf.writestr(zipfile.ZipInfo(d), b"")
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


A, B, C = b"alpha\n" * 1000, b"beta\n" * 10, b"outside the prefix\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_spec(url: str, files: tuple[FileSpec, ...], zip_sha: str = "") -> DatasetSpec:
    source = SourceSpec(url=url, sha256=zip_sha, archive="zip", strip="pkg-1.0/", dest="toy/pkg")
    return DatasetSpec(name="toy", description="a toy", license="MIT", files=files, sources=(source,))


@pytest.fixture
def toy(server: Server) -> tuple[Server, bytes]:
    archive = make_zip({"pkg-1.0/a.txt": A, "pkg-1.0/sub/b.txt": B, "other/c.txt": C}, ("pkg-1.0/", "pkg-1.0/sub/"))
    server.files["/toy.zip"] = archive
    return server, archive


def test_fetch_remote_extracts_verifies_and_reports_digests(toy: tuple[Server, bytes], tmp_path: Path) -> None:
    server, archive = toy
    files = (
        FileSpec(path="toy/pkg/a.txt", sha256=sha(A)),
        FileSpec(path="toy/pkg/sub/b.txt"),  # no digest on record: it is reported, to be recorded
        FileSpec(path="toy/pkg/extra.txt", required=False),
    )
    bars: list[str] = []

    def factory(description: str, total: int | None):
        bars.append(description)
        return lambda done, total: None

    written = fetch_remote(zip_spec(server.url("/toy.zip"), files, sha(archive)), tmp_path, progress_factory=factory)
    assert written == {"toy/pkg/a.txt": sha(A), "toy/pkg/sub/b.txt": sha(B)}
    assert (tmp_path / "toy/pkg/a.txt").read_bytes() == A and (tmp_path / "toy/pkg/sub/b.txt").read_bytes() == B
    assert not (tmp_path / "toy/pkg/other").exists() and not list(tmp_path.rglob("c.txt"))
    assert not list((tmp_path / ".downloads").iterdir())  # the archive is removed once extracted
    assert not list(tmp_path.rglob("*.tmp-*")) and bars == ["toy: toy.zip"]


def test_fetch_remote_member_digest_mismatch_names_the_file(toy: tuple[Server, bytes], tmp_path: Path) -> None:
    server, _ = toy
    files = (FileSpec(path="toy/pkg/a.txt", sha256="f" * 64),)
    with pytest.raises(DigestMismatchError, match="toy/pkg/a.txt"):
        fetch_remote(zip_spec(server.url("/toy.zip"), files), tmp_path)
    assert not (tmp_path / "toy/pkg/a.txt").exists()
    assert not list(tmp_path.rglob("*.tmp-*"))


def test_fetch_remote_archive_digest_mismatch(toy: tuple[Server, bytes], tmp_path: Path) -> None:
    server, _ = toy
    with pytest.raises(DigestMismatchError):
        fetch_remote(zip_spec(server.url("/toy.zip"), (), zip_sha="0" * 64), tmp_path)
    assert not (tmp_path / "toy").exists() and not list(tmp_path.rglob("*.part"))
    # verify=False takes what the server has
    assert fetch_remote(zip_spec(server.url("/toy.zip"), (), zip_sha="0" * 64), tmp_path, verify=False)


def test_fetch_remote_missing_required_file(toy: tuple[Server, bytes], tmp_path: Path) -> None:
    server, _ = toy
    files = (FileSpec(path="toy/pkg/a.txt"), FileSpec(path="toy/pkg/needed.txt"))
    with pytest.raises(MissingDataError, match="toy/pkg/needed.txt") as info:
        fetch_remote(zip_spec(server.url("/toy.zip"), files), tmp_path)
    assert "toy/pkg/a.txt" in info.value.written  # type: ignore[attr-defined]
    (tmp_path / "toy/pkg/needed.txt").write_text("copied from a local folder earlier")
    assert "toy/pkg/a.txt" in fetch_remote(zip_spec(server.url("/toy.zip"), files), tmp_path)


@pytest.mark.parametrize("evil", ["pkg-1.0/../../evil.txt", "/tmp/evil.txt", "pkg-1.0/..\\..\\evil.txt"])
def test_fetch_remote_refuses_zip_slip(server: Server, tmp_path: Path, evil: str) -> None:
    server.files["/evil.zip"] = make_zip({"pkg-1.0/a.txt": A, evil: b"pwned"})
    root = tmp_path / "raw"
    with pytest.raises(DataFormatError, match="zip slip"):
        fetch_remote(zip_spec(server.url("/evil.zip"), ()), root)
    assert not list(tmp_path.rglob("evil.txt")) and not (root / "toy").exists()  # nothing at all was written


def test_fetch_remote_plain_file(server: Server, tmp_path: Path) -> None:
    source = SourceSpec(url=server.url("/data.bin"), path="plain/data.bin")
    spec = DatasetSpec(
        name="plain", description="d", license="l", files=(FileSpec(path="plain/data.bin", sha256=BODY_SHA),),
        sources=(source,),
    )
    assert fetch_remote(spec, tmp_path) == {"plain/data.bin": BODY_SHA}
    assert fetch_remote(spec, tmp_path) == {"plain/data.bin": BODY_SHA}  # already here: not downloaded again
    assert len(server.ranges("/data.bin")) == 1


def test_fetch_remote_refuses_unsafe_sources(tmp_path: Path) -> None:
    for source in (
        SourceSpec(url="http://example.org/x.zip", archive="zip", dest="x"),
        SourceSpec(url="https://example.org/x", path="../x"),
        SourceSpec(url="https://example.org/x.zip", archive="zip", dest="/etc"),
    ):
        spec = DatasetSpec(name="bad", description="d", license="l", files=(), sources=(source,))
        with pytest.raises(QamrecError):
            fetch_remote(spec, tmp_path)
    no_source = DatasetSpec(name="local", description="d", license="l", files=(), note="local only")
    with pytest.raises(QamrecError, match="local only.*--from"):
        fetch_remote(no_source, tmp_path)


# ------------------------------------------------------------------------------------------- the registry


def test_every_dataset_has_https_sources_or_a_note() -> None:
    for name, spec in registry().items():
        assert spec.sources or spec.note, f"{name}: no sources and no note saying why"
        targets = []
        for source in spec.sources:
            assert urlsplit(source.url).scheme == "https" and urlsplit(source.url).netloc, source.url
            assert source.note, f"{name}: {source.url} has no note saying where it comes from"
            if source.archive == "zip":
                assert source.dest and not source.path, source.url
                targets.append(source.dest + "/")
            else:
                assert source.path and not (source.strip or source.dest), source.url
                targets.append(source.path)
        assert len(targets) == len(set(targets)), f"{name}: two sources write the same place"
        if not spec.sources:
            continue  # the note says why there is none
        uncovered = [
            f.path for f in spec.files if f.required and not any(f.path == t or f.path.startswith(t) for t in targets)
        ]
        for path in uncovered:  # fetch_remote will name these as missing: the note must explain them
            assert path in spec.note, f"{name}: {path} has no source; the dataset note must say so"
