"""Conversational-recommendation datasets: where each one's knowledge graph, candidates and dialogues live,
and the train / dev / held-out split of its dialogues.

A :class:`CRSSource` names files and prepared tables only; the graph and the models never see a dataset's
name. ReDial's training pool is every train dialogue we have: the raw text dialogues (the two published
validation subsets, the official train file when downloaded, ``train_extra/``) and the conversations known
only as movie lists (:func:`list_examples`). ``graph.heldout_fraction`` (the benchmarks use 0.3) holds a fixed,
seeded share of the UniCRS validation file's dialogues out for testing: they never enter the graph or the
training examples, as text or as movie lists. INSPIRED trains on its train split and is tested on its
validation file. Dev examples (early stopping) come from text dialogues only.

Training settings that change the training pool and nothing else: ``train.dialogue_fraction`` keeps a seeded
share of the training dialogues (examples and graph; for learning curves), ``train.extra_dialogues=false``
keeps only the published validation subsets, and ``train.transfer`` adds another dataset's examples mapped
into this one's entity space (:func:`transfer_examples`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

from qamrec.config import Config
from qamrec.data.prepare import load_table
from qamrec.errors import MissingDataError, QamrecError
from qamrec.eval.protocol import CRSExample, read_crs_examples, read_item_ids
from qamrec.io import read_json, sha256_file

__all__ = ["CRSSource", "CRS_SOURCES", "CRSData", "load_crs", "examples_from_turns", "list_examples",
           "split_dialogues", "transfer_examples"]


@dataclass(frozen=True)
class CRSSource:
    """Where a CRS dataset's parts are (raw paths relative to the raw folder; prepared step names)."""

    kg_step: str  # prepared step with entities / relations / triples (the UniCRS entity space)
    link_source: str  # catalog links ``source`` mapping the dataset's entity ids to catalog movies
    item_ids: str  # the candidate item set (entity ids)
    entity2id: str
    valid_file: str  # the published validation file (UniCRS format)
    train_file: str | None = None  # a training file in the same format, if the dataset has one
    turns_table: tuple[str, str] | None = None  # (step, table) of raw turns when there is no training file
    valid_source: str | None = None  # raw dialogue file the validation file was processed from (same order)
    lists_table: tuple[str, str] | None = None  # (step, table) of training conversations known as movie lists
    base_sources: tuple[str, ...] = ()  # raw dialogue files that are not extra training data (all when empty)


CRS_SOURCES: dict[str, CRSSource] = {
    "redial": CRSSource("redial", "redial_entity", "redial/unicrs/item_ids.json", "redial/unicrs/entity2id.json",
                        "redial/unicrs/valid_data_processed.jsonl", turns_table=("catalog", "redial_turns"),
                        valid_source="unicrs_valid_dialogs.jsonl", lists_table=("catalog", "redial_movie_lists"),
                        base_sources=("unicrs_valid_dialogs.jsonl", "crslab_valid_dialogs.jsonl")),
    "inspired": CRSSource("inspired", "inspired_entity", "inspired/unicrs/item_ids.json",
                          "inspired/unicrs/entity2id.json", "inspired/unicrs/valid_data_dbpedia.jsonl",
                          train_file="inspired/unicrs/train_data_dbpedia.jsonl"),
}


@dataclass
class CRSData:
    """One CRS dataset, split: ``train`` and ``dev`` examples come from training dialogues only."""

    name: str
    entities: pl.DataFrame  # entity_id, uri, label, is_item
    relations: pl.DataFrame  # relation_id, uri, label, kept
    triples: pl.DataFrame  # head, relation_id, tail
    item_ids: list[int]
    entity_movie: dict[int, int]  # dataset entity id -> catalog movie id
    train: list[CRSExample]
    dev: list[CRSExample]
    train_dialogues: pl.DataFrame  # dialogue_id, movie_id, liked, disliked, seen: mentions of graph dialogues
    test_file: Path
    heldout: list[int] | None  # dialogue indices of ``test_file`` held out (None: the whole file is test)
    test_sha256: str
    entity2id: dict[str, int] | None
    n_train_dialogues: int = 0  # training dialogues (with or without examples), dev and held-out ones apart
    #: the dev and training dialogues as the test file's processing gives them (its entity linking and labels):
    #: where the test file also holds training dialogues (ReDial's held-out split), its examples of the dialogues
    #: ``dev`` and ``train`` read from the raw text (those it holds); where the training examples come from a
    #: file in the test's format (INSPIRED), ``dev`` and the examples of that file
    dev_as_test: list[CRSExample] = field(default_factory=list)
    train_as_test: list[CRSExample] = field(default_factory=list)
    #: one flag per ``dev`` example: whether the test file also holds its dialogue (ReDial: the held-out split's
    #: source file; its other dev dialogues come from other copies of the training split, whose recommenders
    #: have more dialogues in training); empty where no dev dialogue is in the test file (INSPIRED)
    dev_in_test_file: list[bool] = field(default_factory=list)


def split_dialogues(n: int, fraction: float, seed: int) -> np.ndarray:
    """A fixed, seeded choice of ``round(fraction * n)`` of ``n`` dialogue indices (sorted)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n)[: int(round(fraction * n))])


def examples_from_turns(turns: pl.DataFrame, roles: tuple[str, ...] = ("recommender",),
                        merge: bool = True) -> list[CRSExample]:
    """UniCRS-style examples from raw turns in the dataset's entity space.

    Every turn of one of ``roles`` that mentions movies gives one example per movie; its context is every
    earlier turn's text and its entities every earlier turn's movies and entities (first mention order, no
    repeats). UniCRS uses recommender turns; adding ``"seeker"`` also learns from the movies seekers bring up.
    With ``merge`` (UniCRS's processing, so the format of its test files), consecutive messages of one speaker
    are first joined into one turn (texts joined by a space, movies and entities in order, the first message's
    turn number): a recommender who writes "Have you seen X?" and then "Or Y" answers with X and Y from the
    same context, as in ``valid_data_processed.jsonl``, not with Y after its own X.
    """
    out: list[CRSExample] = []
    has_ent = "entities" in turns.columns
    for d_index, (_, part) in enumerate(turns.sort("dialogue_id", "turn").group_by("dialogue_id", maintain_order=True)):
        merged: list[tuple[str, int, list[str], list[int], list[int]]] = []  # role, turn, texts, movies, entities
        for row in part.iter_rows(named=True):
            movies = [int(m) for m in row["movie_entities"] or []]
            ents = [int(e) for e in (row["entities"] or [])] if has_ent else []
            if merge and merged and merged[-1][0] == row["role"]:
                merged[-1][2].append(row["text"] or "")
                merged[-1][3].extend(movies)
                merged[-1][4].extend(ents)
            else:
                merged.append((row["role"], row["turn"], [row["text"] or ""], movies, ents))
        context: list[str] = []
        entities: list[int] = []
        for role, turn, texts, movies, ents in merged:
            text = " ".join(t for t in texts if t)
            if role in roles and movies and context:
                for m in movies:
                    out.append(CRSExample(dialogue=d_index, turn=turn, context=tuple(context),
                                          entities=tuple(entities), item=m, resp=text))
            context.append(text)
            for e in movies + ents:
                if e not in entities:
                    entities.append(e)
    return out


def transfer_examples(other: CRSData, entity2id: dict[str, int], entity_movie: dict[int, int],
                      item_ids: list[int]) -> list[CRSExample]:
    """``other``'s training and dev examples in this dataset's entity space, to train on (transfer learning).

    An entity maps by its DBpedia URI; a gold item that has no URI here maps through the catalog movie it
    links to. Unmapped context entities are dropped, and so are examples whose gold item does not map. The
    examples get negative dialogue numbers: they are never dev examples and never enter this dataset's graph.
    """
    if other.entity2id is None:
        raise MissingDataError(f"train.transfer: {other.name} has no DBpedia entity space to map")
    uri = {v: k for k, v in other.entity2id.items()}
    items = set(item_ids)
    item_of_movie = {m: e for e, m in sorted(entity_movie.items()) if e in items}

    def entity(e: int) -> int | None:
        return entity2id.get(uri.get(e, ""))

    out: list[CRSExample] = []
    for ex in other.train + other.dev:
        gold = entity(ex.item)
        if gold not in items:
            gold = item_of_movie.get(other.entity_movie.get(ex.item, -1))
        if gold is None:
            continue
        ents = tuple(m for m in (entity(e) for e in ex.entities) if m is not None)
        out.append(replace(ex, dialogue=-1 - ex.dialogue, entities=ents, item=gold))
    return out


def list_examples(lists: pl.DataFrame, titles: dict[int, str], first_dialogue: int,
                  items: set[int]) -> list[CRSExample]:
    """Training examples from conversations known only as ordered movie lists (no text).

    Every movie after the first is a gold item (when it is a candidate) whose context is the movies before it:
    their entities, and as text one short utterance per movie built from its title ("I liked Heat (1995).",
    or the title alone where the source does not say it was liked). Conversation ``k`` of ``lists`` (in its
    order) is dialogue ``first_dialogue + k``; ``turn`` is the gold movie's position.
    """
    out: list[CRSExample] = []
    rows = lists.drop_nulls("entity").sort("dialogue_id", "position", maintain_order=True)
    for k, (_, part) in enumerate(rows.group_by("dialogue_id", maintain_order=True)):
        context: list[str] = []
        entities: list[int] = []
        for pos, (e, liked) in enumerate(part.select("entity", "liked").iter_rows()):
            if pos and e in items and e not in entities:
                out.append(CRSExample(dialogue=first_dialogue + k, turn=pos, context=tuple(context),
                                      entities=tuple(entities), item=int(e), resp=""))
            title = titles.get(int(e), "")
            context.append(f"I liked {title}." if liked else f"{title}?")
            if e not in entities:
                entities.append(int(e))
    return out


def _titles(prepared: Path, entity_movie: dict[int, int]) -> dict[int, str]:
    """Entity id -> "Title (Year)" of its catalog movie."""
    movies = load_table(prepared, "catalog", "movies").select("movie_id", "title", "year")
    name = {m: (f"{t} ({y})" if y else str(t)) for m, t, y in movies.iter_rows()}
    return {e: name.get(m, "") for e, m in entity_movie.items()}


def _movie_lists(prepared: Path, src: CRSSource, exclude: set[str], config: Config) -> pl.DataFrame | None:
    """The movie-list conversations of ``src`` that are not in ``exclude`` (dialogues with text, held-out and
    dev ones included), with their ``entity``; None when the dataset has none or ``train.extra_dialogues`` is off."""
    if src.lists_table is None or not config.train.extra_dialogues:
        return None
    step, table = src.lists_table
    try:
        lists = load_table(prepared, step, table)
    except MissingDataError:
        return None
    return lists.filter(~pl.col("dialogue_id").is_in(list(exclude)))


def _dev_split(examples: list[CRSExample], fraction: float, seed: int, dialogues: list[int] | None = None
               ) -> tuple[list[CRSExample], list[CRSExample], set[int]]:
    """A seeded ``fraction`` of ``dialogues`` (default: those with examples) as dev: the training examples, the
    dev examples and the dev dialogues."""
    pool = sorted({e.dialogue for e in examples}) if dialogues is None else dialogues
    dev = set(np.asarray(pool)[split_dialogues(len(pool), fraction, seed + 1)].tolist())
    return [e for e in examples if e.dialogue not in dev], [e for e in examples if e.dialogue in dev], dev


def load_crs(name: str, config: Config) -> CRSData:
    """Load a CRS dataset from the prepared tables and raw files of ``config.home``, split for training."""
    if name not in CRS_SOURCES:
        raise MissingDataError(f"unknown CRS dataset {name!r} (known: {', '.join(CRS_SOURCES)})")
    src = CRS_SOURCES[name]
    raw, prepared = config.raw_dir, config.prepared_dir
    for rel in (src.item_ids, src.entity2id, src.valid_file) + ((src.train_file,) if src.train_file else ()):
        if not (raw / rel).exists():
            raise MissingDataError(f"{raw / rel} is missing: run `qamrec data fetch {name}` first")
    all_links = load_table(prepared, "catalog", "links")
    links = all_links.filter(pl.col("source") == src.link_source)
    entity_movie = {int(k): int(m) for k, m in links.select("key", "movie_id").iter_rows()}
    entity2id = {str(k): int(v) for k, v in read_json(raw / src.entity2id).items()}
    item_ids = read_item_ids(raw / src.item_ids)
    test_file = raw / src.valid_file
    dev_pool: list[int] | None = None
    if src.train_file:
        examples = read_crs_examples(raw / src.train_file, entity2id)
        heldout = None
        turns = load_table(prepared, src.kg_step, "turns")
        prefix = Path(src.train_file).stem + ":"
        turns = turns.filter(pl.col("dialogue_id").str.starts_with(prefix))
        # examples number the file's dialogues in order; turn ids are "<stem>:<line>"
        order = sorted(turns["dialogue_id"].unique().to_list(), key=lambda d: int(d.rsplit(":", 1)[1]))
    else:
        step, table = src.turns_table  # type: ignore[misc]
        turns = load_table(prepared, step, table)
        dialogues = load_table(prepared, src.kg_step, "dialogues")
        # the processed validation file lists the dialogues of its raw source file, in the same order
        first = dialogues.filter(pl.col("source") == src.valid_source)["dialogue_id"].to_list()
        heldout = split_dialogues(len(first), config.graph.heldout_fraction, config.seed).tolist()
        held_ids = {first[i] for i in heldout}
        turns = turns.filter(~pl.col("dialogue_id").is_in(list(held_ids)))
        if src.base_sources and not config.train.extra_dialogues:  # the "no new data" ablation
            base = dialogues.filter(pl.col("source").is_in(list(src.base_sources)))["dialogue_id"].to_list()
            turns = turns.filter(pl.col("dialogue_id").is_in(base))
        examples = examples_from_turns(turns, merge=config.train.merge_turns)
        if config.train.merge_turns:  # dev dialogues drawn as without merging (which leaves a few without an
            # example), so that the dev split does not depend on train.merge_turns
            dev_pool = sorted({e.dialogue for e in examples_from_turns(turns, merge=False)})
        order = sorted(turns["dialogue_id"].unique().to_list())
    train, dev, dev_d = _dev_split(examples, config.train.dev_fraction, config.seed, dev_pool)
    if config.train.seeker_targets and src.turns_table:  # more training targets; dev stays as the protocol
        train = [e for e in examples_from_turns(turns, ("recommender", "seeker"), config.train.merge_turns)
                 if e.dialogue not in dev_d]
    lists = _movie_lists(prepared, src, set(order) | (held_ids if src.turns_table else set()), config)
    if lists is not None:  # conversations known only as movie lists: training examples and graph dialogues
        list_ids = lists["dialogue_id"].unique(maintain_order=True).to_list()
        train += list_examples(lists, titles=_titles(prepared, entity_movie), first_dialogue=len(order),
                               items=set(item_ids))
        order = order + list_ids
    pool = [i for i in range(len(order)) if i not in dev_d]
    if config.train.dialogue_fraction < 1.0:  # a learning curve: fewer training dialogues, same dev and test
        pool = [pool[i] for i in split_dialogues(len(pool), config.train.dialogue_fraction, config.seed + 2)]
        kept = set(pool)
        train = [e for e in train if e.dialogue in kept]
    train_ids = [order[i] for i in pool]
    trained = set(train_ids)
    dev_in_test_file: list[bool] = []
    if heldout is None:  # the training file is in the test's format
        dev_as_test = dev
        train_as_test = [e for e in examples if e.dialogue not in dev_d and order[e.dialogue] in trained]
    else:  # the test file's own examples of the dev and training dialogues it holds
        held, dev_ids = set(heldout), {order[i] for i in dev_d}
        in_file = [e for e in read_crs_examples(test_file, entity2id) if e.dialogue not in held]
        dev_as_test = [e for e in in_file if first[e.dialogue] in dev_ids]
        train_as_test = [e for e in in_file if first[e.dialogue] in trained]
        file_ids = set(first)
        dev_in_test_file = [order[e.dialogue] in file_ids for e in dev]
    for other in config.train.transfer:
        if other == name:
            raise QamrecError(f"train.transfer: {name!r} cannot transfer from itself")
        whole = config.with_overrides(["train.transfer=", "train.dialogue_fraction=1"])  # all of the other's
        train += transfer_examples(load_crs(other, whole), entity2id, entity_movie, item_ids)
    kg = {t: load_table(prepared, src.kg_step, t) for t in ("entities", "relations", "triples")}
    return CRSData(
        name=name, entities=kg["entities"], relations=kg["relations"], triples=kg["triples"],
        item_ids=item_ids, entity_movie=entity_movie, train=train, dev=dev,
        train_dialogues=_mentions(turns.filter(pl.col("dialogue_id").is_in(train_ids)), entity_movie, all_links,
                                  prepared, src.kg_step,
                                  None if lists is None else lists.filter(pl.col("dialogue_id").is_in(train_ids))),
        test_file=test_file, heldout=heldout, test_sha256=sha256_file(test_file), entity2id=entity2id,
        n_train_dialogues=len(pool), dev_as_test=dev_as_test, train_as_test=train_as_test,
        dev_in_test_file=dev_in_test_file,
    )


def _mentions(turns: pl.DataFrame, entity_movie: dict[int, int], links: pl.DataFrame, prepared: Path,
              step: str, lists: pl.DataFrame | None = None) -> pl.DataFrame:
    """dialogue_id, movie_id, liked, disliked, seen: the movies each training dialogue mentions.

    The seeker's answers come from the raw ReDial questionnaires where the step has them (1 = yes, 0 = no,
    anything else unknown); otherwise all three are 0. Movie-list conversations (``lists``) give liked as
    their source says and neither disliked nor seen.
    """
    text = _text_mentions(turns, entity_movie, links, prepared, step)
    if lists is None or lists.is_empty():
        return text
    movie = pl.col("entity").replace_strict(entity_movie, default=None, return_dtype=pl.Int64)
    zero = pl.lit(0.0, pl.Float32)
    extra = (lists.drop_nulls("entity").select("dialogue_id", movie.alias("movie_id"),
                                               pl.col("liked").cast(pl.Float32))
             .drop_nulls("movie_id").unique(["dialogue_id", "movie_id"], keep="first", maintain_order=True)
             .select("dialogue_id", "movie_id", "liked", zero.alias("disliked"), zero.alias("seen")))
    return pl.concat([text, extra]).sort("dialogue_id", "movie_id")


def _text_mentions(turns: pl.DataFrame, entity_movie: dict[int, int], links: pl.DataFrame, prepared: Path,
                   step: str) -> pl.DataFrame:
    rows = (turns.select("dialogue_id", pl.col("movie_entities").alias("e")).explode("e").drop_nulls("e")
            .with_columns(pl.col("e").replace_strict(entity_movie, default=None, return_dtype=pl.Int64)
                          .alias("movie_id")).drop_nulls("movie_id").select("dialogue_id", "movie_id").unique())
    zero = pl.lit(0, pl.Float32)
    try:
        mentions = load_table(prepared, step, "mentions")
        links = links.filter(pl.col("source") == "redial")
    except MissingDataError:
        return rows.with_columns(liked=zero, disliked=zero, seen=zero)
    q = (mentions.join(links.select(pl.col("key").cast(pl.Int64).alias("redial_id"), "movie_id"), on="redial_id")
         .select("dialogue_id", "movie_id",
                 (pl.col("seeker_liked") == 1).cast(pl.Float32).alias("liked"),
                 (pl.col("seeker_liked") == 0).cast(pl.Float32).alias("disliked"),
                 (pl.col("seeker_seen") == 1).cast(pl.Float32).alias("seen"))
         .unique(["dialogue_id", "movie_id"]))
    return (rows.join(q, on=["dialogue_id", "movie_id"], how="left")
            .with_columns(pl.col("liked", "disliked", "seen").fill_null(0.0)).sort("dialogue_id", "movie_id"))
