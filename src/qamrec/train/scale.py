"""``qamrec train --dataset movielens-32m-synth|movielens-32m|FOLDER``: the MovieLens-format files of a dataset,
their :class:`~qamrec.graph.csr.CSRGraph` (built once per source files and features setting, reused after), and
:func:`~qamrec.train.sampled.train_sampled` on it, in one process or under ``torchrun``.

Under ``torchrun`` the first process of every machine (``LOCAL_RANK`` 0) builds the graph when it is missing
(the others wait), so machines without a shared file system each build their own copy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from qamrec.config import Config
from qamrec.errors import MissingDataError
from qamrec.train.distributed import DistInfo, barrier, init_from_env, shutdown

__all__ = ["ML_FOLDERS", "is_scale_dataset", "dataset_files", "scale_graph", "train_scale"]

#: MovieLens datasets in the data home that train with sampled mini-batches, and their folders under raw/
ML_FOLDERS = {"movielens-32m-synth": "movielens/ml-32m-synth", "movielens-32m": "movielens/ml-32m",
              "movielens-25m": "movielens/ml-25m", "movielens-small": "movielens/ml-latest-small"}


def is_scale_dataset(dataset: str) -> bool:
    """Whether ``dataset`` names a MovieLens dataset (or a folder of MovieLens files) for sampled training."""
    return dataset in ML_FOLDERS or Path(dataset).expanduser().is_dir()


def dataset_files(dataset: str, config: Config) -> tuple[str, dict[str, Path | None]]:
    """(name, {"ratings", "tags", "movies"}) of a dataset, named as ``qamrec graph scale`` names it
    (``synth-<scale>``, else the folder's name): ``ratings.csv`` and ``movies.csv`` are required, ``tags.csv``
    optional. Raises :class:`MissingDataError` naming what is missing and how to get it."""
    from qamrec.graph.scale_build import scale_sources

    if dataset == "movielens-32m-synth":
        ratings, tags, movies, name = scale_sources(config, "synth")
        return name, {"ratings": ratings, "tags": tags if tags and tags.exists() else None, "movies": movies}
    folder = config.raw_dir / ML_FOLDERS[dataset] if dataset in ML_FOLDERS else Path(dataset).expanduser()
    if not (folder / "ratings.csv").is_file() and dataset in ML_FOLDERS:
        raise MissingDataError(f"{folder / 'ratings.csv'}: missing; get it with `qamrec data fetch {dataset}`")
    ratings, tags, movies, name = scale_sources(config, str(folder))
    return name, {"ratings": ratings, "tags": tags, "movies": movies}


def _current(folder: Path, files: dict[str, Path | None], features: bool) -> bool:
    """Whether the graph in ``folder`` was built from files of the same sizes, with features when ``features``."""
    from qamrec.io import read_json

    try:
        meta = read_json(folder / "graph.json").get("meta", {})
    except Exception:  # noqa: BLE001 - missing or unreadable: not current
        return False
    srcs = meta.get("sources", {})
    same = all(srcs.get(k, {}).get("bytes") == p.stat().st_size for k, p in files.items() if p is not None)
    have = {k for k, p in files.items() if p is not None}
    return same and set(srcs) == have and (bool(meta.get("features")) or not features)


def scale_graph(dataset: str, config: Config, *, info: DistInfo | None = None,
                log: Callable[[str], None] = lambda s: None) -> tuple[Any, Path]:
    """The dataset's CSR graph, in ``config.graph_dir / "scale-<name>"`` (the folder ``qamrec graph scale``
    writes), built there when missing or stale (with text features when ``sampled.text_features``), then
    loaded memory-mapped. Returns (graph, folder)."""
    from qamrec.graph.csr import CSRGraph
    from qamrec.graph.scale_build import build_scale_graph

    info = info or DistInfo()
    name, files = dataset_files(dataset, config)
    features = config.sampled.text_features
    folder = config.graph_dir / f"scale-{name}"
    if info.local_rank == 0 and not _current(folder, files, features):
        log(f"building the graph of {name} into {folder}")
        encode: Any = False
        if features:
            from qamrec.features.pipeline import text_function

            encode = text_function(config)
        build_scale_graph(files["ratings"], files["tags"], files["movies"], folder,  # type: ignore[arg-type]
                          seed=config.seed, features=encode, progress=log)
    barrier(info)
    return CSRGraph.load(folder), folder


def train_scale(dataset: str, config: Config, out: Path, *,
                on_epoch: Callable[[dict[str, float]], None] = lambda r: None,
                log: Callable[[str], None] = lambda s: None, overwrite: bool = False, resume: bool = True,
                device: str | None = None) -> tuple[dict[str, Any], DistInfo]:
    """Join ``torchrun``'s process group if any, get the graph, train, write ``out`` (rank 0); returns
    (metrics, this process's :class:`DistInfo`). ``config.train.threads`` sets torch's threads per process."""
    from qamrec.train.sampled import train_sampled

    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    info = init_from_env(device)
    try:
        graph, folder = scale_graph(dataset, config, info=info, log=log)
        metrics = train_sampled(graph, config, out, dataset=dataset, graph_folder=str(folder), info=info,
                                on_epoch=on_epoch, log=log, overwrite=overwrite, resume=resume)
    finally:
        shutdown(info)
    return metrics, info
