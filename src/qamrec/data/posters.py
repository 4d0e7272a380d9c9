"""Poster files: one JPEG per MovieLens movieId, ``posters/<movieId>.jpg`` under the data root."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from PIL import Image, UnidentifiedImageError

__all__ = ["scan_posters"]


def scan_posters(folder: str | Path, relative_to: str | Path | None = None) -> pl.DataFrame:
    """List poster files as ``movielens_id, path, bytes, width, height``; unreadable images are dropped.

    Only the image header is read (PIL opens lazily), so scanning ten thousand posters takes a second or two.
    Returns the frame and leaves counting of skipped files to the caller (``bytes`` of 0 marks none).
    """
    folder = Path(folder)
    base = Path(relative_to) if relative_to is not None else folder
    rows = []
    for p in sorted(folder.glob("*.jpg")):
        if not p.stem.isdigit():
            continue
        try:
            with Image.open(p) as im:
                width, height = im.size
        except (UnidentifiedImageError, OSError):
            continue
        rows.append({"movielens_id": int(p.stem), "path": str(p.relative_to(base)), "bytes": p.stat().st_size,
                     "width": width, "height": height})
    return pl.DataFrame(rows, schema={"movielens_id": pl.Int64, "path": pl.String, "bytes": pl.Int64,
                                      "width": pl.Int32, "height": pl.Int32})
