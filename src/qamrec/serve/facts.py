"""What a reply may say about a movie: facts from the catalog, each stated one as a structured :class:`Claim`.

A reply never states a fact it did not take from here, and every fact it takes comes with the claim that
:mod:`qamrec.serve.faithfulness` checks against the catalog afterwards: the director, the first billed cast, the
genres, the year, the first sentence of the plot, and what two movies share ("also directed by Steven
Soderbergh", "another heist film with George Clooney").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

__all__ = ["Claim", "MovieCard", "CatalogFacts", "first_sentence", "CLAIM_FIELDS", "GENRE_WORDS"]

#: what a claim can be about
CLAIM_FIELDS = ("title", "year", "genre", "director", "cast", "plot")

#: words a template may use for a genre (lower case) -> the catalog genre (lower case) that makes them true
GENRE_WORDS: dict[str, str] = {
    "comedy": "comedy", "comedies": "comedy", "funny": "comedy", "hilarious": "comedy",
    "horror": "horror", "scary": "horror", "creepy": "horror", "creepiest": "horror", "scariest": "horror",
    "thriller": "thriller", "thrillers": "thriller", "suspenseful": "thriller",
    "drama": "drama", "dramas": "drama", "romance": "romance", "romantic": "romance", "romcom": "romance",
    "action": "action", "animated": "animation", "animation": "animation", "cartoon": "animation",
    "documentary": "documentary", "documentaries": "documentary", "musical": "musical", "musicals": "musical",
    "western": "western", "westerns": "western", "war": "war", "crime": "crime", "mystery": "mystery",
    "fantasy": "fantasy", "adventure": "adventure", "sci-fi": "sci-fi", "scifi": "sci-fi",
    "science fiction": "sci-fi", "sci fi": "sci-fi", "family": "children", "kids": "children", "superhero": "action",
}
#: catalog genre names that mean the same (ReDial's "family", MovieLens' "children")
_ALIASES = {"family": "children", "science fiction": "sci-fi"}
_SENTENCE = re.compile(r"^(.{20,240}?[.!?])(?:\s+[A-Z\"'(]|\s*$)", re.DOTALL)


def first_sentence(text: str | None) -> str:
    """The first sentence of a plot (20..240 characters, ending in . ! or ?); "" when there is none."""
    t = " ".join((text or "").split())
    m = _SENTENCE.match(t)
    return m.group(1) if m else ""


def genre_key(genre: str) -> str:
    g = genre.strip().lower()
    return _ALIASES.get(g, g)


@dataclass(frozen=True)
class Claim:
    """One stated fact: ``movie`` (catalog id) has ``value`` as its ``field`` (a genre, a director, a cast
    member, its year, its title, or the first sentence of its plot)."""

    movie: int
    field: Literal["title", "year", "genre", "director", "cast", "plot"]
    value: str

    def as_dict(self) -> dict[str, Any]:
        return {"movie": self.movie, "field": self.field, "value": self.value}


@dataclass(frozen=True)
class MovieCard:
    """The facts of one movie a reply may use."""

    id: int
    title: str
    year: int | None
    genres: tuple[str, ...]
    directors: tuple[str, ...]
    cast: tuple[str, ...]
    plot: str  # its first sentence

    @property
    def label(self) -> str:
        return f"{self.title} ({self.year})" if self.year else self.title

    def has_genre(self, genre: str) -> bool:
        return genre_key(genre) in {genre_key(g) for g in self.genres}


class CatalogFacts:
    """The cards of the catalog's movies (those a reply may name), built once from ``catalog/movies``.

    Args:
        movies: catalog rows with movie_id, title, year, genres, plot, director, cast.
        titles: catalog id -> the title as shown (the engine's display titles); the catalog's otherwise.
        cast: how many of the first billed actors a reply may name.
    """

    def __init__(self, movies: pl.DataFrame, titles: Mapping[int, str] | None = None, cast: int = 4) -> None:
        self.cards: dict[int, MovieCard] = {}
        cols = [c for c in ("movie_id", "title", "year", "genres", "plot", "director", "cast") if c in movies.columns]
        for r in movies.select(cols).iter_rows(named=True):
            m = int(r["movie_id"])
            self.cards[m] = MovieCard(
                id=m, title=(titles or {}).get(m) or str(r.get("title") or f"movie {m}"), year=r.get("year"),
                genres=tuple(g for g in r.get("genres") or () if g and g != "(no genres listed)"),
                directors=tuple(x for x in r.get("director") or () if x),
                cast=tuple(x for x in (r.get("cast") or ())[:cast] if x), plot=first_sentence(r.get("plot")))

    def __contains__(self, movie: int) -> bool:
        return movie in self.cards

    def card(self, movie: int) -> MovieCard | None:
        return self.cards.get(movie)

    def shared(self, movie: int, others: Iterable[int]) -> list[tuple[str, str, int]]:
        """What ``movie`` shares with each of ``others``: (field, value, other movie) for a shared director,
        cast member or genre, people first."""
        a = self.cards.get(movie)
        out: list[tuple[str, str, int]] = []
        if a is None:
            return out
        for o in others:
            b = self.cards.get(o)
            if b is None or o == movie:
                continue
            out += [("director", d, o) for d in a.directors if d in b.directors]
            out += [("cast", c, o) for c in a.cast if c in b.cast]
        for o in others:
            b = self.cards.get(o)
            if b is None or o == movie:
                continue
            bg = {genre_key(g) for g in b.genres}
            out += [("genre", g, o) for g in a.genres if genre_key(g) in bg]
        return out
