r"""The training loop: cross-entropy over the full candidate set, AdamW (constant or cosine learning rate),
early stopping on dev NDCG@10, optionally of a moving average of the weights.

The graph encoder runs with gradients on every ``train.graph_every``-th batch; the batches between reuse
that pass's node representations without gradients into the encoder (historical embeddings, as in
GNNAutoScale, Fey et al. ICML 2021), so one epoch costs ``1 / graph_every`` of the encoder passes.

Inside a :func:`~qamrec.train.checkpoint.checkpointing` block the loop resumes from the checkpoint it finds
and saves one at the end of every epoch (see :mod:`qamrec.train.checkpoint`).

With ``train.ema`` = :math:`h > 0` epochs of half-life, so a decay :math:`\beta = 2^{-1/(h\,n)}` a step with
:math:`n` steps an epoch, the loop keeps an exponential moving average of the trainable weights after every step
(Polyak & Juditsky, SIAM J. Control Optim. 1992; the EMA of Tarvainen & Valpola, NeurIPS 2017), bias-corrected
as Adam's moments are (Kingma & Ba, ICLR 2015) so that the initial weights take no part:

.. math::
    \bar\theta_t = \frac{\sum_{s=1}^{t} \beta^{t-s} \theta_s}{\sum_{s=1}^{t} \beta^{t-s}}
    = \bar\theta_{t-1} + \frac{1 - \beta}{1 - \beta^t} (\theta_t - \bar\theta_{t-1}),

each step a :func:`torch.optim.swa_utils.get_ema_multi_avg_fn` update of that step's decay. The dev metrics,
early stopping and the weights the model keeps are the average's; the epoch rows also carry the raw weights'
dev NDCG@10 and recall@10 (``dev_raw_*``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.optim.swa_utils import get_ema_multi_avg_fn

from qamrec.config import TrainConfig
from qamrec.eval.evaluate import evaluate
from qamrec.eval.protocol import CRSExample
from qamrec.models.net import QAMRecNet
from qamrec.models.query import QueryBatch, subset
from qamrec.train.checkpoint import TrainState, active_checkpointer

__all__ = ["TrainHistory", "fit_net", "lr_factor", "score_batches"]


@dataclass
class TrainHistory:
    """Per-epoch loss and dev metrics, and the best epoch (whose weights the model keeps)."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_ndcg: float = -1.0
    seconds: float = 0.0


@torch.no_grad()
def score_batches(net: QAMRecNet, qb: QueryBatch, chunk: int = 1024) -> np.ndarray:
    """Scores [len(qb), n_candidates] in eval mode, the graph encoded once."""
    net.eval()
    h = net.encode_nodes()
    table, items = net.node_table(h), net.items(h)
    out = []
    for s in range(0, len(qb), chunk):
        sub = subset(qb, torch.arange(s, min(s + chunk, len(qb))))
        p, _ = net.preference(table, sub)
        out.append(net.score(p, items, sub).numpy())
    return np.concatenate(out) if out else np.zeros((0, items.shape[0]), np.float32)


@contextlib.contextmanager
def _swapped(params: dict[str, Tensor], values: dict[str, Tensor]) -> Iterator[None]:
    """Within the block the parameters named in ``values`` hold those values; they get theirs back after."""
    if not values:
        yield
        return
    own = {k: params[k].detach().clone() for k in values}
    with torch.no_grad():
        for k, v in values.items():
            params[k].copy_(v)
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in own.items():
                params[k].copy_(v)


def lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    r"""The learning rate of step ``step`` of ``total`` as a share of ``cfg.lr``.

    With ``w = warmup \cdot total`` warmup steps: :math:`(t + 1) / w` while :math:`t < w`; then 1 (constant) or
    :math:`\tfrac12 (1 + \cos(\pi (t - w) / (total - w)))` (cosine, Loshchilov & Hutter, ICLR 2017).
    Stateless, so a resumed run follows the same curve.
    """
    w = int(cfg.warmup * total)
    if step < w:
        return (step + 1) / w
    if cfg.schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * (step - w) / max(1, total - w)))


def fit_net(net: QAMRecNet, train_q: QueryBatch, train_gold: Tensor, dev_q: QueryBatch,
            dev_examples: Sequence[CRSExample], item_ids: Sequence[int], cfg: TrainConfig, seed: int,
            on_epoch: Callable[[dict[str, float]], None] = lambda r: None,
            seen_items: Collection[int] | None = None,
            extra: Callable[[Tensor, QueryBatch], Tensor] | None = None) -> TrainHistory:
    """Train ``net`` in place; it ends with the weights of the best dev epoch.

    ``on_epoch`` gets each epoch's row once that epoch's checkpoint (if any) is on disk. With ``seen_items``
    (the training targets) each row also has the dev recall@50 of the examples whose answer is none of them.
    ``extra(idx, batch)`` is added to the training scores of the examples ``idx``; a parameter with an
    ``lr_scale`` attribute learns at that multiple of the learning rate, without weight decay.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    fast = [p for p in net.parameters() if getattr(p, "lr_scale", None) is not None and p.requires_grad]
    groups = [{"params": [p for p in net.parameters() if all(p is not f for f in fast)]}]
    groups += [{"params": [p], "lr_scale": p.lr_scale, "weight_decay": 0.0} for p in fast]  # type: ignore[attr-defined]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    hist = TrainHistory()
    params = {k: p for k, p in net.named_parameters() if p.requires_grad}
    ema = {k: p.detach().clone() for k, p in params.items()} if cfg.ema > 0 else {}
    best_state = copy.deepcopy(net.state_dict())
    bad, first, stopped, before = 0, 1, False, 0.0
    ckpt = active_checkpointer()
    if ckpt is not None and (saved := ckpt.load()) is not None:
        net.load_state_dict(saved.model)
        opt.load_state_dict(saved.optimizer)
        torch.set_rng_state(saved.rng_torch)
        gen.set_state(saved.rng_shuffle)
        hist = TrainHistory(saved.history, saved.best_epoch, saved.best_ndcg)
        best_state, bad, first, stopped, before = saved.best, saved.bad, saved.epoch + 1, saved.stopped, saved.seconds
        if ema:
            ema = saved.averaged
    start = time.perf_counter()
    n_batches = -(-len(train_q) // cfg.batch_size)
    beta = 0.5 ** (1.0 / (cfg.ema * n_batches)) if ema else 0.0
    for epoch in range(first, cfg.epochs + 1):
        if stopped:
            break
        net.train()
        t0 = time.perf_counter()
        losses = []
        history: dict[str, Tensor] | Tensor | None = None
        for step, idx in enumerate(torch.randperm(len(train_q), generator=gen).split(cfg.batch_size)):
            lr = cfg.lr * lr_factor(cfg, (epoch - 1) * n_batches + step, cfg.epochs * n_batches)
            for group in opt.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            if step % cfg.graph_every == 0:  # a full pass with gradients through the graph encoder
                h = net.encode_nodes()
                history = {t: v.detach() for t, v in h.items()} if isinstance(h, dict) else h.detach()
            else:  # the last pass's node representations: the query side, items and biases still learn
                h = history  # type: ignore[assignment]
            sub = subset(train_q, idx)
            scores = net(sub, h)
            if extra is not None:  # a term the net's score leaves out in training (the co-mention memory)
                scores = scores + extra(idx, sub)
            loss = torch.nn.functional.cross_entropy(scores, train_gold[idx]) + net.regularizer()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            if ema:  # step t = (epoch - 1) * n_batches + step + 1 of the run
                t = (epoch - 1) * n_batches + step + 1
                get_ema_multi_avg_fn(1.0 - (1.0 - beta) / (1.0 - beta ** t))(
                    list(ema.values()), [params[k].detach() for k in ema], None)
            losses.append(float(loss.detach()))
        row = {"epoch": epoch, "loss": float(np.mean(losses)), "train_s": time.perf_counter() - t0}
        if len(dev_examples) and ema:
            raw = evaluate(score_batches(net, dev_q), dev_examples, item_ids)
            row |= {f"dev_raw_{k}": float(raw[k]) for k in ("recall@10", "ndcg@10")}
        with _swapped(params, ema):  # the average's metrics and weights, when there is one
            if len(dev_examples):
                m = evaluate(score_batches(net, dev_q), dev_examples, item_ids, seen_items=seen_items)
                row |= {f"dev_{k}": float(m[k]) for k in ("recall@1", "recall@10", "recall@50", "ndcg@10")}
                if seen_items is not None:
                    row["dev_unseen_recall@50"] = float(m["unseen_gold.recall@50"])
            ndcg = row.get("dev_ndcg@10", -row["loss"])
            if ndcg > hist.best_ndcg:
                hist.best_ndcg, hist.best_epoch, bad = ndcg, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                bad += 1
                stopped = bad >= cfg.patience
        hist.epochs.append(row)
        if ckpt is not None:
            ckpt.save(TrainState(epoch, hist.epochs, hist.best_epoch, hist.best_ndcg, bad, stopped,
                                 before + time.perf_counter() - start, net.state_dict(), best_state,
                                 opt.state_dict(), torch.get_rng_state(), gen.get_state(), ema))
        on_epoch(row)
    net.load_state_dict(best_state)
    hist.seconds = before + time.perf_counter() - start
    return hist
