"""Where conversations live: a small :class:`SessionStore` interface and its embedded SQLite implementation.

SQLite runs in WAL mode with a busy timeout, one short transaction per call and parameterized queries only,
so several service workers can share one file. A server database would be another implementation chosen by
URL in :func:`open_store`.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qamrec.errors import QamrecError

__all__ = ["SessionStore", "SQLiteStore", "open_store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, created REAL NOT NULL, state TEXT);
CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL REFERENCES sessions(id),
    text TEXT NOT NULL, at REAL NOT NULL, role TEXT NOT NULL DEFAULT 'user', detail TEXT);
CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL REFERENCES sessions(id),
    target TEXT NOT NULL, value TEXT NOT NULL, detail TEXT, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS suggestions (id INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL REFERENCES sessions(id),
    round INTEGER NOT NULL, words TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_session ON messages(session, id);
CREATE INDEX IF NOT EXISTS feedback_session ON feedback(session, id);
CREATE INDEX IF NOT EXISTS suggestions_session ON suggestions(session, id);
"""


class SessionStore(ABC):
    """Sessions, their messages (the person's and the system's replies), feedback, suggested refinements and last
    response."""

    @abstractmethod
    def create(self) -> str:
        """A new session's id."""

    @abstractmethod
    def exists(self, session: str) -> bool: ...

    @abstractmethod
    def add_message(self, session: str, text: str, role: str = "user", detail: Any = None) -> int:
        """Store a message of the person (``role="user"``) or a reply of the system (``"system"``, with its
        ``detail``: JSON the next replies read)."""

    @abstractmethod
    def add_feedback(self, session: str, target: str, value: str, detail: Any = None) -> int:
        """Store one feedback event; returns its row id (the acknowledgement)."""

    @abstractmethod
    def add_suggestions(self, session: str, round_: int, words: list[list[str]]) -> list[int]: ...

    @abstractmethod
    def suggestion(self, session: str, suggestion: int) -> list[str] | None:
        """The words of a suggestion made in this session, or None."""

    @abstractmethod
    def set_state(self, session: str, state: dict[str, Any]) -> None:
        """Remember the last response (JSON) of a session."""

    @abstractmethod
    def get(self, session: str) -> dict[str, Any] | None:
        """``{id, created, messages, feedback, state}`` or None for an unknown session."""

    def close(self) -> None:  # noqa: B027
        """Release resources."""


class SQLiteStore(SessionStore):
    """The embedded default: one SQLite file (WAL), safe across threads and processes."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)  # idempotent; executescript manages its own transaction
        self._migrate()

    def _migrate(self) -> None:
        """Bring a store written before replies existed up to date (its messages are the person's)."""
        with self._tx() as db:
            cols = {r[1] for r in db.execute("PRAGMA table_info(messages)")}
            if "role" not in cols:
                db.execute("ALTER TABLE messages ADD COLUMN role TEXT NOT NULL DEFAULT 'user'")
            if "detail" not in cols:
                db.execute("ALTER TABLE messages ADD COLUMN detail TEXT")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                       check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            except sqlite3.DatabaseError as e:
                raise QamrecError(f"{self.path}: cannot open the session store ({e})") from None
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def create(self) -> str:
        sid = secrets.token_urlsafe(12)
        with self._tx() as db:
            db.execute("INSERT INTO sessions (id, created) VALUES (?, ?)", (sid, time.time()))
        return sid

    def exists(self, session: str) -> bool:
        return self._conn().execute("SELECT 1 FROM sessions WHERE id = ?", (session,)).fetchone() is not None

    def add_message(self, session: str, text: str, role: str = "user", detail: Any = None) -> int:
        if role not in ("user", "system"):
            raise ValueError(f"unknown role {role!r}")
        with self._tx() as db:
            return int(db.execute("INSERT INTO messages (session, text, at, role, detail) VALUES (?, ?, ?, ?, ?)",
                                  (session, text, time.time(), role,
                                   None if detail is None else json.dumps(detail))).lastrowid)

    def add_feedback(self, session: str, target: str, value: str, detail: Any = None) -> int:
        with self._tx() as db:
            return int(db.execute("INSERT INTO feedback (session, target, value, detail, at) VALUES (?, ?, ?, ?, ?)",
                                  (session, target, value, json.dumps(detail), time.time())).lastrowid)

    def add_suggestions(self, session: str, round_: int, words: list[list[str]]) -> list[int]:
        with self._tx() as db:
            return [int(db.execute("INSERT INTO suggestions (session, round, words) VALUES (?, ?, ?)",
                                   (session, round_, json.dumps(w))).lastrowid) for w in words]

    def suggestion(self, session: str, suggestion: int) -> list[str] | None:
        row = self._conn().execute("SELECT words FROM suggestions WHERE id = ? AND session = ?",
                                   (suggestion, session)).fetchone()
        return None if row is None else list(json.loads(row[0]))

    def set_state(self, session: str, state: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("UPDATE sessions SET state = ? WHERE id = ?", (json.dumps(state), session))

    def get(self, session: str) -> dict[str, Any] | None:
        db = self._conn()
        row = db.execute("SELECT created, state FROM sessions WHERE id = ?", (session,)).fetchone()
        if row is None:
            return None
        messages = [{"role": r, "text": t, "at": at, "detail": json.loads(d) if d else None} for t, at, r, d in
                    db.execute("SELECT text, at, role, detail FROM messages WHERE session = ? ORDER BY id",
                               (session,))]
        feedback = [{"id": i, "target": tg, "value": v, "detail": json.loads(d) if d else None, "at": at}
                    for i, tg, v, d, at in db.execute(
                        "SELECT id, target, value, detail, at FROM feedback WHERE session = ? ORDER BY id",
                        (session,))]
        return {"id": session, "created": row[0], "messages": messages, "feedback": feedback,
                "state": json.loads(row[1]) if row[1] else None}

    def count(self, table: str) -> int:
        """Rows in ``messages``, ``feedback``, ``suggestions`` or ``sessions`` (for tests and benchmarks)."""
        if table not in ("sessions", "messages", "feedback", "suggestions"):
            raise ValueError(f"unknown table {table!r}")
        return int(self._conn().execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608 (fixed names)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def open_store(url: str) -> SessionStore:
    """A store from its URL: ``sqlite:///path/to/file.sqlite3`` (the only backend built in)."""
    if url.startswith("sqlite:///"):
        return SQLiteStore(Path(url[len("sqlite:///"):]).expanduser())
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise QamrecError(f"serve.store: unsupported session store {scheme!r} (use sqlite:///PATH)")
