"""The graph on real data (counts, no leakage) and a short real training run against Popularity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from qamrec.config import load_config
from qamrec.data.crs import load_crs
from qamrec.errors import QamrecError
from qamrec.eval.protocol import read_crs_examples
from qamrec.graph.build import build_graph


def zeros_text(texts: list[str]) -> np.ndarray:
    return np.zeros((len(texts), 4), np.float32)


@pytest.fixture(scope="session")
def redial(prepared_home: Path):
    config = load_config(["graph.heldout_fraction=0.3"], home=prepared_home)  # the benchmark's split
    return config, load_crs("redial", config)


def test_redial_split_has_no_leakage(redial):
    config, crs = redial
    valid = read_crs_examples(crs.test_file)
    assert len(valid) == 3_696
    held = set(crs.heldout)
    assert len(held) == 300  # 30% of the 1,000 dialogues of the processed validation file
    dialogues = pl.read_parquet(config.prepared_dir / "redial/dialogues.parquet")
    first = dialogues.filter(pl.col("source") == "unicrs_valid_dialogs.jsonl")["dialogue_id"].to_list()
    held_ids = {first[i] for i in held}
    assert not held_ids & set(crs.train_dialogues["dialogue_id"].to_list())
    # training and dev contexts share no held-out dialogue: only a few stock sentences that workers reused
    # ("Hi, what kind of movies are you looking for?", a worker's usual opening) occur on both sides, and no
    # held-out dialogue has more than two of them
    held_text = {c for e in valid if e.dialogue in held for c in e.context if len(c) > 40}
    seen_text = {c for e in crs.train + crs.dev for c in e.context if len(c) > 40}
    assert len(held_text) > 1_000 and len(held_text & seen_text) < 0.03 * len(held_text)
    per_dialogue: dict[int, set[str]] = {}
    for e in valid:
        if e.dialogue in held:
            per_dialogue.setdefault(e.dialogue, set()).update(c for c in e.context if c in seen_text and len(c) > 40)
    assert max(len(s) for s in per_dialogue.values()) <= 2
    # dev dialogues are not graph dialogues either
    assert len(crs.train) > 3_000 and len(crs.dev) > 300


def test_dialogue_fraction_keeps_dev_and_test_and_shrinks_the_graph(redial):
    config, crs = redial
    half = load_crs("redial", config.with_overrides(["train.dialogue_fraction=0.5"]))
    assert half.n_train_dialogues == round(0.5 * crs.n_train_dialogues)
    assert half.dev == crs.dev and half.heldout == crs.heldout  # same dev and test dialogues
    train_d = {e.dialogue for e in half.train}
    assert train_d < {e.dialogue for e in crs.train} and 0.4 < len(half.train) / len(crs.train) < 0.6
    assert not train_d & {e.dialogue for e in crs.dev}
    graph_d = set(half.train_dialogues["dialogue_id"].to_list())
    assert graph_d < set(crs.train_dialogues["dialogue_id"].to_list())
    assert 0.4 < len(graph_d) / crs.train_dialogues["dialogue_id"].n_unique() < 0.6
    again = load_crs("redial", config.with_overrides(["train.dialogue_fraction=0.5"]))
    assert again.train == half.train  # seeded


def test_transfer_adds_the_other_datasets_examples_in_this_entity_space(redial):
    config, crs = redial
    both = load_crs("redial", config.with_overrides(["train.transfer=inspired"]))
    inspired = load_crs("inspired", config)
    extra = [e for e in both.train if e.dialogue < 0]
    assert both.train[: len(crs.train)] == crs.train and both.dev == crs.dev
    assert both.train_dialogues.equals(crs.train_dialogues)  # the other dataset never enters the graph
    n_in = len(inspired.train) + len(inspired.dev)
    assert 0.3 * n_in < len(extra) <= n_in
    items = set(crs.item_ids)
    redial_uri = {v: k for k, v in crs.entity2id.items()}
    inspired_uri = {v: k for k, v in inspired.entity2id.items()}
    assert all(e.item in items for e in extra)
    # each example is one of INSPIRED's: its gold item has the same DBpedia URI, or else the same catalog movie;
    # its context entities are the INSPIRED context entities that exist here (same URIs)
    source: dict[tuple, list] = {}
    for x in inspired.train + inspired.dev:
        source.setdefault((x.dialogue, x.turn, x.context), []).append(x)
    by_uri = 0
    for e in extra:
        xs = source[(-1 - e.dialogue, e.turn, e.context)]
        assert any(redial_uri[e.item] == inspired_uri[x.item] or
                   crs.entity_movie.get(e.item) == inspired.entity_movie.get(x.item) is not None for x in xs)
        by_uri += any(redial_uri[e.item] == inspired_uri[x.item] for x in xs)
        assert {redial_uri[m] for m in e.entities} <= {inspired_uri[m] for m in xs[0].entities}
    assert by_uri > 0.5 * len(extra)
    with pytest.raises(QamrecError, match="itself"):
        load_crs("redial", config.with_overrides(["train.transfer=redial"]))


def test_redial_graph_structure(redial):
    config, crs = redial
    config = config.with_overrides(["graph.ratings=movielens-small", "graph.text_knn=0"])
    graph = build_graph(crs, config, zeros_text, None)
    sizes = graph.sizes()
    nodes, edges = sizes["nodes"], sizes["edges"]
    assert set(nodes) == {"movie", "user", "dialogue", "genre", "tag", "entity"}
    assert nodes["user"] == 610 and edges["user__rates__movie"] == edges["movie__rev_rates__user"]
    assert 100_000 <= edges["user__rates__movie"] <= 100_836
    assert nodes["movie"] >= 9_742
    assert len(graph.meta["candidates"]) == len(graph.meta["item_ids"]) == 6_281
    assert nodes["dialogue"] == len(set(crs.train_dialogues["dialogue_id"].to_list()))
    assert nodes["entity"] == 31_161 - 6_281
    assert "movie__poster_knn__movie" not in edges and "movie__text_knn__movie" not in edges
    assert edges["movie__kg_starring__entity"] > 10_000 and nodes["genre"] >= 19
    # co-mention edges are between movies of one training dialogue
    co = graph.data["movie", "comentioned", "movie"].edge_index
    movie_ids = graph.meta["movie_ids"]
    by_dialogue = crs.train_dialogues.group_by("dialogue_id").agg("movie_id")
    pairs = {(a, b) for ms in by_dialogue["movie_id"].to_list() for a in ms for b in ms if a != b}
    got = {(movie_ids[a], movie_ids[b]) for a, b in co.t().tolist()}
    assert got and got <= pairs
    # rating attributes are rating / 5
    ea = graph.data["user", "rates", "movie"].edge_attr
    assert float(ea.min()) >= 0.1 - 1e-6 and float(ea.max()) <= 1.0


def test_inspired_graph_uses_train_split_only(prepared_home: Path):
    config = load_config(home=prepared_home).with_overrides(["graph.ratings=", "graph.text_knn=3"])
    crs = load_crs("inspired", config)
    graph = build_graph(crs, config, zeros_text, None)
    assert all(d.startswith("train_data_dbpedia:") for d in graph.meta["dialogues"])
    assert len(graph.meta["dialogues"]) <= 801 - 70  # dev dialogues (10%) are held out of the graph too
    assert "user" not in graph.data.node_types
    assert len(read_crs_examples(crs.test_file, crs.entity2id)) == 273
    assert len(crs.train) + len(crs.dev) == 2_094


@pytest.mark.slow
def test_short_training_run_beats_popularity(prepared_home: Path, tmp_path: Path):
    """Real encoders, a light graph (no MovieLens users), a few epochs: better than Popularity on INSPIRED."""
    from typer.testing import CliRunner

    from qamrec.cli import app

    runner = CliRunner()
    base = ["--home", str(prepared_home), "--set", "graph.ratings=", "--set", "train.epochs=6",
            "--set", "train.patience=6"]
    scores = {}
    for model in ("popularity", "qamrec"):
        run = tmp_path / model
        res = runner.invoke(app, base + ["train", "--dataset", "inspired", "--out", str(run), "--model", model])
        assert res.exit_code == 0, res.output
        for f in ("config.json", "model.json", "metrics.json", "graph/graph.json"):
            assert (run / f).exists()
        out = tmp_path / f"{model}.json"
        res = runner.invoke(app, base + ["evaluate", "--run", str(run), "--json", str(out)])
        assert res.exit_code == 0, res.output
        scores[model] = json.loads(out.read_text())
        assert scores[model]["n_examples"] == 273
    assert (tmp_path / "qamrec" / "model.safetensors").exists() and (tmp_path / "qamrec" / "curves.png").exists()
    assert scores["qamrec"]["recall@10"] > scores["popularity"]["recall@10"] + 0.03
    assert scores["qamrec"]["recall@50"] > scores["popularity"]["recall@50"]
    # the saved run scores exactly as it did when trained
    trained = json.loads((tmp_path / "qamrec" / "metrics.json").read_text())["test"]
    assert trained["recall@10"] == pytest.approx(scores["qamrec"]["recall@10"], abs=1e-9)


def test_examples_from_turns_follow_unicrs():
    from qamrec.data.crs import examples_from_turns

    turns = pl.DataFrame({
        "dialogue_id": ["a", "a", "a", "a", "b"],
        "turn": [0, 1, 2, 3, 0],
        "role": ["seeker", "recommender", "seeker", "recommender", "recommender"],
        "text": ["I liked X", "Try Y or Z", "seen Y", "then W", "hello W"],
        "movie_entities": [[1], [2, 3], [2], [4], [4]],
    })
    ex = examples_from_turns(turns)
    # one example per movie of a recommender turn with a context; the opening turn of "b" has none
    assert [(e.dialogue, e.turn, e.item) for e in ex] == [(0, 1, 2), (0, 1, 3), (0, 3, 4)]
    assert ex[0].context == ("I liked X",) and ex[0].entities == (1,)
    assert ex[2].context == ("I liked X", "Try Y or Z", "seen Y") and ex[2].entities == (1, 2, 3)
    both = examples_from_turns(turns, ("recommender", "seeker"))
    assert [(e.turn, e.item) for e in both] == [(1, 2), (1, 3), (2, 2), (3, 4)]


def test_examples_from_turns_merge_one_speakers_messages():
    from qamrec.data.crs import examples_from_turns

    # the recommender writes twice in a row: UniCRS joins the two messages into one answer from one context
    turns = pl.DataFrame({
        "dialogue_id": ["a"] * 5,
        "turn": [0, 1, 2, 3, 4],
        "role": ["seeker", "seeker", "recommender", "recommender", "seeker"],
        "text": ["hi", "I liked X", "Have you seen Y?", "Or Z", "thanks"],
        "movie_entities": [[], [1], [2], [3, 2], []],
    })
    ex = examples_from_turns(turns)
    assert [(e.turn, e.item) for e in ex] == [(2, 2), (2, 3), (2, 2)]
    assert all(e.context == ("hi I liked X",) and e.entities == (1,) for e in ex)
    assert ex[0].resp == "Have you seen Y? Or Z"
    # one turn a message: Z is answered after the recommender's own Y, which is then in the context
    apart = examples_from_turns(turns, merge=False)
    assert [(e.turn, e.item) for e in apart] == [(2, 2), (3, 3), (3, 2)]
    assert apart[1].context == ("hi", "I liked X", "Have you seen Y?") and apart[1].entities == (1, 2)
