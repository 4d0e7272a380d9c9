"""One title/year parser, :func:`qamrec.data.schema.split_title_year`, for MovieLens and for everything else.

There used to be two: ``schema.split_title_year`` (ReDial, DBpedia, the catalog and user input) and
``movielens._split_title_year`` (ML-100K ``u.item``, the rule ``read_movies`` applies in polars). They differ,
and each caller keeps its own behaviour: the originals are kept below, verbatim, and the one parser must
agree with each of them on any text.
"""

from __future__ import annotations

import re

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from qamrec.data.schema import MOVIELENS_YEAR, split_title_year

_OLD_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:[-–]\d{0,4})?\)\s*$")
_OLD_ML_YEAR = re.compile(r"\s*\((\d{4})(?:\s*[-–]\s*\d{0,4})?\)\)?$")


def old_schema_split(name: str) -> tuple[str, int | None]:
    name = " ".join(name.split())
    m = _OLD_YEAR.match(name)
    if m is None:
        return name, None
    return m.group("title").strip(), int(m.group("year"))


def old_movielens_split(title: str) -> tuple[str, int | None]:
    title = title.strip()
    m = _OLD_ML_YEAR.search(title)
    if m is None:
        return title, None
    return title[: m.start()].strip(), int(m.group(1))


#: text made mostly of what the two rules look at: digits, brackets, dashes and white space of several kinds
TITLES = st.lists(st.sampled_from([*"0123456789()-–  \t\n\xa0ab,.", "١", "(19", "(2006", "))", " - "]),
                  max_size=16).map("".join) | st.builds(lambda t, y, s: f"{t} ({y}){s}", st.text(max_size=8),
                                          st.integers(1000, 9999), st.sampled_from(["", " ", ")", "\n", "-2007)"]))


@settings(max_examples=3000, deadline=None)
@given(TITLES)
def test_one_parser_keeps_each_callers_rule(name: str) -> None:
    assert split_title_year(name) == old_schema_split(name)
    assert split_title_year(name, movielens=True) == old_movielens_split(name)


def test_the_two_rules_differ_where_they_did() -> None:
    assert split_title_year("The  Shining (1980)") == ("The Shining", 1980)  # white space folded
    assert split_title_year("The  Shining (1980)", movielens=True) == ("The  Shining", 1980)
    assert split_title_year("Seinfeld (1989 - 1998)") == ("Seinfeld (1989 - 1998)", None)
    assert split_title_year("Seinfeld (1989 - 1998)", movielens=True) == ("Seinfeld", 1989)
    assert split_title_year("Hitchhiker (1983))", movielens=True) == ("Hitchhiker", 1983)  # ML-32M's stray ")"
    for movielens in (False, True):
        assert split_title_year(" Toy Story (1995) ", movielens=movielens) == ("Toy Story", 1995)
        assert split_title_year("Dekalog (1989–1990)", movielens=movielens) == ("Dekalog", 1989)
        assert split_title_year("Untitled", movielens=movielens) == ("Untitled", None)


def test_polars_reads_movielens_years_like_the_python_rule() -> None:
    titles = ["Toy Story (1995)", "Seinfeld (1989 - 1998)", "Hitchhiker (1983))", "Untitled", "A (1) (2001)"]
    df = pl.DataFrame({"t": titles}).select(pl.col("t").str.replace(MOVIELENS_YEAR, "").str.strip_chars(),
                                            pl.col("t").str.extract(MOVIELENS_YEAR, 1).cast(pl.Int32).alias("y"))
    assert df.rows() == [split_title_year(t, movielens=True) for t in titles]
