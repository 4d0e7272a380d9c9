r"""``qamrec benchmark learning-curve``: test recall against the number of training dialogues.

Our model is trained on seeded shares of the training dialogues (``train.dialogue_fraction``: fewer dialogue
nodes, co-mentions and examples; the dev and test dialogues stay the same) and tested on the dataset's test
examples (UniCRS protocol). Each point also counts the test examples whose gold item is never a target of its
training examples: a model trained on cross-entropy over the candidates ranks those items low, and with more
dialogues there are fewer of them.

A least-squares line :math:`\mathrm{R@k} = a + b \log_2 n` through the points (``n`` training dialogues) says how
much a doubling of the dialogues gives; its value at ``--target-dialogues`` is an extrapolation, and the
output says so. Writes ``learning_curve_<dataset>.json`` / ``.md`` / ``.png``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from qamrec.config import Config
from qamrec.eval.evaluate import PUBLISHED, PUBLISHED_SOURCE
from qamrec.io import atomic_write_json, atomic_write_text, write_figure
from qamrec.train.rundir import TrainFn, train_or_reuse

__all__ = ["FRACTIONS", "InspectFn", "run_learning_curve", "log_fit"]

FRACTIONS: tuple[float, ...] = (0.25, 0.5, 1.0)
_KEYS = ("recall@1", "recall@10", "recall@50", "ndcg@10")
#: ``inspect(config, run)`` -> ``train_dialogues``; ``unseen_gold``: the share of test examples whose gold item
#: no training example targets; ``unseen_recall@50``: the run's recall@50 on those; ``seen_recall@10``: its
#: recall@10 on the others
InspectFn = Callable[[Config, Path], dict[str, float]]
_INSPECTED = ("unseen_gold", "unseen_recall@50", "seen_recall@10")


def log_fit(n: list[float], y: list[float]) -> tuple[float, float]:
    """Least-squares ``(a, b)`` of :math:`y = a + b \\log_2 n` (``b`` = gain per doubling)."""
    x = np.log2(np.asarray(n, dtype=np.float64))
    if len(x) < 2 or np.ptp(x) == 0:
        return float(np.mean(y)), 0.0
    b, a = np.polyfit(x, np.asarray(y, dtype=np.float64), 1)
    return float(a), float(b)


def _plot(rows: list[dict[str, Any]], fits: dict[str, tuple[float, float]], target_n: int, dataset: str,
          published: dict[str, float], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ns = [r["train_dialogues"] for r in rows]
    grid = np.geomspace(min(ns), max(target_n, max(ns)), 50)
    for k, marker in (("recall@10", "s"), ("recall@50", "^")):
        line = ax.plot(ns, [r[k] for r in rows], marker=marker, label=k)[0]
        a, b = fits[k]
        ax.plot(grid, a + b * np.log2(grid), "--", color=line.get_color(), alpha=0.6,
                label=f"{k} fit (+{b:.3f} per doubling)")
        if k in published:
            ax.axhline(published[k], color=line.get_color(), lw=0.8, ls=":", label=f"MSCRS {k} (published)")
    ax.set_xscale("log")
    ax.axvline(target_n, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="training dialogues", ylabel="test recall", title=f"Learning curve: {dataset}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    write_figure(fig, target)


def run_learning_curve(dataset: str, config: Config, out: Path, runs: Path, train: TrainFn,
                       inspect: InspectFn,
                       log: Callable[[str], None] = print, fractions: tuple[float, ...] = FRACTIONS,
                       target_dialogues: int = 0) -> dict[str, Any]:
    """Train our model once per share of the training dialogues (a run directory with the same configuration
    is reused), look into each trained run with ``inspect``, write the JSON, markdown and plot into ``out``;
    return the JSON's content."""
    config = config.with_benchmark_heldout()  # tested on held-out dialogues
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for f in sorted(fractions):
        c = config.with_overrides([f"train.dialogue_fraction={f}"])
        run = runs / f"{dataset}-f{f:g}"
        m = train_or_reuse(run, c, dataset, "qamrec", train, f"{f:g} of the training dialogues", log)
        info = inspect(c, run)
        rows.append({"fraction": f, "train_dialogues": int(info["train_dialogues"]),
                     "train_examples": int(m["n_train"]), **{k: float(m["test"][k]) for k in _KEYS},
                     "n_examples": int(m["test"]["n_examples"]), **{k: float(info[k]) for k in _INSPECTED},
                     "best_epoch": m.get("best_epoch"), "train_s": round(float(m.get("train_seconds") or 0.0), 1)})
        log(f"[{f:g}] {rows[-1]['train_dialogues']} dialogues  "
            + "  ".join(f"{k} {rows[-1][k]:.4f}" for k in _KEYS + _INSPECTED))
    ns = [r["train_dialogues"] for r in rows]
    fits = {k: log_fit(ns, [r[k] for r in rows]) for k in ("recall@10", "recall@50")}
    target_n = target_dialogues or max(ns)
    result = {"dataset": dataset, "seed": config.seed, "points": rows,
              "fit": {k: {"a": a, "b_per_doubling": b, f"at_{target_n}": a + b * math.log2(target_n)}
                      for k, (a, b) in fits.items()},
              "target_dialogues": target_n, "wall_s": round(time.perf_counter() - t0, 1)}
    out.mkdir(parents=True, exist_ok=True)
    stem = f"learning_curve_{dataset}"
    published = PUBLISHED.get(dataset.lower(), {}).get("MSCRS", {})
    atomic_write_json(out / f"{stem}.json", result)
    _plot(rows, fits, target_n, dataset, published, out / f"{stem}.png")
    n, p = rows[-1]["n_examples"], max(r["recall@10"] for r in rows)
    se = math.sqrt(p * (1 - p) / max(n, 1))
    md = [f"# Learning curve: {dataset}", "",
          f"Our model (seed {config.seed}) trained on seeded shares of the training dialogues "
          f"(`train.dialogue_fraction`; graph, co-mentions and examples shrink together, dev and test stay) and "
          f"tested on {n:,} test examples (UniCRS protocol). One seed per point: one standard error of recall@10 "
          f"is about {se:.3f}. *Unseen gold* is the share of test examples whose gold item is the target of no "
          f"training example; the model's recall@50 on those examples and recall@10 on the others follow it. "
          f"Plot: `{stem}.png`.", "",
          "| share | training dialogues | training examples | " + " | ".join(_KEYS) + " | unseen gold | "
          "unseen recall@50 | seen recall@10 | best epoch | train s |", "|---|" + "---|" * (len(_KEYS) + 7)]
    for r in rows:
        md.append(f"| {r['fraction']:g} | {r['train_dialogues']:,} | {r['train_examples']:,} | "
                  + " | ".join(f"{r[k]:.4f}" for k in _KEYS)
                  + "".join(f" | {r[k]:.3f}" for k in _INSPECTED) + f" | {r['best_epoch']} | {r['train_s']:.0f} |")
    md += ["", "Log-linear fit R@k = a + b log2(dialogues), through these points only:", ""]
    for k, (a, b) in fits.items():
        md.append(f"- {k}: +{b:.4f} per doubling; **extrapolated** to {target_n:,} training dialogues: "
                  f"{a + b * math.log2(target_n):.3f} (a trend, not a measurement)"
                  + (f"; MSCRS {published[k]:.3f} ({PUBLISHED_SOURCE}, official test split)" if k in published
                     else ""))
    atomic_write_text(out / f"{stem}.md", "\n".join(md) + "\n")
    return result
