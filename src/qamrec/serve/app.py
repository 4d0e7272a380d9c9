"""The HTTP service (FastAPI): one-shot recommendations, conversations with feedback, movies, posters, the page.

Everything a client sends is validated by the schemas of :mod:`qamrec.serve.schemas`; an unknown id is a 404,
a malformed body a 422 (400 when it is not JSON in UTF-8 at all), an oversized one a 413, and a title the catalog
cannot resolve a 422 that lists the closest titles. The guards of :mod:`qamrec.serve.limits` check the API key
and the body size and, when a worker is overloaded, answer 503 with ``Retry-After`` instead of queueing. The
engine is loaded before the app is made, so a request is one query encoding, one pooling step and one scoring
pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from qamrec.config import ServeConfig
from qamrec.models.query import context_text
from qamrec.serve.conversation import Conversation, Event
from qamrec.serve.engine import Engine, Feedback, Result, UnknownTitleError
from qamrec.serve.limits import AccessGuard, AdmissionLimit, BodyLimit
from qamrec.serve.schemas import (
    ERROR_RESPONSES,
    SESSION_ID_PATTERN,
    FeedbackAck,
    FeedbackRequest,
    Health,
    MessageRequest,
    Movie,
    MovieFeedback,
    Recommendations,
    RecommendRequest,
    SessionCreated,
    SessionState,
)
from qamrec.serve.reply import Reply, ReplyBuilder
from qamrec.serve.store import SessionStore

__all__ = ["create_app", "load_engine", "app_from_env", "WEB_DIR", "PLACEHOLDER_SVG", "RUN_ENV", "SET_ENV",
           "SessionId"]

#: how ``qamrec serve`` tells its worker processes what to load (see :func:`app_from_env`)
RUN_ENV, SET_ENV = "QAMREC_SERVE_RUN", "QAMREC_SERVE_SET"

WEB_DIR = Path(__file__).parent / "web"
PLACEHOLDER_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="150" height="224" viewBox="0 0 150 224">'
    '<rect width="150" height="224" fill="#2b2f3a"/><text x="75" y="118" font-family="sans-serif" font-size="14" '
    'fill="#9aa3b5" text-anchor="middle">no poster</text></svg>'
)

#: a session id in a path: URL-safe, at most 64 characters (anything else is a 422)
SessionId = Annotated[str, PathParam(pattern=SESSION_ID_PATTERN, max_length=64, examples=["Z3x9_fh2Lq0aB1cD"])]


def _recommendations(engine: Engine, result: Result, resolved: dict[str, int] | None = None, round_: int = 0,
                     suggestion_ids: list[int] | None = None, reply: Reply | None = None) -> Recommendations:
    movies = [Movie(**{k: v for k, v in m.items() if k != "has_poster"},
                    poster_url=f"/posters/{m['id']}" if m.get("has_poster") else None) for m in result.movies]
    ids = suggestion_ids or list(range(len(result.suggestions)))
    return Recommendations(
        query=result.query, movies=movies, attended=result.attended[:25], resolved=resolved or {}, round=round_,
        modality_weights=result.modality_weights,
        understood=result.understood.as_dict() if result.understood is not None else None,
        suggestions=[{"id": i, "words": list(s.labels), "label": s.label} for i, s in zip(ids, result.suggestions)],
        reply=reply.text if reply is not None else "",
    )


def _reply(replier: ReplyBuilder, result: Result, conv: Conversation, event: Event) -> Reply:
    """The system's words for ``result``, answering ``event`` in ``conv``."""
    u = result.understood
    context = [m for m, _ in u.anchors] if u is not None else []
    return replier.reply(result.movies, conv, event, result.query_vector, u, result.suggestions, context)


def _session_feedback(state: dict[str, Any]) -> Feedback:
    fb = Feedback()
    for row in state["feedback"]:
        kind, _, ident = row["target"].partition(":")
        if kind == "movie":
            getattr(fb, row["value"]).append(int(ident))
        elif kind == "suggestion":
            (fb.accepted if row["value"] == "accepted" else fb.rejected).append(tuple(row["detail"] or ()))
    return fb


def create_app(engine: Engine, store: SessionStore, settings: ServeConfig | None = None,
               replier: ReplyBuilder | None = None) -> FastAPI:
    """The service over a loaded ``engine`` and a session ``store``; ``replier`` words the answers (default:
    :meth:`Engine.replier`, built now so that the first request does not wait for it)."""
    settings = settings or ServeConfig()
    replier = replier or engine.replier()
    app = FastAPI(title="qamrec", version="0.1.0", responses=ERROR_RESPONSES,
                  description="Query-aware, multi-modal movie recommendation on a heterogeneous graph.")
    app.state.engine, app.state.store = engine, store
    # pure ASGI guards, the last added outermost: CORS (answers preflights), the key, the body limit, admission
    app.add_middleware(AdmissionLimit, max_inflight=settings.max_inflight, max_queue=settings.max_queue,
                       queue_timeout=settings.queue_timeout, retry_after=settings.retry_after)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.api_key:
        app.add_middleware(AccessGuard, api_key=settings.api_key)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "X-API-Key"])

    @app.exception_handler(UnknownTitleError)
    async def unknown_title(request: Request, exc: UnknownTitleError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "title": exc.title, "closest": exc.closest}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    def session_or_404(sid: str) -> dict[str, Any]:
        state = store.get(sid) if len(sid) <= 64 else None
        if state is None:
            raise HTTPException(404, f"unknown session {sid[:64]!r}")
        return state

    def require_session(sid: str) -> None:
        """404 for an unknown session, without reading its messages and feedback (``respond`` reads them)."""
        if len(sid) > 64 or not store.exists(sid):
            raise HTTPException(404, f"unknown session {sid[:64]!r}")

    def respond(sid: str, k: int, event: Event) -> Recommendations:
        state = session_or_404(sid)
        said = [m["text"] for m in state["messages"] if m.get("role", "user") == "user"]
        result = engine.recommend(context_text(said), _session_feedback(state), k=k)
        round_ = len(said) + len(state["feedback"])
        ids = store.add_suggestions(sid, round_, [list(s.labels) for s in result.suggestions])
        reply = _reply(replier, result, Conversation.from_session(state), event)
        store.add_message(sid, reply.text, "system", reply.detail())
        rec = _recommendations(engine, result, round_=round_, suggestion_ids=ids, reply=reply)
        store.set_state(sid, rec.model_dump())
        return rec

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return Health(status="ok", model=engine.name, dataset=engine.dataset, candidates=len(engine.cands))

    @app.post("/recommend", response_model=Recommendations)
    def recommend(req: RecommendRequest) -> Recommendations:
        """Ranked movies for one request; titles in ``liked`` / ``disliked`` are resolved against the catalog."""
        resolved = {t: engine.resolve(t) for t in [*req.liked, *req.disliked]}
        fb = Feedback(disliked=[resolved[t] for t in req.disliked])
        result = engine.recommend(req.query, fb, k=req.k, anchors=[resolved[t] for t in req.liked])
        conv = Conversation(messages=[req.query], liked=[resolved[t] for t in req.liked])
        return _recommendations(engine, result, resolved,
                                reply=_reply(replier, result, conv, Event("message", req.query)))

    @app.post("/sessions", response_model=SessionCreated, status_code=201)
    def new_session() -> SessionCreated:
        return SessionCreated(id=store.create())

    @app.get("/sessions/{sid}", response_model=SessionState)
    def get_session(sid: SessionId) -> SessionState:
        s = session_or_404(sid)
        return SessionState(id=s["id"], created=s["created"],
                            messages=[{k: v for k, v in m.items() if k != "detail"} for m in s["messages"]],
                            feedback=[{k: v for k, v in f.items() if k != "detail"} for f in s["feedback"]],
                            recommendations=s["state"])

    @app.post("/sessions/{sid}/messages", response_model=Recommendations)
    def message(sid: SessionId, req: MessageRequest) -> Recommendations:
        """Add a message; recommendations for the whole conversation so far, and the system's ``reply`` (also
        kept in the session's messages, role ``system``)."""
        require_session(sid)
        store.add_message(sid, req.text)
        return respond(sid, req.k, Event("message", req.text))

    @app.post("/sessions/{sid}/feedback", response_model=FeedbackAck)
    def feedback(sid: SessionId, req: FeedbackRequest) -> FeedbackAck:
        """Feedback on a movie (liked / disliked / seen) or on a suggested refinement (accepted / rejected)."""
        require_session(sid)
        if isinstance(req, MovieFeedback):
            if engine.movie(req.movie_id) is None:
                raise HTTPException(404, f"unknown movie {req.movie_id}")
            row = store.add_feedback(sid, f"movie:{req.movie_id}", req.value)
            event = Event("movie", movie=req.movie_id, value=req.value)
        else:
            words = store.suggestion(sid, req.suggestion_id)
            if words is None:
                raise HTTPException(404, f"unknown suggestion {req.suggestion_id} in this session")
            row = store.add_feedback(sid, f"suggestion:{req.suggestion_id}", req.value, words)
            event = Event("suggestion", value=req.value, words=tuple(words))
        return FeedbackAck(id=row, recommendations=respond(sid, req.k, event))

    @app.get("/movies/{movie_id}", response_model=Movie)
    def movie(movie_id: int) -> Movie:
        m = engine.movie(movie_id)
        if m is None:
            raise HTTPException(404, f"unknown movie {movie_id}")
        return Movie(**{k: v for k, v in m.items() if k != "has_poster"}, score=0.0, reasons=[], reason="",
                     poster_url=f"/posters/{movie_id}" if m["has_poster"] else None)

    @app.get("/posters/{movie_id}", responses={200: {"content": {"image/jpeg": {}, "image/svg+xml": {}}}})
    def poster(movie_id: int) -> Response:
        """The prepared poster (JPEG), or a placeholder when the movie has none or the file is missing."""
        if engine.movie(movie_id) is None:
            raise HTTPException(404, f"unknown movie {movie_id}")
        path = engine.poster_file(movie_id)
        if path is not None and path.is_file():
            return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=86400"})
        return Response(PLACEHOLDER_SVG, media_type="image/svg+xml")

    if (WEB_DIR / "index.html").is_file():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

        @app.get("/", include_in_schema=False)
        def index() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    return app


def load_engine(run: Path, config: Any) -> Engine:
    """The engine of a run directory, its catalog extended as ``config.serve`` asks."""
    import torch

    engine = Engine.from_run(run, config)
    engine.query_cache_size = config.serve.query_cache
    if config.serve.catalog:
        from qamrec.serve.catalog import movielens_catalog

        movies, text = movielens_catalog(config, config.serve.catalog)
        engine.extend_catalog(movies, text, config.serve.item_dtype, config.serve.index_rank)
    if config.serve.threads:
        torch.set_num_threads(config.serve.threads)
    return engine


def app_from_env() -> FastAPI:
    """The app of one service worker: the run in ``$QAMREC_SERVE_RUN``, the config from the environment plus
    the ``--set`` overrides (JSON list) in ``$QAMREC_SERVE_SET``. ``qamrec serve`` with ``serve.workers > 1``
    starts uvicorn workers with this factory."""
    import json
    import os

    from qamrec.config import load_config
    from qamrec.serve.store import open_store

    config = load_config(json.loads(os.environ.get(SET_ENV, "[]")))
    engine = load_engine(Path(os.environ[RUN_ENV]), config)
    return create_app(engine, open_store(config.store_url), config.serve)
