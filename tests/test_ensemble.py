"""The log-linear ensemble: pooling, the weight choice on dev, and an ensemble folder loaded as a run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from qamrec.eval.protocol import CRSExample
from qamrec.models.base import Recommender
from qamrec.models.ensemble import ScoreEnsemble, log_softmax, simplex_grid
from qamrec.models.query import Query

ITEMS = [10, 11, 12]


class Fixed(Recommender):
    """Scores looked up by query text."""

    name = "fixed"

    def __init__(self, table: dict[str, list[float]], items: Sequence[int] = ITEMS) -> None:
        super().__init__()
        self.table = table
        self.graph = SimpleNamespace(meta={"item_ids": list(items)})  # type: ignore[assignment]

    def fit(self, crs: Any, graph: Any, **kwargs: Any) -> Fixed:
        return self

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        return np.array([self.table[q.text] for q in queries], dtype=np.float32)

    def save(self, folder: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, folder: Path, graph: Any) -> Fixed:
        raise NotImplementedError


def _example(i: int, gold: int) -> CRSExample:
    return CRSExample(dialogue=i, turn=1, context=(f"q{i}",), entities=(), item=gold, resp="")


def test_log_softmax_and_pool():
    s = np.array([[1.0, 2.0, 3.0], [0.0, -np.inf, 0.0]])
    ls = log_softmax(s)
    assert np.exp(ls).sum(axis=1) == pytest.approx([1.0, 1.0])
    assert ls[1, 1] == -np.inf and ls[1, 0] == pytest.approx(np.log(0.5))
    a, b = np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, -np.inf, 2.0]])
    pooled = ScoreEnsemble.pool([a, b], [0.25, 0.75])
    assert pooled[0] == pytest.approx(0.25 * log_softmax(a)[0] + 0.75 * log_softmax(b)[0])
    # a member with weight 0 drops out: its -inf does not turn into nan
    assert np.isfinite(ScoreEnsemble.pool([a, b], [1.0, 0.0])).all()


def test_simplex_grid():
    assert simplex_grid(2, 0.5) == [(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)]
    grid = simplex_grid(3)
    assert len(grid) == 66 and grid[0] == (1.0, 0.0, 0.0)
    assert all(sum(w) == pytest.approx(1.0) and min(w) >= 0 for w in grid)


def test_fit_pools_two_members_that_are_right_on_different_halves():
    # member a is sure and right on the first half, unsure and wrong on the second; b the other way round
    n = 40
    dev = [_example(i, 10) for i in range(n)]
    a = Fixed({f"q{i}": ([3.0, 0.0, 0.0] if i < n // 2 else [1.0, 1.2, 0.0]) for i in range(n)})
    b = Fixed({f"q{i}": ([1.0, 1.2, 0.0] if i < n // 2 else [3.0, 0.0, 0.0]) for i in range(n)})
    ens = ScoreEnsemble([a, b]).fit(SimpleNamespace(dev=dev, dev_in_test_file=[]))  # type: ignore[arg-type]
    rows = {tuple(r["weights"]): r for r in ens.dev}  # type: ignore[union-attr]
    assert rows[(1.0, 0.0)]["recall@10"] == 1.0 and rows[(1.0, 0.0)]["ndcg@10"] < 0.85  # rank 2 on half
    assert rows[(0.5, 0.5)]["ndcg@10"] == pytest.approx(1.0) and 0 < ens.weights[0] < 1
    top = ens.score([Query(text=f"q{i}") for i in range(n)]).argmax(axis=1)
    assert (top == 0).all()  # the pool ranks the gold first everywhere; neither member alone does
    # two copies of one member gain nothing over it: the first member alone is kept
    same = ScoreEnsemble([a, Fixed(a.table)]).fit(
        SimpleNamespace(dev=dev, dev_in_test_file=[]))  # type: ignore[arg-type]
    assert list(same.weights) == [1.0, 0.0]


def test_members_must_rank_the_same_candidates_and_weights_are_checked():
    with pytest.raises(ValueError, match="member 1 ranks other candidates"):
        ScoreEnsemble([Fixed({}), Fixed({}, items=[10, 12, 11])])
    with pytest.raises(ValueError, match="non-negative"):
        ScoreEnsemble([Fixed({}), Fixed({})], weights=[1.0, -0.5])
    with pytest.raises(ValueError, match="at least one member"):
        ScoreEnsemble([])


def test_an_ensemble_folder_loads_and_evaluates_as_a_run(small_run: Path, prepared_home: Path, tmp_path: Path,
                                                         small_run_settings: list[str]):
    from typer.testing import CliRunner

    from qamrec.cli import app
    from qamrec.config import load_config
    from qamrec.data.crs import load_crs
    from qamrec.errors import DataFormatError, QamrecError
    from qamrec.models.qamrec import example_query
    from qamrec.train.run import load_run, pool_runs

    config = load_config(small_run_settings, home=prepared_home)
    crs = load_crs("inspired", config)
    folder = tmp_path / "ens"
    base = ["--home", str(prepared_home), *sum((["--set", s] for s in small_run_settings), [])]
    res = CliRunner().invoke(app, base + ["ensemble", "--run", str(small_run), "--run", str(small_run),
                                          "--out", str(folder)])
    assert res.exit_code == 0, res.output
    assert "kept: " in res.output and "1.0, 0.0" in res.output
    saved = json.loads((folder / "ensemble.json").read_text())
    # a run pooled with itself gains nothing: the first member alone is kept
    assert saved["members"] == [str(small_run.resolve())] * 2 and saved["weights"] == [1.0, 0.0]
    model, graph, cfg = load_run(folder, config)
    single, _, _ = load_run(small_run, config)
    assert isinstance(model, ScoreEnsemble) and cfg["dataset"] == "inspired"
    queries = [example_query(e) for e in crs.dev[:20]]
    # the pool of one member is its log-softmax: the same ranking as the member's
    assert np.array_equal(np.argsort(-model.score(queries), axis=1, kind="stable")[:, :10],
                          np.argsort(-single.score(queries), axis=1, kind="stable")[:, :10])
    assert [m for m, _ in model.recommend(queries[0], k=5)] == [m for m, _ in single.recommend(queries[0], k=5)]
    res = CliRunner().invoke(app, base + ["evaluate", "--run", str(folder)])
    assert res.exit_code == 0 and "ensemble" in res.output, res.output
    (folder / "ensemble.json").write_text(json.dumps({"members": saved["members"], "weights": [1.0]}))
    with pytest.raises(DataFormatError, match="ensemble.json"):
        load_run(folder, config)
    (folder / "ensemble.json").write_text(json.dumps({"members": [str(folder)], "weights": [1.0]}))
    with pytest.raises(QamrecError, match="a member is an ensemble"):  # not a loop
        load_run(folder, config)
    res = CliRunner().invoke(app, base + ["ensemble", "--run", str(small_run), "--out", str(folder)])
    assert res.exit_code != 0 and "two or more" in str(res.exception)
    res = CliRunner().invoke(app, base + ["ensemble", "--run", str(small_run), "--run", str(small_run),
                                          "--out", str(small_run)])
    assert res.exit_code != 0 and "a run directory is there" in str(res.exception)
    assert not (small_run / "ensemble.json").exists()
    other = tmp_path / "other-split"  # a run of another seed: another dev and test split
    other.mkdir()
    (other / "config.json").write_text(json.dumps(json.loads((small_run / "config.json").read_text()) | {"seed": 1}))
    with pytest.raises(QamrecError, match="share one data split"):
        pool_runs([small_run, other], config)


def test_members_of_one_split_differ_in_their_init_seed(tmp_path: Path):
    from qamrec.cli import _make_model
    from qamrec.config import load_config

    make = _make_model("qamrec")
    assert make(load_config(["seed=3"], home=tmp_path)).seed == 3  # by default the split's seed
    other = load_config(["seed=3", "train.init_seed=1000"], home=tmp_path)
    assert make(other).seed == 1000 and other.seed == 3  # the split stays; the initialisation moves
