"""The requests benchmark: the catalog's truth on hand-made movies, the pseudo-request generator (deterministic,
held-out movies never in the pretraining stream), the request metrics on hand-computed lists, and
``qamrec benchmark requests`` end to end on the small run (generated + hand-written requests, md + json)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from qamrec.data.pseudo_requests import (
    HELDOUT_FRACTION,
    RequestGenerator,
    heldout_mask,
    is_heldout,
    pretraining_pairs,
    user_conversations,
)
from qamrec.data.request_facts import Fact, MovieTruth, canonical_genre, name_key
from qamrec.eval.metrics import ConstraintPrecision, NegationViolations, SatisfyingNDCG

GENRES = (["Comedy"], ["Comedy", "Romance"], ["Horror"], ["Sci-Fi", "Action"], ["Drama", "War"], ["Film-Noir",
          "Crime"], ["Animation", "Children"], ["family", "comedy"], ["Western"], ["Musical", "Romance"])


def _truth(n: int = 400) -> MovieTruth:
    """``n`` hand-made movies with unique titles ("Zorblat 17"), genres, years 1930-2019, people and tags."""
    ids = [1000 + 7 * i for i in range(n)]
    movies = pl.DataFrame({"movie_id": ids, "title": [f"Zorblat {i}" for i in range(n)],
                           "year": [1930 + (i * 7) % 90 for i in range(n)],
                           "genres": [GENRES[i % len(GENRES)] for i in range(n)]},
                          schema_overrides={"year": pl.Int32})
    people = {m: [f"Actor Number{i % 13}", f"Director Person{i % 5}"] for i, m in enumerate(ids)}
    tags = {m: ["atmospheric"] if i % 3 == 0 else ["space", "time travel"] for i, m in enumerate(ids) if i % 2}
    return MovieTruth(movies, people, tags)


# ------------------------------------------------------------------------------------------------ the checker
def test_truth_on_hand_made_movies():
    movies = pl.DataFrame({"movie_id": [1, 2, 3, 4, 5], "title": ["Heat", "Up", "Matrix, The", "Noir", "Kids"],
                           "year": [1995, 2009, 1999, None, 2001],
                           "genres": [["Action", "Crime"], ["Animation", "Comedy"], ["Action", "Sci-Fi"],
                                      ["Film-Noir"], ["family"]]}, schema_overrides={"year": pl.Int32})
    t = MovieTruth(movies, {1: ["Al Pacino", "Michael Mann"], 3: ["Keanu Reeves (actor)"], 5: ["Cher"]},
                   {3: ["Cyberpunk", "philosophy"]})
    ids = [1, 2, 3, 4, 5, 99]  # 99: a movie the catalog does not know
    assert t.label(3) == "The Matrix (1999)"
    assert t.has(Fact("genre", "action"), ids).tolist() == [True, False, True, False, False, False]
    assert t.has(Fact.parse("genre:Children"), ids).tolist() == [False, False, False, False, True, False]  # family
    assert t.has(Fact.parse("genre:film noir"), ids).tolist()[3]
    assert t.has(Fact.parse("years:1990-1999"), ids).tolist() == [True, False, True, False, False, False]
    assert t.has(Fact.parse("years:-1999"), ids).tolist() == [True, False, True, False, False, False]  # no year: no
    assert t.has(Fact.parse("years:2001-"), ids).tolist() == [False, True, False, False, True, False]
    assert t.has(Fact.parse("person:keanu reeves"), ids).tolist() == [False, False, True, False, False, False]
    assert not t.has(Fact.parse("person:Cher"), ids).any()  # one word is no name a request can pin down
    assert t.has(Fact.parse("tag:cyberpunk"), ids).tolist() == [False, False, True, False, False, False]
    like = Fact("like", "Heat (1995)", movie=1)  # shares a genre with Heat, and is not Heat
    assert t.has(like, ids).tolist() == [False, False, True, False, False, False]
    facts = [Fact.parse("genre:action"), Fact.parse("not years:1990-1999")]
    assert not t.satisfies(facts, ids).any()
    facts = [Fact.parse("not genre:action"), Fact.parse("not tag:cyberpunk")]
    assert t.satisfies(facts, ids).tolist() == [False, True, False, True, True, False]
    assert t.violates_negation(facts, ids).tolist() == [True, False, True, False, False, False]
    assert t.describe(1)["people"] == ["Al Pacino", "Michael Mann"]
    assert canonical_genre(" Family ") == "children" and name_key("Penélope Cruz (actress)") == "penelope cruz"


def test_fact_specs_round_trip_and_refuse_nonsense():
    for spec in ("genre:comedy", "not genre:romance", "years:1950-1959", "years:-1969", "years:2006-",
                 "person:Tom Hanks", "not tag:gore"):
        assert Fact.parse(spec).spec == spec
    assert Fact.parse("years:1994").spec == "years:1994-1994"
    assert Fact.parse("like:Heat (1995)", resolve=lambda t: 7) == Fact("like", "Heat (1995)", movie=7)
    assert Fact.parse("not years:1990-1999").label == "not 1990-1999"
    assert Fact.parse("years:-1969").label == "before 1970"
    for bad in ("genre", "colour:red", "years:the fifties", "not like:Heat (1995)"):
        with pytest.raises(ValueError):
            Fact.parse(bad, resolve=lambda t: 1)


# ------------------------------------------------------------------------------------------------ the generator
def test_generator_is_deterministic_and_its_facts_hold_for_the_target():
    t = _truth()
    gen = RequestGenerator(t, t.ids, anchors=t.ids.tolist(), min_satisfying=3, min_person_movies=3)
    a = gen.generate(120, seed=3, targets=t.ids.tolist())
    b = gen.generate(120, seed=3, targets=t.ids.tolist())
    assert [(r.text, r.facts, r.target) for r in a] == [(r.text, r.facts, r.target) for r in b]
    assert [r.text for r in gen.generate(120, seed=4, targets=t.ids.tolist())] != [r.text for r in a]
    assert len(a) == 120 and len({r.text.lower() for r in a}) == 120
    for r in a:
        assert 1 <= len(r.facts) <= 3
        assert t.satisfies(r.facts, [r.target])[0], (r.text, r.facts)
        assert gen.count(r.facts) >= 3
    kinds = {f.kind for r in a for f in r.facts} | {"not" for r in a if any(f.negated for f in r.facts)}
    assert kinds >= {"genre", "years", "person", "tag", "like", "not"}
    # worded many ways: many distinct openings, not one template
    assert len({" ".join(r.text.lower().split()[:2]) for r in a}) >= 20


def test_heldout_movies_never_reach_the_pretraining_stream():
    t = _truth()
    held = set(t.ids[heldout_mask(t.ids)].tolist())
    assert 0.1 < len(held) / t.n < 0.3  # about HELDOUT_FRACTION, fixed by a hash of the id
    assert all(is_heldout(m) for m in held) and HELDOUT_FRACTION == 0.2
    assert np.mean([is_heldout(m) for m in range(20000)]) == pytest.approx(HELDOUT_FRACTION, abs=0.01)
    held_titles = {t.titles[m][0] for m in held}
    pairs = list(pretraining_pairs(t, 400, seed=1))
    assert len(pairs) == 400 and pairs == list(pretraining_pairs(t, 400, seed=1))
    assert not {m for _, m in pairs} & held  # never a target
    named = {w for text, _ in pairs for w in _zorblats(text)}
    assert named and not named & held_titles  # never an anchor either
    ratings = pl.DataFrame({"user_id": [u for u in range(30) for _ in range(8)],
                            "movie_id": [int(t.ids[(u * 11 + j * 5) % t.n]) for u in range(30) for j in range(8)],
                            "rating": [5.0, 4.0, 4.5, 2.0, 4.0, 5.0, 4.0, 3.0] * 30})
    convs = list(user_conversations(ratings, t, 100, seed=0))
    assert len(convs) == 100 and not {m for _, m in convs} & held
    assert not {w for text, _ in convs for w in _zorblats(text)} & held_titles


def test_benchmark_draws_from_heldout_movies_only():
    from qamrec.eval.requests import generated_requests

    t = _truth()
    reqs = generated_requests(t, t.ids[:300], 80, seed=0, served=t.ids)
    assert len(reqs) == 80
    assert all(is_heldout(r.target) for r in reqs)
    assert all(is_heldout(f.movie) for r in reqs for f in r.facts if f.kind == "like")
    assert any(r.target not in set(t.ids[:300].tolist()) for r in reqs)  # some beyond the graph's movies


def _zorblats(text: str) -> set[str]:
    import re

    return {f"Zorblat {n}" for n in re.findall(r"(?i)zorblat (\d+)", text)}


# ------------------------------------------------------------------------------------------------ the metrics
def test_request_metrics_on_hand_computed_lists():
    p, v, n = ConstraintPrecision(10), NegationViolations(10), SatisfyingNDCG(10)
    p.update([True, False, True])  # a short list: the empty places count as misses
    p.update([True] * 12)  # only the first 10 are read
    assert p.compute() == pytest.approx((0.2 + 1.0) / 2) and p.count == 2
    v.update([False, True] + [False] * 8)
    assert v.compute() == pytest.approx(0.1)
    n.update([False, True, True], n_relevant=2)
    assert n.compute() == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    n2 = SatisfyingNDCG(10)
    n2.update([True] * 5 + [False] * 5, n_relevant=100)  # the ideal list has 10 relevant movies
    n2.update([False] * 10, n_relevant=0)  # nothing relevant: 0
    ideal = sum(1 / math.log2(i + 2) for i in range(10))
    assert n2.compute() == pytest.approx(sum(1 / math.log2(i + 2) for i in range(5)) / ideal / 2)
    assert math.isnan(ConstraintPrecision(10).compute())
    with pytest.raises(ValueError):
        ConstraintPrecision(0)


# ------------------------------------------------------------------------------------------------ real data
def test_handwritten_requests_are_checkable(prepared_home: Path):
    from qamrec.eval.requests import load_handwritten

    t = MovieTruth.from_prepared(prepared_home / "prepared")
    hand = load_handwritten(t, set())
    assert len(hand) == 30 and len({h.text for h in hand}) == 30
    assert sum(h.negates for h in hand) >= 8
    assert {f.kind for h in hand for f in h.facts} == {"genre", "years", "person", "tag", "like"}
    for h in hand:
        assert t.satisfies(h.facts, t.ids).sum() >= 10, h.text
    demo = {h.text: h for h in hand}["a mystery whodunit, no romance please"]
    assert [f.spec for f in demo.facts] == ["genre:mystery", "not genre:romance"]


def test_benchmark_requests_end_to_end(small_run: Path, prepared_home: Path, small_run_settings: list[str],
                                       tmp_path: Path):
    from typer.testing import CliRunner

    from qamrec.cli import app

    base = ["--home", str(prepared_home)] + [x for s in small_run_settings for x in ("--set", s)]
    out = tmp_path / "results"
    # the run compared with itself: its rows must repeat ours exactly
    res = CliRunner().invoke(app, base + ["benchmark", "requests", "--run", str(small_run), "--out", str(out), "--n",
                                          "24", "--seed", "5", "--catalog", "graph", "--compare", str(small_run)])
    assert res.exit_code == 0, res.output
    body = json.loads((out / "requests.json").read_text())
    md = (out / "requests.md").read_text()
    graph = body["catalogs"]["graph"]
    rows = ["ours", "ours (not pretrained)", "ours, words only", "ours (not pretrained), words only",
            "text similarity", "popularity"]
    assert set(graph["methods"]) == set(rows)  # (the JSON keys are sorted; the table keeps this order)
    at = [md.index(f"| {r} | generated (24) |") for r in rows]
    assert at == sorted(at)
    for a, b in (("ours", "ours (not pretrained)"), ("ours, words only", "ours (not pretrained), words only")):
        for source in ("generated", "hand-written"):
            x, y = graph["methods"][a][source], graph["methods"][b][source]
            assert x["constraint_precision@10"] == y["constraint_precision@10"] and x["ndcg@10"] == y["ndcg@10"]
    assert body["models"]["ours"].endswith("without pretraining") and "- ours (not pretrained): " in md
    for m in graph["methods"].values():
        for source, count in (("generated", 24), ("hand-written", 30)):
            x = m[source]
            assert x["requests"] == count and 0 <= x["constraint_precision@10"] <= 1 and 0 <= x["ndcg@10"] <= 1
    ours, pop = graph["methods"]["ours"]["generated"], graph["methods"]["popularity"]["generated"]
    assert ours["constraint_precision@10"] > pop["constraint_precision@10"]
    assert ours["negation_violations@10"] <= 0.05  # negations push violators out of the top 10
    assert len(graph["hand_written"]) == 30 and all(len(h["top5"]) == 5 for h in graph["hand_written"])
    assert "| ours | generated (24) |" in md and "a 1950s film noir" in md
    res = CliRunner().invoke(app, base + ["benchmark", "requests", "--run", str(small_run), "--catalog", "nope"])
    assert res.exit_code != 0


def test_benchmark_requests_on_an_extended_catalog(small_run: Path, prepared_home: Path,
                                                   small_run_settings: list[str], tmp_path: Path):
    """The full-catalog path on a small extension: 300 MovieLens-32M movies with random text embeddings."""
    from qamrec.config import load_config
    from qamrec.data.step import load_table
    from qamrec.eval.requests import run_requests_benchmark
    from qamrec.serve.engine import Engine

    c = load_config(small_run_settings, home=prepared_home)
    engine = Engine.from_run(small_run, c)  # its own engine: the shared one stays unextended
    movies = load_table(c.prepared_dir, "movielens-32m", "movies").rename({"movielens_id": "movie_id"}).tail(300)
    text = np.random.default_rng(0).normal(size=(300, 384)).astype(np.float32)
    truth = MovieTruth.from_prepared(c.prepared_dir)
    r = run_requests_benchmark(engine, truth, tmp_path, n=12, seed=2, catalog="both", extension=(movies, text),
                               dtype="float32", rank=0, extension_name="movielens-32m (300)", log=lambda m: None)
    assert set(r["catalogs"]) == {"graph", "full"}
    assert r["catalogs"]["full"]["movies"] > r["catalogs"]["graph"]["movies"]
    assert "full served catalog (movielens-32m (300))" in (tmp_path / "requests.md").read_text()
