"""Wording: filling a template's movie slots, saying a reason, a refinement or an acknowledgement in words, and
choosing among several wordings one the conversation has not heard yet.

Nothing here decides *what* is true: the facts come from :mod:`qamrec.serve.facts` as claims; a template whose
genre words (:data:`~qamrec.serve.facts.GENRE_WORDS`) do not hold for the movies in its slots is not used.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from qamrec.serve.facts import GENRE_WORDS, Claim, MovieCard
from qamrec.serve.reply_index import SLOT

__all__ = ["fill", "template_genres", "pick", "ordered", "join_names", "phrase_words", "DECADE"]

_GENRE_RE = re.compile(r"(?<![\w-])(" + "|".join(sorted(map(re.escape, GENRE_WORDS), key=len, reverse=True))
                       + r")(?![\w-])", re.IGNORECASE)
DECADE = re.compile(r"^(\d{3})0s$")


def template_genres(template: str) -> list[str]:
    """The catalog genres a template's words speak of ("a good thriller" -> thriller)."""
    return list(dict.fromkeys(GENRE_WORDS[m.group(1).lower()] for m in _GENRE_RE.finditer(template)))


def fill(template: str, cards: Sequence[MovieCard]) -> tuple[str, list[Claim]] | None:
    """The template with its slots filled by ``cards`` in order ("Title (Year)"), and the claims that says:
    each title and year, and every genre the template's words speak of, for every movie in it. None when there
    are fewer movies than slots or a genre word is not true of a movie in it."""
    n = template.count(SLOT)
    if n > len(cards) or n == 0:
        return None
    used = list(cards[:n])
    genres = template_genres(template)
    if any(not c.has_genre(g) for c in used for g in genres):
        return None
    parts = template.split(SLOT)
    text = parts[0] + "".join(c.label + p for c, p in zip(used, parts[1:]))
    claims = [Claim(c.id, "title", c.title) for c in used]
    claims += [Claim(c.id, "year", str(c.year)) for c in used if c.year]
    claims += [Claim(c.id, "genre", g) for c in used for g in genres]
    return " ".join(text.split()), claims


def _key(seed: str, option: str) -> int:
    return int.from_bytes(hashlib.blake2b((seed + "\x00" + option).encode(), digest_size=4).digest(), "big")


def ordered(options: Sequence[str], seed: str) -> list[str]:
    """``options`` in an order that depends on ``seed`` only (varied wording, the same for the same seed)."""
    return sorted(options, key=lambda o: _key(seed, o))


def pick(options: Sequence[str], seed: str, heard: str = "") -> str:
    """One of ``options``, the same for the same ``seed``; one whose words (its text before the first ``{``)
    do not occur in ``heard`` (what the conversation already said) when there is one."""
    ordered_ = ordered(options, seed)
    low = heard.lower()
    for o in ordered_:
        stem = o.split("{", 1)[0].strip().lower()
        if not stem or stem not in low:
            return o
    return ordered_[0]


def join_names(names: Sequence[str]) -> str:
    """"A", "A and B", "A, B and C"."""
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def phrase_words(words: Sequence[tuple[str, str]]) -> str:
    """A refinement's (label, kind) words as a noun phrase: [("1990s", "decade"), ("crime", "genre"),
    ("Keanu Reeves", "starring")] -> "90s crime film with Keanu Reeves". MovieLens tags and KG subjects (free
    words: "tom hanks", "based on a book") are named only when nothing else is: "something tagged “heist”"."""
    decade = [w for w, k in words if k == "decade"]
    genres = [w for w, k in words if k == "genre"]
    tags = [w for w, k in words if k in ("tag", "subject")]
    stars = [w for w, k in words if k == "starring"]
    directors = [w for w, k in words if k == "director"]
    writers = [w for w, k in words if k == "writer"]
    head = ""
    if decade:
        m = DECADE.match(decade[0])
        head = (f"{decade[0][2:]}" if m and decade[0].startswith("19") else decade[0]) + " "
    core = (" ".join(g.lower() for g in genres) + " film") if genres else "something"
    if not genres and head:
        core = "film"
    phrase = (head + core).strip()
    extra = []
    if tags and not (genres or decade or stars or directors or writers):  # a tag alone: named as such
        extra.append(f"tagged “{tags[0].lower()}”")
    if stars:
        extra.append(f"with {join_names(stars)}")
    if directors:
        extra.append(f"directed by {join_names(directors)}")
    if writers:
        extra.append(f"written by {join_names(writers)}")
    return " ".join([phrase, *extra]).strip()
