"""The HTTP service on a small trained model: validation, 404s, conversations across a restart, posters."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from qamrec.config import ServeConfig
from qamrec.serve.app import create_app
from qamrec.serve.store import SQLiteStore

pytestmark = pytest.mark.slow


@pytest.fixture()
def client(small_engine, tmp_path: Path):
    store = SQLiteStore(tmp_path / "s.sqlite3")
    with TestClient(create_app(small_engine, store)) as c:
        c.store = store  # type: ignore[attr-defined]
        yield c


def test_recommend_resolves_titles_and_explains(client, small_engine):
    liked = small_engine.label(int(small_engine.cand_movie[0]))
    r = client.post("/recommend", json={"query": "a funny heist movie with a great ensemble", "liked": [liked], "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["movies"]) == 7
    ids = [m["id"] for m in body["movies"]]
    assert len(set(ids)) == 7 and body["resolved"][liked] not in ids  # liked movies are not recommended back
    scores = [m["score"] for m in body["movies"]]
    assert scores == sorted(scores, reverse=True)
    assert all(m["reason"] and m["title"] for m in body["movies"])
    assert abs(sum(a["weight"] for a in body["attended"]) - 1) < 0.05 or len(body["attended"]) == 25
    assert any(a["label"] == liked for a in body["attended"])  # the liked movie is an anchor of the query
    with_poster = [m for m in body["movies"] if m["poster_url"]]
    if with_poster:
        p = client.get(with_poster[0]["poster_url"])
        assert p.status_code == 200 and p.headers["content-type"] in ("image/jpeg", "image/svg+xml")


def test_validation_and_unknown_ids(client):
    assert client.post("/recommend", json={"query": ""}).status_code == 422
    assert client.post("/recommend", json={"query": "x" * 2001}).status_code == 422
    assert client.post("/recommend", json={"query": "ok", "k": 0}).status_code == 422
    assert client.post("/recommend", json={"query": "ok", "k": 101}).status_code == 422
    assert client.post("/recommend", json={"query": "ok", "extra": 1}).status_code == 422
    assert client.post("/recommend", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    bad_utf8 = client.post("/recommend", content=b"{\"query\": \"\xff\xfe\"}", headers={"content-type": "application/json"})
    assert bad_utf8.status_code in (400, 422)
    r = client.post("/recommend", json={"query": "ok", "liked": ["Zzyzx Qqqq Wwww (1901)"]})
    assert r.status_code == 422 and "closest" in r.json() and "Zzyzx" in r.json()["detail"]
    assert client.post("/recommend", content=b"x" * 70000, headers={"content-type": "application/json"}).status_code == 413
    assert client.get("/movies/999999999").status_code == 404
    assert client.get("/posters/999999999").status_code == 404
    assert client.get("/posters/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
    assert client.get("/sessions/nope").status_code == 404
    assert client.post("/sessions/nope/messages", json={"text": "hi"}).status_code == 404
    sid = client.post("/sessions").json()["id"]
    assert client.post(f"/sessions/{sid}/feedback", json={"movie_id": 999999999, "value": "liked"}).status_code == 404
    assert client.post(f"/sessions/{sid}/feedback", json={"suggestion_id": 123456, "value": "accepted"}).status_code == 404
    assert client.post(f"/sessions/{sid}/feedback", json={"value": "liked"}).status_code == 422
    assert client.post(f"/sessions/{sid}/feedback", json={"movie_id": 1, "value": "accepted"}).status_code == 422
    assert client.get("/health").json()["status"] == "ok"


def test_conversation_feedback_and_restart(small_engine, tmp_path: Path):
    db = tmp_path / "sessions.sqlite3"
    with TestClient(create_app(small_engine, SQLiteStore(db))) as c:
        sid = c.post("/sessions").json()["id"]
        first = c.post(f"/sessions/{sid}/messages", json={"text": "I want a scary movie", "k": 10}).json()
        assert len(first["movies"]) == 10 and first["suggestions"]
        titles = {m["id"]: m["title"] for m in first["movies"]}
        assert first["reply"] and any(t in first["reply"] for t in titles.values())  # it names a movie it shows
        top = first["movies"][0]["id"]
        ack = c.post(f"/sessions/{sid}/feedback", json={"movie_id": top, "value": "disliked"})
        assert ack.status_code == 200
        after = ack.json()["recommendations"]
        assert top not in [m["id"] for m in after["movies"]]  # a disliked movie is never shown again
        assert after["reply"].startswith(("Got it, not", "Okay, no more like", "Fair enough,"))
        assert titles[top] in after["reply"]  # the dislike is acknowledged, by name
        sug = after["suggestions"][0]
        acc = c.post(f"/sessions/{sid}/feedback", json={"suggestion_id": sug["id"], "value": "accepted"}).json()
        assert all(w in acc["recommendations"]["query"] for w in sug["words"])  # accepted words join the query
        assert acc["recommendations"]["movies"] != after["movies"]
        assert acc["recommendations"]["reply"]
        second = c.post(f"/sessions/{sid}/messages", json={"text": "something from the 1980s"}).json()
        rows = SQLiteStore(db).count("feedback")
        assert rows == 2
        replies = [first["reply"], after["reply"], acc["recommendations"]["reply"], second["reply"]]
        assert len(set(replies)) == 4  # never the same words twice
    # a restart of the app on the same file loses nothing
    with TestClient(create_app(small_engine, SQLiteStore(db))) as c:
        s = c.get(f"/sessions/{sid}").json()
        assert [m["text"] for m in s["messages"] if m["role"] == "user"] == ["I want a scary movie",
                                                                              "something from the 1980s"]
        # the replies are kept in the history, each after what it answered
        assert [m["role"] for m in s["messages"]] == ["user", "system", "system", "system", "user", "system"]
        assert [m["text"] for m in s["messages"] if m["role"] == "system"] == replies
        assert s["recommendations"]["movies"] == second["movies"] and s["recommendations"]["reply"] == second["reply"]
        again = c.post(f"/sessions/{sid}/messages", json={"text": "and funny"}).json()
        assert top not in [m["id"] for m in again["movies"]]
        assert again["reply"] and again["reply"] not in replies  # the restarted app remembers what was said


def test_reply_is_in_the_openapi_schema(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert schema["Recommendations"]["properties"]["reply"]["type"] == "string"
    assert "system" in schema["Message"]["properties"]["role"]["enum"]
    r = client.post("/recommend", json={"query": "a scary movie from the 1980s", "k": 5}).json()
    assert r["reply"] and any(m["title"] in r["reply"] for m in r["movies"])


def test_old_session_store_is_migrated(tmp_path: Path):
    import sqlite3

    db = tmp_path / "old.sqlite3"
    with sqlite3.connect(db) as conn:  # the schema before replies existed
        conn.executescript(
            "CREATE TABLE sessions (id TEXT PRIMARY KEY, created REAL NOT NULL, state TEXT);"
            "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL, text TEXT NOT NULL,"
            " at REAL NOT NULL);"
            "INSERT INTO sessions VALUES ('old', 1.0, NULL); INSERT INTO messages (session, text, at) VALUES "
            "('old', 'a scary movie', 2.0);")
    store = SQLiteStore(db)
    store.add_message("old", "How about Scream (1996)?", "system", {"kind": "recommend"})
    msgs = store.get("old")["messages"]
    assert [(m["role"], m["text"]) for m in msgs] == [("user", "a scary movie"), ("system", "How about Scream (1996)?")]
    assert msgs[1]["detail"] == {"kind": "recommend"}


def test_api_key_guards_everything_but_health(small_engine, tmp_path: Path):
    app = create_app(small_engine, SQLiteStore(tmp_path / "k.sqlite3"), ServeConfig(api_key="s3cret"))
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        assert c.post("/recommend", json={"query": "ok"}).status_code == 401
        assert c.post("/recommend", json={"query": "ok"}, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/recommend", json={"query": "ok"}, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/movies/1").status_code == 401 and c.get("/docs").status_code == 401
        c.cookies.set("qamrec_api_key", "s3cret")
        assert c.post("/sessions").status_code == 201  # the page's cookie works as the header does
        c.cookies.clear()
        assert c.get("/").status_code == 401 and c.get("/static/app.js").status_code == 401  # the page too
        assert c.get("/?api_key=wrong", follow_redirects=False).status_code == 401
        r = c.get("/?api_key=s3cret&lang=en", follow_redirects=False)  # once: sets the cookie, drops the key
        assert r.status_code == 303 and r.headers["location"] == "/?lang=en"
        cookie = r.headers["set-cookie"].lower()
        assert "qamrec_api_key=s3cret" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200
        assert c.get("/movies/1").status_code != 401


def test_missing_poster_file_gets_a_placeholder(small_engine, tmp_path: Path):
    from qamrec.serve.engine import Engine

    with_poster = next(m for m in small_engine.info if small_engine.info[m]["poster_path"])
    moved = Engine.__new__(Engine)
    moved.__dict__.update(small_engine.__dict__)
    moved.raw_dir = tmp_path / "nowhere"
    with TestClient(create_app(moved, SQLiteStore(tmp_path / "p.sqlite3"))) as c:
        r = c.get(f"/posters/{with_poster}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    with TestClient(create_app(small_engine, SQLiteStore(tmp_path / "q.sqlite3"))) as c:
        r = c.get(f"/posters/{with_poster}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"


def test_unknown_title_lists_closest(small_engine):
    from qamrec.serve.engine import UnknownTitleError

    some = small_engine.label(int(small_engine.cand_movie[3]))
    assert small_engine.resolve(some) == int(small_engine.cand_movie[3]) or \
        small_engine.label(small_engine.resolve(some)) == some
    with pytest.raises(UnknownTitleError) as e:
        small_engine.resolve(some[:-7] + "xq (1850)")
    assert e.value.closest and len(e.value.closest) <= 5


def test_recommend_cli_json_and_unknown_title(small_run: Path, prepared_home: Path, small_engine,
                                              small_run_settings: list[str]):
    import json

    from typer.testing import CliRunner

    from qamrec.cli import app
    base = ["--home", str(prepared_home)] + [x for s in small_run_settings for x in ("--set", s)]
    liked = small_engine.label(int(small_engine.cand_movie[5]))
    res = CliRunner().invoke(app, base + ["recommend", "a scary movie", "--liked", liked, "--k", "4", "--json",
                                          "--run", str(small_run)])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(body["movies"]) == 4 and body["resolved"][liked] == small_engine.resolve(liked)
    assert all({"id", "title", "year", "genres", "score", "reasons", "reason"} <= set(m) for m in body["movies"])
    res = CliRunner().invoke(app, base + ["recommend", "a scary movie", "--liked", "Qwzx Plorf (1777)",
                                          "--run", str(small_run)])
    assert res.exit_code != 0 and "unknown title" in str(res.exception)
    res = CliRunner().invoke(app, base + ["recommend", "x", "--run", str(small_run / "nope")])
    assert res.exit_code != 0 and "no complete trained run" in str(res.exception)


def test_demo_runs_end_to_end_without_the_web_page(prepared_home: Path, shared_data: Path,
                                                   small_run_settings: list[str]):
    """The README's main job: data, graph, a trained model (then reused), recommendations for the examples."""
    from typer.testing import CliRunner

    from qamrec.cli import DEMO_QUERIES, app

    base = ["--home", str(prepared_home)] + [x for s in small_run_settings for x in ("--set", s)]
    args = base + ["demo", "--from", str(shared_data), "--dataset", "inspired", "--epochs", "1", "--no-web"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "training the demo model" in res.output or "using the trained model" in res.output  # a reused home
    for text, _ in DEMO_QUERIES:
        assert text[:30] in res.output.replace("\n", " ") or text[:20] in res.output
    assert (prepared_home / "runs" / "default" / "model.safetensors").exists()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "using the trained model" in again.output


def test_catalog_extension_scores_movies_outside_the_graph(small_engine):
    import copy

    import polars as pl

    e = copy.copy(small_engine)
    e.info = dict(small_engine.info)
    before = e.catalog_size
    titles = ["Zorblax and the Quantum Heist", "A Quiet Afternoon of Knitting", "Tax Forms: The Musical"]
    movies = pl.DataFrame({"movie_id": [900000001, 900000002, 900000003], "title": titles, "year": [2030, 2031, 2032],
                           "genres": [["Comedy"], ["Drama"], ["Musical"]]})
    assert e.extend_catalog(movies, e.encode_query(titles)) == 3
    assert e.catalog_size == before + 3 and len(small_engine.extra_movies) == 0
    res = e.recommend("Zorblax and the Quantum Heist", k=10)
    ids = [m["id"] for m in res.movies]
    assert 900000001 in ids and 900000002 not in ids[:3]
    new = next(m for m in res.movies if m["id"] == 900000001)
    assert new["title"] == titles[0] and new["reasons"][0]["kind"] == "text"
    assert e.extend_catalog(movies.filter(pl.col("movie_id") < 0), e.encode_query([])[:0]) == 0


def test_catalog_extension_can_link_new_movies_to_genres_and_predict_their_bias(small_engine):
    """With ``new_movie_genres`` a movie outside the graph reads its genres' nodes; with ``new_movie_bias =
    "content"`` its bias is regressed on the text of the graph's movies (as embedded in the extension)."""
    import copy

    import numpy as np
    import polars as pl
    import torch

    from qamrec.models.prior import content_bias

    graph_ids = [int(m) for m in small_engine.cand_movie[:40]]
    graph_titles = [small_engine.info[m]["title"] for m in graph_ids]
    titles = ["Zorblax and the Quantum Heist", "Zorblax and the Quantum Heist"]
    ids, all_titles = graph_ids + [900000001, 900000002], graph_titles + titles
    genres = [small_engine.info[m]["genres"] for m in graph_ids] + [["Comedy"], ["Horror"]]
    movies = pl.DataFrame({"movie_id": ids, "title": all_titles, "year": [2000] * len(ids), "genres": genres})
    text = small_engine.encode_query(all_titles)
    rows = {}
    for links, bias in ((False, "median"), (True, "content")):
        e = copy.copy(small_engine)
        e.info = dict(small_engine.info)
        e.new_movie_genres, e.new_movie_bias = links, bias
        assert e.extend_catalog(movies, text, "float32") == 2
        rows[links] = torch.stack([e.index.row(len(e.cand_movie) + j) for j in range(2)])
    width = small_engine.model.net.cfg.hidden
    plain, linked = rows[False], rows[True]
    assert torch.allclose(plain[0, :width], plain[1, :width], atol=1e-5)  # same text, no links: one representation
    assert not torch.allclose(linked[0, :width], linked[1, :width])  # a comedy and a horror film now differ
    median = float(small_engine.model.net.bias.detach().median())
    assert float(plain[0, width]) == pytest.approx(median)
    want = content_bias(torch.from_numpy(text[:40]), small_engine._movie_bias(np.array(graph_ids)),
                        torch.from_numpy(text[40:]))
    assert linked[:, width].tolist() == pytest.approx(want.tolist(), abs=1e-5)
    assert float(linked[0, width]) != pytest.approx(median)


def test_query_embeddings_are_cached_and_bounded(small_engine):
    import copy
    import threading
    from collections import OrderedDict

    e = copy.copy(small_engine)
    calls = []
    e.encode_query = lambda texts: (calls.append(list(texts)), small_engine.encode_query(texts))[1]
    e.query_cache, e.query_cache_size, e._cache_lock = OrderedDict(), 2, threading.Lock()
    first = e.recommend("a scary movie", k=5)
    again = e.recommend("a scary movie", k=5)
    assert calls == [["a scary movie"]] and first.movies == again.movies
    e.recommend("a funny movie", k=5)
    e.recommend("a sad movie", k=5)
    assert list(e.query_cache) == ["a funny movie", "a sad movie"]  # the oldest went first
    e.query_cache_size = 0
    e.recommend("a scary movie", k=5)
    e.recommend("a scary movie", k=5)
    assert calls[-2:] == [["a scary movie"], ["a scary movie"]]


def test_engine_ranks_like_the_model(small_engine):
    """One product over the index rows gives the model's own ranking (popularity as trained, no feedback),
    with the traced query encoder, and with int8 scoring of an extended catalog."""
    import copy

    import polars as pl

    from qamrec.models.query import Query

    e = copy.copy(small_engine)
    e.refine = e.refine.model_copy(update={"popularity": 1.0, "mode": "none"})
    e.info = dict(small_engine.info)
    text = "a funny heist movie with a great ensemble cast"
    want = [m for m, _ in e.model.recommend(Query(text=text), k=10)]
    assert [m["id"] for m in e.recommend(text, k=10, understand=False).movies] == want
    titles = ["Zorblax and the Quantum Heist", "A Quiet Afternoon of Knitting"]
    movies = pl.DataFrame({"movie_id": [900000001, 900000002], "title": titles, "year": [2030, 2031],
                           "genres": [["Comedy"], ["Drama"]]})
    e.extend_catalog(movies, e.encode_query(titles), "int8")
    got = [m["id"] for m in e.recommend(text, k=12, understand=False).movies]
    assert [m for m in got if m < 900000000][:10] == want


def test_reasons_name_only_movies_the_request_named(small_engine):
    """Movies the encoder retrieved by text similarity are attended to, but a reason ("like X") names only a
    movie the person named or liked."""
    text = "a funny heist movie with a great ensemble"
    res = small_engine.recommend(text, k=10)
    assert any(a["kind"] == "movie" for a in res.attended)  # retrieved movies are in the query's set
    assert not [r for m in res.movies for r in m["reasons"] if r["kind"] == "movie"]
    assert all(m["reason"] for m in res.movies)
    liked = small_engine.movie(res.movies[0]["id"])
    assert liked is not None
    res = small_engine.recommend(text, k=10, anchors=[liked["id"]])
    named = {r["label"] for m in res.movies for r in m["reasons"] if r["kind"] == "movie"}
    assert named <= {next(a["label"] for a in res.attended if a["kind"] == "movie" and a["label"].startswith(
        liked["title"].split(" (")[0]))}


def test_engine_adds_the_co_mention_memory_of_the_named_movies(small_engine):
    """With a large memory weight the first recommendation for "like X" is the movie most often named with X
    in the training dialogues (the model's score, QAMRecNet.score, has the same term)."""
    import copy

    import numpy as np

    from qamrec.models.query import Query

    e = copy.copy(small_engine)
    e.refine = e.refine.model_copy(update={"popularity": 1.0, "mode": "none"})
    mem = e.model.net.memory
    assert mem is not None and mem.table._nnz() > 0
    table = mem.table.to_dense().numpy()
    top2 = -np.sort(-table, axis=1)[:, :2]
    node = int(np.argmax(np.where(top2[:, 0] > top2[:, 1] + 1e-3, top2[:, 0], 0)))  # one clear neighbour
    movie = int(e.model.graph.meta["movie_ids"][node])
    neighbour = int(e.cand_movie[int(table[node].argmax())])
    old = float(mem.weight)
    try:
        mem.weight.fill_(1e4)
        got = e.recommend("something good", k=5, anchors=[movie], understand=False).movies
        model_top = [m for m, _ in e.model.recommend(Query("something good", movies=(movie,)), k=5) if m != movie]
    finally:
        mem.weight.fill_(old)
    assert got[0]["id"] == neighbour == model_top[0]


def test_the_service_adds_the_models_neighbour_vote_unless_switched_off(small_engine):
    import copy

    import torch

    from qamrec.models.query import Query

    votes = small_engine.model.net.neighbours
    assert votes is not None and len(votes) > 100  # the small run's training examples are stored
    e = copy.copy(small_engine)
    text = "something to watch with my kids this weekend"
    qb = e.model.featurizer([Query(text)], text=e._embed(text))
    term = votes.term(qb.text, qb.anchors, qb.anchor_batch)[0]
    top = int(e.cand_movie[int(term.argmax())])
    kept = float(votes.weight)
    try:
        with torch.no_grad():
            votes.weight.fill_(1000.0)  # the vote decides the first place
        assert e.recommend(text, k=3, understand=False).movies[0]["id"] == top
        e.neighbours = False
        off = [m["id"] for m in e.recommend(text, k=3, understand=False).movies]
        with torch.no_grad():
            votes.weight.fill_(0.0)
        assert off == [m["id"] for m in e.recommend(text, k=3, understand=False).movies]
    finally:
        with torch.no_grad():
            votes.weight.fill_(kept)
