"""Training and scoring of the sequential models (SASRec, SASRec + modality mixture) on a leave-one-out split:
the hyper-parameters, the training loop with early stopping, scorers, and the gate's weights per group.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qamrec.eval.sequential import GROUPS, SequentialSplit, evaluate_sequential, popularity_groups
from qamrec.models.msmrec import MSMRec
from qamrec.models.sasrec import SASRec

__all__ = ["SeqTrainConfig", "pad_left", "train_sequential", "model_scorer", "popularity_scorer",
           "modality_weights_by_group"]


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
