"""MovieLens loaders: counts and schemas on the real files, located errors on small bad files."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from qamrec.data import movielens as ml
from qamrec.errors import DataFormatError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QAMREC_SHARED_DATA") or REPO / "../shared/data").resolve()
ML = SHARED / "movielens"

real = pytest.mark.skipif(not ML.is_dir(), reason=f"no shared data at {SHARED}")

RATINGS_HEADER = "userId,movieId,rating,timestamp\n"


# --------------------------------------------------------------------------------------------------
# Real files
# --------------------------------------------------------------------------------------------------


@real
def test_latest_small_counts_and_schemas() -> None:
    d = ML / "ml-latest-small"
    movies = ml.read_movies(d / "movies.csv")
    assert movies.schema == ml.MOVIES_SCHEMA
    assert movies.height == 9_742
    assert movies.row(0) == (1, "Toy Story", 1995, ["Adventure", "Animation", "Children", "Comedy", "Fantasy"])

    # the offline copy carries one extra row (user 999, movie 999999) that is not in movies.csv
    ratings = ml.read_ratings(d / "ratings.csv", movies=movies, unknown="drop")
    assert ratings.schema == ml.RATINGS_SCHEMA
    assert ratings.height == 100_836
    assert ratings["user_id"].n_unique() == 610
    assert set(ratings["rating"].unique().to_list()) <= {x / 2 for x in range(1, 11)}

    tags = ml.read_tags(d / "tags.csv")
    assert tags.schema == ml.TAGS_SCHEMA
    assert tags.height == 3_683
    links = ml.read_links(d / "links.csv")
    assert links.schema == ml.LINKS_SCHEMA
    assert links.height == 9_742
    assert links.row(0) == (1, "tt0114709", 862)
    assert links["tmdb_id"].null_count() > 0  # nullable, not an error


@real
def test_unknown_movie_is_located() -> None:
    d = ML / "ml-latest-small"
    movies = ml.read_movies(d / "movies.csv")
    raw = ml.read_ratings(d / "ratings.csv")
    unknown = raw.filter(~pl.col("movielens_id").cast(pl.Int64).is_in(movies["movielens_id"].implode()))
    if unknown.height == 0:
        pytest.skip("this copy of ratings.csv has no rows outside movies.csv")
    with pytest.raises(DataFormatError, match=r"ratings\.csv, line \d+, field 'movieId'"):
        ml.read_ratings(d / "ratings.csv", movies=movies)


@real
def test_big_movie_tables() -> None:
    m25 = ml.read_movies(ML / "ml-25m/movies.csv")  # 25 rows of this copy have unquoted commas in titles
    assert m25.height == 62_423
    assert m25.filter(pl.col("movielens_id") == 1019)["title"].item().startswith("20,000 Leagues")
    links = ml.read_links(ML / "ml-25m/links.csv")
    assert links.height == 62_423
    assert links["imdb_id"].str.contains(r"^tt\d{7,}$").all()
    m32 = ml.read_movies(ML / "ml-32m/movies.csv")
    assert m32.schema == ml.MOVIES_SCHEMA
    assert m32.height == 87_585
    assert m32.filter(pl.col("genres").list.len() == 0).height > 0  # "(no genres listed)" -> []
    assert not m32["title"].str.ends_with(" ").any()
    m1 = ml.read_movies(ML / "ml-1m/movies.dat")
    assert m1.height == 3_883
    assert m1.filter(pl.col("movielens_id") == 1320)["title"].item() == "Alien³"


@real
def test_ml100k() -> None:
    d = ML / "ml-100k"
    ratings = ml.read_ml100k_ratings(d / "u.data")
    assert ratings.schema == ml.ML100K_RATINGS_SCHEMA
    assert (ratings.height, ratings["user_id"].n_unique(), ratings["ml100k_id"].n_unique()) == (100_000, 943, 1_682)
    items = ml.read_ml100k_items(d / "u.item", d / "u.genre")
    assert items.schema == ml.ML100K_ITEMS_SCHEMA
    assert items.height == 1_682
    assert items.row(0)[:3] == (1, "Toy Story", 1995)
    assert items.row(0)[5] == ["Animation", "Children's", "Comedy"]


@real
def test_ml1m_implicit_split_and_descriptions() -> None:
    d = ML / "ml-1m/implicit_split"
    split = ml.read_implicit_split(d)
    assert split.schema == ml.IMPLICIT_SCHEMA
    assert set(split["split"].unique()) == {"train", "test"}
    assert split["user_id"].n_unique() == 6_040
    assert split["user_id"].min() == 1 and split["user_id"].max() == 6_040
    movies = ml.read_movies(ML / "ml-1m/movies.dat")
    assert split["movielens_id"].cast(pl.Int64).is_in(movies["movielens_id"].implode()).all()
    desc = ml.read_llm_descriptions(d / "llm_response_item.json")
    assert desc.schema == ml.DESCRIPTIONS_SCHEMA
    assert desc.height == 3_883


# --------------------------------------------------------------------------------------------------
# Small files written here
# --------------------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_bad_rating_names_file_line_and_field(tmp_path: Path) -> None:
    p = _write(tmp_path / "ratings.csv", RATINGS_HEADER + "1,1,4.0,5\n1,2,3.5,6\n1,3,abc,7\n1,4,2.0,8\n")
    for load in (ml.read_ratings, lambda f: ml.sink_ratings(f, tmp_path / "r.parquet")):
        with pytest.raises(DataFormatError) as info:
            load(p)
        msg = str(info.value)
        assert "ratings.csv" in msg and "line 4" in msg and "rating" in msg
        assert (info.value.line, info.value.field) == (4, "rating")
    assert not (tmp_path / "r.parquet").exists()
    assert [f.name for f in tmp_path.iterdir()] == ["ratings.csv"]  # no temporary left behind


@pytest.mark.parametrize(
    ("body", "line", "field"),
    [
        ("1,1,4.0,5\n1,2,3.5\n", 3, None),  # too few fields
        ("1,1,4.0,5\n1,2,3.5,6,9\n", 3, None),  # too many fields
        ("1,1,4.0,5\n1,,3.5,6\n", 3, "movieId"),  # empty required value
        ("1,1,4.0,5\n99999999999,2,3.5,6\n", 3, "userId"),  # int32 overflow
    ],
)
def test_other_bad_rows(tmp_path: Path, body: str, line: int, field: str | None) -> None:
    p = _write(tmp_path / "ratings.csv", RATINGS_HEADER + body)
    with pytest.raises(DataFormatError) as info:
        ml.read_ratings(p)
    assert (info.value.line, info.value.field) == (line, field)


def test_missing_column(tmp_path: Path) -> None:
    p = _write(tmp_path / "ratings.csv", "userId,movieId,timestamp\n1,1,5\n")
    with pytest.raises(DataFormatError, match="rating") as info:
        ml.read_ratings(p)
    assert info.value.field == "rating"
    assert "userId, movieId, rating, timestamp" in str(info.value)
    with pytest.raises(DataFormatError, match="missing column 'genres'"):
        ml.read_movies(_write(tmp_path / "movies.csv", "movieId,title\n1,A (1999)\n"))


def test_wrong_encoding(tmp_path: Path) -> None:
    p = tmp_path / "movies.csv"
    p.write_bytes("movieId,title,genres\n1,Amélie (2001),Comedy\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match="UTF-8") as info:
        ml.read_movies(p)
    assert info.value.line == 2


def test_movies_csv_titles(tmp_path: Path) -> None:
    p = _write(
        tmp_path / "movies.csv",
        'movieId,title,genres\n1,"Babe Ruth Story, The (1948) ",Drama\n2,Untitled,(no genres listed)\n'
        "3,Death Note (2006–2007),Anime\n4,20,000 Leagues (1954),Adventure|Sci-Fi\n",
    )
    df = ml.read_movies(p)
    assert df.rows() == [
        (1, "Babe Ruth Story, The", 1948, ["Drama"]),
        (2, "Untitled", None, []),
        (3, "Death Note", 2006, ["Anime"]),
        (4, "20,000 Leagues", 1954, ["Adventure", "Sci-Fi"]),  # unquoted comma joined back into the title
    ]


def test_latin1_movies_dat(tmp_path: Path) -> None:
    p = tmp_path / "movies.dat"
    p.write_bytes("73::Misérables, Les (1995)::Drama|Musical\n1320::Alien³ (1992)::Action|Horror\n".encode("latin-1"))
    df = ml.read_movies(p)
    assert df.schema == ml.MOVIES_SCHEMA
    assert df.rows() == [
        (73, "Misérables, Les", 1995, ["Drama", "Musical"]),
        (1320, "Alien³", 1992, ["Action", "Horror"]),
    ]
    p.write_bytes(b"73::Les Mis (1995)\n")
    with pytest.raises(DataFormatError) as info:
        ml.read_movies(p)
    assert info.value.line == 1


def test_tags_with_commas_and_sink(tmp_path: Path) -> None:
    p = _write(tmp_path / "tags.csv", 'userId,movieId,tag,timestamp\n1,1,"funny, sad",5\n2,3,"""quoted""",6\n')
    df = ml.read_tags(p)
    assert df.schema == ml.TAGS_SCHEMA
    assert df["tag"].to_list() == ["funny, sad", '"quoted"']
    assert ml.sink_tags(p, tmp_path / "t.parquet") == 2
    assert pl.read_parquet(tmp_path / "t.parquet").equals(df)


def test_sink_ratings_matches_read(tmp_path: Path) -> None:
    rows = "".join(
        f"{u},{m},{(u + m) % 10 / 2 + 0.5},{1_000_000_000 + u * m}\n" for u in range(1, 40) for m in range(1, 30)
    )
    p = _write(tmp_path / "ratings.csv", RATINGS_HEADER + rows)
    n = ml.sink_ratings(p, tmp_path / "ratings.parquet")
    df = ml.read_ratings(p)
    assert n == df.height == 39 * 29
    back = pl.read_parquet(tmp_path / "ratings.parquet")
    assert back.schema == ml.RATINGS_SCHEMA
    assert back.equals(df)
    assert ml.scan_ratings(p).collect().equals(df)


@real
def test_sink_ratings_real_count(tmp_path: Path) -> None:
    src = ML / "ml-latest-small/ratings.csv"
    assert ml.sink_ratings(src, tmp_path / "r.parquet") == ml.read_ratings(src).height
    movies = ml.read_movies(ML / "ml-latest-small/movies.csv")
    assert ml.sink_ratings(src, tmp_path / "r.parquet", movies=movies, unknown="drop") == 100_836


def test_ml1m_ratings_dat(tmp_path: Path) -> None:
    p = _write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    df = ml.read_ml1m_ratings(p)
    assert df.schema == ml.RATINGS_SCHEMA
    assert df.rows() == [(1, 1193, 5.0, 978300760), (1, 661, 3.0, 978302109)]
    _write(p, "1::1193::5::978300760\n1::661::x::978302109\n")
    with pytest.raises(DataFormatError) as info:
        ml.read_ml1m_ratings(p)
    assert (info.value.line, info.value.field) == (2, "Rating")


def test_implicit_split_small(tmp_path: Path) -> None:
    _write(tmp_path / "user_map.txt", "10 0\n20 1\n")
    _write(tmp_path / "item_map.txt", "1193 1\n661 0\n")
    _write(tmp_path / "train.txt", "0 0 1\n1 1\n")
    _write(tmp_path / "test.txt", "1 0\n")
    df = ml.read_implicit_split(tmp_path)
    assert df.rows() == [(10, 661, "train"), (10, 1193, "train"), (20, 1193, "train"), (20, 661, "test")]
    _write(tmp_path / "test.txt", "1 7\n")
    with pytest.raises(DataFormatError, match="item index 7") as info:
        ml.read_implicit_split(tmp_path)
    assert info.value.line == 1
