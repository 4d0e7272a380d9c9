"""The DBpedia knowledge graphs shipped with the UniCRS data: entities, relations and triples.

``entity2id.json`` maps DBpedia URIs to ids, ``relation2id.json`` relation URIs to ids, ``item_ids.json``
lists the entity ids that are candidate movies, and ``dbpedia_subkg.json`` holds ``head -> [[relation, tail],
...]``. UniCRS keeps only the relations of ``relation_set.json`` (and ``self_loop``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote

import polars as pl

from qamrec.errors import DataFormatError
from qamrec.io import read_json

__all__ = ["KnowledgeGraph", "read_kg", "uri_label", "parse_film_uri"]

_PREFIX = re.compile(r"^<?https?://dbpedia\.org/(resource|ontology)/")
_QUALIFIED = re.compile(r"^(?P<title>.+?)\s*\((?P<qual>[^()]*)\)$")


def uri_label(uri: str) -> str:
    """``<http://dbpedia.org/resource/Jordan_Mechner>`` -> ``Jordan Mechner``."""
    return unquote(_PREFIX.sub("", uri).rstrip(">")).replace("_", " ").strip()


def parse_film_uri(uri: str) -> tuple[str, int | None, str]:
    """Title, year and kind of a DBpedia URI, read off its disambiguation suffix.

    ``kind`` is ``"film"`` for a film disambiguation, ``"other"`` for any other one (a series, a game, a
    restaurant ...) and ``""`` for none: ``House_(1995_film)`` -> ``("House", 1995, "film")``;
    ``Titanic_(2012_TV_series)`` -> ``("Titanic", 2012, "other")``; ``Flightplan`` -> ``("Flightplan", None, "")``.
    """
    label = uri_label(uri)
    m = _QUALIFIED.match(label)
    if m is None:
        return label, None, ""
    qual = m.group("qual")
    year = re.match(r"(\d{4})\b", qual)
    words = qual.lower().split()
    kind = "film" if words and words[-1] == "film" else "other"
    return m.group("title").strip(), int(year.group(1)) if year else None, kind


class KnowledgeGraph(NamedTuple):
    entities: pl.DataFrame  # entity_id, uri, label, is_item
    relations: pl.DataFrame  # relation_id, uri, label, kept
    triples: pl.DataFrame  # head, relation_id, tail


def _mapping(path: Path) -> dict[str, int]:
    raw = read_json(path)
    if not isinstance(raw, dict) or not all(isinstance(v, int) for v in raw.values()):
        raise DataFormatError(path, "not a mapping of names to integer ids", expected='{"<uri>": id, ...}')
    return raw


def read_kg(folder: str | Path) -> KnowledgeGraph:
    """Read ``entity2id.json``, ``relation2id.json``, ``relation_set.json``, ``item_ids.json`` and
    ``dbpedia_subkg.json`` from a UniCRS data folder."""
    folder = Path(folder)
    ent = _mapping(folder / "entity2id.json")
    rel = _mapping(folder / "relation2id.json")
    kept_path = folder / "relation_set.json"
    kept = set(read_json(kept_path)) if kept_path.exists() else set(rel)
    items_path = folder / "item_ids.json"
    items = read_json(items_path)
    if not isinstance(items, list) or not all(isinstance(i, int) for i in items):
        raise DataFormatError(items_path, "not a list of integer entity ids", expected="[id, ...]")
    item_set = set(items)
    n_ent = max(ent.values()) + 1 if ent else 0
    unknown = item_set - set(ent.values())
    if unknown:
        raise DataFormatError(items_path, f"{len(unknown)} item ids not in entity2id.json, e.g. {min(unknown)}")
    kg_path = folder / "dbpedia_subkg.json"
    kg = read_json(kg_path)
    if not isinstance(kg, dict):
        raise DataFormatError(kg_path, "top level is not an object", expected="{head: [[relation, tail], ...]}")
    heads: list[int] = []
    rels: list[int] = []
    tails: list[int] = []
    n_rel = max(rel.values()) + 1 if rel else 0
    for head, edges in kg.items():
        if not str(head).lstrip("-").isdigit() or not isinstance(edges, list):
            raise DataFormatError(kg_path, f"entry {head!r}", field=str(head), expected="id -> [[relation, tail], ...]")
        h = int(head)
        for edge in edges:
            if (not isinstance(edge, list) or len(edge) != 2 or not all(isinstance(x, int) for x in edge)
                    or not 0 <= edge[0] < n_rel or not 0 <= edge[1] < n_ent):
                raise DataFormatError(kg_path, f"bad edge {edge!r}", field=str(head),
                                      expected=f"[relation id < {n_rel}, tail id < {n_ent}]")
            heads.append(h)
            rels.append(edge[0])
            tails.append(edge[1])
    entities = pl.DataFrame(
        {
            "entity_id": list(ent.values()),
            "uri": list(ent.keys()),
            "label": [uri_label(u) for u in ent],
            "is_item": [v in item_set for v in ent.values()],
        },
        schema={"entity_id": pl.Int64, "uri": pl.String, "label": pl.String, "is_item": pl.Boolean},
    ).sort("entity_id")
    relations = pl.DataFrame(
        {
            "relation_id": list(rel.values()),
            "uri": list(rel.keys()),
            "label": [uri_label(u) for u in rel],
            "kept": [u in kept or u == "self_loop" for u in rel],
        },
        schema={"relation_id": pl.Int64, "uri": pl.String, "label": pl.String, "kept": pl.Boolean},
    ).sort("relation_id")
    triples = pl.DataFrame(
        {"head": heads, "relation_id": rels, "tail": tails},
        schema={"head": pl.Int64, "relation_id": pl.Int64, "tail": pl.Int64},
    )
    return KnowledgeGraph(entities, relations, triples)
