"""No pickle anywhere in ``src/``: loading a pickle runs code from the file, so every artifact is JSON, Parquet or
safetensors, and model weights load with ``torch.load(..., weights_only=True)``.

The check reads the code (``ast``), not the text, so a docstring saying "no pickle" is fine.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
#: modules whose import alone is the problem
BANNED_MODULES = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve", "pickletools"}


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _call_name(func: ast.AST) -> str:
    """``np.load`` -> "np.load", ``load`` -> "load"."""
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def problems(source: str, name: str = "<code>") -> list[str]:
    """Every use of pickle in ``source``, as ``name:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".")[0]
            if module in BANNED_MODULES:
                found.append(f"{where}: from {node.module} import ...")
            if module == "torch" and any(a.name == "load" for a in node.names):
                found.append(f"{where}: from torch import load (call torch.load with weights_only=True)")
        elif isinstance(node, ast.Call):
            call = _call_name(node.func)
            kwargs = {k.arg: k.value for k in node.keywords}
            if call == "torch.load" and not _is_true(kwargs.get("weights_only")):
                found.append(f"{where}: torch.load without weights_only=True")
            allow = kwargs.get("allow_pickle")
            if call.endswith(("np.load", "numpy.load")) and allow is not None \
                    and not (isinstance(allow, ast.Constant) and allow.value is False):
                found.append(f"{where}: np.load with allow_pickle")
            if call.split(".")[-1] in ("read_pickle", "to_pickle"):
                found.append(f"{where}: {call}")
        elif isinstance(node, ast.Name) and node.id in BANNED_MODULES:
            found.append(f"{where}: {node.id}")
    return found


def test_the_checker_catches_pickle() -> None:
    bad = (
        "import pickle\nimport joblib\nfrom dill import loads\nimport torch, numpy as np\n"
        "torch.load('w.pt')\ntorch.load('w.pt', weights_only=False)\nnp.load('a.npy', allow_pickle=True)\n"
        "import pandas as pd\npd.read_pickle('x')\nfrom torch import load\n"
    )
    assert len(problems(bad)) == 8
    good = '"""No pickle here."""\nimport torch\ntorch.load("w.pt", weights_only=True)\nnp.load("a.npy")\n'
    assert problems(good) == []


def test_no_pickle_in_src() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    found = [p for f in files for p in problems(f.read_text(encoding="utf-8"), str(f.relative_to(SRC)))]
    assert found == [], "pickle in src/:\n" + "\n".join(found)
