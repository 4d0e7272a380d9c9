"""What the graph encoder and the query-aware pooling of a trained QAMRec actually use.

Four probes on a fitted model and a set of examples (by default the run's dev examples, so that what the
probe suggests is never chosen on test data):

* **relation ablation**: the metrics with one relation's edges removed at inference (both directions of a
  relation pair are separate relations), and with every edge removed (the GAT then only applies its self
  terms): a relation the trained model ignores costs nothing;
* **attention**: per layer and relation, the mean normalized entropy :math:`H_i / \\log d_i` of each target
  node's attention over its :math:`d_i \\ge 2` neighbours (1 = uniform, as mean aggregation; near 0 = one
  neighbour) and the mean largest coefficient;
* **message share**: per layer and relation, the mean norm of the aggregated message that reaches a candidate
  movie, relative to the self term's norm;
* **gradient norms**: of the cross-entropy of a batch of examples, per relation's attention parameters and
  per other part of the network;
* **pooling**: the metrics with the query-aware pooling replaced by an unweighted mean, and with the pooled
  vector set to zero; the normalized entropy of the pooling weights over query sets of two or more nodes;
* **answers as new movies**: each example's answer scored as if it were outside the graph (as the service
  scores the movies it adds to the catalog: the median bias, and its representation from its text alone, as
  an isolated node or linked to its nearest graph movies by text and encoded inductively), ranked against
  the other candidates as they are: how much a movie outside the graph loses, and how much of it the
  inductive links give back.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from qamrec.eval.evaluate import evaluate
from qamrec.eval.protocol import CRSExample
from qamrec.models.gat import GATEncoder
from qamrec.models.net import QAMRecNet
from qamrec.models.prior import content_bias
from qamrec.models.qamrec import QAMRec, example_query

__all__ = ["probe_model", "probe_markdown"]

_KEYS = ("recall@10", "recall@50", "ndcg@10")


def _name(et: tuple[str, str, str]) -> str:
    return "__".join(et)


def _metrics(model: QAMRec, examples: Sequence[CRSExample], item_ids: Sequence[int]) -> dict[str, float]:
    model._precomputed = None
    m = evaluate(model.score([example_query(e) for e in examples]), examples, item_ids)
    model._precomputed = None
    return {k: float(m[k]) for k in _KEYS}


@contextlib.contextmanager
def _without(net: QAMRecNet, relations: Sequence[tuple[str, str, str]]) -> Iterator[None]:
    """The network with the edges of ``relations`` removed (restored on exit)."""
    saved = {}
    for et in relations:
        key = "ei_" + _name(et)
        saved[key] = getattr(net, key)
        setattr(net, key, saved[key][:, :0])
    try:
        yield
    finally:
        for key, v in saved.items():
            setattr(net, key, v)


class _Pooling(nn.Module):
    """Stand-in for the pooling at inference: ``"mean"`` (no query weights, no prior) or ``"zero"``."""

    def __init__(self, inner: nn.Module, mode: str) -> None:
        super().__init__()
        self.inner, self.mode = inner, mode

    def forward(self, h: Tensor, q: Tensor, batch: Tensor, weight: Tensor | None = None,
                role: Tensor | None = None, recency: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.mode == "zero":
            return q.new_zeros(q.shape), h.new_zeros(h.shape[0])
        ones = torch.ones(h.shape[0])
        count = scatter(ones, batch, dim=0, dim_size=q.shape[0], reduce="sum").clamp(min=1)
        return scatter(h, batch, dim=0, dim_size=q.shape[0], reduce="sum") / count.unsqueeze(1), ones / count[batch]


@contextlib.contextmanager
def _pooling(net: QAMRecNet, mode: str) -> Iterator[None]:
    inner = net.pool
    net.pool = _Pooling(inner, mode)  # type: ignore[assignment]
    try:
        yield
    finally:
        net.pool = inner


def _entropy(alpha: Tensor, index: Tensor, size: int) -> tuple[float, float, int]:
    """Mean normalized entropy and mean largest weight of ``alpha`` [E] grouped by ``index`` [E], over groups
    of two or more; and how many such groups."""
    deg = torch.bincount(index, minlength=size).float()
    h = scatter(-(alpha * alpha.clamp_min(1e-12).log()), index, dim=0, dim_size=size, reduce="sum")
    top = scatter(alpha, index, dim=0, dim_size=size, reduce="max")
    ok = deg >= 2
    if not bool(ok.any()):
        return float("nan"), float("nan"), 0
    return float((h[ok] / deg[ok].log()).mean()), float(top[ok].mean()), int(ok.sum())


@torch.no_grad()
def _attention(net: QAMRecNet) -> list[dict[str, Any]]:
    net.eval()
    trace: dict[tuple[int, Any], dict[str, Any]] = {}
    net.encode_nodes(trace)
    cand = net.candidates
    rows = []
    for (layer, et), rec in trace.items():
        if et[0] == "root":
            continue
        alpha = rec["alpha"].mean(dim=1)
        n_dst = int(rec["dst"].numel())
        ent, top, n = _entropy(alpha, rec["local_dst"], n_dst)
        row: dict[str, Any] = {"layer": layer, "relation": _name(et), "edges": int(alpha.numel()),
                               "targets_deg2": n, "entropy": ent, "max_alpha": top}
        if et[2] == "movie":
            root = trace[(layer, ("root", "movie", "movie"))]["msg"]
            pos = torch.full((root.shape[0],), -1, dtype=torch.long)
            pos[rec["dst"]] = torch.arange(n_dst)
            hit = pos[cand]
            hit = hit[hit >= 0]
            msg_norm = rec["msg"][hit].norm(dim=1)
            root_norm = root[cand].norm(dim=1).mean()
            row["candidates_reached"] = int(hit.numel())
            row["message_to_self"] = float(msg_norm.mean() / root_norm) if hit.numel() else 0.0
        rows.append(row)
    return rows


def _gradients(model: QAMRec, examples: Sequence[CRSExample], item_ids: Sequence[int], n: int = 512,
               seed: int = 0) -> dict[str, float]:
    net = model.net
    assert net is not None
    col = {e: j for j, e in enumerate(item_ids)}
    usable = [e for e in examples if e.item in col]
    rng = np.random.default_rng(seed)
    pick = [usable[i] for i in rng.permutation(len(usable))[:n]]
    if not pick:
        return {}
    qb = model.featurize([example_query(e) for e in pick])
    gold = torch.tensor([col[e.item] for e in pick])
    net.eval()
    net.zero_grad()
    loss = nn.functional.cross_entropy(net(qb), gold)
    loss.backward()
    groups: dict[str, float] = defaultdict(float)
    for name, p in net.named_parameters():
        if p.grad is None:
            continue
        parts = name.split(".")
        if parts[0] == "encoder" and parts[1] == "convs":
            key = "relation " + parts[3]
        elif parts[0] == "encoder":
            key = "encoder " + parts[1]
        else:
            key = parts[0]
        groups[key] += float(p.grad.pow(2).sum())
    net.zero_grad()
    return {k: math.sqrt(v) for k, v in sorted(groups.items())}


@torch.no_grad()
def _pool_entropy(model: QAMRec, examples: Sequence[CRSExample]) -> dict[str, float]:
    net = model.net
    assert net is not None
    model._precomputed = None
    table, _ = model.precompute()
    qb = model.featurize([example_query(e) for e in examples])
    _, alpha = net.preference(table, qb)
    ent, top, n = _entropy(alpha, qb.batch, len(qb))
    return {"entropy": ent, "max_alpha": top, "queries_set2": n,
            "mean_set_size": float(len(qb.batch) / max(len(qb), 1))}


def probe_model(model: QAMRec, examples: Sequence[CRSExample], item_ids: Sequence[int],
                new_movies_only: bool = False) -> dict[str, Any]:
    """All probes of a fitted QAMRec on ``examples`` (see the module docstring); ``new_movies_only``: only the
    answers scored as new movies (the other probes take many evaluations)."""
    net = model.net
    assert net is not None, "fit or load the model first"
    out: dict[str, Any] = {"examples": len(examples), "full": _metrics(model, examples, item_ids)}
    if new_movies_only:
        out["as_new_movie"] = _as_new_movie(model, examples, item_ids)
        model._precomputed = None
        return out
    rels = [et for et in net.edge_types if getattr(net, "ei_" + _name(et)).shape[1]]
    if isinstance(net.encoder, GATEncoder):
        abl = [{"relation": _name(et), "edges": int(getattr(net, "ei_" + _name(et)).shape[1])}
               | _without_metrics(model, net, [et], examples, item_ids) for et in rels]
        abl.append({"relation": "all edges", "edges": sum(r["edges"] for r in abl)}
                   | _without_metrics(model, net, rels, examples, item_ids))
        out["relation_ablation"] = abl
        out["attention"] = _attention(net)
    with _pooling(net, "mean"):
        out["pooling_mean"] = _metrics(model, examples, item_ids)
    with _pooling(net, "zero"):
        out["pooling_zero"] = _metrics(model, examples, item_ids)
    out["pooling_attention"] = _pool_entropy(model, examples)
    out["gradient_norms"] = _gradients(model, examples, item_ids)
    out["as_new_movie"] = _as_new_movie(model, examples, item_ids)
    model._precomputed = None
    return out


@torch.no_grad()
def _as_new_movie(model: QAMRec, examples: Sequence[CRSExample], item_ids: Sequence[int],
                  ks: Sequence[int] = (10, 50)) -> dict[str, Any]:
    """Recall@k (``ks``) of each example's answer scored as a movie outside the graph (see the module docstring).

    The answer's other entities (the same movie) are left out of the ranking: outside the graph they would
    be new too."""
    net = model.net
    assert net is not None
    col = {e: j for j, e in enumerate(item_ids)}
    usable = [e for e in examples if e.item in col]
    if not usable:
        return {}
    model._precomputed = None
    table, items = model.precompute()
    qb = model.featurize([example_query(e) for e in usable])
    p, _ = net.preference(table, qb)
    real = net.score(p, items, qb)
    gold = torch.tensor([col[e.item] for e in usable])
    rows = torch.arange(len(usable))
    cand = net.candidates
    same = cand[gold].unsqueeze(1) == cand.unsqueeze(0)  # [B, C] candidates naming the answer's movie
    bias = net.bias.detach()
    median = bias.median()
    # a movie outside the graph was never mentioned with anything: the co-mention memory adds nothing to it
    memory = (net.memory(qb.anchors, qb.anchor_batch, len(usable)) if net.memory is not None and net.memory.active
              else torch.zeros_like(real))
    out: dict[str, Any] = {"examples": len(usable)}
    text = net.movie_text[cand]
    genres = _candidate_genres(net)
    variants = [("graph", None, False), ("isolated", 0, False), ("inductive", None, False)]
    if genres is not None:
        variants += [("genres", 0, True), ("inductive_genres", None, True)]
    predicted = torch.empty_like(bias)  # each candidate's bias predicted from its text, by 5 folds of movies
    for f in range(5):
        held = cand % 5 == f
        predicted[held] = content_bias(text[~held], bias[~held], text[held])
    for name, k, with_genres in variants:
        if name == "graph":
            s_gold = {"": real[rows, gold]}
        else:
            v = net.item(net.new_movies(text, k=k, exclude=cand, genres=genres if with_genres else None))
            s = (net.score(p, v, qb) - bias - memory)[rows, gold]
            s_gold = {"": s + median, "+content_bias": s + predicted[gold]}
        for suffix, sg in s_gold.items():
            rank = ((real > sg.unsqueeze(1)) & ~same).sum(dim=1)
            out[name + suffix] = {f"recall@{k}": float((rank < k).float().mean()) for k in ks}
    model._precomputed = None
    return out


def _candidate_genres(net: QAMRecNet) -> Tensor | None:
    """[2, G] (genre node, candidate index): each candidate's genres in the graph, or None without them."""
    rel = net.genre_relation
    if rel is None:
        return None
    of: dict[int, list[int]] = defaultdict(list)
    for g, m in getattr(net, "ei_" + _name(rel)).T.tolist():
        of[m].append(g)
    pairs = [(g, j) for j, m in enumerate(net.candidates.tolist()) for g in of.get(m, ())]
    return torch.tensor(pairs, dtype=torch.long).T.reshape(2, -1)


def _without_metrics(model: QAMRec, net: QAMRecNet, rels: Sequence[tuple[str, str, str]],
                     examples: Sequence[CRSExample], item_ids: Sequence[int]) -> dict[str, float]:
    with _without(net, rels):
        return _metrics(model, examples, item_ids)


def _pooling_lines(r: dict[str, Any]) -> list[str]:
    f, pm, pz, pa = r["full"], r["pooling_mean"], r["pooling_zero"], r["pooling_attention"]
    lines = ["", "## Query-aware pooling", "", "| pooling at inference | R@10 | R@50 | NDCG@10 |", "|---|---|---|---|",
             f"| trained attention | {f['recall@10']:.4f} | {f['recall@50']:.4f} | {f['ndcg@10']:.4f} |",
             f"| unweighted mean | {pm['recall@10']:.4f} | {pm['recall@50']:.4f} | {pm['ndcg@10']:.4f} |",
             f"| none (g = 0) | {pz['recall@10']:.4f} | {pz['recall@50']:.4f} | {pz['ndcg@10']:.4f} |", "",
             f"Pooling weights: mean set size {pa['mean_set_size']:.1f}; over {pa['queries_set2']:,} sets of 2+, "
             f"entropy / log size {pa['entropy']:.3f}, largest weight {pa['max_alpha']:.3f}.", "",
             "## Gradient norms (cross-entropy of up to 512 examples)", "", "| part | ‖∇‖ |", "|---|---|"]
    return lines + [f"| {k} | {v:.4g} |" for k, v in r["gradient_norms"].items()]


def probe_markdown(r: dict[str, Any], title: str) -> str:
    """The probe's result as markdown tables."""
    f = r["full"]
    lines = [f"# {title}", "", f"{r['examples']:,} examples. Full model: R@10 {f['recall@10']:.4f}, "
             f"R@50 {f['recall@50']:.4f}, NDCG@10 {f['ndcg@10']:.4f}.", ""]
    if "relation_ablation" in r:
        lines += ["## Relations removed at inference", "", "| relation | edges | ΔR@10 | ΔR@50 | ΔNDCG@10 |",
                  "|---|---|---|---|---|"]
        for a in sorted(r["relation_ablation"], key=lambda a: a["ndcg@10"]):
            lines.append(f"| {a['relation']} | {a['edges']:,} | {a['recall@10'] - f['recall@10']:+.4f} | "
                         f"{a['recall@50'] - f['recall@50']:+.4f} | {a['ndcg@10'] - f['ndcg@10']:+.4f} |")
        lines += ["", "## Attention per relation", "",
                  "| layer | relation | edges | targets (deg ≥ 2) | entropy / log deg | max α | message / self |",
                  "|---|---|---|---|---|---|---|"]
        for a in r["attention"]:
            ms = f"{a['message_to_self']:.3f}" if "message_to_self" in a else "–"
            lines.append(f"| {a['layer']} | {a['relation']} | {a['edges']:,} | {a['targets_deg2']:,} | "
                         f"{a['entropy']:.3f} | {a['max_alpha']:.3f} | {ms} |")
    if "pooling_mean" in r:
        lines += _pooling_lines(r)
    nm = r.get("as_new_movie") or {}
    if nm:
        lines += ["", "## Answers scored as movies outside the graph", "",
                  f"{nm['examples']:,} examples; the answer gets a representation from its text (and the links "
                  "named) and either the candidates' median bias or a bias predicted from its text (ridge "
                  "regression on the other candidates' learned biases, 5 folds of movies), ranked against the "
                  "other candidates as they are (its other entities left out).", "",
                  "| the answer's representation | R@10 | R@50 | R@10, bias from text | R@50, bias from text |",
                  "|---|---|---|---|---|"]
        for key, what in (("graph", "its own, in the graph (and its bias)"), ("isolated", "text, isolated node"),
                          ("inductive", "text, linked to its nearest graph movies by text"),
                          ("genres", "text, linked to its genres"),
                          ("inductive_genres", "text, linked to its nearest graph movies and its genres")):
            if key not in nm:
                continue
            cb = nm.get(key + "+content_bias")
            extra = f" {cb['recall@10']:.4f} | {cb['recall@50']:.4f} |" if cb else " – | – |"
            lines.append(f"| {what} | {nm[key]['recall@10']:.4f} | {nm[key]['recall@50']:.4f} |" + extra)
    return "\n".join(lines) + "\n"
