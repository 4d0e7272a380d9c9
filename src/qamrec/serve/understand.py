"""Understanding a request: the titles, kinds of movies, years and people a person's free text names.

:class:`RequestParser` turns "a mind-bending thriller like Inception, nothing gory, from the 2000s" into an
:class:`Understanding`: anchors (Inception), wanted kinds (thriller, mind-bending), unwanted ones (gore) and
years (2000-2009). Titles need a cue ("like", "loved", "similar to", "seen", "hated" ...), quotes, or a year
after them, and a good fuzzy score; one common word ("it", "up", "her") is a title only when capitalized. A
negation ("no", "nothing", "without", "anything but" ...) covers the terms that follow it, joined by "or",
"and" or commas, and ends at the first word that is neither a term nor a filler ("not action heavy, more
thoughtful" negates action only). How the engine applies an understanding to its scores:
:mod:`qamrec.serve.constraints`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qamrec.data.schema import normalize_title
from qamrec.serve.titles import TitleIndex
from qamrec.serve.vocab import (
    COMMON_WORDS,
    CONCEPTS,
    LIKED_AFTER_SEEN,
    NEGATION_CUES,
    NOT_A_CUE_BEFORE,
    PERSON_CUES,
    SCOPE_FILLER,
    SCOPE_JOIN,
    SCOPE_TAIL,
    TITLE_CUES,
    Concept,
    concept_phrases,
)
from qamrec.serve.years import YearRange, find_years

__all__ = ["RequestParser", "Understanding", "YearRange", "person_key"]

_OPEN, _CLOSE = "\"“(", "\"”),;!?.:"
_QUOTES = "\"“”"
_SMALL = frozenset("a an and as at by de du for from in into la le of on or the to vs with".split())
_LIKED_AFTER = {p: True for p in LIKED_AFTER_SEEN}
#: words whose full stop is their own ("Samuel L. Jackson", "Robert Downey Jr.", "Mr. Smith")
_ABBREVIATIONS = frozenset("jr sr dr mr mrs ms st vs".split())


def person_key(name: str) -> str:
    """A matching key for a person's name: lower-case ASCII words ("Penélope Cruz" -> "penelope cruz")."""
    t = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    return " ".join(re.findall(r"[a-z0-9]+", t))


@dataclass(frozen=True)
class _Tok:
    text: str
    start: int
    end: int

    @property
    def low(self) -> str:
        return self.text.lower().replace("’", "'")

    @property
    def word(self) -> bool:
        return self.text not in _OPEN + _CLOSE + "”"


def _tokens(text: str) -> list[_Tok]:
    """Words with their offsets; leading quotes / brackets and trailing punctuation become tokens of their own."""
    out: list[_Tok] = []
    for m in re.finditer(r"\S+", text):
        s, e = m.start(), m.end()
        head: list[_Tok] = []
        tail: list[_Tok] = []
        while s < e and text[s] in _OPEN + "'":
            head.append(_Tok(text[s], s, s + 1))
            s += 1
        while e > s and (text[e - 1] in _CLOSE or (text[e - 1] == "'" and head and head[-1].text == "'")):
            word = text[s:e - 1]
            if text[e - 1] == "." and (len(word) == 1 and word.isalpha() or word.lower() in _ABBREVIATIONS):
                break  # an initial or an abbreviation keeps its full stop
            tail.insert(0, _Tok(text[e - 1], e - 1, e))
            e -= 1
        out += head + ([_Tok(text[s:e], s, e)] if e > s else []) + tail
    return out


@dataclass
class _Mention:
    kind: str  # concept | years | person
    start: int  # token range
    end: int
    value: Any
    negated: bool = False


@dataclass
class Understanding:
    """What a request says beyond its words' embedding.

    ``anchors`` (liked, "like X"), ``seen`` and ``disliked`` are (movie id, "Title (year)"); ``genres`` and
    ``excluded`` concept labels; ``years`` / ``excluded_years`` ranges; ``people`` / ``excluded_people`` names.
    ``text`` is the request as the encoder should read it: without what it rules out and without the titles
    already seen or disliked (an embedding cannot tell "no romance" from "romance").
    """

    text: str
    anchors: list[tuple[int, str]] = field(default_factory=list)
    seen: list[tuple[int, str]] = field(default_factory=list)
    disliked: list[tuple[int, str]] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    years: list[YearRange] = field(default_factory=list)
    excluded_years: list[YearRange] = field(default_factory=list)
    people: list[str] = field(default_factory=list)
    excluded_people: list[str] = field(default_factory=list)

    @property
    def named(self) -> set[int]:
        """Every movie the request names: not to be recommended back."""
        return {m for m, _ in self.anchors + self.seen + self.disliked}

    def __bool__(self) -> bool:
        return bool(self.named or self.genres or self.excluded or self.years or self.excluded_years
                    or self.people or self.excluded_people)

    @property
    def summary(self) -> str:
        """One line: "like Inception · 1950s · not romance" (empty when nothing was understood)."""
        parts = [f"like {t}" for _, t in self.anchors] + [f"seen {t}" for _, t in self.seen]
        parts += [f"not like {t}" for _, t in self.disliked] + self.genres + [y.label for y in self.years]
        parts += [f"with {p}" for p in self.people] + [f"not {x}" for x in self.excluded]
        parts += [f"not {y.label}" for y in self.excluded_years] + [f"not with {p}" for p in self.excluded_people]
        return " · ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: movies as {id, title}, year ranges as {label, start, end, hard}, and the summary."""
        def movies(xs: list[tuple[int, str]]) -> list[dict[str, Any]]:
            return [{"id": m, "title": t} for m, t in xs]

        return {"anchors": movies(self.anchors), "seen": movies(self.seen), "disliked": movies(self.disliked),
                "genres": list(self.genres), "excluded": list(self.excluded),
                "years": [y.as_dict() for y in self.years],
                "excluded_years": [y.as_dict() for y in self.excluded_years],
                "people": list(self.people), "excluded_people": list(self.excluded_people),
                "summary": self.summary}


class RequestParser:
    """Finds titles, concepts, years and people in a request.

    Args:
        titles: the engine's title index (movies that can be named).
        people: person key (:func:`person_key`) -> (shown name, number of movies); full names match anywhere,
            a lone surname after "by", "with", "starring" ... when capitalized.
        latest_year: the catalog's latest year ("recent" is its last few years).
        concepts: the kinds of movies known.
        min_score: the least ``fuzz.ratio`` of a fuzzy title match.
    """

    def __init__(self, titles: TitleIndex, people: Mapping[str, tuple[str, int]] | None = None,
                 latest_year: int = 2020, concepts: tuple[Concept, ...] = CONCEPTS, min_score: float = 90.0) -> None:
        self.titles, self.latest_year, self.min_score = titles, latest_year, min_score
        self.people = dict(people or {})
        self.phrases = concept_phrases(concepts)
        self._max_phrase = max(map(len, self.phrases), default=1)
        self._concept_words = {w for p in self.phrases for w in p}
        surnames: dict[str, tuple[str, int]] = {}
        for key, (_, n) in self.people.items():
            parts = key.split()
            if len(parts) >= 2 and len(parts[-1]) >= 4 and n > surnames.get(parts[-1], ("", -1))[1]:
                surnames[parts[-1]] = (key, n)
        self.surnames = {s: k for s, (k, _) in surnames.items()}
        self._max_name = max((len(k.split()) for k in self.people), default=0)

    # ------------------------------------------------------------------ titles
    def _title_cased(self, toks: list[_Tok]) -> bool:
        words = [t for t in toks if t.word and re.search(r"[A-Za-z0-9]", t.text)]
        if not words or not (words[0].text[0].isupper() or words[0].text[0].isdigit()):
            return False
        return all(w.text[0].isupper() or w.text[0].isdigit() or w.low in _SMALL or not w.text[0].isalpha()
                   for w in words)

    def _plausible(self, key: str, cased: bool, marked: bool) -> bool:
        """Whether an exact title match is a title here, not a common word ("like it")."""
        words = key.split()
        if marked:
            return True
        if len(words) == 1 and (words[0] in self._concept_words or words[0] in COMMON_WORDS and not cased):
            return False
        if cased:
            return True
        if len(words) >= 2:
            return not all(w in COMMON_WORDS or w in self._concept_words for w in words)
        return len(key) >= 6

    def _year_after(self, toks: list[_Tok], j: int) -> tuple[int | None, int]:
        """A year right after token ``j`` ("(1999)" or "1999"): (year, index after it)."""
        if j < len(toks) and toks[j].text == "(" and j + 2 < len(toks) and toks[j + 2].text == ")" \
                and re.fullmatch(r"(19|20)\d\d", toks[j + 1].text):
            return int(toks[j + 1].text), j + 3
        if j < len(toks) and re.fullmatch(r"(19|20)\d\d", toks[j].text):
            return int(toks[j].text), j + 1
        return None, j

    def _title_at(self, text: str, toks: list[_Tok], i: int, marked: bool = False, stop: int | None = None,
                  ) -> tuple[int, int] | None:
        """The movie a title starting at token ``i`` names and the index after it (and its year), or None.
        The longest exact match wins; else the best fuzzy match of a capitalized, quoted or dated span."""
        n = min(len(toks), stop if stop is not None else i + 10)
        spans: list[tuple[int, str, str, bool, int | None, int]] = []  # (end, raw, key, cased, year, after)
        for j in range(n, i, -1):
            span = toks[i:j]
            if not span[-1].word or not span[0].word or any(t.text in _QUOTES for t in span):
                continue
            raw = text[span[0].start:span[-1].end]
            key = normalize_title(raw)
            if key:
                spans.append((j, raw, key, self._title_cased(span), *self._year_after(toks, j)))
        for j, raw, key, cased, year, after in spans:  # exact titles first (a dictionary look-up each)
            if key in self.titles.by_key and self._plausible(key, cased, marked or year is not None):
                hit = self.titles.lookup(raw, year, min_score=0)
                if hit is not None:
                    return hit[0], after
        fuzzy: list[tuple[float, int, int, int]] = []
        for j, raw, key, cased, year, after in spans:
            fuzzy_ok = cased or marked or year is not None or (len(key) >= 8 and " " in key)
            if fuzzy_ok and len(key) >= 6 and key not in self.titles.by_key and self._plausible(key, cased, marked):
                hit = self.titles.lookup(raw, year, self.min_score)
                if hit is not None:
                    fuzzy.append((hit[1], j - i, hit[0], after))
        if fuzzy:
            _, _, m, after = max(fuzzy)
            return m, after
        return None

    def _cue(self, toks: list[_Tok], i: int, table: Mapping[tuple[str, ...], Any]) -> tuple[Any, int] | None:
        """The longest cue phrase of ``table`` at token ``i``: (its value, index after it)."""
        for n in (5, 4, 3, 2, 1):
            key = tuple(t.low for t in toks[i:i + n])
            if len(key) == n and key in table:
                return table[key], i + n
        return None

    def _find_titles(self, text: str, toks: list[_Tok], used: list[bool],
                     ) -> list[tuple[str, int, int, int]]:
        """(role, movie, first token, end token) of each title named, the cue included in the range."""
        found: list[tuple[str, int, int, int]] = []
        i = 0
        while i < len(toks):
            cue = self._cue(toks, i, TITLE_CUES)
            if cue is None or (cue[0] in ("like", "seen") and i > 0 and toks[i - 1].low in NOT_A_CUE_BEFORE):
                i += 1
                continue
            role, j = cue
            if toks[i].text[:1].isupper() and (own := self._title_at(text, toks, i)) is not None and own[1] > j:
                i += 1  # the cue starts a title: "No Country for Old Men", "Love Actually"
                continue
            start, got = i, False
            while j < len(toks):
                k = j
                while k < len(toks) and toks[k].low in ("the", "movie", "film", "movies", "films") \
                        and k - j < 2 and not got:
                    k += 1
                quoted = k < len(toks) and toks[k].text in "\"“"
                if quoted:
                    close = next((q for q in range(k + 1, len(toks)) if toks[q].text in _QUOTES), None)
                    hit = self._title_at(text, toks, k + 1, True, close) if close else None
                    hit = (hit[0], close + 1) if hit and close is not None else None
                else:
                    hit = self._title_at(text, toks, k)
                    if hit is None and k != j:
                        hit = self._title_at(text, toks, j)
                if hit is None:
                    break
                said, end = role, hit[1]
                if role == "seen" and (after := self._cue(toks, end, _LIKED_AFTER)):
                    said, end = "like", after[1]  # "I watched Heat and loved it": liked, not only seen
                found.append((said, hit[0], start, end))
                got, j = True, end
                nxt = j
                while nxt < len(toks) and toks[nxt].low in (",", "and", "or", "&", "also", "?", "!"):
                    nxt += 1
                if nxt == j or nxt >= len(toks):
                    break
                start, j = nxt, nxt
            i = max(j, i + 1) if got else i + 1
        found += self._loose_titles(text, toks, found)
        for _, _, s, e in found:
            used[s:e] = [True] * (e - s)
        return found

    def _loose_titles(self, text: str, toks: list[_Tok], found: list[tuple[str, int, int, int]],
                      ) -> list[tuple[str, int, int, int]]:
        """Titles without a cue: in quotes, or capitalized with a year after them ("The Matrix (1999)")."""
        taken = [False] * len(toks)
        for _, _, s, e in found:
            taken[s:e] = [True] * (e - s)
        out: list[tuple[str, int, int, int]] = []
        for i, t in enumerate(toks):
            if taken[i]:
                continue
            if t.text in "\"“":
                close = next((q for q in range(i + 1, len(toks)) if toks[q].text in _QUOTES), None)
                hit = self._title_at(text, toks, i + 1, True, close) if close else None
                if hit is not None and close is not None:
                    out.append(("like", hit[0], i, close + 1))
                    taken[i:close + 1] = [True] * (close + 1 - i)
            elif re.fullmatch(r"(19|20)\d\d", t.text) and i > 0 and toks[i - 1].text == "(":
                for s in range(max(0, i - 9), i - 1):
                    if any(taken[s:i]) or not self._title_cased(toks[s:i - 1]):
                        continue
                    hit = self._title_at(text, toks, s, False, i - 1)
                    if hit is not None and hit[1] > i:
                        out.append(("like", hit[0], s, hit[1]))
                        taken[s:hit[1]] = [True] * (hit[1] - s)
                        break
        return out

    # ------------------------------------------------------------------ concepts, years, people
    def _find_terms(self, text: str, toks: list[_Tok], used: list[bool]) -> list[_Mention]:
        out: list[_Mention] = []
        for y, s, e in find_years(text, self.latest_year):
            a = next((i for i, t in enumerate(toks) if t.end > s), len(toks))
            b = next((i for i, t in enumerate(toks) if t.start >= e), len(toks))
            if a < b and not any(used[a:b]):
                out.append(_Mention("years", a, b, y))
                used[a:b] = [True] * (b - a)
        lows = [re.sub(r"'s$", "", t.low) for t in toks]
        i = 0
        while i < len(toks):
            hit = None
            for n in range(min(self._max_name, 4), 1, -1):  # full names of people
                if i + n <= len(toks) and not any(used[i:i + n]) and all(t.word for t in toks[i:i + n]):
                    key = person_key(" ".join(lows[i:i + n]))
                    if key in self.people:
                        hit = _Mention("person", i, i + n, self.people[key][0])
                        break
            if hit is None and not used[i] and i > 0 and lows[i - 1] in PERSON_CUES and toks[i].text[:1].isupper() \
                    and lows[i] not in COMMON_WORDS and (key := self.surnames.get(person_key(lows[i]))):
                hit = _Mention("person", i, i + 1, self.people[key][0])
            if hit is None:
                for n in range(self._max_phrase, 0, -1):
                    if i + n <= len(toks) and not any(used[i:i + n]) and tuple(lows[i:i + n]) in self.phrases:
                        hit = _Mention("concept", i, i + n, self.phrases[tuple(lows[i:i + n])])
                        break
            if hit is not None:
                out.append(hit)
                used[hit.start:hit.end] = [True] * (hit.end - hit.start)
                i = hit.end
            else:
                i += 1
        return sorted(out, key=lambda m: m.start)

    def _negate(self, toks: list[_Tok], terms: list[_Mention], titles: list[tuple[str, int, int, int]],
                ) -> list[tuple[int, int]]:
        """Mark the terms each negation covers; returns the token ranges of the negations (cue to last term)."""
        at = {m.start: m for m in terms}
        in_title = set()
        for _, _, s, e in titles:
            in_title.update(range(s, e))
        spans: list[tuple[int, int]] = []
        i = 0
        while i < len(toks):
            cue = None if i in in_title else self._cue(toks, i, {c: True for c in NEGATION_CUES})
            if cue is None:
                i += 1
                continue
            j, skipped = cue[1], 0
            while j < len(toks) and j not in at and toks[j].low in SCOPE_FILLER and skipped < 4:
                j, skipped = j + 1, skipped + 1
            last = None
            while j in at:
                m = at[j]
                m.negated, last, j = True, m.end, m.end
                while j < len(toks) and toks[j].low in SCOPE_TAIL:
                    j += 1
                last = j
                k = j
                while k < len(toks) and toks[k].low in SCOPE_JOIN and k - j < 3:
                    k += 1
                joins = {t.low for t in toks[j:k]}
                # "no horror, gore or romance": a list of one kind, or anything joined by or / nor
                if k == j or k not in at or not (joins & {"or", "nor"} or at[k].kind == m.kind):
                    break
                j = k
            if last is not None:
                spans.append((i, last))
                i = last
            else:
                i += 1
        return spans

    # ------------------------------------------------------------------ the parse
    def parse(self, text: str) -> Understanding:
        """The :class:`Understanding` of one request (or of a conversation's text)."""
        toks = _tokens(text)
        used = [False] * len(toks)
        titles = self._find_titles(text, toks, used)
        terms = self._find_terms(text, toks, used)
        negations = self._negate(toks, terms, titles)
        u = Understanding(text)
        seen_ids: set[int] = set()
        for role, m, _, _ in titles:
            if m not in seen_ids:
                seen_ids.add(m)
                {"like": u.anchors, "seen": u.seen, "disliked": u.disliked}[role].append((m, self.titles.label(m)))
        for t in terms:
            if t.kind == "concept":
                lst = u.excluded if t.negated else u.genres
                if t.value.label not in lst:
                    lst.append(t.value.label)
            elif t.kind == "years":
                lst_y = u.excluded_years if t.negated else u.years
                if t.value not in lst_y:
                    lst_y.append(t.value)
            else:
                lst = u.excluded_people if t.negated else u.people
                if t.value not in lst:
                    lst.append(t.value)
        u.genres = [g for g in u.genres if g not in u.excluded]
        drop = [(s, e) for r, _, s, e in titles if r != "like"] + negations
        u.text = _without(text, toks, drop)
        return u


def _without(text: str, toks: list[_Tok], spans: list[tuple[int, int]]) -> str:
    """``text`` without the token ranges ``spans``; "movie" when nothing is left."""
    if not spans:
        return text
    cut = sorted((toks[s].start, toks[e - 1].end) for s, e in spans if e > s)
    out, pos = [], 0
    for a, b in cut:
        if a >= pos:
            out.append(text[pos:a])
            pos = b
    out.append(text[pos:])
    clean = re.sub(r"\s+([,.;!?])", r"\1", " ".join("".join(out).split()))
    clean = re.sub(r"^[\s,.;!?]+|(?<=[,;])[\s,;]+(?=[,;.!?]|$)", "", clean).strip(" ,;")
    return clean if re.search(r"\w", clean) else "movie"
