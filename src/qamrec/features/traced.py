"""A TorchScript copy of a sentence-transformers model for single-text, low-latency encoding (serving).

``SentenceTransformer.encode`` spends a third of a one-query call outside the network (device checks, mode
switches, batching by length, Python dispatch in every layer). For one text at a time the whole pipeline
(transformer, pooling, normalization) is traced once with :func:`torch.jit.trace`, frozen and optimized for
inference (:func:`torch.jit.freeze`, :func:`torch.jit.optimize_for_inference`). The traced copy is checked
against the model itself on sample texts of different lengths before it is used: if tracing fails or any
embedding differs by more than ``tol``, encoding falls back to the model's own ``encode`` (and says why in
:attr:`TracedTextEncoder.fallback`). Batches of several texts always take the model's own path.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from qamrec.features.text import TextEncoder, as_texts

__all__ = ["TracedTextEncoder", "SentencePipeline", "CHECK_TEXTS"]

#: texts of different lengths the traced copy must reproduce before it is used
CHECK_TEXTS = (
    "hi",
    "a slow-burn sci-fi with a twist, like Arrival, nothing gory",
    "I loved Ocean's Eleven and The Italian Job; something with a clever heist and a great ensemble cast, "
    "funny but not silly, maybe from the nineties or two thousands, and please no horror or gore at all.",
)


class SentencePipeline(torch.nn.Module):
    """The sentence-transformers modules as a function of plain tensors (what :func:`torch.jit.trace` needs)."""

    def __init__(self, model: Any, keys: Sequence[str], extra: dict[str, Any]) -> None:
        super().__init__()
        self.model, self.keys, self.extra = model, tuple(keys), extra

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        features = dict(zip(self.keys, tensors)) | self.extra
        return self.model(features)["sentence_embedding"]


class TracedTextEncoder:
    """Encode one text at a time through a traced, frozen copy of ``encoder``'s model.

    Args:
        encoder: the :class:`~qamrec.features.text.TextEncoder` to copy; used as is for batches.
        tol: the largest absolute difference allowed between the copy's embeddings and the model's own.

    Attributes:
        fallback: ``None`` when the traced copy is used, otherwise why it is not.
    """

    def __init__(self, encoder: TextEncoder, tol: float = 1e-4) -> None:
        self.encoder, self.name, self.dim = encoder, encoder.name, encoder.dim
        self.fallback: str | None = None
        self._st = encoder._model
        self._keys: tuple[str, ...] = ()
        self._traced: torch.jit.ScriptModule | None = None
        try:
            self._traced = self._trace()
            ref = encoder.encode(list(CHECK_TEXTS))
            got = np.concatenate([self._run(t) for t in CHECK_TEXTS])
            err = float(np.abs(ref - got).max())
            if not err <= tol:
                self._traced, self.fallback = None, f"traced copy differs by {err:.2e} (> {tol:.0e})"
        except Exception as e:  # any model the tracer cannot follow keeps the model's own path
            self._traced, self.fallback = None, f"{type(e).__name__}: {e}"

    def __repr__(self) -> str:
        how = "traced" if self._traced is not None else f"eager ({self.fallback})"
        return f"{type(self).__name__}(name={self.name!r}, {how})"

    @property
    def traced(self) -> bool:
        return self._traced is not None

    def _inputs(self, text: str) -> tuple[torch.Tensor, ...]:
        features = self._st.preprocess([text])
        return tuple(features[k] for k in self._keys)

    def _trace(self) -> torch.jit.ScriptModule:
        features = self._st.preprocess([CHECK_TEXTS[1]])
        self._keys = tuple(k for k, v in features.items() if isinstance(v, torch.Tensor))
        extra = {k: v for k, v in features.items() if not isinstance(v, torch.Tensor)}
        module = SentencePipeline(self._st, self._keys, extra).eval()
        example = tuple(features[k] for k in self._keys)
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the tracer's notes on Python values it records as constants
            traced = torch.jit.trace(module, example, check_trace=False, strict=False)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))

    def _run(self, text: str) -> np.ndarray:
        assert self._traced is not None
        with torch.inference_mode():
            out = self._traced(*self._inputs(text))
        return out.float().numpy().reshape(1, self.dim)

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed ``texts`` ([len(texts), dim] float32, unit rows); one text goes through the traced copy."""
        texts = as_texts(texts)
        if len(texts) == 1 and self._traced is not None:
            return self._run(texts[0])
        return self.encoder.encode(texts, progress=progress)

    __call__ = encode
