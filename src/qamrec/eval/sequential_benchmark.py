"""``qamrec benchmark sequential``: Popularity, SASRec and SASRec + modality mixture on MovieLens-100K.

Data come from the prepared data home (``qamrec data fetch movielens-100k tmdb`` then ``qamrec data prepare``;
the steps are prepared here when their raw files are fetched but not yet prepared). The split and metrics are
those of :mod:`qamrec.eval.sequential`; every model is trained on the training sequences, early-stopped on the
validation NDCG@10 (full ranking) and tested once, reading training + validation items.

Modalities of a movie for the mixture (each embedded with the project's text encoder, cached on disk):

* ``title_genres``: ML-100K title, year and genres;
* ``overview``: the TMDB plot overview (missing for a few movies: masked out of the gate);
* ``metadata``: TMDB genres, tagline, release date, collection, production companies and countries, original
  language, runtime and vote average (the last five from the raw ``item_features_tmdb.csv`` when fetched).

Posters are not used: the poster files are keyed by MovieLens movieId and ML-100K has no direct map to it (only via
IMDb ids and the ML-25M links, a join this benchmark does not make).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qamrec.config import Config
from qamrec.eval.sequential import (
    FULL_KEYS,
    PUBLISHED_SEQUENTIAL,
    PUBLISHED_SEQUENTIAL_SOURCE,
    SAMPLED_KEYS,
    SequentialSplit,
    evaluate_sequential,
    leave_one_out,
    sample_negatives,
)
from qamrec.eval.sequential_data import MODALITIES, encode_modalities, load_ml100k, modality_texts
from qamrec.eval.sequential_train import (SeqTrainConfig, modality_weights_by_group, model_scorer, pad_left,
                                         popularity_scorer, train_sequential)
from qamrec.io import atomic_write_json, atomic_write_text
from qamrec.models.msmrec import MSMRec
from qamrec.models.sasrec import SASRec

__all__ = [
    "SeqTrainConfig",
    "MODALITIES",
    "load_ml100k",
    "modality_texts",
    "encode_modalities",
    "pad_left",
    "train_sequential",
    "model_scorer",
    "popularity_scorer",
    "modality_weights_by_group",
    "run_sequential_benchmark",
    "write_results",
    "SEQUENTIAL_MODELS",
    "markdown_table",
    "group_plot",
]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Our rows (both protocols) and the published full-ranking rows, in one markdown table."""
    head = ["model", *FULL_KEYS, *SAMPLED_KEYS, "source"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r["model"], *(f"{r[k]:.4f}" for k in (*FULL_KEYS, *SAMPLED_KEYS)),
                                        "measured"]) + " |")
    for name, m in PUBLISHED_SEQUENTIAL.items():
        lines.append("| " + " | ".join([name, *(f"{m[k]:.4f}" for k in FULL_KEYS), "-", "-",
                                        PUBLISHED_SEQUENTIAL_SOURCE]) + " |")
    return "\n".join(lines)


def _modality_order(names: Sequence[str]) -> list[str]:
    """Modality names in gate order (a JSON round trip sorts them)."""
    return [m for m in MODALITIES if m in names] + sorted(m for m in names if m not in MODALITIES)


def group_plot(groups: dict[str, dict[str, Any]], target: Path, title: str) -> None:
    """Grouped bars: mean gate weight per modality (top-10 items) for each user group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = _modality_order(next(iter(groups.values()))["top10"])
    x = np.arange(len(groups))
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for j, mod in enumerate(names):
        ax.bar(x + (j - (len(names) - 1) / 2) * width, [g["top10"][mod] for g in groups.values()], width, label=mod)
    ax.set_xticks(x, [f"{g}\n({v['users']} users)" for g, v in groups.items()])
    ax.set_ylabel("mean modality weight α (top-10 items)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)


#: the models of the benchmark, in table order
SEQUENTIAL_MODELS: tuple[str, ...] = ("popularity", "sasrec", "sasrec+modalities")
_WHAT = {
    "popularity": "training interactions per item",
    "sasrec": "SASRec, softmax cross-entropy over all items",
    "sasrec+modalities": "SASRec + user-conditioned mixture of title/genres, overview, metadata text (warm start)",
}


def _sasrec_settings(cfg: SeqTrainConfig) -> dict[str, Any]:
    keys = ("dim", "blocks", "heads", "dropout", "max_len", "loss", "lr", "weight_decay", "batch_size", "epochs",
            "eval_every", "patience", "seed")
    return {k: getattr(cfg, k) for k in keys}


def _sasrec(split: SequentialSplit, cfg: SeqTrainConfig, folder: Path, data_key: str,
            log: Callable[[str], None]) -> tuple[SASRec, dict[str, Any]]:
    """The trained SASRec of these settings and data: from ``folder`` when trained before (safetensors + JSON),
    else trained now and saved there."""
    import hashlib
    import json

    from safetensors.torch import load_file, save_file

    settings = _sasrec_settings(cfg) | {"data": data_key, "n_items": split.n_items}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    weights, info_file = folder / f"sasrec-{key}.safetensors", folder / f"sasrec-{key}.json"
    torch.manual_seed(cfg.seed)
    model = SASRec(split.n_items, dim=cfg.dim, max_len=cfg.max_len, blocks=cfg.blocks, heads=cfg.heads,
                   dropout=cfg.dropout, loss=cfg.loss)
    if weights.exists() and info_file.exists():
        model.load_state_dict(load_file(weights))
        log(f"[sasrec] trained weights from {weights}")
        return model.eval(), json.loads(info_file.read_text())
    t0 = time.perf_counter()
    model, history = train_sequential(model, split, cfg, log=lambda m: log(f"[sasrec] {m}"))
    info = {"settings": settings, "history": history, "train_s": round(time.perf_counter() - t0, 1)}
    folder.mkdir(parents=True, exist_ok=True)
    from qamrec.io import atomic_path

    with atomic_path(weights) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    atomic_write_json(info_file, info)
    return model, info


def _summary(history: list[dict[str, float]]) -> dict[str, Any]:
    best = max(history, key=lambda r: r["valid_ndcg@10"])
    return {"best_epoch": best["epoch"], "epochs_run": history[-1]["epoch"],
            "valid_ndcg@10": round(best["valid_ndcg@10"], 4), "valid_hr@10": round(best["valid_hr@10"], 4)}


def run_sequential_benchmark(config: Config, out: Path, cfg: SeqTrainConfig,
                             models: Sequence[str] = SEQUENTIAL_MODELS,
                             log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Train and test every model of ``models`` on ML-100K; write ``sequential_ml100k.{md,json}`` (and, with the
    mixture, ``sequential_modality_groups.png``) into ``out``; return one result object per model.

    * ``sasrec`` trains from scratch; its weights are kept in the data home (``runs/sequential-ml100k``, keyed by
      the settings and the data), so a later run reuses them.
    * ``sasrec+modalities`` starts from that SASRec (modality projections at zero: exactly SASRec's scores) and
      trains on with the gate for ``mixture_epochs`` (gate ``mixture_lr``, the SASRec weights ``backbone_lr``);
      it is early-stopped on the validation NDCG@10 among its own epochs (the starting point, plain SASRec, is
      not a candidate: the row is always a trained mixture).
    * With a subset of ``models``, the other rows of the last results in ``out`` are kept.
    """
    import json

    from qamrec.data.prepare import step_outputs

    unknown = [m for m in models if m not in SEQUENTIAL_MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown} (known: {', '.join(SEQUENTIAL_MODELS)})")
    torch.set_num_threads(config.train.threads or torch.get_num_threads())
    ratings, items, tmdb = load_ml100k(config)
    data_key = step_outputs(config.prepared_dir, "movielens-100k")["tables"]["ratings"]["sha256"]
    split = leave_one_out(ratings, items=items["ml100k_id"].to_list())
    negatives = sample_negatives(split, 100, seed=cfg.seed)
    log(f"ML-100K: {split.n_users} users, {split.n_items} items, {ratings.height:,} interactions; "
        f"leave-one-out, full ranking + 100 sampled negatives (seed {cfg.seed})")
    folder = config.runs_dir / "sequential-ml100k"
    previous = out / "sequential_ml100k.json"
    results: dict[str, dict[str, Any]] = {}
    if set(models) != set(SEQUENTIAL_MODELS) and previous.exists():
        results = {r["model"]: r for r in json.loads(previous.read_text())}
    for name in [m for m in SEQUENTIAL_MODELS if m in models]:
        t0 = time.perf_counter()
        extra: dict[str, Any] = {"what": _WHAT[name]}
        if name == "popularity":
            scorer = popularity_scorer(split)
        elif name == "sasrec":
            model, info = _sasrec(split, cfg, folder, data_key, log)
            extra |= _summary(info["history"]) | {"loss": cfg.loss, "train_s": info["train_s"],
                                                  "params": sum(p.numel() for p in model.parameters())}
            scorer = model_scorer(model, cfg.max_len)
        else:
            from qamrec.features.pipeline import text_function

            base, info = _sasrec(split, cfg, folder, data_key, log)
            texts = modality_texts(items, tmdb, split.item_ids)
            present = [m for m in MODALITIES if any(t is not None for t in texts[m])]
            texts = {m: texts[m] for m in present}
            log(f"[{name}] encoding {', '.join(present)} with {config.features.text_model} (cached on disk)")
            feats, mask = encode_modalities(texts, text_function(config))
            torch.manual_seed(cfg.seed)
            mix = MSMRec(split.n_items, feats, mask, names=present, temperature=cfg.temperature,
                         modality_dropout=cfg.modality_dropout, dim=cfg.dim, max_len=cfg.max_len, blocks=cfg.blocks,
                         heads=cfg.heads, dropout=cfg.dropout, loss=cfg.loss)
            mix.load_state_dict(base.state_dict(), strict=False)
            t1 = time.perf_counter()
            mcfg = replace(cfg, epochs=cfg.mixture_epochs, eval_every=1, patience=max(2, cfg.patience // 2))
            mix, history = train_sequential(
                mix, split, mcfg, log=lambda m: log(f"[{name}] {m}"),
                param_lr=lambda n: cfg.mixture_lr if n.startswith("gate.") or n == "input_logits" else cfg.backbone_lr)
            extra |= _summary(history) | {
                "loss": cfg.loss, "train_s": round(info["train_s"] + time.perf_counter() - t1, 1),
                "params": sum(p.numel() for p in mix.parameters()),
                "modalities": {m: int(mask[1:, k].sum()) for k, m in enumerate(present)},
                "modality_weights_by_group": modality_weights_by_group(mix, split, cfg.max_len)}
            scorer = model_scorer(mix, cfg.max_len)
        m = evaluate_sequential(scorer, split, "test", negatives=negatives)
        row = {"model": name, **{k: round(m[k], 4) for k in (*FULL_KEYS, *SAMPLED_KEYS)}, **extra,
               "seed": cfg.seed, "seconds": round(time.perf_counter() - t0, 1)}
        results[name] = row
        log(f"[{name}] test " + "  ".join(f"{k} {row[k]:.4f}" for k in (*FULL_KEYS, *SAMPLED_KEYS)))
    rows = [results[m] for m in SEQUENTIAL_MODELS if m in results]
    write_results(rows, out, split, cfg)
    return rows


def write_results(rows: list[dict[str, Any]], out: Path, split: SequentialSplit, cfg: SeqTrainConfig) -> None:
    """``sequential_ml100k.{md,json}`` and, when a row has gate weights, ``sequential_modality_groups.png``."""
    out.mkdir(parents=True, exist_ok=True)
    md = ["# Sequential recommendation: MovieLens-100K", "",
          f"{split.n_users} users, {split.n_items} items. Leave-one-out by timestamp (stable for ties): last item = "
          "test, second-last = validation, the rest training. **Full ranking** over all items with the user's "
          "history (training items, and the validation item at test time) removed: HR@10, NDCG@10, HR@100. "
          "**Sampled** (`sampled_*`, the older SASRec protocol, not comparable with the published rows): the test "
          f"item against 100 negatives drawn uniformly from the items the user never interacted with (seed "
          f"{cfg.seed}). Early stopping on validation NDCG@10 (full ranking). Published rows: MSMRec Table 4 "
          "(ML-100K, full ranking). Made by `qamrec benchmark sequential` (one seed; the standard error of an "
          f"HR@10 near 0.19 over {split.n_users} users is about "
          f"{math.sqrt(0.19 * 0.81 / max(split.n_users, 1)):.3f}).", "",
          markdown_table(rows), "",
          "SASRec is trained from scratch with the softmax cross-entropy over all items at every position. "
          "SASRec + modalities starts from that SASRec (modality projections at zero) and trains on with the gate; "
          "its best epoch is chosen among its own epochs on validation (its train time includes SASRec's).", "",
          "| model | what | best epoch (of run) | valid NDCG@10 | valid HR@10 | train s |", "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['model']} | {r.get('what', '')} | {r.get('best_epoch', '-')} ({r.get('epochs_run', '-')}) | "
                  f"{r.get('valid_ndcg@10', '-')} | {r.get('valid_hr@10', '-')} | {r.get('train_s', '-')} |")
    md += ["", f"Settings: `{asdict(cfg)}`.", ""]
    groups = next((r["modality_weights_by_group"] for r in rows if "modality_weights_by_group" in r), None)
    if groups is not None:
        mods = _modality_order(next(iter(groups.values()))["top10"])
        md += ["## Modality weights of SASRec + modalities by user group", "",
               "Users in tertiles of the share of their training items among the 20% most popular items "
               "(blockbuster: highest share). Mean gate weight α per modality over each user's top-10 "
               "recommendations at the test step, and after the slash at the test item itself.", "",
               "| group | users | popular share | " + " | ".join(mods) + " |", "|" + "---|" * (3 + len(mods))]
        for g, v in groups.items():
            md.append(f"| {g} | {v['users']} | {v['popular_share'][0]:.2f}-{v['popular_share'][1]:.2f} | "
                      + " | ".join(f"{v['top10'][mo]:.3f} / {v['target'][mo]:.3f}" for mo in mods) + " |")
        md.append("")
        group_plot(groups, out / "sequential_modality_groups.png",
                   "ML-100K, SASRec + modalities: gate weights by user group")
    atomic_write_text(out / "sequential_ml100k.md", "\n".join(md))
    atomic_write_json(out / "sequential_ml100k.json", rows)
