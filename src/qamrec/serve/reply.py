"""The system's answer in words: what a good human recommender would say beside the movies.

No generative language model ships offline here, so a reply is put together from what we have:

1. an **acknowledgement** of what the person just said or did ("Got it, no more horror.", "Glad you liked
   Heat (1995).", "Sure, more 90s crime film.");
2. either a **recommendation**: the utterance of a human recommender (ReDial, INSPIRED) whose conversation was
   closest to this one (:class:`~qamrec.serve.reply_index.ReplyIndex`), its movie slots filled with our top
   movies (:func:`~qamrec.serve.phrasing.fill`), followed by a **reason grounded in the catalog**: what the movie
   shares with a movie the person named or liked ("It's also directed by Steven Soderbergh, like Ocean's Eleven
   (2001)."), the kind or people they asked for, its director and cast, and the first sentence of its plot;
3. or, when the request is vague (nothing understood, a few words) or the scores are flat, a **clarifying
   question** built from the two best refinement suggestions ("More of a 90s crime film, or something with
   Keanu Reeves?"), after the best movie so far.

Every fact a reply states is a :class:`~qamrec.serve.facts.Claim` in :attr:`Reply.claims`, checked by
:class:`~qamrec.serve.faithfulness.FactChecker`. Within a conversation a reply does not reuse an earlier reply's
template or name a movie an earlier reply named (while others are left), and varies its wording.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qamrec.serve.conversation import Conversation, Event
from qamrec.serve.facts import CatalogFacts, Claim, MovieCard, genre_key
from qamrec.serve.phrasing import fill, join_names, phrase_words, pick
from qamrec.serve.reply_index import SLOT, ReplyIndex

__all__ = ["Reply", "ReplyBuilder", "FALLBACK_TEMPLATES", "GREETINGS"]

#: when no retrieved template fits the movies
FALLBACK_TEMPLATES = ("How about <movie>?", "You might like <movie>.", "Have you seen <movie>?",
                      "I'd suggest <movie>.", "Try <movie>.", "I think you would enjoy <movie>.")
#: the opening of a conversation (the benchmark's first recommender turns, before the person said anything)
GREETINGS = ("Hi! What kind of movies do you like?", "Hello! What type of movies are you in the mood for?",
             "Hi there, what kind of movie are you looking for?")
#: genre names as a reply says them
_SAY_GENRE = {"children": "family", "film-noir": "film noir", "sci-fi": "sci-fi", "imax": ""}
_WORD = re.compile(r"[a-z']+")


def say_genre(genre: str) -> str:
    g = genre_key(genre)
    return _SAY_GENRE.get(g, g)


@dataclass
class Reply:
    """A reply: ``text`` as shown; ``slotted`` with every movie it names as ``<movie>`` (what the conversation
    metrics read); the ``claims`` it states; ``kind`` (recommend, clarify or greet); the ``template`` it used;
    the ``movies`` it recommends by name."""

    text: str
    slotted: str
    claims: list[Claim] = field(default_factory=list)
    kind: str = "recommend"
    template: str = ""
    movies: tuple[int, ...] = ()

    def detail(self) -> dict[str, Any]:
        """What the session store keeps beside the text (to vary later replies)."""
        return {"kind": self.kind, "template": self.template, "movies": list(self.movies)}


class _Text:
    """Sentences whose movie mentions render as titles (``text``) or as slots (``slotted``)."""

    def __init__(self) -> None:
        self.parts: list[str | MovieCard] = []

    def add(self, *parts: str | MovieCard) -> None:
        if self.parts and parts:
            self.parts.append(" ")
        self.parts.extend(parts)

    def render(self, slot: bool) -> str:
        out = "".join((SLOT if slot else p.label) if isinstance(p, MovieCard) else p for p in self.parts)
        return " ".join(out.split())


def _say(text: _Text, pattern: str, **values: str | MovieCard) -> None:
    """Append ``pattern`` with ``{name}`` fields; a MovieCard value stays a movie mention."""
    parts: list[str | MovieCard] = []
    for i, chunk in enumerate(re.split(r"\{(\w+)\}", pattern)):
        if i % 2 == 0:
            if chunk:
                parts.append(chunk)
        else:
            parts.append(values[chunk])
    text.add(*parts)


class ReplyBuilder:
    """Builds :class:`Reply` objects for an engine's answers.

    Args:
        index: recommender utterances to retrieve templates from.
        facts: the cards of the movies the engine may recommend.
        kinds: refinement word label (lower case) -> its kind (genre, tag, decade, director, starring ...).
        flat: top-10 score spread (standardized units) below which the scores count as flat.
        vague_words: a first message of at most this many words that says nothing understood is vague.
    """

    def __init__(self, index: ReplyIndex, facts: CatalogFacts, kinds: dict[str, str] | None = None,
                 flat: float = 0.3, vague_words: int = 6, candidates: int = 40) -> None:
        self.index, self.facts, self.kinds = index, facts, kinds or {}
        self.flat, self.vague_words, self.candidates = flat, vague_words, candidates

    @classmethod
    def for_engine(cls, engine: Any, config: Any, exclude: Any = None) -> ReplyBuilder:
        """The builder of a loaded :class:`~qamrec.serve.engine.Engine`: the utterances of ReDial's and
        INSPIRED's training dialogues present in the data home (less those ``exclude(dialogue id)`` names), their
        contexts embedded with the run's text model (cached), and the catalog cards of the engine's movies."""
        from qamrec.data.prepare import load_table
        from qamrec.features.pipeline import text_function
        from qamrec.serve.reply_index import inspired_dialogues, redial_dialogues, utterances

        raw = Path(config.raw_dir)
        items = []
        if (raw / "redial" / "raw").is_dir() or (raw / "redial" / "train_extra").is_dir():
            items += utterances(redial_dialogues(raw), "redial", exclude)
        if (raw / "inspired" / "unicrs" / "train_data_dbpedia.jsonl").is_file():
            items += utterances(inspired_dialogues(raw), "inspired", exclude)
        limit = int(getattr(getattr(config, "serve", None), "reply_templates", 0) or 0)
        if limit and len(items) > limit:  # an even spread over the sources (tests keep the index small)
            step = len(items) / limit
            items = [items[int(i * step)] for i in range(limit)]
        encode = text_function(config)
        index = ReplyIndex.build(items, encode, Path(config.cache_dir) / "replies", getattr(encode, "model_name", ""))
        movies = load_table(config.prepared_dir, "catalog", "movies")
        import polars as pl

        movies = movies.filter(pl.col("movie_id").is_in(list(engine.info)))
        facts = CatalogFacts(movies, {m: i["title"] for m, i in engine.info.items()})
        kinds = {lab.lower(): k for lab, k in zip(engine.words.labels, engine.words.kinds)}
        return cls(index, facts, kinds)

    @classmethod
    def minimal(cls, engine: Any) -> ReplyBuilder:
        """A builder from the engine's own facts (titles, years, genres and people) and no retrieved templates."""
        import polars as pl

        rows = [{"movie_id": m, "title": i["title"], "year": i["year"], "genres": list(i["genres"]),
                 "director": [], "cast": list(engine.people.get(m, []))[:0], "plot": None}
                for m, i in engine.info.items()]
        schema = {"movie_id": pl.Int64, "title": pl.String, "year": pl.Int32, "genres": pl.List(pl.String),
                  "director": pl.List(pl.String), "cast": pl.List(pl.String), "plot": pl.String}
        facts = CatalogFacts(pl.DataFrame(rows, schema=schema))
        kinds = {lab.lower(): k for lab, k in zip(engine.words.labels, engine.words.kinds)}
        return cls(ReplyIndex([], np.zeros((0, 1), np.float32)), facts, kinds)

    # ------------------------------------------------------------------ the parts
    def _cards(self, movies: Sequence[dict[str, Any]], conv: Conversation) -> list[MovieCard]:
        cards = [c for m in movies if (c := self.facts.card(int(m["id"]))) is not None]
        fresh = [c for c in cards if c.id not in conv.named]
        return fresh if fresh else cards

    def _ack(self, out: _Text, claims: list[Claim], event: Event, understood: Any, seed: str, heard: str) -> None:
        if event.kind == "movie" and event.movie is not None:
            card = self.facts.card(event.movie)
            if card is None:
                return
            options = {"liked": ("Glad you liked {m}.", "Great, more like {m} then.", "Noted: you liked {m}."),
                       "disliked": ("Got it, not {m}.", "Okay, no more like {m}.", "Fair enough, {m} is out."),
                       "seen": ("You've seen {m} already, so here is something else.",
                                "Since you've seen {m}, let's look further.")}.get(event.value, ())
            if options:
                _say(out, pick(options, seed, heard), m=card)
                claims += [Claim(card.id, "title", card.title)] + ([Claim(card.id, "year", str(card.year))]
                                                                   if card.year else [])
            return
        if event.kind == "suggestion" and event.words:
            phrase = phrase_words([(w, self.kinds.get(w.lower(), "tag")) for w in event.words])
            if event.value == "accepted":
                _say(out, pick(("Sure, more {p}.", "Good call: {p} it is.", "Okay, {p}."), seed, heard), p=phrase)
            else:
                _say(out, pick(("Got it, no more {p}.", "Okay, less {p}.", "Fine, something other than {p}."),
                               seed, heard), p=phrase)
            return
        if understood is None:
            return
        if understood.excluded:
            _say(out, pick(("Got it, no more {x}.", "Okay, no {x}.", "Sure, nothing {x}."), seed, heard),
                 x=join_names([x.lower() for x in understood.excluded]))
        for m, _ in understood.disliked[:1]:
            card = self.facts.card(m)
            if card is not None:
                _say(out, pick(("Got it, not {m}.", "Okay, nothing like {m}."), seed, heard), m=card)
                claims += [Claim(card.id, "title", card.title)]
                claims += [Claim(card.id, "year", str(card.year))] if card.year else []

    def _reason(self, out: _Text, claims: list[Claim], card: MovieCard, context: Sequence[int], understood: Any,
                seed: str, heard: str) -> None:
        """One grounded sentence on ``card``, then the first sentence of its plot."""
        shared = self.facts.shared(card.id, context)
        said = False
        if shared:
            fieldname, value, other_id = shared[0]
            other = self.facts.card(other_id)
            assert other is not None
            if fieldname == "director":
                _say(out, pick(("It's also directed by {v}, like {o}.", "Like {o}, it was directed by {v}."),
                               seed, heard), v=value, o=other)
            elif fieldname == "cast":
                both = [c for f, c, o in shared if f == "cast" and o == other_id][:2]
                _say(out, pick(("Like {o}, it stars {v}.", "It also has {v}, as in {o}."), seed, heard),
                     v=join_names(both), o=other)
                claims += [Claim(card.id, "cast", c) for c in both[1:]] + [Claim(other.id, "cast", c)
                                                                            for c in both[1:]]
            else:
                genres = [g for f, g, o in shared if f == "genre" and o == other_id and say_genre(g)][:2]
                if not genres:
                    genres = [value]
                _say(out, pick(("Another {v} film, like {o}.", "It's {v} too, like {o}."), seed, heard),
                     v=" ".join(say_genre(g) for g in genres), o=other)
                claims += [Claim(card.id, "genre", g) for g in genres[1:]] + [Claim(other.id, "genre", g)
                                                                              for g in genres[1:]]
            claims += [Claim(card.id, fieldname, value), Claim(other.id, fieldname, value),  # type: ignore[arg-type]
                       Claim(other.id, "title", other.title)]
            claims += [Claim(other.id, "year", str(other.year))] if other.year else []
            said = True
        if not said and understood is not None:
            genres = [g for g in card.genres if say_genre(g) and any(genre_key(g) == genre_key(w)
                                                                    for w in understood.genres)][:2]
            people = [p for p in understood.people if p in card.directors or p in card.cast][:2]
            if genres or people:
                bits = []
                if genres:
                    bits.append(f"a {' '.join(say_genre(g) for g in genres)} film")
                    claims += [Claim(card.id, "genre", g) for g in genres]
                for p in people:
                    field_ = "director" if p in card.directors else "cast"
                    bits.append(f"directed by {p}" if field_ == "director" else f"with {p}")
                    claims.append(Claim(card.id, field_, p))  # type: ignore[arg-type]
                _say(out, pick(("It's {b}, as you asked.", "Just what you asked for: {b}."), seed, heard),
                     b=" ".join(bits))
                said = True
        if not said and (card.directors or card.cast):
            if card.directors and len(card.cast) >= 2:
                _say(out, pick(("{d} directed it, with {c}.", "It's directed by {d} and stars {c}."), seed, heard),
                     d=card.directors[0], c=join_names(card.cast[:2]))
                claims += [Claim(card.id, "director", card.directors[0])]
                claims += [Claim(card.id, "cast", c) for c in card.cast[:2]]
            elif card.directors:
                _say(out, "It's directed by {d}.", d=card.directors[0])
                claims.append(Claim(card.id, "director", card.directors[0]))
            else:
                _say(out, "It stars {c}.", c=join_names(card.cast[:2]))
                claims += [Claim(card.id, "cast", c) for c in card.cast[:2]]
        if card.plot and card.plot not in heard:
            out.add(card.plot)
            claims.append(Claim(card.id, "plot", card.plot))

    def _vague(self, conv: Conversation, event: Event, understood: Any, movies: Sequence[dict[str, Any]]) -> bool:
        if event.kind != "message" or conv.asked:
            return False
        scores = [float(m["score"]) for m in movies[:10]]
        flat = len(scores) >= 2 and scores[0] - scores[-1] < self.flat
        few = len(_WORD.findall(event.text.lower())) <= self.vague_words and len(conv.messages) <= 1
        return flat or (few and not understood)

    def _question(self, suggestions: Sequence[Any], seed: str, heard: str) -> str | None:
        phrases = []
        for s in suggestions:
            words = list(getattr(s, "labels", None) or s.get("words", ()))
            p = phrase_words([(w, self.kinds.get(w.lower(), "tag")) for w in words])
            if p and p not in phrases and p not in ("something", "film"):
                phrases.append(p)
            if len(phrases) == 2:
                break
        if len(phrases) < 2:
            return None
        a, b = phrases
        art = "an" if a[:1].lower() in "aeiou8" else "a"
        return pick((f"More of {art} {a}, or {b if b.startswith(('something', 'film')) else 'a ' + b}?",
                     f"Are you in the mood for {art} {a}, or rather {'a ' if not b.startswith('something') else ''}{b}?",
                     f"To narrow it down: {art} {a}, or {'a ' if not b.startswith('something') else ''}{b}?"),
                    seed, heard)

    # ------------------------------------------------------------------ the reply
    def reply(self, movies: Sequence[dict[str, Any]], conv: Conversation, event: Event,
              query: np.ndarray | None = None, understood: Any = None, suggestions: Sequence[Any] = (),
              context_movies: Sequence[int] = ()) -> Reply:
        """The reply to ``event`` in ``conv``, given the engine's answer (``movies`` as the engine returns them,
        ``understood``, ``suggestions``) and ``query``, the embedding of the conversation as the engine read it.
        ``context_movies``: movies the person named or liked (for shared facts)."""
        seed = f"{conv.seed}:{len(conv.replies)}"
        heard = conv.heard
        out, claims = _Text(), []
        if not conv.messages and event.kind == "message" and not event.text.strip():
            text = pick(GREETINGS, seed, heard)
            return Reply(text, text, [], "greet")
        self._ack(out, claims, event, understood, seed, heard)
        cards = self._cards(movies, conv)
        if not cards:
            text = out.render(False) or "I could not find a movie for that yet. What else do you like?"
            return Reply(text, out.render(True) or text, claims, "clarify")
        template, filled = "", None
        if query is not None and len(self.index):
            used = conv.templates
            for u, _ in self.index.nearest(query, self.candidates):
                if u.template in used:
                    continue
                filled = fill(u.template, cards)
                if filled is not None:
                    template = u.template
                    break
        if filled is None:
            template = pick(FALLBACK_TEMPLATES, seed, heard)
            filled = fill(template, cards)
            assert filled is not None
        n = template.count(SLOT)
        named = cards[:n]
        # the template as parts, so its movies render as titles or as slots
        pieces = template.split(SLOT)
        parts: list[str | MovieCard] = [pieces[0]]
        for c, p in zip(named, pieces[1:]):
            parts += [c, p]
        out.add(*parts)
        claims += filled[1]
        context = list(dict.fromkeys([*context_movies, *conv.liked]))
        self._reason(out, claims, named[0], context, understood, seed, heard)
        kind = "recommend"
        if self._vague(conv, event, understood, movies):
            q = self._question(suggestions, seed, heard)
            if q:
                out.add(q)
                kind = "clarify"
        return Reply(out.render(False), out.render(True), claims, kind, template, tuple(c.id for c in named))
