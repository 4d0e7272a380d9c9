"""Shared fixtures: the real data in ``../shared/data`` (or ``$QAMREC_SHARED_DATA``), fetched and prepared once
per test session into a temporary data home."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QAMREC_SHARED_DATA") or ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED / "README.md").exists():
        pytest.skip(f"real data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def prepared_home(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data home with every dataset fetched from the shared folder and prepared (catalog included)."""
    from qamrec.data.fetch import fetch
    from qamrec.data.prepare import prepare
    from qamrec.data.registry import dataset_names

    home = tmp_path_factory.mktemp("home")
    for name in dataset_names():
        fetch(name, home / "raw", source=shared_data)
    prepare(None, home / "raw", home / "prepared")
    return home
