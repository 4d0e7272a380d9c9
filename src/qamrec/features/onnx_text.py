"""ONNX Runtime copy of a sentence-transformers model for single-text, low-latency encoding (serving).

One MiniLM query through PyTorch costs about 15 ms on one core of this project's CPU, most of it in many small
operator calls. ONNX Runtime runs the same network with fused attention, layer-norm and GELU kernels in about
9.5 ms on one thread and 5.7 ms on two. The whole sentence-transformers pipeline (transformer, pooling,
normalization) is exported once with :func:`torch.onnx.export` to ``<cache>/onnx/<model id>.onnx`` (written
to a temporary name and renamed; the file is plain ONNX protobuf, never pickle), then checked against the model
itself on sample texts of different lengths. If export, loading or the check fails, encoding falls back to
:class:`~qamrec.features.traced.TracedTextEncoder` (and :attr:`OnnxTextEncoder.fallback` says why). Batches of
several texts always take the model's own path.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qamrec.features.text import TextEncoder, as_texts
from qamrec.features.traced import CHECK_TEXTS, SentencePipeline, TracedTextEncoder
from qamrec.io import atomic_path

__all__ = ["OnnxTextEncoder"]


def _export(st: Any, target: Path) -> None:
    """Export ``st`` (a SentenceTransformer) as a function of its tokenizer's tensors, sequence length dynamic."""
    features = st.preprocess([CHECK_TEXTS[1]])
    keys = [k for k, v in features.items() if isinstance(v, torch.Tensor)]
    extra = {k: v for k, v in features.items() if not isinstance(v, torch.Tensor)}
    module = SentencePipeline(st, keys, extra).eval()
    axes = {k: {0: "batch", 1: "tokens"} for k in keys}
    with atomic_path(target) as tmp, warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the exporter's notes on Python values it records as constants
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(module, tuple(features[k] for k in keys), str(tmp), input_names=keys,
                          output_names=["embedding"], dynamic_axes=axes | {"embedding": {0: "batch"}},
                          opset_version=17, dynamo=False)


class OnnxTextEncoder:
    """Encode one text at a time through an ONNX Runtime copy of ``encoder``'s model.

    Args:
        encoder: the :class:`~qamrec.features.text.TextEncoder` to copy; used as is for batches.
        cache_dir: where the exported model is kept (``<cache_dir>/onnx/``), keyed by the model's id.
        threads: ONNX Runtime intra-op threads (0: torch's current number of threads).
        tol: the largest absolute difference allowed between the copy's embeddings and the model's own.

    Attributes:
        fallback: ``None`` when ONNX Runtime is used, otherwise why not (then the traced copy encodes).
    """

    def __init__(self, encoder: TextEncoder, cache_dir: str | Path, threads: int = 0, tol: float = 1e-4) -> None:
        self.encoder, self.name, self.dim = encoder, encoder.name, encoder.dim
        self.fallback: str | None = None
        self._st = encoder._model
        self._session: Any = None
        self._keys: list[str] = []
        digest = hashlib.sha256(f"{encoder.name}|{torch.__version__}".encode()).hexdigest()[:16]
        self.path = Path(cache_dir) / "onnx" / f"{digest}.onnx"
        try:
            self._session = self._load(threads)
            ref = encoder.encode(list(CHECK_TEXTS))
            got = np.concatenate([self._run(t) for t in CHECK_TEXTS])
            err = float(np.abs(ref - got).max())
            if not err <= tol:
                self._session, self.fallback = None, f"ONNX copy differs by {err:.2e} (> {tol:.0e})"
        except Exception as e:  # no onnxruntime, a model the exporter cannot follow, a damaged file ...
            self._session, self.fallback = None, f"{type(e).__name__}: {e}"
        self._traced = TracedTextEncoder(encoder) if self._session is None else None

    def __repr__(self) -> str:
        how = "onnxruntime" if self._session is not None else f"{self._traced!r} ({self.fallback})"
        return f"{type(self).__name__}(name={self.name!r}, {how})"

    @property
    def uses_onnx(self) -> bool:
        return self._session is not None

    def _load(self, threads: int) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # no busy-waiting between runs: torch's own threads score the query right after encoding it
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")

        def session() -> Any:
            return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

        if self.path.exists():
            try:
                s = session()
                self._keys = [i.name for i in s.get_inputs()]
                return s
            except Exception:  # damaged or from another exporter: export it again
                self.path.unlink(missing_ok=True)
        _export(self._st, self.path)
        s = session()
        self._keys = [i.name for i in s.get_inputs()]
        return s

    def _run(self, text: str) -> np.ndarray:
        features = self._st.preprocess([text])
        feeds = {k: features[k].numpy() for k in self._keys}
        out = self._session.run(None, feeds)[0]
        return np.ascontiguousarray(out, dtype=np.float32).reshape(1, self.dim)

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed ``texts`` ([len(texts), dim] float32, unit rows); one text goes through ONNX Runtime."""
        texts = as_texts(texts)
        if len(texts) != 1:
            return self.encoder.encode(texts, progress=progress)
        if self._session is not None:
            return self._run(texts[0])
        assert self._traced is not None
        return self._traced.encode(texts)

    __call__ = encode
