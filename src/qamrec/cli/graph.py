"""``qamrec graph``: build the heterogeneous graph of a CRS dataset, or the MovieLens-32M-sized CSR graph."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from qamrec.cli.common import cfg, console

__all__ = ["graph_app"]

graph_app = typer.Typer(help="Build and inspect the heterogeneous graph.", no_args_is_help=True)


def _print_sizes(sizes: dict, title: str) -> None:
    """Nodes per node type and edges per edge type, with the total."""
    t = Table("node type", "nodes", title=title)
    for k, v in sizes["nodes"].items():
        t.add_row(k, f"{v:,}")
    e = Table("edge type (src__relation__dst)", "edges")
    for k, v in sizes["edges"].items():
        e.add_row(k, f"{v:,}")
    e.add_row("[bold]total[/]", f"[bold]{sum(sizes['edges'].values()):,}[/]")
    console.print(t)
    console.print(e)


@graph_app.command("build")
def graph_build(
    dataset: Annotated[str, typer.Option(help="CRS dataset whose graph to build: redial or inspired")] = "redial",
    force: Annotated[bool, typer.Option(help="rebuild even if a graph with these settings exists")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the sizes as JSON")] = False,
) -> None:
    """Build the heterogeneous graph of a dataset (embeddings cached) and print its size per type."""
    import time

    from qamrec.graph.build import build_or_load

    t0 = time.perf_counter()
    with console.status("building graph") as status:
        graph, folder = build_or_load(dataset, cfg(), log=lambda m: status.update(m), force=force)
    sizes = graph.sizes()
    if as_json:
        sys.stdout.write(json.dumps({"folder": str(folder), **sizes}) + "\n")
    else:
        _print_sizes(sizes, f"{dataset} graph in {folder} ({time.perf_counter() - t0:.1f} s)")


@graph_app.command("scale")
def graph_scale(
    source: Annotated[str, typer.Option(help="synth (raw/movielens/ml-32m-synth of the data home) or a folder "
                                             "with MovieLens ratings.csv, movies.csv and tags.csv")] = "synth",
    scale: Annotated[Optional[float], typer.Option(min=1e-6, max=1.0, help="synth: (re)generate the synthetic "
                                                   "data at this fraction of ML-32M first if it differs")] = None,
    features: Annotated[bool, typer.Option(help="movie text embeddings (cached); --no-features: structure only")]
    = True,
    out: Annotated[Optional[Path], typer.Option(help="output folder (default: graphs/scale-<source> of the home)")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the build statistics as JSON")] = False,
) -> None:
    """Build the MovieLens-32M-sized CSR graph (one CSC per relation, memory-mapped) and report time and memory."""
    from qamrec.graph.scale_build import build_scale_graph, scale_sources

    c = cfg()
    ratings, tags, movies, name = scale_sources(c, source, scale)
    folder = out or c.graph_dir / f"scale-{name}"
    encode = False
    if features:
        from qamrec.features.pipeline import text_function

        encode = text_function(c, progress=not as_json)
    with console.status("building the scale graph") as status:
        stats = build_scale_graph(ratings, tags, movies, folder, features=encode,
                                  progress=lambda m: status.update(m))
    if as_json:
        sys.stdout.write(json.dumps(stats) + "\n")
    else:
        _print_sizes(stats, f"{name} CSR graph in {folder}")
        console.print(f"{stats['val']:,} held-out ratings; built in {stats['build_s']:.1f} s, "
                      f"peak RSS {stats['peak_rss_gb']:.2f} GB")
