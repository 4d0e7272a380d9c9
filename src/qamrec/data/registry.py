"""The dataset registry: every dataset qamrec knows, its files with SHA256 digests, and where to get them.

The registry is the versioned file ``datasets.toml`` beside this module (CRSLab style: datasets are files
with digests). A file with an empty digest has none on record; its digest is recorded on first fetch.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict

from qamrec.errors import QamrecError

__all__ = ["FileSpec", "SourceSpec", "DatasetSpec", "registry", "get_dataset", "dataset_names"]


class FileSpec(BaseModel):
    """One file of a dataset, at ``path`` relative to the data root."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    sha256: str = ""
    size: int | None = None
    required: bool = True
    note: str = ""


class SourceSpec(BaseModel):
    """One official download: a plain file or an archive whose members land under ``dest``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    sha256: str = ""
    archive: Literal["none", "zip"] = "none"
    #: for ``archive="none"``: the registry path the download is saved to
    path: str = ""
    #: for ``archive="zip"``: member-name prefix to strip, and the registry folder the members go to
    strip: str = ""
    dest: str = ""
    note: str = ""


class DatasetSpec(BaseModel):
    """A dataset: a description, its license, its files and its official sources."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    license: str
    files: tuple[FileSpec, ...]
    sources: tuple[SourceSpec, ...] = ()
    #: a ``sha256sum``-style manifest (a file of this dataset) listing the files of the folder named by its
    #: stem: ``posters.SHA256SUMS`` lists ``posters/<id>.jpg``
    manifest: str | None = None
    #: why the dataset has no official source, or which of its files no official source provides
    note: str = ""

    def digest(self, path: str) -> str:
        """The SHA256 on record for ``path``; ``""`` when the file is unlisted or has none on record."""
        return next((f.sha256 for f in self.files if f.path == path), "")


@cache
def registry() -> dict[str, DatasetSpec]:
    """All datasets, by name, from ``datasets.toml``."""
    raw = tomllib.loads(resources.files("qamrec.data").joinpath("datasets.toml").read_text("utf-8"))
    return {name: DatasetSpec(name=name, **spec) for name, spec in raw["datasets"].items()}


def dataset_names() -> list[str]:
    return list(registry())


def get_dataset(name: str) -> DatasetSpec:
    try:
        return registry()[name]
    except KeyError:
        raise QamrecError(f"unknown dataset '{name}' (known: {', '.join(dataset_names())})") from None
