"""The CRS benchmark harness with stand-in training: rows, seeds, partial reruns, reuse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qamrec.config import load_config
from qamrec.errors import QamrecError
from qamrec.eval.benchmark import VARIANTS, run_crs_benchmark


def _fake(trained: list[str]):
    def train(dataset: str, run: Path, model: str, config: Any) -> dict[str, Any]:
        trained.append(run.name)
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(config.model_dump_json()[:-1] + f', "dataset": "{dataset}"}}')
        pre = {"seconds": 12.0} if config.train.pretrain else None
        m = {"model": model, "train_seconds": 3.0, "n_train": 100, "n_train_dialogues": 10, "pretrain": pre}
        (run / "metrics.json").write_text(json.dumps(m))
        return m

    def evaluate(run: Path, test: Path | None) -> dict[str, Any]:
        cfg = json.loads((run / "config.json").read_text())
        r10 = 0.2 + 0.01 * cfg["seed"] - (0.05 if cfg["model"]["encoder"] == "mlp" else 0.0)
        return {"recall@1": 0.05, "recall@10": r10, "recall@50": 0.4, "ndcg@10": 0.1, "ndcg@50": 0.12,
                "mrr@10": 0.08, "mrr@50": 0.09, "n_examples": 50, "examples_in_file": 50, "test_file": "t.jsonl"}

    return train, evaluate


def test_benchmark_rows_seeds_partial_rerun_and_reuse(tmp_path: Path):
    config = load_config([], home=tmp_path / "home")
    trained: list[str] = []
    train, evaluate = _fake(trained)
    only = ["qamrec", "no_graph", "pretrained"]
    res = run_crs_benchmark("inspired", config, tmp_path / "out", None, train, evaluate, only=only,
                            log=lambda s: None, seeds=(0, 1))
    assert set(res) == set(only) and len(trained) == 6
    assert res["qamrec"]["recall@10"][0] == pytest.approx(0.205)
    assert res["qamrec"]["recall@10"][1] == pytest.approx(0.01 / 2 ** 0.5)  # sample std of 0.20, 0.21
    assert res["no_graph"]["recall@10"][0] == pytest.approx(0.155)
    md = (tmp_path / "out" / "crs_inspired.md").read_text()
    assert "0.205 ± 0.007" in md and "+ 12 pretraining" in md and "MSCRS (published" in md
    # a rerun of one row keeps the others and reuses complete runs with the same settings
    res = run_crs_benchmark("inspired", config, tmp_path / "out", None, train, evaluate, only=["no_graph"],
                            log=lambda s: None, seeds=(0, 1))
    assert set(res) == set(only) and len(trained) == 6
    saved = json.loads((tmp_path / "out" / "crs_inspired.json").read_text())
    assert [m["seed"] for m in saved["per_seed"]["pretrained"]] == [0, 1]
    # a row rerun with fewer seeds says so and shows no std
    run_crs_benchmark("inspired", config, tmp_path / "out", None, train, evaluate, only=["no_graph"],
                      log=lambda s: None, seeds=(0,))
    md = (tmp_path / "out" / "crs_inspired.md").read_text()
    assert "| no_graph (1 seed) | 0.050 | 0.150 | " in md and "| qamrec | 0.050 ± 0.000 | 0.205 ± 0.007 |" in md
    assert "no_new_data" not in res and any(v.name == "no_new_data" and v.datasets == ("redial",) for v in VARIANTS)
    # comma-separated names are split; a name no variant has stops before anything runs
    res = run_crs_benchmark("inspired", config, tmp_path / "out", None, train, evaluate, only=["no_graph,qamrec"],
                            log=lambda s: None, seeds=(0,))
    assert {"no_graph", "qamrec"} <= set(res) and trained[-1] == "inspired-qamrec"
    with pytest.raises(QamrecError, match="no_such_row: no such variant"):
        run_crs_benchmark("inspired", config, tmp_path / "out2", None, train, evaluate, only=["qamrec,no_such_row"],
                          log=lambda s: None, seeds=(0,))
    assert not (tmp_path / "out2").exists()


def test_a_run_saved_before_a_setting_existed_is_reused_as_its_default(tmp_path: Path):
    from qamrec.train.rundir import reusable_run

    config = load_config([], home=tmp_path / "home")
    run = tmp_path / "run"
    run.mkdir()
    saved = json.loads(config.model_dump_json()) | {"dataset": "inspired"}
    del saved["train"]["schedule"], saved["train"]["warmup"]  # as saved before these settings existed
    (run / "config.json").write_text(json.dumps(saved))
    (run / "metrics.json").write_text(json.dumps({"model": "qamrec", "recall@10": 0.3}))
    assert reusable_run(run, config, "inspired", "qamrec") == {"model": "qamrec", "recall@10": 0.3}
    assert reusable_run(run, config, "redial", "qamrec") is None
    assert reusable_run(run, config, "inspired", "mscrs") is None
    cosine = load_config(["train.schedule=cosine"], home=tmp_path / "home")
    assert reusable_run(run, cosine, "inspired", "qamrec") is None  # the run did not do what is asked now
    saved["train"]["retired_setting"] = 1  # a setting since removed: not comparable
    (run / "config.json").write_text(json.dumps(saved))
    assert reusable_run(run, config, "inspired", "qamrec") is None


def test_the_finetuned_text_row_trains_every_seed_on_one_encoder(tmp_path: Path):
    config = load_config([], home=tmp_path / "home")
    trained: list[str] = []
    train, evaluate = _fake(trained)
    encoder = tmp_path / "out" / "encoders" / "inspired-seeds0-1"
    encoder.mkdir(parents=True)
    (encoder / ".finetune.json").write_text("{}")  # made by an earlier run: reused, not fine-tuned again
    res = run_crs_benchmark("inspired", config, tmp_path / "out", None, train, evaluate, only=["finetuned_text"],
                            log=lambda s: None, seeds=(0, 1))
    assert set(res) == {"finetuned_text"} and len(trained) == 2
    for seed in (0, 1):
        saved = json.loads((tmp_path / "out" / "runs" / f"inspired-finetuned_text-seed{seed}" / "config.json")
                           .read_text())
        assert saved["features"]["text_model"] == str(encoder.resolve()) and saved["seed"] == seed


def test_the_ensemble_row_pools_its_members_runs_of_the_same_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import shutil

    import qamrec.eval.benchmark as bench

    config = load_config([], home=tmp_path / "home")
    trained: list[str] = []
    train, evaluate = _fake(trained)
    (tmp_path / "out" / "encoders" / "inspired-seeds0-1").mkdir(parents=True)
    (tmp_path / "out" / "encoders" / "inspired-seeds0-1" / ".finetune.json").write_text("{}")
    pooled: list[tuple[str, list[str]]] = []

    def pool(run_dir: Path, members: list[Path], config: Any, log: Any) -> None:
        assert all((m / "metrics.json").is_file() for m in members)  # the members ran first
        pooled.append((run_dir.name, [m.name for m in members]))
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(members[0] / "config.json", run_dir / "config.json")
        (run_dir / "metrics.json").write_text(json.dumps({"train_seconds": 6.0, "n_train": 100}))

    monkeypatch.setattr(bench, "_pool_members", pool)
    res = run_crs_benchmark("inspired", config, tmp_path / "out", None, train, evaluate, only=["ensemble"],
                            log=lambda s: None, seeds=(0, 1))
    assert set(res) == {"qamrec", "finetuned_text", "ensemble"} and len(trained) == 4
    assert pooled == [(f"inspired-ensemble-seed{k}", [f"inspired-qamrec-seed{k}", f"inspired-finetuned_text-seed{k}"])
                      for k in (0, 1)]
    assert "| ensemble | " in (tmp_path / "out" / "crs_inspired.md").read_text()
