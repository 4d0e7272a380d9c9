"""ItemIndex: exact products, and int8 products whose best rows are re-scored exactly."""

from __future__ import annotations

import pytest
import torch

from qamrec.serve.index import ItemIndex


def _data(n: int = 20000, d: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # rows of very different norms, as a popularity column and text columns give
    m = torch.randn(n, d, generator=g) * torch.rand(n, 1, generator=g) * 3
    q = torch.randn(8, d, generator=g)
    return m, q


def test_float32_is_the_exact_product() -> None:
    m, q = _data()
    idx = ItemIndex(m, "float32")
    assert torch.equal(idx.scores(q[0]), m @ q[0])
    assert len(idx) == m.shape[0] and torch.equal(idx.row(3), m[3])


def test_bfloat16_is_close() -> None:
    m, q = _data()
    s = ItemIndex(m, "bfloat16").scores(q[0])
    assert s.dtype == torch.float32
    assert torch.allclose(s, m @ q[0], atol=0.15 * float((m @ q[0]).abs().mean()))


def test_int8_top_rows_are_exact_and_rank_like_float32() -> None:
    m, q = _data()
    idx = ItemIndex(m, "int8", rerank=200)
    if idx.note:
        pytest.skip(idx.note)
    for v in q:
        exact = m @ v
        s = idx.scores(v)
        top = torch.topk(s, 10).indices
        assert torch.equal(top, torch.topk(exact, 10).indices)
        assert torch.allclose(s[top], exact[top], rtol=1e-5, atol=1e-4)  # re-scored exactly
        same = torch.isclose(s, exact, rtol=1e-5, atol=1e-4)
        assert 190 <= int(same.sum()) < len(s) // 2  # the re-scored rows (and a few lucky ones); the rest is not
        err = (s - exact).abs().max()
        assert err < 0.1 * float(exact.abs().max())  # approximate, and close


def test_int8_without_rerank_is_approximate() -> None:
    m, q = _data()
    idx = ItemIndex(m, "int8", rerank=0)
    if idx.note:
        pytest.skip(idx.note)
    s, exact = idx.scores(q[0]), m @ q[0]
    assert not torch.equal(s, exact)
    assert len(set(torch.topk(s, 10).indices.tolist()) & set(torch.topk(exact, 10).indices.tolist())) >= 7


def test_unknown_dtype() -> None:
    with pytest.raises(ValueError, match="int8"):
        ItemIndex(torch.zeros(3, 2), "float16")


def test_low_rank_first_pass_keeps_the_exact_top() -> None:
    g = torch.Generator().manual_seed(1)
    # item rows close to a 24-dimensional subspace of 96 columns (as learned and text columns are)
    m = (torch.randn(20000, 24, generator=g) @ torch.randn(24, 96, generator=g)
         + 0.05 * torch.randn(20000, 96, generator=g)) * torch.rand(20000, 1, generator=g)
    idx = ItemIndex(m, "int8", rerank=128, rank=32)
    if idx.note:
        pytest.skip(idx.note)
    assert "rank 32" in repr(idx)
    for v in torch.randn(8, 96, generator=g):
        exact, s = m @ v, idx.scores(v)
        top = torch.topk(s, 10).indices
        assert torch.equal(top, torch.topk(exact, 10).indices)
        assert torch.allclose(s[top], exact[top], rtol=1e-5, atol=1e-4)
    # a rank below the data's own loses the top; the full width is the plain int8 pass
    coarse = ItemIndex(m, "int8", rerank=10, rank=4)
    v = torch.randn(96, generator=g)
    assert set(torch.topk(coarse.scores(v), 10).indices.tolist()) != set(torch.topk(m @ v, 10).indices.tolist())
    assert "rank" not in repr(ItemIndex(m, "int8", rank=96))
    with pytest.raises(ValueError, match="rank"):
        ItemIndex(m, "int8", rank=-1)
