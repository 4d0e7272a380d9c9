"""``qamrec recommend`` (one request, printed) and ``qamrec serve`` (the HTTP service and the web page)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from qamrec.cli.common import State, cfg, console, load_run_engine, run_or_default
from qamrec.errors import QamrecError

__all__ = ["recommend", "serve", "serve_run", "print_recommendations"]


def print_recommendations(engine, result, title: str) -> None:
    """A result as a table (title, genres, score, reason, the top modality), then what the model attended to."""
    gated = getattr(result, "modality_weights", None) is not None  # the model has a modality gate
    t = Table("#", "title (year)", "genres", "score", "why", *(["modality"] if gated else []), title=title,
              title_justify="left")
    for i, m in enumerate(result.movies, 1):
        top = max((m.get("modality_weights") or {}).items(), key=lambda x: x[1], default=None)
        t.add_row(str(i), f"{m['title']} ({m['year']})" if m["year"] else m["title"], ", ".join(m["genres"][:3]),
                  f"{m['score']:.2f}", m["reason"], *([f"{top[0]} {top[1]:.2f}" if top else "-"] if gated else []))
    console.print(t)
    att = ", ".join(f"{a['label']} {a['weight']:.2f}" for a in result.attended[:6])
    console.print(f"[dim]attended to: {att}[/]", highlight=False)
    if getattr(result, "understood", None):
        console.print(f"[dim]understood: {result.understood.summary}[/]", highlight=False)
    if getattr(result, "modality_weights", None):
        mods = ", ".join(f"{n} {w:.2f}" for n, w in sorted(result.modality_weights.items(), key=lambda x: -x[1]))
        console.print(f"[dim]modalities (mean gate weight over these movies): {mods}[/]", highlight=False)
    if result.suggestions:
        console.print("[dim]refine with: " + " | ".join(s.label for s in result.suggestions) + "[/]", highlight=False)


def recommend(
    query: Annotated[str, typer.Argument(help="what you want, in your own words")],
    liked: Annotated[list[str], typer.Option(help="a title you liked, e.g. \"Ocean's Eleven (2001)\" (repeatable)")] = [],
    disliked: Annotated[list[str], typer.Option(help="a title you did not like (repeatable)")] = [],
    k: Annotated[int, typer.Option(min=1, max=100, help="how many movies")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    run: Annotated[Optional[Path], typer.Option(help="trained run directory (default: the demo's)")] = None,
) -> None:
    """Recommend movies for a request, with the reasons the model's attention gives."""
    from qamrec.serve.engine import Feedback
    from qamrec.serve.schemas import MAX_QUERY_CHARS

    if not query.strip() or len(query) > MAX_QUERY_CHARS:
        raise QamrecError(f"the query must have 1 to {MAX_QUERY_CHARS} characters")
    engine = load_run_engine(run)
    resolved = {t: engine.resolve(t) for t in [*liked, *disliked]}
    fb = Feedback(disliked=[resolved[t] for t in disliked])
    result = engine.recommend(query, fb, k=k, anchors=[resolved[t] for t in liked])
    if as_json:
        understood = result.understood.as_dict() if result.understood is not None else None
        sys.stdout.write(json.dumps({"query": result.query, "resolved": resolved, "movies": result.movies,
                                     "attended": result.attended[:25],
                                     "suggestions": [list(s.labels) for s in result.suggestions],
                                     "understood": understood}
                                    | ({"modality_weights": result.modality_weights}
                                       if result.modality_weights is not None else {})) + "\n")
        return
    for t, m in resolved.items():
        console.print(f"[dim]{t!r} -> {engine.label(m)} (id {m})[/]", highlight=False)
    print_recommendations(engine, result, f"{query}")


def serve_run(run: Path, host: str | None, port: int | None, engine=None) -> None:
    """Serve ``run`` (or the already loaded ``engine``) until Ctrl-C; several workers when ``serve.workers > 1``."""
    import os

    import uvicorn

    from qamrec.serve.app import RUN_ENV, SET_ENV, create_app, load_engine
    from qamrec.serve.store import open_store

    c = cfg()
    settings = c.serve.model_copy(update={k: v for k, v in (("host", host), ("port", port)) if v is not None})
    where = f"http://{settings.host}:{settings.port}/"
    if settings.workers > 1:  # separate processes, each with the model, sharing the SQLite store
        os.environ[RUN_ENV] = str(run.resolve())
        os.environ[SET_ENV] = json.dumps(State.overrides + [f"home={c.home}"])
        console.print(f"serving {run} with {settings.workers} workers on [bold]{where}[/] (API docs at /docs; "
                      f"sessions in {c.store_url}); Ctrl-C stops")
        uvicorn.run("qamrec.serve.app:app_from_env", factory=True, workers=settings.workers, host=settings.host,
                    port=settings.port, log_level="warning")
        return
    if engine is None or c.serve.catalog:
        with console.status(f"loading {run}"):
            engine = load_engine(run, c)
    engine.query_cache_size = c.serve.query_cache
    app_ = create_app(engine, open_store(c.store_url), settings)
    console.print(f"serving {engine.name} ({engine.catalog_size:,} movies) on [bold]{where}[/] "
                  f"(API docs at /docs; sessions in {c.store_url}); Ctrl-C stops")
    uvicorn.run(app_, host=settings.host, port=settings.port, log_level="warning")


def serve(
    run: Annotated[Optional[Path], typer.Option(help="trained run directory (default: the demo's)")] = None,
    host: Annotated[Optional[str], typer.Option(help="address to bind (default 127.0.0.1)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default 8000)")] = None,
) -> None:
    """The HTTP service and the web page."""
    serve_run(run_or_default(run), host, port)
