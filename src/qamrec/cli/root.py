"""The root ``qamrec`` command: the global options, every command group registered on it, and ``main``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from qamrec.cli.bench import bench_app
from qamrec.cli.chat import chat
from qamrec.cli.common import State, err_console
from qamrec.cli.data import data_app
from qamrec.cli.demo import demo
from qamrec.cli.evaluate import benchmark_app, evaluate
from qamrec.cli.graph import graph_app
from qamrec.cli.serve import recommend, serve
from qamrec.cli.text import text_app
from qamrec.cli.train import ensemble, train
from qamrec.config import load_config
from qamrec.errors import QamrecError

__all__ = ["app", "main"]

app = typer.Typer(help="qamrec: query-aware, multi-modal movie recommendation on a heterogeneous graph.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(data_app, name="data")
app.add_typer(graph_app, name="graph")
app.add_typer(benchmark_app, name="benchmark")
app.add_typer(bench_app, name="bench")
app.add_typer(text_app, name="text")
for command in (train, ensemble, evaluate, recommend, chat, serve, demo):  # in this order in `qamrec --help`
    app.command()(command)


@app.callback()
def _main(
    home: Annotated[Optional[Path], typer.Option(help="data home (default $QAMREC_HOME or ~/.cache/qamrec)")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="config override key=value (repeatable)")] = [],
) -> None:
    State.config = load_config(set_, home=home)
    State.overrides = list(set_)


def main() -> None:
    """Entry point: user errors are one clear line on stderr and exit status 2, never a traceback."""
    try:
        app()  # standalone: usage errors print a usage line and exit 2
    except QamrecError as e:
        err_console.print(f"[bold red]error:[/] {e}")
        sys.exit(2)
