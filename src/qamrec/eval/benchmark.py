"""``qamrec benchmark crs``: baselines, our model and its ablations, trained and tested in one harness."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qamrec.config import Config
from qamrec.errors import QamrecError
from qamrec.eval.evaluate import PUBLISHED, comparison_table
from qamrec.io import atomic_write_json, atomic_write_text
from qamrec.train.rundir import train_or_reuse

__all__ = ["Variant", "VARIANTS", "run_crs_benchmark", "bar_chart", "mean_std"]


@dataclass(frozen=True)
class Variant:
    """A row of the benchmark: a model and the config overrides that make it."""

    name: str
    model: str
    overrides: tuple[str, ...] = ()
    what: str = ""
    datasets: tuple[str, ...] = ()  # only for these datasets (all when empty)
    #: the text encoder fine-tuned on the training answers of every seed (:mod:`qamrec.train.text_finetune`)
    finetune_text: bool = False
    #: an ensemble of these variants' runs (:mod:`qamrec.models.ensemble`), weights chosen on each seed's dev
    members: tuple[str, ...] = ()


VARIANTS: tuple[Variant, ...] = (
    Variant("popularity", "popularity", what="how often an item is the answer in training"),
    Variant("text_similarity", "text_similarity", what="context embedding vs movie text embedding"),
    Variant("cooccurrence", "cooccurrence", what="co-mentions + MovieLens co-ratings with the context movies"),
    Variant("qamrec", "qamrec", what="full model"),
    Variant("mscrs", "mscrs", what="MSCRS re-implemented (semantic graphs + R-GCN; no LM prompt learning)"),
    Variant("no_comention", "qamrec", ("model.comention=false",), "without the co-mention memory"),
    Variant("neighbours", "qamrec", ("model.neighbours=true",), "+ the training examples' neighbour vote"),
    Variant("finetuned_text", "qamrec", (), "+ the text encoder fine-tuned on the training answers",
            finetune_text=True),
    Variant("ensemble", "ensemble", (), "qamrec and finetuned_text pooled (log-linear, weights chosen on dev)",
            members=("qamrec", "finetuned_text")),
    Variant("no_posters", "qamrec", ("model.poster_features=false", "graph.poster_knn=0"), "no poster features/kNN"),
    Variant("no_text", "qamrec", ("model.text_features=false", "graph.text_knn=0"),
            "no movie text features/kNN (learned movie embeddings)"),
    Variant("no_graph", "qamrec", ("model.encoder=mlp",), "MLP on node features instead of the GAT"),
    Variant("mean_pooling", "qamrec", ("model.pooling=mean",), "mean instead of query-aware pooling"),
    Variant("no_movielens", "qamrec", ("graph.ratings=", "graph.tags=false"), "no MovieLens users, ratings, tags"),
    Variant("no_kg", "qamrec", ("graph.kg=false",), "no DBpedia entities / relations"),
    Variant("pretrained", "qamrec", ("train.pretrain=20000", "train.pretrain_users=10000"),
            "+ pretraining on 20k pseudo-requests over the catalog and 10k MovieLens users"),
    Variant("no_new_data", "qamrec", ("train.extra_dialogues=false",),
            "only the published validation dialogues (no train_extra/ dialogues or movie lists)", ("redial",)),
)

_KEYS = ("recall@1", "recall@10", "recall@50", "ndcg@10", "ndcg@50", "mrr@10", "mrr@50")
#: slices reported beside the protocol's metrics: (key, column title)
_SLICES = (("unseen_gold.share", "unseen-gold share"), ("unseen_gold.recall@50", "unseen-gold R@50"),
           ("new_items.recall@10", "new-items R@10"), ("cold_start.recall@10", "cold-start R@10"))


def mean_std(runs: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Per numeric key of ``runs`` (one metrics dict per seed): (mean, sample std; 0 for one seed)."""
    import numpy as np

    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = {}
    for k in keys:
        vals = np.array([float(r[k]) for r in runs if isinstance(r.get(k), (int, float))], dtype=float)
        out[k] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
    return out


def _pm(v: tuple[float, float] | None, n_seeds: int) -> str:
    if v is None or v[0] != v[0]:
        return "–"
    return f"{v[0]:.3f} ± {v[1]:.3f}" if n_seeds > 1 else f"{v[0]:.3f}"


def bar_chart(rows: dict[str, dict[str, tuple[float, float]]], dataset: str, target: Path) -> None:
    """Recall@10 and Recall@50 per model (mean, with the std over seeds as error bars), published MSCRS as
    reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from qamrec.io import write_figure

    names = list(rows)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 4))
    for off, k in ((-0.2, "recall@10"), (0.2, "recall@50")):
        ax.bar(x + off, [rows[n].get(k, (0, 0))[0] for n in names], 0.4, label=k,
               yerr=[rows[n].get(k, (0, 0))[1] for n in names], capsize=2)
    pub = PUBLISHED.get(dataset, {}).get("MSCRS", {})
    for k, style in (("recall@10", "--"), ("recall@50", ":")):
        if k in pub:
            ax.axhline(pub[k], color="black", linestyle=style, linewidth=1, label=f"MSCRS {k} (published)")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_title(f"{dataset}: UniCRS protocol, full ranking (mean ± std over seeds)")
    ax.legend(fontsize=7)
    write_figure(fig, target)


def _finetuned_encoder(dataset: str, config: Config, out: Path, seeds: Sequence[int],
                       log: Callable[[str], None]) -> Path:
    """``out/encoders/<dataset>-seeds<...>``: ``config``'s text encoder fine-tuned on the pairs that are training
    examples under every seed of the benchmark (made once, then reused)."""
    from qamrec.train.text_finetune import finetune_pairs, finetune_text_encoder

    folder = (out / "encoders" / f"{dataset}-seeds{'-'.join(map(str, seeds))}").resolve()
    if not (folder / ".finetune.json").exists():
        pairs = finetune_pairs(dataset, config, seeds)
        log(f"fine-tuning the text encoder on {len(pairs.contexts):,} pairs of {pairs.n_dialogues:,} dialogues")
        info = finetune_text_encoder(pairs, folder, config.features.text_model, log=log)
        log(f"fine-tuned in {info['seconds']:.0f} s: loss {info['loss_first']:.3f} -> {info['loss_last']:.3f}")
    return folder


def _pool_members(run_dir: Path, members: list[Path], config: Config, log: Callable[[str], None]) -> None:
    """Write into ``run_dir`` the ensemble of the complete runs ``members``, weights chosen on the dev examples
    of the first member's split, and a ``metrics.json`` that adds up the members' training."""
    from qamrec.train.run import pool_runs

    ens = pool_runs(members, config)
    ens.save(run_dir)
    log(f"[{run_dir.name}] weights {', '.join(f'{m.name} {w:.1f}' for m, w in zip(members, ens.weights))}")
    runs = [json.loads((m / "metrics.json").read_text()) for m in members]
    atomic_write_json(run_dir / "metrics.json", {
        "train_seconds": sum(r.get("train_seconds") or 0.0 for r in runs), "n_train": runs[0].get("n_train"),
        "n_train_dialogues": runs[0].get("n_train_dialogues"), "weights": [float(w) for w in ens.weights],
        "dev": ens.dev})


def run_crs_benchmark(dataset: str, config: Config, out: Path, test_file: Path | None,
                      train: Callable[[str, Path, str, Config], dict[str, Any]],
                      evaluate_run: Callable[[Path, Path | None], dict[str, Any]],
                      only: list[str] | None = None, log: Callable[[str], None] = print,
                      seeds: Sequence[int] = (0,)) -> dict[str, Any]:
    """Train and test every variant (or those in ``only``, keeping the other rows of an earlier run) once per
    seed; write ``crs_<dataset>.{md,json,png}`` into ``out`` (mean ± std over the seeds); return the results.

    Without ``test_file`` the models train with :data:`~qamrec.config.BENCHMARK_HELDOUT` of the published
    validation dialogues held out (ReDial) and are tested on those; with it, they train on everything else.
    A run directory that is already complete with the same settings is reused (``train`` decides).
    """
    if only:  # "a,b" and repeated names alike; a name no variant has is an error, not an empty run
        only = [n.strip() for name in only for n in name.split(",") if n.strip()]
        if unknown := [n for n in only if n not in {v.name for v in VARIANTS}]:
            raise QamrecError(f"--only {', '.join(unknown)}: no such variant; the variants: "
                              + ", ".join(v.name for v in VARIANTS))
    out.mkdir(parents=True, exist_ok=True)
    if test_file is None:
        config = config.with_benchmark_heldout()
    per_seed: dict[str, list[dict[str, Any]]] = {}
    previous = out / f"crs_{dataset}.json"
    if only and previous.exists():  # a partial rerun keeps the other rows of the last full run
        per_seed = json.loads(previous.read_text()).get("per_seed", {})

    def run_dir_of(name: str, seed: int) -> Path:
        return out / "runs" / (f"{dataset}-{name}" + (f"-seed{seed}" if len(seeds) > 1 else ""))

    if only:  # an ensemble's members are rows too (reused when their runs are complete)
        only = list(dict.fromkeys([m for v in VARIANTS if v.name in only for m in v.members] + list(only)))
    for v in VARIANTS:
        if (only and v.name not in only) or (v.datasets and dataset not in v.datasets):
            continue
        log(f"[{v.name}] {v.what}")
        per_seed[v.name] = []
        overrides = list(v.overrides)
        if v.finetune_text:
            overrides.append(f"features.text_model={_finetuned_encoder(dataset, config, out, seeds, log)}")
        for seed in seeds:
            t0 = time.perf_counter()
            run_dir = run_dir_of(v.name, seed)
            if v.members:
                _pool_members(run_dir, [run_dir_of(m, seed) for m in v.members], config, log)
            else:
                train_or_reuse(run_dir, config.with_overrides(overrides + [f"seed={seed}"]), dataset, v.model,
                               lambda d, r, c, model=v.model: train(d, r, model, c), f"{v.name} seed {seed}", log)
            m = evaluate_run(run_dir, test_file)
            m["seed"], m["wall_s"] = seed, round(time.perf_counter() - t0, 1)
            run_m = json.loads((run_dir / "metrics.json").read_text())
            m["train_s"], m["n_train"] = run_m.get("train_seconds"), run_m.get("n_train")
            m["n_train_dialogues"] = run_m.get("n_train_dialogues")
            m["pretrain_s"] = (run_m.get("pretrain") or {}).get("seconds", 0.0)
            per_seed[v.name].append(m)
            log(f"[{v.name} seed {seed}] " + "  ".join(f"{k} {m[k]:.4f}" for k in ("recall@10", "recall@50", "ndcg@10")))
    per_seed = {v.name: per_seed[v.name] for v in VARIANTS if v.name in per_seed}
    results = {name: mean_std(runs) for name, runs in per_seed.items()}
    n_seeds = max((len(r) for r in per_seed.values()), default=1)
    any_m = next(iter(per_seed.values()), [{}])[0]
    seeds_used = sorted({m["seed"] for runs in per_seed.values() for m in runs})
    md = [f"# CRS benchmark: {dataset}", "",
          f"Test file `{any_m.get('test_file')}`: {any_m.get('n_examples', 0):,} examples evaluated "
          f"({any_m.get('excluded_as_training', 0):,} of {any_m.get('examples_in_file', 0):,} excluded: their "
          "dialogues are training data). UniCRS protocol: full candidate ranking, one example per gold item, "
          "already-mentioned movies not excluded. "
          + (f"Mean ± sample std over seeds {', '.join(map(str, seeds_used))}. " if n_seeds > 1 else
             f"One seed ({', '.join(map(str, seeds_used))}). ")
          + "Published rows are copied from MSCRS (SIGIR 2025) Table 2 and were measured on the official test "
          "split with the full training set.", "",
          comparison_table({}, dataset).rstrip("\n"), ]
    def label(name: str) -> str:  # a row with fewer seeds than the others says how many it has
        n = len(per_seed[name])
        return name if n == n_seeds else f"{name} ({n} seed{'s' if n > 1 else ''})"

    for name, r in results.items():
        md.append(f"| {label(name)} | " + " | ".join(_pm(r.get(k), len(per_seed[name])) for k in _KEYS) + " |")
    md += ["", "Slices: *unseen gold* = examples whose answer is the answer of no training example (their share, "
           "and R@50 on them); *new items* = already-mentioned movies masked; *cold start* = no movie in the "
           "context yet.", "",
           "| model | what | training examples | " + " | ".join(t for _, t in _SLICES) + " | train s |",
           "|---|---|---|" + "---|" * (len(_SLICES) + 1)]
    for v in VARIANTS:
        if v.name in results:
            r = results[v.name]
            n_train = r.get("n_train", (0, 0))[0]
            md.append(f"| {label(v.name)} | {v.what} | {n_train:,.0f} | "
                      + " | ".join(_pm(r.get(k), len(per_seed[v.name])) for k, _ in _SLICES)
                      + f" | {r.get('train_s', (0, 0))[0]:.0f}"
                      + (f" + {r['pretrain_s'][0]:.0f} pretraining" if r.get("pretrain_s", (0, 0))[0] else "")
                      + " |")
    atomic_write_text(out / f"crs_{dataset}.md", "\n".join(md) + "\n")
    atomic_write_json(out / f"crs_{dataset}.json", {
        "dataset": dataset, "published": PUBLISHED.get(dataset, {}), "seeds": seeds_used,
        "results": {k: {kk: {"mean": v[0], "std": v[1]} for kk, v in r.items()} for k, r in results.items()},
        "per_seed": per_seed})
    bar_chart({k: {kk: r[kk] for kk in _KEYS if kk in r} for k, r in results.items()}, dataset,
              out / f"crs_{dataset}.png")
    return results
