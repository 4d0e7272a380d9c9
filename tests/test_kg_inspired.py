from pathlib import Path

import polars as pl
import pytest

from qamrec.data.inspired import read_inspired_unicrs
from qamrec.data.kg import parse_film_uri, read_kg
from qamrec.errors import DataFormatError


def test_redial_kg_real(shared_data: Path) -> None:
    kg = read_kg(shared_data / "redial/unicrs")
    assert kg.entities.height == 31161 and kg.entities["is_item"].sum() == 6281
    assert kg.triples.height == 105364 and kg.relations.height == 25


def test_inspired_real(shared_data: Path) -> None:
    kg = read_kg(shared_data / "inspired/unicrs")
    assert kg.entities["is_item"].sum() == 1472
    e2i = dict(kg.entities.select("uri", "entity_id").iter_rows())
    train = read_inspired_unicrs(shared_data / "inspired/unicrs/train_data_dbpedia.jsonl", e2i)
    valid = read_inspired_unicrs(shared_data / "inspired/unicrs/valid_data_dbpedia.jsonl", e2i)
    assert train.dialogues.height == 801 and valid.dialogues.height == 99
    assert set(train.turns["role"]) == {"seeker", "recommender"}
    knives = train.turns.filter(pl.col("movies").list.contains("Knives Out (2019)"))
    assert knives.height > 0 and e2i["<http://dbpedia.org/resource/Knives_Out>"] in knives["movie_entities"][0]


@pytest.mark.parametrize(
    "uri, expected",
    [("<http://dbpedia.org/resource/House_(1995_film)>", ("House", 1995, "film")),
     ("<http://dbpedia.org/resource/Flightplan>", ("Flightplan", None, "")),
     ("<http://dbpedia.org/resource/Titanic_(2012_TV_series)>", ("Titanic", 2012, "other")),
     ("<http://dbpedia.org/resource/Heat_(1995_American_film)>", ("Heat", 1995, "film"))],
)
def test_parse_film_uri(uri: str, expected: tuple) -> None:
    assert parse_film_uri(uri) == expected


def test_bad_kg(tmp_path: Path) -> None:
    (tmp_path / "entity2id.json").write_text('{"<a>": 0, "<b>": 1}')
    (tmp_path / "relation2id.json").write_text('{"<r>": 0}')
    (tmp_path / "item_ids.json").write_text("[0]")
    (tmp_path / "dbpedia_subkg.json").write_text('{"0": [[0, 7]]}')
    with pytest.raises(DataFormatError, match=r"dbpedia_subkg\.json, field '0': bad edge \[0, 7\]"):
        read_kg(tmp_path)
    (tmp_path / "item_ids.json").write_text("[5]")
    with pytest.raises(DataFormatError, match="1 item ids not in entity2id.json"):
        read_kg(tmp_path)
