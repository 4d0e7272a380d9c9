"""Loaders for every MovieLens format qamrec reads, each returning polars frames with a fixed schema.

* :func:`read_movies`: ``movies.csv`` (latest-small, 25M, 32M) or ML-1M ``movies.dat`` -> :data:`MOVIES_SCHEMA`
* :func:`read_links`: ``links.csv`` -> :data:`LINKS_SCHEMA`
* :func:`read_ratings`, :func:`scan_ratings`, :func:`sink_ratings` (streamed to Parquet in bounded
  memory): ``ratings.csv`` -> :data:`RATINGS_SCHEMA`; :func:`read_ml1m_ratings`: ML-1M ``ratings.dat``
* :func:`read_tags`, :func:`sink_tags`: ``tags.csv`` -> :data:`TAGS_SCHEMA`
* :func:`read_ml100k_ratings`, :func:`read_ml100k_items`: ML-100K ``u.data``, ``u.item`` + ``u.genre``
  -> :data:`ML100K_RATINGS_SCHEMA`, :data:`ML100K_ITEMS_SCHEMA`
* :func:`read_implicit_split`: ML-1M ``implicit_split/`` -> :data:`IMPLICIT_SCHEMA`;
  :func:`read_llm_descriptions`: ``llm_response_item.json`` -> :data:`DESCRIPTIONS_SCHEMA`

Malformed input raises :class:`~qamrec.errors.DataFormatError` naming the file, the 1-based line (the
header is line 1) and the field. polars' own CSV errors carry no line number, so only when polars fails
the file is examined again: a fast polars pass reading every field as text finds the first bad record,
and the :mod:`csv` module finds its line (a full csv-module rescan when the file does not even parse as
text). A row with surplus fields in a file with one free-text column (the title of ``movies.csv``, the
tag of ``tags.csv``) has an unquoted comma in that text: it is joined back and logged, not rejected.
The ratings and tags loaders can check the movie ids against a movie table (``movies=``), raising for
or dropping (``unknown="drop"``) rows of unknown movies. The lazy :func:`scan_ratings` checks the header
eagerly; value errors surface at ``collect`` as polars errors.

The loaders live by variant: :mod:`.latest` (the CSV releases), :mod:`.ml1m`, :mod:`.ml100k`; the schemas
in :mod:`.schemas` and the delimited-file machinery in :mod:`.delimited`.
"""

from __future__ import annotations

from qamrec.data.movielens.delimited import parquet_num_rows
from qamrec.data.movielens.latest import (read_links, read_movies, read_ratings, read_tags, scan_ratings, sink_ratings,
                                          sink_tags)
from qamrec.data.movielens.ml1m import read_implicit_split, read_llm_descriptions, read_ml1m_ratings
from qamrec.data.movielens.ml100k import read_ml100k_items, read_ml100k_ratings
from qamrec.data.movielens.schemas import (DESCRIPTIONS_SCHEMA, IMPLICIT_SCHEMA, LINKS_SCHEMA, ML100K_GENRES,
                                           ML100K_ITEMS_SCHEMA, ML100K_RATINGS_SCHEMA, MOVIES_SCHEMA, RATINGS_SCHEMA,
                                           TAGS_SCHEMA, MovieIds, Unknown)

__all__ = [
    "MOVIES_SCHEMA",
    "LINKS_SCHEMA",
    "RATINGS_SCHEMA",
    "TAGS_SCHEMA",
    "ML100K_RATINGS_SCHEMA",
    "ML100K_ITEMS_SCHEMA",
    "ML100K_GENRES",
    "IMPLICIT_SCHEMA",
    "DESCRIPTIONS_SCHEMA",
    "read_movies",
    "read_links",
    "read_ratings",
    "scan_ratings",
    "sink_ratings",
    "read_tags",
    "sink_tags",
    "read_ml100k_ratings",
    "read_ml100k_items",
    "read_implicit_split",
    "read_llm_descriptions",
    "read_ml1m_ratings",
    "parquet_num_rows",
    "MovieIds",
    "Unknown",
]
