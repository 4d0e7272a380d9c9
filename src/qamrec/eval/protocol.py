"""The UniCRS recommendation-evaluation examples for ReDial and INSPIRED.

UniCRS (Wang et al., "Towards Unified Conversational Recommender Systems via Knowledge-Enhanced Prompt
Learning", KDD 2022; github ``wxl1999/UniCRS``) defines the benchmark that later CRS papers (DCRS, MSCRS, ...)
report on. This module reproduces its example set exactly:

* ``src/data/{redial,inspired}/process_mask.py`` turn dialogues into one *record* per recommender
  response: ``context`` (all earlier utterances, ``[""]`` first when the recommender speaks first),
  ``rec`` (the DBpedia entity ids of the movies in the response) and ``entity`` (``list(set(ids))`` of
  every entity and movie linked in earlier turns, both speakers).
* ``src/dataset_rec.py`` (``CRSRecDataset.prepare_data``) skips a record when ``rec`` is empty, when its
  context is only ``[""]``, or when every context utterance is empty, and emits **one example per gold
  item** (duplicates included), all sharing the record's context and entities.

UniCRS's ``redial_gen`` / ``inspired_gen`` variants (``merge.py``) only replace ``resp`` with generated text,
so they give the same examples. On the shared validation files this gives 3,696 ReDial and 273 INSPIRED
examples (2,094 on INSPIRED train).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qamrec.data.schema import get_field
from qamrec.errors import DataFormatError
from qamrec.io import iter_jsonl, read_json

__all__ = ["CRSExample", "read_crs_examples", "read_item_ids", "unicrs_inspired_records"]

_ROLES = ("SEEKER", "RECOMMENDER")


@dataclass(frozen=True)
class CRSExample:
    """One recommendation example: predict ``item`` after ``context``.

    Attributes:
        dialogue: index of the dialogue in file order (0-based).
        turn: index of the example's UniCRS record (recommender response) within its dialogue (0-based,
            counting skipped records); the examples of a multi-movie response share ``(dialogue, turn)``.
        context: the utterances before the response, as UniCRS writes them (``""`` first when the
            recommender opened the dialogue).
        entities: context entity ids in UniCRS order (``list(set(...))`` of the linked entities and movies),
            untruncated (UniCRS's model keeps the last ``entity_max_length``, e.g. 32; that is a model setting).
        item: the one gold entity id.
        resp: the response text (ReDial: with ``<movie>`` masks as in the processed file; INSPIRED: raw text).
    """

    dialogue: int
    turn: int
    context: tuple[str, ...]
    entities: tuple[int, ...]
    item: int
    resp: str


def _ids(value: list[Any], path: Path, line: int, field: str) -> list[int]:
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        raise DataFormatError(path, "non-integer id", line=line, field=field, expected="integer entity ids")
    return value


def _strings(value: list[Any], path: Path, line: int, field: str) -> list[str]:
    if not all(isinstance(x, str) for x in value):
        raise DataFormatError(path, "non-string entry", line=line, field=field, expected="strings")
    return value


def _keep(context: list[str], rec: list[int]) -> bool:
    """``dataset_rec.py`` filter: a gold item, and a context that is not ``[""]`` nor all empty."""
    if not rec:
        return False
    if len(context) == 1 and context[0] == "":
        return False
    return any(u != "" for u in context)


def _expand(
    out: list[CRSExample], dialogue: int, turn: int, context: list[str], entity: list[int], rec: list[int], resp: str
) -> None:
    if not _keep(context, rec):
        return
    ctx, ents = tuple(context), tuple(entity)
    for item in rec:  # one example per gold item, in order, duplicates kept (as UniCRS does)
        out.append(CRSExample(dialogue, turn, ctx, ents, item, resp))


def unicrs_inspired_records(
    dialog: list[Any], entity2id: dict[str, int], path: Path, line: int
) -> list[tuple[list[str], str, list[int], list[int]]]:
    """One INSPIRED dialogue -> UniCRS ``(context, resp, rec, entity)`` records, as ``process_mask.py`` makes them.

    A SEEKER turn appends its text to the context and its linked ids (``entity_link`` then ``movie_link``,
    each URI mapped through ``entity2id``, unknown URIs dropped) to the entity history. Every other turn
    (RECOMMENDER) first writes a record with ``context`` (``[""]`` if still empty; that ``""`` stays in
    later contexts), ``rec`` = its ``movie_link`` ids (in order, duplicates kept) and
    ``entity = list(set(history))``, then updates context and history the same way.
    """
    context: list[str] = []
    history: list[int] = []
    records: list[tuple[list[str], str, list[int], list[int]]] = []
    for i, turn in enumerate(dialog):
        where = f"[{i}]"
        text = get_field(turn, "text", str, path, line, where=where)
        role = get_field(turn, "role", str, path, line, where=where)
        if role not in _ROLES:
            raise DataFormatError(path, f"role {role!r}", line=line, field=f"{where}.role",
                                  expected="SEEKER or RECOMMENDER")
        links = _strings(get_field(turn, "entity_link", list, path, line, where=where), path, line,
                         f"{where}.entity_link")
        movies = _strings(get_field(turn, "movie_link", list, path, line, where=where), path, line,
                          f"{where}.movie_link")
        entity_ids = [entity2id[u] for u in links if u in entity2id]
        movie_ids = [entity2id[u] for u in movies if u in entity2id]
        if role == "RECOMMENDER":
            if not context:
                context.append("")
            # list(set(...)) reproduces UniCRS's order exactly: CPython iterates a set of ints deterministically.
            records.append((list(context), text, movie_ids, list(set(history))))
        context.append(text)
        history.extend(entity_ids + movie_ids)
    return records


def _read_redial(path: Path, first: tuple[int, Any], rest: Any) -> list[CRSExample]:
    out: list[CRSExample] = []
    dialogue, turn, prev_len = -1, 0, 10**9
    for line, d in _chain(first, rest):
        if not isinstance(d, dict):
            raise DataFormatError(path, "record is not a JSON object", line=line,
                                  expected="{context, resp, rec, entity} (UniCRS processed format)")
        context = _strings(get_field(d, "context", list, path, line), path, line, "context")
        rec = _ids(get_field(d, "rec", list, path, line), path, line, "rec")
        entity = _ids(get_field(d, "entity", list, path, line, default=[]), path, line, "entity")
        resp = get_field(d, "resp", str, path, line, default="")
        if len(context) <= prev_len:  # same dialogue rule as qamrec.data.redial.read_unicrs_examples
            dialogue, turn = dialogue + 1, 0
        else:
            turn += 1
        prev_len = len(context)
        _expand(out, dialogue, turn, context, entity, rec, resp)
    return out


def _read_inspired(path: Path, first: tuple[int, Any], rest: Any, entity2id: dict[str, int]) -> list[CRSExample]:
    out: list[CRSExample] = []
    for dialogue, (line, dialog) in enumerate(_chain(first, rest)):
        if not isinstance(dialog, list):
            raise DataFormatError(path, "a dialogue is not a list of turns", line=line,
                                  expected="[{text, role, entity_link, movie_link, ...}] (INSPIRED dbpedia format)")
        for turn, (context, resp, rec, entity) in enumerate(unicrs_inspired_records(dialog, entity2id, path, line)):
            _expand(out, dialogue, turn, context, entity, rec, resp)
    return out


def _chain(first: tuple[int, Any], rest: Any) -> Any:
    yield first
    yield from rest


def read_crs_examples(path: str | Path, entity2id: dict[str, int] | None = None) -> list[CRSExample]:
    """Read a CRS file into the UniCRS recommendation examples (one per gold item).

    The format is detected from the first non-empty line: a JSON object with ``context``/``rec`` is the
    UniCRS-processed ReDial format (one record per line); a JSON list of turns is the INSPIRED
    ``*_data_dbpedia.jsonl`` format, processed first as UniCRS ``process_mask.py`` does (see
    :func:`unicrs_inspired_records`), which needs ``entity2id``.

    Raises:
        DataFormatError: the file is empty, of neither format, or a line is malformed (names line and field).
        ValueError: an INSPIRED file is given without ``entity2id``.
    """
    path = Path(path)
    lines = iter_jsonl(path)
    first = next(lines, None)
    if first is None:
        raise DataFormatError(path, "no records", expected="UniCRS ReDial or INSPIRED JSON lines")
    line, obj = first
    if isinstance(obj, dict) and "context" in obj and "rec" in obj:
        return _read_redial(path, first, lines)
    if isinstance(obj, list):
        if entity2id is None:
            raise ValueError(f"{path} is in the INSPIRED dbpedia format: pass entity2id (entity2id.json) to map "
                             "its DBpedia links to entity ids")
        return _read_inspired(path, first, lines, entity2id)
    raise DataFormatError(path, "unknown record format", line=line,
                          expected="a JSON object with 'context' and 'rec' (ReDial) or a JSON list of turns (INSPIRED)")


def read_item_ids(path: str | Path) -> list[int]:
    """Read UniCRS ``item_ids.json``: the candidate items (entity ids), in file order (= score column order)."""
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
        raise DataFormatError(path, "not a list of integers", expected="a JSON list of entity ids")
    if len(set(raw)) != len(raw):
        raise DataFormatError(path, "duplicate item ids", expected="distinct entity ids")
    return raw
