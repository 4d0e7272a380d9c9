"""Shared fixtures: the real data in ``../shared/data`` (or ``$QAMREC_SHARED_DATA``), fetched and prepared once
per test session into a temporary data home."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    """A data home with every dataset fetched from the shared folder and prepared (catalog included).

    ``QAMREC_TEST_HOME`` names an already prepared home to use instead (to iterate quickly in development).
    """
    if os.environ.get("QAMREC_TEST_HOME"):
        return Path(os.environ["QAMREC_TEST_HOME"])
    from qamrec.data.fetch import fetch
    from qamrec.data.prepare import prepare
    from qamrec.data.registry import dataset_names

    home = tmp_path_factory.mktemp("home")
    for name in dataset_names():
        fetch(name, home / "raw", source=shared_data)
    prepare(None, home / "raw", home / "prepared")
    return home


#: settings of the small trained model the service tests share (a light graph: no MovieLens users; the
#: neighbour vote on, so that the service's path through it is tested)
SMALL_RUN_SETTINGS = ["graph.ratings=", "train.epochs=2", "train.patience=2", "serve.reply_templates=3000",
                      "model.neighbours=true"]


@pytest.fixture(scope="session")
def small_run_settings() -> list[str]:
    return list(SMALL_RUN_SETTINGS)


@pytest.fixture(scope="session")
def small_run(prepared_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A QAMRec run directory trained briefly on INSPIRED with the real encoders."""
    from qamrec.cli import _make_model
    from qamrec.config import load_config
    from qamrec.train.run import train_run

    config = load_config(SMALL_RUN_SETTINGS, home=prepared_home)
    run = tmp_path_factory.mktemp("runs") / "small"
    train_run("inspired", config, run, make_model=_make_model("qamrec"))
    return run


@pytest.fixture(scope="session")
def small_engine(small_run: Path, prepared_home: Path):
    from qamrec.config import load_config
    from qamrec.serve.engine import Engine

    return Engine.from_run(small_run, load_config(SMALL_RUN_SETTINGS, home=prepared_home))


@contextlib.contextmanager
def _serve_in_thread(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free loopback port, until the block ends; yields its URL."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError("the service did not start")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def serve_app():
    """Serve an app for real: ``with serve_app(app) as url: ...`` (uvicorn in a thread, a free port)."""
    return _serve_in_thread


@pytest.fixture(scope="session")
def live_server_url(small_engine, tmp_path_factory: pytest.TempPathFactory):
    """The real service (uvicorn, in a thread) on the small model, at ``http://127.0.0.1:PORT``."""
    from qamrec.serve.app import create_app
    from qamrec.serve.store import SQLiteStore

    store = SQLiteStore(tmp_path_factory.mktemp("sessions") / "sessions.sqlite3")
    with _serve_in_thread(create_app(small_engine, store)) as url:
        yield url
