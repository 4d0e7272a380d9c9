import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from qamrec.data.redial import read_unicrs_examples
from qamrec.errors import DataFormatError
from qamrec.eval import (
    MAP,
    MRR,
    NDCG,
    PUBLISHED,
    CRSExample,
    Precision,
    Recall,
    comparison_table,
    evaluate,
    ranks_of,
    read_crs_examples,
    read_item_ids,
)
from qamrec.io import read_json


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --- protocol on the real files ------------------------------------------------------------------------------


def test_redial_valid_count_and_expansion(shared_data: Path) -> None:
    path = shared_data / "redial/unicrs/valid_data_processed.jsonl"
    ex = read_crs_examples(path)
    assert len(ex) == 3696
    # line 2 of the file recommends two movies: two examples sharing one context
    a, b = ex[0], ex[1]
    assert (a.item, b.item) == (9769, 15523)
    assert a.context == b.context and a.entities == b.entities == (16746,)
    assert (a.dialogue, a.turn) == (b.dialogue, b.turn) == (0, 1)
    assert a.context[0] == "" and len(a.context) == 3
    # dialogue numbering agrees with the ReDial loader
    lines = read_unicrs_examples(path)
    assert {e.dialogue for e in ex} <= set(lines["dialogue"].to_list())
    items = read_item_ids(shared_data / "redial/unicrs/item_ids.json")
    assert len(items) == 6281 and all(e.item in set(items) for e in ex)


def test_inspired_counts(shared_data: Path) -> None:
    e2i = read_json(shared_data / "inspired/unicrs/entity2id.json")
    valid = read_crs_examples(shared_data / "inspired/unicrs/valid_data_dbpedia.jsonl", e2i)
    assert len(valid) == 273
    assert len(read_crs_examples(shared_data / "inspired/unicrs/train_data_dbpedia.jsonl", e2i)) == 2094
    assert len(read_item_ids(shared_data / "inspired/unicrs/item_ids.json")) == 1472
    # first dialogue: "Full Metal Jacket" after Drama and Kubrick were linked; entity order = list(set(...))
    first = valid[0]
    fmj, drama, kubrick = (e2i[f"<http://dbpedia.org/resource/{n}>"] for n in ("Full_Metal_Jacket", "Drama",
                                                                               "Stanley_Kubrick"))
    assert first.item == fmj and first.dialogue == 0 and first.context[0] == ""
    assert first.entities == tuple(set([drama, kubrick, kubrick]))
    with pytest.raises(ValueError, match="entity2id"):
        read_crs_examples(shared_data / "inspired/unicrs/valid_data_dbpedia.jsonl")


# --- protocol on hand-written files ---------------------------------------------------------------------------


def test_redial_skipping_rules(tmp_path: Path) -> None:
    rows = [
        {"context": [""], "resp": "hi", "rec": [1], "entity": []},  # only the empty first utterance: skipped
        {"context": ["", "hello"], "resp": "x", "rec": [], "entity": [4]},  # no gold item: skipped
        {"context": ["", "hello", "x", "more"], "resp": "<movie> or <movie>", "rec": [5, 7, 5], "entity": [9, 4]},
        {"context": ["a"], "resp": "<movie>", "rec": [8], "entity": [2]},  # new dialogue
        {"context": ["", ""], "resp": "<movie>", "rec": [3], "entity": []},  # every utterance empty: skipped
    ]
    ex = read_crs_examples(_jsonl(tmp_path / "r.jsonl", rows))
    assert [e.item for e in ex] == [5, 7, 5, 8]  # one example per gold item, in order, duplicates kept
    assert [(e.dialogue, e.turn) for e in ex] == [(0, 2), (0, 2), (0, 2), (1, 0)]
    assert ex[0].entities == (9, 4) and ex[0].resp == "<movie> or <movie>"
    assert ex[3].context == ("a",)


def _turn(role: str, text: str, entities: tuple[str, ...] = (), movies: tuple[str, ...] = ()) -> dict:
    return {"text": text, "role": role, "movie": list(movies), "entity_link": list(entities),
            "entity_name": list(entities), "movie_link": list(movies), "movie_name": list(movies)}


def test_inspired_process_mask(tmp_path: Path) -> None:
    e2i = {"E1": 10, "E2": 20, "M1": 101, "M2": 102, "M3": 103}
    dialog = [
        _turn("RECOMMENDER", "Hi", movies=("M1",)),  # context [""] only: skipped
        _turn("SEEKER", "I like E1 and M1", entities=("E1", "UNKNOWN"), movies=("M1",)),
        _turn("SEEKER", "and E2", entities=("E2",)),
        _turn("RECOMMENDER", "Try M2 or M3", entities=("E1",), movies=("M2", "M3")),
        _turn("SEEKER", "ok"),
        _turn("RECOMMENDER", "Or M1 or M-unknown", movies=("M1", "NOPE")),
    ]
    other = [_turn("SEEKER", "hello"), _turn("RECOMMENDER", "How about M3", movies=("M3",))]
    ex = read_crs_examples(_jsonl(tmp_path / "i.jsonl", [dialog, other]), e2i)
    assert [(e.dialogue, e.turn, e.item) for e in ex] == [(0, 1, 102), (0, 1, 103), (0, 2, 101), (1, 0, 103)]
    assert ex[0].context == ("", "Hi", "I like E1 and M1", "and E2") == ex[1].context
    # every earlier linked entity and movie, both speakers, as list(set(...))
    assert ex[0].entities == tuple(set([101, 10, 101, 20]))
    assert ex[2].context == ("", "Hi", "I like E1 and M1", "and E2", "Try M2 or M3", "ok")
    assert set(ex[2].entities) == {10, 20, 101, 102, 103}
    assert ex[2].entities == tuple(set([101, 10, 101, 20, 10, 102, 103]))
    assert ex[3].context == ("hello",) and ex[3].entities == ()


@pytest.mark.parametrize(
    ("rows", "line", "field"),
    [
        ([{"context": [""], "rec": [], "entity": []}, {"context": ["a", "b"], "entity": []}], 2, "rec"),
        ([{"context": [""], "rec": [], "entity": []}, {"context": ["a"], "rec": ["x"], "entity": []}], 2, "rec"),
        ([{"context": [""], "rec": [], "entity": []}, {"context": "a", "rec": [1], "entity": []}], 2, "context"),
        ([{"context": [""], "rec": [], "entity": []}, {"context": ["a"], "rec": [1], "entity": [1.5]}], 2, "entity"),
        ([[_turn("SEEKER", "a")], [_turn("SEEKER", "a"), {"text": "b", "movie_link": [], "entity_link": []}]],
         2, "[1].role"),
        ([[_turn("SEEKER", "a")], [{**_turn("SEEKER", "a"), "role": "BOT"}]], 2, "[0].role"),
        ([[_turn("SEEKER", "a")], [_turn("SEEKER", "a"), {**_turn("RECOMMENDER", "b"), "movie_link": "M1"}]],
         2, "[1].movie_link"),
    ],
)
def test_malformed_names_line_and_field(tmp_path: Path, rows: list, line: int, field: str) -> None:
    with pytest.raises(DataFormatError) as err:
        read_crs_examples(_jsonl(tmp_path / "bad.jsonl", rows), {"M1": 1})
    assert err.value.line == line and err.value.field == field
    assert f"line {line}" in str(err.value) and field in str(err.value)


def test_malformed_files(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataFormatError, match="no records"):
        read_crs_examples(tmp_path / "empty.jsonl")
    (tmp_path / "num.jsonl").write_text("\n3\n")
    with pytest.raises(DataFormatError, match="unknown record format") as err:
        read_crs_examples(tmp_path / "num.jsonl")
    assert err.value.line == 2
    (tmp_path / "broken.jsonl").write_text('{"context": [""], "rec": []}\n{"context": [\n')
    with pytest.raises(DataFormatError) as err:
        read_crs_examples(tmp_path / "broken.jsonl")
    assert err.value.line == 2
    (tmp_path / "items.json").write_text('[1, 2, "3"]')
    with pytest.raises(DataFormatError):
        read_item_ids(tmp_path / "items.json")


# --- metrics --------------------------------------------------------------------------------------------------


def test_metric_values() -> None:
    ranks = np.array([1, 3, 0, 12, np.inf])  # 0 and inf: not in the list
    r10, n10, m10, p10, ap = Recall(10), NDCG(10), MRR(10), Precision(10), MAP()
    for m in (r10, n10, m10, p10, ap):
        m.update(ranks[:2])
        m.update(torch.tensor(ranks[2:]))
    assert r10.compute() == pytest.approx(2 / 5)
    assert n10.compute() == pytest.approx((1 + 1 / math.log2(4)) / 5)
    assert m10.compute() == pytest.approx((1 + 1 / 3) / 5)
    assert p10.compute() == pytest.approx(2 / 5 / 10)
    assert ap.compute() == pytest.approx((1 + 1 / 3 + 1 / 12) / 5)
    assert MRR(1).score(np.array([1.0, 2.0])).tolist() == [1.0, 0.0]
    r10.reset()
    assert math.isnan(r10.compute()) and r10.count == 0
    with pytest.raises(ValueError):
        r10.update(np.array([-1]))
    with pytest.raises(ValueError):
        r10.update(np.array([1.5]))


def test_tie_rule_is_stable_descending_sort() -> None:
    s = np.array([[1.0, 2.0, 2.0, 0.0, 2.0]])
    assert ranks_of(np.repeat(s, 5, 0), np.arange(5)).tolist() == [4, 1, 2, 5, 3]
    assert ranks_of(s, np.array([-1])).tolist() == [0]  # gold not a candidate
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(1100, 30)).astype(np.float32)  # many ties; > one 512-row chunk
    scores[::7, 3] = -np.inf
    gold = rng.integers(0, 30, size=1100)
    order = np.argsort(-scores, axis=1, kind="stable")
    expected = np.argmax(order == gold[:, None], axis=1) + 1
    assert np.array_equal(ranks_of(scores, gold), expected)
    torch_order = torch.sort(torch.from_numpy(scores), dim=1, descending=True, stable=True).indices.numpy()
    assert np.array_equal(torch_order, order)
    with pytest.raises(ValueError, match="NaN"):
        ranks_of(np.array([[np.nan, 1.0]]), np.array([0]))


# --- evaluate -------------------------------------------------------------------------------------------------


def _ex(item: int, entities: tuple[int, ...]) -> CRSExample:
    return CRSExample(0, 0, ("hi",), entities, item, "")


def test_evaluate_variants() -> None:
    items = [100, 101, 102, 103]
    examples = [
        _ex(102, (100, 7)),  # context item 100 is scored above the gold: rank 2, new-items rank 1
        _ex(101, ()),  # cold start, rank 4
        _ex(100, (100,)),  # gold already in the context: dropped from new_items
        _ex(999, (5,)),  # gold not a candidate: a miss, counted; cold start (entity 5 is no item)
    ]
    scores = np.array(
        [
            [0.9, 0.1, 0.5, 0.2],
            [0.4, 0.1, 0.3, 0.2],
            [0.9, 0.8, 0.1, 0.0],
            [0.0, 0.1, 0.2, 0.3],
        ],
        dtype=np.float32,
    )
    out = evaluate(scores, examples, items, ks=(1, 2))
    assert out["n_examples"] == 4 and out["n_gold_not_candidate"] == 1
    # ranks: 2, 4, 1, miss
    assert out["recall@1"] == pytest.approx(1 / 4)
    assert out["recall@2"] == pytest.approx(2 / 4)
    assert out["mrr@2"] == pytest.approx((1 / 2 + 1) / 4)
    assert out["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1) / 4)
    assert out["precision@2"] == pytest.approx(2 / 4 / 2)
    assert out["map"] == pytest.approx((1 / 2 + 1 / 4 + 1) / 4)
    # new items: examples 0 (rank 1 after masking 100), 1 (rank 4 -> 100 is not in its context), 3 (miss)
    assert out["new_items.n_examples"] == 3 and out["new_items.n_gold_not_candidate"] == 1
    assert out["new_items.recall@1"] == pytest.approx(1 / 3)
    assert out["new_items.map"] == pytest.approx((1 + 1 / 4) / 3)
    # cold start: examples 1 and 3
    assert out["cold_start.n_examples"] == 2
    assert out["cold_start.map"] == pytest.approx((1 / 4) / 2)
    assert out["cold_start.recall@2"] == 0.0
    assert evaluate(torch.from_numpy(scores), examples, items, ks=(1, 2)) == out
    with pytest.raises(ValueError, match="n_examples"):
        evaluate(scores[:3], examples, items)


@pytest.mark.slow  # ranx imports numba and builds its typed dicts: ~15 s even with the numba cache warm
def test_against_ranx() -> None:
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(7)
    n_q, n_items = 50, 120
    scores = rng.permutation(n_q * n_items).reshape(n_q, n_items).astype(np.float64)  # no ties
    gold = rng.integers(0, n_items, size=n_q)
    qrels = {f"q{i}": {f"d{gold[i]}": 1} for i in range(n_q)}
    run = {f"q{i}": {f"d{j}": float(scores[i, j]) for j in range(n_items)} for i in range(n_q)}
    for i in (3, 11):  # gold item missing from the candidate list: a miss for both
        del run[f"q{i}"][f"d{gold[i]}"]
        gold[i] = -1
    ranks = ranks_of(scores, gold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run),
                            ["recall@10", "ndcg@10", "mrr@10", "precision@10", "map@50", "map"])
    ours = {}
    for name, m in [("recall@10", Recall(10)), ("ndcg@10", NDCG(10)), ("mrr@10", MRR(10)),
                    ("precision@10", Precision(10)), ("map@50", MRR(50)), ("map", MAP())]:
        m.update(ranks)
        ours[name] = m.compute()
    for name, value in ours.items():
        assert value == pytest.approx(float(ref[name]), abs=1e-12), name


def test_published_and_table() -> None:
    assert PUBLISHED["redial"]["MSCRS"]["recall@10"] == 0.264
    assert PUBLISHED["inspired"]["UniCRS"]["recall@50"] == 0.398
    table = comparison_table({"ours": {"recall@1": 0.05, "recall@10": 0.2}}, "ReDial")
    lines = table.strip().splitlines()
    assert lines[0].startswith("| model | recall@1 | recall@10 | recall@50 |")
    mscrs = "| MSCRS (published, MSCRS SIGIR'25 Tab. 2) | 0.081 | 0.264 | 0.451 | 0.161 | 0.201 | 0.128 | 0.136 |"
    assert mscrs in lines
    assert lines[-1] == "| ours | 0.050 | 0.200 | – | – | – | – | – |"
    assert "| Popularity (published, MSCRS SIGIR'25 Tab. 2) | 0.011 | 0.053 | 0.183 | – |" in table
    with pytest.raises(ValueError):
        comparison_table({}, "movielens")
