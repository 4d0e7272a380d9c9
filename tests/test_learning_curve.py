"""The learning-curve benchmark: one training per share, reuse of complete runs, the log-linear fit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from qamrec.config import load_config
from qamrec.eval.learning_curve import log_fit, run_learning_curve


def test_log_fit_recovers_a_line_in_log2():
    n = [100, 200, 400, 800]
    a, b = log_fit(n, [0.1 + 0.02 * math.log2(x) for x in n])
    assert a == pytest.approx(0.1) and b == pytest.approx(0.02)
    assert log_fit([100], [0.3]) == (0.3, 0.0)


def test_learning_curve_trains_each_share_once_and_extrapolates(tmp_path: Path) -> None:
    config = load_config(home=tmp_path / "home")
    trained: list[float] = []

    def train(dataset: str, run: Path, c) -> dict:
        f = c.train.dialogue_fraction
        trained.append(f)
        run.mkdir(parents=True)
        m = {"model": "qamrec", "best_epoch": 2, "train_seconds": 1.0, "n_train": int(1000 * f),
             "test": {"recall@1": 0.01, "recall@10": 0.1 + 0.03 * math.log2(f * 4), "recall@50": 0.3,
                      "ndcg@10": 0.05, "n_examples": 200}}
        (run / "metrics.json").write_text(json.dumps(m))
        (run / "config.json").write_text(json.dumps(json.loads(c.model_dump_json()) | {"dataset": dataset}))
        return m

    def inspect(c, run: Path) -> dict[str, float]:
        f = c.train.dialogue_fraction
        return {"train_dialogues": int(400 * f), "unseen_gold": 0.5 - f / 4, "unseen_recall@50": 0.01,
                "seen_recall@10": 0.2 * f}

    out = tmp_path / "out"
    r = run_learning_curve("redial", config, out, tmp_path / "runs", train, inspect, log=lambda m: None,
                           fractions=(1.0, 0.25, 0.5), target_dialogues=3_200)
    assert trained == [0.25, 0.5, 1.0]
    assert [p["train_dialogues"] for p in r["points"]] == [100, 200, 400]
    assert [p["unseen_gold"] for p in r["points"]] == pytest.approx([0.4375, 0.375, 0.25])
    assert [p["seen_recall@10"] for p in r["points"]] == pytest.approx([0.05, 0.1, 0.2])
    fit = r["fit"]["recall@10"]
    assert fit["b_per_doubling"] == pytest.approx(0.03)
    assert fit["at_3200"] == pytest.approx(0.1 + 0.03 * 5)  # 3,200 = 8 x 400: three more doublings
    for name in ("learning_curve_redial.json", "learning_curve_redial.md", "learning_curve_redial.png"):
        assert (out / name).stat().st_size > 0
    assert "extrapolated" in (out / "learning_curve_redial.md").read_text()
    trained.clear()
    run_learning_curve("redial", config, out, tmp_path / "runs", train, inspect, log=lambda m: None,
                       fractions=(0.25, 0.5, 1.0))
    assert trained == []
