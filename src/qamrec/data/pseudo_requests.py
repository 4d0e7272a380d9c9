"""Pseudo-requests over the whole catalog: free text a person might type, with the facts it states.

:class:`RequestGenerator` draws a target movie and 1-3 facts that hold for it (:mod:`qamrec.data.request_facts`:
its genres, decade or years, a person of it, a MovieLens tag, "like" another movie that shares a genre) plus,
often, a negated genre it does not have, and words them many ways ("a 1950s film noir", "something with Tom
Hanks, nothing animated", "I loved Heat (1995). Anything similar from the 90s?"): several phrasings per fact,
openers, order, casing and punctuation vary. It is deterministic for a seed.

**The held-out movies.** :func:`is_heldout` puts a fixed, hash-based share of all catalog movies
(:data:`HELDOUT_FRACTION`) aside, the same on every machine and for every seed. :func:`pretraining_pairs` and
:func:`user_conversations` (the supervision for pretraining the query path) never use one as a target or an
anchor; ``qamrec benchmark requests`` draws its generated requests from them alone.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from qamrec.data.request_facts import Fact, MovieTruth

__all__ = ["HELDOUT_FRACTION", "is_heldout", "heldout_mask", "PseudoRequest", "RequestGenerator",
           "GENRE_WORDS", "TAG_WORDS", "pretraining_pairs", "user_conversations"]

#: share of the catalog's movies held out of pretraining (by a hash of the movie id, for every seed)
HELDOUT_FRACTION = 0.2
_SALT = "qamrec/pseudo-requests/heldout"


def is_heldout(movie_id: int, fraction: float = HELDOUT_FRACTION) -> bool:
    """Whether a catalog movie is held out of pretraining (fixed: a hash of its id, not a seed)."""
    h = hashlib.sha256(f"{_SALT}/{int(movie_id)}".encode()).digest()
    return int.from_bytes(h[:8], "big") < fraction * 2**64


def heldout_mask(movies: Sequence[int] | np.ndarray, fraction: float = HELDOUT_FRACTION) -> np.ndarray:
    """[len(movies)] bool: :func:`is_heldout` of each movie."""
    return np.fromiter((is_heldout(int(m), fraction) for m in np.asarray(movies).reshape(-1)), dtype=bool)


@dataclass(frozen=True)
class Words:
    """How a genre is said: as a noun phrase ("horror movie"), before a noun ("scary"), after "no" ("horror")."""

    nouns: tuple[str, ...]
    adjs: tuple[str, ...]
    negs: tuple[str, ...]


def _w(nouns: str, adjs: str, negs: str) -> Words:
    return Words(*(tuple(x.strip() for x in s.split("|")) for s in (nouns, adjs, negs)))


#: the generator's own wording of the catalog's genres (written for it, not read from the parser's vocabulary)
GENRE_WORDS: dict[str, Words] = {
    "action": _w("action movie|action flick|action film", "action|action-packed", "action|action scenes"),
    "adventure": _w("adventure movie|adventure film|adventure", "adventure|adventurous", "adventure"),
    "animation": _w("animated movie|animated film|cartoon", "animated", "animation|cartoons|animated stuff"),
    "children": _w("kids movie|family movie|movie for kids", "family|kid-friendly|family-friendly",
                   "kids movies|children's movies|family movies"),
    "comedy": _w("comedy|funny movie|comedy film", "funny|comedic|comedy", "comedy|comedies"),
    "crime": _w("crime movie|crime film|gangster movie|crime story", "crime", "crime|gangsters"),
    "documentary": _w("documentary|documentary film", "documentary", "documentaries|documentary"),
    "drama": _w("drama|dramatic movie", "dramatic|drama", "drama|heavy drama"),
    "fantasy": _w("fantasy movie|fantasy film|fantasy", "fantasy", "fantasy"),
    "film-noir": _w("film noir|noir film|noir", "noir", "noir|film noir"),
    "horror": _w("horror movie|horror film|scary movie", "horror|scary", "horror|scary stuff"),
    "musical": _w("musical|musical film", "musical", "musicals|musical"),
    "mystery": _w("mystery|whodunit|mystery movie", "mystery", "mystery|mysteries"),
    "romance": _w("romance|romantic movie|love story", "romantic", "romance|love stories|romantic stuff"),
    "sci-fi": _w("sci-fi movie|science fiction film|sci-fi", "sci-fi|science fiction", "sci-fi|science fiction"),
    "thriller": _w("thriller|suspense film", "suspenseful|thriller", "thrillers|suspense"),
    "war": _w("war movie|war film", "war", "war|war movies"),
    "western": _w("western|cowboy movie", "western", "westerns|cowboys"),
}
#: genres a request may ask against ("not a musical"); the others are rarely ruled out by people
NEGATABLE = ("action", "animation", "children", "comedy", "documentary", "drama", "horror", "musical",
             "romance", "sci-fi", "war", "western", "fantasy", "crime", "thriller", "mystery")
#: MovieLens tags a request may ask for, and how: "{}" takes the rest of the sentence's noun phrase (tags that
#: only repeat a genre, "funny", "dark", "suspense", are not among them: their few tagged movies are no truth)
TAG_WORDS: dict[str, tuple[str, ...]] = {
    "atmospheric": ("an atmospheric {}", "something atmospheric"),
    "twist ending": ("a {} with a twist ending", "something with a twist ending"),
    "time travel": ("a {} about time travel", "something with time travel"),
    "superhero": ("a superhero {}", "something with superheroes"),
    "thought-provoking": ("a thought-provoking {}", "something thought-provoking"),
    "surreal": ("a surreal {}", "something surreal"),
    "quirky": ("a quirky {}", "something quirky"),
    "aliens": ("a {} about aliens", "something with aliens"),
    "space": ("a {} set in space", "something in space"),
    "high school": ("a {} set in high school", "a high school {}"),
    "heist": ("a heist {}", "something about a heist"),
    "christmas": ("a christmas {}", "something for christmas"),
    "mafia": ("a mafia {}", "something about the mafia"),
    "based on a true story": ("a {} based on a true story", "something based on a true story"),
    "visually appealing": ("a visually stunning {}", "something visually appealing"),
    "dystopia": ("a dystopian {}", "something set in a dystopia"),
    "serial killer": ("a {} about a serial killer", "something with a serial killer"),
    "zombies": ("a zombie {}", "something with zombies"),
    "boxing": ("a boxing {}", "something about boxing"),
    "psychology": ("a psychological {}", "something psychological"),
    "mental illness": ("a {} about mental illness",),
    "politics": ("a political {}", "something about politics"),
    "religion": ("a {} about religion",),
    "disney": ("a disney {}", "something from disney"),
    "anime": ("an anime {}", "some anime"),
    "dreamlike": ("a dreamlike {}", "something dreamlike"),
    "bittersweet": ("a bittersweet {}", "something bittersweet"),
    "philosophical": ("a philosophical {}", "something philosophical"),
    "world war ii": ("a world war ii {}", "something set in world war 2"),
    "robots": ("a {} with robots", "something about robots"),
    "revenge": ("a revenge {}", "something about revenge"),
    "ghosts": ("a {} with ghosts", "something with ghosts"),
    "vampires": ("a vampire {}", "something with vampires"),
    "martial arts": ("a martial arts {}", "something with martial arts"),
    "comic book": ("a comic book {}", "something based on a comic book"),
    "journalism": ("a {} about journalism", "something about journalists"),
    "court": ("a courtroom {}", "something set in a courtroom"),
    "drugs": ("a {} about drugs",),
    "holocaust": ("a {} about the holocaust",),
    "shakespeare": ("a shakespeare {}", "something based on shakespeare"),
}

_OPENERS = ("", "", "", "I want ", "I'm looking for ", "recommend ", "can you recommend ", "suggest ",
            "looking for ", "in the mood for ", "I'd like to watch ", "find me ", "show me ", "any ideas for ",
            "we want to watch ")
_DECADE_WORDS = {1920: "twenties", 1930: "thirties", 1940: "forties", 1950: "fifties", 1960: "sixties",
                 1970: "seventies", 1980: "eighties", 1990: "nineties"}


@dataclass
class PseudoRequest:
    """A request's text and the facts it states; ``target`` the movie it was drawn from (satisfies them all),
    ``anchors`` the movies it names."""

    text: str
    facts: list[Fact]
    target: int
    anchors: list[int] = field(default_factory=list)
    plan: str = ""

    @property
    def kinds(self) -> str:
        """The fact kinds, "not" first for negated ones: "genre+years+not genre"."""
        return "+".join(("not " if f.negated else "") + f.kind for f in self.facts)


#: what a request states, weighted: positive facts + a negation
_PLANS: tuple[tuple[str, float], ...] = (
    ("genre", 1.0), ("genre,genre", 0.8), ("genre,years", 1.2), ("genre,neg", 1.2), ("genre,years,neg", 1.0),
    ("genre,genre,years", 0.5), ("years,neg", 0.4), ("person", 0.8), ("person,genre", 0.6), ("person,neg", 0.4),
    ("tag", 0.7), ("tag,neg", 0.4), ("like", 0.8), ("like,years", 0.5), ("like,neg", 0.6), ("genre,negperson", 0.2),
)


class RequestGenerator:
    """Pseudo-requests drawn from a catalog's movies.

    Args:
        truth: the catalog's facts.
        universe: the movies a request is checked against; each request keeps at least ``min_satisfying``
            movies of it that satisfy every fact (the feasibility of precision@10).
        anchors: movies that "like X" may name (e.g. those a product can resolve by title).
        min_person_movies: least movies (in the universe) of a person a request names.
    """

    def __init__(self, truth: MovieTruth, universe: Sequence[int] | np.ndarray, anchors: Sequence[int] = (),
                 min_satisfying: int = 10, min_person_movies: int = 5) -> None:
        self.truth = truth
        self.universe = np.unique(np.asarray(universe, dtype=np.int64))
        self.anchor_pool = sorted(set(int(a) for a in anchors))
        self.min_satisfying, self.min_person_movies = min_satisfying, min_person_movies
        #: well-known people a request may rule out ("nothing with Adam Sandler")
        self._famous = sorted(k for k in truth.person_names if truth.person_count(k) >= 20)

    def count(self, facts: Sequence[Fact]) -> int:
        """How many movies of the universe satisfy every fact."""
        return int(self.truth.satisfies(facts, self.universe).sum())

    # ------------------------------------------------------------------ facts
    def _facts(self, rng: random.Random, plan: str, target: int, allowed_anchor: Any) -> list[Fact] | None:
        t = self.truth
        genres = sorted(g for g in t.genres.get(target, ()) if g in GENRE_WORDS)
        year = t.year_of(target)
        facts: list[Fact] = []
        for part in plan.split(","):
            if part == "genre":
                left = [g for g in genres if all(f.value != g for f in facts if f.kind == "genre")]
                if not left:
                    return None
                facts.append(Fact("genre", rng.choice(left)))
            elif part == "years":
                if year is None:
                    return None
                facts.append(self._years(rng, year))
            elif part == "person":
                names = [(k, v) for k, v in sorted(t.people_of(target).items())
                         if t.person_count(k) >= self.min_person_movies]
                if not names:
                    return None
                facts.append(Fact("person", rng.choice(names)[1]))
            elif part == "negperson":
                keys = [k for k in self._famous if k not in t.people_of(target)]
                if not keys:
                    return None
                facts.append(Fact("person", t.person_names[rng.choice(keys)], negated=True))
            elif part == "tag":
                tags = sorted(x for x in t.tags.get(target, ()) if x in TAG_WORDS)
                if not tags:
                    return None
                facts.append(Fact("tag", rng.choice(tags)))
            elif part == "like":
                pool = [a for a in self.anchor_pool if a != target and allowed_anchor(a)
                        and t.genres.get(a, frozenset()) & t.genres.get(target, frozenset())]
                if not pool:
                    return None
                a = rng.choice(pool)
                facts.append(Fact("like", t.label(a), movie=a))
            elif part == "neg":
                neg = self._negation(rng, facts, target)
                if neg is None:
                    return None
                facts.append(neg)
        return facts

    def _years(self, rng: random.Random, year: int) -> Fact:
        r = rng.random()
        dec = year // 10 * 10
        if r < 0.6:
            return Fact("years", lo=dec, hi=dec + 9)
        if r < 0.75:
            hi = dec + 10 * rng.randint(1, 2)  # "before 1990": never the vacuous "before 2020"
            return Fact("years", lo=None, hi=hi - 1) if hi <= 2000 else Fact("years", lo=dec, hi=dec + 9)
        if r < 0.9:
            lo = dec - 10 * rng.randint(0, 1)
            return Fact("years", lo=lo + 1, hi=None) if year > lo else Fact("years", lo=dec, hi=dec + 9)
        return Fact("years", lo=year, hi=year)

    def _negation(self, rng: random.Random, facts: list[Fact], target: int) -> Fact | None:
        """A genre the target lacks that the other facts' movies often have (so ruling it out matters)."""
        have = self.truth.genres.get(target, frozenset())
        options = [g for g in NEGATABLE if g not in have]
        if not options:
            return None
        sat = self.universe[self.truth.satisfies(facts, self.universe)] if facts else self.universe
        sample = sat if len(sat) <= 400 else np.asarray(rng.sample(sat.tolist(), 400))
        counts = {g: sum(g in self.truth.genres.get(int(m), ()) for m in sample.tolist()) for g in options}
        weights = [counts[g] + 1.0 for g in options]
        return Fact("genre", rng.choices(options, weights)[0], negated=True)

    # ------------------------------------------------------------------ words
    def _wording(self, rng: random.Random, facts: list[Fact]) -> str:
        genres = [f.value for f in facts if f.kind == "genre" and not f.negated]
        head = rng.choice(("movie", "film", "movie", "flick")) if genres else rng.choice(("movie", "film"))
        if len(genres) >= 2:
            a, b = rng.sample(genres, 2)
            core = f"{rng.choice(GENRE_WORDS[a].adjs)} {rng.choice(GENRE_WORDS[b].nouns)}"
        elif genres:
            core = rng.choice(GENRE_WORDS[genres[0]].nouns)
        else:
            core = head
        pre: list[str] = []  # sentences before the request ("I loved Heat.")
        post: list[str] = []  # phrases after its noun phrase
        for f in facts:
            if f.kind == "tag" and not f.negated:
                form = rng.choice(TAG_WORDS[f.value])
                core = form.format(core) if "{}" in form else (form if not genres else f"{core}, {form}")
            elif f.kind == "person" and not f.negated:
                post.append(rng.choice(("with {}", "starring {}", "featuring {}", "that {} is in", "with {} in it"))
                            .format(f.value))
            elif f.kind == "like":
                # a title without its year only where no other movie has it ("Heat", not "Psycho")
                unique = self.truth.unique_title(int(f.movie))  # type: ignore[arg-type]
                title = f.value if rng.random() < 0.5 or not unique else f.value.rsplit(" (", 1)[0]
                if rng.random() < 0.4:
                    pre.append(rng.choice(("I loved {}.", "I really liked {}.", "I just watched {} and loved it.",
                                           "{} was great.")).format(title))
                    if genres:
                        post.append(rng.choice(("in the same vein", "like that one", "along those lines")))
                    else:
                        core = rng.choice(("something similar", "anything similar", "more like that",
                                           "something like it"))
                else:
                    post.append(rng.choice(("like {}", "similar to {}", "in the vein of {}", "along the lines of {}",
                                            "a bit like {}")).format(title))
        years = next((f for f in facts if f.kind == "years" and not f.negated), None)
        if years is not None:
            phrase, before_noun = _year_words(rng, years)
            if before_noun and rng.random() < 0.5 and not core.startswith(("some", "any", "more", "a ", "an ")):
                core = f"{phrase} {core}"
            else:
                post.insert(0, _year_phrase(rng, years))
        neg = [f for f in facts if f.negated]
        for f in neg:
            post.append(_negation_phrase(rng, f))
        text = _article(rng.choice(_OPENERS), core)
        if post:
            joins = [", " if p.startswith(("no ", "nothing", "not ", "without", "anything but", "but ", "please",
                                            "skip", "I don't"))
                     else " " for p in post]
            text += "".join(j + p for j, p in zip(joins, post))
        text = " ".join([*pre, text])
        if rng.random() < 0.3:
            text = text.lower()
        elif text[:1].islower():
            text = text[0].upper() + text[1:]
        return text + rng.choice(("", "", ".", "?", " please", "!"))

    # ------------------------------------------------------------------ requests
    def generate(self, n: int, seed: int, targets: Sequence[int], allowed_anchor: Any = None,
                 max_tries: int = 50) -> list[PseudoRequest]:
        """``n`` requests drawn from ``targets`` (each request's facts hold for its target, and at least
        ``min_satisfying`` movies of the universe satisfy them); anchors pass ``allowed_anchor``. Deterministic
        for a seed."""
        rng = random.Random(seed)
        pool = sorted(set(int(m) for m in targets))
        ok_anchor = allowed_anchor or (lambda a: True)
        plans, weights = zip(*_PLANS)
        out: list[PseudoRequest] = []
        seen: set[str] = set()
        tries = 0
        rich = {"person": [m for m in pool if self.truth.people_of(m)],
                "tag": [m for m in pool if self.truth.tags.get(m, frozenset()) & TAG_WORDS.keys()]}
        while len(out) < n and tries < max_tries * max(n, 1) and pool:
            tries += 1
            plan = rng.choices(plans, weights)[0]
            first = plan.split(",")[0]  # a plan that needs a person or a tag draws from movies that have one
            target = rng.choice(rich[first] or pool) if first in rich else rng.choice(pool)
            facts = self._facts(rng, plan, target, ok_anchor)
            if facts is None or len({f.spec for f in facts}) < len(facts):
                continue
            if self.min_satisfying > 0 and self.count(facts) < self.min_satisfying:
                continue
            text = self._wording(rng, facts)
            if text.lower() in seen:
                continue
            seen.add(text.lower())
            out.append(PseudoRequest(text, facts, target, [int(f.movie) for f in facts if f.kind == "like"], plan))
        return out


def _article(opener: str, core: str) -> str:
    """The noun phrase after an opener, with "a" / "an" where it needs one."""
    if core.startswith(("a ", "an ", "some ", "something", "anything", "more ")):
        return opener + core
    art = "an" if core[:1].lower() in "aeiou8" or core.startswith(("11", "18")) else "a"
    return f"{opener}{art} {core}"


def _year_words(rng: random.Random, f: Fact) -> tuple[str, bool]:
    """A decade before the noun ("1950s", "80s") when the fact is one; (phrase, whether it can go there)."""
    if f.lo is not None and f.hi == f.lo + 9 and f.lo % 10 == 0:
        return (f"{f.lo}s" if rng.random() < 0.5 or f.lo >= 2000 else f"{str(f.lo)[2:]}s"), True
    return "", False


def _year_phrase(rng: random.Random, f: Fact) -> str:
    lo, hi = f.lo, f.hi
    if lo is not None and hi == lo + 9 and lo % 10 == 0:
        forms = [f"from the {lo}s", f"made in the {lo}s", f"released in the {lo}s"]
        if lo < 2000:
            forms += [f"from the {str(lo)[2:]}s", f"from the '{str(lo)[2:]}s"]
        if lo in _DECADE_WORDS:
            forms.append(f"from the {_DECADE_WORDS[lo]}")
        return rng.choice(forms)
    if lo is not None and hi == lo:
        return rng.choice((f"from {lo}", f"released in {lo}", f"that came out in {lo}"))
    if lo is None and hi is not None:
        return rng.choice((f"made before {hi + 1}", f"older than {hi + 1}", f"from before {hi + 1}"))
    assert lo is not None
    return rng.choice((f"released after {lo - 1}", f"made after {lo - 1}", f"from after {lo - 1}",
                       f"newer than {lo - 1}"))


def _negation_phrase(rng: random.Random, f: Fact) -> str:
    if f.kind == "person":
        return rng.choice(("nothing with {}", "but not with {}", "no {} please", "without {}")).format(f.value)
    w = GENRE_WORDS[f.value]
    neg, noun, adj = rng.choice(w.negs), rng.choice(w.nouns), rng.choice(w.adjs)
    forms = [f"no {neg}", f"no {neg} please", f"without {neg}", f"not a {noun}", f"but no {neg}",
             f"anything but {neg}", f"please no {neg}", f"skip the {neg}", f"I don't want {neg}"]
    if adj not in ("drama", "comedy", "crime", "war", "thriller", "fantasy", "mystery", "western", "action",
                   "documentary", "musical", "sci-fi", "horror", "adventure", "family", "science fiction"):
        forms += [f"nothing {adj}", f"nothing too {adj}"]
    return rng.choice(forms)


# ---------------------------------------------------------------------------------------------- pretraining
def pretraining_pairs(truth: MovieTruth, n: int, seed: int = 0, universe: Sequence[int] | None = None,
                      fraction: float = HELDOUT_FRACTION) -> Iterator[tuple[str, int]]:
    """(request text, target movie id) pairs to pretrain the query path on: ``n`` pseudo-requests over the
    catalog (or ``universe``) that never use a held-out movie (:func:`is_heldout`) as target or anchor."""
    movies = truth.ids if universe is None else np.asarray(universe, dtype=np.int64)
    keep = movies[~heldout_mask(movies, fraction)]
    gen = RequestGenerator(truth, keep, anchors=keep.tolist(), min_satisfying=1)
    for r in gen.generate(n, seed, keep.tolist(), allowed_anchor=lambda a: not is_heldout(a, fraction)):
        yield r.text, r.target


def user_conversations(ratings: pl.DataFrame, truth: MovieTruth, n: int, seed: int = 0, liked_at: float = 4.0,
                       fraction: float = HELDOUT_FRACTION) -> Iterator[tuple[str, int]]:
    """MovieLens users as pseudo-conversations: ("I liked A, B and C.", another movie the user liked), ``n`` of
    them, held-out movies never named nor targeted. ``ratings`` has user_id, movie_id (catalog ids), rating."""
    rng = random.Random(seed)
    liked = ratings.filter(pl.col("rating") >= liked_at).select("user_id", "movie_id")
    by_user: dict[int, list[int]] = {}
    for u, m in liked.iter_rows():
        if not is_heldout(m, fraction) and int(truth.position([m])[0]) >= 0:
            by_user.setdefault(u, []).append(m)
    users = sorted(u for u, ms in by_user.items() if len(ms) >= 2)
    for _ in range(n if users else 0):
        ms = by_user[rng.choice(users)]
        picked = rng.sample(ms, min(len(ms), rng.randint(2, 4)))
        named, target = picked[:-1], picked[-1]
        titles = [truth.label(m) if rng.random() < 0.5 else truth.titles[m][0] for m in named]
        said = titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]
        yield rng.choice(("I liked {}.", "I loved {}, what else?", "My favorites are {}.",
                          "I enjoyed {}. Any suggestions?")).format(said), target
