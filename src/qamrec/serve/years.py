"""Years and decades in a request: "1950s", "from the 80s", "80's", "in 1994", "before 1970", "recent", "old"."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["YearRange", "find_years"]

_WORD_DECADES = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
                 "seventies": 1970, "eighties": 1980, "nineties": 1990}
#: how many of the catalog's last years "recent" covers
RECENT_YEARS = 5


@dataclass(frozen=True)
class YearRange:
    """Release years ``lo``..``hi`` (inclusive; None: open). ``hard``: movies outside are pushed below those
    inside; soft ranges ("classic") only lift the movies inside."""

    lo: int | None
    hi: int | None
    label: str
    hard: bool = True

    def contains(self, year: int | None) -> bool:
        return year is not None and (self.lo is None or year >= self.lo) and (self.hi is None or year <= self.hi)

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "start": self.lo, "end": self.hi, "hard": self.hard}


def _decade(d: str) -> int:
    """"1950" -> 1950, "50" -> 1950, "00" -> 2000, "10" -> 2010, "20" -> 1920."""
    n = int(d)
    if n >= 100:
        return n
    return 2000 + n if n < 20 else 1900 + n


def _decade_range(start: int, part: str | None = None) -> tuple[int, int, str]:
    label = f"{start}s"
    if part == "early":
        return start, start + 4, f"early {label}"
    if part in ("mid", "middle"):
        return start + 3, start + 7, f"mid {label}"
    if part == "late":
        return start + 5, start + 9, f"late {label}"
    return start, start + 9, label


_DEC = r"'?((?:19|20)?\d0)\s?'?s\b"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((k, re.compile(p, re.IGNORECASE)) for k, p in (
    ("between", r"\b(?:between|from)\s+((?:19|20)\d\d)\s*(?:and|to|-|–)\s*((?:19|20)\d\d)\b"),
    ("span", r"\b((?:19|20)\d\d)\s*(?:-|–|to)\s*((?:19|20)\d\d)\b"),
    ("before", r"\b(?:before|pre-?|prior to|older than|earlier than|until|up to)\s*(?:the\s+)?"
               r"(?:((?:19|20)\d\d)\b|" + _DEC + r")"),
    ("after", r"\b(after|post-?|since|newer than|later than)\s*(?:the\s+)?(?:((?:19|20)\d\d)\b|" + _DEC + r")"),
    ("part", r"\b(early|mid|middle|late)[\s-]*(?:the\s+)?" + _DEC),
    ("decade", r"(?<![\w-])(?:the\s+)?" + _DEC),
    ("word", r"\b(?:the\s+)?(twenties|thirties|forties|fifties|sixties|seventies|eighties|nineties)\b"),
    ("year", r"(?<![\w(-])((?:19|20)\d\d)(?![\w)-])"),
    ("recent", r"\b(?:recent|recently released|latest|newer|brand[- ]new|new releases?|new (?:movies?|films?|ones?)"
               r"|modern|current|contemporary|from the last few years)\b"),
    ("old", r"\b(?:old(?:er)?[- ](?:classics?|movies?|films?|ones?|school|hollywood)|oldies?|vintage|golden age"
            r"|black[- ]and[- ]white)\b"),
    ("classic", r"\bclassics?\b"),
))


def find_years(text: str, latest_year: int = 2020) -> list[tuple[YearRange, int, int]]:
    """Every year constraint in ``text`` with its character range, earlier patterns first (no overlaps)."""
    out: list[tuple[YearRange, int, int]] = []
    taken: list[tuple[int, int]] = []

    def free(s: int, e: int) -> bool:
        return all(e <= a or s >= b for a, b in taken)

    for kind, pat in _PATTERNS:
        for m in pat.finditer(text):
            s, e = m.span()
            if not free(s, e):
                continue
            g = m.groups()
            y: YearRange | None = None
            if kind in ("between", "span"):
                lo, hi = sorted((int(g[0]), int(g[1])))
                y = YearRange(lo, hi, f"{lo}-{hi}")
            elif kind == "before":
                start = int(g[0]) if g[0] else _decade(g[1])
                y = YearRange(None, start - 1, f"before {g[0] or f'{start}s'}")
            elif kind == "after":
                if g[1]:
                    yr = int(g[1])
                    y = YearRange(yr if g[0].lower() == "since" else yr + 1, None, f"{g[0].lower()} {yr}")
                else:
                    start = _decade(g[2])
                    lo = start if g[0].lower() == "since" else start + 10
                    y = YearRange(lo, None, f"{g[0].lower()} the {start}s")
            elif kind == "part":
                lo, hi, label = _decade_range(_decade(g[1]), g[0].lower())
                y = YearRange(lo, hi, label)
            elif kind == "decade":
                lo, hi, label = _decade_range(_decade(g[0]))
                y = YearRange(lo, hi, label)
            elif kind == "word":
                lo, hi, label = _decade_range(_WORD_DECADES[g[0].lower()])
                y = YearRange(lo, hi, label)
            elif kind == "year":
                yr = int(g[0])
                if yr > latest_year + 5:
                    continue
                y = YearRange(yr, yr, str(yr))
            elif kind == "recent":
                y = YearRange(latest_year - RECENT_YEARS + 1, None, "recent")
            elif kind == "old":
                y = YearRange(None, 1979, "old")
            elif kind == "classic":
                y = YearRange(None, 1989, "classic", hard=False)
            if y is not None:
                out.append((y, s, e))
                taken.append((s, e))
    return sorted(out, key=lambda x: x[1])
