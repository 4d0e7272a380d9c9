"""Why a movie was recommended: the attended query nodes linked to it, feedback, closeness to the words."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["movie_reasons", "sentence"]


def movie_reasons(links: tuple[np.ndarray, np.ndarray], labels: Sequence[tuple[str, str]], own: int, node: int,
                  att: list[tuple[int, float]], fb: float, cos: float | None) -> list[dict[str, Any]]:
    """The attended nodes (``att``: pooled node, weight; ``labels``: (kind, label) per pooled node) linked to
    movie node ``node`` (pooled id ``own``; ``links`` its CSR neighbours), highest attention first; feedback
    ``fb``; and the text closeness ``cos`` when nothing else explains it."""
    indptr, nbr = links
    linked = set(nbr[indptr[node]:indptr[node + 1]].tolist())
    out: list[dict[str, Any]] = []
    shown: set[str] = set()
    for n, a in att:
        if n != own and n in linked and a >= 0.02 and labels[n][1].lower() not in shown:
            kind, label = labels[n]
            shown.add(label.lower())
            out.append({"kind": kind, "label": label, "weight": round(float(a), 4)})
        if len(out) == 3:
            break
    if fb > 0.05:
        out.append({"kind": "feedback", "label": "close to what you liked", "weight": round(fb, 4)})
    if not out and cos is not None:
        out.append({"kind": "text", "label": "close to your words", "weight": round(cos, 4)})
    return out


def sentence(reasons: list[dict[str, Any]]) -> str:
    """The reasons as one short sentence ("Like Heat, heist and close to what you liked")."""
    parts = []
    for r in reasons:
        if r["kind"] == "movie":
            parts.append(f"like {r['label']}")
        elif r["kind"] in ("text", "feedback"):
            parts.append(r["label"])
        else:
            parts.append(r["label"])
    if not parts:
        return "popular with people asking similar things"
    s = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return s[0].upper() + s[1:]
