"""The conversation benchmark: the validation files' recommender turns, and a short run on the small model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_validation_turns(prepared_home: Path) -> None:
    from qamrec.eval.conversation import conversation_examples

    redial = conversation_examples("redial", prepared_home / "raw")
    assert len(redial) == 6253 and len({e.dialogue for e in redial}) == 1000  # UniCRS's file, one row a turn
    assert sum(e.recommends for e in redial) == 2907 and "<movie>" in redial[1].resp
    inspired = conversation_examples("inspired", prepared_home / "raw")
    assert len({e.dialogue for e in inspired}) == 99 and all(e.context or e.dialogue >= 0 for e in inspired)
    assert any(e.recommends for e in inspired)
    with pytest.raises(ValueError):
        conversation_examples("movielens", prepared_home / "raw")


@pytest.mark.slow
def test_benchmark_on_the_small_model(small_engine, tmp_path: Path) -> None:
    from qamrec.eval.conversation import run_conversation_benchmark

    r = run_conversation_benchmark(small_engine, small_engine.config, "inspired", tmp_path, limit=40)
    assert r["examples"] == 40 and r["faithfulness"]["rate"] == 1.0 and r["faithfulness"]["checked"] > 40
    assert r["item_ratio_on_recommending_turns"] >= 0.9 and r["repeated_replies"] == 0.0
    assert r["metrics"]["dist@2"] > 0 and 0 <= r["metrics"]["bleu@2"] <= 1
    assert len(r["session"]) >= 5 and all(s["reply"] for s in r["session"])
    md = (tmp_path / "conversation_inspired.md").read_text()
    assert "MSCRS (published)" in md and "## A session through the service" in md and "*ours:*" in md
    assert json.loads((tmp_path / "conversation_inspired.json").read_text())["examples"] == 40
