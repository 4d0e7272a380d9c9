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

import copy
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from qamrec.config import Config
from qamrec.errors import MissingDataError
from qamrec.eval.sequential import (
    FULL_KEYS,
    GROUPS,
    PUBLISHED_SEQUENTIAL,
    PUBLISHED_SEQUENTIAL_SOURCE,
    SAMPLED_KEYS,
    SequentialSplit,
    evaluate_sequential,
    leave_one_out,
    popularity_groups,
    sample_negatives,
)
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

#: the modalities of a movie, in gate order
MODALITIES: tuple[str, ...] = ("title_genres", "overview", "metadata")


@dataclass(frozen=True)
class SeqTrainConfig:
    """Hyper-parameters of a sequential model and its training."""

    dim: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    max_len: int = 200
    loss: str = "ce"
    lr: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 60
    eval_every: int = 3
    patience: int = 5
    seed: int = 0
    #: the mixture: its own epochs after the SASRec warm start, the gate's and the SASRec weights' learning rates
    mixture_epochs: int = 8
    mixture_lr: float = 3e-3
    backbone_lr: float = 3e-4
    temperature: float = 1.0
    modality_dropout: float = 0.2


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def _table(config: Config, step: str, name: str) -> pl.DataFrame | None:
    """A prepared table, (re)preparing its step first when its raw files are fetched (a no-op when fresh)."""
    from qamrec.data.prepare import load_table, prepare, step_outputs

    try:
        prepare([step], config.raw_dir, config.prepared_dir)
    except MissingDataError:  # not fetched: use what is prepared, if anything
        pass
    m = step_outputs(config.prepared_dir, step)
    if m is None or name not in m["tables"]:
        return None
    return load_table(config.prepared_dir, step, name)


def load_ml100k(config: Config) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    """``(ratings, items, TMDB metadata per ML-100K movie or None)`` from the prepared data home.

    Raises:
        MissingDataError: ML-100K is neither prepared nor fetched.
    """
    ratings = _table(config, "movielens-100k", "ratings")
    items = _table(config, "movielens-100k", "items")
    if ratings is None or items is None:
        raise MissingDataError(f"MovieLens-100K is not in {config.home}: run `qamrec data fetch movielens-100k tmdb` "
                               "(add --from DIR for a local copy) and `qamrec data prepare movielens-100k tmdb`")
    links, meta = _table(config, "tmdb", "ml100k_links"), _table(config, "tmdb", "metadata")
    tmdb = None
    if links is not None and meta is not None:
        tmdb = links.join(meta.drop("imdb_id"), on="tmdb_id", how="left")
        raw = config.raw_dir / "tmdb/item_features_tmdb.csv"
        if raw.exists():
            tmdb = tmdb.join(_tmdb_extras(raw), on="ml100k_id", how="left")
    return ratings, items, tmdb


_NAME = re.compile(r"""['"]name['"]\s*:\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")""")


def _names(s: str | None) -> list[str]:
    return [a or b for a, b in _NAME.findall(s or "")]


def _tmdb_extras(path: Path) -> pl.DataFrame:
    """Collection, production companies / countries, language and runtime per ML-100K movie (first row wins)."""
    df = pl.read_csv(path, infer_schema=False)
    want = ("movie_id", "belongs_to_collection", "production_companies", "production_countries",
            "original_language", "runtime")
    df = df.select([pl.col(c) if c in df.columns else pl.lit(None, pl.String).alias(c) for c in want])
    df = df.with_columns(pl.col("movie_id").cast(pl.Int32, strict=False).alias("ml100k_id")).drop("movie_id")
    df = df.filter(pl.col("ml100k_id").is_not_null()).unique("ml100k_id", keep="first", maintain_order=True)
    return df.with_columns(
        pl.col("belongs_to_collection").map_elements(lambda s: ", ".join(_names(s)[:1]), return_dtype=pl.String),
        pl.col("production_companies").map_elements(lambda s: ", ".join(_names(s)[:3]), return_dtype=pl.String),
        pl.col("production_countries").map_elements(lambda s: ", ".join(_names(s)[:3]), return_dtype=pl.String),
        pl.col("runtime").cast(pl.Float64, strict=False),
    )


def modality_texts(items: pl.DataFrame, tmdb: pl.DataFrame | None, item_ids: np.ndarray
                   ) -> dict[str, list[str | None]]:
    """Per modality (:data:`MODALITIES`), the text of each item of ``item_ids`` (ML-100K ids), None if unknown."""
    by_id = {r["ml100k_id"]: r for r in items.iter_rows(named=True)}
    meta = {r["ml100k_id"]: r for r in tmdb.iter_rows(named=True)} if tmdb is not None else {}
    out: dict[str, list[str | None]] = {m: [] for m in MODALITIES}
    for i in item_ids.tolist():
        it = by_id.get(i, {})
        title = it.get("title") or ""
        year = f" ({it['year']})" if it.get("year") else ""
        genres = ", ".join(g for g in it.get("genres") or [] if g != "unknown")
        out["title_genres"].append(f"{title}{year}. Genres: {genres or 'unknown'}." if title else None)
        m = meta.get(i, {})
        overview = (m.get("overview") or "").strip()
        out["overview"].append(overview or None)
        parts = []
        for label, key in (("Tagline", "tagline"), ("Collection", "belongs_to_collection"),
                           ("Studios", "production_companies"), ("Countries", "production_countries"),
                           ("Language", "original_language"), ("Released", "release_date")):
            if (v := m.get(key)) and str(v).strip():
                parts.append(f"{label}: {str(v).strip().rstrip('.')}.")
        if m.get("genres"):
            parts.insert(0, f"Genres: {', '.join(m['genres'])}.")
        if m.get("runtime"):
            parts.append(f"Runtime: {int(m['runtime'])} min.")
        if m.get("vote_average") is not None and m.get("vote_count"):
            parts.append(f"Rated {m['vote_average']:.1f}/10.")
        out["metadata"].append(" ".join(parts) or None)
    return out


def encode_modalities(texts: dict[str, list[str | None]], encode: Callable[[list[str]], np.ndarray]
                      ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Feature tables ``[n_items + 1, D]`` per modality (row 0 = padding, zeros where the text is missing) and the
    ``[n_items + 1, K]`` mask of present modalities."""
    feats, masks = [], []
    for name in texts:
        t = texts[name]
        present = np.array([x is not None for x in t])
        vec = np.asarray(encode([x for x in t if x is not None]), dtype=np.float32)
        table = np.zeros((len(t) + 1, vec.shape[1]), dtype=np.float32)
        table[1:][present] = vec
        feats.append(torch.from_numpy(table))
        masks.append(np.concatenate([[False], present]))
    return feats, torch.from_numpy(np.stack(masks, axis=1))


# --------------------------------------------------------------------------------------------------
# Training and scoring
# --------------------------------------------------------------------------------------------------


def pad_left(seqs: Sequence[np.ndarray], length: int) -> torch.Tensor:
    """``[len(seqs), w]`` left-padded last ``length`` items of each sequence, ``w`` = the longest kept length."""
    w = max(1, min(length, max((len(s) for s in seqs), default=1)))
    out = np.zeros((len(seqs), w), dtype=np.int64)
    for r, s in enumerate(seqs):
        s = s[-w:]
        if len(s):
            out[r, w - len(s):] = s
    return torch.from_numpy(out)


def model_scorer(model: SASRec, max_len: int) -> Callable[[np.ndarray, list[np.ndarray]], np.ndarray]:
    """A :func:`~qamrec.eval.sequential.evaluate_sequential` scorer of a sequential model (eval mode)."""

    def score(rows: np.ndarray, seqs: list[np.ndarray]) -> np.ndarray:
        model.eval()
        return model.predict(pad_left(seqs, max_len)).numpy()

    return score


def popularity_scorer(split: SequentialSplit) -> Callable[[np.ndarray, list[np.ndarray]], np.ndarray]:
    """Scores every item by its interactions in the data the stage may read: all training sequences for the
    validation step, plus every validation item for the test step (detected from the input length)."""
    train = np.bincount(np.concatenate(split.train), minlength=split.n_items + 1).astype(np.float64)
    with_valid = train + np.bincount(split.valid, minlength=split.n_items + 1)
    lengths = np.array([len(t) for t in split.train])

    def score(rows: np.ndarray, seqs: list[np.ndarray]) -> np.ndarray:
        is_test = np.array([len(s) for s in seqs]) > lengths[rows]
        return np.where(is_test[:, None], with_valid[None, :], train[None, :])

    return score


def _training_tensors(split: SequentialSplit, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = [t[:-1] for t in split.train]
    targets = [t[1:] for t in split.train]
    return pad_left(inputs, max_len), pad_left(targets, max_len)


def _negatives(target: torch.Tensor, seen: torch.Tensor, n_items: int, gen: torch.Generator) -> torch.Tensor:
    """One item per position drawn uniformly from the items the row's user has not interacted with in training."""
    neg = torch.randint(1, n_items + 1, target.shape, generator=gen)
    for _ in range(10):
        bad = seen.gather(1, neg)
        if not bad.any():
            break
        neg = torch.where(bad, torch.randint(1, n_items + 1, target.shape, generator=gen), neg)
    return neg


def _length_batches(lengths: torch.Tensor, size: int, gen: torch.Generator, jitter: float = 8.0) -> list[torch.Tensor]:
    """Batches of users of similar sequence length (little padding), in random order; the lengths are jittered,
    so the batches differ from epoch to epoch."""
    order = torch.argsort(lengths.float() + jitter * torch.rand(lengths.shape, generator=gen))
    chunks = list(order.split(size))
    return [chunks[i] for i in torch.randperm(len(chunks), generator=gen).tolist()]


def train_sequential(model: SASRec, split: SequentialSplit, cfg: SeqTrainConfig,
                     log: Callable[[str], None] | None = None, evaluate_start: bool = False,
                     param_lr: Callable[[str], float] | None = None) -> tuple[SASRec, list[dict[str, float]]]:
    """Train with Adam on every position of the training sequences; evaluate the validation NDCG@10 (full
    ranking) every ``eval_every`` epochs (and before training with ``evaluate_start``, as epoch 0) and stop after
    ``patience`` evaluations without improvement. ``param_lr`` gives the learning rate of each named parameter
    (default ``cfg.lr`` for all).

    Returns the model with the best validation weights and the per-evaluation history.
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y = _training_tensors(split, cfg.max_len)
    lengths = (x > 0).sum(1)
    seen = torch.zeros(split.n_users, split.n_items + 1, dtype=torch.bool)
    for u, t in enumerate(split.train):
        seen[u, torch.from_numpy(t)] = True
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        groups.setdefault(param_lr(name) if param_lr is not None else cfg.lr, []).append(p)
    opt = torch.optim.Adam([{"params": ps, "lr": lr} for lr, ps in groups.items() if lr > 0], betas=(0.9, 0.98),
                           weight_decay=cfg.weight_decay)
    for lr, ps in groups.items():
        if lr <= 0:  # frozen
            for p in ps:
                p.requires_grad_(False)
    best, best_state, bad, history = -1.0, copy.deepcopy(model.state_dict()), 0, []
    scorer = model_scorer(model, cfg.max_len)
    t0 = time.perf_counter()

    def validate(epoch: int, loss: float) -> bool:
        """Record the validation metrics; True when training should stop."""
        nonlocal best, best_state, bad
        m = evaluate_sequential(scorer, split, "valid")
        rec = {"epoch": epoch, "loss": loss, "valid_ndcg@10": m["ndcg@10"], "valid_hr@10": m["hr@10"],
               "seconds": round(time.perf_counter() - t0, 1)}
        history.append(rec)
        if log is not None:
            log(f"epoch {epoch:>3}  loss {loss:.4f}  valid ndcg@10 {m['ndcg@10']:.4f}  hr@10 {m['hr@10']:.4f}"
                f"  ({rec['seconds']:.0f} s)")
        if m["ndcg@10"] > best:
            best, best_state, bad = m["ndcg@10"], copy.deepcopy(model.state_dict()), 0
            return False
        bad += 1
        return bad >= cfg.patience

    if evaluate_start:
        validate(0, float("nan"))
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total, n = 0.0, 0
        for rows in _length_batches(lengths, cfg.batch_size, gen):
            xb, yb = x[rows], y[rows]
            keep = int((xb > 0).any(0).nonzero()[0]) if (xb > 0).any() else xb.shape[1] - 1
            xb, yb = xb[:, keep:], yb[:, keep:]
            neg = _negatives(yb, seen[rows], split.n_items, gen) if cfg.loss == "bce" else None
            loss = model.loss(xb, yb, neg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + loss.item() * len(rows), n + len(rows)
        if (epoch % cfg.eval_every == 0 or epoch == cfg.epochs) and validate(epoch, total / max(n, 1)):
            break
    model.load_state_dict(best_state)
    model.eval()
    return model, history


@torch.no_grad()
def modality_weights_by_group(model: MSMRec, split: SequentialSplit, max_len: int, k: int = 10,
                              batch_size: int = 256) -> dict[str, dict[str, Any]]:
    """Mean gate weights per user group (:func:`~qamrec.eval.sequential.popularity_groups`) at the test step:
    averaged over each user's top-``k`` recommended items (history removed) and at the test item itself."""
    from qamrec.eval.sequential import history_mask

    group, share = popularity_groups(split)
    inputs = split.inputs("test")
    top_w = np.zeros((split.n_users, model.n_modalities))
    tgt_w = np.zeros((split.n_users, model.n_modalities))
    model.eval()
    for s in range(0, split.n_users, batch_size):
        rows = np.arange(s, min(s + batch_size, split.n_users))
        seqs = [inputs[r] for r in rows]
        scores, alpha = model.predict_with_weights(pad_left(seqs, max_len))
        scores = scores.masked_fill(torch.from_numpy(history_mask(seqs, split.n_items)), float("-inf"))
        top = scores.topk(k, dim=1).indices
        top_w[rows] = alpha.gather(1, top.unsqueeze(-1).expand(-1, -1, alpha.shape[-1])).mean(1).numpy()
        tgt_w[rows] = alpha[torch.arange(len(rows)), torch.from_numpy(split.test[rows])].numpy()
    out: dict[str, dict[str, Any]] = {}
    for g, name in enumerate(GROUPS):
        sel = group == g
        out[name] = {
            "users": int(sel.sum()),
            "popular_share": [round(float(share[sel].min()), 4), round(float(share[sel].max()), 4)],
            "top10": dict(zip(model.names, np.round(top_w[sel].mean(0), 4).tolist(), strict=True)),
            "target": dict(zip(model.names, np.round(tgt_w[sel].mean(0), 4).tolist(), strict=True)),
        }
    return out


# --------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------


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
