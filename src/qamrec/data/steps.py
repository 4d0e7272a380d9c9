"""The preparation steps, one per dataset, plus the catalog that links them (see :mod:`.prepare`).

Raw paths are relative to the data root (``$QAMREC_HOME/raw``, laid out like ``shared/data``).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from qamrec.data import movielens as ml
from qamrec.data.step import Step, Table, load_table
from qamrec.data.redial import read_id2info, read_movies_with_mentions, read_redial_dialogues, read_unicrs_examples
from qamrec.data.redial_lists import read_movie_lists
from qamrec.io import read_json

__all__ = ["ALL", "REDIAL_RAW", "REDIAL_LISTS", "REDIAL_LIST_IDS", "MOVIELENS_DIRS"]

#: the raw ReDial files, de-duplicated in this order (the UniCRS split first: it is the ground truth; then the
#: official train split when it was downloaded, then the train dialogues public repositories keep). All are
#: dialogues of the official TRAIN split; the official test file is never read as training data.
REDIAL_RAW = ("redial/raw/unicrs_valid_dialogs.jsonl", "redial/raw/crslab_valid_dialogs.jsonl",
              "redial/raw/train_data.jsonl", "redial/train_extra/train_dialogs_union.jsonl")
#: train conversations as ordered movie lists (no text), and the map of their movie indices to ReDial movieIds
REDIAL_LISTS = ("redial/train_extra/movie_level/ReDialRnGChronoTRAIN.json",
                "redial/train_extra/movie_level/ReDialRnGChronoVALID.json")
REDIAL_LIST_IDS = "redial/train_extra/movie_level/redial_id_to_index.json"
_REDIAL_UNICRS = "redial/unicrs"
_INSPIRED_UNICRS = "inspired/unicrs"
_INSPIRED_SPLITS = {"train": "inspired/unicrs/train_data_dbpedia.jsonl", "valid": "inspired/unicrs/valid_data_dbpedia.jsonl"}
_KG_FILES = ("entity2id.json", "relation2id.json", "item_ids.json", "dbpedia_subkg.json")
MOVIELENS_DIRS = {
    "movielens-small": "movielens/ml-latest-small",
    "movielens-25m": "movielens/ml-25m",
    "movielens-32m": "movielens/ml-32m",
    "movielens-32m-synth": "movielens/ml-32m-synth",
}


def _kg_tables(folder: Path) -> dict[str, Table]:
    from qamrec.data.kg import read_kg

    kg = read_kg(folder)
    return {"entities": kg.entities, "relations": kg.relations, "triples": kg.triples}


def _redial(raw: Path, _: Path, notes: list[str]) -> dict[str, Table]:
    parts = [read_redial_dialogues(raw / rel) for rel in REDIAL_RAW if (raw / rel).exists()]
    seen: set[str] = set()
    keep = []
    for p in parts:  # a dialogue in both raw files is kept once, from the first
        ids = set(p.dialogues["dialogue_id"]) - seen
        keep.append(tuple(t.filter(pl.col("dialogue_id").is_in(list(ids))) for t in p))
        seen |= ids
    tables: dict[str, Table] = {
        "dialogues": pl.concat([k[0] for k in keep]),
        "turns": pl.concat([k[1] for k in keep]),
        "mentions": pl.concat([k[2] for k in keep]),
        "movies_info": read_id2info(raw / "redial/id2info.json"),
        "movies_named": read_movies_with_mentions(raw / "redial/movies_with_mentions.csv"),
        "valid_examples": read_unicrs_examples(raw / _REDIAL_UNICRS / "valid_data_processed.jsonl"),
    }
    lists = [raw / f for f in REDIAL_LISTS if (raw / f).exists()]
    if lists and (raw / REDIAL_LIST_IDS).exists():
        tables["movie_lists"] = read_movie_lists(lists, raw / REDIAL_LIST_IDS)
    return tables | _kg_tables(raw / _REDIAL_UNICRS)


def _inspired(raw: Path, _: Path, notes: list[str]) -> dict[str, Table]:
    from qamrec.data.inspired import read_inspired_unicrs

    tables = _kg_tables(raw / _INSPIRED_UNICRS)
    entity2id = dict(tables["entities"].select("uri", "entity_id").iter_rows())  # type: ignore[union-attr]
    dialogues, turns = [], []
    for split, rel in _INSPIRED_SPLITS.items():
        d = read_inspired_unicrs(raw / rel, entity2id)
        dialogues.append(d.dialogues.with_columns(pl.lit(split).alias("split")))
        turns.append(d.turns)
    return tables | {"dialogues": pl.concat(dialogues), "turns": pl.concat(turns)}


def _movielens(folder: str):
    def run(raw: Path, _: Path, notes: list[str]) -> dict[str, Table]:
        d = raw / folder
        movies = ml.read_movies(d / "movies.csv")
        tables: dict[str, Table] = {"movies": movies}
        if (d / "links.csv").exists():
            tables["links"] = ml.read_links(d / "links.csv")
        for name, sink in (("ratings", ml.sink_ratings), ("tags", ml.sink_tags)):
            if (d / f"{name}.csv").exists():
                tables[name] = _known_movies_only(d / f"{name}.csv", sink, movies, notes)
        return tables

    return run


def _known_movies_only(src: Path, sink, movies: pl.DataFrame, notes: list[str]):
    """A streamed table of ``src`` without the rows whose movieId is not in the movie table (counted)."""

    def write(out: Path) -> int:
        kept = sink(src, out, movies=movies, unknown="drop")
        rows = pl.scan_csv(src, infer_schema=False, truncate_ragged_lines=True).select(pl.len())
        total = rows.collect(engine="streaming").item()
        if kept < total:
            notes.append(f"{src.name}: skipped {total - kept:,} of {total:,} rows whose movieId is not in movies.csv")
        return kept

    return write


def _movielens_100k(raw: Path, _: Path, notes: list[str]) -> dict[str, Table]:
    d = raw / "movielens/ml-100k"
    return {"ratings": ml.read_ml100k_ratings(d / "u.data"), "items": ml.read_ml100k_items(d / "u.item", d / "u.genre")}


def _movielens_1m(raw: Path, _: Path, notes: list[str]) -> dict[str, Table]:
    d = raw / "movielens/ml-1m"
    tables: dict[str, Table] = {"movies": ml.read_movies(d / "movies.dat")}
    if (d / "ratings.dat").exists():
        tables["ratings"] = ml.read_ml1m_ratings(d / "ratings.dat")
    if (d / "implicit_split/train.txt").exists():
        tables["implicit"] = ml.read_implicit_split(d / "implicit_split")
    if (d / "implicit_split/llm_response_item.json").exists():
        tables["llm_descriptions"] = ml.read_llm_descriptions(d / "implicit_split/llm_response_item.json")
    return tables


def _tmdb(raw: Path, _: Path, notes: list[str]) -> dict[str, Table]:
    from qamrec.data.tmdb import read_ml100k_links, read_tmdb_metadata

    d = raw / "tmdb"
    metadata = [read_tmdb_metadata(p) for p in (d / "item_features_tmdb.csv", d / "movies_metadata_first2996rows.csv")
                if p.exists()]
    return {
        "metadata": pl.concat(metadata).unique("tmdb_id", keep="first", maintain_order=True),
        "ml100k_links": read_ml100k_links(d / "links_ml100k_imdb_tmdb.csv"),
    }


def _posters(raw: Path, _: Path, notes: list[str]) -> dict[str, Table]:
    from qamrec.data.posters import scan_posters

    return {"posters": scan_posters(raw / "posters", relative_to=raw)}


def _catalog(raw: Path, prepared: Path, notes: list[str]) -> dict[str, Table]:
    from qamrec.data.catalog import CatalogInputs, build_catalog, ground_truth_links
    from qamrec.data.kg import KnowledgeGraph

    def table(step: str, name: str) -> pl.DataFrame | None:
        m = (prepared / step / "MANIFEST.json")
        return load_table(prepared, step, name) if m.exists() and name in read_json(m)["tables"] else None

    def kg(step: str) -> KnowledgeGraph | None:
        parts = [table(step, n) for n in ("entities", "relations", "triples")]
        return KnowledgeGraph(*parts) if all(p is not None for p in parts) else None

    ml_movies = [t for s in ("movielens-32m", "movielens-25m", "movielens-small", "movielens-1m")
                 if (t := table(s, "movies")) is not None]
    ml_links = [t for s in ("movielens-32m", "movielens-25m", "movielens-small") if (t := table(s, "links")) is not None]
    movies = pl.concat(ml_movies).unique("movielens_id", keep="first", maintain_order=True) if ml_movies else \
        pl.DataFrame(schema=ml.MOVIES_SCHEMA)
    links = pl.concat(ml_links).unique("movielens_id", keep="first", maintain_order=True) if ml_links else \
        pl.DataFrame(schema=ml.LINKS_SCHEMA)
    turns = table("redial", "turns")
    dialogues = table("redial", "dialogues")
    examples = table("redial", "valid_examples")
    gold = {}
    if turns is not None and dialogues is not None and examples is not None:
        first = dialogues.filter(pl.col("source") == Path(REDIAL_RAW[0]).name)["dialogue_id"].to_list()
        gold = ground_truth_links(turns.filter(pl.col("dialogue_id").is_in(first)), first, examples)
    rated = [t.select(pl.col("movielens_id").cast(pl.Int64)) for s in ("movielens-small", "movielens-25m", "movielens-32m")
             if (t := table(s, "ratings")) is not None]
    ml100k = table("movielens-100k", "ratings")
    tmdb_links = table("tmdb", "ml100k_links")
    if ml100k is not None and tmdb_links is not None:
        imdb = links.select("movielens_id", "imdb_id")
        rated.append(ml100k.join(tmdb_links, on="ml100k_id").join(imdb, on="imdb_id").select("movielens_id"))
    empty = pl.DataFrame
    inp = CatalogInputs(
        ml_movies=movies,
        ml_links=links,
        redial_info=table("redial", "movies_info") if turns is not None else empty(
            schema={"redial_id": pl.Int64, "title": pl.String, "year": pl.Int32, "genres": pl.List(pl.String),
                    "plot": pl.String, "director": pl.List(pl.String), "writer": pl.List(pl.String),
                    "cast": pl.List(pl.String), "imdb_id": pl.String}),
        redial_names=table("redial", "movies_named") if turns is not None else empty(
            schema={"redial_id": pl.Int64, "title": pl.String, "year": pl.Int32, "n_mentions": pl.Int32}),
        redial_kg=kg("redial"),
        inspired_kg=kg("inspired"),
        inspired_turns=table("inspired", "turns") if kg("inspired") else empty(
            schema={"movies": pl.List(pl.String), "movie_uris": pl.List(pl.String)}),
        ml100k_links=tmdb_links if tmdb_links is not None else empty(
            schema={"ml100k_id": pl.Int32, "imdb_id": pl.String, "tmdb_id": pl.Int64}),
        tmdb=table("tmdb", "metadata") if tmdb_links is not None else empty(
            schema={"tmdb_id": pl.Int64, "imdb_id": pl.String, "overview": pl.String}),
        posters=table("posters", "posters") if (prepared / "posters/MANIFEST.json").exists() else empty(
            schema={"movielens_id": pl.Int64, "path": pl.String}),
        rated=pl.concat(rated).group_by("movielens_id").len("n_ratings") if rated else empty(
            schema={"movielens_id": pl.Int64, "n_ratings": pl.UInt32}),
        gold_links=gold,
    )
    cat = build_catalog(inp)
    out: dict[str, Table] = {"movies": cat.movies, "links": cat.links,
                             "summary": pl.DataFrame({"json": [json.dumps(cat.summary)]})}
    if turns is not None:
        entity_of = {int(k): v for k, v in cat.links.filter(pl.col("source") == "redial").select("key", "movie_id").iter_rows()}
        row_entity = dict(cat.movies.select("movie_id", "redial_entity").iter_rows())
        out["redial_turns"] = turns.with_columns(
            pl.col("movies").map_elements(
                lambda ms: [e for m in ms if (e := row_entity.get(entity_of.get(int(m), -1))) is not None],
                return_dtype=pl.List(pl.Int64)).alias("movie_entities"))
        if (lists := table("redial", "movie_lists")) is not None:  # movie-list conversations, same entity space
            out["redial_movie_lists"] = lists.with_columns(
                pl.col("redial_id").map_elements(lambda m: row_entity.get(entity_of.get(int(m), -1)),
                                                 return_dtype=pl.Int64).alias("entity"))
    return out


_MOVIELENS_STEPS = [
    Step(name, (f"{d}/movies.csv",), _movielens(d), optional=(f"{d}/links.csv", f"{d}/ratings.csv", f"{d}/tags.csv"))
    for name, d in MOVIELENS_DIRS.items()
]
ALL: tuple[Step, ...] = (
    Step("redial", ("redial/id2info.json", "redial/movies_with_mentions.csv", REDIAL_RAW[0],
                    f"{_REDIAL_UNICRS}/valid_data_processed.jsonl") + tuple(f"{_REDIAL_UNICRS}/{f}" for f in _KG_FILES),
         _redial, optional=REDIAL_RAW[1:] + REDIAL_LISTS + (REDIAL_LIST_IDS, f"{_REDIAL_UNICRS}/relation_set.json")),
    Step("inspired", tuple(_INSPIRED_SPLITS.values()) + tuple(f"{_INSPIRED_UNICRS}/{f}" for f in _KG_FILES),
         _inspired, optional=(f"{_INSPIRED_UNICRS}/relation_set.json",)),
    *_MOVIELENS_STEPS,
    Step("movielens-100k", ("movielens/ml-100k/u.data", "movielens/ml-100k/u.item", "movielens/ml-100k/u.genre"),
         _movielens_100k),
    Step("movielens-1m", ("movielens/ml-1m/movies.dat",), _movielens_1m,
         optional=("movielens/ml-1m/ratings.dat", "movielens/ml-1m/implicit_split")),
    Step("tmdb", ("tmdb/links_ml100k_imdb_tmdb.csv",), _tmdb,
         optional=("tmdb/item_features_tmdb.csv", "tmdb/movies_metadata_first2996rows.csv")),
    Step("posters", ("posters",), _posters),
)
ALL = ALL + (Step("catalog", (), _catalog, depends=tuple(s.name for s in ALL)),)
