"""The service's guards, as pure ASGI middleware: the API key, the request-body limit and admission control.

* :class:`AccessGuard`: with ``serve.api_key`` set, every route but ``/health`` needs the key, in the
  ``X-API-Key`` header or the same-site cookie ``qamrec_api_key``. A browser gets the cookie by opening the page
  once as ``/?api_key=KEY``: the answer sets it (HttpOnly, SameSite=Strict) and redirects to ``/`` without the key.
* :class:`BodyLimit`: bodies over ``serve.max_body_bytes`` get 413, whether the request declares a
  ``Content-Length`` or streams the body in chunks (then the bytes are counted as they arrive); a body that is
  not UTF-8 gets 400.
* :class:`AdmissionLimit`: at most ``serve.max_inflight`` requests of one worker process run at once, at most
  ``serve.max_queue`` more wait for a slot, each at most ``serve.queue_timeout`` seconds; any other request is
  answered at once with 503 and a ``Retry-After`` header instead of queueing without bound. ``/health`` is exempt.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

__all__ = ["AccessGuard", "BodyLimit", "AdmissionLimit", "API_KEY_COOKIE", "API_KEY_PARAM", "EXEMPT_PATHS"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: the cookie that carries the key for the page (and the poster images it loads)
API_KEY_COOKIE = "qamrec_api_key"
#: the query parameter of the page that sets that cookie once
API_KEY_PARAM = "api_key"
#: paths that need no key and are never refused for load
EXEMPT_PATHS = frozenset({"/health"})

_KEY_PAGE = (
    "<!doctype html><meta charset='utf-8'><title>qamrec: API key needed</title>"
    "<p>This service needs an API key. Open <code>/?api_key=YOUR_KEY</code> once: the page keeps it in a "
    "same-site cookie.</p>"
)


def _matches(given: str | None, key: bytes) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), key)


class AccessGuard:
    """Require ``api_key`` on every route but ``/health`` (header ``X-API-Key`` or cookie ``qamrec_api_key``)."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app, self.key = app, api_key.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        response = self._check(scope)
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    def _check(self, scope: Scope) -> Response | None:
        """None when the request may pass, else the answer to send instead."""
        headers = Headers(scope=scope)
        page = scope["path"] == "/"
        if page and scope.get("query_string"):
            query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            keys = [v for k, v in query if k == API_KEY_PARAM]
            if keys:
                if not _matches(keys[-1], self.key):
                    return HTMLResponse(_KEY_PAGE, status_code=401)
                rest = urlencode([(k, v) for k, v in query if k != API_KEY_PARAM])
                target = scope.get("root_path", "") + "/" + (f"?{rest}" if rest else "")
                redirect = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
                redirect.set_cookie(API_KEY_COOKIE, self.key.decode("utf-8"), httponly=True, samesite="strict",
                                    path="/", secure=scope.get("scheme") == "https")
                return redirect
        cookie = cookie_parser(headers.get("cookie", "")).get(API_KEY_COOKIE)
        candidates = (headers.get("x-api-key"), cookie, unquote(cookie) if cookie else None)
        if any(_matches(c, self.key) for c in candidates):  # noqa: SIM110 (each comparison constant-time)
            return None
        if page:
            return HTMLResponse(_KEY_PAGE, status_code=401)
        return JSONResponse({"detail": "missing or wrong X-API-Key"}, status_code=401)


class BodyLimit:
    """413 for a body over ``max_bytes``, by its ``Content-Length`` or counted while a chunked body arrives;
    400 for a body that is not UTF-8. The body (at most ``max_bytes``) is read here and handed on in one piece."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _too_large(self) -> JSONResponse:
        return JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, status_code=413,
                            headers={"Connection": "close"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = Headers(scope=scope).get("content-length")
        if size is not None and (not size.isdigit() or int(size) > self.max_bytes):
            await self._too_large()(scope, receive, send)
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:  # a chunked body (a declared length was checked above)
                await self._too_large()(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False
        try:
            body.decode("utf-8")  # strict: no lone surrogates either (json.loads would let those through)
        except UnicodeDecodeError as e:
            await JSONResponse({"detail": f"request body is not valid UTF-8 (byte {e.start})"},
                               status_code=400)(scope, receive, send)
            return

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class _Gate:
    """The slots of one event loop: ``inflight`` running, at most ``queue`` waiting up to ``timeout`` s each."""

    def __init__(self, inflight: int, queue: int, timeout: float) -> None:
        self.slots = asyncio.Semaphore(inflight)
        self.queue, self.timeout = queue, timeout
        self.waiting = 0

    async def enter(self) -> bool:
        """Take a slot (True), or give up at once when the queue is full or after the timeout (False)."""
        if not self.slots.locked():
            await self.slots.acquire()  # free: returns at once
            return True
        if self.waiting >= self.queue:
            return False
        self.waiting += 1
        try:
            await asyncio.wait_for(self.slots.acquire(), self.timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1

    def leave(self) -> None:
        self.slots.release()


class AdmissionLimit:
    """Bounded concurrency per worker process: 503 + ``Retry-After`` rather than an unbounded queue."""

    def __init__(self, app: ASGIApp, max_inflight: int, max_queue: int, queue_timeout: float,
                 retry_after: int = 1) -> None:
        self.app = app
        self.max_inflight, self.max_queue, self.queue_timeout = max_inflight, max_queue, queue_timeout
        self.retry_after = retry_after
        self._loop: asyncio.AbstractEventLoop | None = None
        self._current: _Gate | None = None

    def _gate(self) -> _Gate:
        """The gate of the running event loop (a server has one; test clients may start a new one each)."""
        loop = asyncio.get_running_loop()
        if self._current is None or self._loop is not loop:
            self._loop, self._current = loop, _Gate(self.max_inflight, self.max_queue, self.queue_timeout)
        return self._current

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        gate = self._gate()
        if not await gate.enter():
            busy = JSONResponse(
                {"detail": f"overloaded: more than {self.max_inflight} requests running and {self.max_queue} "
                           f"waiting; retry after {self.retry_after} s"},
                status_code=503, headers={"Retry-After": str(self.retry_after)})
            await busy(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            gate.leave()
