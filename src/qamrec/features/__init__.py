"""Offline encoders for movie texts and posters, with an on-disk embedding cache.

Example::

    enc = TextEncoder()                       # all-MiniLM-L6-v2, bundled, 384-d
    cache = EmbeddingCache(home / "embeddings")
    x = encode_texts(plots, enc, cache)       # float32 [n, 384], L2-normalized; only misses are encoded
"""

from qamrec.features.cache import EmbeddingCache, encode_posters, encode_texts, file_key, text_key
from qamrec.features.image import PosterEncoder, load_image
from qamrec.features.text import DEFAULT_TEXT_MODEL, TextEncoder, text_model_id

__all__ = [
    "TextEncoder",
    "PosterEncoder",
    "EmbeddingCache",
    "encode_texts",
    "encode_posters",
    "text_key",
    "file_key",
    "load_image",
    "text_model_id",
    "DEFAULT_TEXT_MODEL",
]
