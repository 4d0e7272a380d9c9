"""MovieLens-100K for the sequential benchmark: ratings, items and TMDB metadata from the prepared data home,
and the text of each modality of a movie (embedded with the project's text encoder).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import torch

from qamrec.config import Config
from qamrec.errors import MissingDataError

__all__ = ["MODALITIES", "load_ml100k", "modality_texts", "encode_modalities"]

#: the modalities of a movie, in gate order
MODALITIES: tuple[str, ...] = ("title_genres", "overview", "metadata")


def _table(config: Config, step: str, name: str) -> pl.DataFrame | None:
    """A prepared table, (re)preparing its step first when its raw files are fetched (a no-op when fresh)."""
    from qamrec.data.prepare import load_table, prepare, step_outputs

    try:
        prepare([step], config.raw_dir, config.prepared_dir)
    except MissingDataError:  # not fetched: use what is prepared, if anything
        pass
    m = step_outputs(config.prepared_dir, step)
    if m is None or name not in m["tables"]:
        return None
    return load_table(config.prepared_dir, step, name)


def load_ml100k(config: Config) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    """``(ratings, items, TMDB metadata per ML-100K movie or None)`` from the prepared data home.

    Raises:
        MissingDataError: ML-100K is neither prepared nor fetched.
    """
    ratings = _table(config, "movielens-100k", "ratings")
    items = _table(config, "movielens-100k", "items")
    if ratings is None or items is None:
        raise MissingDataError(f"MovieLens-100K is not in {config.home}: run `qamrec data fetch movielens-100k tmdb` "
                               "(add --from DIR for a local copy) and `qamrec data prepare movielens-100k tmdb`")
    links, meta = _table(config, "tmdb", "ml100k_links"), _table(config, "tmdb", "metadata")
    tmdb = None
    if links is not None and meta is not None:
        tmdb = links.join(meta.drop("imdb_id"), on="tmdb_id", how="left")
        raw = config.raw_dir / "tmdb/item_features_tmdb.csv"
        if raw.exists():
            tmdb = tmdb.join(_tmdb_extras(raw), on="ml100k_id", how="left")
    return ratings, items, tmdb


_NAME = re.compile(r"""['"]name['"]\s*:\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")""")


def _names(s: str | None) -> list[str]:
    return [a or b for a, b in _NAME.findall(s or "")]


def _tmdb_extras(path: Path) -> pl.DataFrame:
    """Collection, production companies / countries, language and runtime per ML-100K movie (first row wins)."""
    df = pl.read_csv(path, infer_schema=False)
    want = ("movie_id", "belongs_to_collection", "production_companies", "production_countries",
            "original_language", "runtime")
    df = df.select([pl.col(c) if c in df.columns else pl.lit(None, pl.String).alias(c) for c in want])
    df = df.with_columns(pl.col("movie_id").cast(pl.Int32, strict=False).alias("ml100k_id")).drop("movie_id")
    df = df.filter(pl.col("ml100k_id").is_not_null()).unique("ml100k_id", keep="first", maintain_order=True)
    return df.with_columns(
        pl.col("belongs_to_collection").map_elements(lambda s: ", ".join(_names(s)[:1]), return_dtype=pl.String),
        pl.col("production_companies").map_elements(lambda s: ", ".join(_names(s)[:3]), return_dtype=pl.String),
        pl.col("production_countries").map_elements(lambda s: ", ".join(_names(s)[:3]), return_dtype=pl.String),
        pl.col("runtime").cast(pl.Float64, strict=False),
    )


def modality_texts(items: pl.DataFrame, tmdb: pl.DataFrame | None, item_ids: np.ndarray
                   ) -> dict[str, list[str | None]]:
    """Per modality (:data:`MODALITIES`), the text of each item of ``item_ids`` (ML-100K ids), None if unknown."""
    by_id = {r["ml100k_id"]: r for r in items.iter_rows(named=True)}
    meta = {r["ml100k_id"]: r for r in tmdb.iter_rows(named=True)} if tmdb is not None else {}
    out: dict[str, list[str | None]] = {m: [] for m in MODALITIES}
    for i in item_ids.tolist():
        it = by_id.get(i, {})
        title = it.get("title") or ""
        year = f" ({it['year']})" if it.get("year") else ""
        genres = ", ".join(g for g in it.get("genres") or [] if g != "unknown")
        out["title_genres"].append(f"{title}{year}. Genres: {genres or 'unknown'}." if title else None)
        m = meta.get(i, {})
        overview = (m.get("overview") or "").strip()
        out["overview"].append(overview or None)
        parts = []
        for label, key in (("Tagline", "tagline"), ("Collection", "belongs_to_collection"),
                           ("Studios", "production_companies"), ("Countries", "production_countries"),
                           ("Language", "original_language"), ("Released", "release_date")):
            if (v := m.get(key)) and str(v).strip():
                parts.append(f"{label}: {str(v).strip().rstrip('.')}.")
        if m.get("genres"):
            parts.insert(0, f"Genres: {', '.join(m['genres'])}.")
        if m.get("runtime"):
            parts.append(f"Runtime: {int(m['runtime'])} min.")
        if m.get("vote_average") is not None and m.get("vote_count"):
            parts.append(f"Rated {m['vote_average']:.1f}/10.")
        out["metadata"].append(" ".join(parts) or None)
    return out


def encode_modalities(texts: dict[str, list[str | None]], encode: Callable[[list[str]], np.ndarray]
                      ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Feature tables ``[n_items + 1, D]`` per modality (row 0 = padding, zeros where the text is missing) and the
    ``[n_items + 1, K]`` mask of present modalities."""
    feats, masks = [], []
    for name in texts:
        t = texts[name]
        present = np.array([x is not None for x in t])
        vec = np.asarray(encode([x for x in t if x is not None]), dtype=np.float32)
        table = np.zeros((len(t) + 1, vec.shape[1]), dtype=np.float32)
        table[1:][present] = vec
        feats.append(torch.from_numpy(table))
        masks.append(np.concatenate([[False], present]))
    return feats, torch.from_numpy(np.stack(masks, axis=1))
