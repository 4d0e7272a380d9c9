"""``qamrec bench load`` briefly against the small trained model: two levels of a few seconds, two workers on
one SQLite file; no 5xx, every acknowledged feedback stored exactly once, every session intact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qamrec.bench.load import _in_order

pytestmark = pytest.mark.slow


def test_in_order() -> None:
    assert _in_order([1, 3], [1, 2, 3]) and _in_order([], [4]) and not _in_order([3, 1], [1, 2, 3])


def test_bench_load_keeps_its_promises(small_run: Path, prepared_home: Path, small_run_settings: list[str],
                                       tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from qamrec.cli import app

    out = tmp_path / "bench"
    args = ["--home", str(prepared_home), *[x for s in small_run_settings for x in ("--set", s)],
            "bench", "load", "--run", str(small_run), "--seconds", "3", "--levels", "1,4", "--out", str(out), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, (res.output, res.exception)
    levels = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r["clients"] for r in levels] == [1, 4]
    for r in levels:
        assert {"clients", "rps", "p50_ms", "p99_ms", "errors_5xx", "feedback_acknowledged", "feedback_rows",
                "rejected_503"} <= set(r)
        assert r["errors_5xx"] == 0 and r["errors_other"] == 0, r
        assert r["feedback_rows"] == r["feedback_acknowledged"] and r["feedback_ids_match"], r
        assert r["rps"] > 0 and r["p50_ms"] <= r["p99_ms"]
    assert sum(r["feedback_acknowledged"] for r in levels) > 0  # the mix did send feedback
    full = json.loads((out / "load.json").read_text())
    check = full["consistency"]
    assert check["sessions"] > 0 and check["sessions_intact"] == check["sessions"], check
    table = (out / "load.md").read_text()
    assert "| clients |" in table and "Retry-After" in table
    assert (out / "load.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
