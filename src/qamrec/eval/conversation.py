"""The conversation benchmark: our replies against each recommender turn's gold response (UniCRS's protocol).

Every recommender turn of a dataset's validation file is one example: its context (every earlier utterance) and
its gold response with movies as ``<movie>`` (ReDial: ``valid_data_processed.jsonl`` as UniCRS processed it;
INSPIRED: the recommender turns of ``valid_data_dbpedia.jsonl``, movie names as slots the same way). Our system
answers each context as the service would (the engine's ranking of the context, then
:class:`~qamrec.serve.reply.ReplyBuilder`, earlier replies of the same dialogue remembered) and the reply, with
the movies it names as ``<movie>``, is scored by :mod:`qamrec.eval.text_metrics`. The reply index leaves out
every dialogue of the file being evaluated (ReDial: the raw dialogues the UniCRS file was processed from).

Also measured: **faithfulness** (the share of the replies' stated facts that the catalog confirms, by
:class:`~qamrec.serve.faithfulness.FactChecker`), **repetition** (replies, and sentences, that repeat an earlier
one of the same dialogue) and the item ratio on the turns whose gold response recommends a movie.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qamrec.eval.text_metrics import TextMetrics, item_ratio
from qamrec.io import atomic_write_json, atomic_write_text, iter_jsonl
from qamrec.models.query import context_text

__all__ = ["ConvExample", "conversation_examples", "run_conversation_benchmark", "PUBLISHED"]

#: MSCRS (Wei et al., SIGIR 2025) Table 3, conversation task: rows of the published table
PUBLISHED: dict[str, dict[str, dict[str, float]]] = {
    "redial": {
        "KGSF (published)": {"bleu@2": 0.030, "bleu@3": 0.012, "rouge@2": 0.039, "rouge@L": 0.244,
                             "dist@2": 0.061, "dist@3": 0.278, "dist@4": 0.515},
        "UniCRS (published)": {"bleu@2": 0.045, "bleu@3": 0.021, "rouge@2": 0.058, "rouge@L": 0.285,
                               "dist@2": 0.433, "dist@3": 0.748, "dist@4": 1.003},
        "MSCRS (published)": {"bleu@2": 0.054, "bleu@3": 0.027, "rouge@2": 0.070, "rouge@L": 0.294,
                              "dist@2": 0.784, "dist@3": 1.332, "dist@4": 1.553},
    },
    "inspired": {
        "KGSF (published)": {"bleu@2": 0.023, "bleu@3": 0.007, "rouge@2": 0.031, "rouge@L": 0.228,
                             "dist@2": 0.418, "dist@3": 1.496, "dist@4": 2.790},
        "UniCRS (published)": {"bleu@2": 0.022, "bleu@3": 0.009, "rouge@2": 0.029, "rouge@L": 0.212,
                               "dist@2": 2.686, "dist@3": 4.343, "dist@4": 5.520},
        "MSCRS (published)": {"bleu@2": 0.040, "bleu@3": 0.019, "rouge@2": 0.052, "rouge@L": 0.235,
                              "dist@2": 4.197, "dist@3": 5.983, "dist@4": 6.556},
    },
}
_KEYS = ("bleu@2", "bleu@3", "rouge@2", "rouge@L", "dist@2", "dist@3", "dist@4")
_SENT = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class ConvExample:
    """One recommender turn: its dialogue (index in the file), the utterances before it, the gold response
    with movies as ``<movie>``."""

    dialogue: int
    context: tuple[str, ...]
    resp: str

    @property
    def recommends(self) -> bool:
        return "<movie>" in self.resp


def conversation_examples(dataset: str, raw: Path) -> list[ConvExample]:
    """The recommender turns of ``dataset``'s validation file (redial or inspired)."""
    out: list[ConvExample] = []
    if dataset == "redial":
        d, prev = -1, None
        for _, row in iter_jsonl(raw / "redial" / "unicrs" / "valid_data_processed.jsonl"):
            ctx = tuple(str(c) for c in row.get("context") or ())
            if prev is None or len(ctx) <= len(prev) or ctx[:len(prev)] != prev:  # not a continuation: a new one
                d += 1
            prev = ctx
            out.append(ConvExample(d, ctx, " ".join(str(row.get("resp") or "").split())))
        return out
    if dataset == "inspired":
        from qamrec.serve.reply_index import inspired_dialogues

        for d, (_, turns) in enumerate(inspired_dialogues(raw, "valid_data_dbpedia.jsonl")):
            ctx: list[str] = []
            for role, shown, slotted, _ in turns:
                if role == "recommender":
                    out.append(ConvExample(d, tuple(ctx), slotted))
                ctx.append(shown)
        return out
    raise ValueError(f"unknown dataset {dataset!r} (redial or inspired)")


def _excluded_dialogues(dataset: str, prepared: Path) -> set[str]:
    """Dialogue ids of the reply index that the evaluated file holds."""
    if dataset != "redial":
        return set()  # INSPIRED: the index reads the train file only
    from qamrec.data.prepare import load_table

    d = load_table(prepared, "redial", "dialogues")
    return set(d.filter(d["source"] == "unicrs_valid_dialogs.jsonl")["dialogue_id"].to_list())


def run_conversation_benchmark(engine: Any, config: Any, dataset: str, out: Path, k: int = 10,
                               limit: int = 0, samples: int = 3,
                               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Answer every example of ``dataset``'s validation file with ``engine`` (and a reply builder whose index
    leaves the file's dialogues out); write ``conversation_<dataset>.md`` and ``.json`` into ``out``."""
    from qamrec.data.prepare import load_table
    from qamrec.serve.conversation import Conversation, Event
    from qamrec.serve.engine import Feedback
    from qamrec.serve.faithfulness import FactChecker, FaithfulnessReport
    from qamrec.serve.reply import ReplyBuilder

    examples = conversation_examples(dataset, Path(config.raw_dir))
    if limit:
        examples = examples[:limit]
    excluded = _excluded_dialogues(dataset, Path(config.prepared_dir))
    replier = ReplyBuilder.for_engine(engine, config, exclude=lambda d: d in excluded)
    checker = FactChecker(load_table(config.prepared_dir, "catalog", "movies"))
    metrics, on_rec = TextMetrics(), []
    faith = FaithfulnessReport()
    convs: dict[int, Conversation] = {}
    log: list[dict[str, Any]] = []
    repeated = sentences = repeated_sentences = later = kinds_clarify = 0
    t0 = time.perf_counter()
    for i, ex in enumerate(examples):
        conv = convs.setdefault(ex.dialogue, Conversation(seed=f"{dataset}:{ex.dialogue}"))
        said = [c for c in ex.context if c.strip()]
        conv.messages = list(said)
        if said:
            result = engine.recommend(context_text(list(ex.context)), Feedback(), k=k)
            u = result.understood
            reply = replier.reply(result.movies, conv, Event("message", said[-1]), result.query_vector, u,
                                  result.suggestions, [m for m, _ in u.anchors] if u is not None else [])
        else:
            reply = replier.reply([], conv, Event("message", ""))
        faith = checker.check(reply.claims, faith)
        if conv.replies:
            later += 1
            repeated += reply.text in {r.text for r in conv.replies}
            before = {s for r in conv.replies for s in _SENT.split(r.text)}
            parts = _SENT.split(reply.text)
            sentences += len(parts)
            repeated_sentences += sum(s in before for s in parts)
        kinds_clarify += reply.kind == "clarify"
        conv.add(reply.text, reply.kind, reply.template, reply.movies)
        metrics.add(reply.slotted, ex.resp)
        if ex.recommends:
            on_rec.append(reply.slotted)
        log.append({"dialogue": ex.dialogue, "context": list(ex.context), "gold": ex.resp, "reply": reply.text,
                    "slotted": reply.slotted, "kind": reply.kind})
        if progress:
            progress(i + 1, len(examples))
    seconds = time.perf_counter() - t0
    rep = metrics.report()
    result_ = {
        "dataset": dataset, "run": engine.name, "examples": len(examples), "dialogues": len(convs),
        "metrics": rep, "item_ratio_on_recommending_turns": item_ratio(on_rec), "recommending_turns": len(on_rec),
        "faithfulness": faith.as_dict(), "replies_checked": len(examples),
        "repeated_replies": repeated / later if later else 0.0,
        "repeated_sentences": repeated_sentences / sentences if sentences else 0.0,
        "clarifying_questions": kinds_clarify / len(examples) if examples else 0.0,
        "index_utterances": len(replier.index), "excluded_dialogues": len(excluded),
        "seconds": seconds, "ms_per_turn": 1000 * seconds / max(1, len(examples)),
        "published": PUBLISHED.get(dataset, {}),
    }
    result_["session"] = scripted_session(engine, replier)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"conversation_{dataset}.json", result_)
    atomic_write_text(out / f"conversation_{dataset}.md", _markdown(result_, log, samples))
    return result_


#: a session through the service: a vague request, a refinement, feedback, a message that rules something out
SESSION: tuple[tuple[str, str | int, str], ...] = (
    ("message", "something good for tonight", ""), ("suggestion", 0, "accepted"), ("movie", 0, "disliked"),
    ("message", "no horror please, something from the 90s", ""), ("movie", 1, "liked"), ("movie", 0, "seen"),
)


def scripted_session(engine: Any, replier: Any, script: tuple[tuple[str, str | int, str], ...] = SESSION,
                     ) -> list[dict[str, Any]]:
    """:data:`SESSION` through the service's API in this process (its own temporary session store): each step
    (what the person did) with the reply and the first movies."""
    import tempfile

    from fastapi.testclient import TestClient

    from qamrec.serve.app import create_app
    from qamrec.serve.store import SQLiteStore

    steps: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, TestClient(create_app(engine, SQLiteStore(Path(tmp) / "s.sqlite3"),
                                                                     replier=replier)) as c:
        sid = c.post("/sessions").json()["id"]
        recs: dict[str, Any] = {}
        for kind, what, value in script:
            if kind == "message":
                did = f"says: {what}"
                recs = c.post(f"/sessions/{sid}/messages", json={"text": what, "k": 5}).json()
            elif kind == "movie":
                movie = recs["movies"][int(what)]
                did = f"{value} {movie['title']}" + (f" ({movie['year']})" if movie.get("year") else "")
                recs = c.post(f"/sessions/{sid}/feedback", json={"movie_id": movie["id"], "value": value,
                                                                 "k": 5}).json()["recommendations"]
            else:
                if not recs.get("suggestions"):
                    continue
                sugg = recs["suggestions"][int(what)]
                did = f"{value} the suggestion “{sugg['label']}”"
                recs = c.post(f"/sessions/{sid}/feedback", json={"suggestion_id": sugg["id"], "value": value,
                                                                 "k": 5}).json()["recommendations"]
            steps.append({"person": did, "reply": recs.get("reply", ""),
                          "movies": [m["title"] for m in recs.get("movies", [])],
                          "suggestions": [x["label"] for x in recs.get("suggestions", [])]})
    return steps


def _markdown(r: dict[str, Any], log: list[dict[str, Any]], samples: int) -> str:
    name = {"redial": "ReDial", "inspired": "INSPIRED"}.get(r["dataset"], r["dataset"])
    m, f = r["metrics"], r["faithfulness"]
    lines = [f"# Conversation: {name}", "",
             f"Our replies to the {r['examples']:,} recommender turns of {r['dialogues']:,} dialogues of {name}'s "
             f"validation file (UniCRS's conversation protocol: each turn's gold response, movies as `<movie>`; "
             f"ours with the movies it names as `<movie>`), run `{r['run']}`. Reply index: "
             f"{r['index_utterances']:,} recommender utterances of training dialogues"
             + (f" ({r['excluded_dialogues']:,} dialogues of the evaluated file left out)" if r["excluded_dialogues"]
                else "") + ".", "",
             "| model | BLEU-2 | BLEU-3 | ROUGE-2 | ROUGE-L | Distinct-2 | Distinct-3 | Distinct-4 | item ratio |",
             "|---|---|---|---|---|---|---|---|---|",
             "| **ours** (retrieved human utterances, our movies, catalog facts) | "
             + " | ".join(f"{m[k]:.3f}" for k in _KEYS) + f" | {m['item_ratio']:.3f} |"]
    for model, row in r["published"].items():
        lines.append(f"| {model} | " + " | ".join(f"{row[k]:.3f}" for k in _KEYS) + " | – |")
    lines += ["",
              "The published rows are MSCRS's Table 3 (Wei et al., SIGIR 2025), on each dataset's official test "
              "split; ours is on the validation file. Distinct-n is the number of distinct n-grams over all "
              "replies divided by the number of replies, as UniCRS's evaluator computes it (so it depends on how "
              "many replies there are: the same variety over more replies gives a lower value).", "",
              "| | value |", "|---|---|",
              f"| item ratio on the {r['recommending_turns']:,} turns whose gold response names a movie | "
              f"{r['item_ratio_on_recommending_turns']:.3f} |",
              f"| faithfulness: stated facts the catalog confirms, over {r['replies_checked']:,} replies | "
              f"{f['rate']:.4f} ({f['confirmed']:,} of {f['checked']:,}) |",
              f"| replies that repeat an earlier reply of the same dialogue | {r['repeated_replies']:.4f} |",
              f"| sentences that repeat an earlier sentence of the same dialogue | {r['repeated_sentences']:.4f} |",
              f"| replies with a clarifying question | {r['clarifying_questions']:.3f} |",
              f"| time per turn (ranking + reply) | {r['ms_per_turn']:.1f} ms |", ""]
    if f["failures"]:
        lines += ["Claims the catalog did not confirm (first 20): "
                  + "; ".join(json.dumps(c) for c in f["failures"]), ""]
    if r.get("session"):
        lines += ["## A session through the service", "",
                  "A scripted session against the API in this process (`POST /sessions/{id}/messages` and "
                  "`/feedback`, k = 5): what the person did, the reply, the movies shown.", ""]
        for st in r["session"]:
            lines += [f"- **person** {st['person']}", f"  - **qamrec:** {st['reply']}",
                      f"  - shown: {'; '.join(st['movies'])}"
                      + (f" · suggestions: {' | '.join(st['suggestions'])}" if st["suggestions"] else "")]
        lines.append("")
    lines += ["## Sample conversations", "",
              "Each turn: the conversation so far is the dataset's; *gold* is what the human recommender said, "
              "*ours* what our system answers at that point.", ""]
    by_dialogue: dict[int, list[dict[str, Any]]] = {}
    for row in log:
        by_dialogue.setdefault(row["dialogue"], []).append(row)
    fits = sorted(by_dialogue, key=lambda d: (not 4 <= len(by_dialogue[d]) <= 8, d))  # short ones, in order
    chosen = fits[:samples]
    for d in chosen:
        rows = by_dialogue[d]
        lines += [f"### Dialogue {d}", ""]
        shown = 0
        for row in rows:
            new = [c for c in row["context"][shown:] if c.strip()]
            shown = len(row["context"])
            lines += [f"> {c}  " for c in new]
            lines += [f"- *gold:* {row['gold']}", f"- *ours:* {row['reply']}", ""]
    return "\n".join(lines) + "\n"
