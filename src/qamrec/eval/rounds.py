"""``qamrec benchmark rounds``: multi-round sessions with simulated users, as in MAGUS (Jin et al. 2024).

Each simulated user has a hidden target: the movie the recommender gave first in a held-out dialogue (a
candidate of the model). The session starts from the dialogue's first seeker utterance. Each round the
system shows its top ``k`` movies and its suggested refinements. The user:

* stops (success at round r) when the target is among the ``k`` movies shown;
* otherwise marks every shown movie as not wanted (disliked);
* accepts each suggested refinement whose words all describe the target (genres, tags, decade, people ...
  of the item–word graph), and rejects the others.

Session accuracy SA@r is the share of users whose target appeared within r rounds. The same users are run
with ``refine.mode`` = ``none`` (one round's list, feedback ignored), ``naive`` (rejected movies removed, no
propagation) and ``propagation`` (our MAGUS-style label propagation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qamrec.eval.protocol import CRSExample
from qamrec.io import atomic_write_json, atomic_write_text, write_figure

__all__ = ["SimUser", "sim_users", "simulate", "run_rounds_benchmark", "MODES"]

MODES = ("none", "naive", "propagation")


@dataclass(frozen=True)
class SimUser:
    dialogue: int
    start: str
    target: int  # catalog movie id


def sim_users(examples: list[CRSExample], item_movie: dict[int, int]) -> list[SimUser]:
    """One user per dialogue: its first gold item that is a candidate, from its first non-empty utterance."""
    out: dict[int, SimUser] = {}
    for e in sorted(examples, key=lambda e: (e.dialogue, e.turn)):
        if e.dialogue in out or e.item not in item_movie:
            continue
        start = next((u.strip() for u in e.context if u and u.strip()), "")
        if start:
            out[e.dialogue] = SimUser(e.dialogue, start, item_movie[e.item])
    return list(out.values())


def simulate(engine: Any, user: SimUser, k: int, rounds: int) -> int:
    """The round (1-based) at which the target was shown, or 0 if it never was within ``rounds``."""
    from qamrec.serve.engine import Feedback

    fb = Feedback()
    cols = engine.columns.get(user.target, [])
    target_words = set(engine.words.words_of(cols[0]).tolist()) if cols else set()
    for r in range(1, rounds + 1):
        res = engine.recommend(user.start, fb, k=k, understand=False)  # the benchmark's protocol: no parsing
        shown = [m["id"] for m in res.movies]
        if user.target in shown:
            return r
        fb.disliked += shown
        for s in res.suggestions:
            (fb.accepted if set(s.words) <= target_words else fb.rejected).append(s.labels)
    return 0


def run_rounds_benchmark(engine: Any, users: list[SimUser], out: Path, name: str, ks: tuple[int, ...] = (5, 10),
                         rounds: int = 5, progress: Callable[[int, int], None] = lambda i, n: None) -> dict[str, Any]:
    """SA@1..rounds for every mode and k; writes ``rounds_<name>.md``, ``.json`` and ``.png`` into ``out``."""
    base = engine.refine
    result: dict[str, Any] = {"dataset": name, "users": len(users), "rounds": rounds, "ks": list(ks),
                              "settings": base.model_dump(), "sa": {}}
    total, done = len(MODES) * len(ks) * len(users), 0
    try:
        for mode in MODES:
            engine.refine = base.model_copy(update={"mode": mode})
            for k in ks:
                hits = []
                for u in users:
                    hits.append(simulate(engine, u, k, rounds))
                    done += 1
                    progress(done, total)
                result["sa"][f"{mode}@k={k}"] = [round(sum(1 for h in hits if 0 < h <= r) / max(len(users), 1), 4)
                                                 for r in range(1, rounds + 1)]
    finally:
        engine.refine = base
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"rounds_{name}.json", result)
    atomic_write_text(out / f"rounds_{name}.md", rounds_table(result))
    _plot(result, out / f"rounds_{name}.png")
    return result


def rounds_table(result: dict[str, Any]) -> str:
    r = result["rounds"]
    s = result["settings"]
    lines = [f"# Multi-round sessions ({result['dataset']}, {result['users']} simulated users)", "",
             f"Session accuracy SA@r: share of users whose hidden target was shown within r rounds. Propagation: "
             f"damping {s['damping']}, {s['steps']} steps, weight {s['weight']}, negative labels "
             f"{s.get('negative', 1.0)}, {s['suggestions']} suggestions "
             f"per round, popularity weight {s['popularity']}.", "",
             "| feedback | k | " + " | ".join(f"SA@{i}" for i in range(1, r + 1)) + " |",
             "|---|---|" + "---|" * r]
    what = {"none": "none (single round)", "naive": "naive (rejected removed)", "propagation": "label propagation"}
    for mode in MODES:
        for k in result["ks"]:
            vals = result["sa"][f"{mode}@k={k}"]
            lines.append(f"| {what[mode]} | {k} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


def _plot(result: dict[str, Any], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(result["ks"]), figsize=(5 * len(result["ks"]), 3.6), squeeze=False)
    for ax, k in zip(axes[0], result["ks"]):
        for mode in MODES:
            vals = result["sa"][f"{mode}@k={k}"]
            ax.plot(range(1, len(vals) + 1), vals, marker="o", label=mode)
        ax.set(title=f"k = {k}", xlabel="round r", ylabel="SA@r")
        ax.legend()
    write_figure(fig, target)
