"""``qamrec benchmark requests``: free-text requests whose facts the catalog can check.

Two sets of requests: ``n`` generated ones (:class:`~qamrec.data.pseudo_requests.RequestGenerator`, drawn from
movies held out of pretraining, each with at least 10 satisfying movies among the graph's candidates) and the
30 hand-written ones of ``requests_handwritten.toml``. Each method ranks a catalog for each request and its top
10 are held against the catalog's truth (:class:`~qamrec.data.request_facts.MovieTruth`, which never looks at the
parser): constraint precision@10 (share of the top 10 that satisfy every fact), negation violations@10 (share
that has what a negation rules out, over the requests that negate something) and NDCG@10 with every satisfying
movie relevant.

Methods: our model as the product serves it (:meth:`~qamrec.serve.engine.Engine.recommend`, the request parsed
and its facts applied), the same model reading the words alone (no parse), text similarity (the request's text
embedding against each movie's, the plain method) and popularity (the model's learned popularity bias, the same
list for every request). Catalogs: the graph's candidates, and the full served catalog (the candidates plus
every movie of a prepared MovieLens dataset, as ``serve.catalog`` serves it).
"""

from __future__ import annotations

import statistics
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qamrec.data.pseudo_requests import RequestGenerator, heldout_mask, is_heldout
from qamrec.data.request_facts import Fact, MovieTruth
from qamrec.data.schema import normalize_title, split_title_year
from qamrec.errors import QamrecError
from qamrec.eval.metrics import ConstraintPrecision, NegationViolations, SatisfyingNDCG
from qamrec.io import atomic_write_json, atomic_write_text

__all__ = ["BenchRequest", "HANDWRITTEN", "load_handwritten", "generated_requests", "run_requests_benchmark",
           "requests_table", "METHODS", "pretraining_label"]

HANDWRITTEN = Path(__file__).with_name("requests_handwritten.toml")
K = 10
#: the rows of the table, in order
METHODS = ("ours", "ours, words only", "text similarity", "popularity")


@dataclass
class BenchRequest:
    """A request's text, its checkable facts, where it comes from and (generated) its target and plan."""

    text: str
    facts: list[Fact]
    source: str  # "hand-written" or "generated"
    plan: str = ""
    target: int | None = None

    @property
    def negates(self) -> bool:
        return any(f.negated for f in self.facts)


def title_resolver(truth: MovieTruth, prefer: set[int]) -> Callable[[str], int]:
    """"Title (year)" -> catalog movie id: the exact normalized title (and year), ``prefer``'d movies first."""
    by_key: dict[str, list[int]] = {}
    for m, (t, _) in truth.titles.items():
        by_key.setdefault(normalize_title(t), []).append(m)

    def resolve(title: str) -> int:
        name, year = split_title_year(title)
        hits = [m for m in by_key.get(normalize_title(name), []) if year is None or truth.titles[m][1] == year]
        if not hits:
            raise QamrecError(f"like:{title}: no such title in the catalog")
        return sorted(hits, key=lambda m: (m not in prefer, m))[0]

    return resolve


def load_handwritten(truth: MovieTruth, prefer: set[int], path: Path = HANDWRITTEN) -> list[BenchRequest]:
    """The hand-written requests of ``path`` (``[[request]]`` tables with ``text`` and ``facts``)."""
    resolve = title_resolver(truth, prefer)
    rows = tomllib.loads(path.read_text())["request"]
    return [BenchRequest(r["text"], [Fact.parse(s, resolve) for s in r["facts"]], "hand-written") for r in rows]


def generated_requests(truth: MovieTruth, graph_movies: Sequence[int], n: int, seed: int,
                       served: Sequence[int] = ()) -> list[BenchRequest]:
    """``n`` requests over held-out movies: 3 in 4 drawn from the graph's held-out candidates (they have
    people and tags), 1 in 4 from the other held-out movies of the served catalog; "like" names held-out
    candidates (titles the product resolves). At least 10 candidates satisfy each."""
    graph = np.unique(np.asarray(graph_movies, dtype=np.int64))
    rich = graph[heldout_mask(graph)].tolist()
    rest = np.setdiff1d(np.asarray(served, dtype=np.int64), graph)
    rest = rest[heldout_mask(rest)].tolist() if len(rest) else []
    gen = RequestGenerator(truth, graph, anchors=rich, min_satisfying=K)
    n_rest = n // 4 if rest else 0
    out = gen.generate(n - n_rest, seed, rich, allowed_anchor=is_heldout)
    out += gen.generate(n_rest, seed + 7919, rest, allowed_anchor=is_heldout) if n_rest else []
    return [BenchRequest(r.text, r.facts, "generated", r.plan, r.target) for r in out]


# ---------------------------------------------------------------------------------------------- methods
def _distinct_top(scores: torch.Tensor, movies: np.ndarray, k: int) -> list[int]:
    """The ``k`` best distinct movies of one row of scores over index rows."""
    out: list[int] = []
    want = min(len(scores), 4 * k)
    while True:
        for j in torch.topk(scores, want).indices.tolist():
            m = int(movies[j])
            if m not in out:
                out.append(m)
                if len(out) == k:
                    return out
        if want == len(scores):
            return out
        out, want = [], min(len(scores), 4 * want)


def pretraining_label(metrics: dict[str, Any]) -> str:
    """How a run's model was pretrained, from its ``metrics.json`` (``train.pretrain``; see
    :mod:`qamrec.train.pretrain`)."""
    p = metrics.get("pretrain") or {}
    if not p:
        return "without pretraining"
    return (f"pretrained on {p.get('requests', 0):,} pseudo-requests and {p.get('user_conversations', 0):,} "
            f"MovieLens users ({p.get('epochs', '?')} epochs, {p.get('seconds', 0):.0f} s)")


def engine_methods(engine: Any) -> dict[str, Callable[[str], list[int]]]:
    """Each method of :data:`METHODS` on the engine's current catalog: request text -> top K distinct movies."""
    net = engine.model.net
    movies = engine.all_movies
    rank_of: dict[str, Callable[[str], list[int]]] = {
        "ours": lambda t: [m["id"] for m in engine.recommend(t, k=K, suggestions=0).movies],
        "ours, words only": lambda t: [m["id"] for m in engine.recommend(t, k=K, suggestions=0,
                                                                         understand=False).movies],
    }
    matrix = engine.index.matrix.float()
    if getattr(net, "cand_text", None) is not None and engine._has_text:
        d = int(net.cand_text.shape[1])
        text = matrix[:, -d:]

        def text_similarity(t: str) -> list[int]:
            q = torch.nn.functional.normalize(torch.as_tensor(engine._embed(t), dtype=torch.float32), dim=-1)
            return _distinct_top(text @ q.reshape(-1), movies, K)

        rank_of["text similarity"] = text_similarity
        bias = matrix[:, -d - 1]
    else:
        bias = matrix[:, -1]
    popular = _distinct_top(bias.clone(), movies, K)
    rank_of["popularity"] = lambda t: popular
    return rank_of


# ---------------------------------------------------------------------------------------------- scoring
def score_method(requests: Sequence[BenchRequest], rank: Callable[[str], list[int]], truth: MovieTruth,
                 universe: np.ndarray) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The metrics of one method over ``requests`` on the catalog ``universe``, and one row per request."""
    prec, viol, ndcg = ConstraintPrecision(K), NegationViolations(K), SatisfyingNDCG(K)
    rows, ms = [], []
    for r in requests:
        t0 = time.perf_counter()
        top = rank(r.text)[:K]
        ms.append((time.perf_counter() - t0) * 1000)
        ok = truth.satisfies(r.facts, top)
        bad = truth.violates_negation(r.facts, top)
        n_sat = int(truth.satisfies(r.facts, universe).sum())
        prec.update(ok)
        ndcg.update(ok, n_sat)
        if r.negates:
            viol.update(bad)
        rows.append({"top": top, "satisfies": ok.tolist(), "violates": bad.tolist(), "n_satisfying": n_sat})
    ceiling = statistics.fmean(min(K, x["n_satisfying"]) / K for x in rows) if rows else float("nan")
    return {"requests": len(requests), "constraint_precision@10": prec.compute(),
            "negation_violations@10": viol.compute(), "negating_requests": viol.count, "ndcg@10": ndcg.compute(),
            "precision_ceiling": ceiling, "ms_per_request": statistics.median(ms) if ms else float("nan")}, rows


def run_requests_benchmark(engine: Any, truth: MovieTruth, out: Path, *, n: int = 500, seed: int = 0,
                           catalog: str = "both", extension: tuple[Any, np.ndarray] | None = None,
                           dtype: str = "int8", rank: int = 160, extension_name: str = "",
                           log: Callable[[str], None] = print, models: dict[str, str] | None = None,
                           compare: tuple[str, Any] | None = None) -> dict[str, Any]:
    """Score every method of :data:`METHODS` on the generated and hand-written requests, on the graph's
    candidates and / or (``extension``: movies and their text embeddings) the full catalog; write
    ``requests.md`` and ``requests.json`` into ``out`` (the generated requests themselves are not written: they
    come from the data home, and come again for the same seed).

    ``compare`` (a label and a second engine, e.g. the same model without pretraining) adds that engine's two
    "ours" rows as ``ours (<label>)`` and ``ours (<label>), words only``; its graph must hold the same
    candidates. ``models`` (row prefix -> how that model was trained) is written into the report."""
    if catalog not in ("graph", "full", "both"):
        raise QamrecError(f"--catalog {catalog!r}: use graph, full or both")
    if catalog != "graph" and extension is None:
        raise QamrecError("the full catalog needs the movies that extend it")
    graph_movies = np.unique(engine.cand_movie)
    served = np.unique(np.concatenate([graph_movies, extension[0]["movie_id"].to_numpy()])) \
        if extension is not None else graph_movies
    hand = load_handwritten(truth, set(graph_movies.tolist()))
    gen = generated_requests(truth, graph_movies, n, seed, served if catalog != "graph" else ())
    log(f"{len(gen)} generated requests (seed {seed}) and {len(hand)} hand-written")
    leaked = [r.text for r in gen if r.target is not None and not is_heldout(r.target)]
    assert not leaked, f"generated requests from movies that pretraining may use: {leaked[:3]}"
    if compare is not None and not np.array_equal(np.unique(compare[1].cand_movie), graph_movies):
        raise QamrecError(f"the compared model {compare[1].name} ranks other candidates than {engine.name}")
    result: dict[str, Any] = {"seed": seed, "k": K, "engine": engine.name, "catalogs": {}, "methods": list(METHODS),
                              "models": dict(models or {})}
    slices = [c for c in ("graph", "full") if catalog in (c, "both")]
    for name in slices:
        if name == "full":
            engine.extend_catalog(extension[0], extension[1], dtype, rank)  # type: ignore[index]
            if compare is not None:
                compare[1].extend_catalog(extension[0], extension[1], dtype, rank)  # type: ignore[index]
        universe = np.unique(engine.all_movies)
        log(f"catalog {name}: {len(universe):,} movies")
        per: dict[str, Any] = {"movies": int(len(universe)), "scoring": dtype if name == "full" else "float32",
                               "extension": extension_name if name == "full" else "", "methods": {}}
        ranks = engine_methods(engine)
        order = list(METHODS)
        if compare is not None:
            other = engine_methods(compare[1])
            for method in ("ours", "ours, words only"):
                label = method.replace("ours", f"ours ({compare[0]})")
                ranks[label] = other[method]
                order.insert(order.index(method) + 1, label)
        for method in order:
            if method not in ranks:
                continue
            entry: dict[str, Any] = {}
            for source, reqs in (("generated", gen), ("hand-written", hand)):
                metrics, rows = score_method(reqs, ranks[method], truth, universe)
                entry[source] = metrics
                if method == "ours":
                    entry[source + "_rows"] = rows
            log(f"  {method}: precision@10 generated {entry['generated']['constraint_precision@10']:.3f}, "
                f"hand-written {entry['hand-written']['constraint_precision@10']:.3f}")
            per["methods"][method] = entry
        per["by_plan"] = _by_plan(gen, per["methods"]["ours"]["generated_rows"])
        understood = [engine.understand(r.text).summary for r in hand]
        per["hand_written"] = [_hand_row(r, row, truth, u) for r, row, u in
                               zip(hand, per["methods"]["ours"]["hand-written_rows"], understood)]
        for m in per["methods"].values():
            m.pop("generated_rows", None)
            m.pop("hand-written_rows", None)
        result["catalogs"][name] = per
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "requests.json", result)
    atomic_write_text(out / "requests.md", requests_table(result))
    return result


def _by_plan(reqs: Sequence[BenchRequest], rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Our precision@10 per kind of generated request (its plan: the facts it states)."""
    groups: dict[str, list[float]] = {}
    for r, row in zip(reqs, rows):
        groups.setdefault(r.plan, []).append(sum(row["satisfies"]) / K)
    return {p: {"requests": len(v), "constraint_precision@10": statistics.fmean(v)} for p, v in sorted(groups.items())}


def _hand_row(r: BenchRequest, row: dict[str, Any], truth: MovieTruth, understood: str) -> dict[str, Any]:
    return {"text": r.text, "facts": [f.label for f in r.facts], "understood": understood,
            "n_satisfying": row["n_satisfying"], "precision@10": sum(row["satisfies"]) / K,
            "top5": [{"title": truth.label(m), "satisfies": s} for m, s in zip(row["top"][:5], row["satisfies"])]}


def _f(x: float) -> str:
    return "-" if x != x else f"{x:.3f}"  # nan


def requests_table(r: dict[str, Any]) -> str:
    """The markdown report of a requests benchmark result."""
    lines = [f"# Requests with checkable facts ({r['engine']}, generated seed {r['seed']})", "",
             "Constraint precision@10: share of the top 10 that satisfy every fact of the request. Negation "
             "violations@10: share of the top 10 with something a negation rules out, over the requests that negate "
             "something (n). NDCG@10: every satisfying movie relevant. Ceiling: the precision@10 a perfect ranker "
             "gets (requests with fewer than 10 satisfying movies). Baselines are the plain methods: no parse, no "
             "filters. \"ours, words only\" is our model reading the request without the parser. Generated requests "
             "come from movies held out of pretraining on pseudo-requests (`is_heldout`); settings were chosen on "
             "another seed than the one reported.", ""]
    if r.get("models"):
        lines += ["Models:", ""] + [f"- {k}: {v}" for k, v in r["models"].items()] + [""]
    names = [n for n in ("graph", "full") if n in r["catalogs"]]  # in this order, also when read back from JSON
    for name in names:
        c = r["catalogs"][name]
        where = "the graph's candidates" if name == "graph" else f"the full served catalog ({c['extension']})"
        lines += [f"## {name}: {where}, {c['movies']:,} movies ({c['scoring']} scoring)", "",
                  "| method | requests | precision@10 | negation violations@10 (n) | NDCG@10 | ceiling | ms |",
                  "|---|---|---|---|---|---|---|"]
        for source in ("generated", "hand-written"):
            for method, m in c["methods"].items():
                x = m[source]
                lines.append(f"| {method} | {source} ({x['requests']}) | {_f(x['constraint_precision@10'])} | "
                             f"{_f(x['negation_violations@10'])} ({x['negating_requests']}) | {_f(x['ndcg@10'])} | "
                             f"{_f(x['precision_ceiling'])} | {x['ms_per_request']:.1f} |")
        lines += ["", "Ours by kind of generated request (its facts):", "", "| facts | requests | precision@10 |",
                  "|---|---|---|"]
        lines += [f"| {p} | {v['requests']} | {_f(v['constraint_precision@10'])} |" for p, v in c["by_plan"].items()]
        lines.append("")
    last = names[-1]
    lines += [f"## The hand-written requests: our top 5 on the {last} catalog", "",
              "✓ satisfies every fact, ✗ does not. Satisfying: movies of that catalog that satisfy every fact.", ""]
    for i, h in enumerate(r["catalogs"][last]["hand_written"], 1):
        tops = "; ".join(f"{'✓' if t['satisfies'] else '✗'} {t['title']}" for t in h["top5"])
        lines += [f"{i}. **{h['text']}** (facts: {', '.join(h['facts'])}; understood: {h['understood'] or '-'}; "
                  f"satisfying {h['n_satisfying']:,}; precision@10 {h['precision@10']:.1f})", f"   {tops}"]
    lines += ["", "The generated requests are made again from the data home on every run (`--seed`); none is kept "
              "here."]
    return "\n".join(lines) + "\n"
