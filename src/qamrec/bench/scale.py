"""``qamrec bench scale``: how the MovieLens-32M pipeline grows with the data, from synthetic data at scales F.

For each scale F (a fraction of ML-32M's users, ratings and tags; the catalog grows as ``F ** 0.4``, see
:mod:`qamrec.data.synth`):

1. **synth**: ``synthesize_movielens`` into ``<home>/bench/scale/synth/scale-F-seedS`` (reused when its
   ``SYNTHETIC.json`` matches); its time is reported as ``synth_s``, apart from the build.
2. **build**: :func:`~qamrec.graph.scale_build.build_scale_graph` in a fresh Python process, so ``peak_rss_gb`` is
   the build's own peak (the child's ``getrusage``, interpreter and imports included) and not this
   process's; ``build_s`` is the builder's own wall time, ``build_wall_s`` the child's including start-up.
3. **train**: ``batches`` steps of :class:`~qamrec.models.linkgat.LinkGAT` with the CSR neighbour sampler
   (``sampled`` settings) -> ``s_per_1000_batches``.
4. **embed**: :func:`~qamrec.train.sampled.embed_catalog`, the whole catalog in batches -> ``embed_catalog_s``.
5. **index**: :class:`~qamrec.serve.ann.AnnIndex` over the catalog (exact up to ``serve.ann_exact_max``,
   FAISS IVF above) and, whatever the size, a FAISS IVF index too, each with its recall@10 against the
   exact product and its latency, on the embeddings of a sample of users.

Writes ``scale.json``, ``scale.md`` (table, growth exponents, notes) and ``scale.png`` (log-log) into ``out``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qamrec.config import Config
from qamrec.errors import MissingDataError, QamrecError
from qamrec.io import atomic_path, atomic_write_json, atomic_write_text, read_json

__all__ = ["QUANTITIES", "synth_dataset", "build_in_subprocess", "bench_scale", "growth_exponents",
           "write_report", "run_scale_benchmark"]

Log = Callable[[str], None]

#: the measured quantities, their units, and why each may grow other than linearly in the ratings
QUANTITIES: dict[str, tuple[str, str]] = {
    "build_s": ("s", "fixed costs (reading movies.csv and its genres, writing and hashing the files, the first "
                "numpy/torch calls) weigh on small graphs, and the sorts are O(E log E)"),
    "peak_rss_gb": ("GB", "the build process's baseline (Python, torch, polars: ~0.3-0.5 GB) dominates small "
                    "graphs; only the edge arrays grow with E"),
    "s_per_1000_batches": ("s", "a batch's cost is set by the batch size and fan-outs, not by E; what grows is "
                           "the dense AdamW update of every embedding row (O(users + movies) a step) and "
                           "the neighbourhoods filling up to the fan-out as degrees rise"),
    "embed_catalog_s": ("s", "the catalog grows as F^0.4 (synth's catalog_exponent), not with the ratings, while "
                        "each movie's sampled neighbourhood grows with its degree up to the fan-outs"),
}


def _movies_csv(config: Config, name: str) -> Path | None:
    """``movielens/<name>`` in the data home's raw folder, else in ``data.source``."""
    for root in (config.raw_dir, config.data.source):
        if root is not None and (Path(root) / "movielens" / name).is_file():
            return Path(root) / "movielens" / name
    return None


def synth_dataset(config: Config, scale: float, seed: int = 0, log: Log = lambda s: None) -> tuple[Path, float, bool]:
    """The synthetic dataset of ``scale``: (folder, seconds the synthesis took, whether it was cached)."""
    from qamrec.data.synth import synthesize_movielens

    folder = config.home / "bench" / "scale" / "synth" / f"scale-{scale:g}-seed{seed}"
    info = _synth_info(folder)
    if info is not None and info["stats"]["scale"] == scale and info["stats"]["seed"] == seed:
        return folder, float(info["stats"]["seconds"]), True
    movies = _movies_csv(config, "ml-32m/movies.csv")
    if movies is None:
        raise MissingDataError("movielens/ml-32m/movies.csv is missing from the data home and data.source: run "
                               "`qamrec data fetch movielens-32m` (or --set data.source=DIR)")
    log(f"scale {scale:g}: synthesizing into {folder}")
    stats = synthesize_movielens(movies, folder, scale=scale, seed=seed,
                                 tag_vocab=_movies_csv(config, "ml-25m/genome-tags.csv"))
    return folder, float(stats.seconds), False


def _synth_info(folder: Path) -> dict[str, Any] | None:
    """``SYNTHETIC.json`` when it and the files it lists (same sizes) are there."""
    try:
        info = read_json(folder / "SYNTHETIC.json")
        ok = all((folder / n).stat().st_size == f["bytes"] for n, f in info["files"].items())
    except (QamrecError, OSError, KeyError, TypeError):
        return None
    return info if ok else None


_CHILD = """
import json, sys, torch
from pathlib import Path
from qamrec.graph.scale_build import build_scale_graph
a = json.loads(sys.argv[1])
if a["threads"]:
    torch.set_num_threads(a["threads"])
tags = Path(a["tags"]) if a["tags"] else None
s = build_scale_graph(Path(a["ratings"]), tags, Path(a["movies"]), Path(a["out"]), features=a["features"])
print("QAMREC_BUILD " + json.dumps(s, default=str))
"""


def build_in_subprocess(folder: Path, out: Path, *, features: bool = False, threads: int = 0,
                        home: Path | None = None) -> dict[str, Any]:
    """Build the CSR graph of the MovieLens files in ``folder`` into ``out`` (emptied first) in a fresh Python
    process (``home``: its ``QAMREC_HOME``, where the text encoder's cache lives).

    Returns the builder's stats (``build_s``, ``peak_rss_gb`` of the child, ``nodes``, ``edges``...) plus
    ``build_wall_s`` (the child's whole life, start-up and imports included).
    """
    tags = folder / "tags.csv"
    args = {"ratings": str(folder / "ratings.csv"), "tags": str(tags) if tags.is_file() else None,
            "movies": str(folder / "movies.csv"), "out": str(out), "features": features, "threads": threads}
    shutil.rmtree(out, ignore_errors=True)
    env = os.environ | ({"QAMREC_HOME": str(home)} if home is not None else {})
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    line = next((x for x in proc.stdout.splitlines()[::-1] if x.startswith("QAMREC_BUILD ")), None)
    if proc.returncode or line is None:
        raise QamrecError(f"graph build of {folder} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(line.split(" ", 1)[1]) | {"build_wall_s": round(wall, 2)}


def _train(graph: Any, config: Config, batches: int) -> dict[str, Any]:
    """``batches`` training steps from a fresh model (over as many epochs as that takes): the model, ``steps``,
    ``train_s`` and ``s_per_1000_batches`` (the trainer's own clock: sampling, forward, backward, update)."""
    from qamrec.graph.featurestore import loader_data
    from qamrec.train import sampled
    from qamrec.train.distributed import DistInfo

    model = sampled.build_model(graph, config)
    opt = torch.optim.AdamW(model.parameters(), lr=config.sampled.lr, weight_decay=config.sampled.weight_decay)
    data = loader_data(graph)
    steps, seconds, epoch = 0, 0.0, 0
    while steps < batches:
        epoch += 1
        cfg = config.with_overrides([f"sampled.max_batches={batches - steps}"])
        row = sampled.train_epoch(model, opt, graph, data, cfg, epoch, DistInfo())
        if not row["steps"]:
            break
        steps, seconds = steps + int(row["steps"]), seconds + float(row["train_s"])
    return {"model": model, "steps": steps, "epochs": epoch, "train_s": seconds,
            "s_per_1000_batches": 1000 * seconds / max(steps, 1)}


def _timed_search(index: Any, queries: torch.Tensor, k: int = 10) -> float:
    t0 = time.perf_counter()
    index.search(queries, k)
    return 1000 * (time.perf_counter() - t0) / max(1, len(queries))


def _index_report(items: torch.Tensor, queries: torch.Tensor, config: Config) -> dict[str, Any]:
    """The served index (exact or FAISS by size) and a FAISS IVF index: build time, recall@10, latency."""
    from qamrec.serve.ann import AnnIndex

    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    served = AnnIndex(items, exact_max=config.serve.ann_exact_max, nprobe=config.serve.ann_nprobe,
                      seed=config.seed)
    out |= {"index_kind": served.kind, "index_build_s": round(time.perf_counter() - t0, 3),
            "recall@10": round(served.recall(queries, 10), 4),
            "index_ms_per_query": round(_timed_search(served, queries), 4)}
    exact = served if served.kind == "exact" else AnnIndex(items, "exact")
    out["exact_ms_per_query"] = round(_timed_search(exact, queries), 4)
    t0 = time.perf_counter()
    ivf = served if served.kind == "ivf" else AnnIndex(items, "ivf", nprobe=config.serve.ann_nprobe,
                                                       seed=config.seed)
    out |= {"ivf_build_s": round(time.perf_counter() - t0, 3), "ivf_nlist": int(ivf._faiss_index.nlist),
            "ivf_nprobe": ivf.nprobe, "ivf_recall@10": round(ivf.recall(queries, 10), 4),
            "ivf_ms_per_query": round(_timed_search(ivf, queries), 4)}
    return out


def bench_scale(config: Config, scale: float, *, batches: int = 200, features: bool = False, queries: int = 1000,
                threads: int = 0, seed: int = 0, log: Log = lambda s: None) -> dict[str, Any]:
    """Every measurement at one scale (see the module docstring); one row of the report."""
    import psutil

    from qamrec.graph.csr import CSRGraph
    from qamrec.train.sampled import embed_catalog, embed_nodes, val_sample

    folder, synth_s, cached = synth_dataset(config, scale, seed, log)
    graph_dir = config.home / "bench" / "scale" / "graphs" / f"scale-{scale:g}-seed{seed}"
    log(f"scale {scale:g}: building the graph in a subprocess")
    b = build_in_subprocess(folder, graph_dir, features=features, threads=threads, home=config.home)
    graph = CSRGraph.load(graph_dir)
    ratings = int(read_json(folder / "SYNTHETIC.json")["stats"]["ratings"])
    row: dict[str, Any] = {
        "scale": scale, "ratings": ratings, "users": graph.num_nodes["user"], "movies": graph.num_nodes["movie"],
        "edges": int(sum(graph.num_edges(et) for et in graph.edge_types)),
        "synth_s": round(synth_s, 2), "synth_cached": cached, "build_s": float(b["build_s"]),
        "build_wall_s": b["build_wall_s"], "peak_rss_gb": float(b["peak_rss_gb"]), "features": features,
    }
    cfg = config.with_overrides([f"sampled.text_features={str(features).lower()}"])
    log(f"scale {scale:g}: training {batches} batches")
    t = _train(graph, cfg, batches)
    model = t.pop("model")
    row |= {"batches": int(t["steps"]), "batch_size": cfg.sampled.batch_size,
            "s_per_1000_batches": round(float(t["s_per_1000_batches"]), 2),
            "train_rss_gb": round(psutil.Process().memory_info().rss / 1e9, 3)}
    log(f"scale {scale:g}: embedding the catalog")
    t0 = time.perf_counter()
    items = embed_catalog(model, graph, cfg.sampled.eval_batch_size, seed=cfg.seed)
    row["embed_catalog_s"] = round(time.perf_counter() - t0, 3)
    users, _ = val_sample(graph, queries, seed)
    q = embed_nodes(model, graph, "user", users, cfg.sampled.eval_batch_size, seed=cfg.seed + 1)
    row |= {"queries": len(users)} | _index_report(items.float(), q.float(), cfg)
    log(f"scale {scale:g}: {json.dumps(row)}")
    return row


def growth_exponents(rows: list[dict[str, Any]], x: str = "edges") -> dict[str, list[float | None]]:
    """Per quantity, the slope of log(quantity) against log(``x``) between consecutive scales (sorted by ``x``)."""
    rows = sorted(rows, key=lambda r: r[x])
    out: dict[str, list[float | None]] = {}
    for q in QUANTITIES:
        slopes: list[float | None] = []
        for a, b in zip(rows, rows[1:]):
            ok = min(a[q], b[q], a[x], b[x]) > 0 and a[x] != b[x]
            slopes.append(round(math.log(b[q] / a[q]) / math.log(b[x] / a[x]), 3) if ok else None)
        out[q] = slopes
    return out


def _markdown(rows: list[dict[str, Any]], slopes: dict[str, list[float | None]]) -> str:
    rows = sorted(rows, key=lambda r: r["ratings"])
    cols = ["scale", "ratings", "users", "movies", "edges", "synth_s", "build_s", "peak_rss_gb", "batches",
            "s_per_1000_batches", "embed_catalog_s", "index_kind", "recall@10", "ivf_recall@10", "ivf_ms_per_query",
            "exact_ms_per_query"]
    lines = ["# Scale benchmark (synthetic MovieLens-32M)", "",
             f"Features: {'text embeddings' if rows and rows[0].get('features') else 'off (structure only)'}; "
             f"batches of {rows[0].get('batch_size', '?') if rows else '?'} seed edges; "
             "peak RSS is the graph build's own process; synthesis time is apart from build_s; edges count "
             "every relation of the graph (both directions); ivf: FAISS IVF over the catalog, recall@10 "
             "against the exact product on user embeddings.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r.get(c, ''):,}" if isinstance(r.get(c), int) and not isinstance(
            r.get(c), bool) else str(r.get(c, "")) for c in cols) + " |")
    if len(rows) > 1:
        pairs = [f"{a['scale']:g}->{b['scale']:g}" for a, b in zip(rows, rows[1:])]
        lines += ["", "## Growth exponents", "",
                  "Slope of log(quantity) against log(edges) between consecutive scales (1 = linear).", "",
                  "| quantity | " + " | ".join(pairs) + " |", "|---|" + "---|" * len(pairs)]
        lines += [f"| {q} | " + " | ".join("" if s is None else f"{s:.2f}" for s in slopes[q]) + " |"
                  for q in QUANTITIES]
        per_movie = growth_exponents(rows, "movies")["embed_catalog_s"]
        lines += ["| embed_catalog_s against movies | " + " | ".join(
            "" if s is None else f"{s:.2f}" for s in per_movie) + " |"]
        notes = [f"- **{q}** grows as edges^{slopes[q][-1]:.2f} between the two largest scales, not linearly: "
                 f"{QUANTITIES[q][1]}." for q in QUANTITIES
                 if slopes[q] and slopes[q][-1] is not None and not 0.8 <= slopes[q][-1] <= 1.2]
        lines += ["", "## Where growth is not linear", ""] + (notes or ["- every quantity grows linearly."])
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r["ratings"])
    x = np.array([r["ratings"] for r in rows], dtype=float)
    fig, axes = plt.subplots(2, 2, figsize=(9, 7))
    for ax, (q, (unit, _)) in zip(axes.ravel(), QUANTITIES.items()):
        y = np.array([r[q] for r in rows], dtype=float)
        ax.loglog(x, y, "o-", label="measured")
        if len(x) and y[-1] > 0:
            ax.loglog(x, y[-1] * x / x[-1], "--", color="grey", label="linear (slope 1)")
        ax.set(title=q, xlabel="ratings", ylabel=unit)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_report(rows: list[dict[str, Any]], out: Path) -> dict[str, list[float | None]]:
    """``scale.json`` (rows and exponents), ``scale.md`` and ``scale.png`` into ``out``, each atomically."""
    out.mkdir(parents=True, exist_ok=True)
    slopes = growth_exponents(rows)
    atomic_write_json(out / "scale.json", {"rows": rows, "growth_exponents": slopes, "x": "edges"})
    atomic_write_text(out / "scale.md", _markdown(rows, slopes))
    _plot(rows, out / "scale.png")
    return slopes


def run_scale_benchmark(config: Config, scales: list[float], out: Path | None = None, *, batches: int = 200,
                        features: bool = False, queries: int = 1000, threads: int = 0, seed: int = 0,
                        log: Log = lambda s: None) -> list[dict[str, Any]]:
    """Measure every scale (ascending) and write the report into ``out`` (default ``<home>/bench``)."""
    if not scales or min(scales) <= 0 or max(scales) > 1:
        raise QamrecError(f"scales {scales}: give fractions in (0, 1], like 0.01,0.1,1.0")
    if threads:
        torch.set_num_threads(threads)
        try:
            import faiss

            faiss.omp_set_num_threads(threads)
        except ImportError:
            pass
    rows = [bench_scale(config, f, batches=batches, features=features, queries=queries, threads=threads, seed=seed,
                        log=log) for f in sorted(set(scales))]
    write_report(rows, out or config.home / "bench")
    return rows
