"""The movie catalog: one identity per movie across MovieLens, ReDial, DBpedia (UniCRS), INSPIRED,
ML-100K, IMDb, TMDB and posters.

Links are made with every key the files give, then by normalized title + year:

====================  =====================================================================================
rule                  meaning
====================  =====================================================================================
``imdb``              the IMDb id of the source (ReDial ``id2info.json``, ML-100K links) is in MovieLens links
``title_year``        normalized title and year equal (one candidate, or the first of several)
``title_year_pm1``    normalized title equal, year off by one (release vs. festival year)
``title``             normalized title equal, the source gives no year, exactly one candidate
``title_fuzzy``       same year, title similarity >= ``title_match_threshold`` (rapidfuzz ratio)
``uri_title``         DBpedia URI title (+ year / KG people / mentions as evidence) matched to a ReDial movie
``dialogue_aligned``  ReDial movieId -> entity pairs read off the dialogues that exist both raw and processed
``via_redial``        a DBpedia item reached through the ReDial movie it is linked to
``dbpedia_uri``       the same DBpedia URI in the ReDial and INSPIRED entity spaces
``new``               no link: the movie gets its own catalog id (see ``ID_OFFSETS``)
====================  =====================================================================================

Catalog ids are MovieLens movieIds where a movie has one; other movies get ``offset + source id``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import polars as pl
from rapidfuzz import fuzz, process

from qamrec.data.kg import KnowledgeGraph, parse_film_uri
from qamrec.data.schema import normalize_title, split_title_year

__all__ = ["CatalogInputs", "Catalog", "build_catalog", "ground_truth_links", "ID_OFFSETS", "LINK_SCHEMA"]

ID_OFFSETS = {"redial": 10_000_000, "inspired_entity": 20_000_000, "redial_entity": 30_000_000}
LINK_SCHEMA = {"source": pl.String, "key": pl.String, "movie_id": pl.Int64, "rule": pl.String}
_PEOPLE_RELATIONS = ("director", "starring", "writer", "producer")


@dataclass
class CatalogInputs:
    """The prepared tables the catalog is built from; any may be empty where a dataset is absent."""

    ml_movies: pl.DataFrame  # movielens_id, title, year, genres
    ml_links: pl.DataFrame  # movielens_id, imdb_id, tmdb_id
    redial_info: pl.DataFrame  # id2info: redial_id, title, year, genres, plot, director, writer, cast, imdb_id
    redial_names: pl.DataFrame  # movies_with_mentions: redial_id, title, year, n_mentions
    redial_kg: KnowledgeGraph | None
    inspired_kg: KnowledgeGraph | None
    inspired_turns: pl.DataFrame  # turns with movies (names) and movie_uris
    ml100k_links: pl.DataFrame  # ml100k_id, imdb_id, tmdb_id
    tmdb: pl.DataFrame  # TMDB_SCHEMA
    posters: pl.DataFrame  # movielens_id, path
    rated: pl.DataFrame  # movielens_id, n_ratings (explicit ratings available)
    #: ReDial movieId -> Counter of ReDial entity ids, from the aligned raw/processed dialogues
    gold_links: dict[int, Counter] = field(default_factory=dict)
    title_match_threshold: float = 0.92


@dataclass
class Catalog:
    movies: pl.DataFrame
    links: pl.DataFrame
    summary: dict


class _TitleIndex:
    """MovieLens titles by normalized title and by year, for exact and fuzzy matching."""

    def __init__(self, ml_movies: pl.DataFrame, threshold: float) -> None:
        self.by_title: dict[str, list[tuple[int, int | None]]] = defaultdict(list)
        self.by_year: dict[int, tuple[list[str], list[int]]] = defaultdict(lambda: ([], []))
        for mid, title, year in ml_movies.select("movielens_id", "title", "year").iter_rows():
            key = normalize_title(title or "")
            self.by_title[key].append((mid, year))
            if year is not None:
                self.by_year[year][0].append(key)
                self.by_year[year][1].append(mid)
        self.cutoff = threshold * 100

    def match(self, title: str, year: int | None) -> tuple[int, str] | None:
        key = normalize_title(title)
        if not key:
            return None
        cands = self.by_title.get(key, [])
        if year is not None:
            for rule, ok in (("title_year", lambda y: y == year),
                             ("title_year_pm1", lambda y: y is not None and abs(y - year) == 1)):
                hits = [m for m, y in cands if ok(y)]
                if hits:
                    return hits[0], rule
            keys, ids = self.by_year.get(year, ([], []))
            if keys:
                best = process.extractOne(key, keys, scorer=fuzz.ratio, score_cutoff=self.cutoff)
                if best is not None:
                    return ids[best[2]], "title_fuzzy"
            return None
        if len(cands) == 1:
            return cands[0][0], "title"
        return None


def _kg_people(kg: KnowledgeGraph) -> dict[int, set[str]]:
    rel_ids = kg.relations.filter(pl.col("label").str.contains("|".join(_PEOPLE_RELATIONS)))["relation_id"]
    labels = dict(kg.entities.select("entity_id", "label").iter_rows())
    people: dict[int, set[str]] = defaultdict(set)
    for h, t in kg.triples.filter(pl.col("relation_id").is_in(rel_ids.implode())).select("head", "tail").iter_rows():
        people[h].add(normalize_title(labels.get(t, "")))
    return people


def _link_uris_to_redial(
    inp: CatalogInputs, redial_titles: dict[int, tuple[str, int | None]], mentions: dict[int, int],
    use_gold: bool,
) -> dict[int, tuple[int, str]]:
    """ReDial movieId -> (ReDial entity id, rule): each ReDial movie goes to its best-scoring item URI.

    Score of a pair: +2 same year (+0.5 off by one, reject otherwise), +0.5 for a URI disambiguated as a film
    and -1 for one disambiguated as something else (a series, a game), +1.5 per shared person (director, cast,
    writer; at most 2) between ``id2info.json`` and the KG, +log(mentions)/1000 to break ties, +10 for a pair
    seen in the aligned dialogues (only with ``use_gold``).
    """
    kg = inp.redial_kg
    if kg is None:
        return {}
    by_title: dict[str, list[int]] = defaultdict(list)
    for rid, (title, _) in redial_titles.items():
        by_title[normalize_title(title)].append(rid)
    people = _kg_people(kg)
    info_people: dict[int, set[str]] = {
        rid: {normalize_title(p) for p in d + c + w}
        for rid, d, c, w in inp.redial_info.select("redial_id", "director", "cast", "writer").iter_rows()
    }
    keys = list(by_title)
    best: dict[int, tuple[float, int, str]] = {}
    for eid, uri in kg.entities.filter(pl.col("is_item")).select("entity_id", "uri").iter_rows():
        title, year, kind = parse_film_uri(uri)
        key = normalize_title(title)
        cands = list(by_title.get(key, []))
        if not cands and key:
            hit = process.extractOne(key, keys, scorer=fuzz.ratio, score_cutoff=inp.title_match_threshold * 100)
            if hit is not None:
                cands = list(by_title[hit[0]])
        for rid in cands:
            score = math.log1p(mentions.get(rid, 0)) / 1000 + {"film": 0.5, "other": -1.0}.get(kind, 0.0)
            ryear = redial_titles[rid][1]
            if year is not None and ryear is not None:
                if ryear == year:
                    score += 2
                elif abs(ryear - year) == 1:
                    score += 0.5
                else:
                    continue
            score += 1.5 * min(2, len(people.get(eid, set()) & info_people.get(rid, set())))
            rule = "uri_title"
            if use_gold and inp.gold_links.get(rid, Counter()).get(eid):
                score += 10
                rule = "dialogue_aligned"
            if rid not in best or score > best[rid][0]:
                best[rid] = (score, eid, rule)
    if use_gold:  # gold pairs whose URI title did not even match
        for rid, counts in inp.gold_links.items():
            eid = counts.most_common(1)[0][0]
            if rid not in best or best[rid][1] != eid:
                best[rid] = (10.0, eid, "dialogue_aligned")
    return {rid: (eid, rule) for rid, (_, eid, rule) in best.items()}


def ground_truth_links(raw_turns: pl.DataFrame, raw_dialogue_order: list[str], examples: pl.DataFrame
                       ) -> dict[int, Counter]:
    """ReDial movieId -> Counter(entity id) from dialogues present both raw and UniCRS-processed.

    UniCRS merges consecutive messages of one speaker and writes one example per recommender turn, whose
    ``<movie>`` masks carry the gold ``rec`` entity ids. Where a raw dialogue has as many recommender turns as
    the processed one has examples, a turn with one ``@movieId`` and one ``rec`` id is a pair, and a turn with
    several gives the last unknown pair once the others are known.
    """
    turns: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    for did, role, movies in raw_turns.select("dialogue_id", "role", "movies").iter_rows():
        t = turns[did]
        if t and t[-1][0] == role:
            t[-1][1].extend(movies)
        else:
            t.append((role, list(movies)))
    by_dialogue: dict[int, list[list[int]]] = defaultdict(list)
    for d, rec in examples.select("dialogue", "rec").iter_rows():
        by_dialogue[d].append(rec)
    pending: list[tuple[list[int], list[int]]] = []
    for k, did in enumerate(raw_dialogue_order):
        recs = [m for role, m in turns.get(did, []) if role == "recommender"]
        lines = by_dialogue.get(k, [])
        if len(recs) != len(lines):
            continue
        for mentioned, rec in zip(recs, lines):
            rids, eids = list(dict.fromkeys(int(r) for r in mentioned)), list(dict.fromkeys(rec))
            if rids and len(rids) == len(eids):
                pending.append((rids, eids))
    # One movie and one gold id in a turn is a sure pair. In a turn with several, the order of ``rec`` need
    # not follow the text, so pairs are only deduced there once all but one of the movies are known.
    gold: dict[int, Counter] = defaultdict(Counter)
    changed = True
    while changed:
        changed = False
        rest = []
        for rids, eids in pending:
            known = {r: gold[r].most_common(1)[0][0] for r in rids if gold.get(r)}
            left_r = [r for r in rids if r not in known]
            left_e = [e for e in eids if e not in known.values()]
            if len(left_r) == 1 and len(left_e) == 1:
                gold[left_r[0]][left_e[0]] += 1
                changed = True
            elif len(left_r) > 1:
                rest.append((rids, eids))
        pending = rest
    return dict(gold)


def _measure(link: dict[int, tuple[int, str]], gold: dict[int, Counter]) -> dict:
    """Precision and coverage of a ReDial movieId -> entity link against the aligned-dialogue pairs."""
    linked = [rid for rid in gold if rid in link]
    correct = sum(1 for rid in linked if link[rid][0] == gold[rid].most_common(1)[0][0])
    return {
        "gold_movies": len(gold),
        "linked": len(linked),
        "correct": correct,
        "precision": round(correct / len(linked), 4) if linked else 0.0,
        "coverage": round(len(linked) / len(gold), 4) if gold else 0.0,
    }


def _items_summary(entity_ids: list[int], rows: dict[int, dict], entity_row: dict[int, int], rated: set[int]
                   ) -> dict:
    stats = Counter()
    for eid in entity_ids:
        row = rows.get(entity_row.get(eid, -1))
        if row is None:
            continue
        stats["linked"] += 1
        stats["with_plot"] += bool(row["plot"])
        stats["with_movielens_id"] += row["movielens_id"] is not None
        stats["with_ratings"] += row["movielens_id"] in rated
        stats["with_poster"] += row["poster_path"] is not None
    return {"items": len(entity_ids), **{k: stats[k] for k in
            ("linked", "with_plot", "with_movielens_id", "with_ratings", "with_poster")}}


def build_catalog(inp: CatalogInputs) -> Catalog:
    """Link every source into one table of movies (see the module docstring for the rules)."""
    index = _TitleIndex(inp.ml_movies, inp.title_match_threshold)
    imdb_to_ml = {i: m for m, i in inp.ml_links.select("movielens_id", "imdb_id").iter_rows() if i}
    links: list[tuple[str, str, int, str]] = []
    rows: dict[int, dict] = {}

    def row(mid: int, title: str, year: int | None, ml: int | None) -> dict:
        if mid not in rows:
            rows[mid] = {"movie_id": mid, "title": title, "year": year, "genres": [], "plot": None,
                         "director": [], "cast": [], "imdb_id": None, "tmdb_id": None, "movielens_id": ml,
                         "poster_path": None, "redial_ids": [], "redial_entity": None, "inspired_entity": None,
                         "dbpedia_uri": None, "ml100k_id": None}
        return rows[mid]

    # 1. MovieLens: the backbone (catalog id = movieId)
    for mid, title, year, genres in inp.ml_movies.select("movielens_id", "title", "year", "genres").iter_rows():
        row(mid, title, year, mid)["genres"] = list(genres or [])
        links.append(("movielens", str(mid), mid, "movielens"))
    for mid, imdb, tmdb in inp.ml_links.select("movielens_id", "imdb_id", "tmdb_id").iter_rows():
        if mid in rows:
            rows[mid]["imdb_id"], rows[mid]["tmdb_id"] = imdb, tmdb

    # 2. ReDial movies -> MovieLens by IMDb id, else by title
    titles: dict[int, tuple[str, int | None]] = {
        rid: (t, y) for rid, t, y in inp.redial_names.select("redial_id", "title", "year").iter_rows()
    }
    info = {r["redial_id"]: r for r in inp.redial_info.iter_rows(named=True)}
    for rid, r in info.items():
        if rid not in titles or titles[rid][1] is None:
            titles[rid] = (r["title"], r["year"])
    mentions = dict(inp.redial_names.select("redial_id", "n_mentions").iter_rows())
    redial_row: dict[int, int] = {}
    for rid, (title, year) in sorted(titles.items()):
        r = info.get(rid)
        imdb = r["imdb_id"] if r else None
        if imdb in imdb_to_ml:
            mid, rule = imdb_to_ml[imdb], "imdb"
        elif (hit := index.match(title, year)) is not None:
            mid, rule = hit
        else:
            mid, rule = ID_OFFSETS["redial"] + rid, "new"
        target = row(mid, title, year, None)
        target["redial_ids"].append(rid)
        if r:
            for col in ("plot", "imdb_id"):
                target[col] = target[col] or r[col]
            for col in ("director", "cast", "genres"):
                target[col] = target[col] or list(r[col])
        redial_row[rid] = mid
        links.append(("redial", str(rid), mid, rule))

    # 3. ReDial entity space: item URIs -> ReDial movies (measured against the aligned dialogues)
    measured = _measure(_link_uris_to_redial(inp, titles, mentions, use_gold=False), inp.gold_links)
    uri_link = _link_uris_to_redial(inp, titles, mentions, use_gold=True)
    entity_redial: dict[int, list[int]] = defaultdict(list)
    for rid, (eid, _) in uri_link.items():
        entity_redial[eid].append(rid)
    redial_entity_row: dict[int, int] = {}
    uri_row: dict[str, int] = {}
    if inp.redial_kg is not None:
        for eid, uri in inp.redial_kg.entities.filter(pl.col("is_item")).select("entity_id", "uri").iter_rows():
            rids = sorted(entity_redial.get(eid, []), key=lambda r: -mentions.get(r, 0))
            ml_rows = [redial_row[r] for r in rids if rows[redial_row[r]]["movielens_id"] is not None]
            if rids:
                mid = (ml_rows or [redial_row[rids[0]]])[0]
                rule = uri_link[rids[0]][1] if rids[0] in uri_link else "via_redial"
            else:
                title, year, _ = parse_film_uri(uri)
                hit = index.match(title, year)
                mid, rule = hit if hit else (ID_OFFSETS["redial_entity"] + eid, "new")
                row(mid, title, year, None)
            rows[mid]["redial_entity"] = eid
            rows[mid]["dbpedia_uri"] = uri
            redial_entity_row[eid] = mid
            uri_row[uri] = mid
            links.append(("redial_entity", str(eid), mid, rule))
            links.append(("dbpedia", uri, mid, rule))

    # 4. INSPIRED entity space: same URI as ReDial, else the dialogues' "Title (Year)" names, else the URI
    named: dict[str, Counter] = defaultdict(Counter)
    for names, uris in inp.inspired_turns.select("movies", "movie_uris").iter_rows():
        if uris is not None and len(names) == len(uris):
            for n, u in zip(names, uris):
                named[u][n] += 1
    inspired_entity_row: dict[int, int] = {}
    if inp.inspired_kg is not None:
        for eid, uri in inp.inspired_kg.entities.filter(pl.col("is_item")).select("entity_id", "uri").iter_rows():
            if uri in uri_row:
                mid, rule = uri_row[uri], "dbpedia_uri"
            else:
                utitle, uyear, _ = parse_film_uri(uri)
                title, year = (split_title_year(named[uri].most_common(1)[0][0]) if named.get(uri)
                               else (utitle, uyear))
                hit = index.match(title, year or uyear) or index.match(utitle, uyear)
                mid, rule = hit if hit else (ID_OFFSETS["inspired_entity"] + eid, "new")
                row(mid, title, year or uyear, None)
                rows[mid]["dbpedia_uri"] = rows[mid]["dbpedia_uri"] or uri
            rows[mid]["inspired_entity"] = eid
            inspired_entity_row[eid] = mid
            links.append(("inspired_entity", str(eid), mid, rule))
            if uri not in uri_row:
                links.append(("dbpedia", uri, mid, rule))

    # 5. ML-100K ids (their own id space) -> MovieLens by IMDb id
    for k, imdb, _ in inp.ml100k_links.select("ml100k_id", "imdb_id", "tmdb_id").iter_rows():
        if imdb in imdb_to_ml:
            rows[imdb_to_ml[imdb]]["ml100k_id"] = k
            links.append(("ml100k", str(k), imdb_to_ml[imdb], "imdb"))

    # 6. Plots from TMDB overviews, people from the knowledge graphs, posters by MovieLens id
    by_imdb = {i: o for i, o in inp.tmdb.select("imdb_id", "overview").iter_rows() if i and o}
    by_tmdb = {t: o for t, o in inp.tmdb.select("tmdb_id", "overview").iter_rows() if o}
    for r in rows.values():
        if not r["plot"]:
            r["plot"] = by_imdb.get(r["imdb_id"]) or by_tmdb.get(r["tmdb_id"])
    for kg, col in ((inp.redial_kg, "redial_entity"), (inp.inspired_kg, "inspired_entity")):
        if kg is None:
            continue
        labels = dict(kg.entities.select("entity_id", "label").iter_rows())
        rel = dict(kg.relations.select("relation_id", "label").iter_rows())
        people: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for h, rid, t in kg.triples.iter_rows():
            if rel.get(rid) in ("director", "starring"):
                people[h][rel[rid]].append(labels[t])
        for r in rows.values():
            eid = r[col]
            if eid is not None and eid in people:
                r["director"] = r["director"] or people[eid]["director"]
                r["cast"] = r["cast"] or people[eid]["starring"]
    for mid, path in inp.posters.select("movielens_id", "path").iter_rows():
        if mid in rows:
            rows[mid]["poster_path"] = path

    movies = pl.DataFrame(
        list(rows.values()),
        schema={"movie_id": pl.Int64, "title": pl.String, "year": pl.Int32, "genres": pl.List(pl.String),
                "plot": pl.String, "director": pl.List(pl.String), "cast": pl.List(pl.String),
                "imdb_id": pl.String, "tmdb_id": pl.Int64, "movielens_id": pl.Int64, "poster_path": pl.String,
                "redial_ids": pl.List(pl.Int64), "redial_entity": pl.Int64, "inspired_entity": pl.Int64,
                "dbpedia_uri": pl.String, "ml100k_id": pl.Int32},
    ).sort("movie_id")
    link_df = pl.DataFrame(links, schema=LINK_SCHEMA, orient="row")
    rated = set(inp.rated["movielens_id"].to_list())
    summary = {
        "movies": movies.height,
        "redial": _items_summary(
            inp.redial_kg.entities.filter(pl.col("is_item"))["entity_id"].to_list() if inp.redial_kg else [],
            rows, redial_entity_row, rated),
        "inspired": _items_summary(
            inp.inspired_kg.entities.filter(pl.col("is_item"))["entity_id"].to_list() if inp.inspired_kg else [],
            rows, inspired_entity_row, rated),
        "redial_link": measured,
        "rules": {f"{s}:{r}": n for (s, r), n in sorted(Counter((s, r) for s, _, _, r in links).items())},
    }
    return Catalog(movies, link_df, summary)
