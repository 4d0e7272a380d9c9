"""``qamrec bench``: speed and memory benchmarks (serving latency, rising load, data scale)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from qamrec.cli.common import State, cfg, console, err_console, load_run_engine, run_or_default
from qamrec.errors import QamrecError

__all__ = ["bench_app"]

bench_app = typer.Typer(help="Speed and memory benchmarks (JSON + markdown).", no_args_is_help=True)


@bench_app.command("serve")
def bench_serve(
    run: Annotated[Optional[Path], typer.Option(help="trained run directory (default: the demo's)")] = None,
    out: Annotated[Path, typer.Option(help="folder for serve.json and serve.md")] = Path("bench"),
    seconds: Annotated[float, typer.Option(min=1, help="how long the client fires requests")] = 20.0,
    clients: Annotated[int, typer.Option(min=1, max=256, help="concurrent client connections")] = 8,
    calls: Annotated[int, typer.Option(min=10, help="in-process recommend calls timed")] = 300,
    dtype: Annotated[str, typer.Option(help="how the extended catalog is scored: int8, float32 or bfloat16")] = "int8",
    workers: Annotated[int, typer.Option(min=1, max=16, help="service worker processes")] = 2,
    threads: Annotated[int, typer.Option(min=0, help="torch threads per worker (0: torch's default)")] = 1,
    service: Annotated[bool, typer.Option(help="also time the HTTP service under load")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Latency in-process (the request's parse included, and timed without it) and of the service under load,
    on the catalog plus every MovieLens-32M movie."""
    from qamrec.bench.serve import run_serve_benchmark
    from qamrec.serve.catalog import movielens_catalog
    from qamrec.serve.index import ITEM_DTYPES

    if dtype not in ITEM_DTYPES:
        raise QamrecError(f"--dtype {dtype!r}: use one of {', '.join(ITEM_DTYPES)}")
    engine = load_run_engine(run)
    with console.status("embedding the MovieLens-32M titles (cached after the first run)"):
        movies, text = movielens_catalog(cfg())
    log = (lambda m: err_console.print(m)) if as_json else (lambda m: console.print(m))
    r = run_serve_benchmark(engine, movies, text, out, run=run_or_default(run), home=cfg().home,
                            overrides=State.overrides, seconds=seconds, clients=clients, calls=calls, dtype=dtype,
                            rank=cfg().serve.index_rank, threads=threads, workers=workers, service=service,
                            log=log)
    if as_json:
        sys.stdout.write(json.dumps(r) + "\n")
    else:
        console.print((out / "serve.md").read_text())


@bench_app.command("load")
def bench_load(
    run: Annotated[Optional[Path], typer.Option(help="trained run directory (default: the demo's)")] = None,
    out: Annotated[Path, typer.Option(help="folder for load.json, .md, .png and its sessions file")] = Path("bench"),
    seconds: Annotated[float, typer.Option(min=1, help="how long each level lasts")] = 60.0,
    levels: Annotated[str, typer.Option(help="concurrent clients per level, comma-separated")] = "1,8,32,64",
    workers: Annotated[int, typer.Option(min=1, max=16, help="service worker processes")] = 2,
    threads: Annotated[int, typer.Option(min=0, help="torch threads per worker (0: torch's default)")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object per level, as a list")] = False,
) -> None:
    """The service under rising load: throughput, latency, 5xx, 503 refusals and acknowledged vs stored feedback."""
    from qamrec.bench.load import run_load_benchmark

    try:
        counts = tuple(int(x) for x in levels.split(",") if x.strip())
    except ValueError:
        raise QamrecError(f"--levels {levels!r}: give client counts like 1,8,32,64") from None
    if not counts or min(counts) < 1 or max(counts) > 1024:
        raise QamrecError(f"--levels {levels!r}: give client counts from 1 to 1024, like 1,8,32,64")
    where = err_console if as_json else console
    r = run_load_benchmark(run_or_default(run), cfg().home, State.overrides, out, levels=counts, seconds=seconds,
                           workers=workers, threads=threads,
                           log=lambda m: where.print(m, soft_wrap=True, highlight=False))
    if as_json:
        sys.stdout.write(json.dumps(r["levels"]) + "\n")
    else:
        sys.stdout.write((out / "load.md").read_text())
        console.print(f"wrote {out / 'load.md'}, .json and .png", soft_wrap=True)


@bench_app.command("scale")
def bench_scale(
    scale: Annotated[str, typer.Option(help="fractions of MovieLens-32M, comma-separated")] = "0.01,0.1,1.0",
    out: Annotated[Optional[Path], typer.Option(help="folder for scale.json, .md, .png (default <home>/bench)")] = None,
    batches: Annotated[int, typer.Option(min=1, help="training batches timed per scale")] = 200,
    queries: Annotated[int, typer.Option(min=1, help="users whose embeddings query the item index")] = 1000,
    features: Annotated[bool, typer.Option(help="movie text embeddings in the graph and model")] = False,
    threads: Annotated[int, typer.Option(min=0, help="torch / FAISS threads (0: their default)")] = 0,
    seed: Annotated[int, typer.Option(help="seed of the synthetic data")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object per scale, as a list")] = False,
) -> None:
    """Graph build time and peak RSS, s per 1,000 training batches, catalog embedding and index recall per scale."""
    from qamrec.bench.scale import run_scale_benchmark

    try:
        scales = [float(x) for x in scale.split(",") if x.strip()]
    except ValueError:
        raise QamrecError(f"--scale {scale!r}: give fractions like 0.01,0.1,1.0") from None
    where = err_console if as_json else console
    folder = out or cfg().home / "bench"
    rows = run_scale_benchmark(cfg(), scales, folder, batches=batches, features=features, queries=queries,
                               threads=threads, seed=seed,
                               log=lambda m: where.print(m, soft_wrap=True, highlight=False))
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        sys.stdout.write((folder / "scale.md").read_text())
        console.print(f"wrote {folder / 'scale.md'}, .json and .png", soft_wrap=True)
