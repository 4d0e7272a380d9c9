"""Sequential recommendation: leave-one-out split, full / sampled ranking metrics, the modality gate, SASRec."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from qamrec.eval.sequential import (
    SequentialSplit,
    evaluate_sequential,
    full_ranks,
    leave_one_out,
    popularity_groups,
    sample_negatives,
    sampled_ranks,
)
from qamrec.models.modality import ModalityGate
from qamrec.models.msmrec import MSMRec
from qamrec.models.sasrec import SASRec


def _frame(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    u, i, t = zip(*rows, strict=True)
    return pl.DataFrame({"user_id": u, "ml100k_id": i, "timestamp": t})


def test_leave_one_out_orders_by_time_and_keeps_file_order_for_ties() -> None:
    df = _frame([
        (2, 30, 5), (1, 10, 3), (1, 20, 1), (2, 10, 1), (1, 40, 2), (1, 50, 3), (2, 20, 9), (1, 30, 7),
    ])  # fmt: skip
    s = leave_one_out(df)
    np.testing.assert_array_equal(s.item_ids, [10, 20, 30, 40, 50])  # item index = position + 1
    np.testing.assert_array_equal(s.user_ids, [1, 2])
    # user 1 by time: 20 (1), 40 (2), 10 (3), 50 (3, later in the file), 30 (7)
    np.testing.assert_array_equal(s.train[0], [2, 4, 1])
    assert (s.valid[0], s.test[0]) == (5, 3)
    np.testing.assert_array_equal(s.train[1], [1])
    assert (s.valid[1], s.test[1]) == (3, 2)
    np.testing.assert_array_equal(s.inputs("test")[0], [2, 4, 1, 5])
    np.testing.assert_array_equal(s.inputs("valid")[1], [1])
    with pytest.raises(ValueError, match="fewer than 3"):
        leave_one_out(_frame([(1, 1, 1), (1, 2, 2)]))


def test_full_ranks_exclude_history_and_give_exact_metrics() -> None:
    # 5 items, column 0 is padding; scores per item
    scores = np.array([
        [0.0, 0.9, 0.8, 0.7, 0.6, 0.5],  # target 3; history {1}: ranking 2, 3 -> rank 2
        [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],  # target 1; history {5, 4}: ranking 3, 2, 1 -> rank 3
        [0.0, 0.5, 0.5, 0.5, 0.5, 0.5],  # ties: target 2, no history -> rank 2 (ties broken by item index)
        [9.0, 0.1, 0.9, 0.2, 0.3, 0.4],  # target 1, history {2}; the padding column is never ranked -> rank 4
    ])
    targets = np.array([3, 1, 2, 1])
    hist = [np.array([1]), np.array([5, 4]), np.array([], dtype=np.int64), np.array([2])]
    ranks = full_ranks(scores, targets, hist)
    np.testing.assert_array_equal(ranks, [2, 3, 2, 4])
    # the target itself is never removed, even when it is in the history
    assert full_ranks(scores[:1], np.array([1]), [np.array([1, 2])])[0] == 1

    split = SequentialSplit(item_ids=np.arange(5) + 1, user_ids=np.arange(4), train=hist,
                            valid=targets, test=np.array([5, 5, 5, 5]))
    m = evaluate_sequential(lambda rows, seqs: scores[rows], split, "valid")
    ndcg = np.mean([1 / math.log2(r + 1) for r in (2, 3, 2, 4)])
    assert m["hr@10"] == 1.0 and m["hr@100"] == 1.0
    assert m["ndcg@10"] == pytest.approx(ndcg, abs=1e-12)
    # HR@k with a cut-off inside the ranks
    from qamrec.eval.sequential import HitRate

    hr = HitRate(2)
    hr.update(ranks)
    assert hr.compute() == pytest.approx(0.5)


def test_sampled_ranks_and_negatives() -> None:
    rng = np.random.default_rng(1)
    n_items, n_users = 300, 20
    train = [rng.choice(np.arange(1, n_items + 1), size=rng.integers(5, 60), replace=False) for _ in range(n_users)]
    valid = np.array([next(i for i in range(1, n_items + 1) if i not in t) for t in train])
    test = np.array([next(i for i in range(n_items, 0, -1) if i not in t and i != v) for t, v in zip(train, valid)])
    split = SequentialSplit(np.arange(1, n_items + 1), np.arange(n_users), train, valid, test)
    neg = sample_negatives(split, 100, seed=7)
    assert neg.shape == (n_users, 100)
    for u in range(n_users):
        assert len(set(neg[u])) == 100
        assert not set(neg[u]) & (set(train[u]) | {valid[u], test[u]})
        assert neg[u].min() >= 1 and neg[u].max() <= n_items
    np.testing.assert_array_equal(neg, sample_negatives(split, 100, seed=7))
    # sampled rank: the target among itself and the negatives
    scores = rng.random((n_users, n_items + 1))
    r = sampled_ranks(scores, test, neg)
    expect = [1 + int((scores[u, neg[u]] > scores[u, test[u]]).sum()) for u in range(n_users)]
    np.testing.assert_array_equal(r, expect)


def test_popularity_groups_are_tertiles_by_popular_share() -> None:
    train = [np.array([1, 1, 1]), np.array([1, 2, 9]), np.array([8, 9, 10]), np.array([1, 10, 10]),
             np.array([1, 1, 2]), np.array([7, 8, 10])]
    split = SequentialSplit(np.arange(1, 11), np.arange(6), train, np.ones(6, int), np.ones(6, int))
    group, share = popularity_groups(split, top=0.2)  # top 2 items by training count: 1 (7x), 10 (4x)
    np.testing.assert_allclose(share, [1, 1 / 3, 1 / 3, 1, 2 / 3, 1 / 3])
    np.testing.assert_array_equal(group, [0, 1, 2, 0, 1, 2])  # stable: ties keep the user order
    assert np.bincount(group).tolist() == [2, 2, 2]


def test_modality_gate_weights_sum_to_one_and_follow_the_formula() -> None:
    torch.manual_seed(0)
    gate = ModalityGate([5, 7, 3], dim=4, names=["a", "b", "c"])
    feats = [torch.randn(6, 5), torch.randn(6, 7), torch.randn(6, 3)]
    modal = gate.project(feats)  # [K, N, d]
    assert modal.shape == (3, 6, 4)
    item = torch.randn(6, 4)
    u = torch.randn(2, 4)
    mask = torch.ones(6, 3, dtype=torch.bool)
    mask[2, 1] = False
    scores, alpha = gate.score(u, item, modal, mask)
    assert alpha.shape == (2, 6, 3)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(2, 6))
    assert (alpha[:, 2, 1] == 0).all()
    for b in range(2):
        for i in range(6):
            logits = torch.stack([u[b] @ modal[k, i] for k in range(3)])
            logits[~mask[i]] = -float("inf")
            a = torch.softmax(logits, 0)
            e_hat = item[i] + (a[:, None] * modal[:, i]).sum(0)
            torch.testing.assert_close(alpha[b, i], a)
            torch.testing.assert_close(scores[b, i], u[b] @ e_hat)
    # an item with no modality at all: weights 0 (not NaN), score = <u, e_i>
    mask[4] = False
    scores0, alpha0 = gate.score(u, item, modal, mask)
    assert (alpha0[:, 4] == 0).all()
    torch.testing.assert_close(scores0[:, 4], u @ item[4])
    mask[4] = True
    # mix() gives the same ê for candidate lists
    mixed, a2 = gate.mix(u, item.expand(2, 6, 4), modal.permute(1, 0, 2).expand(2, 6, 3, 4), mask.expand(2, 6, 3))
    torch.testing.assert_close((mixed * u[:, None]).sum(-1), scores)
    torch.testing.assert_close(a2, alpha)


@pytest.mark.parametrize("kind", ["sasrec", "msmrec"])
def test_sasrec_is_causal(kind: str) -> None:
    torch.manual_seed(0)
    n = 30
    if kind == "sasrec":
        model: SASRec = SASRec(n, dim=16, max_len=12, blocks=2, heads=2, dropout=0.3)
    else:
        model = MSMRec(n, [torch.randn(n + 1, 8), torch.randn(n + 1, 5)], dim=16, max_len=12, blocks=2, heads=2)
    model.eval()
    seq = torch.tensor([[0, 0, 3, 7, 1, 9, 2, 4], [5, 6, 7, 8, 9, 10, 11, 12]])
    changed = seq.clone()
    changed[:, 5] = torch.tensor([20, 21])  # a later item
    with torch.no_grad():
        h, h2 = model(seq), model(changed)
    torch.testing.assert_close(h[:, :5], h2[:, :5])
    assert not torch.allclose(h[:, 5:], h2[:, 5:])
    # padding on the left does not change the states of the real items
    with torch.no_grad():
        short = model(seq[:1, 2:])
    torch.testing.assert_close(short, h[:1, 2:], atol=1e-5, rtol=1e-5)
    s = model.predict(seq)
    assert s.shape == (2, n + 1) and torch.isinf(s[:, 0]).all()


def test_sasrec_bce_loss_runs() -> None:
    torch.manual_seed(0)
    model = SASRec(20, dim=8, max_len=6, loss="bce")
    seq = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    tgt = torch.tensor([[0, 2, 3, 4], [5, 6, 7, 8]])
    loss = model.loss(seq, tgt, torch.randint(1, 21, tgt.shape))
    loss.backward()
    assert loss.item() > 0 and model.item_emb.weight.grad is not None


def test_sasrec_learns_on_ml100k(shared_data: Path) -> None:
    """A short run on the real ML-100K (5 epochs, ~10 s on one thread) beats Popularity on the validation step."""
    from qamrec.data.movielens import read_ml100k_ratings
    from qamrec.eval.sequential_benchmark import SeqTrainConfig, model_scorer, popularity_scorer, train_sequential

    torch.set_num_threads(1)
    ratings = read_ml100k_ratings(shared_data / "movielens/ml-100k/u.data")
    split = leave_one_out(ratings)
    assert (split.n_users, split.n_items) == (943, 1682)
    pop = evaluate_sequential(popularity_scorer(split), split, "valid")
    cfg = SeqTrainConfig(dim=32, max_len=50, epochs=5, eval_every=5, lr=5e-3, seed=0)
    model, _ = train_sequential(SASRec(split.n_items, dim=32, max_len=50, dropout=0.2), split, cfg)
    m = evaluate_sequential(model_scorer(model, 50), split, "valid")
    # measured: Popularity HR@10 0.074 / NDCG@10 0.035; this run HR@10 0.13 / NDCG@10 0.06 (random: ~0.006)
    assert m["hr@10"] > pop["hr@10"] and m["ndcg@10"] > pop["ndcg@10"], (m, pop)
