"""The command tree of ``qamrec``: every command, its help line and every parameter stay as they were.

``tests/data/cli_tree.json`` was recorded from the single-module ``qamrec/cli.py`` before it became the
``qamrec.cli`` package (one module per command group); this test keeps the split from changing the interface.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from qamrec.cli import app

RECORDED = Path(__file__).parent / "data" / "cli_tree.json"


def command_tree(command: Any, path: tuple[str, ...] = ("qamrec",)) -> list[dict[str, Any]]:
    """Each command of ``command`` (depth first, in registration order): its path, help and parameters."""
    params = [{"name": p.name, "kind": type(p).__name__, "opts": list(p.opts), "secondary": list(p.secondary_opts),
               "required": p.required, "multiple": p.multiple, "default": repr(p.default),
               "help": getattr(p, "help", None)} for p in command.params]
    rows = [{"command": " ".join(path), "help": command.help, "params": params}]
    for name, sub in getattr(command, "commands", {}).items():
        rows += command_tree(sub, (*path, name))
    return rows


def test_command_tree_is_unchanged() -> None:
    recorded = json.loads(RECORDED.read_text())
    now = command_tree(typer.main.get_command(app))
    assert [r["command"] for r in now] == [r["command"] for r in recorded]
    for r, expected in zip(now, recorded, strict=True):
        assert r == expected, r["command"]


def test_entry_points_are_importable() -> None:
    from qamrec.cli import _make_model, main  # tests/conftest.py and pyproject's [project.scripts]

    assert callable(main) and callable(_make_model("popularity"))
