"""``qamrec bench load``: the service under rising load, and whether it keeps its promises there.

``qamrec serve`` runs in a subprocess (``serve.workers`` processes sharing one fresh SQLite file); a separate
client process on loopback drives it, for ``seconds`` per level, with ``clients`` threads (httpx, one connection
each). Every client runs its own conversations: a mix of ``POST /recommend``, session creation, messages and
feedback on the movies the session was shown. Per level it reports throughput (2xx answers per second), p50 /
p99 latency of the 2xx answers, 5xx errors, 503 refusals, client-side errors, and the feedback the service
acknowledged (2xx, with the row id) against the feedback rows the SQLite file gained: they must be equal. A
final check reads every session back from the file and compares its messages and feedback with what was
acknowledged, in order.

A 503 with ``Retry-After`` is the service's graceful overload answer (see ``serve.max_inflight``): it is
counted apart (``rejected_503``), not as an error; the client waits the ``Retry-After`` before its next
request. ``errors_5xx`` counts every other 500-599 answer.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import random
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from qamrec.io import atomic_write_json, atomic_write_text
from qamrec.bench.serve import QUERIES, percentile, served

__all__ = ["DEFAULT_LEVELS", "MIX", "run_load_benchmark", "load_table"]

DEFAULT_LEVELS = (1, 8, 32, 64)
#: the request mix: operation -> weight (a session is also replaced after SESSION_EVENTS of its own requests)
MIX = {"recommend": 0.35, "message": 0.35, "feedback": 0.2, "session": 0.1}
SESSION_EVENTS = 8
_NOTE = ("503 answers that carry Retry-After are the service's graceful overload answer: counted as rejected_503, "
         "not as errors; errors_5xx counts every other 500-599 answer. Latency percentiles are over 2xx answers.")


class _Client:
    """One simulated person: its own conversations, one request at a time."""

    def __init__(self, http: Any, index: int, seed: int, stop: float) -> None:
        self.http, self.index, self.stop = http, index, stop
        self.rng = random.Random(seed * 100_003 + index)
        self.sid: str | None = None
        self.shown: list[int] = []
        self.events = 0
        self.sent = 0
        self.lat: list[float] = []
        self.codes: Counter[str] = Counter()
        self.rejected = self.errors_5xx = self.errors_other = 0
        self.feedback_ids: list[int] = []
        self.sessions: dict[str, dict[str, Any]] = {}  # sid -> acknowledged messages, feedback ids, certain

    def _call(self, op: str, path: str, body: dict[str, Any] | None) -> tuple[bool, Any]:
        """(whether the outcome is known, the 2xx body or None). Unknown: a 5xx, a timeout, a lost connection."""
        t = time.perf_counter()
        try:
            r = self.http.post(path, json=body)
        except Exception:  # noqa: BLE001 (timeouts, refused or reset connections: all counted)
            self.errors_other += 1
            self.codes[f"{op} error"] += 1
            return False, None
        dt = (time.perf_counter() - t) * 1000
        self.codes[f"{op} {r.status_code}"] += 1
        if 200 <= r.status_code < 300:
            self.lat.append(dt)
            return True, r.json()
        if r.status_code == 503 and "retry-after" in r.headers:  # refused before any work was done
            self.rejected += 1
            wait = float(r.headers["retry-after"] or 0)
            time.sleep(max(0.0, min(wait, self.stop - time.perf_counter())))
            return True, None
        if r.status_code >= 500:
            self.errors_5xx += 1
            return False, None
        return True, None

    def _uncertain(self) -> None:
        """A message or feedback whose outcome is unknown (5xx, timeout): the session is not compared exactly."""
        if self.sid is not None:
            self.sessions[self.sid]["certain"] = False

    def step(self) -> None:
        op = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        if self.sid is None or self.events >= SESSION_EVENTS:
            op = "session"
        elif op == "feedback" and not self.shown:
            op = "message"
        query = QUERIES[self.rng.randrange(len(QUERIES))]
        if op == "recommend":
            self._call(op, "/recommend", {"query": query, "k": 10})
        elif op == "session":
            _, body = self._call(op, "/sessions", None)
            if body is not None:
                self.sid, self.shown, self.events = body["id"], [], 0
                self.sessions[self.sid] = {"messages": [], "feedback": [], "certain": True}
        elif op == "message":
            self.sent += 1
            text = f"{query} (client {self.index}, message {self.sent})"
            known, body = self._call(op, f"/sessions/{self.sid}/messages", {"text": text, "k": 10})
            self.events += 1
            if body is not None:
                self.sessions[self.sid]["messages"].append(text)  # type: ignore[index]
                self.shown = [m["id"] for m in body["movies"]]
            elif not known:
                self._uncertain()
        else:
            value = self.rng.choice(["liked", "disliked", "seen"])
            known, body = self._call(op, f"/sessions/{self.sid}/feedback",
                                     {"movie_id": self.rng.choice(self.shown), "value": value, "k": 10})
            self.events += 1
            if body is not None:
                self.feedback_ids.append(int(body["id"]))
                self.sessions[self.sid]["feedback"].append(int(body["id"]))  # type: ignore[index]
                self.shown = [m["id"] for m in body["recommendations"]["movies"]]
            elif not known:
                self._uncertain()


def _drive(url: str, seconds: float, clients: int, seed: int, queue: Any) -> None:
    """The client process: ``clients`` threads for ``seconds``; puts the merged tallies on ``queue``."""
    import httpx

    stop = time.perf_counter() + seconds
    done: list[_Client] = []
    lock = threading.Lock()

    def person(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            c = _Client(http, i, seed, stop)
            while time.perf_counter() < stop:
                c.step()
        with lock:
            done.append(c)

    threads = [threading.Thread(target=person, args=(i,), daemon=True) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes: Counter[str] = Counter()
    for c in done:
        codes.update(c.codes)
    queue.put({
        "wall": time.perf_counter() - t0, "lat": [x for c in done for x in c.lat], "codes": dict(codes),
        "rejected": sum(c.rejected for c in done), "errors_5xx": sum(c.errors_5xx for c in done),
        "errors_other": sum(c.errors_other for c in done), "feedback_ids": [x for c in done for x in c.feedback_ids],
        "sessions": {sid: s for c in done for sid, s in c.sessions.items()},
    })


def _feedback_ids_after(db: Path, after: int) -> list[int]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        return [int(r[0]) for r in conn.execute("SELECT id FROM feedback WHERE id > ? ORDER BY id", (after,))]


def _check_sessions(db: Path, sessions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every session read back from the file against what the service acknowledged."""
    from qamrec.serve.store import SQLiteStore

    store = SQLiteStore(db)
    broken: list[str] = []
    certain = 0
    for sid, expected in sessions.items():
        state = store.get(sid)
        if state is None:
            broken.append(f"{sid}: missing")
            continue
        texts = [m["text"] for m in state["messages"] if m.get("role", "user") == "user"]  # replies aside
        fb = [int(f["id"]) for f in state["feedback"]]
        if expected["certain"]:
            certain += 1
            ok = texts == expected["messages"] and fb == expected["feedback"]
        else:  # an answer was lost: what was acknowledged must still be there, in order
            ok = _in_order(expected["messages"], texts) and _in_order(expected["feedback"], fb)
        if not ok:
            broken.append(f"{sid}: stored {len(texts)} messages / {len(fb)} feedback, acknowledged "
                          f"{len(expected['messages'])} / {len(expected['feedback'])}")
    store.close()
    return {"sessions": len(sessions), "sessions_exact": certain, "sessions_intact": len(sessions) - len(broken),
            "broken": broken[:20]}


def _in_order(part: list[Any], whole: list[Any]) -> bool:
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


def run_load_benchmark(run: Path, home: Path, overrides: list[str], out: Path, *,
                       levels: tuple[int, ...] = DEFAULT_LEVELS, seconds: float = 60.0, workers: int = 2,
                       threads: int = 1, seed: int = 0, log: Any = print) -> dict[str, Any]:
    """Drive ``qamrec serve`` (``workers`` processes, ``threads`` torch threads each) at each level of concurrent
    clients for ``seconds``; write ``load.json``, ``load.md`` and ``load.png`` to ``out`` and return the result."""
    import httpx

    out.mkdir(parents=True, exist_ok=True)
    db = (out / "load-sessions.sqlite3").resolve()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    settings = [*overrides, f"serve.workers={workers}", f"serve.threads={threads}", f"serve.store=sqlite:///{db}"]
    rows: list[dict[str, Any]] = []
    sessions: dict[str, dict[str, Any]] = {}
    with served(run, home, settings, out / "load-serve.log") as url:
        for q in QUERIES[:8]:  # warm the workers a little
            httpx.post(url + "/recommend", json={"query": q, "k": 10}, timeout=120)
        ctx = mp.get_context("spawn")
        for level, clients in enumerate(levels):
            before = max(_feedback_ids_after(db, 0), default=0)
            queue = ctx.Queue()
            proc = ctx.Process(target=_drive, args=(url, seconds, clients, seed + level, queue))
            proc.start()
            r = queue.get()
            proc.join()
            time.sleep(0.5)  # a request the client gave up on may still be committing
            stored = _feedback_ids_after(db, before)
            sessions.update(r["sessions"])
            done = sum(r["codes"].values())
            row = {
                "clients": clients, "seconds": round(r["wall"], 2), "requests": done,
                "rps": round(len(r["lat"]) / r["wall"], 2), "p50_ms": round(percentile(r["lat"], 50), 1),
                "p99_ms": round(percentile(r["lat"], 99), 1), "errors_5xx": r["errors_5xx"],
                "rejected_503": r["rejected"], "errors_other": r["errors_other"],
                "feedback_acknowledged": len(r["feedback_ids"]), "feedback_rows": len(stored),
                "feedback_ids_match": sorted(r["feedback_ids"]) == stored,
                "status_codes": dict(sorted(r["codes"].items())),
            }
            rows.append(row)
            log(f"{clients:>3} clients: {row['rps']} 2xx/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
                f"5xx {row['errors_5xx']}, 503 {row['rejected_503']}, other errors {row['errors_other']}, "
                f"feedback {row['feedback_acknowledged']} acknowledged / {row['feedback_rows']} rows")
    check = _check_sessions(db, sessions)
    result = {"levels": rows, "consistency": check, "workers": workers, "threads": threads,
              "seconds_per_level": seconds, "mix": MIX, "note": _NOTE}
    atomic_write_json(out / "load.json", result)
    atomic_write_text(out / "load.md", load_table(result))
    _plot(rows, out / "load.png", workers)
    return result


def load_table(result: dict[str, Any]) -> str:
    """The result as a markdown table, with the consistency check and what the columns mean."""
    c = result["consistency"]
    lines = [
        f"# Load ({result['workers']} workers, torch threads {result['threads'] or 'default'}, "
        f"{result['seconds_per_level']:g} s per level; mix {', '.join(f'{k} {v:.0%}' for k, v in MIX.items())})", "",
        "| clients | requests | 2xx/s | p50 ms | p99 ms | 5xx | 503 + Retry-After | other errors | "
        "feedback acknowledged | feedback rows |", "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["levels"]:
        lines.append(f"| {r['clients']} | {r['requests']} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | "
                     f"{r['errors_5xx']} | {r['rejected_503']} | {r['errors_other']} | "
                     f"{r['feedback_acknowledged']} | {r['feedback_rows']} |")
    lost = c["sessions"] - c["sessions_exact"]
    how = (f"; {lost} had an answer lost (5xx or no answer), so for those only what was acknowledged is checked, "
           "in order" if lost else "; each compared exactly: messages and feedback as acknowledged, in order")
    lines += ["", f"Sessions read back from the SQLite file: {c['sessions_intact']} of {c['sessions']} intact{how}.",
              "", _NOTE]
    lines += [f"- broken: {b}" for b in c["broken"]]
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict[str, Any]], path: Path, workers: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["clients"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(x, [r["rps"] for r in rows], "o-", label="2xx answers/s")
    a.plot(x, [r["rejected_503"] / max(r["seconds"], 1e-9) for r in rows], "s--", label="503 + Retry-After/s")
    a.set(ylabel="per second", title=f"throughput ({workers} workers)", ylim=(0, None))
    b.plot(x, [r["p50_ms"] for r in rows], "o-", label="p50")
    b.plot(x, [r["p99_ms"] for r in rows], "s-", label="p99")
    b.set(ylabel="ms", title="latency of 2xx answers", ylim=(0, None))
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(v) for v in x])
        ax.minorticks_off()
        ax.set_xlabel("concurrent clients")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
