"""Faults (issue #7): commands killed at random points, corrupted files, incomplete run directories.

Kills are real SIGKILLs of ``python -m qamrec`` subprocesses. Each waits for a sign of progress (a step's
manifest, a graph file being written, the first training checkpoint) and then for a random delay drawn from
a seeded RNG (``QAMREC_FAULT_SEED``, default 7), so the kill lands at a varying point of the work that
follows. The next run, in process, must find nothing half-written, redo only what is missing, and, for
training, end exactly as an uninterrupted run does.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from qamrec.config import load_config
from qamrec.errors import DigestMismatchError, MissingDataError, QamrecError
from qamrec.io import sha256_file

SEED = int(os.environ.get("QAMREC_FAULT_SEED", "7"))
#: a tiny model on the light INSPIRED graph of the service tests; dropout stays on (the RNG state matters)
#: and its second epoch is the best one here (the kept weights are trained after the resume point)
TINY = ["graph.ratings=", "train.epochs=2", "train.patience=2", "train.batch_size=512", "model.hidden=16",
        "model.layers=1", "model.heads=1", "model.dropout=0.1", "model.poster_features=false", "train.threads=1"]
PREPARE_STEPS = ["inspired", "movielens-small", "movielens-100k", "tmdb"]


# -- helpers --------------------------------------------------------------------------------------


def _start(home: Path, log: Path, *args: str) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "qamrec", "--home", str(home), *args],
                                stdout=out, stderr=subprocess.STDOUT)


def _kill_after(proc: subprocess.Popen, ready: Callable[[], bool], delay: float, log: Path,
                timeout: float = 900) -> None:
    """SIGKILL ``proc`` ``delay`` seconds after ``ready()`` first holds; fail if it ends before that."""
    end = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            proc.wait()
            pytest.fail(f"the command ended (status {proc.returncode}) before the kill point:\n{log.read_text()}")
        time.sleep(0.005)
    time.sleep(delay)
    assert proc.poll() is None, f"the command finished before the kill:\n{log.read_text()}"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def _tmp_files(folder: Path) -> list[Path]:
    return list(folder.rglob(".*.tmp-*"))


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _damage(path: Path, how: str) -> None:
    """Flip a byte in the middle of ``path`` or cut off its last third (written as a new file: run
    directories hard-link their graph files, so an in-place write would reach the original too)."""
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x5A
    else:
        data = data[: 2 * len(data) // 3]
    path.unlink()
    path.write_bytes(bytes(data))


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


# -- data prepare ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prep_home(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from qamrec.data.fetch import fetch

    home = tmp_path_factory.mktemp("prep_home")
    for name in PREPARE_STEPS:
        fetch(name, home / "raw", source=shared_data)
    return home


def test_killed_prepare_redoes_only_the_unfinished_steps(prep_home: Path, tmp_path: Path) -> None:
    import polars as pl

    from qamrec.data.prepare import load_table, prepare, step_outputs

    prepared, log = prep_home / "prepared", tmp_path / "prepare.log"
    # killed at a random moment of the three short steps that follow the first (together about 0.15 s here).
    # A kill that lands after the last step's manifest tests nothing: then the attempt is repeated from an
    # empty folder with a shorter delay (a busy machine may run the steps faster than the delay drawn).
    rng = random.Random(SEED)
    for attempt in range(4):
        shutil.rmtree(prepared, ignore_errors=True)
        proc = _start(prep_home, log, "data", "prepare", *PREPARE_STEPS)
        _kill_after(proc, (prepared / "inspired/MANIFEST.json").exists, rng.uniform(0.0, 0.08) / 2**attempt, log)
        complete = {}
        for step in PREPARE_STEPS:  # a manifest on disk always describes complete, intact tables
            m = step_outputs(prepared, step)
            if m is not None:
                for table, info in m["tables"].items():
                    assert sha256_file(prepared / step / f"{table}.parquet") == info["sha256"]
                complete[step] = _mtimes(prepared / step)
        if len(complete) < len(PREPARE_STEPS):
            break
    for p in prepared.rglob("*.parquet"):  # no half-written table under its real name
        pl.read_parquet(p)
    assert "inspired" in complete and len(complete) < len(PREPARE_STEPS), complete.keys()
    status = {r.step: r.status for r in prepare(PREPARE_STEPS, prep_home / "raw", prepared)}
    assert status == {s: "cached" if s in complete else "prepared" for s in PREPARE_STEPS}
    for step, before in complete.items():  # finished steps were not touched
        assert _mtimes(prepared / step) == before
    assert not _tmp_files(prepared)  # what the kills left half-written is gone
    assert load_table(prepared, "movielens-100k", "ratings").height == 100_000


@pytest.mark.parametrize("damage", ["flip", "truncate", "manifest_truncate", "manifest_digest"])
def test_corrupted_prepared_table_is_detected_and_rebuilt(prep_home: Path, damage: str) -> None:
    from qamrec.data.prepare import load_table, prepare

    raw, prepared = prep_home / "raw", prep_home / "prepared"
    prepare(["movielens-100k", "tmdb"], raw, prepared)
    table, manifest = prepared / "movielens-100k/ratings.parquet", prepared / "movielens-100k/MANIFEST.json"
    digest = sha256_file(table)
    if damage in ("flip", "truncate"):
        _damage(table, damage)
        with pytest.raises(MissingDataError, match=r"ratings\.parquet: missing or corrupted"):
            load_table(prepared, "movielens-100k", "ratings")
    elif damage == "manifest_truncate":
        _damage(manifest, "truncate")
        with pytest.raises(QamrecError, match="MANIFEST.json"):
            load_table(prepared, "movielens-100k", "ratings")
    else:  # still valid JSON, but the digest on record no longer matches the table
        manifest.write_text(manifest.read_text().replace(digest, digest[::-1]))
        with pytest.raises(MissingDataError, match="corrupted"):
            load_table(prepared, "movielens-100k", "ratings")
    status = {r.step: r.status for r in prepare(["movielens-100k", "tmdb"], raw, prepared)}
    assert status == {"movielens-100k": "prepared", "tmdb": "cached"}
    assert sha256_file(table) == digest and load_table(prepared, "movielens-100k", "ratings").height == 100_000


# -- graph build ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fault_home(prepared_home: Path, small_run_settings: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data home sharing the prepared data and the embedding cache of ``prepared_home``, with its own graphs.

    The cache is warmed first by building, unless it is there, the graph the service tests' ``small_run``
    trains on (the same texts and posters as here): encoding is shared work, not part of these tests.
    """
    from qamrec.graph.build import build_or_load, graph_key

    shared = load_config(small_run_settings, home=prepared_home)
    if not (shared.graph_dir / f"inspired-{graph_key('inspired', shared)}" / "graph.json").exists():
        build_or_load("inspired", shared)
    home = tmp_path_factory.mktemp("fault_home")
    (prepared_home / "cache").mkdir(exist_ok=True)
    for d in ("raw", "prepared", "cache"):
        (home / d).symlink_to(prepared_home / d)
    return home


def _shards(home: Path) -> dict[str, int]:
    return _mtimes(home / "cache")


def _graph_folder(home: Path) -> Path:
    from qamrec.graph.build import graph_key

    return home / "graphs" / f"inspired-{graph_key('inspired', load_config(TINY, home=home))}"


@pytest.fixture(scope="module")
def graph_folder(fault_home: Path) -> Path:
    """The light INSPIRED graph of ``fault_home``, built (or found) in process."""
    from qamrec.graph.build import build_or_load

    _, folder = build_or_load("inspired", load_config(TINY, home=fault_home))
    return folder


@pytest.mark.slow
def test_graph_build_killed_while_saving_is_built_again(fault_home: Path, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    from qamrec.graph.store import load_graph

    folder, log = _graph_folder(fault_home), tmp_path / "graph.log"
    shutil.rmtree(folder, ignore_errors=True)
    proc = _start(fault_home, log, "--set", "graph.ratings=", "graph", "build", "--dataset", "inspired")
    _kill_after(proc, folder.exists, random.Random(SEED).uniform(0.0, 0.04), log)  # made to save into
    assert not (folder / "graph.json").exists()  # no graph is taken for complete before its JSON is written
    with pytest.raises(MissingDataError, match="no built graph"):
        load_graph(folder)
    shards = _shards(fault_home)
    assert request.getfixturevalue("graph_folder") == folder  # the next run (shared by the tests below)
    assert load_graph(folder).sizes()["nodes"]["movie"] > 1400
    assert not _tmp_files(folder)
    assert _shards(fault_home) == shards  # every embedding came from the cache: nothing encoded again


@pytest.mark.parametrize("damage", ["flip", "truncate"])
@pytest.mark.parametrize("name", ["graph.safetensors", "graph.json"])
def test_corrupted_graph_file_is_detected(graph_folder: Path, tmp_path: Path, name: str, damage: str) -> None:
    from qamrec.graph.store import load_graph

    copy = shutil.copytree(graph_folder, tmp_path / "graph")
    if name == "graph.json" and damage == "flip":  # still valid JSON: one movie id changed
        meta = json.loads((copy / name).read_text())
        meta["movie_ids"][0] += 1
        (copy / name).write_text(json.dumps(meta))
    else:
        _damage(copy / name, damage)
    with pytest.raises(MissingDataError, match=rf"{name}: corrupted"):
        load_graph(copy)


@pytest.mark.slow
def test_corrupted_graph_is_rebuilt_from_the_cache(fault_home: Path, graph_folder: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    from qamrec.graph.build import build_or_load
    from qamrec.graph.store import load_graph

    sizes, shards = load_graph(graph_folder).sizes(), _shards(fault_home)
    _damage(graph_folder / "graph.safetensors", "flip")
    with caplog.at_level(logging.WARNING, logger="qamrec.graph.build"):
        graph, folder = build_or_load("inspired", load_config(TINY, home=fault_home))
    assert "graph.safetensors: corrupted" in caplog.text and "building the graph again" in caplog.text
    assert folder == graph_folder and graph.sizes() == sizes and load_graph(folder).sizes() == sizes
    assert _shards(fault_home) == shards


# -- train: checkpoints and resuming --------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(fault_home: Path, graph_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny trainings: ``killed`` in a subprocess, SIGKILLed at a random moment after the first epoch's
    checkpoint (mostly in the second, last epoch), then ``reference`` in process, uninterrupted.

    One after the other, not side by side: watching for the checkpoint must start at once, or on a fast
    machine the subprocess ends while the reference still trains and the kill point is missed."""
    from qamrec.cli import _make_model
    from qamrec.train.run import train_run

    root = tmp_path_factory.mktemp("fault_runs")
    killed, log = root / "killed", root / "killed.log"
    proc = _start(fault_home, log, *[a for s in TINY for a in ("--set", s)],
                  "train", "--dataset", "inspired", "--out", str(killed))
    _kill_after(proc, (killed / "checkpoint/checkpoint.json").exists, random.Random(SEED).uniform(0.0, 1.5), log)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as train.threads=1 in the subprocess: the same arithmetic, bit for bit
    try:
        train_run("inspired", load_config(TINY, home=fault_home), root / "reference",
                  make_model=_make_model("qamrec"))
    finally:
        torch.set_num_threads(threads)
    return {"reference": root / "reference", "killed": killed, "log": log}


@pytest.mark.slow
def test_killed_training_resumes_and_ends_as_an_uninterrupted_one(fault_home: Path, trained: dict[str, Path]) -> None:
    from typer.testing import CliRunner

    from qamrec.cli import app
    from qamrec.train.rundir import validate_run

    killed, reference = trained["killed"], trained["reference"]
    assert [p.name for p in killed.iterdir()] == ["checkpoint"]  # nothing of the run directory yet
    with pytest.raises(MissingDataError, match="incomplete run directory, missing config.json"):
        validate_run(killed)  # the service would refuse it, naming what is missing
    epoch = json.loads((killed / "checkpoint/checkpoint.json").read_text())["epoch"]
    assert epoch in (1, 2) and sorted(p.name for p in (killed / "checkpoint").iterdir() if not p.name.startswith(
        ".")) == ["checkpoint.json", f"state-{epoch:04d}.safetensors"]  # older states are deleted
    before = _mtimes(killed)
    base = ["--home", str(fault_home)] + [a for s in TINY for a in ("--set", s)]
    runner = CliRunner()
    other = runner.invoke(app, base + ["--set", "train.lr=0.002", "train", "--dataset", "inspired",
                                       "--out", str(killed)])
    assert isinstance(other.exception, QamrecError), other.output
    assert "other settings (train.lr: 0.001 then, 0.002 now)" in str(other.exception)
    assert "--no-resume" in str(other.exception) and _mtimes(killed) == before  # refused, nothing touched
    threads = torch.get_num_threads()
    try:
        res = runner.invoke(app, base + ["train", "--dataset", "inspired", "--out", str(killed)])
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    assert f"resumed from the checkpoint of epoch {epoch}" in res.output
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (reference, killed))
    assert b["resumed_from_epoch"] == epoch and a["resumed_from_epoch"] is None
    assert b["test"] == a["test"]  # exactly, not approximately
    assert [{k: v for k, v in r.items() if k != "train_s"} for r in b["history"]] == \
        [{k: v for k, v in r.items() if k != "train_s"} for r in a["history"]]
    assert sha256_file(killed / "model.safetensors") == sha256_file(reference / "model.safetensors")
    assert not (killed / "checkpoint").exists()  # dropped once the run directory is complete
    validate_run(killed)


# -- run directories: the service refuses an incomplete or corrupted one ---------------------------


_REQUIRED = ["model.safetensors", "config.json", "items.safetensors", "graph/graph.json",
             "graph/graph.safetensors", "model.json", "metrics.json"]


def test_incomplete_run_directory_is_refused_naming_the_file(fault_home: Path, trained: dict[str, Path],
                                                             tmp_path: Path) -> None:
    from qamrec.serve.app import load_engine
    from qamrec.serve.engine import Engine

    config = load_config(TINY, home=fault_home)
    for i, name in enumerate(_REQUIRED):
        run = shutil.copytree(trained["reference"], tmp_path / f"run{i}")
        (run / name).unlink()
        load = Engine.from_run if i % 2 else load_engine
        with pytest.raises(QamrecError, match=rf"incomplete run directory, missing {name} "):
            load(run, config)


@pytest.mark.parametrize(("name", "damage"), [("model.safetensors", "flip"), ("items.safetensors", "truncate"),
                                              ("config.json", "flip"), ("graph/graph.json", "truncate")])
def test_corrupted_run_file_is_refused_naming_it(fault_home: Path, trained: dict[str, Path], tmp_path: Path,
                                                 name: str, damage: str) -> None:
    from qamrec.train.run import load_run

    run = shutil.copytree(trained["reference"], tmp_path / "run")
    _damage(run / name, damage)
    with pytest.raises(DigestMismatchError, match=rf"{name}: SHA256 mismatch"):
        load_run(run, load_config(TINY, home=fault_home))


def test_run_files_checked_without_a_manifest(fault_home: Path, trained: dict[str, Path], tmp_path: Path) -> None:
    """A run directory from before manifests: its graph is still checked, its weights fail clearly."""
    from qamrec.train.run import load_run

    config = load_config(TINY, home=fault_home)
    run = shutil.copytree(trained["reference"], tmp_path / "run")
    (run / "MANIFEST.json").unlink()
    _damage(run / "graph/graph.safetensors", "flip")
    with pytest.raises(MissingDataError, match=r"graph\.safetensors: corrupted"):
        load_run(run, config)
    shutil.copy2(trained["reference"] / "graph/graph.safetensors", run / "graph/graph.safetensors")
    _damage(run / "model.safetensors", "truncate")
    with pytest.raises(QamrecError, match=r"model\.safetensors: cannot load the qamrec model"):
        load_run(run, config)


# -- the pieces, without real data ----------------------------------------------------------------


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    from qamrec.io import remove_stale_tmp, tmp_prefix

    dead = tmp_path / f".t.parquet.tmp-{_dead_pid()}-abc"
    mine = tmp_path / f"{tmp_prefix('t.parquet')}def"
    folder = tmp_path / f".run.tmp-{_dead_pid()}-xyz"
    for p in (dead, mine):
        p.write_bytes(b"half")
    (folder / "graph").mkdir(parents=True)
    assert sorted(remove_stale_tmp(tmp_path)) == sorted([dead, folder])
    assert mine.exists() and not dead.exists() and not folder.exists()


def test_cache_deletes_shards_a_killed_process_was_writing(tmp_path: Path) -> None:
    import numpy as np

    from qamrec.features.cache import EmbeddingCache, text_key

    cache = EmbeddingCache(tmp_path)
    cache.add("enc", [text_key("a")], np.ones((1, 4), np.float32))
    stale = cache.folder("enc") / f".x.safetensors.tmp-{_dead_pid()}-abc"
    stale.write_bytes(b"half a shard")
    fresh = EmbeddingCache(tmp_path)
    vec, found = fresh.lookup("enc", [text_key("a")], 4)
    assert found.all() and not stale.exists()


def _toy_state(epoch: int, seed: int = 0):
    from qamrec.train.checkpoint import TrainState

    torch.manual_seed(seed)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=0.01)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    return net, opt, TrainState(epoch, [{"epoch": epoch, "loss": 1.5}], epoch, 0.25, 0, False, 1.0,
                                net.state_dict(), net.state_dict(), opt.state_dict(), torch.get_rng_state(),
                                torch.Generator().manual_seed(seed).get_state())


def test_checkpoint_round_trip_and_a_kill_between_its_files(tmp_path: Path) -> None:
    from qamrec.train.checkpoint import Checkpointer

    ckpt = Checkpointer(tmp_path, {"dataset": "x"})
    assert ckpt.saved_epoch() is None and ckpt.load() is None
    net, opt, state = _toy_state(1)
    ckpt.save(state)
    back = Checkpointer(tmp_path, {"dataset": "x"}).load()
    assert back is not None and back.epoch == 1 and back.history == state.history
    assert all(torch.equal(back.model[k], v) for k, v in net.state_dict().items())
    fresh = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.01)
    fresh.load_state_dict(back.optimizer)  # the optimizer takes its state back
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(back.rng_torch, state.rng_torch) and torch.equal(back.rng_shuffle, state.rng_shuffle)
    # killed after writing epoch 2's tensors, before its JSON: epoch 1 is still the checkpoint
    shutil.copy2(tmp_path / "state-0001.safetensors", tmp_path / "state-0002.safetensors")
    assert ckpt.saved_epoch() == 1 and ckpt.load().epoch == 1  # type: ignore[union-attr]
    ckpt.save(_toy_state(2)[2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "state-0002.safetensors"]
    with pytest.raises(QamrecError, match=r"other settings \(dataset: 'x' then, 'y' now\)"):
        Checkpointer(tmp_path, {"dataset": "y"}).saved_epoch()


def test_checkpoint_predating_a_setting_resumes_when_the_setting_changes_nothing(tmp_path: Path) -> None:
    from qamrec.config import Config
    from qamrec.train.checkpoint import Checkpointer, train_identity

    config = Config(home=tmp_path)
    now = train_identity("redial", "qamrec", config, "redial-abc")
    old = json.loads(json.dumps(now))
    del old["config"]["train"]["ema"]  # written before train.ema existed: its default (0) is what ran then
    Checkpointer(tmp_path / "a", old).save(_toy_state(1)[2])
    assert Checkpointer(tmp_path / "a", now).saved_epoch() == 1
    # a setting whose old behaviour is not today's default: model.comention did not exist = no memory
    older = json.loads(json.dumps(old))
    del older["config"]["model"]["comention"]
    Checkpointer(tmp_path / "b", older).save(_toy_state(1)[2])
    with pytest.raises(QamrecError, match=r"other settings \(model.comention: False then, True now\)"):
        Checkpointer(tmp_path / "b", now).saved_epoch()
    moved = json.loads(json.dumps(old))
    moved["config"]["train"]["lr"] = 0.5
    Checkpointer(tmp_path / "c", moved).save(_toy_state(1)[2])
    with pytest.raises(QamrecError, match=r"train.lr: 0.5 then"):
        Checkpointer(tmp_path / "c", now).saved_epoch()
    # what a trainer adds beside the config (the sampled trainer's settings) is compared as saved
    Checkpointer(tmp_path / "d", old | {"sampled": {"lr": 0.003}}).save(_toy_state(1)[2])
    assert Checkpointer(tmp_path / "d", now | {"sampled": {"lr": 0.003}}).saved_epoch() == 1
    with pytest.raises(QamrecError, match=r"sampled.lr: 0.003 then, 0.01 now"):
        Checkpointer(tmp_path / "d", now | {"sampled": {"lr": 0.01}}).saved_epoch()


def test_corrupted_checkpoint_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from qamrec.train.checkpoint import Checkpointer

    ckpt = Checkpointer(tmp_path, {})
    ckpt.save(_toy_state(1)[2])
    _damage(tmp_path / "state-0001.safetensors", "flip")
    with caplog.at_level(logging.WARNING, logger="qamrec.train.checkpoint"):
        assert ckpt.load() is None
    assert "state-0001.safetensors: missing or corrupted" in caplog.text


def test_run_directory_recovery_after_a_kill_between_two_renames(tmp_path: Path) -> None:
    from qamrec.train.rundir import recover

    out = tmp_path / "run"
    # the complete new run directory was assembled, the old one (a checkpoint) moved aside, then the kill
    assembled, aside = tmp_path / f".run.tmp-{_dead_pid()}-a", tmp_path / f".run.tmp-{_dead_pid()}-old"
    (assembled / "MANIFEST.json").parent.mkdir()
    (assembled / "MANIFEST.json").write_text("{}")
    (aside / "checkpoint").mkdir(parents=True)
    (aside / "checkpoint/checkpoint.json").write_text("{}")
    recover(out)
    assert (out / "MANIFEST.json").exists() and not assembled.exists() and not aside.exists()
    # killed after moving the checkpoint aside, before the new run directory was complete: it goes back
    shutil.rmtree(out)
    (aside / "checkpoint").mkdir(parents=True)
    (aside / "checkpoint/checkpoint.json").write_text("{}")
    recover(out)
    assert (out / "checkpoint/checkpoint.json").exists() and not aside.exists()
