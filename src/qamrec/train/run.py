"""Run directories: ``qamrec train`` writes one, ``qamrec evaluate`` and the service read it.

A run directory holds ``config.json`` (the resolved config), ``graph/`` (the graph it was trained on),
``model.safetensors`` + ``model.json`` (weights and model settings), ``items.safetensors`` (precomputed
candidate representations), ``metrics.json`` (per-epoch history, dev and test metrics), ``curves.png``, and
for a dataset whose published validation file is also its training pool, ``test.jsonl``: the held-out part
of that file, and ``MANIFEST.json``, the SHA256 of every other file (see :mod:`qamrec.train.rundir`). It is
assembled under a temporary name and renamed into place when complete; :func:`load_run` validates it first.

While a training runs, ``RUN_DIR/checkpoint/`` holds its latest epoch (see :mod:`qamrec.train.checkpoint`):
a killed ``qamrec train`` run again with the same ``--out`` and settings goes on from there (``resume``) and
ends as an uninterrupted one would. The checkpoint is dropped when the run directory is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError

from qamrec.config import Config, saved_config
from qamrec.errors import MissingDataError, QamrecError
from qamrec.eval.evaluate import evaluate
from qamrec.eval.protocol import CRSExample, read_crs_examples
from qamrec.graph.store import Graph, load_graph
from qamrec.io import atomic_write_json, atomic_write_text, read_json, sha256_file, tmp_prefix, write_figure
from qamrec.models.base import Recommender
from qamrec.models.ensemble import ENSEMBLE_FILE, ScoreEnsemble
from qamrec.models.qamrec import example_query
from qamrec.train.checkpoint import CHECKPOINT_DIR, Checkpointer, checkpointing, train_identity
from qamrec.train.rundir import (RUN_FILES, in_progress, recover, replace_dir, validate_run,
                                 write_manifest)

__all__ = ["train_run", "load_run", "pool_runs", "evaluate_model", "heldout_lines", "plot_curves",
           "select_test_examples", "test_summary", "RUN_FILES", "validate_run"]


def heldout_lines(path: Path, heldout: set[int]) -> list[str]:
    """The lines of a UniCRS-processed file whose dialogue (numbered as :func:`read_crs_examples` does) is held out."""
    out, dialogue, prev = [], -1, 10**9
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            n = len(json.loads(line).get("context", []))
            if n <= prev:
                dialogue += 1
            prev = n
            if dialogue in heldout:
                out.append(line if line.endswith("\n") else line + "\n")
    return out


def plot_curves(history: list[dict[str, float]], target: Path) -> None:
    """Training loss and dev metrics per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(ep, [r["loss"] for r in history], marker="o")
    a.set(xlabel="epoch", ylabel="cross-entropy", title="training loss")
    for k in ("dev_recall@10", "dev_recall@50", "dev_ndcg@10"):
        if history and k in history[0]:
            b.plot(ep, [r[k] for r in history], marker="o", label=k[4:])
    b.set(xlabel="epoch", title="dev metrics")
    b.legend()
    write_figure(fig, target)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def evaluate_model(model: Recommender, examples: list[CRSExample], item_ids: list[int]) -> dict[str, float]:
    """UniCRS-protocol metrics of ``model`` on ``examples`` (with the unseen-gold slice when the model's
    ``train_targets`` are known: a run directory records them)."""
    scores = model.score([example_query(e) for e in examples]) if examples else np.zeros((0, len(item_ids)))
    return evaluate(scores, examples, item_ids, seen_items=getattr(model, "train_targets", None))


def test_summary(metrics: dict[str, Any]) -> str:
    """One line on what a run was tested on (:func:`train_run`'s metrics), or why it was not."""
    t, n_file = metrics["test"], metrics["test_examples_in_file"]
    name = Path(metrics["test_file"]).name
    if not t.get("n_examples"):
        best = next((r for r in metrics.get("history", []) if r.get("epoch") == metrics.get("best_epoch")), {})
        dev = (f"; dev recall@10 {best['dev_recall@10']:.3f}, recall@50 {best['dev_recall@50']:.3f}"
               if "dev_recall@10" in best else "")
        return (f"trained on every dialogue of {name} too ({metrics.get('n_train_dialogues', 0):,} training "
                f"dialogues), so none is left to test on{dev}: test with `qamrec evaluate --run RUN --test FILE`, "
                "or benchmark with `qamrec benchmark crs`")
    return (f"{t['n_examples']:,} test examples ({metrics['test_examples_excluded_as_training']:,} of {n_file:,} "
            f"in {name} excluded: their dialogues are training data): recall@10 {t['recall@10']:.3f}, "
            f"recall@50 {t['recall@50']:.3f}")


def _dev_gain(reference: dict[str, float], chosen: dict[str, float]) -> str:
    """``(dev NDCG@10 a -> b, recall@10 c -> d)``: a setting chosen on dev after training against its reference;
    where the dev examples of the test file's dialogues were measured apart, also their NDCG@10 gain."""
    apart = (f"; on the dev dialogues of the test file {chosen['test_file_gain']:+.4f} "
             f"± {chosen['test_file_gain_se']:.4f}" if "test_file_gain" in chosen else "")
    return (f"(dev NDCG@10 {reference['ndcg@10']:.4f} -> {chosen['ndcg@10']:.4f}, "
            f"recall@10 {reference['recall@10']:.4f} -> {chosen['recall@10']:.4f}{apart})")


def select_test_examples(graph: Graph, test_file: Path, entity2id: dict[str, int] | None,
                  include_training: bool = False) -> tuple[list[CRSExample], int, int]:
    """Examples of ``test_file``; when it is the file the graph's held-out split was drawn from, only the
    held-out dialogues' (unless ``include_training``). Returns (examples, examples in file, excluded)."""
    examples = read_crs_examples(test_file, entity2id)
    heldout = graph.meta.get("heldout")
    if heldout is None or include_training or sha256_file(test_file) != graph.meta.get("test_sha256"):
        return examples, len(examples), 0
    keep = set(heldout)
    kept = [e for e in examples if e.dialogue in keep]
    return kept, len(examples), len(examples) - len(kept)


def train_run(dataset: str, config: Config, out: Path, *, make_model: Callable[[Config], Recommender],
              on_epoch: Callable[[dict[str, float]], None] = lambda r: None,
              log: Callable[[str], None] = lambda s: None, overwrite: bool = False,
              resume: bool = True) -> dict[str, Any]:
    """Build (or reuse) the graph, fit the model, evaluate it on the test file, write the run directory.

    With ``resume``, a checkpoint of an interrupted training in ``out`` is taken up (it must have the same
    settings, else :class:`QamrecError`); without it, it is deleted. ``metrics["resumed_from_epoch"]`` says
    which epoch training went on from (``None``: from the start).
    """
    from qamrec.data.crs import load_crs
    from qamrec.graph.build import build_or_load, graph_key
    from qamrec.train.pretrain import pretraining_data

    out.parent.mkdir(parents=True, exist_ok=True)
    recover(out)
    if out.exists() and not in_progress(out) and not overwrite:
        raise QamrecError(f"{out} exists; choose another --out or pass --overwrite")
    model = make_model(config)
    ckpt = Checkpointer(out / CHECKPOINT_DIR,
                        train_identity(dataset, model.name, config, f"{dataset}-{graph_key(dataset, config)}"))
    if not resume:
        ckpt.clear()
    if (epoch := ckpt.saved_epoch()) is not None:
        log(f"resuming from {ckpt.folder} (epoch {epoch} done)")
    graph, graph_folder = build_or_load(dataset, config, log=log)
    crs = load_crs(dataset, config)
    log(f"training on {len(crs.train):,} examples from {crs.n_train_dialogues:,} dialogues, early stopping on "
        f"{len(crs.dev):,} dev examples")
    pre = pretraining_data(config, graph, config.seed, log) if model.name == "qamrec" else None
    with checkpointing(ckpt):
        model = model.fit(crs, graph, on_epoch=on_epoch, **({"pretrain": pre} if pre is not None else {}))
    if pre is not None:
        log(f"pretraining: {'cached' if pre.cached else f'{pre.seconds:.0f} s'}")
    if (memory := getattr(model, "comention", None)) is not None:
        row = next(r for r in memory["dev"] if r["weight"] == memory["weight"])
        log(f"co-mention memory: weight {memory['weight']:g} {_dev_gain(memory['dev'][0], row)}")
    if (mention := getattr(model, "mention", None)) is not None:
        row = next(r for r in mention["dev"] if (r["weight"], r["below_top"]) == (mention["weight"],
                                                                                   mention["below_top"]))
        log(f"mention bonus: {mention['weight']:g}{' below the best other movie' if row['below_top'] else ''}, "
            f"learned {mention['learned']:.3f} {_dev_gain(mention['dev'][0], row)}")
    if (votes := getattr(model, "neighbours", None)) is not None:
        row = next(r for r in votes["dev"] if (r["kind"], r["weight"]) == (votes["kind"], votes["weight"]))
        log(f"neighbour vote: {votes['kind']} x {votes['weight']:g} over {votes['examples']:,} training examples "
            f"{_dev_gain(votes['dev'][0], row)}")
    if (listing := getattr(model, "listing", None)) is not None:
        rows = listing["dev_as_test"]
        log(f"one id per movie: {len(listing['unlisted'])} ids unlisted"
            + (f" {_dev_gain(*rows)} on the dev dialogues in the test file's format" if rows else ""))
    model.train_targets = sorted({e.item for e in crs.train})  # type: ignore[attr-defined]
    examples, n_file, excluded = select_test_examples(graph, crs.test_file, crs.entity2id)
    test = evaluate_model(model, examples, graph.meta["item_ids"])
    dev_as_test = None
    if crs.dev_as_test:  # the dev dialogues in the test file's entity linking and labels: no choice reads it
        dev_as_test = evaluate_model(model, crs.dev_as_test, graph.meta["item_ids"])
        log(f"dev dialogues as the test file has them: {len(crs.dev_as_test):,} examples, recall@10 "
            f"{dev_as_test['recall@10']:.3f}, recall@50 {dev_as_test['recall@50']:.3f}")
    hist = getattr(model, "history", None)
    metrics = {
        "dataset": dataset, "model": model.name, "test_file": str(crs.test_file), "test_examples_in_file": n_file,
        "test_examples_excluded_as_training": excluded, "test": test,
        "history": hist.epochs if hist else [], "best_epoch": hist.best_epoch if hist else None,
        "train_seconds": hist.seconds if hist else None, "n_train": len(crs.train), "n_dev": len(crs.dev),
        "n_train_dialogues": crs.n_train_dialogues, "train_targets": model.train_targets,  # type: ignore[attr-defined]
        "resumed_from_epoch": ckpt.resumed_from, "comention": getattr(model, "comention", None),
        "mention": getattr(model, "mention", None), "listing": getattr(model, "listing", None),
        "dev_as_test": dev_as_test,
        "neighbours": getattr(model, "neighbours", None),
        "pretrain": None if pre is None else {"examples": len(pre.texts), **pre.counts, "epochs": pre.epochs,
                                              "seconds": round(pre.seconds, 1), "cached": pre.cached},
    }
    tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix(out.name), dir=out.parent))
    try:
        (tmp / "graph").mkdir()
        for f in ("graph.json", "graph.safetensors"):
            _link_or_copy(graph_folder / f, tmp / "graph" / f)
        model.save(tmp)
        atomic_write_json(tmp / "config.json", json.loads(config.model_dump_json()) | {"dataset": dataset})
        if crs.heldout:
            atomic_write_text(tmp / "test.jsonl", "".join(heldout_lines(crs.test_file, set(crs.heldout))))
        if hist and hist.epochs:
            plot_curves(hist.epochs, tmp / "curves.png")
        atomic_write_json(tmp / "metrics.json", metrics)
        write_manifest(tmp)  # last: a folder with a manifest is complete
        replace_dir(tmp, out)  # the checkpoint, inside the old `out`, goes with it
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return metrics


def load_run(folder: Path, config: Config) -> tuple[Recommender, Graph, dict[str, Any]]:
    """The fitted model of a run directory, its graph and its saved config (an ensemble folder,
    :mod:`qamrec.models.ensemble`: the ensemble, and its first member's graph and config).

    The directory is validated first (:func:`~qamrec.train.rundir.validate_run`): a missing or corrupted
    file is a :class:`QamrecError` naming it, never a traceback from deep inside a loader.
    """
    from qamrec.features.pipeline import text_function
    from qamrec.models import MODELS

    if (folder / ENSEMBLE_FILE).is_file():  # its members are run directories, each loaded (and checked) here
        ens = ScoreEnsemble.load(folder, load_member=lambda f: load_run(f, config)[0])
        assert ens.graph is not None and ens.folders is not None
        return ens, ens.graph, read_json(ens.folders[0] / "config.json")
    validate_run(folder)
    saved = read_json(folder / "config.json")
    graph = load_graph(folder / "graph")
    name = read_json(folder / "model.json").get("name")
    if name not in MODELS:
        raise MissingDataError(f"{folder}/model.json: unknown model {name!r}")
    run_cfg = config.model_copy(update={"features": config.features.model_copy(
        update={"text_model": saved.get("features", {}).get("text_model", config.features.text_model)})})
    try:
        model = MODELS[name].load(folder, graph, text_function(run_cfg))
        model.train_targets = read_json(folder / "metrics.json").get("train_targets")  # type: ignore[attr-defined]
    except (OSError, RuntimeError, ValueError, KeyError, SafetensorError) as e:
        raise QamrecError(f"{folder}/model.safetensors: cannot load the {name} model ({e}); "
                          f"train it again with `qamrec train --out {folder} --overwrite`") from None
    return model, graph, saved


def pool_runs(folders: Sequence[Path], config: Config) -> ScoreEnsemble:
    """The models of run directories ``folders`` pooled (:class:`~qamrec.models.ensemble.ScoreEnsemble`), the
    weights chosen on the dev examples of their data split, which must be one: the same dataset, seed and
    held-out share in every member's ``config.json``."""
    from qamrec.data.crs import load_crs

    saved = [read_json(Path(f) / "config.json") for f in folders]
    split = [(c.get("dataset"), c.get("seed"), c.get("graph", {}).get("heldout_fraction")) for c in saved]
    if len(set(split)) > 1:
        raise QamrecError("the members must share one data split (dataset, seed, graph.heldout_fraction): "
                          + "; ".join(f"{f}: {s}" for f, s in zip(folders, split)))
    crs = load_crs(str(split[0][0]), saved_config(saved[0], config.home))
    members = [load_run(Path(f), config)[0] for f in folders]
    return ScoreEnsemble(members, folders=[Path(f) for f in folders]).fit(crs)
