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
from qamrec.serve.phrasing import fill, join_names, ordered, phrase_words, pick
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
_QUESTION = re.compile(r"^\W*(?:(?:so|okay|ok|hmm|well|oh|and|or|then|also|but|hey)\W+)?"
                       r"(?:have|has|do|did|does|how|what|would|are|is|can|could|ever|any|wanna|want)\b", re.IGNORECASE)


def _article(phrase: str) -> str:
    """"90s crime film" -> "a 90s crime film", "80s film" -> "an 80s film"; "something ..." stays."""
    if phrase.startswith("something"):
        return phrase
    return ("an " if phrase[:1].lower() in "aeiou8" or phrase.startswith("11") else "a ") + phrase


def _opening(template: str) -> str:
    """A template's first five words, lower case: templates that open alike count as one."""
    return " ".join(_WORD.findall(template.lower().replace(SLOT, " movie "))[:5])


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


def _parts(pattern: str, values: dict[str, str | MovieCard]) -> list[str | MovieCard]:
    parts: list[str | MovieCard] = []
    for i, chunk in enumerate(re.split(r"\{(\w+)\}", pattern)):
        if i % 2 == 0:
            if chunk:
                parts.append(chunk)
        else:
            parts.append(values[chunk])
    return parts


def _say(text: _Text, pattern: str | Sequence[str], seed: str = "", heard: str = "", new_only: bool = False,
         **values: str | MovieCard) -> bool:
    """Append ``pattern`` with its ``{name}`` fields filled (a MovieCard value stays a movie mention); of several
    patterns, the first (in the order ``seed`` gives them) whose sentence the conversation has not heard yet.
    When it has heard them all: the first anyway, or (``new_only``) nothing. Returns whether it said something."""
    options = [pattern] if isinstance(pattern, str) else ordered(pattern, seed)
    low = heard.lower()
    for o in options:
        parts = _parts(o, values)
        said = " ".join("".join(p.label if isinstance(p, MovieCard) else p for p in parts).split()).lower()
        if said not in low:
            text.add(*parts)
            return True
    if new_only:
        return False
    text.add(*_parts(options[0], values))
    return True


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
                 flat: float = 0.3, vague_words: int = 6, candidates: int = 40, plot_always: bool = True) -> None:
        self.index, self.facts, self.kinds = index, facts, kinds or {}
        self.flat, self.vague_words, self.candidates = flat, vague_words, candidates
        #: the plot's first sentence after every reason (else only when there is no other reason)
        self.plot_always = plot_always

    @classmethod
    def for_engine(cls, engine: Any, config: Any, exclude: Any = None) -> ReplyBuilder:
        """The builder of a loaded :class:`~qamrec.serve.engine.Engine`: the utterances of ReDial's and
        INSPIRED's training dialogues present in the data home (less those ``exclude(dialogue id)`` names), their
        contexts embedded with the run's text model (cached), and the catalog cards of the engine's movies."""
        import polars as pl

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
        movies = movies.filter(pl.col("movie_id").is_in(list(engine.info)))
        facts = CatalogFacts(movies, {m: i["title"] for m, i in engine.info.items()})
        kinds = {lab.lower(): k for lab, k in zip(engine.words.labels, engine.words.kinds)}
        return cls(index, facts, kinds)

    @classmethod
    def minimal(cls, engine: Any) -> ReplyBuilder:
        """A builder from the engine's own facts (titles, years and genres: its people do not say who directed
        and who acted) and no retrieved templates: every reply uses :data:`FALLBACK_TEMPLATES`."""
        import polars as pl

        rows = [{"movie_id": m, "title": i["title"], "year": i["year"], "genres": list(i["genres"]),
                 "director": [], "cast": [], "plot": None}
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
                _say(out, options, seed, heard, m=card)
                claims += [Claim(card.id, "title", card.title)] + ([Claim(card.id, "year", str(card.year))]
                                                                   if card.year else [])
            return
        if event.kind == "suggestion" and event.words:
            phrase = phrase_words([(w, self.kinds.get(w.lower(), "tag")) for w in event.words])
            if event.value == "accepted":
                _say(out, ("Sure, more {p}.", "Good call: {p} it is.", "Okay, {p}."), seed, heard, p=phrase)
            else:
                _say(out, ("Got it, no more {p}.", "Okay, less {p}.", "Fine, something other than {p}."),
                     seed, heard, p=phrase)
            return
        if understood is None:
            return
        if understood.excluded:
            _say(out, ("Got it, no more {x}.", "Okay, no {x}.", "Sure, nothing {x}."), seed, heard,
                 x=join_names([x.lower() for x in understood.excluded]))
        for m, _ in understood.disliked[:1]:
            card = self.facts.card(m)
            if card is not None:
                _say(out, ("Got it, not {m}.", "Okay, nothing like {m}."), seed, heard, m=card)
                claims += [Claim(card.id, "title", card.title)]
                claims += [Claim(card.id, "year", str(card.year))] if card.year else []

    def _reason(self, out: _Text, claims: list[Claim], card: MovieCard, context: Sequence[int], understood: Any,
                seed: str, heard: str) -> None:
        """One grounded sentence on ``card`` the conversation has not heard yet: what it shares with a movie of
        the context, else what was asked for that it has, else its director and cast; then the first sentence of
        its plot (with ``plot_always``, else only in place of the director and cast)."""
        said = False
        shared = self.facts.shared(card.id, context)
        if shared:
            fieldname, value, other_id = shared[0]
            other = self.facts.card(other_id)
            assert other is not None
            new: list[Claim] = []
            if fieldname == "director":
                said = _say(out, ("It's also directed by {v}, like {o}.", "Like {o}, it was directed by {v}."), seed,
                            heard, True, v=value, o=other)
                new = [Claim(card.id, "director", value), Claim(other.id, "director", value)]
            elif fieldname == "cast":
                both = [c for f, c, o in shared if f == "cast" and o == other_id][:2]
                said = _say(out, ("Like {o}, it stars {v}.", "It also has {v}, as in {o}."), seed, heard, True,
                            v=join_names(both), o=other)
                new = [Claim(m, "cast", c) for c in both for m in (card.id, other.id)]
            else:
                genres = [g for f, g, o in shared if f == "genre" and o == other_id and say_genre(g)][:2]
                if genres:
                    said = _say(out, ("Another {v} film, like {o}.", "It's a {v} film too, like {o}."), seed, heard,
                                True, v=" ".join(say_genre(g) for g in genres), o=other)
                    new = [Claim(m, "genre", g) for g in genres for m in (card.id, other.id)]
            if said:
                claims += new + [Claim(other.id, "title", other.title)]
                claims += [Claim(other.id, "year", str(other.year))] if other.year else []
        if not said and understood is not None:
            genres = [g for g in card.genres if say_genre(g) and any(genre_key(g) == genre_key(w)
                                                                    for w in understood.genres)][:2]
            people = [p for p in understood.people if p in card.directors or p in card.cast][:2]
            if genres or people:
                bits, new = [], []
                if genres:
                    bits.append(f"a {' '.join(say_genre(g) for g in genres)} film")
                    new += [Claim(card.id, "genre", g) for g in genres]
                for p in people:
                    field_ = "director" if p in card.directors else "cast"
                    bits.append(f"directed by {p}" if field_ == "director" else f"with {p}")
                    new.append(Claim(card.id, field_, p))  # type: ignore[arg-type]
                said = _say(out, ("It's {b}, as you asked.", "Just what you asked for: {b}."), seed, heard, True,
                            b=" ".join(bits))
                claims += new if said else []
        plot = card.plot if card.plot and card.plot not in heard else ""
        if not said and plot and not self.plot_always:
            out.add(plot)
            claims.append(Claim(card.id, "plot", plot))
            return
        if not said and card.directors and len(card.cast) >= 2:
            said = _say(out, ("{d} directed it, with {c}.", "It's directed by {d} and stars {c}."), seed, heard,
                        True, d=card.directors[0], c=join_names(card.cast[:2]))
            claims += ([Claim(card.id, "director", card.directors[0])]
                       + [Claim(card.id, "cast", c) for c in card.cast[:2]]) if said else []
        elif not said and card.directors:
            said = _say(out, "It's directed by {d}.", seed, heard, True, d=card.directors[0])
            claims += [Claim(card.id, "director", card.directors[0])] if said else []
        elif not said and card.cast:
            said = _say(out, "It stars {c}.", seed, heard, True, c=join_names(card.cast[:2]))
            claims += [Claim(card.id, "cast", c) for c in card.cast[:2]] if said else []
        if plot and (self.plot_always or not said):
            out.add(plot)
            claims.append(Claim(card.id, "plot", plot))

    def _vague(self, conv: Conversation, event: Event, understood: Any, movies: Sequence[dict[str, Any]]) -> bool:
        if event.kind != "message" or conv.asked:
            return False
        scores = [float(m["score"]) for m in movies[:10]]
        flat = len(scores) >= 2 and scores[0] - scores[-1] < self.flat
        few = len(_WORD.findall(event.text.lower())) <= self.vague_words and len(conv.messages) <= 1
        return flat or (few and not understood)

    def _question(self, suggestions: Sequence[Any], seed: str, heard: str) -> str | None:
        phrases: list[str] = []
        taken: list[set[str]] = []
        for s in suggestions:
            words = list(getattr(s, "labels", None) or s.get("words", ()))
            key = {w.lower() for w in words}
            if any(key <= t or t <= key for t in taken):  # one within the other: no real choice
                continue
            p = phrase_words([(w, self.kinds.get(w.lower(), "tag")) for w in words])
            if p and p not in phrases and p not in ("something", "film"):
                phrases.append(p)
                taken.append(key)
            if len(phrases) == 2:
                break
        if len(phrases) < 2:
            return None
        a, b = (_article(p) for p in phrases)
        return pick((f"More of {a}, or {b}?", f"Are you in the mood for {a}, or rather {b}?",
                     f"To narrow it down: {a}, or {b}?"), seed, heard)

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
            used = {_opening(t) for t in conv.templates}
            for u, _ in self.index.nearest(query, self.candidates):
                if _opening(u.template) in used:  # the same words as an earlier reply (or nearly)
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
        pieces[0] = pieces[0][:1].upper() + pieces[0][1:]  # "have you seen" starts a sentence of the reply
        parts: list[str | MovieCard] = [pieces[0]]
        for c, p in zip(named, pieces[1:]):
            parts += [c, p]
        if not template.rstrip().endswith((".", "!", "?")):  # end the sentence before the next one
            ask = _QUESTION.match(template.replace(SLOT, "X")) or "have you" in template.lower()
            parts.append("?" if ask else ".")
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
