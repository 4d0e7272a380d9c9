"""The encoders a configuration asks for, as plain functions with the embedding cache in front."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from qamrec.config import Config

__all__ = ["text_function", "text_encoder", "poster_function"]


@lru_cache(maxsize=4)
def _text(model: str, batch_size: int, cache_root: Path):
    from qamrec.features.cache import EmbeddingCache
    from qamrec.features.text import TextEncoder

    return TextEncoder(model, batch_size=batch_size), EmbeddingCache(cache_root)


def text_encoder(config: Config):
    """The configured :class:`~qamrec.features.text.TextEncoder` itself (no cache: for one-off queries)."""
    return _text(config.features.text_model, config.features.batch_size, config.cache_dir)[0]


def text_function(config: Config, progress: bool = False) -> Callable[[list[str]], np.ndarray]:
    """``texts -> [n, dim]`` L2-normalized float32, cached under ``config.cache_dir`` by model and content."""
    from qamrec.features.cache import encode_texts

    encoder, cache = _text(config.features.text_model, config.features.batch_size, config.cache_dir)

    def encode(texts: list[str]) -> np.ndarray:
        return encode_texts(list(texts), encoder, cache, progress=progress)

    encode.dim = encoder.dim  # type: ignore[attr-defined]
    encode.model_name = encoder.name  # type: ignore[attr-defined]
    return encode


def poster_function(config: Config, progress: bool = False) -> Callable[[list[str]], np.ndarray] | None:
    """``poster paths (relative to the raw folder) -> [n, 1280]``, cached by file content; None if disabled."""
    if not config.features.posters:
        return None
    from qamrec.features.cache import EmbeddingCache, encode_posters
    from qamrec.features.image import PosterEncoder

    encoder, cache = PosterEncoder(), EmbeddingCache(config.cache_dir)
    raw = config.raw_dir

    def encode(paths: list[str]) -> np.ndarray:
        return encode_posters([raw / p for p in paths], encoder, cache, progress=progress)

    return encode
