"""The reply builder on a tiny catalog and index: every stated fact true, feedback acknowledged, a clarifying
question on a vague request, no repetition within a conversation, templates that would lie are not used."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from qamrec.serve.conversation import Conversation, Event
from qamrec.serve.facts import CatalogFacts, Claim, first_sentence
from qamrec.serve.faithfulness import FactChecker
from qamrec.serve.phrasing import fill, phrase_words, template_genres
from qamrec.serve.reply import ReplyBuilder
from qamrec.serve.reply_index import SLOT, ReplyIndex, Utterance, is_template, slot_names, slot_redial

MOVIES = pl.DataFrame({
    "movie_id": [1, 2, 3, 4, 5],
    "title": ["Ocean's Eleven", "Out of Sight", "Heat", "Scream", "Toy Story"],
    "year": [2001, 1998, 1995, 1996, 1995],
    "genres": [["Crime", "Thriller"], ["Comedy", "Crime"], ["Action", "Crime"], ["Horror", "Mystery"],
               ["Animation", "Children", "Comedy"]],
    "plot": ["Danny Ocean and his eleven accomplices plan to rob three Las Vegas casinos. Then more.",
             "A career bank robber breaks out of jail and shares a moment with a US Marshal. More.",
             "A group of high-end professional thieves start to feel the heat from the LAPD.", None,
             "A cowboy doll is profoundly threatened by a new spaceman action figure. Later."],
    "director": [["Steven Soderbergh"], ["Steven Soderbergh"], ["Michael Mann"], ["Wes Craven"], ["John Lasseter"]],
    "cast": [["George Clooney", "Brad Pitt", "Matt Damon"], ["George Clooney", "Jennifer Lopez"],
             ["Al Pacino", "Robert De Niro"], ["Neve Campbell", "David Arquette"], ["Tom Hanks", "Tim Allen"]],
})


def _index(templates: list[str]) -> ReplyIndex:
    items = [Utterance(t, t.count(SLOT), f"context {i}", "redial", str(i)) for i, t in enumerate(templates)]
    vec = np.eye(len(items), 8, dtype=np.float32)
    return ReplyIndex(items, vec)


def _movies(ids: list[int], scores: list[float] | None = None) -> list[dict]:
    scores = scores or [5.0 - i for i in range(len(ids))]
    return [{"id": m, "score": s} for m, s in zip(ids, scores)]


@pytest.fixture()
def builder() -> ReplyBuilder:
    facts = CatalogFacts(MOVIES)
    index = _index(["Have you seen <movie> ?", "<movie> is a great comedy", "You would like <movie> or <movie>",
                    "Try <movie> tonight"])
    return ReplyBuilder(index, facts, {"crime": "genre", "1990s": "decade", "george clooney": "starring"})


def test_templates_slots_and_fill() -> None:
    assert slot_redial("Have you seen @123 or @45 ?") == ("Have you seen <movie> or <movie> ?", 2)
    assert slot_names("I loved Knives Out, knives out is fun", ["Knives Out"]) == ("I loved <movie>, <movie> is fun", 2)
    assert is_template("Have you seen <movie> ?")
    assert not is_template("What was the one with Nicole Kidman? <movie> ?")  # a person: not true of any movie
    assert not is_template("<movie> came out in 1999")  # a number
    assert not is_template("Hi, what kind of movies do you like?")  # no movie slot
    assert template_genres("<movie> is a good thriller, really scary") == ["thriller", "horror"]
    cards = [CatalogFacts(MOVIES).card(m) for m in (2, 5)]
    text, claims = fill("<movie> is a great comedy and so is <movie>", cards)
    assert text == "Out of Sight (1998) is a great comedy and so is Toy Story (1995)"
    assert Claim(2, "genre", "comedy") in claims and Claim(5, "title", "Toy Story") in claims
    assert fill("<movie> is a scary one", cards) is None  # a comedy is not horror: the template is not used
    assert fill("<movie> and <movie> and <movie>", cards) is None  # more slots than movies
    assert first_sentence("Short. And more.") == ""
    assert first_sentence("A career bank robber breaks out of jail. More.") == "A career bank robber breaks out of jail."
    assert phrase_words([("1990s", "decade"), ("crime", "genre"), ("Keanu Reeves", "starring")]) == \
        "90s crime film with Keanu Reeves"


def test_index_retrieves_the_closest_context() -> None:
    idx = _index(["Have you seen <movie> ?", "Try <movie> tonight"])
    q = np.zeros(8, np.float32)
    q[1] = 1.0
    assert idx.nearest(q, 1)[0][0].template == "Try <movie> tonight"


def test_every_stated_fact_is_true_and_shared_facts_are_used(builder: ReplyBuilder) -> None:
    checker = FactChecker(MOVIES)
    conv = Conversation(messages=["I loved Ocean's Eleven, something like it"], seed="s")
    u = SimpleNamespace(anchors=[(1, "Ocean's Eleven (2001)")], disliked=[], excluded=[], genres=[], people=[])
    q = np.zeros(8, np.float32)
    q[0] = 1
    r = builder.reply(_movies([2, 3]), conv, Event("message", conv.messages[0]), q, u, [], [1])
    assert r.text.startswith("Have you seen Out of Sight (1998) ?")
    assert "Steven Soderbergh" in r.text and "Ocean's Eleven (2001)" in r.text  # what it shares with the anchor
    assert "A career bank robber breaks out of jail and shares a moment with a US Marshal." in r.text
    assert r.slotted.startswith("Have you seen <movie> ?") and "Out of Sight" not in r.slotted
    report = checker.check(r.claims)
    assert report.checked >= 5 and report.rate == 1.0, report.failures
    assert {c.field for c in r.claims} >= {"title", "director", "plot"}
    # a claim the catalog does not hold is caught
    assert not checker.confirms(Claim(3, "director", "Steven Soderbergh"))
    assert not checker.confirms(Claim(4, "genre", "comedy")) and checker.confirms(Claim(5, "genre", "family"))


def test_feedback_is_acknowledged(builder: ReplyBuilder) -> None:
    conv = Conversation(messages=["a crime movie"], seed="s")
    r = builder.reply(_movies([3, 2]), conv, Event("movie", movie=1, value="disliked"), np.ones(8))
    assert "Ocean's Eleven (2001)" in r.text.split(".")[0] and r.text.split()[0] in ("Got", "Okay,", "Fair")
    r = builder.reply(_movies([3, 2]), conv, Event("movie", movie=1, value="liked"), np.ones(8))
    assert "Ocean's Eleven (2001)" in r.text.split(".")[0]
    r = builder.reply(_movies([3, 2]), conv, Event("suggestion", value="rejected", words=("crime",)), np.ones(8))
    assert "crime film" in r.text.split(".")[0]
    u = SimpleNamespace(anchors=[], disliked=[], excluded=["horror"], genres=[], people=[])
    r = builder.reply(_movies([3, 2]), conv, Event("message", "no horror please"), np.ones(8), u)
    assert r.text.lower().startswith(("got it, no more horror.", "okay, no horror.", "sure, nothing horror."))


def test_vague_request_gets_a_clarifying_question(builder: ReplyBuilder) -> None:
    sugg = [SimpleNamespace(labels=("1990s", "crime")), SimpleNamespace(labels=("George Clooney",))]
    conv = Conversation(messages=["something good"], seed="s")
    u = SimpleNamespace(anchors=[], disliked=[], excluded=[], genres=[], people=[])
    u.__bool__ = lambda: False  # type: ignore[attr-defined]
    r = builder.reply(_movies([3, 2]), conv, Event("message", "something good"), np.ones(8), None, sugg)
    assert r.kind == "clarify" and r.text.endswith("?") and "90s crime film" in r.text
    assert "George Clooney" in r.text and "Heat (1995)" in r.text  # the best movie so far, then the question
    # flat scores ask too; a detailed, understood request with spread-out scores does not
    conv2 = Conversation(messages=["a heist with a big ensemble cast and a clever plan"], seed="t")
    r2 = builder.reply(_movies([3, 2], [1.0, 0.9]), conv2, Event("message", conv2.messages[0]), np.ones(8), None, sugg)
    assert r2.kind == "clarify"
    r3 = builder.reply(_movies([3, 2], [3.0, 1.0]), conv2, Event("message", conv2.messages[0]), np.ones(8), None, sugg)
    assert r3.kind == "recommend"
    # never twice in a row
    conv.add(r.text, r.kind, r.template, r.movies)
    conv.messages.append("hmm")
    r4 = builder.reply(_movies([1, 2], [1.0, 0.99]), conv, Event("message", "hmm"), np.ones(8), None, sugg)
    assert r4.kind == "recommend"


def test_no_repetition_within_a_conversation(builder: ReplyBuilder) -> None:
    conv = Conversation(seed="x")
    seen_texts, seen_templates, named = set(), set(), []
    q = np.zeros(8, np.float32)
    q[0] = 1
    for i in range(4):
        conv.messages.append(f"message {i} about crime films with a lot of words so it is not vague")
        r = builder.reply(_movies([1, 2, 3, 5]), conv, Event("message", conv.messages[-1]), q)
        assert r.text not in seen_texts and r.template not in seen_templates
        seen_texts.add(r.text)
        seen_templates.add(r.template)
        named.append(r.movies)
        conv.add(r.text, r.kind, r.template, r.movies)
    assert named[0] != named[1]  # a movie already named gives way to the next ones


def test_greeting_before_anything_was_said(builder: ReplyBuilder) -> None:
    r = builder.reply([], Conversation(), Event("message", ""))
    assert r.kind == "greet" and r.text.endswith("?") and not r.claims
