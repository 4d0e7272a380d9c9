"""TracedTextEncoder: the traced copy reproduces the model, and anything it cannot trace keeps the model's path."""

from __future__ import annotations

import numpy as np
import pytest

from qamrec.features.text import TextEncoder
from qamrec.features.traced import TracedTextEncoder


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def test_traced_copy_matches_the_model(encoder: TextEncoder) -> None:
    fast = TracedTextEncoder(encoder)
    assert fast.traced and fast.fallback is None, fast.fallback
    texts = ["", "Heist", "funny heist movie with a great ensemble, like Ocean's Eleven (2001)",
             "Amélie – 天使 💫 " * 12]  # empty, one word, punctuation, unicode longer than the model's window
    for t in texts:
        got = fast.encode([t])
        assert got.shape == (1, encoder.dim) and got.dtype == np.float32
        np.testing.assert_allclose(got, encoder.encode([t]), atol=1e-5)
        assert abs(float(np.linalg.norm(got)) - 1.0) < 1e-5
    batch = fast.encode(texts[1:3])  # several texts: the model's own path
    np.testing.assert_array_equal(batch, encoder.encode(texts[1:3]))
    assert fast.encode([]).shape == (0, encoder.dim)
    with pytest.raises(TypeError):
        fast.encode("not a list")


class _Untraceable:
    """Looks like a TextEncoder but its model cannot be traced."""

    name, dim = "stub", 3
    _model = object()

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return np.ones((len(texts), 3), dtype=np.float32)


def test_falls_back_when_tracing_fails() -> None:
    fast = TracedTextEncoder(_Untraceable())  # type: ignore[arg-type]
    assert not fast.traced and "AttributeError" in (fast.fallback or "")
    np.testing.assert_array_equal(fast.encode(["x"]), np.ones((1, 3), dtype=np.float32))
    assert "eager" in repr(fast)
