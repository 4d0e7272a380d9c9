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
bench_app = typer.Typer(help="Speed and memory benchmarks (JSON + markdown).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
console = Console()
err_console = Console(stderr=True)


class _State:
    config: Config | None = None
    overrides: list[str] = []


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
    _State.overrides = list(set_)


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


def _make_model(name: str):
    from qamrec.features.pipeline import text_function
    from qamrec.models import MODELS, QAMRec

    if name not in MODELS:
        raise QamrecError(f"unknown model {name!r} (known: {', '.join(MODELS)})")

    def make(c: Config):
        if name == QAMRec.name:
            return QAMRec(c.model, c.train, text_function(c), c.seed)
        if hasattr(MODELS[name], "from_config"):  # a model with settings of its own (mscrs: model.mscrs.*)
            return MODELS[name].from_config(c, text_function(c))  # type: ignore[attr-defined]
        return MODELS[name](text_function(c))  # type: ignore[call-arg]

    return make


def _train(dataset: str, out: Path, model: str, overwrite: bool, c: Config, quiet: bool = False,
           resume: bool = True) -> dict:
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
                         log=lambda m: bar.update(task, info=m), overwrite=overwrite, resume=resume)


def _train_scale(dataset: str, out: Path, model: str, overwrite: bool, resume: bool) -> None:
    """Sampled mini-batch training of LinkGAT on a MovieLens-format dataset (one process or under torchrun)."""
    from qamrec.train.scale import train_scale

    if model not in ("qamrec", "linkgat"):
        raise QamrecError(f"--model {model}: a MovieLens dataset trains the linkgat model (sampled mini-batches)")

    def on_epoch(r: dict) -> None:
        info = "".join(f"  {k} {r[k]:.4f}" for k in ("loss", "dev_recall@10", "dev_ndcg@10") if k in r)
        err_console.print(f"epoch {r['epoch']:>3}{info}  ({r['train_s']:.1f} s, {r['s_per_1000_batches']:.1f} s/1000 "
                          f"batches)", highlight=False)

    m, dist = train_scale(dataset, cfg(), out, on_epoch=on_epoch, overwrite=overwrite, resume=resume,
                          log=lambda msg: err_console.print(msg, highlight=False))
    if dist.main:
        if m.get("resumed_from_epoch"):
            console.print(f"resumed from the checkpoint of epoch {m['resumed_from_epoch']} in {out / 'checkpoint'}")
        val, pop = m.get("val") or {}, m.get("val_popularity") or {}
        console.print(f"linkgat on {dataset}: {m['n_ratings']:,} training ratings, {m['world_size']} process(es), "
                      f"best epoch {m['best_epoch']}; validation ({val.get('n_users', 0):,} users, whole catalog): "
                      f"recall@10 {val.get('recall@10', float('nan')):.4f}, ndcg@10 {val.get('ndcg@10', float('nan')):.4f} "
                      f"(popularity: {pop.get('recall@10', float('nan')):.4f} / {pop.get('ndcg@10', float('nan')):.4f})")
        console.print(f"run directory: {out}")


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="redial or inspired; or a MovieLens dataset (movielens-32m-synth, "
                                              "movielens-32m, ...) or folder of its CSV files: sampled training "
                                              "of linkgat, also under torchrun")],
    out: Annotated[Path, typer.Option(help="run directory to write")],
    model: Annotated[str, typer.Option(help="qamrec, or a baseline: mscrs, popularity, text_similarity, cooccurrence")] = "qamrec",
    overwrite: Annotated[bool, typer.Option(help="replace an existing run directory")] = False,
    resume: Annotated[bool, typer.Option(help="go on from OUT/checkpoint, left by an interrupted training "
                                              "with the same settings (--no-resume: start over)")] = True,
) -> None:
    """Train a model (graph built or reused first) and write a run directory."""
    from qamrec.train.scale import is_scale_dataset

    if is_scale_dataset(dataset):
        return _train_scale(dataset, out, model, overwrite, resume)
    m = _train(dataset, out, model, overwrite, cfg(), resume=resume)
    if m.get("resumed_from_epoch"):
        console.print(f"resumed from the checkpoint of epoch {m['resumed_from_epoch']} in {out / 'checkpoint'}")
    _print_metrics({m["model"]: m["test"]}, dataset, f"{m['test']['n_examples']:,} test examples "
                   f"({m['test_examples_excluded_as_training']:,} of {m['test_examples_in_file']:,} in "
                   f"{Path(m['test_file']).name} excluded: their dialogues are training data)")
    console.print(f"run directory: {out}")
    _print_model_note(model)


def _print_model_note(name: str) -> None:
    """What a re-implemented model leaves out of its paper (``MODELS[name].note``), if anything."""
    from qamrec.models import MODELS

    if note := getattr(MODELS.get(name), "note", ""):
        console.print(f"[dim]{name}: {note}[/]", highlight=False)


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
    _print_model_note(name)
    t = Table("variant", "examples", "R@1", "R@10", "R@50", "NDCG@10", "MRR@10", "MAP", "P@10",
              title="variants (one gold item per example: P@k = R@k / k, MAP = MRR without a cut-off)")
    for prefix, label in (("", "all (protocol)"), ("new_items.", "new items only"), ("cold_start.", "cold start")):
        t.add_row(label, f"{int(m[prefix + 'n_examples']):,}", *(f"{m[prefix + k]:.4f}" for k in
                  ("recall@1", "recall@10", "recall@50", "ndcg@10", "mrr@10", "map", "precision@10")))
    console.print(t)


def _run_test_examples(run: Path, dataset: str, graph, test: Path | None = None,
                       include_training: bool = False) -> tuple[list, int, int, Path]:
    """The test examples of a run: ``test``, else its held-out file, else the dataset's validation file.
    Returns (examples, examples in the file, excluded as training, the file)."""
    from qamrec.data.crs import CRS_SOURCES
    from qamrec.io import read_json
    from qamrec.train.run import select_test_examples

    c = cfg()
    src = CRS_SOURCES[dataset]
    if test is None:
        test = run / "test.jsonl" if (run / "test.jsonl").exists() else c.raw_dir / src.valid_file
    if not test.exists():
        raise QamrecError(f"{test}: no such test file")
    entity2id = {str(k): int(v) for k, v in read_json(c.raw_dir / src.entity2id).items()}
    return (*select_test_examples(graph, test, entity2id, include_training), test)


def _evaluate_run(run: Path, test: Path | None, include_training: bool = False) -> tuple[dict, str, str]:
    """Metrics of a run directory on a test file (default: its held-out file, or the dataset's validation file)."""
    import time

    from qamrec.train.run import evaluate_model, load_run

    t0 = time.perf_counter()
    model, graph, saved = load_run(run, cfg())
    dataset = saved["dataset"]
    examples, n_file, excluded, test = _run_test_examples(run, dataset, graph, test, include_training)
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


@benchmark_app.command("mscrs-sensitivity")
def benchmark_mscrs_sensitivity(
    dataset: Annotated[str, typer.Option(help="redial or inspired")] = "inspired",
    out: Annotated[Path, typer.Option(help="folder for mscrs_sensitivity_<dataset>.{md,json} and the two plots")]
    = Path("docs/results"),
    runs: Annotated[Optional[Path], typer.Option(help="run directories (default $QAMREC_HOME/runs/mscrs-sensitivity)")]
    = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the results to this JSON file")] = None,
    k_values: Annotated[str, typer.Option(help="neighbours per item to sweep, comma-separated")] = "5,10,20,50,100",
    lambdas: Annotated[str, typer.Option(help="text/image weights to sweep, comma-separated")] = "0,0.25,0.5,0.75,1",
) -> None:
    """MSCRS's kNN size k and text/image weight lambda (its Figure 5): one training per point, test recall."""
    from qamrec.eval.mscrs_sensitivity import run_mscrs_sensitivity
    from qamrec.io import atomic_write_json

    try:
        ks = tuple(int(x) for x in k_values.split(",") if x.strip())
        lams = tuple(float(x) for x in lambdas.split(",") if x.strip())
    except ValueError:
        raise QamrecError(f"--k-values {k_values!r} / --lambdas {lambdas!r}: give numbers like 5,10,20") from None
    c = cfg()
    r = run_mscrs_sensitivity(dataset, c, out, runs or c.runs_dir / "mscrs-sensitivity",
                              train=lambda d, run, cc: _train(d, run, "mscrs", True, cc, quiet=True),
                              log=lambda m: console.print(m, markup=False, highlight=False), k_values=ks,
                              lambdas=lams)
    if json_out:
        atomic_write_json(json_out, r)
    console.print((out / f"mscrs_sensitivity_{dataset}.md").read_text())
    console.print(f"wrote {out / f'mscrs_sensitivity_{dataset}'}.md, .json, _k.png and _lambda.png")


@benchmark_app.command("learning-curve")
def benchmark_learning_curve(
    dataset: Annotated[str, typer.Option(help="redial or inspired")] = "redial",
    out: Annotated[Path, typer.Option(help="folder for learning_curve_<dataset>.{md,json,png}")] = Path("docs/results"),
    runs: Annotated[Optional[Path], typer.Option(help="run directories (default $QAMREC_HOME/runs/learning-curve)")]
    = None,
    fractions: Annotated[str, typer.Option(help="shares of the training dialogues, comma-separated")] = "0.25,0.5,1",
    target_dialogues: Annotated[int, typer.Option(min=0, help="extrapolate the log-linear fit to this many "
                                                              "training dialogues (0: the largest point)")] = 0,
) -> None:
    """Test recall against the number of training dialogues (one training of our model per share)."""
    from qamrec.data.crs import load_crs
    from qamrec.eval.learning_curve import run_learning_curve
    from qamrec.train.run import evaluate_model, load_run, select_test_examples

    try:
        shares = tuple(float(x) for x in fractions.split(",") if x.strip())
    except ValueError:
        raise QamrecError(f"--fractions {fractions!r}: give shares like 0.25,0.5,1") from None

    def inspect(c: Config, run: Path) -> dict[str, float]:
        crs = load_crs(dataset, c)
        targets = {e.item for e in crs.train}
        model, graph, _ = load_run(run, c)
        test, _, _ = select_test_examples(graph, crs.test_file, crs.entity2id)
        unseen = [e for e in test if e.item not in targets]
        seen = [e for e in test if e.item in targets]
        items = graph.meta["item_ids"]
        return {"train_dialogues": crs.n_train_dialogues, "unseen_gold": len(unseen) / max(len(test), 1),
                "unseen_recall@50": evaluate_model(model, unseen, items)["recall@50"] if unseen else 0.0,
                "seen_recall@10": evaluate_model(model, seen, items)["recall@10"] if seen else 0.0}

    c = cfg()
    run_learning_curve(dataset, c, out, runs or c.runs_dir / "learning-curve",
                       train=lambda d, run, cc: _train(d, run, "qamrec", True, cc, quiet=True), inspect=inspect,
                       log=lambda m: console.print(m, markup=False, highlight=False), fractions=shares,
                       target_dialogues=target_dialogues)
    console.print((out / f"learning_curve_{dataset}.md").read_text())
    console.print(f"wrote {out / f'learning_curve_{dataset}'}.md, .json and .png")


@benchmark_app.command("rounds")
def benchmark_rounds(
    run: Annotated[Optional[Path], typer.Option(help="trained run directory (default: the demo's)")] = None,
    out: Annotated[Path, typer.Option(help="folder for the table, JSON and plot")] = Path("bench"),
    rounds: Annotated[int, typer.Option(min=1, max=20)] = 5,
    users: Annotated[int, typer.Option(min=0, help="at most this many simulated users (0: all)")] = 0,
) -> None:
    """Multi-round sessions with simulated users (MAGUS): SA@r without, with naive and with propagated feedback."""
    from qamrec.eval.rounds import run_rounds_benchmark, sim_users

    run = _run_or_default(run)
    engine = _engine(run)
    dataset = engine.dataset
    examples, _, _, test = _run_test_examples(run, dataset, engine.graph)
    item_movie = {e: int(engine.cand_movie[j]) for j, e in enumerate(engine.graph.meta["item_ids"])}
    sims = sim_users(examples, item_movie)
    sims = sims[:users] if users else sims
    console.print(f"{len(sims)} simulated users from {test.name} ({dataset})")
    with _progress() as bar:
        task = bar.add_task("sessions", total=None)
        run_rounds_benchmark(engine, sims, out, dataset, rounds=rounds,
                             progress=lambda i, n: bar.update(task, completed=i, total=n))
    console.print((out / f"rounds_{dataset}.md").read_text())
    console.print(f"wrote {out / f'rounds_{dataset}.md'}, .json and .png")


@benchmark_app.command("sequential")
def benchmark_sequential(
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the per-model results here")] = None,
    out: Annotated[Path, typer.Option(help="folder for sequential_ml100k.md/.json and the modality plot")] = Path("bench"),
    seed: Annotated[int, typer.Option(help="seed of the models, batches and sampled negatives")] = 0,
    epochs: Annotated[int, typer.Option(min=1, help="at most this many SASRec epochs (early stopping)")] = 60,
    mixture_epochs: Annotated[int, typer.Option(min=1, help="at most this many mixture epochs after SASRec")] = 8,
    model: Annotated[Optional[list[str]], typer.Option(help="popularity, sasrec, sasrec+modalities (repeatable)")] = None,
    lr: Annotated[float, typer.Option(help="Adam learning rate")] = 3e-3,
    dim: Annotated[int, typer.Option(help="hidden size")] = 64,
    dropout: Annotated[float, typer.Option(help="dropout")] = 0.2,
    loss: Annotated[str, typer.Option(help="ce (softmax over all items) or bce (one sampled negative)")] = "ce",
) -> None:
    """Popularity, SASRec and SASRec + modality mixture on MovieLens-100K: leave-one-out, full ranking."""
    from qamrec.eval.sequential import FULL_KEYS, PUBLISHED_SEQUENTIAL, SAMPLED_KEYS
    from qamrec.eval.sequential_benchmark import SeqTrainConfig, run_sequential_benchmark
    from qamrec.io import atomic_write_json

    if loss not in ("ce", "bce"):
        raise QamrecError(f"--loss {loss!r}: use ce or bce")
    known = ("popularity", "sasrec", "sasrec+modalities")
    if unknown := [m for m in model or [] if m not in known]:
        raise QamrecError(f"unknown model(s) {unknown} (known: {', '.join(known)})")
    tc = SeqTrainConfig(seed=seed, epochs=epochs, mixture_epochs=mixture_epochs, lr=lr, dim=dim, dropout=dropout,
                        loss=loss)
    rows = run_sequential_benchmark(cfg(), out, tc, models=[m for m in known if not model or m in model],
                                    log=lambda m: console.print(m, markup=False, highlight=False))
    t = Table("model", *FULL_KEYS, "s.hr@10", "s.ndcg@10", "source",
              title="MovieLens-100K, leave-one-out, full ranking (history removed); s.*: sampled, 100 negatives")
    for r in rows:
        t.add_row(r["model"], *(f"{r[k]:.4f}" for k in (*FULL_KEYS, *SAMPLED_KEYS)), f"seed {seed}")
    for name, m in PUBLISHED_SEQUENTIAL.items():
        t.add_row(name, *(f"{m[k]:.4f}" for k in FULL_KEYS), "-", "-", "MSMRec T4")
    console.print(t)
    if json_out:
        atomic_write_json(json_out, rows)
    console.print(f"wrote {out / 'sequential_ml100k.md'}, .json" + (" and sequential_modality_groups.png" if any(
        "modality_weights_by_group" in r for r in rows) else ""))


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
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Latency in-process and of the service under load, on the catalog plus every MovieLens-32M movie."""
    from qamrec.serve.bench import movielens_catalog, run_serve_benchmark
    from qamrec.serve.index import ITEM_DTYPES

    if dtype not in ITEM_DTYPES:
        raise QamrecError(f"--dtype {dtype!r}: use one of {', '.join(ITEM_DTYPES)}")
    engine = _engine(run)
    with console.status("embedding the MovieLens-32M titles (cached after the first run)"):
        movies, text = movielens_catalog(cfg())
    log = (lambda m: err_console.print(m)) if as_json else (lambda m: console.print(m))
    r = run_serve_benchmark(engine, movies, text, out, run=_run_or_default(run), home=cfg().home,
                            overrides=_State.overrides, seconds=seconds, clients=clients, calls=calls, dtype=dtype,
                            rank=cfg().serve.index_rank, threads=threads, workers=workers, log=log)
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
    from qamrec.serve.loadbench import run_load_benchmark

    try:
        counts = tuple(int(x) for x in levels.split(",") if x.strip())
    except ValueError:
        raise QamrecError(f"--levels {levels!r}: give client counts like 1,8,32,64") from None
    if not counts or min(counts) < 1 or max(counts) > 1024:
        raise QamrecError(f"--levels {levels!r}: give client counts from 1 to 1024, like 1,8,32,64")
    where = err_console if as_json else console
    r = run_load_benchmark(_run_or_default(run), cfg().home, _State.overrides, out, levels=counts, seconds=seconds,
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
    from qamrec.eval.scale_bench import run_scale_benchmark

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


def _run_or_default(run: Path | None) -> Path:
    from qamrec.train.run import RUN_FILES

    c = cfg()
    run = run or c.runs_dir / "default"
    if not all((run / f).exists() for f in RUN_FILES):
        hint = "run `make demo` (it trains one)" if run == c.runs_dir / "default" else "check --run"
        raise QamrecError(f"{run}: no complete trained run directory here; {hint} or `qamrec train --out {run}`")
    return run


def _engine(run: Path | None):
    from qamrec.serve.engine import Engine

    run = _run_or_default(run)
    with console.status(f"loading {run}"):
        return Engine.from_run(run, cfg())


def _print_recommendations(engine, result, title: str) -> None:
    gated = getattr(result, "modality_weights", None) is not None  # the model has a modality gate
    t = Table("#", "title (year)", "genres", "score", "why", *(["modality"] if gated else []), title=title,
              title_justify="left")
    for i, m in enumerate(result.movies, 1):
        top = max((m.get("modality_weights") or {}).items(), key=lambda x: x[1], default=None)
        t.add_row(str(i), f"{m['title']} ({m['year']})" if m["year"] else m["title"], ", ".join(m["genres"][:3]),
                  f"{m['score']:.2f}", m["reason"], *([f"{top[0]} {top[1]:.2f}" if top else "-"] if gated else []))
    console.print(t)
    att = ", ".join(f"{a['label']} {a['weight']:.2f}" for a in result.attended[:6])
    console.print(f"[dim]attended to: {att}[/]", highlight=False)
    if getattr(result, "understood", None):
        console.print(f"[dim]understood: {result.understood.summary}[/]", highlight=False)
    if getattr(result, "modality_weights", None):
        mods = ", ".join(f"{n} {w:.2f}" for n, w in sorted(result.modality_weights.items(), key=lambda x: -x[1]))
        console.print(f"[dim]modalities (mean gate weight over these movies): {mods}[/]", highlight=False)
    if result.suggestions:
        console.print("[dim]refine with: " + " | ".join(s.label for s in result.suggestions) + "[/]", highlight=False)


@app.command()
def recommend(
    query: Annotated[str, typer.Argument(help="what you want, in your own words")],
    liked: Annotated[list[str], typer.Option(help="a title you liked, e.g. \"Ocean's Eleven (2001)\" (repeatable)")] = [],
    disliked: Annotated[list[str], typer.Option(help="a title you did not like (repeatable)")] = [],
    k: Annotated[int, typer.Option(min=1, max=100, help="how many movies")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    run: Annotated[Optional[Path], typer.Option(help="trained run directory (default: the demo's)")] = None,
) -> None:
    """Recommend movies for a request, with the reasons the model's attention gives."""
    from qamrec.serve.engine import Feedback
    from qamrec.serve.schemas import MAX_QUERY_CHARS

    if not query.strip() or len(query) > MAX_QUERY_CHARS:
        raise QamrecError(f"the query must have 1 to {MAX_QUERY_CHARS} characters")
    engine = _engine(run)
    resolved = {t: engine.resolve(t) for t in [*liked, *disliked]}
    fb = Feedback(disliked=[resolved[t] for t in disliked])
    result = engine.recommend(query, fb, k=k, anchors=[resolved[t] for t in liked])
    if as_json:
        understood = result.understood.as_dict() if result.understood is not None else None
        sys.stdout.write(json.dumps({"query": result.query, "resolved": resolved, "movies": result.movies,
                                     "attended": result.attended[:25],
                                     "suggestions": [list(s.labels) for s in result.suggestions],
                                     "understood": understood}
                                    | ({"modality_weights": result.modality_weights}
                                       if result.modality_weights is not None else {})) + "\n")
        return
    for t, m in resolved.items():
        console.print(f"[dim]{t!r} -> {engine.label(m)} (id {m})[/]", highlight=False)
    _print_recommendations(engine, result, f"{query}")


def _serve(run: Path, host: str | None, port: int | None, engine=None) -> None:
    import os

    import uvicorn

    from qamrec.serve.app import RUN_ENV, SET_ENV, create_app, load_engine
    from qamrec.serve.store import open_store

    c = cfg()
    settings = c.serve.model_copy(update={k: v for k, v in (("host", host), ("port", port)) if v is not None})
    where = f"http://{settings.host}:{settings.port}/"
    if settings.workers > 1:  # separate processes, each with the model, sharing the SQLite store
        os.environ[RUN_ENV] = str(run.resolve())
        os.environ[SET_ENV] = json.dumps(_State.overrides + [f"home={c.home}"])
        console.print(f"serving {run} with {settings.workers} workers on [bold]{where}[/] (API docs at /docs; "
                      f"sessions in {c.store_url}); Ctrl-C stops")
        uvicorn.run("qamrec.serve.app:app_from_env", factory=True, workers=settings.workers, host=settings.host,
                    port=settings.port, log_level="warning")
        return
    if engine is None or c.serve.catalog:
        with console.status(f"loading {run}"):
            engine = load_engine(run, c)
    engine.query_cache_size = c.serve.query_cache
    app_ = create_app(engine, open_store(c.store_url), settings)
    console.print(f"serving {engine.name} ({engine.catalog_size:,} movies) on [bold]{where}[/] "
                  f"(API docs at /docs; sessions in {c.store_url}); Ctrl-C stops")
    uvicorn.run(app_, host=settings.host, port=settings.port, log_level="warning")


@app.command()
def serve(
    run: Annotated[Optional[Path], typer.Option(help="trained run directory (default: the demo's)")] = None,
    host: Annotated[Optional[str], typer.Option(help="address to bind (default 127.0.0.1)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default 8000)")] = None,
) -> None:
    """The HTTP service and the web page."""
    _serve(_run_or_default(run), host, port)


DEMO_QUERIES = (
    ("funny heist movie with a great ensemble", ["Ocean's Eleven (2001)"]),
    ("a slow-burn sci-fi with a twist, nothing gory", ["Arrival (2016)"]),
    ("something scary for halloween night", []),
)


@app.command()
def demo(
    from_: Annotated[Optional[Path], typer.Option("--from", help="local folder laid out like shared/data")] = None,
    dataset: Annotated[str, typer.Option(help="the CRS dataset the demo model learns from")] = "redial",
    web: Annotated[bool, typer.Option(help="start the web page at the end")] = True,
    port: Annotated[Optional[int], typer.Option(help="port of the web page (default serve.port)")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="at most this many training epochs for the demo model")] = 6,
) -> None:
    """The main job end to end: data, graph, a trained model (cached), recommendations, the web page."""
    from qamrec.data.registry import dataset_names
    from qamrec.train.run import RUN_FILES

    c = cfg()
    _fetch(dataset_names(), from_)
    _prepare(None)
    _print_catalog(_catalog_summary())
    run = c.runs_dir / "default"
    if all((run / f).exists() for f in RUN_FILES):
        console.print(f"using the trained model in {run} (delete it to train again)")
    else:
        console.print(f"training the demo model on {dataset} (once; it is cached in {run})")
        tc = c.model_copy(update={"train": c.train.model_copy(update={"epochs": min(c.train.epochs, epochs)})})
        m = _train(dataset, run, "qamrec", True, tc)
        console.print(f"held-out recall@10 {m['test']['recall@10']:.3f}, recall@50 {m['test']['recall@50']:.3f} "
                      f"on {m['test']['n_examples']:,} examples")
    engine = _engine(run)
    from qamrec.serve.engine import UnknownTitleError

    for text, liked in DEMO_QUERIES:
        ids = []
        for t in liked:
            try:
                ids.append(engine.resolve(t))
            except UnknownTitleError as e:  # a model trained without MovieLens may not know every title
                console.print(f"[dim]{e}[/]", highlight=False)
        result = engine.recommend(text, k=8, anchors=ids)
        _print_recommendations(engine, result, text + (f"  (liked: {', '.join(liked)})" if liked else ""))
    if web:
        _serve(run, None, port, engine)


def main() -> None:
    """Entry point: user errors are one clear line on stderr and exit status 2, never a traceback."""
    try:
        app()  # standalone: usage errors print a usage line and exit 2
    except QamrecError as e:
        err_console.print(f"[bold red]error:[/] {e}")
        sys.exit(2)


if __name__ == "__main__":
    main()
