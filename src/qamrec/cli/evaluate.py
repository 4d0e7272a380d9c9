"""``qamrec evaluate`` (a run on the UniCRS / MSCRS protocol) and ``qamrec benchmark`` (quality benchmarks)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from qamrec.cli.common import (cfg, console, load_run_engine, print_metrics, print_model_note, progress,
                               run_or_default)
from qamrec.cli.train import run_training
from qamrec.config import Config
from qamrec.errors import QamrecError

__all__ = ["evaluate", "benchmark_app"]

benchmark_app = typer.Typer(help="Benchmarks on the standard protocols.", no_args_is_help=True)


def evaluate(
    run: Annotated[Path, typer.Option(help="run directory")],
    test: Annotated[Optional[Path], typer.Option(help="test file (UniCRS format); default: the run's own")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the metrics to this JSON file")] = None,
    include_training: Annotated[bool, typer.Option(help="keep examples from dialogues the model trained on")] = False,
) -> None:
    """Evaluate a run on a test file with the UniCRS / MSCRS protocol (full ranking, top 50)."""
    from qamrec.io import atomic_write_json

    m, name, dataset = _evaluate_run(run, test, include_training)
    test = Path(m["test_file"])
    n_file, excluded = m["examples_in_file"], m["excluded_as_training"]
    if json_out:
        atomic_write_json(json_out, m)
    note = (f"{test.name}: {n_file:,} examples in the file"
            + (f"; {excluded:,} excluded (dialogues used for training), {m['n_examples']:,} evaluated" if excluded else
               ", all evaluated") + f"  [{m['seconds']:.1f} s]")
    print_metrics({name: m}, dataset, note)
    print_model_note(name)
    t = Table("variant", "examples", "R@1", "R@10", "R@50", "NDCG@10", "MRR@10", "MAP", "P@10",
              title="variants (one gold item per example: P@k = R@k / k, MAP = MRR without a cut-off)")
    for prefix, label in (("", "all (protocol)"), ("new_items.", "new items only"), ("cold_start.", "cold start")):
        t.add_row(label, f"{int(m[prefix + 'n_examples']):,}", *(f"{m[prefix + k]:.4f}" for k in
                  ("recall@1", "recall@10", "recall@50", "ndcg@10", "mrr@10", "map", "precision@10")))
    console.print(t)


def _run_test_examples(run: Path, dataset: str, graph, test: Path | None = None,
                       include_training: bool = False) -> tuple[list, int, int, Path]:
    """The test examples of a run: ``test``, else its held-out file, else the dataset's validation file.
    Returns (examples, examples in the file, excluded as training, the file)."""
    from qamrec.data.crs import CRS_SOURCES
    from qamrec.io import read_json
    from qamrec.train.run import select_test_examples

    c = cfg()
    src = CRS_SOURCES[dataset]
    if test is None:
        test = run / "test.jsonl" if (run / "test.jsonl").exists() else c.raw_dir / src.valid_file
    if not test.exists():
        raise QamrecError(f"{test}: no such test file")
    entity2id = {str(k): int(v) for k, v in read_json(c.raw_dir / src.entity2id).items()}
    return (*select_test_examples(graph, test, entity2id, include_training), test)


def _evaluate_run(run: Path, test: Path | None, include_training: bool = False) -> tuple[dict, str, str]:
    """Metrics of a run directory on a test file (default: its held-out file, or the dataset's validation file)."""
    import time

    from qamrec.train.run import evaluate_model, load_run

    t0 = time.perf_counter()
    model, graph, saved = load_run(run, cfg())
    dataset = saved["dataset"]
    examples, n_file, excluded, test = _run_test_examples(run, dataset, graph, test, include_training)
    m = evaluate_model(model, examples, graph.meta["item_ids"])
    return ({"test_file": str(test), "examples_in_file": n_file, "excluded_as_training": excluded,
             "seconds": round(time.perf_counter() - t0, 2)} | m), model.name, dataset


@benchmark_app.command("crs")
def benchmark_crs(
    dataset: Annotated[str, typer.Option(help="redial or inspired")],
    test: Annotated[Optional[Path], typer.Option(help="test file (UniCRS format); default: the held-out/validation file")] = None,
    out: Annotated[Path, typer.Option(help="folder for the table, JSON, chart and runs")] = Path("bench"),
    only: Annotated[Optional[list[str]], typer.Option(help="run only these variants (repeatable, or comma-separated)")] = None,
    seeds: Annotated[str, typer.Option(help="seeds, comma-separated: each row is the mean ± std over them")] = "0",
) -> None:
    """Baselines, our model and its ablations on the UniCRS protocol: markdown table + JSON + bar chart."""
    from qamrec.eval.benchmark import run_crs_benchmark

    try:
        seed_list = [int(x) for x in seeds.split(",") if x.strip()]
    except ValueError:
        raise QamrecError(f"--seeds {seeds!r}: give integers like 0,1,2") from None
    run_crs_benchmark(
        dataset, cfg(), out, test,
        train=lambda d, run, model, c: run_training(d, run, model, True, c, quiet=True),
        evaluate_run=lambda run, t: _evaluate_run(run, t)[0], only=only,
        log=lambda m: console.print(m, markup=False, highlight=False), seeds=seed_list or [0])
    console.print((out / f"crs_{dataset}.md").read_text())
    console.print(f"wrote {out / f'crs_{dataset}.md'}, .json and .png")


@benchmark_app.command("mscrs-sensitivity")
def benchmark_mscrs_sensitivity(
    dataset: Annotated[str, typer.Option(help="redial or inspired")] = "inspired",
    out: Annotated[Path, typer.Option(help="folder for mscrs_sensitivity_<dataset>.{md,json} and the two plots")]
    = Path("docs/results"),
    runs: Annotated[Optional[Path], typer.Option(help="run directories (default $QAMREC_HOME/runs/mscrs-sensitivity)")]
    = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the results to this JSON file")] = None,
    k_values: Annotated[str, typer.Option(help="neighbours per item to sweep, comma-separated")] = "5,10,20,50,100",
    lambdas: Annotated[str, typer.Option(help="text/image weights to sweep, comma-separated")] = "0,0.25,0.5,0.75,1",
) -> None:
    """MSCRS's kNN size k and text/image weight lambda (its Figure 5): one training per point, test recall."""
    from qamrec.eval.mscrs_sensitivity import run_mscrs_sensitivity
    from qamrec.io import atomic_write_json

    try:
        ks = tuple(int(x) for x in k_values.split(",") if x.strip())
        lams = tuple(float(x) for x in lambdas.split(",") if x.strip())
    except ValueError:
        raise QamrecError(f"--k-values {k_values!r} / --lambdas {lambdas!r}: give numbers like 5,10,20") from None
    c = cfg()
    r = run_mscrs_sensitivity(dataset, c, out, runs or c.runs_dir / "mscrs-sensitivity",
                              train=lambda d, run, cc: run_training(d, run, "mscrs", True, cc, quiet=True),
                              log=lambda m: console.print(m, markup=False, highlight=False), k_values=ks,
                              lambdas=lams)
    if json_out:
        atomic_write_json(json_out, r)
    console.print((out / f"mscrs_sensitivity_{dataset}.md").read_text())
    console.print(f"wrote {out / f'mscrs_sensitivity_{dataset}'}.md, .json, _k.png and _lambda.png")


@benchmark_app.command("learning-curve")
def benchmark_learning_curve(
    dataset: Annotated[str, typer.Option(help="redial or inspired")] = "redial",
    out: Annotated[Path, typer.Option(help="folder for learning_curve_<dataset>.{md,json,png}")] = Path("docs/results"),
    runs: Annotated[Optional[Path], typer.Option(help="run directories (default $QAMREC_HOME/runs/learning-curve)")]
    = None,
    fractions: Annotated[str, typer.Option(help="shares of the training dialogues, comma-separated")] = "0.25,0.5,1",
    target_dialogues: Annotated[int, typer.Option(min=0, help="extrapolate the log-linear fit to this many "
                                                              "training dialogues (0: the largest point)")] = 0,
) -> None:
    """Test recall against the number of training dialogues (one training of our model per share)."""
    from qamrec.data.crs import load_crs
    from qamrec.eval.learning_curve import run_learning_curve
    from qamrec.train.run import evaluate_model, load_run, select_test_examples

    try:
        shares = tuple(float(x) for x in fractions.split(",") if x.strip())
    except ValueError:
        raise QamrecError(f"--fractions {fractions!r}: give shares like 0.25,0.5,1") from None

    def inspect(c: Config, run: Path) -> dict[str, float]:
        crs = load_crs(dataset, c)
        targets = {e.item for e in crs.train}
        model, graph, _ = load_run(run, c)
        test, _, _ = select_test_examples(graph, crs.test_file, crs.entity2id)
        unseen = [e for e in test if e.item not in targets]
        seen = [e for e in test if e.item in targets]
        items = graph.meta["item_ids"]
        return {"train_dialogues": crs.n_train_dialogues, "unseen_gold": len(unseen) / max(len(test), 1),
                "unseen_recall@50": evaluate_model(model, unseen, items)["recall@50"] if unseen else 0.0,
                "seen_recall@10": evaluate_model(model, seen, items)["recall@10"] if seen else 0.0}

    c = cfg()
    run_learning_curve(dataset, c, out, runs or c.runs_dir / "learning-curve",
                       train=lambda d, run, cc: run_training(d, run, "qamrec", True, cc, quiet=True), inspect=inspect,
                       log=lambda m: console.print(m, markup=False, highlight=False), fractions=shares,
                       target_dialogues=target_dialogues)
    console.print((out / f"learning_curve_{dataset}.md").read_text())
    console.print(f"wrote {out / f'learning_curve_{dataset}'}.md, .json and .png")


@benchmark_app.command("rounds")
def benchmark_rounds(
    run: Annotated[Optional[Path], typer.Option(help="trained run directory (default: the demo's)")] = None,
    out: Annotated[Path, typer.Option(help="folder for the table, JSON and plot")] = Path("bench"),
    rounds: Annotated[int, typer.Option(min=1, max=20)] = 5,
    users: Annotated[int, typer.Option(min=0, help="at most this many simulated users (0: all)")] = 0,
) -> None:
    """Multi-round sessions with simulated users (MAGUS): SA@r without, with naive and with propagated feedback."""
    from qamrec.eval.rounds import run_rounds_benchmark, sim_users

    run = run_or_default(run)
    engine = load_run_engine(run)
    dataset = engine.dataset
    examples, _, _, test = _run_test_examples(run, dataset, engine.graph)
    item_movie = {e: int(engine.cand_movie[j]) for j, e in enumerate(engine.graph.meta["item_ids"])}
    sims = sim_users(examples, item_movie)
    sims = sims[:users] if users else sims
    if not sims:
        raise QamrecError(f"{run} held out no test dialogues of {test.name} (it trained on all of them): train a "
                          "run with --set graph.heldout_fraction=0.3 to simulate users from its held-out dialogues")
    console.print(f"{len(sims)} simulated users from {test.name} ({dataset})")
    with progress() as bar:
        task = bar.add_task("sessions", total=None)
        run_rounds_benchmark(engine, sims, out, dataset, rounds=rounds,
                             progress=lambda i, n: bar.update(task, completed=i, total=n))
    console.print((out / f"rounds_{dataset}.md").read_text())
    console.print(f"wrote {out / f'rounds_{dataset}.md'}, .json and .png")


@benchmark_app.command("requests")
def benchmark_requests(
    run: Annotated[Optional[Path], typer.Option(help="trained run directory (default: the demo's)")] = None,
    out: Annotated[Path, typer.Option(help="folder for requests.md and requests.json")] = Path("docs/results"),
    n: Annotated[int, typer.Option(min=1, help="generated requests (over movies held out of pretraining)")] = 500,
    seed: Annotated[int, typer.Option(help="seed of the generated requests (choose settings on another one)")] = 0,
    catalog: Annotated[str, typer.Option(help="graph (its candidates), full (plus --movies) or both")] = "both",
    movies: Annotated[str, typer.Option(help="the prepared MovieLens dataset that extends the full catalog")]
    = "movielens-32m",
    compare: Annotated[Optional[Path], typer.Option(help="a second run of the same graph (e.g. without "
                                                          "pretraining) whose model gets rows beside ours")] = None,
) -> None:
    """Requests with checkable facts (genres, years, people, tags, negations, "like X"): constraint precision@10,
    negation violations@10 and NDCG@10 of our model and the baselines, generated and 30 hand-written."""
    from qamrec.data.request_facts import MovieTruth
    from qamrec.eval.requests import pretraining_label, run_requests_benchmark
    from qamrec.io import read_json
    from qamrec.serve.catalog import movielens_catalog

    if catalog not in ("graph", "full", "both"):
        raise QamrecError(f"--catalog {catalog!r}: use graph, full or both")
    c = cfg()
    engine = load_run_engine(run)
    models = {"ours": f"{engine.name}, " + pretraining_label(read_json(run_or_default(run) / "metrics.json"))}
    other = None
    if compare is not None:
        label = pretraining_label(read_json(compare / "metrics.json"))
        label = "not pretrained" if label.startswith("without") else "pretrained"
        other = (label, load_run_engine(compare))
        models[f"ours ({label})"] = f"{other[1].name}, " + pretraining_label(read_json(compare / "metrics.json"))
    truth = MovieTruth.from_prepared(c.prepared_dir)
    extension = None
    if catalog != "graph":
        if not (c.prepared_dir / movies / "MANIFEST.json").exists():
            raise QamrecError(f"--movies {movies}: not prepared in {c.home}; run `qamrec data prepare {movies}`")
        with console.status(f"embedding the {movies} titles (cached after the first run)"):
            extension = movielens_catalog(c, movies)
    run_requests_benchmark(engine, truth, out, n=n, seed=seed, catalog=catalog, extension=extension,
                           dtype=c.serve.item_dtype, rank=c.serve.index_rank, extension_name=movies,
                           log=lambda m: console.print(m, markup=False, highlight=False), models=models,
                           compare=other)
    console.print((out / "requests.md").read_text(), markup=False, highlight=False)
    console.print(f"wrote {out / 'requests.md'} and .json")


@benchmark_app.command("sequential")
def benchmark_sequential(
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the per-model results here")] = None,
    out: Annotated[Path, typer.Option(help="folder for sequential_ml100k.md/.json and the modality plot")] = Path("bench"),
    seed: Annotated[int, typer.Option(help="seed of the models, batches and sampled negatives")] = 0,
    epochs: Annotated[int, typer.Option(min=1, help="at most this many SASRec epochs (early stopping)")] = 60,
    mixture_epochs: Annotated[int, typer.Option(min=1, help="at most this many mixture epochs after SASRec")] = 8,
    model: Annotated[Optional[list[str]], typer.Option(help="popularity, sasrec, sasrec+modalities (repeatable)")] = None,
    lr: Annotated[float, typer.Option(help="Adam learning rate")] = 3e-3,
    dim: Annotated[int, typer.Option(help="hidden size")] = 64,
    dropout: Annotated[float, typer.Option(help="dropout")] = 0.2,
    loss: Annotated[str, typer.Option(help="ce (softmax over all items) or bce (one sampled negative)")] = "ce",
) -> None:
    """Popularity, SASRec and SASRec + modality mixture on MovieLens-100K: leave-one-out, full ranking."""
    from qamrec.eval.sequential import FULL_KEYS, PUBLISHED_SEQUENTIAL, SAMPLED_KEYS
    from qamrec.eval.sequential_benchmark import SeqTrainConfig, run_sequential_benchmark
    from qamrec.io import atomic_write_json

    if loss not in ("ce", "bce"):
        raise QamrecError(f"--loss {loss!r}: use ce or bce")
    known = ("popularity", "sasrec", "sasrec+modalities")
    if unknown := [m for m in model or [] if m not in known]:
        raise QamrecError(f"unknown model(s) {unknown} (known: {', '.join(known)})")
    tc = SeqTrainConfig(seed=seed, epochs=epochs, mixture_epochs=mixture_epochs, lr=lr, dim=dim, dropout=dropout,
                        loss=loss)
    rows = run_sequential_benchmark(cfg(), out, tc, models=[m for m in known if not model or m in model],
                                    log=lambda m: console.print(m, markup=False, highlight=False))
    t = Table("model", *FULL_KEYS, "s.hr@10", "s.ndcg@10", "source",
              title="MovieLens-100K, leave-one-out, full ranking (history removed); s.*: sampled, 100 negatives")
    for r in rows:
        t.add_row(r["model"], *(f"{r[k]:.4f}" for k in (*FULL_KEYS, *SAMPLED_KEYS)), f"seed {seed}")
    for name, m in PUBLISHED_SEQUENTIAL.items():
        t.add_row(name, *(f"{m[k]:.4f}" for k in FULL_KEYS), "-", "-", "MSMRec T4")
    console.print(t)
    if json_out:
        atomic_write_json(json_out, rows)
    console.print(f"wrote {out / 'sequential_ml100k.md'}, .json" + (" and sequential_modality_groups.png" if any(
        "modality_weights_by_group" in r for r in rows) else ""))


@benchmark_app.command("graph-probe")
def benchmark_graph_probe(
    run: Annotated[Path, typer.Option(help="a trained qamrec run directory")],
    out: Annotated[Path, typer.Option(help="folder for graph_probe_<dataset>.{md,json}")] = Path("bench"),
    on: Annotated[str, typer.Option(help="dev (the run's early-stopping examples) or test (its test examples)")]
    = "dev",
    new_movies_only: Annotated[bool, typer.Option(help="only the answers scored as movies outside the graph")]
    = False,
) -> None:
    """What the trained GAT and pooling use: relations removed at inference, attention entropy, message share,
    gradient norms per relation, pooling replaced by a mean, answers scored as movies outside the graph."""
    from qamrec.config import saved_config
    from qamrec.data.crs import load_crs
    from qamrec.eval.graph_probe import probe_markdown, probe_model
    from qamrec.io import atomic_write_json, atomic_write_text
    from qamrec.models.qamrec import QAMRec
    from qamrec.train.run import load_run

    if on not in ("dev", "test"):
        raise QamrecError(f"--on {on!r}: use dev or test")
    c = cfg()
    model, graph, saved = load_run(run, c)
    if not isinstance(model, QAMRec):
        raise QamrecError(f"{run}: the probe reads a qamrec run, not {model.name}")
    dataset = saved["dataset"]
    if on == "dev":
        examples = load_crs(dataset, saved_config(saved, c.home)).dev
    else:
        examples = _run_test_examples(run, dataset, graph)[0]
    r = probe_model(model, examples, graph.meta["item_ids"], new_movies_only) | {"run": str(run), "dataset": dataset,
                                                                                  "on": on}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"graph_probe_{dataset}.json", r)
    md = probe_markdown(r, f"Graph probe: {dataset}, {on} examples of `{run.name}`")
    atomic_write_text(out / f"graph_probe_{dataset}.md", md)
    console.print(md, markup=False, highlight=False)


@benchmark_app.command("conversation")
def benchmark_conversation(
    dataset: Annotated[str, typer.Option(help="redial or inspired (its validation file)")] = "redial",
    run: Annotated[Optional[Path], typer.Option(help="trained run directory of that dataset (default: the demo's)")]
    = None,
    out: Annotated[Path, typer.Option(help="folder for conversation_<dataset>.md and .json")] = Path("docs/results"),
    limit: Annotated[int, typer.Option(min=0, help="only the first N recommender turns (0: all)")] = 0,
) -> None:
    """Our replies on each recommender turn of the validation file (UniCRS protocol): BLEU-2/3, ROUGE-2/L,
    Distinct-2/3/4, item ratio beside MSCRS's Table 3; faithfulness of the stated facts; repetition."""
    from qamrec.eval.conversation import run_conversation_benchmark

    if dataset not in ("redial", "inspired"):
        raise QamrecError(f"--dataset {dataset!r}: use redial or inspired")
    engine = load_run_engine(run)
    if engine.dataset != dataset:
        raise QamrecError(f"{run_or_default(run)} is a {engine.dataset} run: give --run a {dataset} run")
    with progress() as bar:
        task = bar.add_task("turns", total=None)
        r = run_conversation_benchmark(engine, engine.config or cfg(), dataset, out, limit=limit,
                                       progress=lambda i, n: bar.update(task, completed=i, total=n))
    m = r["metrics"]
    console.print(f"BLEU-2 {m['bleu@2']:.3f}  BLEU-3 {m['bleu@3']:.3f}  ROUGE-2 {m['rouge@2']:.3f}  "
                  f"ROUGE-L {m['rouge@L']:.3f}  Distinct-2/3/4 {m['dist@2']:.3f} / {m['dist@3']:.3f} / "
                  f"{m['dist@4']:.3f}  item ratio {m['item_ratio']:.3f} (on recommending turns "
                  f"{r['item_ratio_on_recommending_turns']:.3f}); faithfulness {r['faithfulness']['rate']:.4f} over "
                  f"{r['faithfulness']['checked']:,} facts; repeated replies {r['repeated_replies']:.4f}",
                  highlight=False)
    console.print(f"wrote {out / f'conversation_{dataset}.md'} and .json")
