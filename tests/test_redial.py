import json
from pathlib import Path

import polars as pl
import pytest

from qamrec.data.redial import read_id2info, read_movies_with_mentions, read_redial_dialogues, read_unicrs_examples
from qamrec.errors import DataFormatError


def test_raw_dialogues_real(shared_data: Path) -> None:
    a = read_redial_dialogues(shared_data / "redial/raw/unicrs_valid_dialogs.jsonl")
    b = read_redial_dialogues(shared_data / "redial/raw/crslab_valid_dialogs.jsonl")
    assert a.dialogues.height == 1000 and b.dialogues.height == 901
    ids_a, ids_b = set(a.dialogues["dialogue_id"]), set(b.dialogues["dialogue_id"])
    assert len(ids_a & ids_b) == 88 and len(ids_a | ids_b) == 1813
    first = a.turns.filter(pl.col("dialogue_id") == "16162").sort("turn")
    assert first["role"][0] == "recommender" and first["role"][1] == "seeker"
    assert first["movies"][1].to_list() == ["135508"]
    assert "The Babadook (2014)" in first["text"][1] and "@" not in first["text"][1]
    liked = a.mentions.filter((pl.col("dialogue_id") == "16162") & (pl.col("redial_id") == 131178))
    assert liked["recommender_seen"][0] == 2 and liked["seeker_liked"][0] == 1


def test_unicrs_examples_real(shared_data: Path) -> None:
    ex = read_unicrs_examples(shared_data / "redial/unicrs/valid_data_processed.jsonl")
    assert ex.height == 6253 and ex["dialogue"].n_unique() == 1000
    assert ex["rec"][1].to_list() == [9769, 15523]


def test_movie_metadata_real(shared_data: Path) -> None:
    info = read_id2info(shared_data / "redial/id2info.json")
    assert info.height == 6583 and info["imdb_id"].null_count() == 0
    row = info.filter(pl.col("redial_id") == 100026).row(0, named=True)
    assert (row["title"], row["year"], row["director"]) == ("Pari", 1995, ["Dariush Mehrjui"])
    named = read_movies_with_mentions(shared_data / "redial/movies_with_mentions.csv")
    assert named.height == 6924


def _dialogue(**over: object) -> dict:
    d = {"conversationId": "1", "initiatorWorkerId": 1, "respondentWorkerId": 2, "movieMentions": {"5": "X (2000)"},
         "messages": [{"text": "hi @5", "senderWorkerId": 1}]}
    d.update(over)
    return d


def test_bad_input_names_file_line_field(tmp_path: Path) -> None:
    p = tmp_path / "raw.jsonl"
    p.write_text(json.dumps(_dialogue()) + "\n" + json.dumps(_dialogue(messages=[{"text": 3, "senderWorkerId": 1}]))
                 + "\n")
    with pytest.raises(DataFormatError, match=r"raw\.jsonl, line 2, field 'messages\[0\]\.text': wrong type int"):
        read_redial_dialogues(p)
    p.write_text(json.dumps({k: v for k, v in _dialogue().items() if k != "messages"}) + "\n")
    with pytest.raises(DataFormatError, match="line 1, field 'messages': missing field"):
        read_redial_dialogues(p)
    p.write_text('{"context": [""], "resp": "x", "rec": ["a"], "entity": []}\n')
    with pytest.raises(DataFormatError, match="field 'rec'"):
        read_unicrs_examples(p)
    p.write_text("movieId,movieName\n1,X (2000)\n")
    with pytest.raises(DataFormatError, match=r"missing column\(s\) \['nbMentions'\]"):
        read_movies_with_mentions(p)
