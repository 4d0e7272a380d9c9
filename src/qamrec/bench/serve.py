"""``qamrec bench serve``: latency of one recommend call in-process and of the HTTP service under load, on a
catalog extended to every MovieLens-32M movie.

Every timed call is the product's path: the request is parsed (:mod:`qamrec.serve.understand`) and its facts
applied to the scores; the same calls without the parse are timed in the same process for the ratio.

The service is ``qamrec serve`` in a subprocess (``serve.workers`` processes, the catalog extended the same
way); the load comes from a separate client process with ``clients`` concurrent connections firing
``POST /recommend`` for ``seconds``.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from qamrec.io import atomic_write_json, atomic_write_text

__all__ = ["QUERIES", "run_serve_benchmark", "percentile", "served"]

QUERIES = (
    "funny heist movie with a great ensemble", "a slow-burn sci-fi with a twist, nothing gory",
    "something scary for halloween night", "romantic comedy set in new york", "animated movie for kids",
    "a war movie based on a true story", "mind-bending thriller like inception", "feel-good sports drama",
    "classic western with gunfights", "a musical with great songs", "space adventure with aliens",
    "courtroom drama with a great twist", "a quiet indie film about family", "kung fu action from hong kong",
    "superhero movie that is actually funny", "a documentary about music", "noir detective story",
    "coming of age story in the 80s", "disaster movie with earthquakes", "time travel romance",
    # requests whose facts the parser finds: titles, decades and years, people, negations, tags
    "sci-fi but not action heavy, more thoughtful and slow", "a mystery whodunit, no romance please",
    "a 1950s film noir", "something with Tom Hanks", "movies like The Matrix but not from the 90s",
    "I loved Ocean's Eleven (2001), another funny heist movie", "a thriller from the 90s, nothing with Nicolas Cage",
    "an animated movie that isn't a musical", "a western made before 1970", "something atmospheric, no horror",
)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


@contextlib.contextmanager
def served(run: Path, home: Path, overrides: list[str], log_file: Path, timeout: float = 600) -> Iterator[str]:
    """``qamrec serve`` on a free loopback port in a subprocess, until the block ends; yields its URL."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "qamrec", "--home", str(home), *[x for o in overrides for x in ("--set", o)],
           "serve", "--run", str(run), "--port", str(port)]
    with open(log_file, "w") as server_log:
        server = subprocess.Popen(cmd, stdout=server_log, stderr=subprocess.STDOUT)
    try:
        deadline = time.perf_counter() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the service exited; its output is in {log_file}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the service did not start within {timeout:.0f} s; see {log_file}")
            time.sleep(0.25)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _time_calls(engine: Any, calls: int, understand: bool = True) -> tuple[list[float], list[list[int]]]:
    """Latencies (ms) and top-10 ids of ``calls`` recommend calls over :data:`QUERIES` (parsed unless told)."""
    for q in QUERIES[:5]:
        engine.recommend(q, k=10, understand=understand)
    lat, tops = [], []
    for i in range(calls):
        t = time.perf_counter()
        res = engine.recommend(QUERIES[i % len(QUERIES)], k=10, understand=understand)
        lat.append((time.perf_counter() - t) * 1000)
        tops.append([m["id"] for m in res.movies])
    return lat, tops


def _client(url: str, seconds: float, clients: int, queue: Any) -> None:
    """Fire requests from ``clients`` threads for ``seconds``; put (latencies_ms, errors, codes) on ``queue``."""
    import httpx

    lat: list[float] = []
    errors = [0]
    codes: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            n = i
            while time.perf_counter() < stop:
                body = {"query": QUERIES[n % len(QUERIES)], "k": 10}
                n += clients
                t = time.perf_counter()
                try:
                    r = c.post("/recommend", json=body)
                    ok = r.status_code == 200
                    code = r.status_code
                except httpx.HTTPError:
                    ok, code = False, -1
                dt = (time.perf_counter() - t) * 1000
                with lock:
                    codes[code] = codes.get(code, 0) + 1
                    if ok:
                        lat.append(dt)
                    else:
                        errors[0] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put((lat, errors[0], codes, time.perf_counter() - t0))


def _scoring(dtype: str, rank: int) -> str:
    """A label for how the catalog is scored: ``float32``, ``bfloat16``, ``int8`` or ``int8-r160``."""
    return f"{dtype}-r{rank}" if dtype == "int8" and rank else dtype


def _inprocess(engine: Any, movies: Any, text: np.ndarray, calls: int, dtype: str, log: Any,
               rank: int = 0) -> dict[str, Any]:
    """Latency of ``engine.recommend`` on the extended catalog as served (``dtype`` scoring with a first pass
    of width ``rank``, fast query encoder), against the plain configuration in the same process (exact float32
    product, the text model's own ``encode``), with each scoring's top-10 agreement with the exact float32
    ranking."""
    engine.query_cache_size = 0  # every call encodes its query: the queries repeat, real ones mostly do not
    engine.query_cache.clear()
    encoder = getattr(engine.encode_query, "__self__", None)  # OnnxTextEncoder or TracedTextEncoder
    backend = encoder_backend(encoder)
    plain = encoder.encoder.encode if backend != "sentence-transformers" else None
    served_encode = engine.encode_query
    base_lat, _ = _time_calls(engine, max(calls // 3, 10))  # the graph's candidates only
    lat: dict[str, list[float]] = {}
    tops: dict[str, list[list[int]]] = {}
    served = _scoring(dtype, rank)
    for dt, r in dict.fromkeys([("float32", 0), ("bfloat16", 0), ("int8", 0), ("int8", rank), (dtype, rank)]):
        engine.extend_catalog(movies, text, dt, r)
        lat[_scoring(dt, r)], tops[_scoring(dt, r)] = _time_calls(engine, calls)
    agree = {dt: statistics.fmean(len(set(a) & set(b)) / max(len(a), 1) for a, b in zip(tops["float32"], t))
             for dt, t in tops.items()}
    enc: dict[str, list[float]] = {"served": [], "plain": []}
    for name, f in (("served", served_encode), ("plain", plain or served_encode)):
        for i in range(min(calls, 100) + 5):
            t = time.perf_counter()
            f([QUERIES[i % len(QUERIES)]])
            if i >= 5:
                enc[name].append((time.perf_counter() - t) * 1000)
    plain_lat = lat["float32"]
    if plain is not None:  # the plain configuration: the model's own encode and the exact float32 product
        engine.encode_query = plain
        engine.extend_catalog(movies, text, "float32", 0)
        plain_lat, _ = _time_calls(engine, calls)
        engine.encode_query = served_encode
    engine.extend_catalog(movies, text, dtype, rank)
    # the same calls as served, with and without the parse (and the facts it applies), in this process and
    # interleaved (each query both ways, in turn first), so that both see the same load on the machine
    parsed, unparsed = [], []
    for i in range(calls):
        q = QUERIES[i % len(QUERIES)]
        for understand in ((True, False) if i % 2 else (False, True)):
            t = time.perf_counter()
            engine.recommend(q, k=10, understand=understand)
            (parsed if understand else unparsed).append((time.perf_counter() - t) * 1000)
    # the same calls with the reply the service words them with (retrieval, slots, facts), interleaved likewise
    replied, unreplied, reply_ms = _reply_calls(engine, calls)
    parse_ms = []
    for i in range(min(calls, 100)):
        t = time.perf_counter()
        engine.understand(QUERIES[i % len(QUERIES)])
        parse_ms.append((time.perf_counter() - t) * 1000)
    p50 = percentile(lat[served], 50)
    log(f"in-process, {engine.catalog_size:,} movies: p50 {p50:.1f} ms ({served}, query encoder: {backend}) vs "
        f"{percentile(plain_lat, 50):.1f} ms plain; parsed {percentile(parsed, 50):.1f} ms vs "
        f"{percentile(unparsed, 50):.1f} ms without the parse; "
        + ", ".join(f"{d} {percentile(v, 50):.1f} ms (top-10 agreement {agree[d]:.3f})" for d, v in lat.items())
        + f"; {percentile(base_lat, 50):.1f} ms on the {len(engine.cands):,} graph candidates alone")
    return {
        "catalog_size": engine.catalog_size, "candidates_in_graph": len(engine.cands), "inprocess_calls": calls,
        "inprocess_dtype": served, "inprocess_encoder": backend, "torch_threads": torch_threads(),
        "inprocess_p50_ms": round(p50, 2), "inprocess_p95_ms": round(percentile(lat[served], 95), 2),
        "inprocess_p99_ms": round(percentile(lat[served], 99), 2),
        "plain_p50_ms": round(percentile(plain_lat, 50), 2), "plain_p99_ms": round(percentile(plain_lat, 99), 2),
        "speedup_p50": round(percentile(plain_lat, 50) / p50, 2),
        "by_dtype": {d: {"p50_ms": round(percentile(v, 50), 2), "p99_ms": round(percentile(v, 99), 2),
                         "top10_agreement_with_float32": round(agree[d], 4)} for d, v in lat.items()},
        "graph_candidates_p50_ms": round(percentile(base_lat, 50), 2),
        "parsed_p50_ms": round(percentile(parsed, 50), 2), "parsed_p99_ms": round(percentile(parsed, 99), 2),
        "unparsed_p50_ms": round(percentile(unparsed, 50), 2),
        "parse_ratio_p50": round(percentile(parsed, 50) / max(percentile(unparsed, 50), 1e-9), 3),
        "parse_alone_p50_ms": round(percentile(parse_ms, 50), 3),
        "replied_p50_ms": round(percentile(replied, 50), 2), "replied_p99_ms": round(percentile(replied, 99), 2),
        "unreplied_p50_ms": round(percentile(unreplied, 50), 2),
        "reply_added_p50_ms": round(percentile(replied, 50) - percentile(unreplied, 50), 3),
        "reply_alone_p50_ms": round(percentile(reply_ms, 50), 3),
        "query_encoding_p50_ms": round(percentile(enc["served"], 50), 2),
        "query_encoding_plain_p50_ms": round(percentile(enc["plain"], 50), 2),
    }


def _reply_calls(engine: Any, calls: int) -> tuple[list[float], list[float], list[float]]:
    """Latencies (ms) of ``recommend`` followed by the service's reply, of ``recommend`` alone (the two
    interleaved, each query both ways, in turn first), and of the reply alone."""
    from qamrec.serve.conversation import Conversation, Event

    replier = engine.replier()  # built once, as the service builds it at start-up
    replied, unreplied, alone = [], [], []
    for i in range(calls):
        q = QUERIES[i % len(QUERIES)]
        for with_reply in ((True, False) if i % 2 else (False, True)):
            t = time.perf_counter()
            res = engine.recommend(q, k=10)
            if with_reply:
                t1 = time.perf_counter()
                u = res.understood
                replier.reply(res.movies, Conversation(messages=[q], seed=str(i)), Event("message", q),
                              res.query_vector, u, res.suggestions, [m for m, _ in u.anchors] if u else [])
                alone.append((time.perf_counter() - t1) * 1000)
            (replied if with_reply else unreplied).append((time.perf_counter() - t) * 1000)
    return replied, unreplied, alone


def encoder_backend(encoder: Any) -> str:
    """What encodes one query: "onnxruntime", "torchscript" or the model's own "sentence-transformers"."""
    if getattr(encoder, "uses_onnx", False):
        return "onnxruntime"
    traced = getattr(encoder, "_traced", encoder)
    return "torchscript" if getattr(traced, "traced", False) else "sentence-transformers"


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def run_serve_benchmark(engine: Any, movies: Any, text: np.ndarray, out: Path, *, run: Path, home: Path,
                        overrides: list[str], catalog: str = "movielens-32m", seconds: float = 20.0,
                        clients: int = 8, calls: int = 300, dtype: str = "int8", rank: int = 160,
                        threads: int = 0, workers: int = 2, service: bool = True, log: Any = print) -> dict[str, Any]:
    """In-process p50/p99 of ``engine.recommend`` over ``calls`` queries with the catalog extended by ``movies``
    (see :func:`_inprocess`), then (``service``) ``qamrec serve`` (``workers`` processes, ``dtype`` scoring,
    ``threads`` torch threads each) under load from a client process."""
    import httpx

    inproc = _inprocess(engine, movies, text, calls, dtype, log, rank)
    out.mkdir(parents=True, exist_ok=True)
    if not service:
        atomic_write_json(out / "serve.json", inproc)
        atomic_write_text(out / "serve.md", serve_table(inproc))
        return inproc
    settings = [*overrides, f"serve.workers={workers}", f"serve.catalog={catalog}", f"serve.item_dtype={dtype}",
                f"serve.index_rank={rank}",
                f"serve.threads={threads}", "serve.query_cache=0"]
    with served(run, home, settings, out / "serve-bench.log") as url:
        for q in QUERIES:  # warm every worker a little
            httpx.post(url + "/recommend", json={"query": q, "k": 10}, timeout=60)
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_client, args=(url, seconds, clients, queue))
        proc.start()
        s_lat, errors, codes, wall = queue.get()
        proc.join()
    result = inproc | {
        "service_dtype": _scoring(dtype, rank), "service_torch_threads": threads or "default", "service_workers": workers,
        "service_clients": clients, "service_seconds": round(wall, 2), "service_requests": len(s_lat) + errors,
        "service_rps": round(len(s_lat) / wall, 2), "service_p50_ms": round(percentile(s_lat, 50), 2),
        "service_p95_ms": round(percentile(s_lat, 95), 2), "service_p99_ms": round(percentile(s_lat, 99), 2),
        "errors": errors, "status_codes": {str(k): v for k, v in codes.items()},
        "mean_ms": round(statistics.fmean(s_lat), 2) if s_lat else None,
    }
    atomic_write_json(out / "serve.json", result)
    atomic_write_text(out / "serve.md", serve_table(result))
    return result


def serve_table(r: dict[str, Any]) -> str:
    """The markdown table of a ``bench serve`` result."""
    rows = [
        f"# Serving ({r['catalog_size']:,} movies: {r['candidates_in_graph']:,} graph candidates + MovieLens-32M)", "",
        f"In-process calls: {r['inprocess_calls']}, torch threads {r['torch_threads']}. Targets: in-process "
        "p50 < 15 ms and p99 < 50 ms; service >= 50 requests/s with 0 errors.", "",
        "| measure | p50 ms | p95 ms | p99 ms | requests/s | errors |", "|---|---|---|---|---|---|",
        f"| **recommend in-process as served** ({r['inprocess_dtype']} scoring, query encoder "
        f"{r['inprocess_encoder']}) | {r['inprocess_p50_ms']} | {r['inprocess_p95_ms']} | "
        f"{r['inprocess_p99_ms']} | - | - |",
        f"| recommend in-process, plain (float32 product, the model's own encode); served is "
        f"{r['speedup_p50']}x faster at p50 | {r['plain_p50_ms']} | - | {r['plain_p99_ms']} | - | - |",
    ]
    for d, v in r["by_dtype"].items():
        rows.append(f"| recommend in-process, {d} scoring (top-10 agreement with float32 "
                    f"{v['top10_agreement_with_float32']:.3f}) | {v['p50_ms']} | - | {v['p99_ms']} | - | - |")
    rows += [
        f"| recommend in-process, the {r['candidates_in_graph']:,} graph candidates only | "
        f"{r['graph_candidates_p50_ms']} | - | - | - | - |",
        f"| query encoding alone, as served (plain: {r['query_encoding_plain_p50_ms']} ms) | "
        f"{r['query_encoding_p50_ms']} | - | - | - | - |",
    ]
    if "parsed_p50_ms" in r:
        rows += [
            f"| recommend in-process as served, again (parse included) | {r['parsed_p50_ms']} | - | "
            f"{r['parsed_p99_ms']} | - | - |",
            f"| the same calls without the parse; with it they take {r['parse_ratio_p50']}x | {r['unparsed_p50_ms']} "
            "| - | - | - | - |",
            f"| the parse alone | {r['parse_alone_p50_ms']} | - | - | - | - |",
        ]
    if "replied_p50_ms" in r:
        rows += [
            f"| recommend in-process with the reply (retrieved template, slots, catalog facts) | "
            f"{r['replied_p50_ms']} | - | {r['replied_p99_ms']} | - | - |",
            f"| the same calls without the reply; the reply adds {r['reply_added_p50_ms']} ms at p50 | "
            f"{r['unreplied_p50_ms']} | - | - | - | - |",
            f"| the reply alone | {r['reply_alone_p50_ms']} | - | - | - | - |",
        ]
    if "service_p50_ms" not in r:
        return "\n".join(rows) + "\n"
    rows += [
        f"| HTTP POST /recommend ({r['service_workers']} workers, {r['service_dtype']}, torch threads "
        f"{r['service_torch_threads']}), {r['service_clients']} clients, {r['service_seconds']} s | "
        f"{r['service_p50_ms']} | {r['service_p95_ms']} | {r['service_p99_ms']} | {r['service_rps']} | {r['errors']} |",
    ]
    return "\n".join(rows) + "\n"
