"""On-disk embedding cache keyed by (encoder name, SHA256 of the content), and cached encoding helpers.

Layout: ``root/<slug of encoder name>/<time>-<random>.safetensors``, append-only shards, each holding ``keys``
(uint8 ``[n, 32]``, raw SHA256 digests) and ``vectors`` (float32 ``[n, dim]``), with the encoder name, the
dimension and a SHA256 of both tensors in the safetensors metadata. Shards are written under a temporary name
and renamed into place. A shard that fails to load, whose metadata or shapes disagree, or whose data no longer
matches its digest (a flipped byte, a truncation) is logged, deleted and never used: its vectors are recomputed.
A process killed while writing leaves at most a temporary file, deleted when the folder is next read.
No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from qamrec.errors import MissingDataError
from qamrec.features.image import PosterEncoder
from qamrec.features.text import TextEncoder, as_texts
from qamrec.io import atomic_path, remove_stale_tmp, sha256_bytes, sha256_file

__all__ = ["EmbeddingCache", "encode_texts", "encode_posters", "text_key", "file_key"]

_log = logging.getLogger(__name__)
_FORMAT = "qamrec-embeddings-1"
_KEY_BYTES = 32


def text_key(text: str) -> bytes:
    """Content key of a text: the raw SHA256 digest of its UTF-8 bytes."""
    return bytes.fromhex(sha256_bytes(text.encode("utf-8")))


def file_key(path: str | Path) -> bytes:
    """Content key of a file: the raw SHA256 digest of its bytes."""
    try:
        return bytes.fromhex(sha256_file(path))
    except FileNotFoundError:
        raise MissingDataError(f"{path}: file not found") from None


def _slug(name: str) -> str:
    """A folder name for an encoder: readable part plus a short hash, so distinct names never collide."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:64] or "encoder"
    return f"{readable}-{sha256_bytes(name.encode('utf-8'))[:8]}"


def _digest(keys: np.ndarray, vectors: np.ndarray) -> str:
    h = hashlib.sha256(keys.tobytes())
    h.update(vectors.tobytes())
    return h.hexdigest()


class _Store:
    """All cached vectors of one encoder, in memory: a row per key, in a buffer that grows by doubling."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.rows: dict[bytes, int] = {}
        self._buf = np.zeros((0, dim), dtype=np.float32)

    @property
    def vectors(self) -> np.ndarray:
        return self._buf[: len(self.rows)]

    def extend(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        fresh: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            if (kb := k.tobytes()) not in self.rows:
                fresh.setdefault(kb, i)
        n, need = len(self.rows), len(self.rows) + len(fresh)
        if need > len(self._buf):
            buf = np.zeros((max(need, 2 * len(self._buf), 1024), self.dim), dtype=np.float32)
            buf[:n] = self._buf[:n]
            self._buf = buf
        self._buf[n:need] = vectors[list(fresh.values())]
        self.rows.update((k, n + j) for j, k in enumerate(fresh))


class EmbeddingCache:
    """Vectors on disk under ``root``, keyed by encoder name and content key (a 32-byte SHA256 digest).

    An encoder's shards are read once per instance, on first use. ``hits`` and ``misses`` count the distinct
    keys looked up, cumulatively over the instance's life.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0
        self._stores: dict[str, _Store] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, hits={self.hits}, misses={self.misses})"

    def folder(self, encoder: str) -> Path:
        """The folder holding ``encoder``'s shards."""
        return self.root / _slug(encoder)

    def _store(self, encoder: str, dim: int) -> _Store:
        store = self._stores.get(encoder)
        if store is None:
            store = self._stores[encoder] = _Store(dim)
            folder = self.folder(encoder)
            remove_stale_tmp(folder)  # shards a killed process was writing
            for shard in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
                loaded = self._read_shard(shard, encoder, dim)
                if loaded is not None:
                    store.extend(*loaded)
        if store.dim != dim:
            raise ValueError(f"encoder {encoder!r}: cached vectors have dim {store.dim}, asked for {dim}")
        return store

    @staticmethod
    def _read_shard(shard: Path, encoder: str, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
        problem = None
        try:
            with safe_open(shard, framework="numpy") as sf:
                meta = sf.metadata() or {}
                names = set(sf.keys())
                keys = sf.get_tensor("keys") if "keys" in names else None
                vectors = sf.get_tensor("vectors") if "vectors" in names else None
            if keys is None or vectors is None:
                problem = "missing 'keys' or 'vectors'"
            elif meta.get("format") != _FORMAT or meta.get("encoder") != encoder:
                problem = f"metadata names another format or encoder ({meta.get('encoder')!r})"
            elif keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != _KEY_BYTES:
                problem = f"keys have dtype {keys.dtype} and shape {keys.shape}"
            elif vectors.dtype != np.float32 or vectors.shape != (len(keys), dim):
                problem = f"vectors have dtype {vectors.dtype} and shape {vectors.shape}, expected ({len(keys)}, {dim})"
            elif meta.get("sha256") != _digest(keys, vectors):
                problem = "data does not match its SHA256"
        except (SafetensorError, OSError, ValueError) as e:
            problem = f"unreadable ({e})"
        if problem is None:
            return keys, vectors
        _log.warning("embedding cache shard %s is corrupted: %s; deleted, its vectors will be recomputed",
                     shard, problem)
        shard.unlink(missing_ok=True)
        return None

    def lookup(self, encoder: str, keys: Sequence[bytes], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Vectors for ``keys``: ``(vectors [n, dim] float32, found [n] bool)``; rows not found are zero.

        Counts each distinct key once as a hit or a miss.
        """
        store = self._store(encoder, dim)
        out = np.zeros((len(keys), dim), dtype=np.float32)
        rows = np.array([store.rows.get(k, -1) for k in keys], dtype=np.int64)
        found = rows >= 0
        out[found] = store.vectors[rows[found]]
        distinct = set(keys)
        n_hit = sum(1 for k in distinct if k in store.rows)
        self.hits += n_hit
        self.misses += len(distinct) - n_hit
        return out, found

    def add(self, encoder: str, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store ``vectors[i]`` under ``keys[i]`` (one new shard on disk); keys already cached are skipped."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(keys):
            raise ValueError(f"{len(keys)} keys but vectors of shape {vectors.shape}")
        if any(len(k) != _KEY_BYTES for k in keys):
            raise ValueError(f"keys must be {_KEY_BYTES}-byte digests")
        store = self._store(encoder, vectors.shape[1])
        fresh: dict[bytes, int] = {}  # new key -> its first row in `vectors`
        for i, k in enumerate(keys):
            if k not in store.rows:
                fresh.setdefault(k, i)
        if not fresh:
            return
        k_arr = np.frombuffer(b"".join(fresh), dtype=np.uint8).reshape(-1, _KEY_BYTES).copy()
        v_arr = np.ascontiguousarray(vectors[list(fresh.values())])
        meta = {"format": _FORMAT, "encoder": encoder, "dim": str(v_arr.shape[1]), "sha256": _digest(k_arr, v_arr)}
        target = self.folder(encoder) / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.safetensors"
        with atomic_path(target) as tmp:
            save_file({"keys": k_arr, "vectors": v_arr}, str(tmp), metadata=meta)
        store.extend(k_arr, v_arr)

    def count(self, encoder: str, dim: int) -> int:
        """How many vectors are cached for ``encoder``."""
        return len(self._store(encoder, dim).rows)


#: vectors encoded between two cache writes
_COMMIT_EVERY = 2048


def _encode_cached(
    keys: list[bytes], encoder_name: str, dim: int, encode: Callable[[list[int]], np.ndarray],
    cache: EmbeddingCache | None,
) -> np.ndarray:
    """Vectors for ``keys`` in order, encoding each distinct missing key once via ``encode(input indices)``."""
    first: dict[bytes, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    uniq = list(first)
    if cache is not None:
        vecs, found = cache.lookup(encoder_name, uniq, dim)
    else:
        vecs, found = np.zeros((len(uniq), dim), dtype=np.float32), np.zeros(len(uniq), dtype=bool)
    missing = np.flatnonzero(~found)
    for s in range(0, len(missing), _COMMIT_EVERY):  # commit as we go: a killed build keeps what it encoded
        part = missing[s:s + _COMMIT_EVERY]
        new = np.asarray(encode([first[uniq[j]] for j in part]), dtype=np.float32)
        vecs[part] = new
        if cache is not None:
            cache.add(encoder_name, [uniq[j] for j in part], new)
    pos = {k: j for j, k in enumerate(uniq)}
    return vecs[np.array([pos[k] for k in keys], dtype=np.int64)] if keys else vecs[:0]


def encode_texts(
    texts: Sequence[str], encoder: TextEncoder, cache: EmbeddingCache | None = None, *, progress: bool = False
) -> np.ndarray:
    """Embed ``texts`` (float32 ``[n, dim]``, input order), encoding each distinct uncached text once."""
    texts = as_texts(texts)
    keys = [text_key(t) for t in texts]
    return _encode_cached(keys, encoder.name, encoder.dim,
                          lambda idx: encoder.encode([texts[i] for i in idx], progress=progress), cache)


def encode_posters(
    paths: Sequence[str | Path], encoder: PosterEncoder, cache: EmbeddingCache | None = None, *,
    progress: bool = False,
) -> np.ndarray:
    """Embed image files (float32 ``[n, 1280]``, input order), keyed by file content; identical files once."""
    if isinstance(paths, (str, Path)):
        raise TypeError("paths must be a sequence of paths, not a single path")
    paths = list(paths)
    keys = [file_key(p) for p in paths]
    return _encode_cached(keys, encoder.name, encoder.dim,
                          lambda idx: encoder.encode_files([paths[i] for i in idx], progress=progress), cache)
