"""``qamrec text finetune``: the sentence encoder fine-tuned on a CRS dataset's training answers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qamrec.cli.common import cfg, console, err_console, training_threads

__all__ = ["text_app"]

text_app = typer.Typer(help="The text encoder: fine-tune it on a dataset.", no_args_is_help=True)


@text_app.command("finetune")
def text_finetune(
    out: Annotated[Path, typer.Option(help="folder to write the fine-tuned sentence-transformers model to; use it "
                                           "with --set features.text_model=OUT")],
    dataset: Annotated[str, typer.Option(help="CRS dataset whose training answers to learn: redial or "
                                              "inspired")] = "redial",
    seeds: Annotated[str, typer.Option(help="comma-separated seeds whose training splits all hold each pair used "
                                            "(default: the config's seed)")] = "",
    steps: Annotated[int, typer.Option(min=1, help="batches to train on (at most --epochs passes)")] = 300,
    epochs: Annotated[float, typer.Option(min=0.0, help="passes over the pairs, at most")] = 1.0,
    batch_size: Annotated[int, typer.Option(min=2, help="pairs per batch (in-batch negatives)")] = 32,
    lr: Annotated[float, typer.Option(min=0.0, help="AdamW learning rate")] = 3e-5,
    max_seq_length: Annotated[int, typer.Option(min=0, help="tokens read of each text, here and in every later "
                                                            "query (0: the base model's own)")] = 128,
) -> None:
    """Fine-tune ``features.text_model`` so a conversation embeds near the text of the movie it was answered
    with (in-batch contrastive loss); the graph's movie texts and the queries are then embedded by it."""
    import json

    from qamrec.train.text_finetune import finetune_pairs, finetune_text_encoder

    c = cfg()
    training_threads(c)
    seed_list = [int(s) for s in seeds.split(",") if s.strip()] or [c.seed]
    with console.status("loading the training pairs") as status:
        pairs = finetune_pairs(dataset, c, seed_list)
        err_console.print(f"{len(pairs.contexts):,} training pairs from {pairs.n_dialogues:,} dialogues "
                          f"(training under seeds {', '.join(map(str, seed_list))})", highlight=False)
        info = finetune_text_encoder(pairs, out, c.features.text_model, steps=steps, batch_size=batch_size, lr=lr,
                                     seed=c.seed, max_epochs=epochs, max_seq_length=max_seq_length or None,
                                     log=lambda m: (status.update(m), err_console.print(m)))
    console.print(json.dumps(info))
    console.print(f"fine-tuned encoder: {out} (use: qamrec --set features.text_model={out} ...)")
