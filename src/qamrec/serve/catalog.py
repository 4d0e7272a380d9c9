"""The catalog extension of the service (``serve.catalog``): every movie of a prepared MovieLens dataset with its
text embedding, for :meth:`~qamrec.serve.engine.Engine.extend_catalog`."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["movielens_catalog"]


def movielens_catalog(config: Any, dataset: str = "movielens-32m", progress: bool = False) -> tuple[Any, np.ndarray]:
    """Every movie of a prepared MovieLens dataset and its text embedding (title, year and genres; cached)."""
    from qamrec.data.prepare import load_table
    from qamrec.features.pipeline import text_function
    from qamrec.graph.build import movie_text

    movies = load_table(config.prepared_dir, dataset, "movies").rename({"movielens_id": "movie_id"})
    texts = [movie_text(r) for r in movies.select("title", "year", "genres").to_dicts()]
    return movies, text_function(config, progress=progress)(texts)
