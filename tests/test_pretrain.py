"""Pretraining on pseudo-requests: the data on the real catalog, and the fit with its cache on a tiny graph."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from qamrec.config import ModelConfig, TrainConfig
from qamrec.eval.protocol import CRSExample
from qamrec.models.qamrec import QAMRec
from qamrec.models.query import Query
from qamrec.train.pretrain import Pretraining
from tests.test_models import fake_text, tiny_graph


def _crs() -> SimpleNamespace:
    ex = lambda i, item: CRSExample(i, 0, (f"dialogue {i}",), (900 + i % 3,), item, "")  # noqa: E731
    return SimpleNamespace(train_as_test=[], dev_as_test=[], dev_in_test_file=[],
                           train=[ex(i, 900 + (i + 1) % 3) for i in range(12)],
                           dev=[ex(i, 901) for i in range(3)])


def _fit(pre: Pretraining | None) -> QAMRec:
    m = QAMRec(ModelConfig(hidden=8, heads=2, dropout=0.0, retrieved=2),
               TrainConfig(epochs=3, patience=3, batch_size=4, lr=0.02), fake_text, seed=0)
    return m.fit(_crs(), tiny_graph(), pretrain=pre)  # type: ignore[arg-type]


def _contrast(m: QAMRec, a: str, b: str) -> float:
    """How much more request ``a`` prefers candidate 3 over 4 than request ``b`` does (the bias cancels)."""
    s = m.score([Query(a), Query(b)])
    return float((s[0, 3] - s[0, 4]) - (s[1, 3] - s[1, 4]))


def test_pretraining_teaches_requests_and_is_cached(tmp_path: Path):
    a, b = "a slow thoughtful space film", "a loud buddy cop comedy"
    texts, cols = [a, b] * 20, [3, 4] * 20  # two requests, two movies no dialogue ever answers with
    cache = tmp_path / "pretrain" / "k.safetensors"
    pre = Pretraining(texts, cols, epochs=3, cache=cache)
    pretrained = _fit(pre)
    assert cache.exists() and not pre.cached and pre.seconds > 0
    plain = _fit(None)
    # the query path learned which request wants which movie, and the dialogues did not undo it
    assert _contrast(pretrained, a, b) > _contrast(plain, a, b) + 1.0
    again = Pretraining(texts, cols, epochs=3, cache=cache)
    reused = _fit(again)
    assert again.cached and again.seconds == 0.0
    q = [Query("dialogue 1"), Query(texts[1])]
    assert torch.allclose(torch.from_numpy(reused.score(q)), torch.from_numpy(pretrained.score(q)), atol=1e-5)


def test_pretraining_data_on_the_real_catalog(small_run: Path, prepared_home: Path):
    from qamrec.config import load_config
    from qamrec.data.pseudo_requests import is_heldout
    from qamrec.graph.store import load_graph
    from qamrec.train.pretrain import pretraining_data

    graph = load_graph(small_run / "graph")
    assert pretraining_data(load_config([], home=prepared_home), graph, seed=0) is None  # off by default
    config = load_config(["train.pretrain=300", "train.pretrain_users=100"], home=prepared_home)
    pre = pretraining_data(config, graph, seed=0)
    assert pre is not None and pre.counts["requests"] >= 250 and pre.counts["user_conversations"] >= 50
    assert len(pre.texts) == len(pre.columns) == sum(pre.counts.values())
    movies = [graph.meta["movie_ids"][graph.meta["candidates"][j]] for j in pre.columns]
    assert not any(is_heldout(m) for m in movies)  # the requests benchmark's movies are never targets
    assert len(set(movies)) > 100 and len(set(pre.texts)) > 0.9 * len(pre.texts)
    assert any(t.startswith(("I liked", "I loved", "My favorites", "I enjoyed")) for t in pre.texts)
    same = pretraining_data(config, graph, seed=0)
    assert same is not None and same.texts == pre.texts and same.cache == pre.cache
    other = pretraining_data(config, graph, seed=1)
    assert other is not None and other.cache != pre.cache
