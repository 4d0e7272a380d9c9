"""What the command modules share: the consoles, this invocation's configuration, progress bars, the
run directory and engine a command works on, and how metrics are printed.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from qamrec.config import Config, load_config
from qamrec.errors import QamrecError

__all__ = ["console", "err_console", "State", "cfg", "training_threads", "progress", "run_or_default",
           "load_run_engine", "print_metrics", "print_model_note"]

console = Console()
err_console = Console(stderr=True)


class State:
    """The configuration of this invocation (set by the global options) and its ``--set`` overrides."""

    config: Config | None = None
    overrides: list[str] = []


def cfg() -> Config:
    """The configuration of this invocation (the environment's when no global option set one)."""
    if State.config is None:
        State.config = load_config()
    return State.config


def training_threads(c: Config) -> None:
    """Run torch on ``train.threads`` threads when that is set (0: torch's default)."""
    if c.train.threads:
        import torch

        torch.set_num_threads(c.train.threads)


def progress() -> Progress:
    """A transient progress bar on stderr."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=True)


def run_or_default(run: Path | None) -> Path:
    """``run``, or the demo's run directory; refused unless it is a complete trained run."""
    from qamrec.train.run import RUN_FILES

    c = cfg()
    run = run or c.runs_dir / "default"
    if not all((run / f).exists() for f in RUN_FILES):
        hint = "run `make demo` (it trains one)" if run == c.runs_dir / "default" else "check --run"
        raise QamrecError(f"{run}: no complete trained run directory here; {hint} or `qamrec train --out {run}`")
    return run


def load_run_engine(run: Path | None):
    """The engine of ``run`` (default: the demo's run directory), loaded under a status line."""
    from qamrec.serve.engine import Engine

    run = run_or_default(run)
    with console.status(f"loading {run}"):
        return Engine.from_run(run, cfg())


def print_model_note(name: str) -> None:
    """What a re-implemented model leaves out of its paper (``MODELS[name].note``), if anything."""
    from qamrec.models import MODELS

    if note := getattr(MODELS.get(name), "note", ""):
        console.print(f"[dim]{name}: {note}[/]", highlight=False)


def print_metrics(rows: dict[str, dict], dataset: str, caption: str = "") -> None:
    """A caption, then the metrics of ``rows`` beside the published ones of ``dataset``."""
    from qamrec.eval.evaluate import comparison_table

    console.print(caption)
    console.print(comparison_table(rows, dataset))
