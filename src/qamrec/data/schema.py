"""Typed access to fields of parsed source records, with errors that name the file, line and field."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any, TypeVar

from qamrec.errors import DataFormatError

__all__ = ["get_field", "split_title_year", "normalize_title", "display_title", "MOVIELENS_YEAR"]

T = TypeVar("T")
_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list", dict: "an object", float: "a number"}


def get_field(
    obj: Any, name: str, typ: type[T], file: str | Path, line: int, *, default: Any = ..., where: str = ""
) -> T:
    """``obj[name]`` checked to be of type ``typ``; a missing field uses ``default`` if one is given."""
    label = f"{where}.{name}" if where else name
    if not isinstance(obj, dict):
        raise DataFormatError(file, "record is not a JSON object", line=line, field=where or None, expected="an object")
    if name not in obj or obj[name] is None:
        if default is not ...:
            return default
        raise DataFormatError(file, "missing field", line=line, field=label, expected=_TYPE_NAMES.get(typ, str(typ)))
    value = obj[name]
    if typ is float and isinstance(value, int):
        value = float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise DataFormatError(
            file,
            f"wrong type {type(value).__name__}",
            line=line,
            field=label,
            expected=_TYPE_NAMES.get(typ, typ.__name__),
        )
    return value


#: a trailing year: "Title (1995)", also a series' "Title (2006–2007)"
_YEAR = re.compile(r"\s*\((\d{4})(?:[-–]\d{0,4})?\)$")
#: MovieLens' trailing year, as a regular expression that polars takes too: also "Title (2006 - 2007)" and the
#: stray "Title (1983))" of ML-32M
MOVIELENS_YEAR = r"\s*\((\d{4})(?:\s*[-–]\s*\d{0,4})?\)\)?$"
_MOVIELENS_YEAR = re.compile(MOVIELENS_YEAR)


def split_title_year(name: str, *, movielens: bool = False) -> tuple[str, int | None]:
    """``"The Shining  (1980)"`` -> ``("The Shining", 1980)``; a name without a year keeps it ``None``.

    By default (ReDial, DBpedia and user input) runs of white space become one space and the year is
    ``(YYYY)`` or ``(YYYY-YYYY)``. ``movielens=True`` reads MovieLens titles as :data:`MOVIELENS_YEAR` does:
    only the ends are stripped (``"Toy Story (1995) "`` -> ``("Toy Story", 1995)``), and the year may also
    be ``(YYYY - YYYY)`` or ``(YYYY))``.
    """
    name = name.strip() if movielens else " ".join(name.split())
    m = (_MOVIELENS_YEAR if movielens else _YEAR).search(name)
    if m is None:
        return name, None
    return name[: m.start()].strip(), int(m.group(1))


_ARTICLE_SUFFIX = re.compile(r",\s*(the|a|an|les|la|le|il|el|der|die|das)$")
_ARTICLE_PREFIX = re.compile(r"^(the|a|an)\s+")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalize_title(title: str) -> str:
    """A matching key for titles: lower case, accents and punctuation dropped, articles moved/removed.

    ``"Matrix, The"``, ``"The Matrix"`` and ``"the matrix!"`` all give ``"matrix"``; ``"&"`` reads ``"and"``.
    """
    t = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii").lower().strip()
    t = t.replace("&", " and ")
    # MovieLens puts alternative titles in parentheses: "Seven (a.k.a. Se7en)" -> "seven"
    t = re.sub(r"\s*\([^)]*\)", "", t)
    t = _ARTICLE_SUFFIX.sub("", t.strip())
    t = _ARTICLE_PREFIX.sub("", t)
    return _NON_ALNUM.sub(" ", t).strip()


def display_title(title: str) -> str:
    """MovieLens' "Matrix, The" as "The Matrix", without alternative titles in trailing parentheses
    ("Ocean's Eleven (a.k.a. Ocean's 11)", "Léon: The Professional (Léon)")."""
    t = title.split(" (a.k.a.")[0].strip()
    while t.endswith(")") and " (" in t and not t.startswith("("):
        t = t[: t.rindex(" (")].strip()
    for art in ("The", "A", "An", "Les", "La", "Le", "Il", "Das", "Die", "El"):
        if t.endswith(", " + art):
            return f"{art} {t[: -len(art) - 2]}"
    return t
