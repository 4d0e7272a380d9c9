"""ReDial conversations as ordered movie lists (no text): the ``ReDialRnGChrono*`` files of ReDial_E19.

Each file is one JSON list of steps, ``[conversationId, [[movie_index, liked], ...mentioned so far], [genres],
[[movie_index, liked], ...mentioned later]]``; ``redial_id_to_index.json`` maps a ReDial movieId to that
``movie_index``. A conversation's order is the longest "so far" list among its steps (its movies in the order
they were first mentioned), followed by whatever that step lists as "later" (several movies of one message come
in no fixed order). ``liked`` is 1 or 0 as the source gives it; 0 is not documented as "disliked", so it is
read as "not said to be liked".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from qamrec.errors import DataFormatError
from qamrec.io import read_json

__all__ = ["read_movie_lists", "MOVIE_LIST_SCHEMA"]

MOVIE_LIST_SCHEMA = {"dialogue_id": pl.String, "position": pl.Int32, "redial_id": pl.Int64, "liked": pl.Int8}


def _pairs(value: object, path: Path, step: int, field: str) -> list[tuple[int, int]]:
    if not isinstance(value, list):
        raise DataFormatError(path, f"wrong type {type(value).__name__}", field=f"[{step}].{field}",
                              expected="a list of [movie_index, liked] pairs")
    out = []
    for i, p in enumerate(value):
        if (not isinstance(p, list) or len(p) != 2 or not all(isinstance(x, int) and not isinstance(x, bool)
                                                              for x in p)):
            raise DataFormatError(path, f"entry {p!r}", field=f"[{step}].{field}[{i}]",
                                  expected="[movie_index, liked] (two integers)")
        out.append((p[0], p[1]))
    return out


def read_movie_lists(files: Sequence[str | Path], id_map: str | Path) -> pl.DataFrame:
    """One row per (conversation, position): ``dialogue_id`` (the ReDial conversationId), ``position``
    (0-based mention order), ``redial_id``, ``liked`` (1 / 0). A conversation in several files is read once,
    from the first; ``movie_index`` values missing from ``id_map`` are an error naming the file and step."""
    id_path = Path(id_map)
    raw_map = read_json(id_path)
    if not isinstance(raw_map, dict):
        raise DataFormatError(id_path, "top level is not an object", expected="{redial movieId: movie_index}")
    try:
        redial_of = {int(v): int(k) for k, v in raw_map.items()}
    except (TypeError, ValueError):
        raise DataFormatError(id_path, "non-integer key or value", expected="{redial movieId: movie_index}") from None
    rows: list[dict] = []
    seen: set[str] = set()
    for f in files:
        path = Path(f)
        steps = read_json(path)
        if not isinstance(steps, list):
            raise DataFormatError(path, "top level is not a list", expected="a JSON list of steps")
        best: dict[str, tuple[list[tuple[int, int]], list[tuple[int, int]], int]] = {}
        for i, step in enumerate(steps):
            if not isinstance(step, list) or len(step) != 4 or not isinstance(step[0], (str, int)):
                raise DataFormatError(path, "malformed step", field=f"[{i}]",
                                      expected="[conversationId, [[movie, liked], ...], [genres], [[movie, liked], ...]]")
            cid = str(step[0])
            if not cid.isdigit():
                raise DataFormatError(path, f"conversationId {cid!r}", field=f"[{i}][0]", expected="digits")
            so_far, later = _pairs(step[1], path, i, "[1]"), _pairs(step[3], path, i, "[3]")
            if cid not in best or len(so_far) > len(best[cid][0]):
                best[cid] = (so_far, later, i)
        for cid, (so_far, later, i) in best.items():
            if cid in seen:
                continue
            seen.add(cid)
            order: dict[int, int] = {}
            for index, liked in so_far + later:
                if index not in redial_of:
                    raise DataFormatError(path, f"movie_index {index} is not in {id_path.name}", field=f"[{i}]",
                                          expected="movie indices of redial_id_to_index.json")
                order.setdefault(redial_of[index], 1 if liked else 0)
            rows += [{"dialogue_id": cid, "position": p, "redial_id": m, "liked": v}
                     for p, (m, v) in enumerate(order.items())]
    return pl.DataFrame(rows, schema=MOVIE_LIST_SCHEMA)
