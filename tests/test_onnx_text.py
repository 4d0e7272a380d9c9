"""OnnxTextEncoder: the exported copy reproduces the model, a damaged file is exported again, and any failure
falls back to the traced copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qamrec.features import onnx_text
from qamrec.features.onnx_text import OnnxTextEncoder
from qamrec.features.text import TextEncoder


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def test_onnx_copy_matches_the_model_and_survives_damage(encoder: TextEncoder, tmp_path: Path) -> None:
    fast = OnnxTextEncoder(encoder, tmp_path, threads=1)
    assert fast.uses_onnx and fast.fallback is None, fast.fallback
    assert fast.path.is_file() and fast.path.parent == tmp_path / "onnx"
    for t in ["", "noir detective story", "Amélie – 天使 💫 " * 12]:
        np.testing.assert_allclose(fast.encode([t]), encoder.encode([t]), atol=1e-5)
    np.testing.assert_array_equal(fast.encode(["a", "b"]), encoder.encode(["a", "b"]))  # batches: the model
    # a damaged file is not used: it is exported again
    fast.path.write_bytes(fast.path.read_bytes()[:1000])
    again = OnnxTextEncoder(encoder, tmp_path, threads=1)
    assert again.uses_onnx and fast.path.stat().st_size > 1_000_000
    np.testing.assert_allclose(again.encode(["heist"]), encoder.encode(["heist"]), atol=1e-5)
    assert not list((tmp_path / "onnx").glob("*.tmp*"))  # nothing half-written left behind


def test_falls_back_to_the_traced_copy(encoder: TextEncoder, tmp_path: Path, monkeypatch) -> None:
    def broken(st, target):
        raise RuntimeError("exporter says no")

    monkeypatch.setattr(onnx_text, "_export", broken)
    fast = OnnxTextEncoder(encoder, tmp_path)
    assert not fast.uses_onnx and "exporter says no" in (fast.fallback or "")
    assert "TracedTextEncoder" in repr(fast)
    np.testing.assert_allclose(fast.encode(["heist"]), encoder.encode(["heist"]), atol=1e-5)
