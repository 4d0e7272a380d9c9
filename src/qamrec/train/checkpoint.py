"""Training checkpoints: an interrupted ``qamrec train`` goes on exactly where it stopped.

At the end of every epoch the training loop writes into ``RUN/checkpoint/``:

* ``state-<epoch>.safetensors``: the model's weights (``model/*``), the best epoch's weights (``best/*``),
  the optimizer's tensors (``optim/<param>/<name>``), the weights' moving average if any (``ema/*``) and the
  RNG states (``rng/torch``: dropout, ``rng/shuffle``: the order of the training examples);
* then ``checkpoint.json``: the epoch, the per-epoch history, the best epoch and its dev metric, the
  early-stopping counter, the optimizer's settings, the identity of the training (below), the tensor
  file's name and SHA256.

Each file is written atomically and the JSON last, naming its tensor file; older tensor files are deleted
after. A process killed at any moment therefore leaves the previous complete checkpoint. Restoring all of
it makes a resumed training end with the same weights and metrics as one never interrupted (same seed,
same number of threads). A tensor file that fails its digest is logged and not used: training starts over.

The identity is what must match to resume: the dataset, the model, the graph (its folder, which carries
the graph's key) and the settings that shape training (``seed``, ``features``, ``graph``, ``model``,
``train`` except ``train.threads``). A checkpoint of another identity is refused, naming the settings that
differ. A setting added after the checkpoint was written counts as what training did before it existed
(:func:`~qamrec.config.saved_config`), so adding an option with a default that changes nothing does not
orphan the checkpoints of trainings under way. The folder goes away when the run directory is complete (see
:mod:`qamrec.train.run`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor

from qamrec.config import Config, saved_config
from qamrec.errors import QamrecError
from qamrec.io import atomic_path, atomic_write_json, read_json, remove_stale_tmp, sha256_file

__all__ = ["TrainState", "Checkpointer", "checkpointing", "active_checkpointer", "train_identity", "as_trained",
           "CHECKPOINT_DIR"]

_log = logging.getLogger(__name__)
_FORMAT = "qamrec-checkpoint-1"
#: the checkpoint's folder inside a run directory
CHECKPOINT_DIR = "checkpoint"
_JSON = "checkpoint.json"


@dataclass
class TrainState:
    """Everything the training loop needs to go on after ``epoch``."""

    epoch: int
    history: list[dict[str, float]]
    best_epoch: int
    best_ndcg: float
    bad: int  # epochs since the best one (early stopping)
    stopped: bool  # early stopping ended the training at ``epoch``
    seconds: float  # training time so far
    model: dict[str, Tensor]
    best: dict[str, Tensor]
    optimizer: dict[str, Any]  # an optimizer ``state_dict()``
    rng_torch: Tensor
    rng_shuffle: Tensor
    averaged: dict[str, Tensor] = field(default_factory=dict)  # the weights' moving average (``train.ema``)


def train_identity(dataset: str, model: str, config: Config, graph_folder: str) -> dict[str, Any]:
    """What a checkpoint must share with a training to be resumed by it (see the module docstring)."""
    c = json.loads(config.model_dump_json())
    c["train"].pop("threads", None)
    return {"dataset": dataset, "model": model, "graph": graph_folder,
            "config": {k: c[k] for k in ("seed", "features", "graph", "model", "train")}}


def as_trained(saved: Any) -> Any:
    """A checkpoint's ``saved`` identity with the settings of its ``config`` that it predates filled in as what
    training did before they existed (:func:`~qamrec.config.saved_config`), comparable with today's
    :func:`train_identity` (what a trainer adds beside ``config`` is kept as saved); ``saved`` itself when it
    is not of that shape."""
    try:
        then = saved_config(saved["config"], qamrec=saved["model"] == "qamrec")
        return saved | {"config": train_identity(saved["dataset"], saved["model"], then, saved["graph"])["config"]}
    except (KeyError, TypeError, ValueError):
        return saved


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    a, b = _flat(saved), _flat(current)
    return [f"{k.removeprefix('config.')}: {a.get(k, '-')!r} then, {b.get(k, '-')!r} now"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _split(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


class Checkpointer:
    """The checkpoint of one training in ``folder`` (``RUN/checkpoint``) for a training of ``identity``."""

    def __init__(self, folder: Path, identity: dict[str, Any]) -> None:
        self.folder, self.identity = Path(folder), identity
        self.resumed_from: int | None = None  # the epoch :meth:`load` restored, if any

    def _meta(self) -> dict[str, Any] | None:
        p = self.folder / _JSON
        if not p.exists():
            return None
        try:
            meta = read_json(p)
        except QamrecError as e:
            _log.warning("%s; the checkpoint is not used, training starts over", e)
            return None
        return meta if isinstance(meta, dict) and meta.get("format") == _FORMAT else None

    def saved_epoch(self) -> int | None:
        """The epoch of the complete checkpoint on disk, or ``None`` when there is none.

        Raises :class:`QamrecError` when it belongs to a training with another identity.
        """
        meta = self._meta()
        if meta is None:
            return None
        saved = as_trained(meta.get("identity"))
        if saved != self.identity:
            diff = _differences(saved or {}, self.identity)
            raise QamrecError(
                f"{self.folder} holds an interrupted training with other settings ({'; '.join(diff)}); "
                "train with the same settings to resume it, pass --no-resume to start over, or choose another --out")
        return int(meta["epoch"])

    def save(self, state: TrainState) -> None:
        """Write ``state`` (tensor file first, then the JSON that names it); drop older tensor files."""
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(self.folder)
        tensors = {f"model/{k}": v for k, v in state.model.items()} | {f"best/{k}": v for k, v in state.best.items()}
        tensors |= {f"ema/{k}": v for k, v in state.averaged.items()}
        scalars: dict[str, dict[str, Any]] = {}
        for pid, st in state.optimizer["state"].items():
            for name, v in st.items():
                if isinstance(v, Tensor):
                    tensors[f"optim/{pid}/{name}"] = v
                else:
                    scalars.setdefault(str(pid), {})[name] = v
        tensors |= {"rng/torch": state.rng_torch, "rng/shuffle": state.rng_shuffle}
        name = f"state-{state.epoch:04d}.safetensors"
        with atomic_path(self.folder / name) as tmp:
            save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(tmp))
        atomic_write_json(self.folder / _JSON, {
            "format": _FORMAT, "identity": self.identity, "epoch": state.epoch, "history": state.history,
            "best_epoch": state.best_epoch, "best_ndcg": state.best_ndcg, "bad": state.bad,
            "stopped": state.stopped, "seconds": state.seconds, "state_file": name,
            "sha256": sha256_file(self.folder / name),
            "optimizer": {"param_groups": state.optimizer["param_groups"], "scalars": scalars},
        })
        for old in self.folder.glob("state-*.safetensors"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def load(self) -> TrainState | None:
        """The saved state, or ``None`` when there is none or its tensor file fails its digest (logged)."""
        meta = self._meta()
        if meta is None:
            return None
        path = self.folder / str(meta.get("state_file"))
        if not path.is_file() or sha256_file(path) != meta.get("sha256"):
            _log.warning("%s: missing or corrupted (digest differs from %s); training starts over", path, _JSON)
            return None
        t = load_file(str(path))
        state: dict[int, dict[str, Any]] = {}
        for key, v in _split(t, "optim/").items():
            pid, name = key.split("/", 1)
            state.setdefault(int(pid), {})[name] = v
        for pid, values in meta["optimizer"]["scalars"].items():
            state.setdefault(int(pid), {}).update(values)
        groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
                  for g in meta["optimizer"]["param_groups"]]
        self.resumed_from = int(meta["epoch"])
        return TrainState(
            epoch=int(meta["epoch"]), history=list(meta["history"]), best_epoch=int(meta["best_epoch"]),
            best_ndcg=float(meta["best_ndcg"]), bad=int(meta["bad"]), stopped=bool(meta["stopped"]),
            seconds=float(meta["seconds"]), model=_split(t, "model/"), best=_split(t, "best/"),
            optimizer={"state": state, "param_groups": groups}, rng_torch=t["rng/torch"], rng_shuffle=t["rng/shuffle"],
            averaged=_split(t, "ema/"))

    def clear(self) -> None:
        """Delete the checkpoint."""
        shutil.rmtree(self.folder, ignore_errors=True)


_ACTIVE: ContextVar[Checkpointer | None] = ContextVar("qamrec_checkpointer", default=None)


@contextlib.contextmanager
def checkpointing(checkpointer: Checkpointer) -> Iterator[Checkpointer]:
    """Within the block, :func:`~qamrec.train.loop.fit_net` resumes from and saves to ``checkpointer``."""
    token = _ACTIVE.set(checkpointer)
    try:
        yield checkpointer
    finally:
        _ACTIVE.reset(token)


def active_checkpointer() -> Checkpointer | None:
    """The checkpointer of the enclosing :func:`checkpointing` block, if any."""
    return _ACTIVE.get()
