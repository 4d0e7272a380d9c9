"""The CSR scale graph: built from small MovieLens-format files and checked against the edge lists."""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from qamrec.errors import DataFormatError, MissingDataError
from qamrec.graph.csr import (
    EDGE_TYPES,
    GENRE_OF,
    HAS_GENRE,
    HAS_TAG,
    RATED_BY,
    RATES,
    TAG_OF,
    CSRGraph,
    csc_from_coo,
)
from qamrec.graph.scale_build import build_scale_graph

torch.set_num_threads(1)

GENRES = ["Action", "Comedy", "Drama", "Sci-Fi", "Romance"]


def _write(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Movies (non-contiguous ids, one without genres), ratings (unsorted, timestamp ties), tags (case variants)."""
    rnd = random.Random(3)
    d = tmp_path_factory.mktemp("ml")
    movie_ids = [1, 2, 5, 7, 10, 11, 20, 33, 34, 50, 51, 99]
    movies = []
    for i, m in enumerate(movie_ids):
        genres = "(no genres listed)" if m == 99 else "|".join(rnd.sample(GENRES, rnd.randint(1, 3)))
        movies.append([m, f"Movie {m}, The ({1990 + i})", genres])
    ratings = []
    user_ids = [3, 4, 8, 9, 15, 16, 23]  # non-contiguous
    for u in user_ids:
        for m in rnd.sample(movie_ids, rnd.randint(2, 9)):
            ratings.append([u, m, rnd.choice([0.5, 1.0, 2.5, 3.0, 4.5, 5.0]), 1_000 + rnd.randint(0, 5)])  # ties
    rnd.shuffle(ratings)
    tags = [[rnd.choice(user_ids), rnd.choice(movie_ids), rnd.choice(["Funny", "funny ", "dark", "Space", "space"]),
             5] for _ in range(40)]
    return {
        "dir": d,
        "movies": _write(d / "movies.csv", ["movieId", "title", "genres"], movies),
        "ratings": _write(d / "ratings.csv", ["userId", "movieId", "rating", "timestamp"], ratings),
        "tags": _write(d / "tags.csv", ["userId", "movieId", "tag", "timestamp"], tags),
        "movie_rows": movies, "rating_rows": ratings, "tag_rows": tags, "user_ids": sorted(user_ids),
    }


@pytest.fixture(scope="module")
def built(files: dict) -> tuple[dict, CSRGraph]:
    stats = build_scale_graph(files["ratings"], files["tags"], files["movies"], files["dir"] / "graph", features=False)
    return stats, CSRGraph.load(files["dir"] / "graph")


def _edges(g: CSRGraph, et) -> dict[tuple[int, int], float | None]:
    ei = g.edge_index(et)
    attr = g.edge_attr.get(et)
    return {(int(s), int(d)): (None if attr is None else float(attr[i])) for i, (s, d) in enumerate(ei.t().tolist())}


def test_csc_layout_and_sizes(built: tuple[dict, CSRGraph], files: dict) -> None:
    stats, g = built
    assert set(g.edge_types) == set(EDGE_TYPES)
    assert g.num_nodes == {"user": 7, "movie": 12, "genre": 5, "tag": 3}
    assert g.meta["user_ids"].tolist() == files["user_ids"]
    assert g.meta["movie_ids"].tolist() == [r[0] for r in files["movie_rows"]]  # movies.csv order
    assert g.meta["genres"] == sorted(x.lower() for x in GENRES) and g.meta["tags"] == ["dark", "funny", "space"]
    for et in g.edge_types:
        colptr, row = g.colptr[et], g.row[et]
        assert colptr.dtype == torch.int64 and row.dtype == torch.int32
        assert colptr.numel() == g.num_nodes[et[2]] + 1 and int(colptr[-1]) == row.numel()
        assert bool((colptr[1:] >= colptr[:-1]).all())
        for d in range(g.num_nodes[et[2]]):  # sources ascending and distinct within each destination
            seg = row[colptr[d]:colptr[d + 1]]
            assert bool((seg[1:] > seg[:-1]).all())
        assert stats["edges"]["__".join(et)] == row.numel()
    assert stats["build_s"] > 0 and stats["peak_rss_gb"] > 0


def test_ratings_equal_edge_list_and_val_is_latest(built: tuple[dict, CSRGraph], files: dict) -> None:
    _, g = built
    uix = {u: i for i, u in enumerate(files["user_ids"])}
    mix = {m[0]: i for i, m in enumerate(files["movie_rows"])}
    latest: dict[int, tuple[int, int]] = {}
    for u, m, _, ts in files["rating_rows"]:
        if u not in latest or (ts, m) > latest[u]:
            latest[u] = (ts, m)
    val = {(uix[u], mix[m]) for u, (_, m) in latest.items()}
    assert g.val.shape == (2, len(files["user_ids"]))
    assert {tuple(p) for p in g.val.t().tolist()} == val
    expected = {(uix[u], mix[m]): r / 5 for u, m, r, _ in files["rating_rows"] if (uix[u], mix[m]) not in val}
    rates = _edges(g, RATES)
    assert rates.keys() == expected.keys()
    assert all(abs(rates[k] - v) < 1e-3 for k, v in expected.items())
    rated_by = _edges(g, RATED_BY)
    assert rated_by == {(m, u): a for (u, m), a in rates.items()}  # the reverse, same attributes
    assert not val & rates.keys()


def test_genres_and_tags_equal_edge_list(built: tuple[dict, CSRGraph], files: dict) -> None:
    _, g = built
    mix = {m[0]: i for i, m in enumerate(files["movie_rows"])}
    gix = {name: i for i, name in enumerate(g.meta["genres"])}
    genre_pairs = {(mix[m], gix[x.lower()]) for m, _, gs in files["movie_rows"]
                   if gs != "(no genres listed)" for x in gs.split("|")}
    assert set(_edges(g, HAS_GENRE)) == genre_pairs
    assert set(_edges(g, GENRE_OF)) == {(b, a) for a, b in genre_pairs}
    tix = {name: i for i, name in enumerate(g.meta["tags"])}
    counts = Counter((mix[m], tix[t.strip().lower()]) for _, m, t, _ in files["tag_rows"])
    assert _edges(g, HAS_TAG) == {k: float(v) for k, v in counts.items()}
    assert _edges(g, TAG_OF) == {(t, m): float(v) for (m, t), v in counts.items()}


def test_save_load_round_trip_and_corruption(built: tuple[dict, CSRGraph], files: dict, tmp_path: Path) -> None:
    _, g = built
    g.save(tmp_path / "copy")
    h = CSRGraph.load(tmp_path / "copy", mmap=False)
    assert h.num_nodes == g.num_nodes and torch.equal(h.val, g.val)
    for et in g.edge_types:
        assert torch.equal(h.colptr[et], g.colptr[et]) and torch.equal(h.row[et], g.row[et])
    assert h.meta["sources"]["ratings"]["sha256"] == g.meta["sources"]["ratings"]["sha256"]
    target = tmp_path / "copy" / "user__rates__movie.row.npy"
    data = bytearray(target.read_bytes())
    data[-3] ^= 0x01  # one flipped bit in the last edge
    target.write_bytes(bytes(data))
    with pytest.raises(MissingDataError, match="user__rates__movie.row.npy"):
        CSRGraph.load(tmp_path / "copy")
    assert CSRGraph.load(tmp_path / "copy", verify=False).num_nodes == g.num_nodes
    meta = tmp_path / "copy" / "graph.json"
    meta.write_text(meta.read_text().replace('"user": 7', '"user": 8'))
    with pytest.raises(MissingDataError, match="graph.json"):
        CSRGraph.load(tmp_path / "copy")
    meta.unlink()
    with pytest.raises(MissingDataError, match="no CSR graph"):
        CSRGraph.load(tmp_path / "copy")


def test_features_and_texts(files: dict, tmp_path: Path) -> None:
    seen: list[str] = []

    def encode(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        return np.arange(len(texts) * 4, dtype=np.float32).reshape(len(texts), 4)

    build_scale_graph(files["ratings"], None, files["movies"], tmp_path / "g", features=encode)
    g = CSRGraph.load(tmp_path / "g")
    assert g.x["movie"].dtype == torch.float16 and g.x["movie"].shape == (12, 4)
    assert torch.equal(g.x["movie"][3].float(), torch.arange(12, 16, dtype=torch.float32))
    assert seen[0].startswith("Movie 1, The (1990) | ") and seen[-1] == "Movie 99, The (2001)"
    assert g.num_nodes["tag"] == 0 and g.num_edges(HAS_TAG) == 0


def test_bad_input_names_file_and_field(files: dict, tmp_path: Path) -> None:
    header = ["userId", "movieId", "rating", "timestamp"]
    bad = _write(tmp_path / "ratings.csv", header, [[1, 1, 4.0, 5], [1, 4, 3.0, 6]])
    with pytest.raises(DataFormatError, match=r"ratings.csv, field 'movieId': movie 4 is not in"):
        build_scale_graph(bad, None, files["movies"], tmp_path / "g", features=False)
    dup = _write(tmp_path / "dup.csv", header, [[1, 1, 4.0, 5], [1, 1, 3.0, 6]])
    with pytest.raises(DataFormatError, match="more than once"):
        build_scale_graph(dup, None, files["movies"], tmp_path / "g", features=False)
    twice = _write(tmp_path / "movies.csv", ["movieId", "title", "genres"],
                   [[1, "A (1999)", "Drama"], [1, "B", "Drama"]])
    with pytest.raises(DataFormatError, match="movieId 1 appears more than once"):
        build_scale_graph(files["ratings"], None, twice, tmp_path / "g", features=False)
    with pytest.raises(MissingDataError, match="nothere.csv"):
        build_scale_graph(tmp_path / "nothere.csv", None, files["movies"], tmp_path / "g", features=False)
    assert not (tmp_path / "g" / "graph.json").exists()


def test_csc_from_coo_matches_sorting() -> None:
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(0, 50, (500,), generator=gen).numpy()
    dst = torch.randint(0, 30, (500,), generator=gen).numpy()
    colptr, row, perm = csc_from_coo(src, dst, 30)
    order = np.lexsort((src, dst))
    assert np.array_equal(row, src[order]) and np.array_equal(src[perm], row)
    assert np.array_equal(np.repeat(np.arange(30), np.diff(colptr)), dst[order])
    g = CSRGraph.from_edge_index({"a": 50, "b": 30}, {("a", "to", "b"): torch.from_numpy(np.stack([src, dst]))})
    assert torch.equal(g.edge_index(("a", "to", "b")), torch.from_numpy(np.stack([src[order], dst[order]])))


def test_cli_graph_scale_from_a_folder(files: dict, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from qamrec.cli import app

    res = CliRunner().invoke(app, ["--home", str(tmp_path), "graph", "scale", "--source", str(files["dir"]),
                                   "--no-features", "--json"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output.strip().splitlines()[-1])
    assert stats["nodes"]["user"] == 7 and stats["val"] == 7 and stats["build_s"] > 0
    assert CSRGraph.load(Path(stats["folder"])).num_nodes == stats["nodes"]
    res = CliRunner().invoke(app, ["--home", str(tmp_path), "graph", "scale", "--no-features"])
    assert res.exit_code != 0 and "SYNTHETIC.json" in str(res.output) + str(res.exception)
