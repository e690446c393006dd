"""``producer``: import corpora, train models, submit batches, follow them and get the files back.

With ``TUNEBATCH_BROKER_URL`` unset every command runs in this process on local disk (embedded
mode). With it set (distributed mode) the commands write job records to Redis and enqueue work for
the `worker gpu` / `worker cpu` processes by task name (`producer.client`), and return at once;
``--wait`` follows the work to its end. Either way the heavy modules (TensorFlow) are imported
only inside the commands that need them, so ``producer --help`` and the read commands stay
instant. Every error a user can cause ends as one line on stderr and a non-zero exit code, never
a traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from common.errors import TunebatchError
from common.schemas import TrainOn
from common.settings import Settings
from pydantic import ValidationError

from producer import views

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="producer",
    help="tunebatch: generate folk tunes in batches with a character-level LSTM.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
corpus_app = typer.Typer(help="Import and list corpora.", no_args_is_help=True)
model_app = typer.Typer(help="List, inspect and evaluate trained models.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")
app.add_typer(model_app, name="model")
schedule_app = typer.Typer(
    help="Scheduled dataset-wide generation (distributed mode: Celery beat + redbeat).",
    no_args_is_help=True,
)
app.add_typer(schedule_app, name="schedule")


class PrecisionChoice(StrEnum):
    """Choices of --precision (see common.lstm.precision)."""

    AUTO = "auto"
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    MIXED_FLOAT16 = "mixed_float16"


# Options that submit-batch and schedule add share.
MaxCharsOpt = Annotated[int, typer.Option(min=16, help="Longest tune in chars.")]
ValidOnlyOpt = Annotated[
    bool,
    typer.Option(
        "--valid-only/--any",
        help="The gate: resample until abc2midi accepts each tune, its bars fit the meter and "
        "it is no near-copy of a training tune; --any keeps the first try.",
    ),
]
MaxTriesOpt = Annotated[int, typer.Option(min=1, help="Samples per tune with --valid-only.")]


def _formats_given(text: str) -> str:
    """--formats names at least one format: an empty one is a mistake, not "abc only"."""
    if not [part for part in text.split(",") if part.strip()]:
        raise typer.BadParameter(
            "no format given; name at least one of abc,mid,wav,svg,pdf,ogg,mp3,flac "
            "(abc is always included: --formats abc gives the tune text only)"
        )
    return text


FormatsOpt = Annotated[
    str,
    typer.Option(help="Comma list of abc,mid,wav,svg,pdf,ogg,mp3,flac.", callback=_formats_given),
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    views.err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handles_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into one line and an exit code; a traceback is for bugs only."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except TunebatchError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise fail(f"invalid {where}: {first['msg']}", 2) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


@functools.cache
def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise fail(f"bad TUNEBATCH_ setting {first['loc']}: {first['msg']}", 2) from None


def local_context() -> Any:
    """The embedded-mode job context (local disk or the configured bucket)."""
    from common.jobs.batches import Context
    from common.state.local import LocalRecords
    from common.store.open import make_store

    s = settings()
    return Context(settings=s, store=make_store(s), records=LocalRecords(s.data_dir / "records"))


def distributed() -> bool:
    return settings().distributed


def client() -> Any:
    """The distributed-mode client (Redis records + enqueue by task name)."""
    from producer.client import Client

    return Client(settings())


def job_context() -> Any:
    """The records and store of whichever mode is configured."""
    return client().context if distributed() else local_context()


def store() -> Any:
    from common.store.open import make_store

    return make_store(settings())


# --- corpus -------------------------------------------------------------------------------
@corpus_app.command("list")
@handles_errors
def corpus_list(as_json: JsonOpt = False) -> None:
    """List the bundled collections and the corpora imported so far."""
    from common.abc.corpus import BUNDLED, list_corpora

    imported = list_corpora(store())
    if as_json:
        views.print_json(
            {
                "bundled": {k: v[1] for k, v in BUNDLED.items()},
                "imported": [r.model_dump(mode="json") for r in imported],
            }
        )
        return
    views.table("Bundled collections (music21)", ["name", "description"],
                [(k, v[1]) for k, v in BUNDLED.items()])  # fmt: skip
    views.table(
        "Imported corpora",
        ["name", "train tunes", "valid tunes", "train chars", "vocab", "valid-only", "source"],
        [
            (r.name, r.train_tunes, r.valid_tunes, r.train_chars, r.vocab_size, r.valid_only,
             r.source)
            for r in imported
        ],
    )  # fmt: skip


@corpus_app.command("import")
@handles_errors
def corpus_import(
    source: Annotated[
        str,
        typer.Argument(help="Bundled name (oneills, ryans, airds, ...) or a .abc file or folder."),
    ],
    name: Annotated[str | None, typer.Option(help="Corpus name (default from the source).")] = None,
    valid_only: Annotated[
        bool, typer.Option("--valid-only", help="Keep only tunes abc2midi converts cleanly.")
    ] = False,
    rhythm_only: Annotated[
        bool, typer.Option("--rhythm-only", help="'all': keep only tunes whose bars fit the meter.")
    ] = False,
    source_header: Annotated[
        bool, typer.Option("--source-header", help="'all': an S:<collection> line in each tune.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Split, clean, de-duplicate and store a corpus with a train/validation split.

    `all` imports every bundled collection into one corpus (see common.abc.combined).
    """
    from common.abc.corpus import import_corpus
    from common.render import pipeline as render

    s = settings()
    if source == "all" or rhythm_only or source_header:
        from producer.report import import_all_cli

        return import_all_cli(source, name, valid_only, rhythm_only, source_header, as_json)
    record = import_corpus(
        store(),
        source,
        name=name,
        valid_only=valid_only,
        is_valid=lambda tune: render.check_abc(tune, s).ok,
        workers=(os.cpu_count() or 1) * 2,
    )
    if as_json:
        views.print_json(record)
        return
    views.console.print(
        f"corpus [bold]{record.name}[/]: {record.tunes_found} tunes found in {record.files} "
        f"files; dropped {record.dropped_duplicates} duplicates, {record.dropped_unsafe} unsafe, "
        f"{record.dropped_missing_headers} without M:/K:, {record.dropped_invalid} rejected by "
        f"abc2midi; kept {record.train_tunes} train + {record.valid_tunes} validation tunes "
        f"({record.train_chars + record.valid_chars:,} chars, {record.vocab_size} symbols)"
    )
    if record.stripped_directives:
        dropped = ", ".join(f"{k} ({n})" for k, n in record.stripped_directives.items())
        views.console.print(f"stripped directives not on the allow-list: {dropped}")


# --- training -----------------------------------------------------------------------------
@app.command()
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
        PrecisionChoice | None,
        typer.Option(
            help="auto (mixed precision on a GPU, float32 on a CPU: the measured rule in "
            "common/lstm/precision.py), float32, bfloat16 or mixed_float16; default: the preset's. "
            "Resolved on the machine that trains and recorded in the model record.",
        ),
    ] = None,
    max_train_chars: Annotated[
        int | None, typer.Option(min=1000, help="Train on the first N chars only (quick runs).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and shuffling.")] = 0,
    resume: Annotated[
        str | None, typer.Option(help="Continue a killed or cancelled run from its checkpoint.")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="Distributed mode: follow the run to its end (embedded mode always does).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a model (checkpoint every epoch) and register it.

    Distributed mode: enqueue the run on the gpu queue and print its run id.
    """
    from common.schemas import TrainSpec, new_run_id

    spec = TrainSpec(
        corpus=corpus,
        preset=preset,
        epochs=epochs,
        window_step=window_step,
        batch_size=batch_size,
        learning_rate=learning_rate,
        stateful=stateful,
        train_on=train_on,
        precision=precision.value if precision else None,
        max_train_chars=max_train_chars,
        seed=seed,
    )
    if distributed():
        _train_distributed(spec, resume, wait, as_json)
        return
    from common.lstm.training import train as run_training

    run_id = resume or new_run_id()
    with views.progress_bar(transient=True) as progress:
        record = run_training(
            store(), spec, run_id, observer=views.TrainingBar(progress), resume=bool(resume)
        )
    if as_json:
        views.print_json(record)
        return
    views.console.print(
        f"model [bold]{record.id}[/] ({record.preset} on {record.corpus}, {record.epochs} "
        f"epochs, {record.train_seconds:.0f} s): validation "
        f"{views.fmt_float(record.valid_bits_per_char)} bits/char over whole tunes"
    )


def _train_distributed(spec: Any, resume: str | None, wait: bool, as_json: bool) -> None:
    c = client()
    run = c.train(spec, run_id=resume)
    if not wait:
        if as_json:
            views.print_json({"run_id": run.id, "status": run.status})
        else:
            views.console.print(run.id, highlight=False)
            views.err_console.print(
                f"training run queued; follow it with `producer run {run.id} --wait`"
            )
        return
    _follow_run(c, run.id, as_json)


def _follow_run(c: Any, run_id: str, as_json: bool) -> None:
    if as_json:
        run = c.follow_run(run_id, lambda _run: None)
    else:
        with views.progress_bar(transient=True) as progress:
            bar = views.RunBar(progress)
            run = c.follow_run(run_id, bar.update)
    if as_json:
        views.print_json(run)
    elif run.status == "done":
        views.console.print(
            f"run {run.id}: model [bold]{run.model_id}[/] ({run.epochs_done} epochs, validation "
            f"{views.fmt_float(run.val_bits_per_char)} bits/char)"
        )
    if run.status != "done":
        raise fail(f"training run {run.id} {run.status}: {run.error or 'see the worker log'}", 1)


@app.command("run")
@handles_errors
def run_status(
    run_id: Annotated[str, typer.Argument(help="Training run id (from `producer train`).")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run to its end.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Distributed mode: show a training run's progress (epoch, step, loss) or follow it."""
    c = _require_client("run")
    if wait:
        _follow_run(c, run_id, as_json)
        return
    run = c.records.get_run(run_id)
    if as_json:
        views.print_json(run)
        return
    views.show_run(run)


def _require_client(command: str) -> Any:
    if not distributed():
        raise fail(
            f"`producer {command}` needs distributed mode: set TUNEBATCH_BROKER_URL "
            "(see docs/distributed.md)",
            2,
        )
    return client()


# --- models -------------------------------------------------------------------------------
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
        "Models",
        ["id", "preset", "corpus", "epochs", "valid bits/char", "validity", "created"],
        [
            (m.short_id, m.preset, m.corpus, m.epochs, views.fmt_float(m.valid_bits_per_char),
             views.fmt_float(m.sample_validity, 2), f"{m.created_at:%Y-%m-%d %H:%M}")
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
    from common.lstm.evaluation import evaluate_abc
    from common.lstm.network import load_registered

    if not file.is_file():
        raise NotFoundError(f"no file {file}")
    text = read_abc_file(file)
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


# --- batches ------------------------------------------------------------------------------
@app.command("submit-batch")
@handles_errors
def submit_batch(
    count: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Number of tunes (1 to 1,000,000).")
    ] = 20,
    model: Annotated[str, typer.Option(help="Model id, unique prefix or 'latest'.")] = "latest",
    temperature: Annotated[
        float, typer.Option(min=0.0, help="0 = always the likeliest char.")
    ] = 1.0,
    top_k: Annotated[int, typer.Option(min=0, help="Sample among the k likeliest (0 = all).")] = 0,
    seed: Annotated[int, typer.Option(min=0, help="Same seed + model + params = same tunes.")] = 0,
    primer: Annotated[str | None, typer.Option(help="Text every tune starts with.")] = None,
    meter: Annotated[
        str | None, typer.Option(help="Prime tunes with this meter, e.g. 6/8.")
    ] = None,
    key: Annotated[
        str | None, typer.Option(help="Prime tunes with this key, e.g. D or Ador.")
    ] = None,
    max_chars: MaxCharsOpt = 1500,
    valid_only: ValidOnlyOpt = True,
    max_tries: MaxTriesOpt = 5,
    formats: FormatsOpt = "abc,mid,wav",
    precision: Annotated[
        PrecisionChoice,
        typer.Option(
            help="Sampler matmuls: auto (bfloat16 where the CPU/GPU has it, else float32), "
            "float32, bfloat16 or mixed_float16. Tunes may differ between precisions.",
        ),
    ] = PrecisionChoice.AUTO,
    bar_tracker: Annotated[
        bool,
        typer.Option(
            "--bar-tracker/--no-bar-tracker",
            help="Mask sampling so every bar lasts what the meter says (pickups allowed).",
        ),
    ] = True,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="Distributed mode: follow the batch to its end (embedded mode always does).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate and render a batch of tunes; prints the batch id and where the files are.

    Distributed mode: record the batch, enqueue its chunks and print the batch id at once.
    """
    from common.abc.notation import build_primer
    from common.lstm.registry import resolve_model
    from common.render import pipeline as render
    from common.schemas import BatchSpec

    s = settings()
    record = resolve_model(store(), model)
    spec = BatchSpec(
        count=count,
        model_id=record.id,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        max_chars=max_chars,
        primer=build_primer(primer, meter, key),
        valid_only=valid_only,
        max_tries=max_tries,
        formats=list(render.parse_formats(formats)),
        chunk_size=s.chunk_size,
        precision=precision.value,
        bar_tracker=bar_tracker,
    )
    if distributed():
        _submit_distributed(spec, wait, as_json)
        return
    from common.jobs.embedded import run_batch

    ctx = local_context()
    with views.stage_progress(not as_json) as bars:
        manifest = run_batch(
            ctx,
            spec,
            progress=bars,
            on_created=lambda b: views.err_console.print(f"batch [bold]{b.id}[/]"),
        )
    folder = ctx.store.local_path(f"batches/{manifest.batch_id}/manifest.json")
    if as_json:
        views.print_json({"batch_id": manifest.batch_id, "counts": manifest.counts,
                          "manifest": str(folder) if folder else None})  # fmt: skip
        return
    valid = sum(1 for t in manifest.tunes if t.valid)
    clean = sum(1 for t in manifest.tunes if t.valid and t.rhythm_ok)
    first = sum(1 for t in manifest.tunes if t.valid and t.rhythm_ok and t.tries == 1)
    views.console.print(
        f"batch [bold]{manifest.batch_id}[/]: {manifest.counts.get('done', 0)} done, "
        f"{manifest.counts.get('failed', 0)} failed; {valid}/{len(manifest.tunes)} pass "
        f"abc2midi's check, {clean} also the rhythm check ({first} on the first try); "
        f"`producer report {manifest.batch_id}` for more"
    )
    if folder is not None:
        views.console.print(f"files: {folder.parent}")


def _submit_distributed(spec: Any, wait: bool, as_json: bool) -> None:
    c = client()
    batch = c.submit_batch(spec)
    if not wait:
        if as_json:
            views.print_json({"batch_id": batch.id, "count": spec.count, "chunks": spec.chunks})
        else:
            views.console.print(batch.id, highlight=False)
            views.err_console.print(
                f"{spec.count} tunes queued in {spec.chunks} chunks; follow with "
                f"`producer status {batch.id} --watch`"
            )
        return
    if not as_json:
        views.err_console.print(f"batch [bold]{batch.id}[/]")
    with views.stage_progress(not as_json) as bars:
        final = c.follow(batch.id, views.batch_progress_callback(bars))
    counts = final.counts
    if as_json:
        views.print_json({"batch_id": batch.id, "counts": counts,
                          "manifest": final.batch.manifest_key})  # fmt: skip
        return
    views.console.print(
        f"batch [bold]{batch.id}[/]: {counts.get('done', 0)} done, {counts.get('failed', 0)} "
        f"failed, {counts.get('cancelled', 0)} cancelled; manifest {final.batch.manifest_key}"
    )


@app.command()
@handles_errors
def status(
    batch: Annotated[str, typer.Argument(help="Batch id.")],
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Follow the batch until it is finished: redrawn every second on a terminal, "
            "one line per change otherwise.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a batch: parameters, counts per status, failures."""
    ctx = job_context()
    if watch and not as_json:
        views.watch_batch(ctx.records, batch)
        return
    record = ctx.records.get_batch(batch)
    counts = ctx.records.counts(batch)
    tunes = ctx.records.tunes(batch)
    if as_json:
        views.print_json(views.batch_json(record, counts, tunes))
        return
    views.show_batch(record, counts, tunes)


@app.command("list")
@handles_errors
def list_batches(as_json: JsonOpt = False) -> None:
    """List batches, newest first."""
    ctx = job_context()
    found = ctx.records.list_batches()
    if as_json:
        views.print_json(found)
        return
    views.batch_list([(b, ctx.records.counts(b.id)) for b in found])


@app.command()
@handles_errors
def fetch(
    batch: Annotated[str, typer.Argument(help="Batch id.")],
    to: Annotated[Path, typer.Option(help="Folder to download into (a subfolder per batch).")],
    formats: Annotated[str | None, typer.Option(help="Only these formats, e.g. abc,mid.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Download a finished batch's files, verifying every SHA-256; re-running resumes."""
    from common.jobs.fetch import fetch_batch
    from common.render import pipeline as render

    wanted = set(render.parse_formats(formats)) if formats else None
    result = fetch_batch(store(), batch, to, formats=wanted)
    if as_json:
        views.print_json({"directory": str(result.directory), "downloaded": result.downloaded,
                          "skipped": result.skipped, "bytes": result.bytes})  # fmt: skip
        return
    views.console.print(
        f"{result.directory}: {result.downloaded} files downloaded, {result.skipped} already "
        f"there ({result.bytes / 1e6:.1f} MB, all hashes verified)"
    )


@app.command()
@handles_errors
def url(
    batch: Annotated[str, typer.Argument(help="Batch id.")],
    tune: Annotated[
        str | None, typer.Argument(help="Tune id (e.g. t000042); default: the manifest.")
    ] = None,
    expires: Annotated[
        str, typer.Option(help="Lifetime of the URL: seconds or 30m, 1h, 2d (at most 7d).")
    ] = "1h",
    as_json: JsonOpt = False,
) -> None:
    """Print download URLs: presigned S3 URLs for a bucket, file:// on local disk."""
    from common.errors import NotFoundError
    from common.jobs.batches import manifest_key
    from common.schemas import check_batch_id

    seconds = views.parse_duration(expires)
    ctx = job_context()
    check_batch_id(batch)
    if tune is None:
        keys = [("manifest", manifest_key(batch))]
        if not ctx.store.exists(keys[0][1]):
            raise NotFoundError(
                f"batch {batch} has no manifest yet (see `producer status {batch}`); "
                "name a tune to get its files"
            )
    else:
        record = ctx.records.get_tune(batch, tune)
        keys = [(f.format, f.key) for f in record.files]
        if not keys:
            raise NotFoundError(f"tune {tune} of batch {batch} has no files yet ({record.status})")
    urls = {name: ctx.store.url(key, seconds) for name, key in keys}
    if as_json:
        views.print_json(urls)
        return
    for name, link in urls.items():
        views.console.print(f"{name}\t{link}", highlight=False, soft_wrap=True)


@app.command()
@handles_errors
def cancel(batch: Annotated[str, typer.Argument(help="Batch id.")]) -> None:
    """Cancel a batch: queued tunes are skipped, running generation stops at its next step."""
    if distributed():
        outcome = client().cancel(batch)
    else:
        from common.jobs.batches import cancel_batch

        outcome = cancel_batch(local_context(), batch)
    views.console.print(views.cancel_line(outcome), highlight=False, soft_wrap=True)


@app.command()
@handles_errors
def retry(
    batch: Annotated[str, typer.Argument(help="Batch id.")],
    failed: Annotated[bool, typer.Option("--failed", help="Retry the failed tunes.")] = False,
) -> None:
    """Run the failed tunes of a batch again (render only when their ABC exists)."""
    if not failed:
        raise fail("say what to retry: --failed", 2)
    if distributed():
        work = client().retry_failed(batch)
        views.console.print(
            f"batch {batch}: {len(work['render'])} renders and {len(work['generate'])} "
            "generation chunks queued again"
        )
        return
    from common.jobs.batches import retry_failed
    from common.jobs.embedded import resume_batch

    ctx = local_context()
    work = retry_failed(ctx, batch)
    views.console.print(
        f"retrying {len(work['render'])} renders and {len(work['generate'])} generation chunks"
    )
    with views.stage_progress() as bars:
        manifest = resume_batch(ctx, batch, progress=bars)
    views.console.print(f"batch {batch}: {manifest.counts}")


@app.command("dead-letter")
@handles_errors
def dead_letter(
    limit: Annotated[int, typer.Option(min=1, help="Show the newest N entries.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Distributed mode: jobs given up on (killed their worker too often, or failed for good)."""
    c = _require_client("dead-letter")
    entries = c.dead_letters(limit)
    if as_json:
        views.print_json(entries)
        return
    views.table(
        f"Dead-letter list ({len(entries)} shown, oldest first)",
        ["when", "task", "args", "attempts", "reason", "error"],
        [(f"{e.at:%Y-%m-%d %H:%M:%S}", e.task, " ".join(str(a) for a in e.args), e.attempts,
          e.reason, e.error) for e in entries],
    )  # fmt: skip


# --- schedules ----------------------------------------------------------------------------
def _schedule_app() -> Any:
    """The Celery app whose Redis holds the schedules; schedules need distributed mode."""
    if not distributed():
        raise fail(
            "schedules need a broker: set TUNEBATCH_BROKER_URL to your Redis and run "
            "`celery -A worker.celery_app beat` (see docs/distributed.md)",
            2,
        )
    from worker.celery_app import make_app

    return make_app(settings())


def _when(t: Any, none: str = "-") -> str:
    """A schedule's time in UTC to the second (beat fires on the second, not the minute)."""
    from datetime import UTC

    return f"{t.astimezone(UTC):%Y-%m-%d %H:%M:%S}" if t else none


def _schedule_row(info: Any) -> tuple[Any, ...]:
    spec = info.spec
    return (spec.name, info.when, spec.corpus, spec.per_tune, spec.model[:12],
            "yes" if spec.retrain_if_changed else "no", _when(info.last_run_at, "never"),
            _when(info.next_run_at, "no run ahead"))  # fmt: skip


@schedule_app.command("add")
@handles_errors
def schedule_add(
    name: Annotated[str, typer.Argument(help="Schedule name (lowercase letters, digits, - _).")],
    cron: Annotated[
        str, typer.Option(help='Five cron fields in UTC, e.g. "0 3 * * *" (03:00 every day).')
    ],
    corpus: Annotated[str, typer.Option(help="Imported corpus whose every tune primes tunes.")],
    per_tune: Annotated[int, typer.Option(min=1, max=1000, help="New tunes per dataset tune.")] = 1,
    model: Annotated[
        str, typer.Option(help="Model id, unique prefix or 'latest' (the corpus's newest).")
    ] = "latest",
    retrain_if_changed: Annotated[
        bool,
        typer.Option(
            "--retrain-if-changed",
            help="Train a new model first (same preset) when the corpus changed since the "
            "latest model was trained on it.",
        ),
    ] = False,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature.")] = 1.0,
    top_k: Annotated[int, typer.Option(min=0, help="Sample among the k likeliest.")] = 0,
    seed: Annotated[
        int | None, typer.Option(min=0, help="Fixed seed (default: a new seed each time).")
    ] = None,
    max_chars: MaxCharsOpt = 1500,
    valid_only: ValidOnlyOpt = True,
    max_tries: MaxTriesOpt = 5,
    formats: FormatsOpt = "abc,mid,wav",
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a schedule of the same name.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a schedule: each time it fires, one batch with PER_TUNE tunes per dataset tune."""
    from common.jobs.schedules import ScheduleSpec
    from common.render import pipeline as render
    from worker import schedules

    spec = ScheduleSpec(
        name=name,
        cron=cron,
        corpus=corpus,
        per_tune=per_tune,
        model=model,
        retrain_if_changed=retrain_if_changed,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        max_chars=max_chars,
        valid_only=valid_only,
        max_tries=max_tries,
        formats=list(render.parse_formats(formats)),
    )
    schedules.check_spec(spec)  # a bad cron is one line before any connection
    celery_app = _schedule_app()
    from common.abc.corpus import corpus_record
    from common.lstm.registry import resolve_model

    corpus_record(store(), spec.corpus)  # fail now, not at 3 am on a worker
    resolve_model(store(), spec.model, corpus=spec.corpus if spec.model == "latest" else None)
    info = schedules.add_schedule(celery_app, spec, replace=replace)
    if as_json:
        views.print_json(info)
        return
    views.console.print(
        f"schedule [bold]{spec.name}[/] ({spec.cron} UTC): {spec.per_tune} tunes per tune of "
        f"{spec.corpus}; next run {_when(info.next_run_at)} UTC"
    )


@schedule_app.command("list")
@handles_errors
def schedule_list(as_json: JsonOpt = False) -> None:
    """List the schedules with their last and next run."""
    from worker import schedules

    infos = schedules.list_schedules(_schedule_app())
    if as_json:
        views.print_json(infos)
        return
    views.schedule_list([_schedule_row(info) for info in infos])


@schedule_app.command("remove")
@handles_errors
def schedule_remove(name: Annotated[str, typer.Argument(help="Schedule name.")]) -> None:
    """Remove a schedule (beat stops firing it at its next tick)."""
    from worker import schedules

    schedules.remove_schedule(_schedule_app(), name)
    views.console.print(f"schedule {name} removed")


@schedule_app.command("run-now")
@handles_errors
def schedule_run_now(
    name: Annotated[str, typer.Argument(help="Schedule name.")],
    as_json: JsonOpt = False,
) -> None:
    """Fire a schedule now (its timetable is unchanged); a cpu worker submits the batch."""
    from worker import schedules

    task_id = schedules.run_now(_schedule_app(), name)
    if as_json:
        views.print_json({"schedule": name, "task_id": task_id})
        return
    views.console.print(
        f"schedule {name} fired (task {task_id}); `producer list` shows its batch shortly"
    )


# gallery and tunebook: their own module (producer/gallery_cli.py).
from producer import gallery_cli  # noqa: E402

gallery_cli.register(app)

from producer.report import report_cli  # noqa: E402 - the command's own module

app.command("report")(handles_errors(report_cli))


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    app()


if __name__ == "__main__":
    main()
