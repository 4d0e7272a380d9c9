"""``qamrec data``: fetch, prepare, link (catalog) and synthesize datasets."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from qamrec.cli.common import cfg, console, progress
from qamrec.errors import QamrecError

__all__ = ["data_app", "fetch_datasets", "prepare_datasets", "catalog_summary", "print_catalog"]

data_app = typer.Typer(help="Fetch, prepare, link and synthesize datasets.", no_args_is_help=True)


def fetch_datasets(names: list[str], source: Path | None) -> None:
    """Fetch ``names`` (or ``["all"]``) into the raw folder and print what was copied, unchanged or missing."""
    from qamrec.data.fetch import fetch
    from qamrec.data.registry import dataset_names

    c = cfg()
    source = source or c.data.source
    if names == ["all"]:
        names = dataset_names()
    table = Table("dataset", "copied", "unchanged", "missing", title=f"fetched into {c.raw_dir}")
    with progress() as bar:
        for name in names:
            task = bar.add_task(f"fetch {name}", total=None)

            def download_bar(desc: str, total: int | None):
                t = bar.add_task(desc, total=total)
                return lambda done, tot: bar.update(t, completed=done, total=tot)

            report = fetch(name, c.raw_dir, source=source, verify=c.data.verify,
                           progress=lambda i, n, t=task: bar.update(t, completed=i, total=n),
                           progress_factory=download_bar)
            bar.remove_task(task)
            table.add_row(name, str(len(report.copied)), str(len(report.unchanged)),
                          "\n".join(f"{k}: {v}" for k, v in report.missing.items()) or "-")
    console.print(table)


@data_app.command("fetch")
def data_fetch(
    names: Annotated[list[str], typer.Argument(help="dataset names, or 'all'")],
    from_: Annotated[Optional[Path], typer.Option("--from", help="local folder laid out like shared/data")] = None,
) -> None:
    """Fetch datasets from the official sources, or from a local folder with --from."""
    fetch_datasets(names, from_)


def prepare_datasets(names: list[str] | None, force: bool = False) -> None:
    """Prepare the named steps (default: every fetched dataset) and print a table of what was done."""
    from qamrec.data.prepare import prepare

    c = cfg()
    table = Table("step", "status", "tables (rows)", "notes", title=f"prepared into {c.prepared_dir}")
    with console.status("preparing") as status:
        reports = prepare(names or None, c.raw_dir, c.prepared_dir, force=force,
                          on_step=lambda s: status.update(f"preparing {s}"))
    for r in reports:
        table.add_row(r.step, r.status, ", ".join(f"{k} ({v:,})" for k, v in r.tables.items()),
                      "\n".join(r.notes) or "-")
    console.print(table)


@data_app.command("prepare")
def data_prepare(
    names: Annotated[Optional[list[str]], typer.Argument(help="steps (default: every fetched dataset + catalog)")] = None,
    force: Annotated[bool, typer.Option(help="redo steps even when their cache is fresh")] = False,
) -> None:
    """Parse fetched sources into typed Parquet tables (cached by the sources' digests)."""
    prepare_datasets(names, force)


def catalog_summary() -> dict:
    """The figures of the prepared catalog (``catalog/summary``)."""
    from qamrec.data.prepare import load_table

    return json.loads(load_table(cfg().prepared_dir, "catalog", "summary")["json"][0])


def print_catalog(summary: dict) -> None:
    """The catalog's coverage per dataset, the ReDial link's precision and the links per rule."""
    t = Table("items", "count", "linked", "with plot", "with MovieLens id", "with ratings", "with poster",
              title=f"catalog: {summary['movies']:,} movies")
    for ds in ("redial", "inspired"):
        s = summary[ds]
        t.add_row(f"{ds} candidates", f"{s['items']:,}", *(f"{s[k]:,} ({s[k] / max(s['items'], 1):.1%})" for k in
                  ("linked", "with_plot", "with_movielens_id", "with_ratings", "with_poster")))
    console.print(t)
    link = summary["redial_link"]
    console.print(f"ReDial movieId -> DBpedia entity link, measured on {link['gold_movies']:,} movies of the "
                  f"1,000 dialogues that exist raw and processed: precision [bold]{link['precision']:.4f}[/], "
                  f"coverage [bold]{link['coverage']:.4f}[/]")
    rules = Table("link source:rule", "links", title="how each link was made")
    for k, v in summary["rules"].items():
        rules.add_row(k, f"{v:,}")
    console.print(rules)


@data_app.command("catalog")
def data_catalog(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as one JSON object")] = False,
) -> None:
    """Build (if needed) and print the linked movie catalog and its coverage."""
    from qamrec.data.prepare import prepare

    prepare(["catalog"], cfg().raw_dir, cfg().prepared_dir)
    summary = catalog_summary()
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        print_catalog(summary)


@data_app.command("synth")
def data_synth(
    name: Annotated[str, typer.Argument(help="what to imitate: movielens-32m")],
    scale: Annotated[float, typer.Option(min=1e-6, max=1.0, help="fraction of the ML-32M sizes")] = 1.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Generate MovieLens-32M-shaped ratings and tags (into raw/movielens/ml-32m-synth)."""
    from qamrec.data.synth import synthesize_movielens

    if name != "movielens-32m":
        raise QamrecError(f"synth: unknown dataset '{name}' (known: movielens-32m)")
    c = cfg()
    movies = c.raw_dir / "movielens/ml-32m/movies.csv"
    if not movies.exists():
        raise QamrecError(f"{movies} is missing: run `qamrec data fetch movielens-32m` first")
    vocab = c.raw_dir / "movielens/ml-25m/genome-tags.csv"
    stats = synthesize_movielens(movies, c.raw_dir / "movielens/ml-32m-synth", scale=scale, seed=seed,
                                 tag_vocab=vocab if vocab.exists() else None)
    console.print(stats)
