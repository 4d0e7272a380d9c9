"""A MovieLens-32M-sized heterogeneous graph as one CSC per relation, built once, saved, memory-mapped.

Node types ``user``, ``movie``, ``genre``, ``tag`` (ids contiguous from 0: users in ascending userId order,
movies in ``movies.csv`` order, genres and tags by name). Relations, both directions so messages reach every
type: ``user-rates->movie`` / ``movie-rated_by->user`` (edge attribute rating / 5, float16),
``movie-has_genre->genre`` / ``genre-genre_of->movie`` and ``movie-has_tag->tag`` / ``tag-tag_of->movie``
(user tags lower-cased and aggregated per (movie, tag); the attribute is how many times it was applied).

For relation ``(src, rel, dst)`` the CSC holds ``colptr`` (int64, ``[num_nodes[dst] + 1]``) and ``row``
(int32, ``[E]``): the sources of destination ``d`` are ``row[colptr[d]:colptr[d + 1]]``, ascending. Edge ids
are positions in that order; ``edge_attr[et][e]`` belongs to edge ``e``.

Each user's latest rating (by timestamp; ties: the larger movieId) is held out as ``val`` and is not in the
graph. :meth:`CSRGraph.save` writes one ``.npy`` per array, then ``graph.json`` (sizes, names, each file's
SHA256 and its own digest), last and atomically, so a folder without it holds no graph.
:func:`~qamrec.graph.scale_build.build_scale_graph` builds one from MovieLens-format files.
"""

from __future__ import annotations

import json
import logging
import resource
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from qamrec.errors import MissingDataError, QamrecError
from qamrec.graph.store import EdgeType
from qamrec.io import atomic_path, atomic_write_json, read_json, remove_stale_tmp, sha256_bytes, sha256_file

__all__ = [
    "CSRGraph",
    "csc_from_coo",
    "peak_rss_gb",
    "NODE_TYPES",
    "EDGE_TYPES",
    "RATES",
    "RATED_BY",
    "HAS_GENRE",
    "GENRE_OF",
    "HAS_TAG",
    "TAG_OF",
]

_log = logging.getLogger(__name__)

NODE_TYPES: tuple[str, ...] = ("user", "movie", "genre", "tag")
RATES: EdgeType = ("user", "rates", "movie")
RATED_BY: EdgeType = ("movie", "rated_by", "user")
HAS_GENRE: EdgeType = ("movie", "has_genre", "genre")
GENRE_OF: EdgeType = ("genre", "genre_of", "movie")
HAS_TAG: EdgeType = ("movie", "has_tag", "tag")
TAG_OF: EdgeType = ("tag", "tag_of", "movie")
EDGE_TYPES: tuple[EdgeType, ...] = (RATES, RATED_BY, HAS_GENRE, GENRE_OF, HAS_TAG, TAG_OF)

_FORMAT = "qamrec-csr-1"
_SEP = "__"


def peak_rss_gb() -> float:
    """This process's peak resident set size so far, in GB (``getrusage``; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def _et_name(et: EdgeType) -> str:
    return _SEP.join(et)


def _stable_argsort(a: np.ndarray) -> np.ndarray:
    """Stable argsort (int64 positions) of an integer array; torch's CPU sort is ~3x numpy's timsort here."""
    with warnings.catch_warnings():  # polars hands out read-only arrays; the sort only reads them
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(np.ascontiguousarray(a))
    return torch.sort(t, stable=True)[1].numpy()


def _is_sorted(a: np.ndarray) -> bool:
    return a.size < 2 or bool(np.all(a[1:] >= a[:-1]))


def _lex_sorted(major: np.ndarray, minor: np.ndarray, strict: bool = False) -> bool:
    """Whether rows are in (major, minor) order (``strict``: and no pair twice); one pass of comparisons."""
    if major.size < 2:
        return True
    gt, eq = major[1:] > major[:-1], major[1:] == major[:-1]
    if not bool(np.all(gt | eq)):
        return False
    within = minor[1:] > minor[:-1] if strict else minor[1:] >= minor[:-1]
    return bool(np.all(gt | within))


def csc_from_coo(
    src: np.ndarray, dst: np.ndarray, num_dst: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """CSC of the edges ``src -> dst``: ``(colptr int64, row int32, perm)``.

    Method: a stable sort by source then a stable sort by destination (torch's stable CPU sort), each
    skipped when the input is already in that order; ``colptr`` is the cumulative sum of the destinations'
    ``bincount``. ``perm`` (None when the input already was in CSC order) maps CSC positions to input
    positions, to reorder edge attributes.
    """
    perm: np.ndarray | None = None
    d = dst
    if not _lex_sorted(dst, src):
        if not _is_sorted(src):
            perm = _stable_argsort(src)
            d = dst[perm]
        o = _stable_argsort(d)
        perm = o if perm is None else perm[o]
        d = d[o]
    row = (src if perm is None else src[perm]).astype(np.int32, copy=False)
    colptr = np.zeros(num_dst + 1, dtype=np.int64)
    np.cumsum(np.bincount(d, minlength=num_dst), out=colptr[1:])
    return colptr, row, perm


@dataclass
class CSRGraph:
    """Heterogeneous graph, one CSC per relation (for each destination node, its sources).

    ``colptr[et]`` int64 ``[num_nodes[dst] + 1]``; ``row[et]`` int32 ``[E]`` (sources grouped by destination,
    ascending within a group); ``edge_attr[et]`` (optional) ``[E]`` or ``[E, d]`` aligned with ``row``;
    ``x[t]`` node features (``movie``: float16 text embeddings ``[n, 384]``; absent when built without
    features); ``val`` int64 ``[2, n_val]`` held-out (user, movie) pairs, not in the graph; ``meta``:
    ``movie_ids`` / ``user_ids`` (MovieLens id per node, numpy int64), ``genres``, ``tags`` (names), ``sizes``,
    ``sources`` (file digests), ``build`` (seconds, peak RSS) and what else the builder recorded.
    Tensors of a loaded graph are memory-mapped (copy-on-write: writing to them never reaches the files).
    """

    num_nodes: dict[str, int]
    colptr: dict[EdgeType, Tensor]
    row: dict[EdgeType, Tensor]
    edge_attr: dict[EdgeType, Tensor] = field(default_factory=dict)
    x: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    val: Tensor = field(default_factory=lambda: torch.zeros(2, 0, dtype=torch.long))

    @property
    def node_types(self) -> list[str]:
        return list(self.num_nodes)

    @property
    def edge_types(self) -> list[EdgeType]:
        return list(self.colptr)

    def num_edges(self, et: EdgeType) -> int:
        return int(self.row[et].shape[0])

    def degree(self, et: EdgeType) -> Tensor:
        """In-degree of every destination node of ``et`` (int64)."""
        c = self.colptr[et]
        return c[1:] - c[:-1]

    def edge_index(self, et: EdgeType) -> Tensor:
        """``[2, E]`` int64 (src, dst) in CSC order (edge ``e`` is column ``e``); materialized."""
        deg = self.degree(et)
        dst = torch.repeat_interleave(torch.arange(deg.numel(), dtype=torch.long), deg)
        return torch.stack([self.row[et].long(), dst])

    def sizes(self) -> dict[str, dict[str, int]]:
        """Node count per node type and edge count per edge type (``src__rel__dst``)."""
        return {"nodes": dict(self.num_nodes), "edges": {_et_name(et): self.num_edges(et) for et in self.colptr}}

    @classmethod
    def from_edge_index(
        cls,
        num_nodes: dict[str, int],
        edge_index: dict[EdgeType, Tensor],
        edge_attr: dict[EdgeType, Tensor] | None = None,
        *,
        x: dict[str, Tensor] | None = None,
        val: Tensor | None = None,
        meta: dict[str, Any] | None = None,
    ) -> CSRGraph:
        """A graph from COO edge lists (``[2, E]`` src, dst per relation), e.g. for tests and small graphs."""
        colptr, row, attr = {}, {}, {}
        for et, ei in edge_index.items():
            ei = torch.as_tensor(ei).long()
            c, r, perm = csc_from_coo(ei[0].numpy(), ei[1].numpy(), num_nodes[et[2]])
            colptr[et], row[et] = torch.from_numpy(c), torch.from_numpy(np.ascontiguousarray(r))
            if edge_attr and et in edge_attr:
                a = torch.as_tensor(edge_attr[et])
                attr[et] = a if perm is None else a[torch.from_numpy(perm)]
        v = torch.zeros(2, 0, dtype=torch.long) if val is None else torch.as_tensor(val).long()
        return cls(dict(num_nodes), colptr, row, attr, dict(x or {}), dict(meta or {}), v)

    # -- storage ------------------------------------------------------------------------------------------

    def _arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for et in self.colptr:
            n = _et_name(et)
            out[f"{n}.colptr"] = self.colptr[et].numpy().astype(np.int64, copy=False)
            out[f"{n}.row"] = self.row[et].numpy().astype(np.int32, copy=False)
            if et in self.edge_attr:
                out[f"{n}.edge_attr"] = self.edge_attr[et].numpy()
        for t, v in self.x.items():
            out[f"x.{t}"] = v.numpy()
        out["val"] = self.val.numpy().astype(np.int64, copy=False)
        for t in ("user", "movie"):
            if f"{t}_ids" in self.meta:
                out[f"ids.{t}"] = np.asarray(self.meta[f"{t}_ids"], dtype=np.int64)
        return out

    def save(self, folder: Path) -> None:
        """Write one ``<name>.npy`` per array, then ``graph.json`` (written last: it marks the graph complete).

        ``graph.json`` holds the sizes, node and edge types, the SHA256 of every ``.npy`` (``files``), the
        ``meta`` entries that are not arrays and ``json_sha256``, the digest of its other fields.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(folder)
        (folder / "graph.json").unlink(missing_ok=True)  # never a graph.json beside files it does not describe
        files: dict[str, str] = {}
        for name, arr in self._arrays().items():
            target = folder / f"{name}.npy"
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
            files[name] = sha256_file(target)
        meta = {k: v for k, v in self.meta.items() if k not in ("user_ids", "movie_ids", "json_sha256")}
        body = {
            "format": _FORMAT,
            "num_nodes": dict(self.num_nodes),
            "node_types": list(self.num_nodes),
            "edge_types": [list(et) for et in self.colptr],
            "sizes": self.sizes(),
            "files": files,
            "meta": meta,
        }
        body = json.loads(json.dumps(body))
        atomic_write_json(folder / "graph.json", body | {"json_sha256": _digest(body)})

    @classmethod
    def load(cls, folder: Path, mmap: bool = True, *, verify: bool = True) -> CSRGraph:
        """Read a folder written by :meth:`save`; arrays memory-mapped (copy-on-write) when ``mmap``.

        ``verify`` checks ``graph.json``'s own digest and every file's SHA256 (reads each file once). A
        missing, unreadable or corrupted file raises :class:`MissingDataError` naming it.
        """
        folder = Path(folder)
        meta_path = folder / "graph.json"
        if not meta_path.exists():
            raise MissingDataError(f"{folder}: no CSR graph here (run `qamrec graph scale`)")
        try:
            info = read_json(meta_path)
        except QamrecError as e:
            raise MissingDataError(f"{meta_path}: corrupted ({e}); rebuild with `qamrec graph scale`") from None
        if not isinstance(info, dict) or info.get("format") != _FORMAT:
            raise MissingDataError(f"{meta_path}: not a {_FORMAT} graph (field 'format'); rebuild it")
        if verify and info.get("json_sha256") != _digest({k: v for k, v in info.items() if k != "json_sha256"}):
            raise MissingDataError(f"{meta_path}: corrupted (its digest differs); rebuild with `qamrec graph scale`")
        arrays: dict[str, np.ndarray] = {}
        for name, digest in info["files"].items():
            path = folder / f"{name}.npy"
            if not path.exists():
                raise MissingDataError(f"{path}: missing (listed in graph.json); rebuild with `qamrec graph scale`")
            if verify and sha256_file(path) != digest:
                raise MissingDataError(f"{path}: corrupted (SHA256 differs from graph.json); rebuild the graph")
            try:
                arrays[name] = np.load(path, mmap_mode="c" if mmap else None, allow_pickle=False)
            except (ValueError, OSError) as e:
                raise MissingDataError(f"{path}: unreadable ({e}); rebuild with `qamrec graph scale`") from None
        colptr, row, attr, x = {}, {}, {}, {}
        for et_list in info["edge_types"]:
            et = tuple(et_list)
            n = _et_name(et)  # type: ignore[arg-type]
            colptr[et], row[et] = torch.from_numpy(arrays[f"{n}.colptr"]), torch.from_numpy(arrays[f"{n}.row"])
            if f"{n}.edge_attr" in arrays:
                attr[et] = torch.from_numpy(arrays[f"{n}.edge_attr"])
        for name, arr in arrays.items():
            if name.startswith("x."):
                x[name[2:]] = torch.from_numpy(arr)
        meta = dict(info.get("meta", {}))
        for t in ("user", "movie"):
            if f"ids.{t}" in arrays:
                meta[f"{t}_ids"] = np.asarray(arrays[f"ids.{t}"])
        meta["folder"] = str(folder)
        order = info.get("node_types", list(info["num_nodes"]))
        return cls({k: int(info["num_nodes"][k]) for k in order}, colptr, row, attr, x, meta,  # type: ignore[arg-type]
                   torch.from_numpy(arrays["val"]))


def _digest(body: dict[str, Any]) -> str:
    return sha256_bytes(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8"))
