"""The ``qamrec`` command line (typer + rich), one module per command group.

Global options come before the subcommand: ``qamrec --home DIR --set key=value data prepare``.

* :mod:`.root`: the root command, its global options and :func:`main` (``qamrec = "qamrec.cli:main"``)
* :mod:`.data` (``data fetch|prepare|catalog|synth``), :mod:`.graph` (``graph build|scale``),
  :mod:`.train` (``train``), :mod:`.evaluate` (``evaluate``, ``benchmark ...``), :mod:`.serve`
  (``recommend``, ``serve``), :mod:`.bench` (``bench serve|load|scale``), :mod:`.demo` (``demo``)
* :mod:`.common`: the consoles, this invocation's configuration and the helpers the commands share

Each command parses its options, calls the library and prints; the work is done in the library.
"""

from __future__ import annotations

from qamrec.cli.demo import DEMO_QUERIES
from qamrec.cli.root import app, main
from qamrec.cli.train import _make_model

__all__ = ["app", "main", "DEMO_QUERIES", "_make_model"]
