"""Understanding a request: the parser on hand-made sentences, the score adjustments, and the engine and the API
on real data (no movie the person named comes back, excluded kinds stay out, decades and people are honoured)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qamrec.serve.constraints import MovieFacts, Weights
from qamrec.serve.refine import WordGraph
from qamrec.serve.titles import TitleIndex
from qamrec.serve.understand import RequestParser, Understanding, YearRange
from qamrec.serve.years import find_years

TITLES = [("Inception", 2010), ("Ocean's Eleven", 2001), ("Ocean's Eleven", 1960), ("The Matrix", 1999),
          ("Up", 2009), ("It", 2017), ("It", 1990), ("Her", 2013), ("Seven", 1995), ("Heat", 1995),
          ("Psycho", 1960), ("Who Framed Roger Rabbit?", 1988), ("Crouching Tiger, Hidden Dragon", 2000),
          ("Star Wars: Episode IV - A New Hope", 1977), ("The Comedy", 2012), ("Airplane!", 1980),
          ("No Country for Old Men", 2007), ("Love Actually", 2003)]
INFO = {i + 1: {"title": t, "year": y, "genres": []} for i, (t, y) in enumerate(TITLES)}
ID = {f"{t} ({y})": m for m, (t, y) in zip(INFO, TITLES)}
PEOPLE = {"tom hanks": ("Tom Hanks", 20), "christopher nolan": ("Christopher Nolan", 8),
          "keanu reeves": ("Keanu Reeves", 10), "adam sandler": ("Adam Sandler", 12),
          "jonathan nolan": ("Jonathan Nolan", 2)}


@pytest.fixture(scope="module")
def parser() -> RequestParser:
    return RequestParser(TitleIndex(list(INFO), INFO), PEOPLE, latest_year=2018)


def ids(pairs: list[tuple[int, str]]) -> list[int]:
    return [m for m, _ in pairs]


def test_titles_after_cues_with_punctuation_and_years(parser: RequestParser):
    u = parser.parse("a mind-bending thriller like Inception")
    assert ids(u.anchors) == [ID["Inception (2010)"]] and u.anchors[0][1] == "Inception (2010)"
    u = parser.parse("movies like Who Framed Roger Rabbit? or Crouching Tiger, Hidden Dragon")
    assert ids(u.anchors) == [ID["Who Framed Roger Rabbit? (1988)"], ID["Crouching Tiger, Hidden Dragon (2000)"]]
    assert ids(parser.parse("similar to Star Wars: Episode IV - A New Hope, please").anchors) == \
        [ID["Star Wars: Episode IV - A New Hope (1977)"]]
    # the year picks the version; without one the candidate / lowest id wins
    assert ids(parser.parse("similar to Ocean's Eleven (1960)").anchors) == [ID["Ocean's Eleven (1960)"]]
    assert ids(parser.parse("I loved Ocean's Eleven, any other fun heist movies?").anchors) == \
        [ID["Ocean's Eleven (2001)"]]
    # lower case and a typo: fuzzy, for names that are not common words
    assert ids(parser.parse("i loved inception and oceans eleven").anchors) == \
        [ID["Inception (2010)"], ID["Ocean's Eleven (2001)"]]
    # a quoted title and a capitalized title with its year need no cue
    assert ids(parser.parse('something with the energy of "Airplane!"').anchors) == [ID["Airplane! (1980)"]]
    assert ids(parser.parse("The Matrix (1999) was great, more of that").anchors) == [ID["The Matrix (1999)"]]


def test_common_words_are_not_titles(parser: RequestParser):
    for text in ("I saw it and liked it", "I'd like something to cheer me up", "I like her movies",
                 "we watched seven movies already", "I want something like a comedy", "can you turn up the heat"):
        u = parser.parse(text)
        assert u.named == set(), text
    assert ids(parser.parse("something like Up").anchors) == [ID["Up (2009)"]]
    assert ids(parser.parse("I liked Seven and Heat").anchors) == [ID["Seven (1995)"], ID["Heat (1995)"]]
    assert ids(parser.parse('a movie like "her"').anchors) == [ID["Her (2013)"]]
    assert ids(parser.parse("I liked It (1990)").anchors) == [ID["It (1990)"]]


def test_seen_and_disliked_titles(parser: RequestParser):
    u = parser.parse("I already saw Heat and I hated Psycho. Nothing gory")
    assert ids(u.seen) == [ID["Heat (1995)"]] and ids(u.disliked) == [ID["Psycho (1960)"]] and not u.anchors
    assert u.named == {ID["Heat (1995)"], ID["Psycho (1960)"]} and u.excluded == ["gore"]
    assert "Heat" not in u.text and "Psycho" not in u.text and "gory" not in u.text  # what the encoder reads
    u = parser.parse("I didn't like Inception, but I loved The Matrix")
    assert ids(u.disliked) == [ID["Inception (2010)"]] and ids(u.anchors) == [ID["The Matrix (1999)"]]
    assert parser.parse("I haven't seen Heat yet").named == set()  # not seen: nothing to ban
    u = parser.parse("I'd like a scary one, not Psycho though")
    assert ids(u.disliked) == [ID["Psycho (1960)"]] and u.genres == ["horror"] and "Psycho" not in u.text
    # a cue word that starts a title is the title's
    assert ids(parser.parse("No Country for Old Men (2007) was great").anchors) == [ID["No Country for Old Men (2007)"]]


def test_negation_scope(parser: RequestParser):
    u = parser.parse("something similar to The Matrix but not action heavy, more thoughtful")
    assert u.excluded == ["action"] and u.genres == ["thoughtful"]
    assert u.text == "something similar to The Matrix, more thoughtful"  # "but not action heavy" read out
    u = parser.parse("no horror, gore or romance and lots of action")
    assert u.excluded == ["horror", "gore", "romance"] and u.genres == ["action"]
    u = parser.parse("a mystery whodunit, no romance please")
    assert u.genres == ["mystery"] and u.excluded == ["romance"] and u.text == "a mystery whodunit"
    assert parser.parse("a funny movie, anything but animated").excluded == ["animation"]
    assert parser.parse("I don't want anything scary or violent").excluded == ["horror", "violence"]
    u = parser.parse("not animated, funny")  # a comma to a term of the same kind continues the list ...
    assert u.excluded == ["animation", "comedy"]
    u = parser.parse("nothing with Adam Sandler, recent please")  # ... of another kind it does not
    assert u.excluded_people == ["Adam Sandler"] and [y.label for y in u.years] == ["recent"]
    u = parser.parse("without horror and a bit of comedy")
    assert u.excluded == ["horror"] and u.genres == ["comedy"]
    assert parser.parse("not too long, a sci-fi").excluded == []  # nothing it covers


def test_decades_and_years(parser: RequestParser):
    def span(text: str) -> list[tuple[int | None, int | None]]:
        return [(y.lo, y.hi) for y in parser.parse(text).years]

    assert span("a 1950s film noir") == [(1950, 1959)]
    assert span("a horror movie from the 80s") == [(1980, 1989)]
    assert span("comedies from the 80's") == [(1980, 1989)]
    assert span("an 80s action movie") == [(1980, 1989)]
    assert span("something from the eighties") == [(1980, 1989)]
    assert span("released in 1994") == [(1994, 1994)]
    assert span("a thriller before 1970") == [(None, 1969)]
    assert span("anything after 2000") == [(2001, None)]
    assert span("westerns between 1950 and 1965") == [(1950, 1965)]
    assert span("late 90s or early 2000s crime") == [(1995, 1999), (2000, 2004)]
    assert span("a recent comedy") == [(2014, None)]
    assert span("an old classic western") == [(None, 1979)]
    assert [y.hard for y in parser.parse("a classic comedy").years] == [False]  # "classic" only lifts
    u = parser.parse("a gangster movie, not from the 70s")
    assert u.genres == ["crime"] and [(y.lo, y.hi) for y in u.excluded_years] == [(1970, 1979)] and not u.years
    assert find_years("made in 2001, I think", 2018) == [(YearRange(2001, 2001, "2001"), 8, 12)]
    assert find_years("Ocean's Eleven (2001)", 2018) == []  # a title's own year is the title's
    assert find_years("a 3000s space opera", 2018) == [] and find_years("in 2090", 2018) == []


def test_people(parser: RequestParser):
    assert parser.parse("a drama with Tom Hanks").people == ["Tom Hanks"]
    assert parser.parse("something starring keanu reeves").people == ["Keanu Reeves"]
    assert parser.parse("directed by Nolan").people == ["Christopher Nolan"]  # the surname's best-known person
    assert parser.parse("a nolan movie").people == []  # a lone surname needs a cue and a capital
    u = parser.parse("a comedy, but nothing with Adam Sandler")
    assert u.excluded_people == ["Adam Sandler"] and u.people == [] and u.genres == ["comedy"]


def test_summary_and_json(parser: RequestParser):
    u = parser.parse("a 1950s film noir like Psycho, no romance")
    assert u.summary == "like Psycho (1960) · film noir · 1950s · not romance"
    d = u.as_dict()
    assert d["anchors"] == [{"id": ID["Psycho (1960)"], "title": "Psycho (1960)"}]
    assert d["years"] == [{"label": "1950s", "start": 1950, "end": 1959, "hard": True}]
    assert d["excluded"] == ["romance"] and d["summary"] == u.summary
    assert not parser.parse("something good for tonight") and parser.parse("something good").summary == ""


def test_adjust_orders_by_constraints_and_never_drops_movies():
    # rows: 0 comedy 1985, 1 comedy+romance 1985, 2 comedy 2005, 3 horror 1982 (tag "gore"), 4 comedy, no year
    info = {10: {"year": 1985, "genres": ["Comedy"]}, 11: {"year": 1985, "genres": ["Comedy", "Romance"]},
            12: {"year": 2005, "genres": ["Comedy"]}, 13: {"year": 1982, "genres": ["Horror"]},
            14: {"year": None, "genres": ["Comedy"]}}
    words = WordGraph(5, ["gore", "Tom Hanks"], ["tag", "starring"], np.array([[3, 0], [0, 1], [2, 1]]))
    facts = MovieFacts(np.array([10, 11, 12, 13, 14]), info, words, {12: ["Meg Ryan"], 11: ["Meg Ryan"]})
    assert set(facts.names) == {"tom hanks", "meg ryan"}
    w = Weights()
    u = Understanding("x", genres=["comedy"], excluded=["romance", "gore"], years=[YearRange(1980, 1989, "1980s")])
    adj = facts.adjust(u, w)
    assert adj[0] == pytest.approx(1.5 * w.concept + w.year)  # comedy, in the 80s
    assert adj[1] == pytest.approx(1.5 * w.concept + w.year - w.hard)  # romance is out
    assert adj[2] == pytest.approx(1.5 * w.concept - w.hard)  # outside the 80s
    assert adj[3] == pytest.approx(w.year - w.hard)  # horror with gore: the tag and the genre both say gore
    assert adj[4] == pytest.approx(1.5 * w.concept - w.hard / 2)  # no year: below those inside, above those outside
    assert np.argsort(-adj).tolist()[0] == 0 and len(adj) == 5
    people = facts.adjust(Understanding("x", people=["Tom Hanks"], excluded_people=["Meg Ryan"]), w)
    assert people.tolist() == pytest.approx([w.person, -2 * w.hard, w.person - w.hard, -w.hard, -w.hard])
    # two wanted kinds: a movie of both gets every_concept more than the sum of the two
    both = Understanding("x", genres=["comedy", "romance"])
    base, lifted = facts.adjust(both, w), facts.adjust(both, Weights(every_concept=2.0))
    assert (lifted - base).tolist() == pytest.approx([0, 2.0, 0, 0, 0])
    one = Understanding("x", genres=["comedy"])
    assert facts.adjust(one, Weights(every_concept=2.0)).tolist() == facts.adjust(one, w).tolist()  # one kind: none


# ---------------------------------------------------------------------------------------------- real data
def _title(engine, m: int) -> str:
    return engine.info[m]["title"]


def test_named_movies_are_not_recommended_back(small_engine):
    e = small_engine
    top = [m["id"] for m in e.recommend("a great movie", k=10, understand=False).movies]
    # two of the movies it would recommend, named by title (multi-word titles: no common-word rule applies)
    named = [m for m in top if len(_title(e, m).split()) >= 2 and _title(e, m).isascii()][:2]
    assert len(named) == 2
    text = f"I already saw {e.label(named[0])} and I loved {e.label(named[1])}, a great movie"
    res = e.recommend(text, k=10)
    assert res.understood is not None and ids(res.understood.seen) == [named[0]]
    assert ids(res.understood.anchors) == [named[1]]
    assert not set(named) & {m["id"] for m in res.movies} and len(res.movies) == 10


def test_excluded_genre_stays_out_of_the_top_10(small_engine):
    e = small_engine
    def romance(res) -> int:
        return sum("romance" in [g.lower() for g in m["genres"]] for m in res.movies)

    assert romance(e.recommend("a funny romantic comedy", k=10, understand=False)) >= 3  # there is romance to drop
    res = e.recommend("a funny comedy, no romance please", k=10)
    assert res.understood is not None and res.understood.excluded == ["romance"] and romance(res) == 0
    assert len(res.movies) == 10 and sum("Comedy" in m["genres"] for m in res.movies) >= 5


def test_decades_are_honoured_on_real_data(small_engine):
    e = small_engine
    years = [e.info[m]["year"] for m in e.cand_movie.tolist() if e.info.get(m, {}).get("year")]
    assert sum(1980 <= y <= 1989 for y in years) >= 10
    plain = e.recommend("a horror movie from the 80s", k=10, understand=False)
    assert any(not (1980 <= (m["year"] or 0) <= 1989) for m in plain.movies)  # the words alone do not do it
    res = e.recommend("a horror movie from the 80s", k=10)
    assert [m["year"] for m in res.movies if not 1980 <= (m["year"] or 0) <= 1989] == []
    assert res.understood is not None and res.understood.genres == ["horror"]
    assert all("Horror" in m["genres"] for m in res.movies)
    old = e.recommend("a thriller before 1970", k=5)
    assert all(m["year"] is not None and m["year"] < 1970 for m in old.movies)


def test_people_are_honoured_on_real_data(small_engine):
    e = small_engine
    facts = e.facts
    # a person of at least 3 candidate movies, named in full
    key, (name, n) = max(((k, v) for k, v in facts.names.items() if len(k.split()) == 2 and k.isascii()),
                         key=lambda kv: kv[1][1])
    assert n >= 3
    res = e.recommend(f"something with {name}", k=3)
    assert res.understood is not None and res.understood.people == [name]
    rows = set(np.flatnonzero(facts.person(name)).tolist())
    assert all(e.columns[m["id"]][0] in rows for m in res.movies)


def test_api_shows_what_was_understood(small_engine, tmp_path: Path):
    from fastapi.testclient import TestClient

    from qamrec.serve.app import create_app
    from qamrec.serve.store import SQLiteStore

    e = small_engine
    liked = next(m for m in e.cand_movie.tolist() if len(_title(e, m).split()) >= 2 and _title(e, m).isascii())
    with TestClient(create_app(e, SQLiteStore(tmp_path / "u.sqlite3"))) as c:
        body = c.post("/recommend", json={"query": f"a horror movie from the 80s like {e.label(liked)}, nothing gory",
                                          "k": 10}).json()
        u = body["understood"]
        assert u["anchors"] == [{"id": liked, "title": e.label(liked)}]
        assert u["years"] == [{"label": "1980s", "start": 1980, "end": 1989, "hard": True}]
        assert u["excluded"] == ["gore"] and u["genres"] == ["horror"]
        assert u["summary"] == f"like {e.label(liked)} · horror · 1980s · not gore"
        assert liked not in [m["id"] for m in body["movies"]]
        sid = c.post("/sessions").json()["id"]
        c.post(f"/sessions/{sid}/messages", json={"text": "a funny movie"})
        r = c.post(f"/sessions/{sid}/messages", json={"text": "no romance please"}).json()
        assert r["understood"]["genres"] == ["comedy"] and r["understood"]["excluded"] == ["romance"]
        assert not any("Romance" in m["genres"] for m in r["movies"])
        assert c.get(f"/sessions/{sid}").json()["recommendations"]["understood"] == r["understood"]
        schema = c.get("/openapi.json").json()["components"]["schemas"]
        assert "understood" in schema["Recommendations"]["properties"] and "summary" in schema["Understood"]["required"]


def test_cli_json_shows_what_was_understood(small_run: Path, prepared_home: Path, small_run_settings: list[str]):
    import json

    from typer.testing import CliRunner

    from qamrec.cli import app

    base = ["--home", str(prepared_home)] + [x for s in small_run_settings for x in ("--set", s)]
    res = CliRunner().invoke(app, base + ["recommend", "a comedy from the 90s, nothing animated", "--k", "5",
                                          "--json", "--run", str(small_run)])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout.strip().splitlines()[-1])
    u = body["understood"]
    assert u["genres"] == ["comedy"] and u["excluded"] == ["animation"] and u["years"][0]["start"] == 1990
    assert u["summary"] == "comedy · 1990s · not animation"
    assert all(1990 <= m["year"] <= 1999 and "Animation" not in m["genres"] for m in body["movies"])


# ---------------------------------------------------------------------------------------------- coverage
def test_more_ways_of_saying_things():
    from qamrec.serve.vocab import CONCEPTS, tag_concepts

    people = PEOPLE | {"samuel l jackson": ("Samuel L. Jackson", 50), "robert downey jr": ("Robert Downey Jr.", 30)}
    tags = tag_concepts(["atmospheric", "high school", "boring", "tom hanks", "funny", "1950s"], {"tom hanks"})
    assert [c.label for c in tags] == ["atmospheric", "high school"]  # opinions, people, concepts, years left out
    p = RequestParser(TitleIndex(list(INFO), INFO), people, latest_year=2018, concepts=CONCEPTS + tags)
    assert ids(p.parse("I just watched Heat and loved it, anything similar?").anchors) == [ID["Heat (1995)"]]
    assert ids(p.parse("I just watched Heat, something else").seen) == [ID["Heat (1995)"]]
    assert p.parse("a film starring Samuel L. Jackson?").people == ["Samuel L. Jackson"]
    assert p.parse("with Robert Downey Jr. please").people == ["Robert Downey Jr."]
    u = p.parse("a romantic movie, please no heavy drama")
    assert u.genres == ["romance"] and u.excluded == ["drama"]
    assert p.parse("a comedy film, no kids movies").excluded == ["family"]
    assert p.parse("something for my kids").genres == ["family"]
    assert p.parse("a documentary, but not about war").excluded == ["war"]
    u = p.parse("something atmospheric set in high school, not boring")
    assert u.genres == ["atmospheric", "high school"] and u.excluded == []
    assert p.parse("nothing atmospheric").excluded == ["atmospheric"]


def test_a_horror_movie_that_is_not_gory_keeps_its_horror():
    info = {1: {"year": 1980, "genres": ["Horror"]}, 2: {"year": 1981, "genres": ["Horror"]}}
    words = WordGraph(2, ["gore"], ["tag"], np.array([[1, 0]]))
    facts = MovieFacts(np.array([1, 2]), info, words)
    p = RequestParser(TitleIndex([], {}), {}, latest_year=2018)
    u = p.parse("a horror movie that is not gory")
    assert u.genres == ["horror"] and u.excluded == ["gore"]
    adj = facts.adjust(u)
    assert adj[0] > 0 > adj[1]  # only the movie tagged gore is out


def test_movies_like_a_named_one_share_its_genres():
    info = {1: {"year": 1995, "genres": ["Crime", "Thriller"]}, 2: {"year": 1996, "genres": ["Crime"]},
            3: {"year": 1997, "genres": ["Crime", "Thriller"]}, 4: {"year": 1998, "genres": ["Romance"]}}
    facts = MovieFacts(np.array([1, 2, 3, 4]), info, WordGraph(4, [], [], np.zeros((0, 2), np.int64)))
    w = Weights()
    adj = facts.adjust(Understanding("x", anchors=[(1, "Heat (1995)")]), w)
    assert adj[3] == 0 and adj[1] == pytest.approx(w.anchor_genre + w.anchor_genres / 2)
    assert adj[2] == pytest.approx(w.anchor_genre + w.anchor_genres) and adj[2] > adj[1] > adj[3]


def test_same_titles_prefer_the_known_one_and_go_together():
    info = {1: {"title": "Ocean's Eleven", "year": 1960}, 2: {"title": "Ocean's Eleven", "year": 2001},
            3: {"title": "Heat", "year": 1995}}
    t = TitleIndex([1, 2, 3], info, {1: [0], 2: [1], 3: [2]}, {1: -1.0, 2: 2.0, 3: 0.0})
    assert t.lookup("Ocean's Eleven")[0] == 2 and t.lookup("Ocean's Eleven", 1960)[0] == 1
    assert sorted(t.same_title(1)) == [1, 2] and t.same_title(3) == [3]


def test_api_never_recommends_a_named_movie_back(small_engine, tmp_path: Path):
    from fastapi.testclient import TestClient

    from qamrec.serve.app import create_app
    from qamrec.serve.store import SQLiteStore

    e = small_engine
    top = [m["id"] for m in e.recommend("a great movie", k=12, understand=False).movies]
    named = [m for m in top if len(_title(e, m).split()) >= 2 and _title(e, m).isascii()][:3]
    assert len(named) == 3
    a, b, c = (e.label(m) for m in named)
    with TestClient(create_app(e, SQLiteStore(tmp_path / "n.sqlite3"))) as client:
        for text in (f"I already saw {a}, I hated {b} and I loved {c}, a great movie",
                     f"a great movie like {c}, but I already watched {a} and {b}"):
            body = client.post("/recommend", json={"query": text, "k": 10}).json()
            got = {m["id"] for m in body["movies"]}
            assert len(got) == 10 and not got & set(named), text
            u = body["understood"]
            assert {x["id"] for x in u["anchors"] + u["seen"] + u["disliked"]} == set(named)
        sid = client.post("/sessions").json()["id"]
        client.post(f"/sessions/{sid}/messages", json={"text": f"something like {c}"})
        r = client.post(f"/sessions/{sid}/messages", json={"text": f"I've seen {a} already"}).json()
        assert not {m["id"] for m in r["movies"]} & {named[0], named[2]}
        # a title two movies share, named without its year: neither comes back
        twins = next((ms for k, ms in e.titles.by_key.items() if len(ms) >= 2 and len(k.split()) >= 2
                      and all(m in e.columns for m in ms)), None)
        if twins is not None:
            body = client.post("/recommend", json={"query": f"something like {e.info[twins[0]]['title']}",
                                                   "k": 10}).json()
            assert not {m["id"] for m in body["movies"]} & set(twins)
