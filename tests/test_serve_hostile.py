"""Hostile input and overload: chunked bodies over the limit, deep JSON, invalid UTF-8, huge numbers, SQL
metacharacters, path traversal, and the 503 + Retry-After answer of an overloaded worker."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from qamrec.config import ServeConfig
from qamrec.serve.app import create_app
from qamrec.serve.limits import AdmissionLimit, BodyLimit
from qamrec.serve.store import SQLiteStore

JSON = {"content-type": "application/json"}
SQL = ["'; DROP TABLE sessions; --", '" OR "1"="1', "Robert'); DROP TABLE messages;--", "%_\\ LIKE '%'",
       "' UNION SELECT id, target, value FROM feedback --", "a\x00b", "🎬 ünïcödé ; -- /* */"]
TRAVERSAL = [
    "/posters/..%2F..%2Fetc%2Fpasswd", "/posters/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/posters/....//....//etc/passwd",
    "/posters/%2Fetc%2Fpasswd", "/posters/..%5c..%5capp.py", "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/static/..%252f..%252fetc%252fpasswd", "/static//etc/passwd",
    "/static/%2fetc%2fpasswd", "/static/..%2fapp.py", "/static/%2e%2e%2fapp.py", "/static/..%5capp.py",
    "/static/../app.py", "/static/.%2e/app.py", "/static/%2e%2e%2f%2e%2e%2fconfig.py", "/static/app.js%00.py",
]


# ---------------------------------------------------------------- admission control, on a dummy app (fast)


def _slow_app(seconds: float) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(seconds)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


async def _fire(app: Any, paths: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        return list(await asyncio.gather(*(c.get(p) for p in paths)))


def test_admission_refuses_beyond_the_queue_with_retry_after() -> None:
    app = AdmissionLimit(_slow_app(0.3), max_inflight=2, max_queue=3, queue_timeout=10, retry_after=7)
    answers = asyncio.run(_fire(app, ["/recommend"] * 9 + ["/health"] * 3))
    codes = [r.status_code for r in answers]
    assert codes[:9].count(200) == 5 and codes[:9].count(503) == 4  # 2 running + 3 queued; 4 refused at once
    assert codes[9:] == [200] * 3  # /health is never refused
    refused = [r for r in answers if r.status_code == 503]
    assert all(r.headers["retry-after"] == "7" and "overloaded" in r.json()["detail"] for r in refused)


def test_admission_gives_up_after_the_queue_timeout() -> None:
    app = AdmissionLimit(_slow_app(0.5), max_inflight=1, max_queue=10, queue_timeout=0.1, retry_after=1)
    t = time.perf_counter()
    codes = sorted(r.status_code for r in asyncio.run(_fire(app, ["/x"] * 4)))
    assert codes == [200, 503, 503, 503] and time.perf_counter() - t < 5
    # the slots are all free again: one at a time is always admitted
    assert [r.status_code for r in asyncio.run(_fire(app, ["/x"]))] == [200]


def test_chunked_body_over_the_limit_is_counted() -> None:
    async def echo(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})

    app = BodyLimit(echo, max_bytes=2048)

    async def post(chunks: list[bytes], headers: dict[str, str] | None = None) -> httpx.Response:
        async def gen() -> Any:
            for c in chunks:
                yield c
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.post("/", content=gen(), headers=headers)

    ok = asyncio.run(post([b"x" * 1000, b"y" * 1000]))
    assert ok.status_code == 200 and ok.text == "2000"  # the body reaches the app whole
    assert asyncio.run(post([b"x" * 1000] * 3)).status_code == 413
    assert asyncio.run(post([b"x"], {"content-length": "999999"})).status_code == 413
    assert asyncio.run(post([b"x"], {"content-length": "-1"})).status_code == 413
    assert asyncio.run(post([b'{"a": "\xff"}'])).status_code == 400  # not UTF-8
    assert asyncio.run(post([b'{"a": "\xed\xa0', b'\x80"}'])).status_code == 400  # a UTF-8-encoded surrogate


# ---------------------------------------------------------------- the real app on the small model


@pytest.fixture()
def client(small_engine, tmp_path: Path) -> Iterator[TestClient]:
    store = SQLiteStore(tmp_path / "h.sqlite3")
    with TestClient(create_app(small_engine, store)) as c:
        c.store = store  # type: ignore[attr-defined]
        yield c


@pytest.mark.slow
def test_chunked_and_declared_bodies_over_the_limit_get_413(client: TestClient) -> None:
    big = [b'{"query": "', b"x" * 40000, b"y" * 40000, b'"}']
    assert client.post("/recommend", content=iter(big), headers=JSON).status_code == 413
    assert client.post("/recommend", content=b"".join(big), headers=JSON).status_code == 413
    small = client.post("/recommend", content=iter([b'{"query": ', b'"a scary movie", "k": 3}']), headers=JSON)
    assert small.status_code == 200 and len(small.json()["movies"]) == 3


@pytest.mark.slow
def test_deep_json_invalid_utf8_and_huge_numbers(small_engine, tmp_path: Path, client: TestClient) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert client.post("/recommend", content=deep, headers=JSON).status_code == 413  # 200 kB: over the limit
    roomy = ServeConfig(max_body_bytes=1_000_000)
    with TestClient(create_app(small_engine, SQLiteStore(tmp_path / "d.sqlite3"), roomy)) as c:
        for body in (deep, b"[" * 100_000, b'{"query": ' + deep + b"}", b'{"query": "x", "liked": ' + deep + b"}"):
            assert c.post("/recommend", content=body, headers=JSON).status_code in (400, 422)
        sid = c.post("/sessions").json()["id"]
        assert c.post(f"/sessions/{sid}/messages", content=deep, headers=JSON).status_code in (400, 422)
    assert client.post("/recommend", content=b"[" * 30_000, headers=JSON).status_code in (400, 422)
    for raw in (b'{"query": "\xff\xfe"}', b'{"query": "caf\xe9"}', b"\xc3\x28", b'{"query": "\xed\xa0\x80"}'):
        assert client.post("/recommend", content=raw, headers=JSON).status_code == 400
    assert client.post("/recommend", content=b'{"query": "a\\ud800b"}', headers=JSON).status_code == 422
    for k in ("1" + "0" * 40, "1e400", "-1", "NaN", "Infinity", "100.5", "true", '"10"x'):
        r = client.post("/recommend", content=b'{"query": "x", "k": ' + k.encode() + b"}", headers=JSON)
        assert r.status_code in (400, 422), (k, r.status_code)
    sid = client.post("/sessions").json()["id"]
    for body in ({"movie_id": 10**30, "value": "liked"}, {"suggestion_id": 2**53, "value": "accepted"},
                 {"movie_id": -5, "value": "liked"}, {"movie_id": 1, "value": "liked", "k": 10**9}):
        assert client.post(f"/sessions/{sid}/feedback", json=body).status_code == 422


@pytest.mark.slow
def test_sql_metacharacters_are_stored_and_returned_verbatim(client: TestClient) -> None:
    store: SQLiteStore = client.store  # type: ignore[attr-defined]
    sid = client.post("/sessions").json()["id"]
    for text in SQL:
        assert client.post(f"/sessions/{sid}/messages", json={"text": text, "k": 2}).status_code == 200
    first = client.post(f"/sessions/{sid}/messages", json={"text": "x"}).json()
    movie = first["movies"][0]["id"]
    assert client.post(f"/sessions/{sid}/feedback", json={"movie_id": movie, "value": "seen"}).status_code == 200
    state = client.get(f"/sessions/{sid}").json()
    assert [m["text"] for m in state["messages"] if m["role"] == "user"] == [*SQL, "x"]
    replies = [m["text"] for m in state["messages"] if m["role"] == "system"]
    assert len(replies) == len(SQL) + 2 and all(replies)  # one per message and one for the feedback
    assert not any(x in r for r in replies for x in ("DROP TABLE", "UNION SELECT", "\x00"))  # never echoed
    assert [(f["target"], f["value"]) for f in state["feedback"]] == [(f"movie:{movie}", "seen")]
    assert store.count("sessions") >= 1 and store.count("messages") == 2 * (len(SQL) + 1) + 1  # no table dropped
    for text in SQL:
        r = client.post("/recommend", json={"query": text, "k": 2})
        assert r.status_code == 200
        bad = client.post("/recommend", json={"query": "x", "liked": [text]})
        assert bad.status_code == 422 and bad.json()["title"] == text  # the unknown title, verbatim
    for sid_ in ("x' OR '1'='1", "1%27%20OR%201%3D1", "a;DROP TABLE sessions", "a" * 65):
        assert client.get(f"/sessions/{sid_}").status_code in (404, 422)
    assert client.get("/sessions/no_such_session").status_code == 404


def _outside(text: str) -> bool:
    return "root:" in text or "def create_app" in text or "class ServeConfig" in text or "from __future__" in text


@pytest.mark.slow
def test_path_traversal_never_leaves_the_folders(client: TestClient, live_server_url: str) -> None:
    for path in TRAVERSAL:
        r = client.get(path)
        assert r.status_code in (404, 422) and not _outside(r.text), (path, r.status_code)
    # the same requests byte for byte over a real socket (a client library may normalise the path)
    where = urlsplit(live_server_url)
    for path in [*TRAVERSAL, "/static/../../../../etc/passwd", "/static/..\\..\\app.py", "//etc/passwd",
                 "/static/" + "../" * 20 + "etc/passwd"]:
        conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read().decode("utf-8", "replace")
        finally:
            conn.close()
        assert r.status in (400, 404, 422) and not _outside(body), (path, r.status)
    assert client.get("/static/app.js").status_code == 200  # the folder itself is served


@pytest.mark.slow
def test_chunked_body_over_the_limit_on_a_real_socket(live_server_url: str) -> None:
    where = urlsplit(live_server_url)

    def post(chunks: list[bytes]) -> int:
        with socket.create_connection((where.hostname, where.port), timeout=30) as s:
            s.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            with contextlib.suppress(OSError):  # the server may answer and close before the last chunk
                for c in chunks:
                    s.sendall(b"%x\r\n%s\r\n" % (len(c), c))
                s.sendall(b"0\r\n\r\n")
            head = s.recv(4096).split(b"\r\n", 1)[0]
        return int(head.split()[1])

    assert post([b'{"query": "', b"x" * 30000, b"x" * 30000, b"x" * 30000, b'"}']) == 413
    assert post([b'{"query": ', b'"a funny movie"}']) == 200


# ---------------------------------------------------------------- the overloaded service, for real


@pytest.mark.slow
def test_overloaded_service_answers_503_with_retry_after(small_engine, serve_app, tmp_path: Path) -> None:
    slow = copy.copy(small_engine)
    real = small_engine.recommend

    def recommend(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.8)
        return real(*args, **kwargs)

    slow.recommend = recommend  # type: ignore[method-assign]
    settings = ServeConfig(max_inflight=1, max_queue=1, queue_timeout=30, retry_after=3)
    with serve_app(create_app(slow, SQLiteStore(tmp_path / "o.sqlite3"), settings)) as url:
        codes: list[tuple[int, str | None]] = []
        lock = threading.Lock()

        def call() -> None:
            r = httpx.post(url + "/recommend", json={"query": "a scary movie", "k": 3}, timeout=60)
            with lock:
                codes.append((r.status_code, r.headers.get("retry-after")))

        threads = [threading.Thread(target=call) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        assert httpx.get(url + "/health", timeout=10).status_code == 200  # exempt, even now
        for t in threads:
            t.join()
    ok = [c for c in codes if c[0] == 200]
    refused = [c for c in codes if c[0] == 503]
    assert len(ok) + len(refused) == 6 and len(ok) >= 2 and refused  # one ran, one waited, the rest refused
    assert all(retry == "3" for _, retry in refused)
