"""``qamrec demo``: the main job end to end (data, graph, a trained model, recommendations, the web page)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from qamrec.cli.common import cfg, console, load_run_engine
from qamrec.cli.data import catalog_summary, fetch_datasets, prepare_datasets, print_catalog
from qamrec.cli.serve import print_recommendations, serve_run
from qamrec.cli.train import run_training

__all__ = ["DEMO_QUERIES", "demo"]

DEMO_QUERIES = (
    ("funny heist movie with a great ensemble", ["Ocean's Eleven (2001)"]),
    ("a slow-burn sci-fi with a twist, nothing gory", ["Arrival (2016)"]),
    ("something scary for halloween night", []),
)


def demo(
    from_: Annotated[Optional[Path], typer.Option("--from", help="local folder laid out like shared/data")] = None,
    dataset: Annotated[str, typer.Option(help="the CRS dataset the demo model learns from")] = "redial",
    web: Annotated[bool, typer.Option(help="start the web page at the end")] = True,
    port: Annotated[Optional[int], typer.Option(help="port of the web page (default serve.port)")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="at most this many training epochs for the demo model")] = 6,
) -> None:
    """The main job end to end: data, graph, a trained model (cached), recommendations, the web page."""
    from qamrec.data.registry import dataset_names
    from qamrec.train.run import RUN_FILES, test_summary
    from qamrec.train.rundir import reusable_run

    c = cfg()
    fetch_datasets(dataset_names(), from_)
    prepare_datasets(None)
    print_catalog(catalog_summary())
    run = c.runs_dir / "default"
    tc = c.model_copy(update={"train": c.train.model_copy(update={"epochs": min(c.train.epochs, epochs)})})
    complete = all((run / f).exists() for f in RUN_FILES)
    if complete and reusable_run(run, tc, dataset, "qamrec") is not None:
        console.print(f"using the trained model in {run} (delete it to train again)")
    else:
        again = " again: the cached one was trained with other settings" if complete else ""
        console.print(f"training the demo model on {dataset}{again} (once; it is cached in {run})")
        m = run_training(dataset, run, "qamrec", True, tc)
        console.print(test_summary(m))
    engine = load_run_engine(run)
    from qamrec.serve.engine import UnknownTitleError

    for text, liked in DEMO_QUERIES:
        ids = []
        for t in liked:
            try:
                ids.append(engine.resolve(t))
            except UnknownTitleError as e:  # a model trained without MovieLens may not know every title
                console.print(f"[dim]{e}[/]", highlight=False)
        result = engine.recommend(text, k=8, anchors=ids)
        print_recommendations(engine, result, text + (f"  (liked: {', '.join(liked)})" if liked else ""))
    if web:
        serve_run(run, None, port, engine)
