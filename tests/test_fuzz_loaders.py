"""Hypothesis fuzzes the data readers with malformed rows.

The promise: a file is either read exactly as written (compared with an independent parse of the rows the test
generated) or rejected with a :class:`~qamrec.errors.QamrecError` that names the file and, for a bad row, its
line and field; a repaired row (an unquoted comma inside a free-text column) is counted in a log warning.
Never another exception, never a silent wrong parse. Each test writes one corruption into otherwise valid rows,
so the line and field the error must name are known; the byte-level tests throw arbitrary bytes at every reader.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (pip install -e '.[dev]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from qamrec.data import movielens as ml  # noqa: E402
from qamrec.data.inspired import read_inspired_unicrs  # noqa: E402
from qamrec.data.redial import read_redial_dialogues, read_unicrs_examples  # noqa: E402
from qamrec.data.schema import split_title_year  # noqa: E402
from qamrec.errors import DataFormatError, QamrecError  # noqa: E402

#: examples per test; ``QAMREC_FUZZ_EXAMPLES=2000 QAMREC_FUZZ_RANDOM=1`` fuzzes longer, with fresh seeds
EXAMPLES = int(os.environ.get("QAMREC_FUZZ_EXAMPLES", "60"))
RANDOM = bool(os.environ.get("QAMREC_FUZZ_RANDOM"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
I32 = (-(2**31), 2**31 - 1)

#: values no integer column may take (each is garbage for an int, none is a legitimate spelling)
BAD_INT = ["", "abc", "1.5", "99999999999999999999", "1e3", "0x1F", "١٢", "1 2", "--1", "NaN", "٣"]
#: values no number column may take
BAD_NUMBER = ["", "abc", "1_0", "4..5", "--1", "1e", "١٢", "0x1p3", "five"]


_DIR: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _scratch() -> Any:
    """One scratch folder for every file the examples write (hypothesis runs many examples per test)."""
    with tempfile.TemporaryDirectory(prefix="qamrec-fuzz-") as d:
        _DIR.append(Path(d))
        yield
        _DIR.clear()


def _tmp(name: str, data: bytes) -> Path:
    folder = _DIR[0] / str(len(list(_DIR[0].iterdir())))
    folder.mkdir()
    path = folder / name
    path.write_bytes(data)
    return path


def _read_or_error(read: Callable[[Path], Any], path: Path) -> Any:
    """The reader's result, or the QamrecError it raised (any other exception fails the test)."""
    try:
        return read(path)
    except QamrecError as e:
        assert path.name in str(e), f"the error does not name the file: {e}"
        return e


# ------------------------------------------------------------------ MovieLens ratings.csv and u.data


def _ratings_rows() -> st.SearchStrategy[list[tuple[int, int, float, int]]]:
    row = st.tuples(st.integers(*I32), st.integers(*I32), st.sampled_from([x / 2 for x in range(0, 11)]),
                    st.integers(0, 2**40))
    return st.lists(row, min_size=1, max_size=12)


@st.composite
def _corruption(draw: st.DrawFn, n_rows: int, columns: list[str], numbers: set[str]) -> tuple[int, str, str | None]:
    """(row, kind, value): a bad value in one column, or a row with a field too few or too many."""
    row = draw(st.integers(0, n_rows - 1))
    kind = draw(st.sampled_from([*columns, "short", "long"]))
    if kind in ("short", "long"):
        return row, kind, None
    return row, kind, draw(st.sampled_from(BAD_NUMBER if kind in numbers else BAD_INT))


def _write_rows(rows: list[list[str]], sep: str, header: list[str] | None) -> bytes:
    lines = ([sep.join(header)] if header else []) + [sep.join(r) for r in rows]
    return ("\n".join(lines) + "\n").encode()


def _check_ratings(read: Callable[[Path], Any], name: str, sep: str, header: list[str] | None,
                   rows: list[tuple[int, int, float, int]], bad: tuple[int, str, str | None] | None) -> None:
    cols = header or ["user id", "item id", "rating", "timestamp"]
    text = [[str(u), str(m), f"{r:g}", str(t)] for u, m, r, t in rows]
    if bad is not None:
        i, kind, value = bad
        if kind == "short":
            text[i] = text[i][:-1]
        elif kind == "long":
            text[i] = [*text[i], "7"]
        else:
            text[i][cols.index(kind)] = value  # type: ignore[assignment]
    path = _tmp(name, _write_rows(text, sep, header))
    got = _read_or_error(read, path)
    if bad is None:
        assert not isinstance(got, Exception), got
        assert [tuple(r) for r in got.rows()] == [(u, m, r, t) for u, m, r, t in rows]
        return
    assert isinstance(got, DataFormatError), f"{bad} was read silently: {got}"
    i, kind, _ = bad
    assert got.line == i + (2 if header else 1), (bad, str(got))
    assert got.field == (None if kind in ("short", "long") else kind), (bad, str(got))


@FUZZ
@given(data=st.data(), rows=_ratings_rows())
def test_ratings_csv_rows(data: st.DataObject, rows: list[tuple[int, int, float, int]]) -> None:
    header = ["userId", "movieId", "rating", "timestamp"]
    bad = data.draw(st.none() | _corruption(len(rows), header, {"rating"}))
    _check_ratings(ml.read_ratings, "ratings.csv", ",", header, rows, bad)


@FUZZ
@given(data=st.data(), rows=_ratings_rows())
def test_ml100k_u_data_rows(data: st.DataObject, rows: list[tuple[int, int, float, int]]) -> None:
    bad = data.draw(st.none() | _corruption(len(rows), ["user id", "item id", "rating", "timestamp"], {"rating"}))
    _check_ratings(ml.read_ml100k_ratings, "u.data", "\t", None, rows, bad)


# ------------------------------------------------------------------ MovieLens movies.csv

_WORDS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1,
                 max_size=12).filter(lambda s: s.strip() == s and "|" not in s)
_GENRES = st.lists(st.sampled_from(["Action", "Comedy", "Drama", "Film-Noir", "Sci-Fi", "Children's"]),
                   min_size=0, max_size=3, unique=True)


@st.composite
def _movie(draw: st.DrawFn) -> tuple[int, str, int | None, list[str]]:
    title = " ".join(draw(st.lists(_WORDS, min_size=1, max_size=3)))
    year = draw(st.none() | st.integers(1890, 2030))
    return draw(st.integers(1, 2**40)), title, year, draw(_GENRES)


def _movies_csv(movies: list[tuple[int, str, int | None, list[str]]]) -> list[list[str]]:
    return [[str(i), f"{t} ({y})" if y else t, "|".join(g) or "(no genres listed)"] for i, t, y, g in movies]


def _expected_title(title: str) -> tuple[str, int | None]:
    return split_title_year(title, movielens=True)  # the documented rule, applied to what the test wrote


@FUZZ
@given(data=st.data(), movies=st.lists(_movie(), min_size=1, max_size=8))
def test_movies_csv_rows(data: st.DataObject, movies: list[tuple[int, str, int | None, list[str]]]) -> None:
    rows = _movies_csv(movies)
    bad = data.draw(st.none() | st.tuples(st.integers(0, len(rows) - 1), st.sampled_from(["movieId", "short"]),
                                          st.sampled_from(BAD_INT)))
    if bad is not None:
        i, kind, value = bad
        rows[i] = rows[i][:2] if kind == "short" else [value, *rows[i][1:]]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([["movieId", "title", "genres"], *rows])
    got = _read_or_error(ml.read_movies, _tmp("movies.csv", buf.getvalue().encode()))
    if bad is None:
        assert not isinstance(got, Exception), got
        expected = [(i, *_expected_title(r[1]), g) for (i, _, _, g), r in zip(movies, rows)]
        assert got.rows() == expected
        return
    assert isinstance(got, DataFormatError), f"{bad} was read silently"
    assert got.line == bad[0] + 2 and got.field == (None if bad[1] == "short" else "movieId"), (bad, str(got))


def test_movies_csv_unquoted_comma_is_repaired_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    path = _tmp("movies.csv", b"movieId,title,genres\n1,Leagues, The (1954),Drama\n2,Up (2009),Comedy\n")
    with caplog.at_level(logging.WARNING):
        got = ml.read_movies(path)
    assert got.rows() == [(1, "Leagues, The", 1954, ["Drama"]), (2, "Up", 2009, ["Comedy"])]
    assert "1 row(s)" in caplog.text and "line 2" in caplog.text


# ------------------------------------------------------------------ MovieLens 100K u.item


@FUZZ
@given(data=st.data(), movies=st.lists(_movie(), min_size=1, max_size=8))
def test_ml100k_u_item_rows(data: st.DataObject, movies: list[tuple[int, str, int | None, list[str]]]) -> None:
    genres = list(ml.ML100K_GENRES)
    rows = []
    for i, t, y, g in movies:
        flags = ["1" if name in g else "0" for name in genres]
        rows.append([str(i % 2**31), f"{t} ({y})" if y else t, f"01-Jan-{y}" if y else "", "", "http://x", *flags])
    bad = data.draw(st.none() | st.tuples(st.integers(0, len(rows) - 1),
                                          st.sampled_from(["movie id", "flag", "short", "long"]),
                                          st.sampled_from(BAD_INT)))
    if bad is not None:
        i, kind, value = bad
        if kind == "movie id":
            rows[i][0] = value
        elif kind == "flag":
            value = {"": "2", "abc": "-1"}.get(value, value)
            rows[i][5 + 3] = value
        elif kind == "short":
            rows[i] = rows[i][:-1]
        else:
            rows[i] = [*rows[i], "0"]
    got = _read_or_error(ml.read_ml100k_items, _tmp("u.item", _write_rows(rows, "|", None)))
    if bad is None:
        assert not isinstance(got, Exception), got
        expected = [(i % 2**31, *_expected_title(r[1]), [n for n in genres if n in g])
                    for (i, _, _, g), r in zip(movies, rows)]
        assert [(r[0], r[1], r[2], r[5]) for r in got.rows()] == expected
        return
    assert isinstance(got, DataFormatError), f"{bad} was read silently"
    i, kind, _ = bad
    assert got.line == i + 1, (bad, str(got))
    assert got.field == {"movie id": "movie id", "flag": genres[3]}.get(kind), (bad, str(got))


# ------------------------------------------------------------------ JSON-lines: ReDial, UniCRS, INSPIRED

_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
            | st.text(max_size=8))
JSON_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


def _is_int(v: Any, lo: int = -(2**63), hi: int = 2**63 - 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _jsonl(records: list[Any]) -> bytes:
    return ("\n".join(json.dumps(r) for r in records) + "\n").encode()


def _expect_error_at(got: Any, line: int, what: str) -> None:
    assert isinstance(got, DataFormatError), f"{what} was read silently"
    assert got.line == line, (what, str(got))


@st.composite
def _unicrs_example(draw: st.DrawFn) -> dict[str, Any]:
    ids = st.lists(st.integers(0, 2**40), max_size=3)
    return {"context": draw(st.lists(st.text(max_size=10), min_size=1, max_size=3)), "resp": draw(st.text(max_size=10)),
            "rec": draw(ids), "entity": draw(ids)}


def _unicrs_valid(field: str, v: Any) -> bool:
    if field == "context":
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if field == "resp":
        return v is None or isinstance(v, str)
    return v is None or (isinstance(v, list) and all(_is_int(x) for x in v))


@FUZZ
@given(data=st.data(), examples=st.lists(_unicrs_example(), min_size=1, max_size=5))
def test_unicrs_examples(data: st.DataObject, examples: list[dict[str, Any]]) -> None:
    i = data.draw(st.integers(0, len(examples) - 1))
    field = data.draw(st.sampled_from(["context", "resp", "rec", "entity"]))
    value = data.draw(JSON_VALUES | st.lists(st.integers(-(2**70), 2**70), max_size=3))
    examples[i][field] = value
    got = _read_or_error(read_unicrs_examples, _tmp("valid_data.jsonl", _jsonl(examples)))
    if not all(_unicrs_valid(f, e.get(f)) for e in examples for f in ("context", "resp", "rec", "entity")):
        _expect_error_at(got, next(k + 1 for k, e in enumerate(examples)
                                   if not all(_unicrs_valid(f, e.get(f)) for f in e)), f"{field}={value!r}")
        return
    assert not isinstance(got, Exception), got
    assert got["context"].to_list() == [e["context"] for e in examples]
    assert got["resp"].to_list() == [e["resp"] or "" for e in examples]
    assert got["rec"].to_list() == [e["rec"] or [] for e in examples]


@st.composite
def _redial_dialogue(draw: st.DrawFn) -> dict[str, Any]:
    movies = draw(st.lists(st.integers(1, 10**6).map(str), max_size=3, unique=True))
    answer = st.fixed_dictionaries({k: st.sampled_from([0, 1, 2]) for k in ("suggested", "seen", "liked")})
    return {
        "conversationId": draw(st.integers(1, 10**6).map(str)), "initiatorWorkerId": 1, "respondentWorkerId": 2,
        "movieMentions": {m: f"Movie {m} (2001)" for m in movies},
        "initiatorQuestions": {m: draw(answer) for m in movies},
        "respondentQuestions": {m: draw(answer) for m in movies} if movies else [],
        "messages": [{"text": f"hi @{m}", "senderWorkerId": draw(st.sampled_from([1, 2]))} for m in movies]
                    or [{"text": "hello", "senderWorkerId": 1}],
    }


def _redial_valid(d: Any) -> bool:
    if not isinstance(d, dict):
        return False
    if not (isinstance(d.get("conversationId"), str) or _is_int(d.get("conversationId"))):
        return False
    if not all(_is_int(d.get(k)) for k in ("initiatorWorkerId", "respondentWorkerId")):
        return False
    names = d.get("movieMentions")
    if not (names is None or names == [] or (isinstance(names, dict) and all(k.isascii() and k.isdigit()
                                                                               for k in names))):
        return False
    messages = d.get("messages")
    if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("text"), str) and _is_int(m.get("senderWorkerId"))
            for m in messages):
        return False
    for key in ("initiatorQuestions", "respondentQuestions"):
        q = d.get(key)
        if q is None or q == []:
            continue
        if not isinstance(q, dict):
            return False
        for movie in (names or {}):
            a = q.get(movie)
            if a is None:
                continue
            if not isinstance(a, dict) or any(a.get(k) is not None and not (_is_int(a.get(k)) and a[k] in (0, 1, 2))
                                              for k in ("suggested", "seen", "liked")):
                return False
    return True


_REDIAL_PATHS = [("conversationId",), ("initiatorWorkerId",), ("respondentWorkerId",), ("movieMentions",),
                 ("initiatorQuestions",), ("respondentQuestions",), ("messages",), ("messages", 0),
                 ("messages", 0, "text"), ("messages", 0, "senderWorkerId"), ("initiatorQuestions", "*"),
                 ("initiatorQuestions", "*", "liked"), ("movieMentions", "*key")]


def _put(record: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    """Set ``record`` at ``path`` ("*": the first key there; "*key": rename the first key to str(value))."""
    node: Any = record
    for step in path[:-1]:
        if step == "*":
            if not isinstance(node, dict) or not node:
                return
            step = next(iter(node))
        if isinstance(node, dict) and step in node or isinstance(node, list) and isinstance(step, int) \
                and step < len(node):
            node = node[step]
        else:
            return
    last = path[-1]
    if last == "*key":
        if isinstance(node, dict) and node:
            first = next(iter(node))
            node[str(value)] = node.pop(first)
        return
    if last == "*":
        if isinstance(node, dict) and node:
            node[next(iter(node))] = value
        return
    if isinstance(node, dict) or (isinstance(node, list) and isinstance(last, int) and last < len(node)):
        node[last] = value


@FUZZ
@given(data=st.data(), dialogues=st.lists(_redial_dialogue(), min_size=1, max_size=4))
def test_redial_raw_dialogues(data: st.DataObject, dialogues: list[dict[str, Any]]) -> None:
    i = data.draw(st.integers(0, len(dialogues) - 1))
    path = data.draw(st.sampled_from(_REDIAL_PATHS))
    value = data.draw(JSON_VALUES)
    _put(dialogues[i], path, value)
    got = _read_or_error(read_redial_dialogues, _tmp("raw.jsonl", _jsonl(dialogues)))
    invalid = [k for k, d in enumerate(dialogues) if not _redial_valid(d)]
    if invalid:
        _expect_error_at(got, invalid[0] + 1, f"{path}={value!r}")
        return
    assert not isinstance(got, Exception), got
    assert got.dialogues["dialogue_id"].to_list() == [str(d["conversationId"]) for d in dialogues]
    assert got.turns.height == sum(len(d["messages"]) for d in dialogues)
    assert got.mentions.height == sum(len(d["movieMentions"] or {}) for d in dialogues)


@st.composite
def _inspired_dialogue(draw: st.DrawFn) -> list[dict[str, Any]]:
    turn = st.fixed_dictionaries({
        "text": st.text(max_size=10), "role": st.sampled_from(["SEEKER", "RECOMMENDER"]),
        "movie": st.lists(st.text(max_size=6), max_size=2), "movie_link": st.lists(st.sampled_from(["<a>", "<b>"])),
        "entity_link": st.lists(st.sampled_from(["<a>", "<c>"]), max_size=2)})
    return draw(st.lists(turn, min_size=1, max_size=3))


def _inspired_valid(dialogue: Any) -> bool:
    if not isinstance(dialogue, list):
        return False
    for t in dialogue:
        if not isinstance(t, dict) or t.get("role") not in ("SEEKER", "RECOMMENDER") or not isinstance(t.get("text"),
                                                                                                       str):
            return False
        for k in ("movie", "movie_link", "entity_link"):
            v = t.get(k)
            if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
                return False
    return True


@FUZZ
@given(data=st.data(), dialogues=st.lists(_inspired_dialogue(), min_size=1, max_size=4))
def test_inspired_dialogues(data: st.DataObject, dialogues: list[list[dict[str, Any]]]) -> None:
    i = data.draw(st.integers(0, len(dialogues) - 1))
    field = data.draw(st.sampled_from(["text", "role", "movie", "movie_link", "entity_link", None]))
    value = data.draw(JSON_VALUES)
    if field is None:
        dialogues[i] = value  # type: ignore[call-overload]
    else:
        dialogues[i][0][field] = value
    got = _read_or_error(lambda p: read_inspired_unicrs(p, {"<a>": 0, "<b>": 1, "<c>": 2}),
                         _tmp("train_data.jsonl", _jsonl(dialogues)))
    invalid = [k for k, d in enumerate(dialogues) if not _inspired_valid(d)]
    if invalid:
        _expect_error_at(got, invalid[0] + 1, f"{field}={value!r}")
        return
    assert not isinstance(got, Exception), got
    assert got.turns["text"].to_list() == [t["text"] for d in dialogues for t in d]
    assert got.turns["movies"].to_list() == [t.get("movie") or [] for d in dialogues for t in d]


# ------------------------------------------------------------------ any bytes at all

_LINES = st.lists(st.sampled_from([
    b"", b"1,2,3.5,4", b"1\t2\t3\t4", b'{"context": ["a"]}', b"[", b"[" * 5000, b"\xff\xfe", b"\x00", b'"', b",,,",
    b"userId,movieId,rating,timestamp", b"movieId,title,genres", b"1,A (1999),Drama", b"1|A|x|y|z", b"\r", b"1e999",
    b'{"a": NaN}', b"\xef\xbb\xbf", b"1,2,3,4,5,6", b"\t\t\t", b"  ", b"[[[[[[[[[[", b"\xed\xa0\x80",
]) | st.binary(max_size=40), max_size=8)

READERS: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "ratings.csv": ("ratings.csv", ml.read_ratings),
    "tags.csv": ("tags.csv", ml.read_tags),
    "movies.csv": ("movies.csv", ml.read_movies),
    "movies.dat": ("movies.dat", ml.read_movies),
    "u.data": ("u.data", ml.read_ml100k_ratings),
    "u.item": ("u.item", ml.read_ml100k_items),
    "redial": ("raw.jsonl", read_redial_dialogues),
    "unicrs": ("valid.jsonl", read_unicrs_examples),
    "inspired": ("train.jsonl", lambda p: read_inspired_unicrs(p, {})),
}


@pytest.mark.parametrize("reader", list(READERS))
@settings(max_examples=EXAMPLES + 20, deadline=None, derandomize=not RANDOM, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(lines=_LINES, header=st.booleans())
def test_any_bytes_give_a_result_or_a_clear_error(reader: str, lines: list[bytes], header: bool) -> None:
    name, read = READERS[reader]
    first = {"ratings.csv": b"userId,movieId,rating,timestamp", "tags.csv": b"userId,movieId,tag,timestamp",
             "movies.csv": b"movieId,title,genres"}.get(reader)
    data = b"\n".join(([first] if header and first else []) + lines)
    got = _read_or_error(read, _tmp(name, data))
    if not isinstance(got, Exception):
        frames = got if isinstance(got, tuple) else (got,)
        assert all(isinstance(f, pl.DataFrame) for f in frames)
