"""The ``qamrec`` command line (typer + rich).

Global options come before the subcommand: ``qamrec --home DIR --set key=value data prepare``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qamrec.config import Config, load_config
from qamrec.errors import QamrecError

__all__ = ["app", "main"]

app = typer.Typer(help="qamrec: query-aware, multi-modal movie recommendation on a heterogeneous graph.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Fetch, prepare, link and synthesize datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
graph_app = typer.Typer(help="Build and inspect the heterogeneous graph.", no_args_is_help=True)
app.add_typer(graph_app, name="graph")
benchmark_app = typer.Typer(help="Benchmarks on the standard protocols.", no_args_is_help=True)
app.add_typer(benchmark_app, name="benchmark")
console = Console()
err_console = Console(stderr=True)


class _State:
    config: Config | None = None


def cfg() -> Config:
    if _State.config is None:
        _State.config = load_config()
    return _State.config


@app.callback()
def _main(
    home: Annotated[Optional[Path], typer.Option(help="data home (default $QAMREC_HOME or ~/.cache/qamrec)")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="config override key=value (repeatable)")] = [],
) -> None:
    _State.config = load_config(set_, home=home)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=True)


def _fetch(names: list[str], source: Path | None) -> None:
    from qamrec.data.fetch import fetch
    from qamrec.data.registry import dataset_names

    c = cfg()
    source = source or c.data.source
    if names == ["all"]:
        names = dataset_names()
    table = Table("dataset", "copied", "unchanged", "missing", title=f"fetched into {c.raw_dir}")
    with _progress() as bar:
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
    _fetch(names, from_)


def _prepare(names: list[str] | None, force: bool = False) -> None:
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
    _prepare(names, force)


def _catalog_summary() -> dict:
    from qamrec.data.prepare import load_table

    return json.loads(load_table(cfg().prepared_dir, "catalog", "summary")["json"][0])


def _print_catalog(summary: dict) -> None:
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
    summary = _catalog_summary()
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        _print_catalog(summary)


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


def _print_sizes(sizes: dict, title: str) -> None:
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


def _make_model(name: str):
    from qamrec.features.pipeline import text_function
    from qamrec.models import MODELS, QAMRec

    if name not in MODELS:
        raise QamrecError(f"unknown model {name!r} (known: {', '.join(MODELS)})")

    def make(c: Config):
        if name == QAMRec.name:
            return QAMRec(c.model, c.train, text_function(c), c.seed)
        return MODELS[name](text_function(c))  # type: ignore[call-arg]

    return make


def _train(dataset: str, out: Path, model: str, overwrite: bool, c: Config, quiet: bool = False) -> dict:
    from qamrec.train.run import train_run

    if c.train.threads:
        import torch

        torch.set_num_threads(c.train.threads)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[info]}"), console=err_console, transient=quiet) as bar:
        task = bar.add_task(f"{model} on {dataset}: preparing", total=c.train.epochs, info="")

        def on_epoch(r: dict) -> None:
            info = f"loss {r['loss']:.3f}" + "".join(
                f"  {k[4:]} {r[k]:.3f}" for k in ("dev_recall@10", "dev_recall@50", "dev_ndcg@10") if k in r)
            bar.update(task, completed=r["epoch"], info=info, description=f"{model} on {dataset}: epoch {r['epoch']}")
            if not quiet:
                bar.console.print(f"epoch {r['epoch']:>3}  {info}  ({r['train_s']:.1f} s)")

        return train_run(dataset, c, out, make_model=_make_model(model), on_epoch=on_epoch,
                         log=lambda m: bar.update(task, info=m), overwrite=overwrite)


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="redial or inspired")],
    out: Annotated[Path, typer.Option(help="run directory to write")],
    model: Annotated[str, typer.Option(help="qamrec, or a baseline: popularity, text_similarity, cooccurrence")] = "qamrec",
    overwrite: Annotated[bool, typer.Option(help="replace an existing run directory")] = False,
) -> None:
    """Train a model (graph built or reused first) and write a run directory."""
    m = _train(dataset, out, model, overwrite, cfg())
    _print_metrics({m["model"]: m["test"]}, dataset, f"{m['test']['n_examples']:,} test examples "
                   f"({m['test_examples_excluded_as_training']:,} of {m['test_examples_in_file']:,} in "
                   f"{Path(m['test_file']).name} excluded: their dialogues are training data)")
    console.print(f"run directory: {out}")


def _print_metrics(rows: dict[str, dict], dataset: str, caption: str = "") -> None:
    from qamrec.eval.evaluate import comparison_table

    console.print(caption)
    console.print(comparison_table(rows, dataset))


@app.command()
def evaluate(
    run: Annotated[Path, typer.Option(help="run directory")],
    test: Annotated[Optional[Path], typer.Option(help="test file (UniCRS format); default: the run's own")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the metrics to this JSON file")] = None,
    include_training: Annotated[bool, typer.Option(help="keep examples from dialogues the model trained on")] = False,
) -> None:
    """Evaluate a run on a test file with the UniCRS / MSCRS protocol (full ranking, top 50)."""
    from qamrec.io import atomic_write_json

    m, name, dataset = _evaluate_run(run, test, include_training)
    test = Path(m["test_file"])
    n_file, excluded = m["examples_in_file"], m["excluded_as_training"]
    if json_out:
        atomic_write_json(json_out, m)
    note = (f"{test.name}: {n_file:,} examples in the file"
            + (f"; {excluded:,} excluded (dialogues used for training), {m['n_examples']:,} evaluated" if excluded else
               ", all evaluated") + f"  [{m['seconds']:.1f} s]")
    _print_metrics({name: m}, dataset, note)
    t = Table("variant", "examples", "R@1", "R@10", "R@50", "NDCG@10", "MRR@10", "MAP", "P@10",
              title="variants (one gold item per example: P@k = R@k / k, MAP = MRR without a cut-off)")
    for prefix, label in (("", "all (protocol)"), ("new_items.", "new items only"), ("cold_start.", "cold start")):
        t.add_row(label, f"{int(m[prefix + 'n_examples']):,}", *(f"{m[prefix + k]:.4f}" for k in
                  ("recall@1", "recall@10", "recall@50", "ndcg@10", "mrr@10", "map", "precision@10")))
    console.print(t)


def _evaluate_run(run: Path, test: Path | None, include_training: bool = False) -> tuple[dict, str, str]:
    """Metrics of a run directory on a test file (default: its held-out file, or the dataset's validation file)."""
    import time

    from qamrec.data.crs import CRS_SOURCES
    from qamrec.io import read_json
    from qamrec.train.run import evaluate_model, load_run, select_test_examples

    c = cfg()
    t0 = time.perf_counter()
    model, graph, saved = load_run(run, c)
    dataset = saved["dataset"]
    src = CRS_SOURCES[dataset]
    if test is None:
        test = run / "test.jsonl" if (run / "test.jsonl").exists() else c.raw_dir / src.valid_file
    if not test.exists():
        raise QamrecError(f"{test}: no such test file")
    entity2id = {str(k): int(v) for k, v in read_json(c.raw_dir / src.entity2id).items()}
    examples, n_file, excluded = select_test_examples(graph, test, entity2id, include_training)
    m = evaluate_model(model, examples, graph.meta["item_ids"])
    return ({"test_file": str(test), "examples_in_file": n_file, "excluded_as_training": excluded,
             "seconds": round(time.perf_counter() - t0, 2)} | m), model.name, dataset


@benchmark_app.command("crs")
def benchmark_crs(
    dataset: Annotated[str, typer.Option(help="redial or inspired")],
    test: Annotated[Optional[Path], typer.Option(help="test file (UniCRS format); default: the held-out/validation file")] = None,
    out: Annotated[Path, typer.Option(help="folder for the table, JSON, chart and runs")] = Path("bench"),
    only: Annotated[Optional[list[str]], typer.Option(help="run only these variants (repeatable)")] = None,
) -> None:
    """Baselines, our model and its ablations on the UniCRS protocol: markdown table + JSON + bar chart."""
    from qamrec.eval.benchmark import run_crs_benchmark

    run_crs_benchmark(
        dataset, cfg(), out, test,
        train=lambda d, run, model, c: _train(d, run, model, True, c, quiet=True),
        evaluate_run=lambda run, t: _evaluate_run(run, t)[0], only=only, log=lambda m: console.print(m, markup=False, highlight=False))
    console.print((out / f"crs_{dataset}.md").read_text())
    console.print(f"wrote {out / f'crs_{dataset}.md'}, .json and .png")


@app.command()
def demo(
    from_: Annotated[Optional[Path], typer.Option("--from", help="local folder laid out like shared/data")] = None,
) -> None:
    """The main job end to end: fetch (or locate) the data, prepare it, print the catalog summary."""
    from qamrec.data.registry import dataset_names

    _fetch(dataset_names(), from_)
    _prepare(None)
    _print_catalog(_catalog_summary())


def main() -> None:
    """Entry point: user errors are one clear line on stderr and exit status 2, never a traceback."""
    try:
        app()  # standalone: usage errors print a usage line and exit 2
    except QamrecError as e:
        err_console.print(f"[bold red]error:[/] {e}")
        sys.exit(2)


if __name__ == "__main__":
    main()
