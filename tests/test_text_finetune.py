"""Fine-tuning the sentence encoder on (context, answer text) pairs: batches, the loss, the saved folder, and
the pairs of a real dataset (training under every seed asked for)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qamrec.config import load_config
from qamrec.train.text_finetune import FinetunePairs, _batches, finetune_pairs, finetune_text_encoder


def test_batches_are_shuffled_passes_until_the_step_budget():
    got = list(_batches(10, 4, steps=7, seed=0))
    assert [len(b) for b in got] == [4, 4, 2, 4, 4, 2, 4]
    assert sorted(np.concatenate(got[:3]).tolist()) == list(range(10))  # each pass covers every index once
    assert sorted(np.concatenate(got[3:6]).tolist()) == list(range(10))
    assert np.concatenate(got[:3]).tolist() != np.concatenate(got[3:6]).tolist()  # in a new order
    assert list(_batches(0, 4, steps=3, seed=0)) == []


def test_finetuning_pulls_contexts_to_their_answers(tmp_path: Path):
    from qamrec.features.text import DEFAULT_TEXT_MODEL, TextEncoder

    movies = ["Heat (1995). Genres: Crime. A bank heist crew and a detective.",
              "Toy Story (1995). Genres: Animation, Comedy. Toys come to life.",
              "Alien (1979). Genres: Horror, Sci-Fi. A creature hunts a spaceship crew.",
              "Notting Hill (1999). Genres: Romance, Comedy. A bookseller falls for a film star."]
    # requests that do not name their answer's words
    contexts = ["something with cops and robbers", "a film for my kids", "I want to be scared in space",
                "a date night movie"]
    pairs = FinetunePairs(contexts * 3, np.array([0, 1, 2, 3] * 3), movies, 12)
    base = TextEncoder()

    def loss(enc: TextEncoder) -> float:
        s = 20.0 * enc.encode(contexts) @ enc.encode(movies).T
        s = s - s.max(1, keepdims=True)
        return float(-np.mean(np.diag(s) - np.log(np.exp(s).sum(1))))

    info = finetune_text_encoder(pairs, tmp_path / "ft", steps=12, batch_size=4, lr=1e-4, max_seq_length=64,
                                 max_epochs=4)
    assert info["steps"] == 12 and info["max_seq_length"] == 64
    assert 12 <= info["pairs_used"] < 48  # a batch keeps one example per answer: repeated answers are dropped
    assert info["loss_last"] < info["loss_first"]
    tuned = TextEncoder(tmp_path / "ft")  # a sentence-transformers folder that loads offline
    assert tuned.name != DEFAULT_TEXT_MODEL and tuned.name.startswith("path:ft+") and tuned.dim == base.dim
    assert loss(tuned) < 0.5 * loss(base)
    assert (tmp_path / "ft" / ".finetune.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ft"]  # nothing left beside it
    assert tuned._model.max_seq_length == 64  # saved with the model: it bounds every later query too
    # by default at most one pass over the pairs, whatever the step budget; None: the base model's own length
    once = finetune_text_encoder(pairs, tmp_path / "ft", steps=50, batch_size=4, max_seq_length=None)
    again = TextEncoder(tmp_path / "ft")
    assert once["steps"] == 3 and again.name != tuned.name  # replaced: a new cache id
    assert once["max_seq_length"] == again._model.max_seq_length == base._model.max_seq_length == 256


def test_pairs_train_under_every_seed(prepared_home: Path):
    from qamrec.data.crs import load_crs
    from qamrec.models.query import context_text

    config = load_config(["graph.heldout_fraction=0.3"], home=prepared_home)
    one, both = finetune_pairs("redial", config, [0]), finetune_pairs("redial", config, [0, 1])
    assert 0 < len(both.contexts) < len(one.contexts)
    assert both.movie_texts == one.movie_texts and len(one.movie_texts) > 1000
    assert set(both.contexts) <= set(one.contexts)
    for seed in (0, 1):  # no dev example of either seed is in the pairs (held-out dialogues are in no split)
        crs = load_crs("redial", config.with_overrides([f"seed={seed}"]))
        dev = {context_text(e.context) for e in crs.dev}
        shared = dev & set(both.contexts)  # only openings many dialogues share ("Hello"): training texts too
        assert len(shared) < 5 and shared <= {context_text(e.context) for e in crs.train}
