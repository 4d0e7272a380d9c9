"""Pretraining the query path and the item side on pseudo-requests over the whole catalog.

Dialogues name a few thousand movies; the catalog knows many more, with their genres, years, people, tags and
MovieLens raters. Before it is trained on the dialogues, the model can learn from what we know of every movie
(``train.pretrain > 0`` pseudo-requests, ``train.pretrain_users > 0`` MovieLens users as conversations):

* :func:`~qamrec.data.pseudo_requests.pretraining_pairs`: a free-text request made of 1-3 facts of a target
  movie, worded many ways ("a 1950s film noir", "something with Tom Hanks, nothing animated"), target that movie;
* :func:`~qamrec.data.pseudo_requests.user_conversations`: "I liked A, B and C." from a MovieLens user, target
  another movie the user liked.

Only the dataset's candidate movies can be targets (the model ranks those), and never a movie held out of
pretraining (:func:`~qamrec.data.pseudo_requests.is_heldout`: ``qamrec benchmark requests`` draws its requests
from those). The pretrained weights are cached under ``$QAMREC_HOME/cache/pretrain/`` by a key over the graph,
the model's settings, the pretraining settings and the seed, and reused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from qamrec.config import Config
from qamrec.graph.store import Graph

__all__ = ["Pretraining", "pretraining_data"]


@dataclass
class Pretraining:
    """What :meth:`~qamrec.models.qamrec.QAMRec.fit` pretrains on before the dialogues.

    Attributes:
        texts: the pseudo-requests.
        columns: each one's target, a column of the graph's candidates.
        epochs: passes over them (the best by dev NDCG@10 of the dialogues is kept).
        cache: the file the pretrained weights are kept in (``None``: not cached).
        seconds: filled in by the fit: how long pretraining took (0 when the cache had it).
        cached: filled in by the fit: whether the weights came from the cache.
    """

    texts: list[str]
    columns: list[int]
    epochs: int
    cache: Path | None = None
    seconds: float = 0.0
    cached: bool = False
    counts: dict[str, int] = field(default_factory=dict)


def _user_ratings(config: Config) -> pl.DataFrame:
    """user_id, movie_id (catalog), rating of the graph's MovieLens rating tables."""
    from qamrec.data.prepare import load_table
    from qamrec.graph.build import _ratings

    catalog = load_table(config.prepared_dir, "catalog", "movies")
    return _ratings(config, catalog).rename({"user": "user_id"})


def pretraining_data(config: Config, graph: Graph, seed: int,
                     log: Callable[[str], None] = lambda s: None) -> Pretraining | None:
    """The pseudo-requests to pretrain on (``None`` when ``train.pretrain`` and ``train.pretrain_users`` are 0)."""
    from qamrec.data.pseudo_requests import pretraining_pairs, user_conversations
    from qamrec.data.request_facts import MovieTruth

    t = config.train
    if not t.pretrain and not t.pretrain_users:
        return None
    movie_ids = graph.meta["movie_ids"]
    column: dict[int, int] = {}
    for j, node in enumerate(graph.meta["candidates"]):
        column.setdefault(int(movie_ids[node]), j)
    truth = MovieTruth.from_prepared(config.prepared_dir)
    pairs = list(pretraining_pairs(truth, t.pretrain, seed=seed, universe=sorted(column))) if t.pretrain else []
    n_req = len(pairs)
    if t.pretrain_users:
        ratings = _user_ratings(config).filter(pl.col("movie_id").is_in(list(column)))
        pairs += list(user_conversations(ratings, truth, t.pretrain_users, seed=seed))
    pairs = [(text, m) for text, m in pairs if m in column]
    key = hashlib.sha256(json.dumps({
        "graph": [graph.meta.get("sha256"), graph.sizes()],
        "model": config.model.model_dump(mode="json"), "text_model": config.features.text_model,
        "pretrain": [t.pretrain, t.pretrain_users, t.pretrain_epochs], "lr": t.lr, "batch": t.batch_size,
        "seed": seed, "pairs": hashlib.sha256("\n".join(f"{a}\t{b}" for a, b in pairs).encode()).hexdigest(),
    }, sort_keys=True).encode()).hexdigest()[:16]
    counts = {"requests": n_req, "user_conversations": len(pairs) - n_req}
    log(f"pretraining on {len(pairs):,} pseudo-requests ({counts['requests']:,} from catalog facts, "
        f"{counts['user_conversations']:,} MovieLens users) over {len(set(m for _, m in pairs)):,} movies")
    return Pretraining([p[0] for p in pairs], [column[p[1]] for p in pairs], t.pretrain_epochs,
                       config.cache_dir / "pretrain" / f"{key}.safetensors", counts=counts)

