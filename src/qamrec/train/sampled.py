"""Mini-batch link-prediction training of :class:`~qamrec.models.linkgat.LinkGAT` on a MovieLens-sized
:class:`~qamrec.graph.csr.CSRGraph`, in one process or many (``torchrun``, DistributedDataParallel).

**Batches.** The seed edges are the ``("user", "rates", "movie")`` edges of the graph. Each epoch draws one
permutation of them from ``(seed, epoch)``; with :math:`W` ranks, rank :math:`r` takes positions
:math:`r, r + W, r + 2W, \\ldots` and steps through them ``batch_size / W`` at a time, so global step :math:`i`
covers positions :math:`[iB, (i+1)B)` of the permutation whatever :math:`W` is (the last ``E mod W`` edges of an
epoch are left out so that every rank takes the same number of steps). Each step, PyG's
:class:`~torch_geometric.loader.LinkLoader` with the CSR neighbour sampler
(:class:`~qamrec.graph.sampler.CSRNeighborSampler`, per-relation fan-outs ``sampled.fanouts``) and
``NegativeSampling("triplet", k)`` (``k`` random movies per positive, same user) gives the subgraph; the seed
edges themselves are removed from its message edges (both directions), so a user never sees the rating it is
asked to predict. DDP averages the ranks' gradients, which equals the gradient of the global batch's mean loss.

**Determinism.** The torch RNG (dropout, negatives, neighbour sampling) is reseeded at the start of every epoch
from ``(seed, epoch, rank)`` and before every evaluation batch from ``(seed, batch)``: an epoch is a function of
the weights and optimizer state it starts from, so a run resumed from its end-of-epoch checkpoint
(:class:`~qamrec.train.checkpoint.Checkpointer`) ends exactly as an uninterrupted one, and validation does not
depend on the number of ranks.

**Validation** (after every epoch): a fixed sample of ``sampled.val_users`` users, each with the held-out latest
rating of ``graph.val``; the whole catalog is embedded in batches (:func:`embed_catalog`, batches shared out over
the ranks), the users likewise, and every movie is ranked for every user except the movies the user rated in
training; Recall@10 and NDCG@10 of the held-out movie (:mod:`qamrec.eval.metrics`), summed over ranks. Early
stopping on NDCG@10 as :func:`qamrec.train.loop.fit_net`.

**Run directory** (rank 0 alone writes; assembled beside ``out`` and renamed into place as
:func:`qamrec.train.run.train_run`): ``config.json``, ``model.safetensors`` + ``model.json`` (best epoch),
``items.safetensors`` (``items`` [n_movies, d] float32 and ``movie_ids``), ``metrics.json``, ``curves.png``,
``graph.json`` (the graph folder it trained on) and ``MANIFEST.json``.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel as DDP

from qamrec.config import Config
from qamrec.errors import QamrecError
from qamrec.eval.metrics import NDCG, Recall, ranks_of
from qamrec.graph.featurestore import loader_data
from qamrec.io import atomic_path, atomic_write_json, tmp_prefix
from qamrec.models.linkgat import RATED_BY, RATES, LinkGAT, LinkGATSettings, bce_loss, bpr_loss
from qamrec.train.checkpoint import CHECKPOINT_DIR, Checkpointer, TrainState, train_identity
from qamrec.train.distributed import DistInfo, all_reduce_sum, barrier, broadcast, mix_seed
from qamrec.train.run import plot_curves
from qamrec.train.rundir import in_progress, recover, replace_dir, write_manifest

__all__ = ["build_model", "embed_nodes", "embed_catalog", "rank_heldout", "val_sample", "popularity_metrics",
           "train_epoch", "train_sampled"]

_CHUNK_STEPS = 64  # steps per LinkLoader (a loader is built over this many batches of seed edges)
_RANK_USERS = 256  # users ranked against the catalog at once
_K = 10


# -- the graph, the sampler and PyG's loaders -------------------------------------------------------------------

def _sampler(graph: Any, fanouts: list[int], seed: int = 0) -> Any:
    from qamrec.graph.sampler import CSRNeighborSampler

    return CSRNeighborSampler(graph, list(fanouts), seed=seed)


def _reseed(sampler: Any, seed: int) -> None:
    """Reseed every RNG a batch draws from: torch's (dropout, PyG's negatives) and the sampler's."""
    torch.manual_seed(seed)
    if hasattr(sampler, "reseed"):
        sampler.reseed(seed)
    elif isinstance(getattr(sampler, "generator", None), torch.Generator):
        sampler.generator.manual_seed(seed)


def _link_loader(graph: Any, data: Any, sampler: Any, src: Tensor, dst: Tensor, batch_size: int,
                 negatives: int) -> Any:
    from torch_geometric.loader import LinkLoader
    from torch_geometric.sampler import NegativeSampling

    return LinkLoader(data, link_sampler=sampler, edge_label_index=(RATES, torch.stack([src, dst])),
                      neg_sampling=NegativeSampling("triplet", amount=negatives), batch_size=batch_size,
                      shuffle=False)


def _node_loader(data: Any, sampler: Any, node_type: str, ids: Tensor) -> Any:
    from torch_geometric.loader import NodeLoader

    return NodeLoader(data, node_sampler=sampler, input_nodes=(node_type, ids))


def _num_edges(graph: Any, et: tuple[str, str, str]) -> int:
    return int(graph.row[et].shape[0])


def _has_text(graph: Any) -> int:
    x = getattr(graph, "x", {}).get("movie")
    return int(x.shape[1]) if x is not None and x.dim() == 2 and x.shape[1] > 0 and bool(x[:64].abs().sum()) else 0


def _batch_inputs(batch: Any, graph: Any, model: LinkGAT, device: torch.device,
                  drop: tuple[Tensor, Tensor] | None = None) -> tuple[dict, Tensor | None, dict, dict, Any]:
    """(n_id, movie text features, edge_index_dict, edge_attr_dict, hops) of a sampled batch, on ``device``:
    the arguments of :meth:`LinkGAT.forward`. ``hops``: nodes and edges per hop, for trimming layer by layer.

    ``drop``: (user ids, movie ids), global, of rating edges to remove from the messages (the seed edges).
    """
    n_id = {t: batch[t].n_id for t in batch.node_types if "n_id" in batch[t]}
    nodes = {t: list(batch[t].num_sampled_nodes) for t in n_id if "num_sampled_nodes" in batch[t]}
    for t in model.settings.num_nodes:
        if t not in n_id:
            n_id[t] = torch.zeros(0, dtype=torch.long)
            nodes[t] = [0] * (model.settings.layers + 1)
    movie_x = None
    if model.text is not None:
        movie_x = batch["movie"].x if "x" in batch["movie"] else graph.x["movie"][n_id["movie"]]
        movie_x = movie_x.to(device, torch.float32)
    n_movies = int(graph.num_nodes["movie"])
    keys = None if drop is None else drop[0].long() * n_movies + drop[1].long()
    ei_d, ea_d, edges = {}, {}, {}
    for et in batch.edge_types:
        if "edge_index" not in batch[et] or et not in model.encoder.edge_types:
            continue
        ei = batch[et].edge_index
        per_hop = list(batch[et].num_sampled_edges) if "num_sampled_edges" in batch[et] else None
        ea = None
        if "__".join(et) in model.settings.edge_dims:
            ea = batch[et].edge_attr if "edge_attr" in batch[et] else graph.edge_attr[et][batch[et].e_id]
            ea = ea.to(torch.float32).view(ei.shape[1], -1)
        if keys is not None and et in (RATES, RATED_BY):
            u, m = (ei[0], ei[1]) if et == RATES else (ei[1], ei[0])
            k = n_id["user"][u].long() * n_movies + n_id["movie"][m].long()
            keep = ~torch.isin(k, keys)
            if per_hop is not None:  # edges come hop by hop: count what is left of each hop
                hop = torch.repeat_interleave(torch.arange(len(per_hop)), torch.tensor(per_hop, dtype=torch.long))
                per_hop = torch.bincount(hop[keep], minlength=len(per_hop)).tolist()
            ei = ei[:, keep]
            ea = ea[keep] if ea is not None else None
        if per_hop is not None:
            edges[et] = per_hop
        ei_d[et] = ei.to(device)
        if ea is not None:
            ea_d[et] = ea.to(device)
    hops = (nodes, edges) if len(nodes) == len(n_id) and len(edges) == len(ei_d) else None
    return {t: v.to(device) for t, v in n_id.items()}, movie_x, ei_d, ea_d, hops


# -- the model ---------------------------------------------------------------------------------------------------

def build_model(graph: Any, config: Config) -> LinkGAT:
    """A fresh :class:`LinkGAT` for ``graph`` with the ``sampled`` settings (seeded by ``config.seed``)."""
    s = config.sampled
    torch.manual_seed(config.seed)
    edge_types = [et for et in graph.row if _num_edges(graph, et) > 0]
    edge_dims = {"__".join(et): 1 for et in (RATES, RATED_BY)
                 if et in edge_types and getattr(graph, "edge_attr", {}).get(et) is not None}
    text_dim = _has_text(graph) if s.text_features else 0
    return LinkGAT(LinkGATSettings(
        num_nodes={t: int(n) for t, n in graph.num_nodes.items()}, edge_types=edge_types, hidden=s.hidden,
        layers=len(s.fanouts), heads=s.heads, dropout=s.dropout, text_dim=text_dim,
        id_embedding=s.id_embedding, edge_dims=edge_dims, num_neighbors=list(s.fanouts)))


def _unwrap(model: LinkGAT | DDP) -> LinkGAT:
    return model.module if isinstance(model, DDP) else model  # type: ignore[return-value]


# -- embeddings and validation -----------------------------------------------------------------------------------

@torch.no_grad()
def embed_nodes(model: LinkGAT | DDP, graph: Any, node_type: str, ids: Tensor, batch_size: int = 2048, *,
                seed: int = 0, info: DistInfo | None = None, num_neighbors: list[int] | None = None) -> Tensor:
    """Representations [len(ids), hidden] (float32, on the model's device) of nodes ``ids`` of ``node_type``.

    Batches of ``batch_size`` nodes, each with its sampled neighbourhood (the fan-outs the model was trained
    with); batch :math:`j` reseeds the RNG from ``(seed, j)`` and, with several ranks, is computed by rank
    :math:`j \\bmod W`, the rows then summed over ranks: the result does not depend on the number of ranks.
    """
    info = info or DistInfo()
    net = _unwrap(model)
    was = net.training
    net.eval()
    device = next(net.parameters()).device
    sampler = _sampler(graph, num_neighbors or net.settings.num_neighbors, seed)
    ids = torch.as_tensor(ids, dtype=torch.long)
    loader = _node_loader(loader_data(graph), sampler, node_type, ids)
    out = torch.zeros(len(ids), net.settings.hidden, device=device)
    for j, start in enumerate(range(0, len(ids), batch_size)):
        if j % info.world != info.rank:
            continue
        _reseed(sampler, mix_seed(seed, 7919, j))
        idx = torch.arange(start, min(start + batch_size, len(ids)))
        batch = loader(idx)
        h = net(*_batch_inputs(batch, graph, net, device))[node_type]
        out[start:start + len(idx)] = h[:len(idx)]
    net.train(was)
    return all_reduce_sum(out, info)


def embed_catalog(model: LinkGAT | DDP, graph: Any, batch_size: int = 2048, *, seed: int = 0,
                  info: DistInfo | None = None) -> Tensor:
    """Item embeddings of the whole catalog, [n_movies, hidden] in movie node order (see :func:`embed_nodes`)."""
    n = int(graph.num_nodes["movie"])
    return embed_nodes(model, graph, "movie", torch.arange(n), batch_size, seed=seed, info=info)


def val_sample(graph: Any, n_users: int, seed: int) -> tuple[Tensor, Tensor]:
    """(users, held-out movies): a fixed sample of ``n_users`` pairs of ``graph.val`` (sorted by user)."""
    val = torch.as_tensor(np.asarray(graph.val), dtype=torch.long)
    k = min(n_users, val.shape[1])
    pick = torch.randperm(val.shape[1], generator=torch.Generator().manual_seed(mix_seed(seed, 104729)))[:k]
    pick = pick.sort().values
    return val[0, pick], val[1, pick]


def _training_movies(graph: Any, users: Tensor) -> tuple[Tensor, Tensor]:
    """(row within ``users``, movie) of every training rating of ``users`` (from the ``rated_by`` CSC)."""
    colptr = torch.as_tensor(np.asarray(graph.colptr[RATED_BY]))
    start, end = colptr[users], colptr[users + 1]
    deg = end - start
    rows = torch.repeat_interleave(torch.arange(len(users)), deg)
    offs = torch.arange(int(deg.sum())) - torch.repeat_interleave(torch.cumsum(deg, 0) - deg, deg)
    pos = torch.repeat_interleave(start, deg) + offs
    return rows, torch.as_tensor(np.asarray(graph.row[RATED_BY][pos.numpy()]), dtype=torch.long)


def rank_heldout(user_emb: Tensor, item_emb: Tensor, users: Tensor, gold: Tensor, graph: Any,
                 info: DistInfo | None = None) -> dict[str, float]:
    r"""Recall@10 and NDCG@10 of each user's held-out movie among the whole catalog, scored
    :math:`\langle \mathbf{h}_u, \mathbf{h}_m \rangle`, the user's training movies excluded; blocks of users
    shared out over the ranks and the sums all-reduced. Returns ``{"recall@10", "ndcg@10", "n_users"}``."""
    info = info or DistInfo()
    dev = item_emb.device
    sums = torch.zeros(3, dtype=torch.float64, device=dev)
    recall, ndcg = Recall(_K), NDCG(_K)
    for j, start in enumerate(range(0, len(users), _RANK_USERS)):
        if j % info.world != info.rank:
            continue
        sl = slice(start, start + _RANK_USERS)
        s = (user_emb[sl].float() @ item_emb.float().T).cpu()
        r, m = _training_movies(graph, users[sl])
        s[r, m] = -math.inf
        ranks = ranks_of(s.numpy(), gold[sl].numpy())
        sums += torch.tensor([recall.score(ranks.astype(np.float64)).sum(),
                              ndcg.score(ranks.astype(np.float64)).sum(), len(ranks)], dtype=torch.float64,
                             device=dev)
    all_reduce_sum(sums, info)
    n = max(float(sums[2]), 1.0)
    return {"recall@10": float(sums[0]) / n, "ndcg@10": float(sums[1]) / n, "n_users": int(sums[2])}


def popularity_metrics(graph: Any, users: Tensor, gold: Tensor) -> dict[str, float]:
    """The same protocol for the most-popular-first ranking (training rating counts)."""
    colptr = torch.as_tensor(np.asarray(graph.colptr[RATES]))
    deg = (colptr[1:] - colptr[:-1]).double()
    return rank_heldout(torch.ones(len(users), 1, dtype=torch.float64), deg[:, None], users, gold, graph)


def _validate(model: LinkGAT | DDP, graph: Any, users: Tensor, gold: Tensor, config: Config,
              info: DistInfo) -> dict[str, float]:
    s = config.sampled
    items = embed_catalog(model, graph, s.eval_batch_size, seed=config.seed, info=info)
    u = embed_nodes(model, graph, "user", users, s.eval_batch_size, seed=config.seed + 1, info=info)
    return rank_heldout(u, items, users, gold, graph, info)


# -- training ----------------------------------------------------------------------------------------------------

def train_epoch(model: DDP | LinkGAT, opt: torch.optim.Optimizer, graph: Any, data: Any, config: Config, epoch: int,
                info: DistInfo) -> dict[str, float]:
    """One epoch of this rank's share of the seed edges; returns loss (mean over all ranks) and timings."""
    s, net = config.sampled, _unwrap(model)
    if s.batch_size % info.world:
        raise QamrecError(f"sampled.batch_size={s.batch_size} must divide by the {info.world} ranks")
    b = s.batch_size // info.world
    sampler = _sampler(graph, s.fanouts, mix_seed(config.seed, epoch, info.rank))
    _reseed(sampler, mix_seed(config.seed, epoch, info.rank))
    E = _num_edges(graph, RATES)
    perm = torch.randperm(E, generator=torch.Generator().manual_seed(mix_seed(config.seed, epoch)))
    n_local = E // info.world
    local = perm[info.rank::info.world][:n_local]
    steps = math.ceil(n_local / b) if s.max_batches == 0 else min(math.ceil(n_local / b), s.max_batches)
    colptr = torch.as_tensor(np.asarray(graph.colptr[RATES]))
    row = graph.row[RATES]
    loss_fn = bpr_loss if s.loss == "bpr" else bce_loss
    net.train()
    total = torch.zeros(2, dtype=torch.float64, device=info.device)
    t0 = time.perf_counter()
    for c in range(0, steps, _CHUNK_STEPS):
        e = local[c * b:min(c + _CHUNK_STEPS, steps) * b].contiguous()
        src = torch.as_tensor(np.asarray(row[e.numpy()]), dtype=torch.long)
        dst = torch.searchsorted(colptr, e, right=True) - 1
        for batch in _link_loader(graph, data, sampler, src, dst, b, s.negatives):
            ui = batch["user"].src_index
            pi, ni = batch["movie"].dst_pos_index, batch["movie"].dst_neg_index.view(len(ui), -1)
            drop = (batch["user"].n_id[ui], batch["movie"].n_id[pi])
            h = model(*_batch_inputs(batch, graph, net, info.device, drop=drop))
            hu = h["user"][ui.to(info.device)]
            pos = LinkGAT.score(hu, h["movie"][pi.to(info.device)])
            neg = (hu[:, None, :] * h["movie"][ni.to(info.device)]).sum(-1)
            loss = loss_fn(pos, neg)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            total += torch.tensor([float(loss.detach()) * len(ui), len(ui)], dtype=torch.float64,
                                  device=info.device)
    train_s = time.perf_counter() - t0
    all_reduce_sum(total, info)
    return {"loss": float(total[0] / total[1].clamp(min=1)), "train_s": train_s, "steps": steps,
            "s_per_1000_batches": 1000 * train_s / max(steps, 1)}


def _broadcast_optimizer(opt: torch.optim.Optimizer, info: DistInfo) -> None:
    """Make every rank's AdamW state rank 0's (ranks other than 0 start from zeros of the same shapes)."""
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state[p]
            if not st:
                st.update({"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                           "exp_avg_sq": torch.zeros_like(p)})
            for k, v in st.items():
                if isinstance(v, Tensor):
                    t = v.to(info.device)
                    broadcast(t, info)
                    st[k] = t.to(v.device)


def _agree(error: str | None, info: DistInfo) -> None:
    """Raise on every rank when rank 0 found ``error`` (so that no rank waits for the others forever)."""
    flag = broadcast(torch.tensor([1.0 if error else 0.0], device=info.device), info)
    if float(flag[0]):
        raise QamrecError(error or "rank 0 stopped the training (see its output)")


def train_sampled(graph: Any, config: Config, out: Path, *, dataset: str, graph_folder: str,
                  info: DistInfo | None = None, on_epoch: Callable[[dict[str, float]], None] = lambda r: None,
                  log: Callable[[str], None] = lambda s: None, overwrite: bool = False,
                  resume: bool = True) -> dict[str, Any]:
    """Train :class:`LinkGAT` on ``graph`` and write run directory ``out`` (rank 0); returns the metrics.

    Every rank of a ``torchrun`` job calls it with its :class:`DistInfo`. ``on_epoch`` gets each epoch's row
    once that epoch's checkpoint is on disk (an exception there stops the training: it resumes from that
    checkpoint). With ``resume`` a checkpoint of the same settings in ``out/checkpoint`` is taken up.
    """
    info = info or DistInfo()
    s = config.sampled
    ckpt = Checkpointer(out / CHECKPOINT_DIR, train_identity(dataset, "linkgat", config, graph_folder)
                        | {"sampled": json.loads(s.model_dump_json())})
    saved, error = None, None
    if info.main:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            recover(out)
            if out.exists() and not in_progress(out) and not overwrite:
                raise QamrecError(f"{out} exists; choose another --out or pass --overwrite")
            if not resume:
                ckpt.clear()
            if ckpt.saved_epoch() is not None:
                saved = ckpt.load()
        except QamrecError as e:
            error = str(e)
    _agree(error, info)
    model = build_model(graph, config).to(info.device)
    if saved is not None:
        model.load_state_dict(saved.model)
        log(f"resuming from {ckpt.folder} (epoch {saved.epoch} done)")
    ddp: LinkGAT | DDP = model
    if info.distributed:  # broadcasts rank 0's weights to every rank
        ddp = DDP(model, device_ids=[info.device.index] if info.device.type == "cuda" else None,
                  find_unused_parameters=True)
    # fused: one pass over each tensor; the dense step over 200k user embeddings costs 5x less (0.03 s on one core)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay, fused=True)
    state = torch.tensor([0.0, -1.0, -math.inf, 0.0, 0.0, 0.0], dtype=torch.float64, device=info.device)
    history: list[dict[str, float]] = []
    best_state = copy.deepcopy(model.state_dict()) if info.main else {}
    if saved is not None:
        opt.load_state_dict(saved.optimizer)
        history, best_state = saved.history, saved.best
        state = torch.tensor([saved.epoch, saved.best_epoch, saved.best_ndcg, saved.bad, float(saved.stopped),
                              saved.seconds], dtype=torch.float64, device=info.device)
    broadcast(state, info)
    if info.distributed and int(state[0]) > 0:
        _broadcast_optimizer(opt, info)
    done, best_epoch, best_ndcg, bad, stopped, before = state.tolist()
    users, gold = val_sample(graph, s.val_users, config.seed)
    data = loader_data(graph)
    start = time.perf_counter()
    for epoch in range(int(done) + 1, s.epochs + 1):
        if stopped:
            break
        row = {"epoch": epoch, **train_epoch(ddp, opt, graph, data, config, epoch, info)}
        if len(users):
            m = _validate(ddp, graph, users, gold, config, info)
            row |= {"dev_recall@10": m["recall@10"], "dev_ndcg@10": m["ndcg@10"]}
        crit = row.get("dev_ndcg@10", -row["loss"])
        if crit > best_ndcg:
            best_ndcg, best_epoch, bad = crit, epoch, 0
            if info.main:
                best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            stopped = float(bad >= s.patience)
        history.append(row)
        if info.main:
            ckpt.save(TrainState(epoch, history, int(best_epoch), best_ndcg, int(bad), bool(stopped),
                                 before + time.perf_counter() - start, model.state_dict(), best_state,
                                 opt.state_dict(), torch.get_rng_state(), torch.zeros(1)))
            on_epoch(row)
        barrier(info)
    if info.main:
        model.load_state_dict(best_state)
    for t in model.state_dict().values():  # every rank takes the best weights (for the catalog below)
        broadcast(t, info)
    items = embed_catalog(model, graph, s.eval_batch_size, seed=config.seed, info=info)
    metrics: dict[str, Any] = {
        "dataset": dataset, "model": "linkgat", "graph": graph_folder, "world_size": info.world,
        "history": history, "best_epoch": int(best_epoch), "train_seconds": before + time.perf_counter() - start,
        "resumed_from_epoch": ckpt.resumed_from, "n_ratings": _num_edges(graph, RATES),
        "val": next((({"recall@10": r["dev_recall@10"], "ndcg@10": r["dev_ndcg@10"], "n_users": len(users)})
                     for r in history if r["epoch"] == int(best_epoch) and "dev_ndcg@10" in r), None),
    }
    if info.main and len(users):
        metrics["val_popularity"] = popularity_metrics(graph, users, gold)
    if info.main:
        _write_run(out, model, items, graph, config, metrics, dataset)
    barrier(info)
    return metrics


def _write_run(out: Path, model: LinkGAT, items: Tensor, graph: Any, config: Config, metrics: dict[str, Any],
               dataset: str) -> None:
    """Assemble the run directory beside ``out`` and swap it into place (the checkpoint goes with the old one)."""
    tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix(out.name), dir=out.parent))
    try:
        model.save(tmp)
        movie_ids = torch.as_tensor(np.asarray(graph.meta.get("movie_ids", np.arange(items.shape[0]))),
                                    dtype=torch.long)
        with atomic_path(tmp / "items.safetensors") as t:
            save_file({"items": items.detach().float().cpu().contiguous(), "movie_ids": movie_ids}, str(t))
        atomic_write_json(tmp / "config.json", json.loads(config.model_dump_json()) | {"dataset": dataset})
        atomic_write_json(tmp / "graph.json", {"folder": metrics["graph"], "num_nodes": dict(graph.num_nodes)})
        if metrics["history"]:
            plot_curves(metrics["history"], tmp / "curves.png")
        atomic_write_json(tmp / "metrics.json", metrics)
        write_manifest(tmp)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
