"""``producer train``, ``run`` and ``model list|show|evaluate``: training runs and the models
they register."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from common.params import Precision, TrainOn
from common.schemas import RunProgress

from producer import views
from producer.backend import RunQueued, Trained, TrainResult
from producer.options import (
    JsonOpt,
    WaitOpt,
    backend,
    fail,
    handles_errors,
    settings,
    store,
)

model_app = typer.Typer(help="List, inspect and evaluate trained models.", no_args_is_help=True)


@handles_errors
def train(
    corpus: Annotated[str, typer.Option(help="Imported corpus to train on.")] = "oneills",
    preset: Annotated[
        str,
        typer.Option(
            help="Model preset: seed (the original architecture, trained with 1/5 of the "
            "original recipe's compute; for a GPU), original (the recipe itself), small (a "
            "CPU, minutes) or tiny (tests); see the README's presets table."
        ),
    ] = "small",
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Epochs (default: the preset's).")
    ] = None,
    window_step: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Chars between training windows; the original recipe uses 10 "
            "(each char seen 10x per epoch), equal to the window length means "
            "each char once.",
        ),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Windows per step.")] = None,
    learning_rate: Annotated[
        float | None, typer.Option(min=0.0, help="Adam learning rate (default: the preset's).")
    ] = None,
    stateful: Annotated[
        bool | None,
        typer.Option(
            "--stateful/--stateless",
            help="Carry the LSTM state from one window to the next of the same text stream "
            "(truncated back-propagation through time); default: the preset's.",
        ),
    ] = None,
    train_on: Annotated[
        TrainOn | None,
        typer.Option(
            help="windows: windows of the preset's length cut from the corpus, each from a "
            "zero state; tunes: whole tunes from X: to their end, each from a zero state, as "
            "the sampler runs them (--batch-size tunes of similar length a step); streams: "
            "whole tunes in --batch-size parallel streams, state carried window to window "
            "within a tune, zeroed at each tune start; default: the preset's (windows, "
            "measured best: README).",
        ),
    ] = None,
    precision: Annotated[
        Precision | None,
        typer.Option(
            help="auto (mixed precision on a GPU, float32 on a CPU: the measured rule in "
            "common/lstm/precision.py), float32, bfloat16 or mixed_float16; default: the preset's. "
            "Resolved on the machine that trains and recorded in the model record.",
        ),
    ] = None,
    transpose_copies: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=6,
            help="Also train on N copies of each tune in other keys the corpus uses (N+1 "
            "times the chars an epoch); default: the preset's (small: 1; measured in "
            "docs/training.md#key-transposition).",
        ),
    ] = None,
    max_train_chars: Annotated[
        int | None, typer.Option(min=1000, help="Train on the first N chars only (quick runs).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and shuffling.")] = 0,
    resume: Annotated[
        str | None, typer.Option(help="Continue a killed or cancelled run from its checkpoint.")
    ] = None,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a model (checkpoint every epoch) and register it.

    Distributed mode: enqueue the run on the gpu queue and print its run id.
    """
    from common.schemas import TrainSpec

    spec = TrainSpec(
        corpus=corpus,
        preset=preset,
        epochs=epochs,
        window_step=window_step,
        batch_size=batch_size,
        learning_rate=learning_rate,
        stateful=stateful,
        train_on=train_on,
        precision=precision,
        transpose_copies=transpose_copies,
        max_train_chars=max_train_chars,
        seed=seed,
    )
    with views.progress_bar(transient=True) as progress:
        result = backend().train(
            spec,
            resume=resume,
            wait=wait,
            observer=views.TrainingBar(progress),
            on_run=None if as_json else views.RunBar(progress).update,
        )
    show_trained(result, as_json)


def show_trained(result: TrainResult, as_json: bool) -> None:
    """Print what `train` did: the registered model, the queued run or the followed run."""
    if isinstance(result, Trained):
        record = result.model
        if as_json:
            views.print_json(record)
            return
        views.console.print(
            f"model [bold]{record.id}[/] ({record.preset} on {record.corpus}, {record.epochs} "
            f"epochs, {record.train_seconds:.0f} s): held-out "
            f"{views.fmt_float(record.valid_bits_per_char)} bits/char over whole tunes"
        )
    elif isinstance(result, RunQueued):
        run = result.run
        if as_json:
            views.print_json({"run_id": run.id, "status": run.status})
        else:
            views.console.print(run.id, highlight=False)
            views.err_console.print(
                f"training run queued; follow it with `producer run {run.id} --wait`"
            )
    else:
        show_run_end(result.run, as_json)


def show_run_end(run: RunProgress, as_json: bool) -> None:
    """A followed run's end; a run that did not finish is an error (exit 1)."""
    if as_json:
        views.print_json(run)
    elif run.status == "done":
        views.console.print(
            f"run {run.id}: model [bold]{run.model_id}[/] ({run.epochs_done} epochs, held-out "
            f"{views.fmt_float(run.val_bits_per_char)} bits/char)"
        )
    if run.status != "done":
        raise fail(f"training run {run.id} {run.status}: {run.error or 'see the worker log'}", 1)


@handles_errors
def run_status(
    run_id: Annotated[str, typer.Argument(help="Training run id (from `producer train`).")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run to its end.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Distributed mode: show a training run's progress (epoch, step, loss) or follow it."""
    b = backend()
    if wait:
        if as_json:
            run = b.follow_run(run_id, lambda _run: None)
        else:
            with views.progress_bar(transient=True) as progress:
                run = b.follow_run(run_id, views.RunBar(progress).update)
        show_run_end(run, as_json)
        return
    run = b.get_run(run_id)
    if as_json:
        views.print_json(run)
        return
    views.show_run(run)


@model_app.command("list")
@handles_errors
def model_list(as_json: JsonOpt = False) -> None:
    """List registered models, newest first."""
    from common.lstm.registry import list_models

    models = list_models(store())
    if as_json:
        views.print_json(models)
        return
    views.table(
        "Models (times UTC)",
        ["id", "preset", "corpus", "epochs", "held-out bits/char", "created"],
        [
            (m.short_id, m.preset, m.corpus, m.epochs, views.fmt_float(m.valid_bits_per_char),
             views.when(m.created_at))
            for m in models
        ],
    )  # fmt: skip


@model_app.command("show")
@handles_errors
def model_show(
    model: Annotated[str, typer.Argument(help="Model id, unique prefix or 'latest'.")] = "latest",
) -> None:
    """Print a model's full record as JSON."""
    from common.lstm.registry import resolve_model

    views.print_json(resolve_model(store(), model))


@model_app.command("evaluate")
@handles_errors
def model_evaluate(
    model: Annotated[str, typer.Argument(help="Model id, unique prefix or 'latest'.")],
    file: Annotated[Path, typer.Option(help="ABC file to score.")],
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Score the file's tunes as written, without the cleaning a corpus import "
            "applies (comments, directives, duplicates and tunes without M:/K: removed).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Bits/char of a model on the tunes of an ABC file, each tune scored whole as the sampler
    runs it (zero state at X:, state carried to the tune's end); unknown characters are counted
    and skipped. The zero-state 100-char windowed score is shown for comparison."""
    from common.abc.corpus import read_abc_file
    from common.errors import NotFoundError

    if not file.exists():
        raise NotFoundError(f"no file {file}")
    text = read_abc_file(file)  # before TensorFlow loads: a bad path is one quick line

    from common.lstm.evaluation import evaluate_abc
    from common.lstm.network import load_registered

    record, keras_model, vocab = load_registered(store(), model, settings().cache_path)
    result = evaluate_abc(keras_model, vocab, text, seq_len=record.seq_len, raw=raw)
    if as_json:
        views.print_json({"model": record.id, "file": str(file), **result.to_dict()})
        return
    views.console.print(
        f"{file}: {result.bits_per_char:.3f} bits/char over {result.tunes} whole tunes "
        f"({result.chars:,} chars{'' if raw else ', cleaned as on import'}; "
        f"{result.window_bits_per_char:.3f} over {record.seq_len}-char windows; "
        f"{result.unknown_chars} chars outside the model's vocabulary skipped)"
    )


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command("run")(run_status)
    app.add_typer(model_app, name="model")
