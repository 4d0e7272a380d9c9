"""What a request asks for, as facts the catalog can check, and the truth of every catalog movie.

A :class:`Fact` is one checkable constraint of a free-text request: a genre ("a comedy"), a range of release
years ("from the 1950s", "before 1970"), a person ("with Tom Hanks", "directed by Nolan"), a MovieLens tag
("with a twist ending"), or an anchor ("like Heat": another movie, not the anchor itself, that shares a genre with
it). Genres, years, people and tags can be negated ("no romance", "nothing with Adam Sandler").

:class:`MovieTruth` decides, for any catalog movie, whether it satisfies a fact. It reads the prepared tables
alone (the linked catalog's genres, years, directors and cast, the DBpedia director / starring / writer edges of
both KGs, the MovieLens tags), never the request parser or the model, so a benchmark can hold the product's
understanding of a request against it. What the catalog does not know counts as not satisfied: a movie without a
year is in no year range, one without tags has no tag.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from qamrec.data.schema import display_title, normalize_title

__all__ = ["Fact", "MovieTruth", "FACT_KINDS", "canonical_genre", "name_key"]

#: the kinds of facts; all but ``like`` can be negated
FACT_KINDS = ("genre", "years", "person", "tag", "like")
#: genre names that mean the same thing in the catalog's sources (ReDial's "family" is MovieLens' "Children")
_GENRE_ALIASES = {"family": "children", "film noir": "film-noir", "science fiction": "sci-fi", "scifi": "sci-fi",
                  "children's": "children", "kids": "children"}
#: KG relations whose tails are people a request may name
PERSON_RELATIONS = ("director", "starring", "writer")


def canonical_genre(name: str) -> str:
    """A genre's matching key: lower case, aliases merged ("Family" -> "children", "Film-Noir" -> "film-noir")."""
    g = " ".join(str(name).strip().lower().split())
    return _GENRE_ALIASES.get(g, g)


def name_key(name: str) -> str:
    """A person's matching key: ASCII lower-case words without a disambiguation ("Tom Hanks (actor)" -> "tom hanks")."""
    t = re.sub(r"\s*\([^)]*\)\s*$", "", str(name))
    t = unicodedata.normalize("NFKD", t).encode("ascii", "ignore").decode("ascii").lower()
    return " ".join(re.findall(r"[a-z0-9]+", t))


@dataclass(frozen=True)
class Fact:
    """One checkable constraint of a request.

    ``kind`` is one of :data:`FACT_KINDS`; ``value`` the genre or tag (lower case), the person's name or the
    anchor's title; ``lo`` / ``hi`` the inclusive year range (None: open); ``movie`` the anchor's catalog id.
    """

    kind: str
    value: str = ""
    lo: int | None = None
    hi: int | None = None
    movie: int | None = None
    negated: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FACT_KINDS:
            raise ValueError(f"unknown fact kind {self.kind!r} (known: {', '.join(FACT_KINDS)})")
        if self.kind == "like" and (self.negated or self.movie is None):
            raise ValueError("a like fact names a movie and cannot be negated")
        if self.kind == "years" and self.lo is None and self.hi is None:
            raise ValueError("a years fact needs a start or an end")

    @property
    def spec(self) -> str:
        """The fact as one line, as the hand-written request file writes it: ``genre:comedy``, ``not tag:gore``,
        ``years:1950-1959``, ``years:-1969``, ``person:Tom Hanks``, ``like:Heat (1995)``."""
        if self.kind == "years":
            body = f"{'' if self.lo is None else self.lo}-{'' if self.hi is None else self.hi}"
        else:
            body = self.value
        return f"{'not ' if self.negated else ''}{self.kind}:{body}"

    @property
    def label(self) -> str:
        """Short and readable: "comedy", "not romance", "1950-1959", "with Tom Hanks", "like Heat (1995)"."""
        if self.kind == "years":
            body = (f"{self.lo}-{self.hi}" if self.lo is not None and self.hi is not None else
                    f"before {self.hi + 1}" if self.lo is None and self.hi is not None else f"from {self.lo}")
        elif self.kind == "person":
            body = f"with {self.value}"
        elif self.kind == "like":
            body = f"like {self.value}"
        elif self.kind == "tag":
            body = f"tag '{self.value}'"
        else:
            body = self.value
        return f"not {body}" if self.negated else body

    @classmethod
    def parse(cls, spec: str, resolve: Callable[[str], int] | None = None) -> Fact:
        """A fact from its :attr:`spec`; ``resolve`` turns a ``like`` fact's title into a catalog movie id."""
        s = spec.strip()
        negated = s.lower().startswith("not ")
        if negated:
            s = s[4:].strip()
        kind, sep, body = s.partition(":")
        kind, body = kind.strip().lower(), body.strip()
        if not sep or not body:
            raise ValueError(f"fact {spec!r}: write kind:value, e.g. genre:comedy or years:1950-1959")
        if kind == "years":
            m = re.fullmatch(r"(\d{4})?\s*-\s*(\d{4})?|(\d{4})", body)
            if m is None:
                raise ValueError(f"fact {spec!r}: years are 1950-1959, -1969, 2001- or 1994")
            if m.group(3):
                lo = hi = int(m.group(3))
            else:
                lo, hi = (int(x) if x else None for x in m.group(1, 2))
            return cls("years", lo=lo, hi=hi, negated=negated)
        if kind == "like":
            if resolve is None:
                raise ValueError(f"fact {spec!r}: a like fact needs a title resolver")
            return cls("like", body, movie=resolve(body), negated=negated)
        if kind == "genre":
            body = canonical_genre(body)
        elif kind == "tag":
            body = body.lower()
        return cls(kind, body, negated=negated)


class MovieTruth:
    """The facts of every catalog movie, and which movies satisfy a request's facts.

    Args:
        movies: catalog rows with ``movie_id``, ``title``, ``year`` and ``genres``.
        people: movie id -> names of its directors, cast and writers (catalog and KG).
        tags: movie id -> its MovieLens tags.
    """

    def __init__(self, movies: pl.DataFrame, people: Mapping[int, Iterable[str]] | None = None,
                 tags: Mapping[int, Iterable[str]] | None = None) -> None:
        movies = movies.unique("movie_id", keep="first").sort("movie_id")
        self.ids = movies["movie_id"].to_numpy().astype(np.int64)
        self.n = len(self.ids)
        years = movies["year"].to_list()
        self.year = np.array([np.nan if y is None else float(y) for y in years])
        self.titles: dict[int, tuple[str, int | None]] = {
            m: (display_title(t or f"movie {m}"), y)
            for m, t, y in zip(self.ids.tolist(), movies["title"].to_list(), years)}
        self.genres: dict[int, frozenset[str]] = {}
        rows: dict[str, list[int]] = {}
        for i, (m, gs) in enumerate(zip(self.ids.tolist(), movies["genres"].to_list())):
            gset = frozenset(canonical_genre(g) for g in gs or () if g and str(g).strip())
            self.genres[m] = gset
            for g in gset:
                rows.setdefault(g, []).append(i)
        self._genre_rows = {g: np.asarray(r, dtype=np.int64) for g, r in rows.items()}
        self.people: dict[int, dict[str, str]] = {}  # movie -> {name key: shown name}
        self._person_rows: dict[str, set[int]] = {}
        self.person_names: dict[str, str] = {}
        pos = self.position
        for m, names in (people or {}).items():
            i = int(pos(np.array([m]))[0])
            if i < 0:
                continue
            for name in names:
                key = name_key(name)
                if len(key.split()) < 2:  # a lone word is no person a request can name for sure
                    continue
                self.people.setdefault(m, {})[key] = self.person_names.setdefault(key, str(name).strip())
                self._person_rows.setdefault(key, set()).add(i)
        self._masks: dict[Fact, np.ndarray] = {}
        self._title_counts: dict[str, int] | None = None
        self.tags: dict[int, frozenset[str]] = {}
        self._tag_rows: dict[str, set[int]] = {}
        for m, ts in (tags or {}).items():
            i = int(pos(np.array([m]))[0])
            if i < 0:
                continue
            clean = frozenset(t.strip().lower() for t in ts if t and t.strip())
            self.tags[m] = self.tags.get(m, frozenset()) | clean
            for t in clean:
                self._tag_rows.setdefault(t, set()).add(i)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_prepared(cls, prepared_dir: Path) -> MovieTruth:
        """The truth of the linked catalog of a data home: catalog genres, years, directors and cast, the
        director / starring / writer edges of the ReDial and INSPIRED KGs, and the MovieLens (latest-small) tags."""
        from qamrec.data.step import load_table

        cat = load_table(prepared_dir, "catalog", "movies")
        people: dict[int, list[str]] = {}
        for col in ("director", "cast"):
            if col in cat.columns:
                for m, names in cat.select("movie_id", col).iter_rows():
                    people.setdefault(m, []).extend(x for x in names or () if x)
        for dataset, col in (("redial", "redial_entity"), ("inspired", "inspired_entity")):
            if col not in cat.columns or not (prepared_dir / dataset / "MANIFEST.json").exists():
                continue
            ent = load_table(prepared_dir, dataset, "entities")
            rel = load_table(prepared_dir, dataset, "relations")
            trip = load_table(prepared_dir, dataset, "triples")
            keep = rel.filter(pl.col("label").is_in(PERSON_RELATIONS))["relation_id"].to_list()
            movie_of = cat.filter(pl.col(col).is_not_null()).select(pl.col(col).alias("head"), "movie_id")
            edges = (trip.filter(pl.col("relation_id").is_in(keep)).join(movie_of, on="head")
                     .join(ent.select(pl.col("entity_id").alias("tail"), "label"), on="tail"))
            for m, label in edges.select("movie_id", "label").iter_rows():
                people.setdefault(m, []).append(label)
        tags: dict[int, list[str]] = {}
        if (prepared_dir / "movielens-small" / "MANIFEST.json").exists() and "movielens_id" in cat.columns:
            t = load_table(prepared_dir, "movielens-small", "tags")
            ml = cat.filter(pl.col("movielens_id").is_not_null()).select("movielens_id", "movie_id")
            t = t.with_columns(pl.col("movielens_id").cast(pl.Int64)).join(
                ml.with_columns(pl.col("movielens_id").cast(pl.Int64)), on="movielens_id")
            for m, tag in t.select("movie_id", "tag").iter_rows():
                tags.setdefault(m, []).append(tag)
        return cls(cat.select("movie_id", "title", "year", "genres"), people, tags)

    # ------------------------------------------------------------------ lookups
    def position(self, movies: np.ndarray | Sequence[int]) -> np.ndarray:
        """Row of each movie id in this table, -1 where the catalog does not know it."""
        m = np.asarray(movies, dtype=np.int64).reshape(-1)
        if self.n == 0:
            return np.full(len(m), -1, dtype=np.int64)
        i = np.minimum(np.searchsorted(self.ids, m), self.n - 1)
        return np.where(self.ids[i] == m, i, -1)

    def label(self, movie: int) -> str:
        """"Title (year)" as people write it ("The Matrix (1999)")."""
        t, y = self.titles.get(movie, (f"movie {movie}", None))
        return f"{t} ({y})" if y else t

    def unique_title(self, movie: int) -> bool:
        """Whether no other catalog movie has this movie's title (its year then need not be said)."""
        if self._title_counts is None:
            self._title_counts = {}
            for t, _ in self.titles.values():
                k = normalize_title(t)
                self._title_counts[k] = self._title_counts.get(k, 0) + 1
        return self._title_counts.get(normalize_title(self.titles.get(movie, ("", None))[0]), 0) == 1

    def people_of(self, movie: int) -> dict[str, str]:
        """Name key -> shown name of the people of a movie."""
        return self.people.get(movie, {})

    def year_of(self, movie: int) -> int | None:
        i = int(self.position([movie])[0])
        return None if i < 0 or np.isnan(self.year[i]) else int(self.year[i])

    def person_count(self, name: str) -> int:
        return len(self._person_rows.get(name_key(name), ()))

    def tag_count(self, tag: str) -> int:
        return len(self._tag_rows.get(tag.lower(), ()))

    # ------------------------------------------------------------------ truth
    def _rows_mask(self, fact: Fact) -> np.ndarray:
        """[n] bool: the movies of this table that have what ``fact`` names (its negation ignored)."""
        mask = np.zeros(self.n, dtype=bool)
        if fact.kind == "genre":
            mask[self._genre_rows.get(canonical_genre(fact.value), np.zeros(0, np.int64))] = True
        elif fact.kind == "years":
            known = ~np.isnan(self.year)
            y = np.where(known, self.year, 0)
            mask = known & (y >= (fact.lo if fact.lo is not None else -1)) & (y <= (fact.hi if fact.hi is not None
                                                                                    else 10**4))
        elif fact.kind == "person":
            mask[list(self._person_rows.get(name_key(fact.value), ()))] = True
        elif fact.kind == "tag":
            mask[list(self._tag_rows.get(fact.value.lower(), ()))] = True
        elif fact.kind == "like":
            anchor = int(fact.movie)  # type: ignore[arg-type]
            for g in self.genres.get(anchor, ()):
                mask[self._genre_rows[g]] = True
            i = int(self.position([anchor])[0])
            if i >= 0:
                mask[i] = False
        return mask

    def has(self, fact: Fact, movies: np.ndarray | Sequence[int]) -> np.ndarray:
        """[len(movies)] bool: whether each movie has what ``fact`` names (negation ignored; unknown: False)."""
        pos = self.position(movies)
        key = replace(fact, negated=False)
        mask = self._masks.get(key)
        if mask is None:
            mask = self._masks[key] = self._rows_mask(key)
            while len(self._masks) > 256:  # a few hundred facts of the catalog's size at most
                self._masks.pop(next(iter(self._masks)))
        return np.where(pos >= 0, mask[np.maximum(pos, 0)], False)

    def satisfies(self, facts: Sequence[Fact], movies: np.ndarray | Sequence[int]) -> np.ndarray:
        """[len(movies)] bool: the movies that satisfy every fact (a negated fact: do not have it). A movie the
        catalog does not know satisfies nothing."""
        pos = self.position(movies)
        ok = pos >= 0
        for f in facts:
            h = self.has(f, movies)
            ok &= ~h if f.negated else h
        return ok

    def violates_negation(self, facts: Sequence[Fact], movies: np.ndarray | Sequence[int]) -> np.ndarray:
        """[len(movies)] bool: the movies that have what some negated fact rules out."""
        out = np.zeros(len(np.asarray(movies).reshape(-1)), dtype=bool)
        for f in facts:
            if f.negated:
                out |= self.has(f, movies)
        return out

    def describe(self, movie: int) -> dict[str, Any]:
        """What the catalog knows of a movie: title, year, genres, people, tags."""
        return {"id": movie, "title": self.label(movie), "year": self.year_of(movie),
                "genres": sorted(self.genres.get(movie, ())), "people": sorted(self.people_of(movie).values()),
                "tags": sorted(self.tags.get(movie, ()))}
