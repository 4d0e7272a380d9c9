import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from qamrec.data.fetch import fetch
from qamrec.data.prepare import load_table, prepare, step_outputs
from qamrec.errors import DataFormatError, MissingDataError
from qamrec.io import sha256_file


def _qamrec(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qamrec", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=600)


def test_catalog_json_figures(prepared_home: Path) -> None:
    out = _qamrec(prepared_home, "data", "catalog", "--json")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    red, ins = s["redial"], s["inspired"]
    assert red["items"] == 6281 and ins["items"] == 1472
    for k in ("with_plot", "with_movielens_id", "with_ratings", "with_poster"):
        assert 0 < red[k] <= 6281 and 0 < ins[k] <= 1472
    assert red["with_movielens_id"] > 0.85 * 6281  # most ReDial items reach MovieLens
    assert red["with_poster"] > 3500 and red["with_plot"] > 0.9 * 6281
    assert ins["with_movielens_id"] > 0.85 * 1472
    link = s["redial_link"]
    assert link["gold_movies"] > 1300
    assert link["precision"] >= 0.97 and link["coverage"] >= 0.99


def test_catalog_identities(prepared_home: Path) -> None:
    prepared = prepared_home / "prepared"
    movies = load_table(prepared, "catalog", "movies")
    assert movies["movie_id"].is_unique().all()
    toy = movies.filter(pl.col("movie_id") == 1).row(0, named=True)
    assert (toy["title"], toy["year"], toy["imdb_id"], toy["tmdb_id"]) == ("Toy Story", 1995, "tt0114709", 862)
    assert toy["poster_path"] == "posters/1.jpg" and toy["ml100k_id"] == 1 and toy["plot"]
    assert (prepared_home / "raw" / toy["poster_path"]).is_file()
    # ReDial "The Shining (1980)" (202190) -> MovieLens 1258 -> the UniCRS entity of the aligned dialogues (9769)
    shining = movies.filter(pl.col("redial_ids").list.contains(202190)).row(0, named=True)
    assert shining["movielens_id"] == 1258 and shining["redial_entity"] == 9769
    assert "Stanley Kubrick" in shining["director"]
    links = load_table(prepared, "catalog", "links")
    assert set(links["rule"]) >= {"imdb", "title_year", "uri_title", "dialogue_aligned", "movielens"}


def test_prepared_counts(prepared_home: Path) -> None:
    p = prepared_home / "prepared"
    ratings = load_table(p, "movielens-small", "ratings")
    assert ratings.height == 100_836 and ratings["user_id"].n_unique() == 610
    assert load_table(p, "movielens-small", "movies").height == 9742
    assert load_table(p, "movielens-small", "tags").height == 3683
    assert load_table(p, "movielens-100k", "ratings").height == 100_000
    assert load_table(p, "movielens-32m", "movies").height == 87_585
    dialogues = load_table(p, "inspired", "dialogues")
    assert dialogues.group_by("split").len().sort("split").rows() == [("train", 801), ("valid", 99)]
    redial = load_table(p, "redial", "dialogues")
    # 1,000 + 901 less the 88 in both from raw/, and the train_extra/ dialogues that are in neither
    assert redial.group_by("source").len().sort("source").rows() == [
        ("crslab_valid_dialogs.jsonl", 813), ("train_dialogs_union.jsonl", 2_288), ("unicrs_valid_dialogs.jsonl", 1_000)]
    assert load_table(p, "redial", "movie_lists")["dialogue_id"].n_unique() == 9_747
    turns = load_table(p, "catalog", "redial_turns")
    with_movies = turns.filter(pl.col("movies").list.len() > 0)
    linked = with_movies.filter(pl.col("movie_entities").list.len() > 0).height / with_movies.height
    assert linked > 0.9  # both raw files now speak the UniCRS entity space
    summary = {r.step: r.status for r in prepare(None, p.parent / "raw", p)}
    assert set(summary.values()) == {"cached"} and "catalog" in summary


@pytest.fixture()
def small_home(shared_data: Path, tmp_path: Path) -> Path:
    fetch("movielens-small", tmp_path / "raw", source=shared_data)
    fetch("tmdb", tmp_path / "raw", source=shared_data)
    prepare(["movielens-small", "tmdb"], tmp_path / "raw", tmp_path / "prepared")
    return tmp_path


def test_changed_input_redoes_only_its_step(small_home: Path) -> None:
    raw, prepared = small_home / "raw", small_home / "prepared"
    tags = raw / "movielens/ml-latest-small/tags.csv"
    tags.write_text(tags.read_text() + "1,1,extra tag,1\n")
    status = {r.step: r.status for r in prepare(["movielens-small", "tmdb"], raw, prepared)}
    assert status == {"movielens-small": "prepared", "tmdb": "cached"}
    assert load_table(prepared, "movielens-small", "tags").height == 3684


def test_corrupted_cache_file_is_detected_and_rebuilt(small_home: Path) -> None:
    raw, prepared = small_home / "raw", small_home / "prepared"
    target = prepared / "tmdb/metadata.parquet"
    rows = load_table(prepared, "tmdb", "metadata").height
    assert rows == 3058  # 1,644 ML-100K rows and 2,995 rows of The Movies Dataset, 3,058 distinct TMDB ids
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(MissingDataError, match="corrupted"):
        load_table(prepared, "tmdb", "metadata")
    assert {r.step: r.status for r in prepare(["tmdb"], raw, prepared)} == {"tmdb": "prepared"}
    assert load_table(prepared, "tmdb", "metadata").height == rows


def test_bad_input_leaves_previous_tables_intact(small_home: Path) -> None:
    raw, prepared = small_home / "raw", small_home / "prepared"
    before = step_outputs(prepared, "movielens-small")
    digest = sha256_file(prepared / "movielens-small/ratings.parquet")
    ratings = raw / "movielens/ml-latest-small/ratings.csv"
    lines = ratings.read_text().splitlines()
    lines[3] = "1,31,four stars,964982703"
    ratings.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"ratings\.csv.*line 4"):
        prepare(["movielens-small"], raw, prepared)
    assert step_outputs(prepared, "movielens-small") == before
    assert sha256_file(prepared / "movielens-small/ratings.parquet") == digest
    assert not list((prepared / "movielens-small").glob(".*tmp*"))


def test_cli_user_errors_are_one_line(tmp_path: Path) -> None:
    out = _qamrec(tmp_path, "data", "prepare", "redial")
    assert out.returncode == 2 and "cannot prepare 'redial': missing" in out.stderr
    assert "Traceback" not in out.stderr
    out = _qamrec(tmp_path, "--set", "data.nope=1", "data", "catalog")
    assert out.returncode == 2 and "unknown config key" in out.stderr
