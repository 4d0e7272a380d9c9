"""What an :class:`~qamrec.serve.understand.Understanding` does to the scores of the engine's index rows.

Wanted kinds of movies, years and people lift the movies that have them (a MovieLens tag named as such, which few
movies carry, lifts them by :attr:`Weights.tag`; movies like a named one, those that share its genres); unwanted
ones, and years or people a
request insists on, are *hard*: each violated constraint costs :attr:`Weights.hard` standardized units, far more
than any score spread, so a violating movie ranks below every movie that satisfies it, but the list is never
empty (everything is still ranked). A movie matches a kind by its catalog genres, its MovieLens tags or its
KG genres / subjects; a person by the KG's director / starring / writer edges or the catalog's director and cast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from qamrec.graph.store import candidate_columns
from qamrec.serve.refine import WordGraph
from qamrec.serve.understand import Understanding, person_key
from qamrec.serve.vocab import CONCEPTS, Concept

__all__ = ["MovieFacts", "Weights", "PEOPLE_KINDS"]

#: genre names that mean the same thing in the catalog's sources (ReDial's "family" is MovieLens' "children")
_GENRE_ALIASES = {"family": "children"}

#: word-graph kinds that are people
PEOPLE_KINDS = ("director", "starring", "writer")


@dataclass(frozen=True)
class Weights:
    """Sizes of the adjustments, in standardized score units (the scores have unit spread)."""

    hard: float = 100.0
    concept: float = 1.5  # times the concept's own weight
    tag: float = 5.0  # a tag named as such (Concept.from_tag): few movies carry one
    year: float = 1.0
    soft_year: float = 0.5
    person: float = 2.0
    anchor_genre: float = 1.0  # shares a genre with a movie the request likes
    anchor_genres: float = 1.0  # times the share of that movie's genres it has
    every_concept: float = 0.0  # more for a movie of every kind the request wants (two or more kinds)


class MovieFacts:
    """Per index row: its genres, words and people, and its year.

    Args:
        movies: the catalog movie of every index row.
        info: catalog facts per movie id (``year``, ``genres``).
        words: the candidates' word graph (its items are the first ``len(words)`` rows).
        people: movie id -> names from the catalog (director and cast).
    """

    def __init__(self, movies: np.ndarray, info: Mapping[int, Mapping[str, Any]], words: WordGraph,
                 people: Mapping[int, Sequence[str]] | None = None) -> None:
        self.movies, self.words = np.asarray(movies), words
        self.n = len(self.movies)
        self.rows_of = candidate_columns(self.movies.tolist())
        self.years = np.array([np.nan if (y := (info.get(m) or {}).get("year")) is None else float(y)
                               for m in self.movies.tolist()])
        self.years32 = self.years.astype(np.float32)
        self.known = ~np.isnan(self.years)
        self._genre_rows: dict[str, list[int]] = {}
        self._genres_of: dict[int, set[str]] = {}
        for j, m in enumerate(self.movies.tolist()):
            for g in (info.get(m) or {}).get("genres") or ():
                key = _GENRE_ALIASES.get(str(g).strip().lower(), str(g).strip().lower())
                self._genre_rows.setdefault(key, []).append(j)
                self._genres_of.setdefault(m, set()).add(key)
        #: the kinds of movies a request may name, by label (CONCEPTS and those of :meth:`add_concepts`)
        self.concepts: dict[str, Concept] = {c.label: c for c in CONCEPTS}
        self._person_rows: dict[str, set[int]] = {}
        self.names: dict[str, tuple[str, int]] = {}  # person key -> (shown name, movies)
        for w, (label, kind) in enumerate(zip(words.labels, words.kinds)):
            if kind in PEOPLE_KINDS:
                self._add_person(label, words.items_with([w]).tolist())
        for m, names in (people or {}).items():
            for name in names:
                if name and m in self.rows_of:
                    self._add_person(name, self.rows_of[m])
        self._cache: dict[str, np.ndarray] = {}

    def add_concepts(self, concepts: Sequence[Concept]) -> None:
        """Concepts beyond :data:`CONCEPTS` (e.g. :func:`~qamrec.serve.vocab.tag_concepts`), by label."""
        for c in concepts:
            self.concepts.setdefault(c.label, c)

    def anchor(self, movie: int) -> np.ndarray:
        """[rows] float: the share of ``movie``'s genres each row has (0 for all rows when it has none)."""
        genres = self._genres_of.get(movie, set())
        out = np.zeros(self.n, dtype=np.float64)
        for g in genres:
            out[self._genre_rows.get(g, [])] += 1.0 / len(genres)
        return out

    def _add_person(self, name: str, rows: Sequence[int]) -> None:
        key = person_key(name)
        if len(key) < 4 or " " not in key:
            return
        have = self._person_rows.setdefault(key, set())
        have.update(rows)
        self.names[key] = (self.names.get(key, (name, 0))[0], len(have))

    def concept(self, c: Concept) -> np.ndarray:
        """Rows of movies of kind ``c``: [rows] bool."""
        hit = self._cache.get(c.label)
        if hit is not None:
            return hit
        mask = np.zeros(self.n, dtype=bool)
        for g in c.genres:
            mask[self._genre_rows.get(_GENRE_ALIASES.get(g, g), [])] = True
        for w, (label, kind) in enumerate(zip(self.words.labels, self.words.kinds)):
            low = label.lower()
            if (kind in ("genre", "tag") and (low in c.tags or low in c.genres)) or \
                    (c.pattern is not None and kind in ("genre", "subject") and c.pattern.search(label)):
                mask[self.words.items_with([w])] = True
        self._cache[c.label] = mask
        return mask

    def person(self, name: str) -> np.ndarray:
        """Rows of movies of a person: [rows] bool."""
        mask = np.zeros(self.n, dtype=bool)
        mask[list(self._person_rows.get(person_key(name), ()))] = True
        return mask

    def _in_years(self, lo: int | None, hi: int | None) -> np.ndarray:
        """[rows] bool: a known year within lo..hi (NaN, an unknown year, compares False)."""
        y = self.years32
        return (y >= (lo if lo is not None else -1)) & (y <= (hi if hi is not None else 10**4))

    def adjust(self, u: Understanding, weights: Weights | None = None) -> np.ndarray:
        """What to add to the standardized scores of every row for the understanding ``u``: [rows] float32."""
        w = weights or Weights()
        out = np.zeros(self.n, dtype=np.float32)
        by_label = self.concepts
        every = np.ones(self.n, dtype=bool)
        for label in u.genres:
            c = by_label[label]
            kind = self.concept(c)
            out += np.float32(w.tag if c.from_tag else w.concept * c.weight) * kind
            every &= kind
        if len(u.genres) > 1 and w.every_concept:
            out += np.float32(w.every_concept) * every
        for label in u.excluded:
            out -= np.float32(w.hard) * self.concept(by_label[label])
        for m, _ in u.anchors:
            share = self.anchor(m)
            out += (w.anchor_genre * (share > 0) + w.anchor_genres * share).astype(np.float32)
        hard = [y for y in u.years if y.hard]
        if hard:
            inside = np.zeros(self.n, dtype=bool)
            for y in hard:
                inside |= self._in_years(y.lo, y.hi)
            out += np.where(inside, np.float32(w.year),
                            np.where(self.known, np.float32(-w.hard), np.float32(-w.hard / 2)))
        for y in u.years:
            if not y.hard:
                out += np.float32(w.soft_year) * self._in_years(y.lo, y.hi)
        for y in u.excluded_years:
            out -= np.float32(w.hard) * self._in_years(y.lo, y.hi)
        if u.people:
            count = sum(self.person(p).astype(np.float32) for p in u.people)
            out += np.float32(w.person) * count - np.float32(w.hard) * (count == 0)
        for p in u.excluded_people:
            out -= np.float32(w.hard) * self.person(p)
        return out
