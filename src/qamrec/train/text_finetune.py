"""Fine-tune the sentence encoder on a CRS dataset's training answers, so a request lands near its answer's text.

Each training example gives a pair (its context, :func:`~qamrec.models.query.context_text`; the text its answer
movie is embedded from, :func:`~qamrec.graph.build.movie_text`). The loss is the in-batch contrastive loss of
dense retrieval (DPR, Karpukhin et al., EMNLP 2020; MultipleNegativesRankingLoss in sentence-transformers):

.. math::
    \\mathcal{L} = -\\frac{1}{B} \\sum_i \\log \\frac{\\exp(s \\cos(q_i, m_i))}{\\sum_j \\exp(s \\cos(q_i, m_j))}

over a batch of B pairs with distinct answers (a batch keeps one example per answer, so no other pair's movie
is a false negative), scale s = 20. The result is a sentence-transformers folder that ``features.text_model``
accepts like any other: the graph's movie texts and the queries are then both embedded by it.

With several seeds, the pairs are the examples that are training examples under every one of them, so one
encoder serves each seed's run without having seen its dev or held-out dialogues.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qamrec.config import Config
from qamrec.eval.protocol import CRSExample
from qamrec.io import atomic_write_json, tmp_prefix

__all__ = ["FinetunePairs", "finetune_pairs", "finetune_text_encoder"]


@dataclass
class FinetunePairs:
    """``contexts[i]`` is answered by the movie ``answers[i]`` (a candidate column) whose text is
    ``movie_texts[answers[i]]``."""

    contexts: list[str]
    answers: np.ndarray
    movie_texts: list[str]
    n_dialogues: int


def finetune_pairs(dataset: str, config: Config, seeds: Sequence[int]) -> FinetunePairs:
    """The (context, answer text) pairs of ``dataset``'s training examples (movie-list conversations too, with
    their "I liked ..." text) that train under every seed in ``seeds``: their dialogues are in no seed's dev or
    held-out split."""
    import polars as pl

    from qamrec.data.crs import load_crs
    from qamrec.data.prepare import load_table
    from qamrec.graph.build import movie_text
    from qamrec.models.qamrec import targeted_examples
    from qamrec.models.query import context_text

    crs = [load_crs(dataset, config.with_overrides([f"seed={s}"])) for s in (seeds or [config.seed])]
    keep = set.intersection(*({_key(e) for e in c.train if e.context} for c in crs))
    train = [e for e in targeted_examples(crs[0].train, crs[0].item_ids) if _key(e) in keep]
    catalog = load_table(config.prepared_dir, "catalog", "movies")
    movies = [crs[0].entity_movie[e] for e in crs[0].item_ids]
    rows = pl.DataFrame({"movie_id": movies}).join(catalog, on="movie_id", how="left", maintain_order="left")
    col = {e: j for j, e in enumerate(crs[0].item_ids)}
    return FinetunePairs([context_text(e.context) for e in train], np.array([col[e.item] for e in train]),
                         [movie_text(r) for r in rows.to_dicts()], len({e.dialogue for e in train}))


def _key(e: CRSExample) -> tuple:
    """An example's identity across seeds' loads (dialogue numbers are not: they count the kept dialogues)."""
    return e.context, e.turn, e.item


def _batches(n: int, batch_size: int, steps: int, seed: int) -> Iterator[np.ndarray]:
    """``steps`` batches of indices ``< n``: shuffled passes over all of them, each pass in a new order."""
    rng = np.random.default_rng(seed)
    step = 0
    while n:
        order = rng.permutation(n)
        for s in range(0, n, batch_size):
            if step == steps:
                return
            step += 1
            yield order[s:s + batch_size]


def finetune_text_encoder(pairs: FinetunePairs, out: Path, base: str | Path | None = None, steps: int = 300,
                          batch_size: int = 32, lr: float = 3e-5, scale: float = 20.0,
                          max_seq_length: int | None = 128,
                          seed: int = 0, max_epochs: float = 1.0,
                          log: Callable[[str], None] = lambda s: None) -> dict:
    """Fine-tune ``base`` (the bundled MiniLM by default) for ``steps`` batches of ``pairs``, at most
    ``max_epochs`` passes over them (a small dataset is not learned by heart), and save it as a
    sentence-transformers folder at ``out`` (assembled beside it, then renamed); return what was done.

    ``max_seq_length`` (tokens; None: the base model's own, 256 for the bundled MiniLM) is saved with the model
    and so also bounds every query it embeds later. A context runs oldest first and is cut on the right, so 128
    drops the newest turns of 16% of ReDial's dev contexts; yet 256 was level with it on ReDial's dev (NDCG@10
    0.1424 against 0.1420 over three seeds, README) and fine-tunes slower, so 128 stays the default."""
    import torch
    import torch.nn.functional as F

    from qamrec.features.text import TextEncoder, _quiet_loading
    from qamrec.train.rundir import replace_dir

    model = TextEncoder(base)._model  # offline, from local files only
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)

    def embed(texts: list[str]) -> torch.Tensor:
        return F.normalize(model(model.preprocess(texts))["sentence_embedding"], dim=1)

    steps = min(steps, math.ceil(max_epochs * len(pairs.contexts) / batch_size))
    t0, losses, used = time.perf_counter(), [], 0
    model.train()
    for step, b in enumerate(_batches(len(pairs.contexts), batch_size, steps, seed)):
        b = b[np.sort(np.unique(pairs.answers[b], return_index=True)[1])]  # one example per answer
        q = embed([pairs.contexts[i] for i in b])
        m = embed([pairs.movie_texts[pairs.answers[i]] for i in b])
        loss = F.cross_entropy(scale * q @ m.T, torch.arange(len(b)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        used += len(b)
        if (step + 1) % 25 == 0:
            log(f"step {step + 1}/{steps}: loss {np.mean(losses[-25:]):.3f} ({time.perf_counter() - t0:.0f} s)")
    model.eval()
    w = max(1, min(25, len(losses) // 2))  # the mean loss of the first and the last w steps
    info = {"steps": len(losses), "pairs_used": used, "pairs": len(pairs.contexts), "dialogues": pairs.n_dialogues,
            "batch_size": batch_size, "lr": lr, "scale": scale, "max_seq_length": model.max_seq_length, "seed": seed,
            "max_epochs": max_epochs,
            "loss_first": float(np.mean(losses[:w])) if losses else None,
            "loss_last": float(np.mean(losses[-w:])) if losses else None,
            "seconds": round(time.perf_counter() - t0, 1)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix(out.name), dir=out.parent))
    try:
        with _quiet_loading():  # no "Writing model shards" bar
            model.save(str(tmp))
        atomic_write_json(tmp / ".finetune.json", info)  # hidden: not part of the model's cache id
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info
