"""What a reply needs to know about the conversation so far: the person's messages, the system's earlier
replies (their text, the template and movies they used), and the event being answered.

A :class:`Conversation` is rebuilt from the session store for every request (so it survives a restart and is
shared by service workers); the terminal chat and the benchmarks keep one in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Event", "PastReply", "Conversation"]


@dataclass(frozen=True)
class Event:
    """What the reply answers: a message, or feedback on a movie (liked / disliked / seen) or on a suggested
    refinement (accepted / rejected, with its words)."""

    kind: Literal["message", "movie", "suggestion"]
    text: str = ""
    movie: int | None = None
    value: str = ""
    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class PastReply:
    """An earlier reply of the system."""

    text: str
    kind: str = "recommend"
    template: str = ""
    movies: tuple[int, ...] = ()

    @classmethod
    def from_detail(cls, text: str, detail: dict[str, Any] | None) -> PastReply:
        d = detail or {}
        return cls(text, str(d.get("kind", "recommend")), str(d.get("template", "")),
                   tuple(int(m) for m in d.get("movies") or ()))


@dataclass
class Conversation:
    """The person's messages and the system's replies so far, oldest first; ``seed`` varies the wording
    between conversations (the session id)."""

    messages: list[str] = field(default_factory=list)
    replies: list[PastReply] = field(default_factory=list)
    liked: list[int] = field(default_factory=list)
    seed: str = ""

    @property
    def heard(self) -> str:
        """Everything the system said so far, as one text."""
        return " ".join(r.text for r in self.replies)

    @property
    def named(self) -> set[int]:
        """Movies the system's replies named."""
        return {m for r in self.replies for m in r.movies}

    @property
    def templates(self) -> set[str]:
        return {r.template for r in self.replies if r.template}

    @property
    def asked(self) -> bool:
        """Whether the last reply asked a clarifying question."""
        return bool(self.replies) and self.replies[-1].kind == "clarify"

    def add(self, text: str, kind: str, template: str, movies: tuple[int, ...]) -> None:
        self.replies.append(PastReply(text, kind, template, movies))

    @classmethod
    def from_session(cls, state: dict[str, Any]) -> Conversation:
        """From a session as :meth:`~qamrec.serve.store.SessionStore.get` returns it."""
        conv = cls(seed=str(state.get("id", "")))
        for m in state.get("messages") or ():
            if m.get("role", "user") == "user":
                conv.messages.append(str(m["text"]))
            else:
                conv.replies.append(PastReply.from_detail(str(m["text"]), m.get("detail")))
        for f in state.get("feedback") or ():
            kind, _, ident = str(f.get("target", "")).partition(":")
            if kind == "movie" and f.get("value") == "liked" and ident.isdigit():
                conv.liked.append(int(ident))
        return conv
