"""INSPIRED loaders (Hayati et al., "INSPIRED: Toward Sociable Recommendation Dialog Systems", EMNLP 2020).

The UniCRS format has one dialogue per line: a JSON list of turns with ``text``, ``role`` (SEEKER or
RECOMMENDER), ``movie`` (names with year), ``movie_link`` (DBpedia URIs of those movies) and ``entity_link``
(DBpedia URIs of other linked entities). Entity ids come from the dataset's ``entity2id.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import polars as pl

from qamrec.errors import DataFormatError
from qamrec.io import iter_jsonl
from qamrec.data.redial import TURN_SCHEMA
from qamrec.data.schema import get_field

__all__ = ["InspiredDialogues", "read_inspired_unicrs"]

_ROLES = {"SEEKER": "seeker", "RECOMMENDER": "recommender"}


class InspiredDialogues(NamedTuple):
    dialogues: pl.DataFrame  # dialogue_id, source, n_turns
    turns: pl.DataFrame  # TURN_SCHEMA


def _strings(turn: dict, name: str, path: Path, line: int, where: str) -> list[str]:
    v = get_field(turn, name, list, path, line, default=[], where=where)
    if not all(isinstance(x, str) for x in v):
        raise DataFormatError(path, "non-string entry", line=line, field=f"{where}.{name}", expected="strings")
    return v


def read_inspired_unicrs(path: str | Path, entity2id: dict[str, int]) -> InspiredDialogues:
    """Parse an INSPIRED file in the UniCRS format; URIs unknown to ``entity2id`` get no entity id."""
    path = Path(path)
    dialogues: list[dict] = []
    turns: list[dict] = []
    for line, dialog in iter_jsonl(path):
        if not isinstance(dialog, list):
            raise DataFormatError(path, "a dialogue is not a list of turns", line=line, expected="[{text, role, ...}]")
        did = f"{path.stem}:{line}"
        for i, t in enumerate(dialog):
            where = f"[{i}]"
            role = get_field(t, "role", str, path, line, where=where)
            if role not in _ROLES:
                raise DataFormatError(path, f"role {role!r}", line=line, field=f"{where}.role",
                                      expected="SEEKER or RECOMMENDER")
            movie_uris = _strings(t, "movie_link", path, line, where)
            links = _strings(t, "entity_link", path, line, where)
            turns.append(
                {
                    "dialogue_id": did,
                    "turn": i,
                    "role": _ROLES[role],
                    "text": get_field(t, "text", str, path, line, where=where),
                    "movies": _strings(t, "movie", path, line, where),
                    "movie_uris": movie_uris,
                    "movie_entities": [entity2id[u] for u in movie_uris if u in entity2id],
                    "entities": [entity2id[u] for u in links if u in entity2id],
                }
            )
        dialogues.append({"dialogue_id": did, "source": path.name, "n_turns": len(dialog)})
    if not dialogues:
        raise DataFormatError(path, "no dialogues", expected="one INSPIRED dialogue per line")
    return InspiredDialogues(
        pl.DataFrame(dialogues, schema={"dialogue_id": pl.String, "source": pl.String, "n_turns": pl.Int32}),
        pl.DataFrame(turns, schema=TURN_SCHEMA),
    )
