"""``bench serve``'s in-process part on the small run: the parse is timed in the served path and without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def test_inprocess_times_the_parse(small_run: Path, prepared_home: Path, small_run_settings: list[str]):
    from qamrec.bench.serve import _inprocess, serve_table
    from qamrec.config import load_config
    from qamrec.data.step import load_table
    from qamrec.serve.engine import Engine

    c = load_config(small_run_settings, home=prepared_home)
    engine = Engine.from_run(small_run, c)  # its own engine: the shared one stays unextended
    movies = load_table(c.prepared_dir, "movielens-32m", "movies").rename({"movielens_id": "movie_id"}).tail(200)
    text = np.random.default_rng(0).normal(size=(200, 384)).astype(np.float32)
    r = _inprocess(engine, movies, text, calls=12, dtype="int8", log=lambda m: None, rank=0)
    assert r["parsed_p50_ms"] > 0 and r["unparsed_p50_ms"] > 0 and r["parse_alone_p50_ms"] > 0
    assert r["parse_ratio_p50"] > 0
    md = serve_table(r)  # no service numbers: the in-process rows alone
    assert "without the parse" in md and "HTTP" not in md
    assert r["reply_alone_p50_ms"] > 0 and r["replied_p50_ms"] > 0 and "the reply adds" in md
