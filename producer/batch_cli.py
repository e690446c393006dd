"""Batch commands: ``submit-batch``, ``status``, ``list``, ``fetch``, ``url``, ``cancel``,
``retry`` and ``dead-letter``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from common.formats import parse_formats
from common.params import (
    DEFAULT_AUDIO,
    DEFAULT_FORM,
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_TRIES,
    DEFAULT_TEMPERATURE,
    DEFAULT_VALID_ONLY,
    Precision,
)

from producer import views
from producer.backend import Followed, Queued, Ran, Submitted
from producer.options import (
    DEFAULT_FORMATS_OPT,
    DEFAULT_INSTRUMENT_OPT,
    AudioOpt,
    FormatsOpt,
    FormOpt,
    InstrumentOpt,
    JsonOpt,
    MaxCharsOpt,
    MaxTriesOpt,
    SeedOpt,
    TemperatureOpt,
    TopKOpt,
    ValidOnlyOpt,
    WaitOpt,
    backend,
    fail,
    handles_errors,
    job_context,
    settings,
    store,
)


@handles_errors
def submit_batch(
    count: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Number of tunes (1 to 1,000,000).")
    ] = 20,
    model: Annotated[str, typer.Option(help="Model id, unique prefix or 'latest'.")] = "latest",
    temperature: TemperatureOpt = DEFAULT_TEMPERATURE,
    top_k: TopKOpt = 0,
    seed: SeedOpt = 0,
    primer: Annotated[str | None, typer.Option(help="Text every tune starts with.")] = None,
    meter: Annotated[
        str | None, typer.Option(help="Prime tunes with this meter, e.g. 6/8.")
    ] = None,
    key: Annotated[
        str | None, typer.Option(help="Prime tunes with this key, e.g. D or Ador.")
    ] = None,
    max_chars: MaxCharsOpt = DEFAULT_MAX_CHARS,
    valid_only: ValidOnlyOpt = DEFAULT_VALID_ONLY,
    max_tries: MaxTriesOpt = DEFAULT_MAX_TRIES,
    formats: FormatsOpt = DEFAULT_FORMATS_OPT,
    audio: AudioOpt = DEFAULT_AUDIO,
    instrument: InstrumentOpt = DEFAULT_INSTRUMENT_OPT,
    precision: Annotated[
        Precision,
        typer.Option(
            help="Sampler matmuls: auto (bfloat16 where the CPU/GPU has it, else float32), "
            "float32, bfloat16 or mixed_float16. Tunes may differ between precisions.",
        ),
    ] = Precision.AUTO,
    bar_tracker: Annotated[
        bool,
        typer.Option(
            "--bar-tracker/--no-bar-tracker",
            help="Mask sampling so every bar lasts what the meter says (pickups allowed).",
        ),
    ] = True,
    form: FormOpt = DEFAULT_FORM,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate and render a batch of tunes; prints the batch id and where the files are.

    Distributed mode: record the batch, enqueue its chunks and print the batch id at once.
    """
    from common.abc.notation import build_primer
    from common.lstm.registry import resolve_model
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
        formats=parse_formats(formats),
        audio=audio,
        instrument=instrument,
        chunk_size=s.chunk_size,
        precision=precision,
        bar_tracker=bar_tracker,
        form=form,
    )
    with views.stage_progress(not as_json) as bars:
        result = backend().submit_batch(
            spec,
            wait=wait,
            progress=bars,
            on_created=lambda b: views.err_console.print(f"batch [bold]{b.id}[/]"),
        )
    show_submitted(result, as_json)


def show_submitted(result: Submitted, as_json: bool) -> None:
    """Print what `submit-batch` did: a batch run here, queued, or queued and followed."""
    if isinstance(result, Queued):
        spec = result.spec
        if as_json:
            views.print_json({"batch_id": result.batch.id, "count": spec.count,
                              "chunks": spec.chunks})  # fmt: skip
            return
        views.console.print(result.batch.id, highlight=False)
        views.err_console.print(
            f"{spec.count} tunes queued in {spec.chunks} chunks; follow with "
            f"`producer status {result.batch.id} --watch`"
        )
    elif isinstance(result, Followed):
        final = result.progress
        counts, batch_id = final.counts, final.batch.id
        if as_json:
            views.print_json({"batch_id": batch_id, "counts": counts,
                              "manifest": final.batch.manifest_key})  # fmt: skip
            return
        views.console.print(
            f"batch [bold]{batch_id}[/]: {counts.get('done', 0)} done, "
            f"{counts.get('failed', 0)} failed, {counts.get('cancelled', 0)} cancelled; "
            f"manifest {final.batch.manifest_key}"
        )
    else:
        _show_ran(result, as_json)


def _show_ran(result: Ran, as_json: bool) -> None:
    manifest, folder = result.manifest, result.folder
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


@handles_errors
def list_batches(as_json: JsonOpt = False) -> None:
    """List batches, newest first."""
    ctx = job_context()
    found = ctx.records.list_batches()
    if as_json:
        views.print_json(found)
        return
    views.batch_list([(b, ctx.records.counts(b.id)) for b in found])


@handles_errors
def fetch(
    batch: Annotated[str, typer.Argument(help="Batch id.")],
    to: Annotated[Path, typer.Option(help="Folder to download into (a subfolder per batch).")],
    formats: Annotated[str | None, typer.Option(help="Only these formats, e.g. abc,mid.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Download a finished batch's files, verifying every SHA-256; re-running resumes."""
    from common.jobs.fetch import fetch_batch

    wanted = set(parse_formats(formats)) if formats else None
    result = fetch_batch(store(), batch, to, formats=wanted)
    if as_json:
        views.print_json({"directory": str(result.directory), "downloaded": result.downloaded,
                          "skipped": result.skipped, "bytes": result.bytes})  # fmt: skip
        return
    views.console.print(
        f"{result.directory}: {result.downloaded} files downloaded, {result.skipped} already "
        f"there ({result.bytes / 1e6:.1f} MB, all hashes verified)"
    )


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
    """Print download URLs: presigned S3 URLs for a bucket, file:// on local disk.

    With a batch only: the manifest's, then every file of every tune (``t000003.ogg``).
    """
    from common.errors import NotFoundError
    from common.jobs.batches import manifest_key
    from common.jobs.fetch import read_manifest
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
        keys += [
            (f"{t.tune_id}.{f.format}", f.key)
            for t in read_manifest(ctx.store, batch).tunes
            for f in t.files
        ]
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


@handles_errors
def cancel(batch: Annotated[str, typer.Argument(help="Batch id.")]) -> None:
    """Cancel a batch: queued tunes are skipped, running generation stops at its next step."""
    outcome = backend().cancel(batch)
    views.console.print(views.cancel_line(outcome), highlight=False, soft_wrap=True)


@handles_errors
def retry(
    batch: Annotated[str, typer.Argument(help="Batch id.")],
    failed: Annotated[bool, typer.Option("--failed", help="Retry the failed tunes.")] = False,
) -> None:
    """Run the failed tunes of a batch again (render only when their ABC exists)."""
    if not failed:
        raise fail("say what to retry: --failed", 2)
    with views.stage_progress() as bars:
        result = backend().retry_failed(
            batch,
            progress=bars,
            on_start=lambda started: views.console.print(views.retrying_line(started)),
        )
    views.console.print(views.retry_line(result))


@handles_errors
def dead_letter(
    limit: Annotated[int, typer.Option(min=1, help="Show the newest N entries.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Distributed mode: jobs given up on (killed their worker too often, or failed for good)."""
    entries = backend().dead_letters(limit)
    if as_json:
        views.print_json(entries)
        return
    views.table(
        f"Dead-letter list ({len(entries)} shown, oldest first)",
        ["when", "task", "args", "attempts", "reason", "error"],
        [(f"{e.at:%Y-%m-%d %H:%M:%S}", e.task, " ".join(str(a) for a in e.args), e.attempts,
          e.reason, e.error) for e in entries],
    )  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("submit-batch")(submit_batch)
    app.command()(status)
    app.command("list")(list_batches)
    app.command()(fetch)
    app.command()(url)
    app.command()(cancel)
    app.command()(retry)
    app.command("dead-letter")(dead_letter)
