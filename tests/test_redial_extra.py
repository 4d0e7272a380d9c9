"""All of ReDial's training data: the train_extra/ dialogues and movie lists, and no leakage of test dialogues."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from qamrec.config import load_config
from qamrec.data.crs import list_examples, load_crs
from qamrec.data.redial import read_redial_dialogues
from qamrec.data.redial_lists import read_movie_lists
from qamrec.data.steps import REDIAL_LIST_IDS, REDIAL_LISTS
from qamrec.errors import DataFormatError

OFFICIAL_TEST_FIRST_ID = 20001  # official test conversations are 20001-23322


def test_union_dialogues_are_train_dialogues(shared_data: Path):
    d = read_redial_dialogues(shared_data / "redial/train_extra/train_dialogs_union.jsonl")
    ids = d.dialogues["dialogue_id"].cast(pl.Int64)
    assert d.dialogues.height == 4_101 and ids.n_unique() == 4_101
    assert ids.max() < OFFICIAL_TEST_FIRST_ID
    assert d.turns.height > 60_000 and d.mentions.height > 20_000


def test_movie_lists_on_the_real_files(shared_data: Path):
    lists = read_movie_lists([shared_data / f for f in REDIAL_LISTS], shared_data / REDIAL_LIST_IDS)
    assert lists["dialogue_id"].n_unique() == 9_747
    assert lists["dialogue_id"].cast(pl.Int64).max() < OFFICIAL_TEST_FIRST_ID
    assert lists.height == 45_176
    # positions run 0..n-1 within each conversation and no movie is listed twice in one
    per = lists.group_by("dialogue_id").agg(pl.len().alias("n"), pl.col("position").max().alias("last"),
                                            pl.col("redial_id").n_unique().alias("movies"))
    assert (per["last"] == per["n"] - 1).all() and (per["movies"] == per["n"]).all()
    # every movie of a conversation that also exists as text is among that dialogue's movieMentions
    text = read_redial_dialogues(shared_data / "redial/train_extra/train_dialogs_union.jsonl").mentions
    both = lists.join(text.select("dialogue_id").unique(), on="dialogue_id")
    assert both["dialogue_id"].n_unique() == 4_011
    missing = both.join(text.select("dialogue_id", "redial_id"), on=["dialogue_id", "redial_id"], how="anti")
    assert missing.height == 0


def test_movie_lists_bad_input_names_the_step(tmp_path: Path):
    (tmp_path / "ids.json").write_text('{"123": 0, "456": 1}')
    (tmp_path / "lists.json").write_text('[["7", [[0, 1]], [], [[1, 0]]], ["7", [[0, 1], [5, 1]], [], []]]')
    with pytest.raises(DataFormatError, match=r"lists.json, field .\[1\].: movie_index 5 is not in ids.json"):
        read_movie_lists([tmp_path / "lists.json"], tmp_path / "ids.json")
    (tmp_path / "lists.json").write_text('[["7", [[0, 1]], []]]')
    with pytest.raises(DataFormatError, match=r"lists.json.*\[0\]"):
        read_movie_lists([tmp_path / "lists.json"], tmp_path / "ids.json")
    (tmp_path / "lists.json").write_text('[["7", [[0, 1]], [], [[1, 0]]], ["7", [[0, 1], [1, 0]], [], []]]')
    got = read_movie_lists([tmp_path / "lists.json"], tmp_path / "ids.json")
    assert got.rows() == [("7", 0, 123, 1), ("7", 1, 456, 0)]


def test_list_examples_predict_the_next_movie():
    lists = pl.DataFrame({"dialogue_id": ["5", "5", "5", "9", "9"], "position": [0, 1, 2, 0, 1],
                          "redial_id": [1, 2, 3, 4, 5], "liked": [1, 0, 1, 1, 1], "entity": [10, 11, 12, 13, None]},
                         schema_overrides={"liked": pl.Int8})
    ex = list_examples(lists, {10: "Heat (1995)", 11: "Up (2009)", 12: "Alien (1979)"}, first_dialogue=100,
                       items={11, 12})
    assert [(e.dialogue, e.item, e.entities) for e in ex] == [(100, 11, (10,)), (100, 12, (10, 11))]
    assert ex[1].context == ("I liked Heat (1995).", "Up (2009)?")


@pytest.fixture(scope="module")
def benchmark_split(prepared_home: Path):
    config = load_config(["graph.heldout_fraction=0.3"], home=prepared_home)
    return config, load_crs("redial", config)


def test_all_the_data_is_used_and_counted(benchmark_split, prepared_home: Path):
    config, crs = benchmark_split
    base = load_crs("redial", config.with_overrides(["train.extra_dialogues=false"]))
    assert len(base.train) == 5_171 and base.n_train_dialogues == 1_363  # the published validation subsets
    assert len(crs.train) > 6 * len(base.train) and crs.n_train_dialogues > 9_000
    assert crs.train_dialogues["dialogue_id"].n_unique() > 9_000
    listed = [e for e in crs.train if e.resp == "" and e.context and e.context[0].endswith((").", ")?"))]
    assert len(listed) > 20_000
    # the product trains on everything: no held-out dialogue, more training dialogues
    product = load_crs("redial", load_config(home=prepared_home))
    assert product.heldout == [] and product.n_train_dialogues > crs.n_train_dialogues


def test_no_test_or_dev_dialogue_leaks_into_graph_or_training(benchmark_split):
    config, crs = benchmark_split
    dialogues = pl.read_parquet(config.prepared_dir / "redial/dialogues.parquet")
    first = dialogues.filter(pl.col("source") == "unicrs_valid_dialogs.jsonl")["dialogue_id"].to_list()
    held = {first[i] for i in crs.heldout}
    graph_ids = set(crs.train_dialogues["dialogue_id"].to_list())
    assert len(held) == 300 and not held & graph_ids
    # the held-out conversations also exist as movie lists: none of them became training examples
    lists = pl.read_parquet(config.prepared_dir / "catalog/redial_movie_lists.parquet")
    assert lists.filter(pl.col("dialogue_id").is_in(list(held)))["dialogue_id"].n_unique() > 250
    turns = pl.read_parquet(config.prepared_dir / "catalog/redial_turns.parquet")
    n_text = turns.filter(~pl.col("dialogue_id").is_in(list(held)))["dialogue_id"].n_unique()
    assert max(e.dialogue for e in crs.train) >= n_text  # movie-list examples are numbered after the text ones
    dev = {e.dialogue for e in crs.dev}
    assert dev and max(dev) < n_text  # dev examples are text dialogues only (the protocol's kind)
    assert not dev & {e.dialogue for e in crs.train}
    ids = sorted(turns.filter(~pl.col("dialogue_id").is_in(list(held)))["dialogue_id"].unique().to_list())
    assert not {ids[i] for i in dev} & graph_ids


def test_one_speakers_messages_are_merged_without_moving_the_split(benchmark_split):
    """UniCRS joined consecutive messages of one speaker (its test files read so); the raw train dialogues are
    merged alike, and the dev and graph dialogues are those of one turn a message."""
    config, crs = benchmark_split
    apart = load_crs("redial", config.with_overrides(["train.merge_turns=false"]))
    assert (len(crs.train), len(crs.dev), len(apart.train), len(apart.dev)) == (33_486, 1_475, 33_537, 1_484)
    dev, dev_apart = {e.dialogue for e in crs.dev}, {e.dialogue for e in apart.dev}
    assert dev == dev_apart and not dev & {e.dialogue for e in crs.train}
    assert crs.train_dialogues.equals(apart.train_dialogues)
    # a recommender's second message no longer sees its first in the context: shorter contexts
    assert np.mean([len(e.context) for e in crs.dev]) < 0.75 * np.mean([len(e.context) for e in apart.dev])


def test_a_run_saved_before_merging_is_read_as_unmerged(tmp_path: Path):
    import json

    from qamrec.config import saved_config
    from qamrec.train.rundir import reusable_run

    config = load_config([], home=tmp_path)
    saved = json.loads(config.model_dump_json()) | {"dataset": "redial"}
    del saved["train"]["merge_turns"]  # as saved before the setting existed: its examples were not merged
    (tmp_path / "metrics.json").write_text(json.dumps({"model": "popularity"}))
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert reusable_run(tmp_path, config, "redial", "popularity") is None
    assert reusable_run(tmp_path, config.with_overrides(["train.merge_turns=false"]), "redial", "popularity")
    assert saved_config(saved, tmp_path).train.merge_turns is False
    assert config.train.merge_turns is True


def test_dev_and_training_dialogues_in_the_test_files_format(benchmark_split):
    """The dev and training dialogues the test file holds, as it processes them (UniCRS entity linking and
    labels): none held out; the dev ones are raw dev dialogues, with the file's linked non-movie entities."""
    config, crs = benchmark_split
    dialogues = pl.read_parquet(config.prepared_dir / "redial/dialogues.parquet")
    first = dialogues.filter(pl.col("source") == "unicrs_valid_dialogs.jsonl")["dialogue_id"].to_list()
    turns = pl.read_parquet(config.prepared_dir / "catalog/redial_turns.parquet")
    held = {first[i] for i in crs.heldout}
    ids = sorted(set(turns["dialogue_id"].unique().to_list()) - held)
    dev_ids = {ids[e.dialogue] for e in crs.dev}
    got = {first[e.dialogue] for e in crs.dev_as_test}
    assert len(crs.dev_as_test) == 242 and len(got) == 62
    train_ids = {ids[e.dialogue] for e in crs.train if e.dialogue < len(ids)}  # movie lists are numbered after
    assert got <= dev_ids and not got & held and not got & train_ids
    items = set(crs.item_ids)
    assert all(e.item in items for e in crs.dev_as_test)
    # the file links entities the raw dialogues' examples do not have: genres, people (DBpedia)
    assert np.mean([sum(a not in items for a in e.entities) for e in crs.dev_as_test]) > 1.0
    assert not any(a not in items for e in crs.dev for a in e.entities)
    # the raw dev examples of those same dialogues are flagged, for the dev choices to report their gain apart
    assert len(crs.dev_in_test_file) == len(crs.dev) and sum(crs.dev_in_test_file) == 244
    assert {ids[e.dialogue] for e, flag in zip(crs.dev, crs.dev_in_test_file) if flag} == got
    # the file's examples of training dialogues: the rest of what it does not hold out
    assert len(crs.train_as_test) == 2_585 - 242
    assert {first[e.dialogue] for e in crs.train_as_test} <= train_ids
    # INSPIRED trains on a file in its test file's format: there the two are dev and the training examples
    inspired = load_crs("inspired", config)
    assert inspired.dev_as_test == inspired.dev and inspired.train_as_test == inspired.train
    assert inspired.dev_in_test_file == []
