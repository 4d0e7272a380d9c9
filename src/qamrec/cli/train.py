"""``qamrec train``: a model on a CRS dataset (full graph), or LinkGAT on a MovieLens dataset (sampled);
``qamrec ensemble``: trained runs of one split pooled into one model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qamrec.cli.common import cfg, console, err_console, print_metrics, print_model_note, training_threads
from qamrec.config import Config
from qamrec.errors import QamrecError

__all__ = ["train", "ensemble", "run_training", "_make_model"]


def _make_model(name: str):
    """A factory ``Config -> Recommender`` for the model called ``name`` (tests build runs with it too)."""
    from qamrec.features.pipeline import text_function
    from qamrec.models import MODELS, QAMRec

    if name not in MODELS:
        raise QamrecError(f"unknown model {name!r} (known: {', '.join(MODELS)})")

    def make(c: Config):
        if name == QAMRec.name:
            init = c.seed if c.train.init_seed is None else c.train.init_seed
            return QAMRec(c.model, c.train, text_function(c), init)
        if hasattr(MODELS[name], "from_config"):  # a model with settings of its own (mscrs: model.mscrs.*)
            return MODELS[name].from_config(c, text_function(c))  # type: ignore[attr-defined]
        return MODELS[name](text_function(c))  # type: ignore[call-arg]

    return make


def run_training(dataset: str, out: Path, model: str, overwrite: bool, c: Config, quiet: bool = False,
                 resume: bool = True) -> dict:
    """Train ``model`` on ``dataset`` into ``out`` with a progress bar; return the run's metrics."""
    from qamrec.train.run import train_run

    training_threads(c)
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
    m = run_training(dataset, out, model, overwrite, cfg(), resume=resume)
    if m.get("resumed_from_epoch"):
        console.print(f"resumed from the checkpoint of epoch {m['resumed_from_epoch']} in {out / 'checkpoint'}")
    from qamrec.train.run import test_summary

    print_metrics({m["model"]: m["test"]}, dataset, test_summary(m))
    console.print(f"run directory: {out}")
    print_model_note(model)


def ensemble(
    run: Annotated[list[Path], typer.Option(help="a member's run directory (repeat: two or more of one data split)")],
    out: Annotated[Path, typer.Option(help="ensemble folder to write (evaluate it with `qamrec evaluate --run`)")],
) -> None:
    """Pool trained runs of one data split into one model: log-linear, weights chosen on their dev examples."""
    from qamrec.train.run import pool_runs

    if len(run) < 2:
        raise QamrecError("--run: give two or more run directories to pool")
    if (out / "model.json").exists():
        raise QamrecError(f"--out {out}: a run directory is there; give a new folder for the ensemble")
    ens = pool_runs(run, cfg())
    ens.save(out)
    t = Table("weights", "dev R@10", "dev R@50", "dev NDCG@10", "gain s.e.",
              title="the weightings tried on the dev examples (kept: best NDCG@10 unless within one s.e. of the first)")
    rows = ens.dev or []
    if len(rows) > 12:  # many members: the first (the reference) and the ten best
        rows = rows[:1] + sorted(rows[1:], key=lambda r: -r["ndcg@10"])[:10]
    for r in rows:
        t.add_row(", ".join(f"{w:.1f}" for w in r["weights"]), *(f"{r[k]:.4f}" for k in
                  ("recall@10", "recall@50", "ndcg@10", "gain_se")))
    console.print(t)
    console.print("kept: " + ", ".join(f"{f} {w:.1f}" for f, w in zip(run, ens.weights)) + f"\nensemble: {out}")
