"""``qamrec chat``: a conversation with the recommender in the terminal.

It speaks the service's API: in-process by default (the app over the run's engine, sessions in the data home's
store, through FastAPI's test client: no port is opened), or against a running service with ``--url``. Type what
you want; ``/like N``, ``/dislike N`` and ``/seen N`` give feedback on the N-th movie shown, ``/pick N`` accepts the
N-th suggested refinement (``/reject N`` rejects it), ``/new`` starts over, ``/help`` lists the commands, ``/quit``
(or end of input) leaves.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from qamrec.cli.common import cfg, console, run_or_default
from qamrec.errors import QamrecError

__all__ = ["chat", "ChatSession", "HELP"]

HELP = ("type what you want, or: /like N, /dislike N, /seen N (the N-th movie), /pick N, /reject N (the N-th "
        "suggestion), /new (start over), /help, /quit")


class ChatSession:
    """One conversation over an HTTP client of the service (``httpx.Client`` or FastAPI's ``TestClient``)."""

    def __init__(self, client: Any, k: int = 5) -> None:
        self.client, self.k = client, k
        self.sid: str | None = None
        self.recs: dict[str, Any] | None = None

    def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = self.client.post(path, json=body) if body is not None else self.client.post(path)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text
            raise QamrecError(f"the service answered {r.status_code}: {detail}")
        return r.json()

    def start(self) -> None:
        self.sid, self.recs = self._post("/sessions")["id"], None

    def say(self, text: str) -> dict[str, Any]:
        if self.sid is None:
            self.start()
        self.recs = self._post(f"/sessions/{self.sid}/messages", {"text": text, "k": self.k})
        return self.recs

    def feedback(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.sid is None:
            raise QamrecError("say something first")
        self.recs = self._post(f"/sessions/{self.sid}/feedback", {**body, "k": self.k})["recommendations"]
        return self.recs

    def command(self, line: str) -> dict[str, Any] | None:
        """Run one line of input; returns the new recommendations, or None when nothing was asked."""
        verb, _, arg = line.partition(" ")
        verb = verb.lower()
        if verb in ("/new", "/reset"):
            self.start()
            return None
        if verb in ("/like", "/dislike", "/seen", "/pick", "/accept", "/reject"):
            if not self.recs:
                raise QamrecError("nothing shown yet: say what you want first")
            try:
                n = int(arg.strip())
            except ValueError:
                raise QamrecError(f"{verb} needs a number (as shown in the list)") from None
            if verb in ("/like", "/dislike", "/seen"):
                movies = self.recs.get("movies") or []
                if not 1 <= n <= len(movies):
                    raise QamrecError(f"no movie {n} (1..{len(movies)})")
                value = {"/like": "liked", "/dislike": "disliked", "/seen": "seen"}[verb]
                return self.feedback({"movie_id": movies[n - 1]["id"], "value": value})
            suggestions = self.recs.get("suggestions") or []
            if not 1 <= n <= len(suggestions):
                raise QamrecError(f"no suggestion {n} (1..{len(suggestions)})")
            value = "rejected" if verb == "/reject" else "accepted"
            return self.feedback({"suggestion_id": suggestions[n - 1]["id"], "value": value})
        raise QamrecError(f"unknown command {verb!r}: {HELP}")


def show(recs: dict[str, Any]) -> None:
    """The reply, the movies (numbered) and the suggested refinements."""
    if recs.get("reply"):
        console.print(f"[bold magenta]qamrec>[/] {recs['reply']}", highlight=False)
    t = Table("#", "title (year)", "genres", "why", show_header=False, box=None, pad_edge=False)
    for i, m in enumerate(recs.get("movies") or [], 1):
        t.add_row(str(i), f"{m['title']} ({m['year']})" if m.get("year") else m["title"],
                  ", ".join(m.get("genres", [])[:3]), f"[dim]{m.get('reason', '')}[/]")
    console.print(t)
    sugg = recs.get("suggestions") or []
    if sugg:
        console.print("[dim]refine: " + "  ".join(f"/pick {i} {s['label']}" for i, s in enumerate(sugg, 1)) + "[/]",
                      highlight=False)


def chat(
    run: Annotated[Optional[Path], typer.Option(help="trained run directory (default: the demo's)")] = None,
    url: Annotated[Optional[str], typer.Option(help="a running service (e.g. http://127.0.0.1:8000) instead of "
                                                    "the run in this process")] = None,
    api_key: Annotated[Optional[str], typer.Option(help="the service's serve.api_key (with --url)")] = None,
    k: Annotated[int, typer.Option(min=1, max=20, help="movies shown per answer")] = 5,
) -> None:
    """A conversation in the terminal: say what you want; /like N, /dislike N, /seen N, /pick N, /reject N, /new."""
    if url:
        import httpx

        client: Any = httpx.Client(base_url=url.rstrip("/"), timeout=60,
                                   headers={"X-API-Key": api_key} if api_key else None)
        where = url
    else:
        from fastapi.testclient import TestClient

        from qamrec.serve.app import create_app, load_engine
        from qamrec.serve.store import open_store

        c = cfg()
        path = run_or_default(run)
        with console.status(f"loading {path}"):
            engine = load_engine(path, c)
            app = create_app(engine, open_store(c.store_url), c.serve)
        client = TestClient(app, headers={"X-API-Key": c.serve.api_key} if c.serve.api_key else None)
        where = engine.name
    session = ChatSession(client, k=k)
    console.print(f"[dim]talking to {where}; {HELP}[/]", highlight=False)
    try:
        while True:
            console.print("[bold cyan]you>[/] ", end="")
            line = sys.stdin.readline()
            if not line:
                console.print()
                break
            line = line.strip()
            if not line:
                continue
            if line.lower() in ("/quit", "/exit", "/q"):
                break
            if line.lower() == "/help":
                console.print(HELP, highlight=False)
                continue
            try:
                recs = session.command(line) if line.startswith("/") else session.say(line)
            except QamrecError as e:
                console.print(f"[red]{e}[/]", highlight=False)
                continue
            if recs is None:
                console.print("[dim]starting over[/]")
            else:
                show(recs)
    finally:
        client.close()
