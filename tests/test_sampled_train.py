"""Sampled mini-batch training of LinkGAT (:mod:`qamrec.train.sampled`): the loss falls, validation beats the
popularity ranking on a graph with planted taste clusters, and a training killed after epoch 1 and resumed ends
with exactly the weights of an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from qamrec.config import Config, load_config

N_USERS, N_MOVIES, N_GENRES = 300, 120, 6


def planted_graph(seed: int = 0):
    """A small CSRGraph where users prefer the movies of their own genre cluster (8x) on top of a Zipf
    popularity; each user's last rating held out (``val``). Movie text features: a noisy genre signal."""
    from qamrec.graph.csr import GENRE_OF, HAS_GENRE, RATED_BY, RATES, CSRGraph

    rng = np.random.default_rng(seed)
    mg, ug = rng.integers(0, N_GENRES, N_MOVIES), rng.integers(0, N_GENRES, N_USERS)
    pop = 1.0 / (np.arange(N_MOVIES) + 5.0) ** 0.8
    us, ms, val = [], [], []
    for u in range(N_USERS):
        w = pop * np.where(mg == ug[u], 8.0, 1.0)
        mv = rng.choice(N_MOVIES, size=int(rng.integers(6, 30)), replace=False, p=w / w.sum())
        us += [u] * (len(mv) - 1)
        ms += list(mv[:-1])
        val.append((u, mv[-1]))
    u, m = torch.tensor(us), torch.tensor(ms)
    r = torch.from_numpy(rng.integers(1, 11, len(us)) / 10).to(torch.float16)
    g = torch.from_numpy(mg)
    x = torch.from_numpy(rng.normal(size=(N_GENRES, 16))[mg] + 0.3 * rng.normal(size=(N_MOVIES, 16)))
    return CSRGraph.from_edge_index(
        {"user": N_USERS, "movie": N_MOVIES, "genre": N_GENRES, "tag": 0},
        {RATES: torch.stack([u, m]), RATED_BY: torch.stack([m, u]),
         HAS_GENRE: torch.stack([torch.arange(N_MOVIES), g]), GENRE_OF: torch.stack([g, torch.arange(N_MOVIES)])},
        {RATES: r, RATED_BY: r}, x={"movie": x.to(torch.float16)}, val=torch.tensor(val).T,
        meta={"movie_ids": np.arange(1, N_MOVIES + 1)})


def small_config(tmp: Path, *extra: str) -> Config:
    return load_config(["sampled.epochs=4", "sampled.batch_size=128", "sampled.negatives=2", "sampled.hidden=32",
                        "sampled.fanouts=8,4", "sampled.val_users=300", "sampled.eval_batch_size=256",
                        "sampled.patience=4", *extra], home=tmp / "home")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def graph():
    return planted_graph()


def test_loss_falls_and_beats_popularity(graph, tmp_path: Path) -> None:
    from qamrec.train.sampled import train_sampled

    out = tmp_path / "run"
    m = train_sampled(graph, small_config(tmp_path), out, dataset="planted", graph_folder="planted")
    losses = [r["loss"] for r in m["history"]]
    assert losses[-1] < 0.8 * losses[0], losses
    assert m["val"]["n_users"] == N_USERS
    # cluster preference is learnable beyond popularity: a clear margin on the whole-catalog ranking
    assert m["val"]["recall@10"] >= m["val_popularity"]["recall@10"] + 0.05, m
    assert m["val"]["ndcg@10"] > m["val_popularity"]["ndcg@10"], m
    for f in ("config.json", "model.json", "model.safetensors", "items.safetensors", "metrics.json", "curves.png",
              "graph.json", "MANIFEST.json"):
        assert (out / f).is_file(), f
    assert not (out / "checkpoint").exists()
    items = load_file(str(out / "items.safetensors"))
    assert items["items"].shape == (N_MOVIES, 32) and items["movie_ids"].tolist()[:3] == [1, 2, 3]
    assert json.loads((out / "metrics.json").read_text())["best_epoch"] == m["best_epoch"]


class _Killed(Exception):
    pass


def test_kill_and_resume_gives_the_same_weights(graph, tmp_path: Path) -> None:
    from qamrec.train.sampled import train_sampled

    c = small_config(tmp_path, "sampled.epochs=3", "sampled.val_users=100")
    a = train_sampled(graph, c, tmp_path / "a", dataset="planted", graph_folder="planted")

    def kill(row: dict) -> None:
        if row["epoch"] == 1:
            raise _Killed

    with pytest.raises(_Killed):
        train_sampled(graph, c, tmp_path / "b", dataset="planted", graph_folder="planted", on_epoch=kill)
    assert (tmp_path / "b" / "checkpoint" / "checkpoint.json").is_file()
    assert not (tmp_path / "b" / "model.safetensors").exists()
    b = train_sampled(graph, c, tmp_path / "b", dataset="planted", graph_folder="planted")
    assert b["resumed_from_epoch"] == 1
    wa, wb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    strip = [{k: v for k, v in r.items() if k not in ("train_s", "s_per_1000_batches")} for r in a["history"]]
    assert strip == [{k: v for k, v in r.items() if k not in ("train_s", "s_per_1000_batches")} for r in b["history"]]


def test_embed_catalog_is_deterministic_and_batch_independent_of_ranks(graph) -> None:
    from qamrec.train.sampled import build_model, embed_catalog

    model = build_model(graph, load_config(["sampled.hidden=16", "sampled.fanouts=4,2"]))
    e1, e2 = embed_catalog(model, graph, 50), embed_catalog(model, graph, 50)
    assert e1.shape == (N_MOVIES, 16) and torch.equal(e1, e2)


def _write_movielens(folder: Path, seed: int = 0) -> None:
    """``movies.csv`` and ``ratings.csv`` in MovieLens format: 150 users with genre tastes over 80 movies."""
    rng = np.random.default_rng(seed)
    genres = ["Action", "Comedy", "Drama", "Horror"]
    folder.mkdir(parents=True)
    mg = rng.integers(0, len(genres), 80)
    (folder / "movies.csv").write_text("movieId,title,genres\n" + "".join(
        f"{i + 1},Movie {i + 1} ({1980 + i % 40}),{genres[g]}\n" for i, g in enumerate(mg)), encoding="utf-8")
    rows = []
    for u in range(150):
        w = np.where(mg == u % len(genres), 6.0, 1.0) / (np.arange(80) + 4.0)
        for t, m in enumerate(rng.choice(80, size=int(rng.integers(8, 25)), replace=False, p=w / w.sum())):
            rows.append(f"{u + 1},{m + 1},{rng.integers(1, 11) / 2},{1_000_000_000 + 1000 * u + t}\n")
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(rows), encoding="utf-8")


def test_sigkilled_cli_training_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """``qamrec train`` on a folder of MovieLens files, SIGKILLed at a random moment after epoch 1's checkpoint,
    then run again with the same command, ends with the weights of an uninterrupted run."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    data = tmp_path / "ml"
    _write_movielens(data)
    settings = [x for s in ("sampled.text_features=false", "sampled.epochs=4", "sampled.batch_size=64",
                            "sampled.hidden=16", "sampled.val_users=60", "train.threads=1") for x in ("--set", s)]

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "qamrec", "--home", str(tmp_path / "home"), *settings,
                "train", "--dataset", str(data), "--out", str(out)]

    subprocess.run(cmd(tmp_path / "a"), check=True, capture_output=True)
    log = tmp_path / "b.log"
    with log.open("wb") as f:
        proc = subprocess.Popen(cmd(tmp_path / "b"), stdout=f, stderr=subprocess.STDOUT)
    ready = tmp_path / "b" / "checkpoint" / "checkpoint.json"
    end = time.monotonic() + 300
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < end, log.read_text()
        time.sleep(0.005)
    time.sleep(random.Random(int(os.environ.get("QAMREC_FAULT_SEED", "7"))).uniform(0.0, 0.3))
    assert proc.poll() is None, f"training ended before the kill:\n{log.read_text()}"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (tmp_path / "b" / "model.safetensors").exists()
    done = subprocess.run(cmd(tmp_path / "b"), check=True, capture_output=True, text=True)
    assert "resum" in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    wa = load_file(str(tmp_path / "a" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ma = json.loads((tmp_path / "a" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert mb["resumed_from_epoch"] >= 1 and ma["val"] == mb["val"]
