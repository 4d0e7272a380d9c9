"""Movie titles as people type them: display form, and fuzzy resolution against the engine's catalog."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rapidfuzz import fuzz, process

from qamrec.data.schema import display_title, normalize_title, split_title_year
from qamrec.errors import QamrecError

__all__ = ["TitleIndex", "UnknownTitleError", "display_title"]


class UnknownTitleError(QamrecError):
    """A title the catalog cannot resolve; ``closest`` holds the nearest titles."""

    def __init__(self, title: str, closest: list[str]) -> None:
        self.title, self.closest = title, closest
        hint = f"; closest: {'; '.join(closest)}" if closest else ""
        super().__init__(f"unknown title {title!r}{hint}")


class TitleIndex:
    """The normalized titles (:func:`~qamrec.data.schema.normalize_title`) of the movies an engine knows.

    Args:
        movies: the movie ids to index, in order.
        info: catalog facts per movie id (``title``, ``year``).
        preferred: movies to prefer among equal titles (the engine's candidates).
        popularity: movie -> how well known it is; among equal titles (no year said) the best known wins.
    """

    def __init__(self, movies: Iterable[int], info: Mapping[int, Mapping[str, Any]],
                 preferred: Mapping[int, Any] | None = None, popularity: Mapping[int, float] | None = None) -> None:
        self.info, self.preferred, self.popularity = info, preferred or {}, popularity or {}
        self.key_of: dict[int, str] = {}
        self.keys: list[str] = []
        self.ids: list[int] = []
        self.by_key: dict[str, list[int]] = {}
        for m in movies:
            if m in info:
                key = normalize_title(str(info[m]["title"]))
                self.keys.append(key)
                self.ids.append(m)
                self.by_key.setdefault(key, []).append(m)
                self.key_of[m] = key

    def _pick(self, pool: list[int], year: int | None, exact: bool) -> int | None:
        """One movie of ``pool``: the year's (or a year off) when given; a fuzzy title must agree on it."""
        if year is not None:
            same = [m for m in pool if self.info[m]["year"] == year]
            near = [m for m in pool if self.info[m]["year"] and abs(self.info[m]["year"] - year) <= 1]
            pool = same or near or (pool if exact else [])
        if not pool:
            return None
        return sorted(pool, key=lambda m: (m not in self.preferred, -self.popularity.get(m, float("-inf")), m))[0]

    def same_title(self, movie_id: int) -> list[int]:
        """The movies with the same (normalized) title as ``movie_id``, itself included."""
        key = self.key_of.get(movie_id)
        return list(self.by_key.get(key, ())) if key is not None else [movie_id]

    def lookup(self, name: str, year: int | None = None, min_score: float = 90.0) -> tuple[int, float] | None:
        """The movie a title names and how well it matched (100 exact), or None: exact normalized titles
        first, then ``fuzz.ratio`` of at least ``min_score`` (0 turns fuzzy matching off)."""
        key = normalize_title(name)
        if not key:
            return None
        exact = self.by_key.get(key)
        if exact:
            m = self._pick(exact, year, True)
            return None if m is None else (m, 100.0)
        if min_score <= 0:
            return None
        hits = process.extract(key, self.keys, scorer=fuzz.ratio, limit=10, score_cutoff=min_score)
        if not hits:
            return None
        m = self._pick([self.ids[i] for _, _, i in hits], year, False)
        return None if m is None else (m, max(s for _, s, i in hits if self.ids[i] == m))

    def resolve(self, title: str) -> int:
        """A movie id for a title such as "Ocean's Eleven (2001)" (fuzzy; year breaks ties), or
        :class:`UnknownTitleError` with the closest titles."""
        name, year = split_title_year(title.strip())
        key = normalize_title(name)
        if not key:
            raise UnknownTitleError(title, [])
        hit = self.lookup(name, year)
        if hit is not None:
            return hit[0]
        near = process.extract(key, self.keys, scorer=fuzz.WRatio, limit=5)
        raise UnknownTitleError(title, [self.label(self.ids[i]) for _, _, i in near])

    def label(self, movie_id: int) -> str:
        """"Title (year)" of a movie."""
        i = self.info.get(movie_id)
        if i is None:
            return f"movie {movie_id}"
        return f"{i['title']} ({i['year']})" if i["year"] else str(i["title"])
