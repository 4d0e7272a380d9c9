"""Checking a reply's stated facts against the catalog, by code.

Every fact a reply states comes as a :class:`~qamrec.serve.facts.Claim`. :class:`FactChecker` reads the
catalog's own columns (``catalog/movies``: title, year, genres, plot, director, cast) independently of the cards
the replies were built from, and confirms a claim only when the catalog says exactly that of that movie: the
genre is one of its genres (case aside; ReDial's "family" is MovieLens' "children"), the person is its director
or in its cast, the year is its year, the title its title, the sentence a sentence of its plot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

from qamrec.serve.facts import Claim, genre_key
from qamrec.serve.titles import display_title

__all__ = ["FactChecker", "FaithfulnessReport"]


@dataclass
class FaithfulnessReport:
    """Claims checked and confirmed, and the ones the catalog does not confirm."""

    checked: int = 0
    confirmed: int = 0
    failures: list[Claim] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """The share of stated facts the catalog confirms (1.0 when nothing was stated)."""
        return self.confirmed / self.checked if self.checked else 1.0

    def as_dict(self) -> dict[str, object]:
        return {"checked": self.checked, "confirmed": self.confirmed, "rate": self.rate,
                "failures": [c.as_dict() for c in self.failures[:20]]}


class FactChecker:
    """Confirms claims against the catalog table ``movies`` (its rows read here, nothing shared with the
    reply builder)."""

    def __init__(self, movies: pl.DataFrame) -> None:
        self._rows: dict[int, dict[str, object]] = {}
        cols = [c for c in ("movie_id", "title", "year", "genres", "plot", "director", "cast") if c in movies.columns]
        for r in movies.select(cols).iter_rows(named=True):
            self._rows[int(r["movie_id"])] = r

    def confirms(self, claim: Claim) -> bool:
        """Whether the catalog says ``claim`` (a title may be the catalog's or its display form, "The Matrix"
        for "Matrix, The")."""
        r = self._rows.get(claim.movie)
        if r is None:
            return False
        v = claim.value
        if claim.field == "genre":
            return genre_key(v) in {genre_key(str(g)) for g in r.get("genres") or ()}  # type: ignore[union-attr]
        if claim.field == "director":
            return v in (r.get("director") or ())  # type: ignore[operator]
        if claim.field == "cast":
            return v in (r.get("cast") or ())  # type: ignore[operator]
        if claim.field == "year":
            return r.get("year") is not None and str(r["year"]) == v
        if claim.field == "title":
            title = str(r.get("title") or "")
            return bool(title) and v in (title, display_title(title))
        if claim.field == "plot":
            plot = " ".join(str(r.get("plot") or "").split())
            return bool(v) and plot.startswith(v)
        return False

    def check(self, claims: Iterable[Claim], report: FaithfulnessReport | None = None) -> FaithfulnessReport:
        """Check ``claims``, adding to ``report`` (a new one by default)."""
        report = report or FaithfulnessReport()
        for c in claims:
            report.checked += 1
            if self.confirms(c):
                report.confirmed += 1
            else:
                report.failures.append(c)
        return report
