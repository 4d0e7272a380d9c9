"""The simulated multi-round sessions of ``benchmark rounds``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qamrec.eval.protocol import CRSExample
from qamrec.eval.rounds import SimUser, run_rounds_benchmark, sim_users, simulate


def test_sim_users_one_per_dialogue_from_the_first_utterance():
    ex = [CRSExample(dialogue=0, turn=1, context=["", "hi, any horror?", "sure"], entities=[], item=7, resp=""),
          CRSExample(dialogue=0, turn=3, context=["", "hi, any horror?"], entities=[], item=8, resp=""),
          CRSExample(dialogue=1, turn=0, context=["x"], entities=[], item=99, resp=""),  # not a candidate
          CRSExample(dialogue=2, turn=0, context=[""], entities=[], item=7, resp="")]  # no utterance
    users = sim_users(ex, {7: 70, 8: 80})
    assert users == [SimUser(0, "hi, any horror?", 70)]


@pytest.mark.slow
def test_simulate_rounds_and_modes(small_engine, tmp_path: Path):
    e = small_engine
    start = "a scary movie for tonight"
    base = e.refine
    try:
        e.refine = base.model_copy(update={"mode": "none"})
        ranked = [m["id"] for m in e.recommend(start, k=30, suggestions=0, understand=False).movies]
        assert simulate(e, SimUser(0, start, ranked[0]), k=5, rounds=5) == 1
        assert simulate(e, SimUser(0, start, ranked[12]), k=5, rounds=5) == 0  # the list never changes
        e.refine = base.model_copy(update={"mode": "naive"})
        assert simulate(e, SimUser(0, start, ranked[12]), k=5, rounds=5) == 3  # 5 removed per round
        e.refine = base.model_copy(update={"mode": "propagation"})
        assert simulate(e, SimUser(0, start, ranked[0]), k=5, rounds=5) == 1
    finally:
        e.refine = base
    users = [SimUser(i, start, ranked[i]) for i in range(0, 30, 3)]
    res = run_rounds_benchmark(e, users, tmp_path, "tiny", ks=(5,), rounds=3)
    assert e.refine is base
    sa = res["sa"]
    assert sa["none@k=5"] == [0.2, 0.2, 0.2]  # ranks 0 and 3 of 10 users
    assert sa["naive@k=5"] == [0.2, 0.4, 0.5]  # ranks 5-9 in round 2, 10-14 in round 3
    assert all(a <= b for a, b in zip(sa["propagation@k=5"], sa["propagation@k=5"][1:]))
    saved = json.loads((tmp_path / "rounds_tiny.json").read_text())
    assert saved["sa"] == sa and (tmp_path / "rounds_tiny.png").stat().st_size > 0
    assert "| label propagation | 5 |" in (tmp_path / "rounds_tiny.md").read_text()
