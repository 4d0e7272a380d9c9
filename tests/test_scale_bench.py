"""``qamrec bench scale`` at two tiny scales: the JSON it promises, sizes growing with the scale, files written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qamrec.bench.scale import growth_exponents

REQUIRED = {"scale", "ratings", "build_s", "peak_rss_gb", "s_per_1000_batches", "embed_catalog_s"}


def test_growth_exponents_are_log_log_slopes() -> None:
    rows = [{"ratings": 10, "build_s": 1.0, "peak_rss_gb": 2.0, "s_per_1000_batches": 5.0, "embed_catalog_s": 1.0},
            {"ratings": 1000, "build_s": 100.0, "peak_rss_gb": 2.0, "s_per_1000_batches": 50.0,
             "embed_catalog_s": 0.0}]
    s = growth_exponents(rows[::-1], "ratings")  # sorted by ratings first
    assert s == {"build_s": [1.0], "peak_rss_gb": [0.0], "s_per_1000_batches": [0.5], "embed_catalog_s": [None]}


@pytest.mark.slow
def test_bench_scale_tiny(shared_data: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from qamrec.cli import app

    if not (shared_data / "movielens/ml-32m/movies.csv").is_file():
        pytest.skip("ml-32m/movies.csv not in the shared data")
    out = tmp_path / "report"
    args = ["--home", str(tmp_path / "home"), "--set", f"data.source={shared_data}", "--set", "sampled.batch_size=128",
            "bench", "scale", "--scale", "0.001,0.0005", "--batches", "3", "--queries", "50", "--threads", "1",
            "--no-features", "--out", str(out), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, (res.output, res.exception)
    rows = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r["scale"] for r in rows] == [0.0005, 0.001]  # ascending
    for r in rows:
        assert REQUIRED <= set(r), set(r)
        assert r["build_s"] > 0 and 0 < r["peak_rss_gb"] < 8 and r["s_per_1000_batches"] > 0
        assert r["embed_catalog_s"] > 0 and r["batches"] == 3 and r["synth_cached"] is False
        assert r["index_kind"] == "exact" and r["recall@10"] == 1.0 and 0 <= r["ivf_recall@10"] <= 1
    for key in ("ratings", "users", "movies", "edges"):
        assert rows[0][key] < rows[1][key], key
    assert rows[1]["ratings"] == 32_000
    assert sorted(p.name for p in out.iterdir()) == ["scale.json", "scale.md", "scale.png"]
    report = json.loads((out / "scale.json").read_text())
    assert report["rows"] == rows and set(report["growth_exponents"]) >= {"build_s", "peak_rss_gb"}
    md = (out / "scale.md").read_text()
    assert "| 0.001 | 32,000 |" in md and "Growth exponents" in md
    assert (out / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the synthetic data is cached in the data home
    from qamrec.config import load_config
    from qamrec.bench.scale import synth_dataset

    folder, seconds, cached = synth_dataset(load_config([f"data.source={shared_data}"], home=tmp_path / "home"), 0.0005)
    assert cached and seconds == rows[0]["synth_s"] and (folder / "ratings.csv").is_file()
