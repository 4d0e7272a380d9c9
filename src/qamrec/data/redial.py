"""ReDial loaders: raw dialogues, the UniCRS-processed examples, and movie metadata.

ReDial (Li et al., "Towards Deep Conversational Recommendations", NeurIPS 2018) writes movie mentions as
``@<movieId>`` in message text; ``movieMentions`` names them and the seeker's and recommender's answers to
"suggested / seen / liked" are in ``initiatorQuestions`` / ``respondentQuestions`` (0 = no, 1 = yes,
2 = did not say). UniCRS (Wang et al., KDD 2022) turns each response into one example with the context so
far, the gold movie entity ids (``rec``) and the context entity ids (``entity``).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import NamedTuple

import polars as pl

from qamrec.errors import DataFormatError
from qamrec.io import iter_jsonl, read_json
from qamrec.data.schema import get_field, split_title_year

__all__ = [
    "RedialDialogues",
    "read_redial_dialogues",
    "read_unicrs_examples",
    "read_id2info",
    "read_movies_with_mentions",
    "TURN_SCHEMA",
    "EXAMPLE_SCHEMA",
]

_MENTION = re.compile(r"@(\d+)")

TURN_SCHEMA = {
    "dialogue_id": pl.String,
    "turn": pl.Int32,
    "role": pl.String,
    "text": pl.String,
    "movies": pl.List(pl.String),
    "movie_uris": pl.List(pl.String),
    "movie_entities": pl.List(pl.Int64),
    "entities": pl.List(pl.Int64),
}
EXAMPLE_SCHEMA = {
    "example": pl.Int32,
    "dialogue": pl.Int32,
    "context": pl.List(pl.String),
    "resp": pl.String,
    "rec": pl.List(pl.Int64),
    "entity": pl.List(pl.Int64),
}


class RedialDialogues(NamedTuple):
    """The three tables of a raw ReDial file."""

    dialogues: pl.DataFrame  # dialogue_id, source, seeker_id, recommender_id, n_turns
    turns: pl.DataFrame  # TURN_SCHEMA; movies = ReDial movieIds mentioned, in order
    mentions: pl.DataFrame  # dialogue_id, redial_id, title, seeker_/recommender_ suggested/seen/liked


_INT64 = (-(2**63), 2**63 - 1)


def _int64(d: dict, name: str, path: Path, line: int, where: str = "") -> int:
    """An integer field that fits the Int64 column it goes to."""
    v = get_field(d, name, int, path, line, where=where)
    if not _INT64[0] <= v <= _INT64[1]:
        raise DataFormatError(path, f"{v} is out of range", line=line, field=f"{where}.{name}" if where else name,
                              expected="a 64-bit integer")
    return v


def _answers(questions: object, movie: str, path: Path, line: int, who: str) -> tuple[int | None, ...]:
    if questions is None or questions == []:  # absent, or [] (some exports write it for "no answers")
        return (None, None, None)
    if not isinstance(questions, dict):
        raise DataFormatError(path, f"wrong type {type(questions).__name__}", line=line, field=who,
                              expected="an object movieId -> answers")
    q = questions.get(movie)
    if q is None:
        return (None, None, None)
    if not isinstance(q, dict):
        raise DataFormatError(path, f"wrong type {type(q).__name__}", line=line, field=f"{who}.{movie}",
                              expected="an object {suggested, seen, liked}")
    out: list[int | None] = []
    for key in ("suggested", "seen", "liked"):
        v = q.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v not in (0, 1, 2)):
            raise DataFormatError(path, f"answer {v!r}", line=line, field=f"{who}.{movie}.{key}", expected="0, 1 or 2")
        out.append(v)
    return tuple(out)


def read_redial_dialogues(path: str | Path) -> RedialDialogues:
    """Parse a ReDial file in the official raw format (one dialogue per line)."""
    path = Path(path)
    dialogues: list[dict] = []
    turns: list[dict] = []
    mentions: list[dict] = []
    for line, d in iter_jsonl(path):
        if not isinstance(d, dict):
            raise DataFormatError(path, "record is not a JSON object", line=line, expected="an object")
        cid = d.get("conversationId")
        if isinstance(cid, bool) or not isinstance(cid, (str, int)):
            problem = "missing field" if cid is None else f"wrong type {type(cid).__name__}"
            raise DataFormatError(path, problem, line=line, field="conversationId", expected="a string or an integer")
        did = str(cid)
        seeker = _int64(d, "initiatorWorkerId", path, line)
        recommender = _int64(d, "respondentWorkerId", path, line)
        if d.get("movieMentions") == []:  # some ReDial exports write [] for "no mentions"
            names = {}
        else:
            names = get_field(d, "movieMentions", dict, path, line, default={})
        messages = get_field(d, "messages", list, path, line)
        for i, m in enumerate(messages):
            text = get_field(m, "text", str, path, line, where=f"messages[{i}]")
            sender = _int64(m, "senderWorkerId", path, line, where=f"messages[{i}]")
            ids = _MENTION.findall(text)
            shown = _MENTION.sub(lambda mt: str(names.get(mt.group(1)) or mt.group(0)), text)
            turns.append(
                {
                    "dialogue_id": did,
                    "turn": i,
                    "role": "seeker" if sender == seeker else "recommender",
                    "text": " ".join(shown.split()),
                    "movies": ids,
                    "movie_uris": None,
                    "movie_entities": None,
                    "entities": None,
                }
            )
        for movie, name in names.items():
            if not (movie.isascii() and movie.isdigit()):
                raise DataFormatError(path, f"movie id {movie!r}", line=line, field="movieMentions", expected="digits")
            title, year = split_title_year(str(name or ""))
            s = _answers(d.get("initiatorQuestions"), movie, path, line, "initiatorQuestions")
            r = _answers(d.get("respondentQuestions"), movie, path, line, "respondentQuestions")
            mentions.append(
                {
                    "dialogue_id": did,
                    "redial_id": int(movie),
                    "title": title,
                    "year": year,
                    "seeker_suggested": s[0],
                    "seeker_seen": s[1],
                    "seeker_liked": s[2],
                    "recommender_suggested": r[0],
                    "recommender_seen": r[1],
                    "recommender_liked": r[2],
                }
            )
        dialogues.append(
            {
                "dialogue_id": did,
                "source": path.name,
                "seeker_id": seeker,
                "recommender_id": recommender,
                "n_turns": len(messages),
            }
        )
    if not dialogues:
        raise DataFormatError(path, "no dialogues", expected="one ReDial dialogue per line")
    q = pl.Int8
    return RedialDialogues(
        pl.DataFrame(dialogues, schema={"dialogue_id": pl.String, "source": pl.String, "seeker_id": pl.Int64,
                                        "recommender_id": pl.Int64, "n_turns": pl.Int32}),
        pl.DataFrame(turns, schema=TURN_SCHEMA),
        pl.DataFrame(mentions, schema={"dialogue_id": pl.String, "redial_id": pl.Int64, "title": pl.String,
                                       "year": pl.Int32, "seeker_suggested": q, "seeker_seen": q, "seeker_liked": q,
                                       "recommender_suggested": q, "recommender_seen": q, "recommender_liked": q}),
    )


def read_unicrs_examples(path: str | Path) -> pl.DataFrame:
    """Parse a UniCRS-processed ReDial file: one example (context, resp, rec, entity) per line.

    Consecutive lines of one dialogue share a growing context; ``dialogue`` numbers the dialogues in file order
    (a new one starts whenever the context does not extend the previous line's context).
    """
    path = Path(path)
    rows: list[dict] = []
    dialogue, prev_len = -1, 10**9
    for line, d in iter_jsonl(path):
        context = get_field(d, "context", list, path, line)
        if not all(isinstance(c, str) for c in context):
            raise DataFormatError(path, "non-string context entry", line=line, field="context", expected="strings")
        rec = get_field(d, "rec", list, path, line, default=[])
        entity = get_field(d, "entity", list, path, line, default=[])
        for name, ids in (("rec", rec), ("entity", entity)):
            if not all(isinstance(x, int) and not isinstance(x, bool) and _INT64[0] <= x <= _INT64[1] for x in ids):
                raise DataFormatError(path, "non-integer id", line=line, field=name,
                                      expected="integer entity ids (64-bit)")
        if len(context) <= prev_len:
            dialogue += 1
        prev_len = len(context)
        rows.append(
            {
                "example": len(rows),
                "dialogue": dialogue,
                "context": context,
                "resp": get_field(d, "resp", str, path, line, default=""),
                "rec": rec,
                "entity": entity,
            }
        )
    if not rows:
        raise DataFormatError(path, "no examples", expected="one UniCRS example per line")
    return pl.DataFrame(rows, schema=EXAMPLE_SCHEMA)


def read_id2info(path: str | Path) -> pl.DataFrame:
    """Parse iEvaLM-CRS ``id2info.json``: ReDial movieId -> name, genre, plot, director, writer, star, imdb_id."""
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DataFormatError(path, "top level is not an object", expected="{movieId: {name, plot, ...}}")
    rows = []
    for key, info in raw.items():
        if not str(key).isdigit() or not isinstance(info, dict):
            raise DataFormatError(path, f"entry {key!r}", field=str(key), expected="a numeric id mapped to an object")
        title, year = split_title_year(str(info.get("name") or ""))

        def strings(field: str) -> list[str]:
            v = info.get(field) or []
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list):
                raise DataFormatError(path, f"wrong type {type(v).__name__}", field=f"{key}.{field}", expected="a list")
            return [str(x).strip() for x in v if str(x).strip()]

        imdb = info.get("imdb_id")
        rows.append(
            {
                "redial_id": int(key),
                "title": title,
                "year": year,
                "genres": [g.lower() for g in strings("genre")],
                "plot": (info.get("plot") or None),
                "director": strings("director"),
                "writer": strings("writer"),
                "cast": strings("star"),
                "imdb_id": imdb if isinstance(imdb, str) and imdb.startswith("tt") else None,
            }
        )
    return pl.DataFrame(
        rows,
        schema={"redial_id": pl.Int64, "title": pl.String, "year": pl.Int32, "genres": pl.List(pl.String),
                "plot": pl.String, "director": pl.List(pl.String), "writer": pl.List(pl.String),
                "cast": pl.List(pl.String), "imdb_id": pl.String},
    )


def read_movies_with_mentions(path: str | Path) -> pl.DataFrame:
    """Parse the official ``movies_with_mentions.csv``: movieId, movieName, nbMentions."""
    path = Path(path)
    rows = []
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"movieId", "movieName", "nbMentions"} - set(reader.fieldnames or [])
            if missing:
                raise DataFormatError(path, f"missing column(s) {sorted(missing)}", line=1,
                                      expected="header movieId,movieName,nbMentions")
            for rec in reader:
                line = reader.line_num
                try:
                    rid, n = int(rec["movieId"]), int(rec["nbMentions"])
                except (TypeError, ValueError):
                    raise DataFormatError(path, "non-integer value", line=line, field="movieId/nbMentions",
                                          expected="integers") from None
                title, year = split_title_year(rec["movieName"] or "")
                rows.append({"redial_id": rid, "title": title, "year": year, "n_mentions": n})
    except UnicodeDecodeError as e:
        raise DataFormatError(path, f"not valid UTF-8 at byte {e.start}", expected="UTF-8 CSV") from None
    return pl.DataFrame(rows, schema={"redial_id": pl.Int64, "title": pl.String, "year": pl.Int32,
                                      "n_mentions": pl.Int32})
