"""``qamrec benchmark crs``: baselines, our model and its ablations, trained and tested in one harness."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qamrec.config import Config
from qamrec.eval.evaluate import PUBLISHED, comparison_table
from qamrec.io import atomic_write_json, atomic_write_text

__all__ = ["Variant", "VARIANTS", "run_crs_benchmark", "bar_chart"]


@dataclass(frozen=True)
class Variant:
    """A row of the benchmark: a model and the config overrides that make it."""

    name: str
    model: str
    overrides: tuple[str, ...] = ()
    what: str = ""


VARIANTS: tuple[Variant, ...] = (
    Variant("popularity", "popularity", what="how often an item is the answer in training"),
    Variant("text_similarity", "text_similarity", what="context embedding vs movie text embedding"),
    Variant("cooccurrence", "cooccurrence", what="co-mentions + MovieLens co-ratings with the context movies"),
    Variant("qamrec", "qamrec", what="full model"),
    Variant("mscrs", "mscrs", what="MSCRS re-implemented (semantic graphs + R-GCN; no LM prompt learning)"),
    Variant("no_posters", "qamrec", ("model.poster_features=false", "graph.poster_knn=0"), "no poster features/kNN"),
    Variant("no_text", "qamrec", ("model.text_features=false", "graph.text_knn=0"),
            "no movie text features/kNN (learned movie embeddings)"),
    Variant("no_graph", "qamrec", ("model.encoder=mlp",), "MLP on node features instead of the GAT"),
    Variant("mean_pooling", "qamrec", ("model.pooling=mean",), "mean instead of query-aware pooling"),
    Variant("no_movielens", "qamrec", ("graph.ratings=", "graph.tags=false"), "no MovieLens users, ratings, tags"),
    Variant("no_kg", "qamrec", ("graph.kg=false",), "no DBpedia entities / relations"),
)

_KEYS = ("recall@1", "recall@10", "recall@50", "ndcg@10", "ndcg@50", "mrr@10", "mrr@50")


def bar_chart(rows: dict[str, dict[str, float]], dataset: str, target: Path) -> None:
    """Recall@10 and Recall@50 per model, published MSCRS as reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(rows)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 4))
    for off, k in ((-0.2, "recall@10"), (0.2, "recall@50")):
        ax.bar(x + off, [rows[n].get(k, 0) for n in names], 0.4, label=k)
    pub = PUBLISHED.get(dataset, {}).get("MSCRS", {})
    for k, style in (("recall@10", "--"), ("recall@50", ":")):
        if k in pub:
            ax.axhline(pub[k], color="black", linestyle=style, linewidth=1, label=f"MSCRS {k} (published)")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_title(f"{dataset}: UniCRS protocol, full ranking")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)


def run_crs_benchmark(dataset: str, config: Config, out: Path, test_file: Path | None,
                      train: Callable[[str, Path, str, Config], dict[str, Any]],
                      evaluate_run: Callable[[Path, Path | None], dict[str, Any]],
                      only: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and test every variant (or those in ``only``, keeping the other rows of an earlier run); write
    ``crs_<dataset>.{md,json,png}`` into ``out``; return the results."""
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    previous = out / f"crs_{dataset}.json"
    if only and previous.exists():  # a partial rerun keeps the other rows of the last full run
        results = json.loads(previous.read_text()).get("results", {})
    for v in VARIANTS:
        if only and v.name not in only:
            continue
        t0 = time.perf_counter()
        run_dir = out / "runs" / f"{dataset}-{v.name}"
        log(f"[{v.name}] {v.what}")
        train(dataset, run_dir, v.model, config.with_overrides(list(v.overrides)))
        m = evaluate_run(run_dir, test_file)
        m["wall_s"] = round(time.perf_counter() - t0, 1)
        m["train_s"] = json.loads((run_dir / "metrics.json").read_text()).get("train_seconds")
        results[v.name] = m
        log(f"[{v.name}] " + "  ".join(f"{k} {m[k]:.4f}" for k in ("recall@10", "recall@50", "ndcg@10")))
    results = {v.name: results[v.name] for v in VARIANTS if v.name in results}
    any_m = next(iter(results.values()), {})
    md = [f"# CRS benchmark: {dataset}", "",
          f"Test file `{any_m.get('test_file')}`: {any_m.get('n_examples', 0):,} examples evaluated "
          f"({any_m.get('excluded_as_training', 0):,} of {any_m.get('examples_in_file', 0):,} excluded: their "
          "dialogues are training data). UniCRS protocol: full candidate ranking, one example per gold item, "
          "already-mentioned movies not excluded. Published rows are copied from MSCRS (SIGIR 2025) Table 2 and "
          "were measured on the official test split with the full training set.", "",
          comparison_table(results, dataset), "",
          "| model | what | new-items R@10 | cold-start R@10 | train s |", "|---|---|---|---|---|"]
    for v in VARIANTS:
        if v.name in results:
            m = results[v.name]
            md.append(f"| {v.name} | {v.what} | {m['new_items.recall@10']:.4f} | {m['cold_start.recall@10']:.4f} | "
                      f"{(m.get('train_s') or 0):.0f} |")
    atomic_write_text(out / f"crs_{dataset}.md", "\n".join(md) + "\n")
    atomic_write_json(out / f"crs_{dataset}.json", {
        "dataset": dataset, "published": PUBLISHED.get(dataset, {}),
        "results": {k: {kk: v for kk, v in m.items()} for k, m in results.items()}})
    bar_chart({k: {kk: m[kk] for kk in _KEYS} for k, m in results.items()}, dataset, out / f"crs_{dataset}.png")
    return results
