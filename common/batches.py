"""The jobs of a batch as plain functions: create, generate a chunk, render a tune, finalize.

Celery tasks and the embedded runner call exactly these functions, so there is one code path to
test. Every function is idempotent — it reads the records first and skips work already done — and
ends each tune in exactly one final state (done, failed or cancelled). Tune ids are positions in
the batch and the random stream of a tune depends only on (seed, index, try), so a re-run rewrites
the same keys with the same bytes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from common import abc_notation, render
from common.errors import (
    CancelledError,
    InvalidInputError,
    NotFoundError,
    PermanentError,
    RenderError,
    ToolMissingError,
    TransientError,
)
from common.model_registry import resolve_model
from common.records import JobRecords
from common.schemas import (
    ArtifactFile,
    BatchRecord,
    BatchSpec,
    Manifest,
    ModelRecord,
    TuneRecord,
    TuneStatus,
    new_batch_id,
    now,
    tune_id,
)
from common.settings import Settings
from common.storage import ArtifactStore

if TYPE_CHECKING:
    from common.sampling import SampledTune, Sampler

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    "abc": "text/vnd.abc",
    "mid": "audio/midi",
    "wav": "audio/wav",
    "svg": "image/svg+xml",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "pdf": "application/pdf",
    "json": "application/json",
}


@dataclass
class Context:
    """What every job needs; built once per process from the settings."""

    settings: Settings
    store: ArtifactStore
    records: JobRecords
    _samplers: dict[tuple[str, str], tuple[ModelRecord, Sampler]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sampler(self, model_id: str, precision: str = "auto") -> tuple[ModelRecord, Sampler]:
        """The model's sampler, loaded (hash-checked) once per process and kept."""
        from common import precision as precisions
        from common.model import load_registered
        from common.sampling import Sampler

        resolved = precisions.resolve(precision)
        with self._lock:
            if (model_id, resolved) not in self._samplers:
                record, model, vocab = load_registered(
                    self.store, model_id, self.settings.cache_path
                )
                self._samplers.clear()  # one model at a time: a seed model is 100+ MB
                self._samplers[model_id, resolved] = (
                    record,
                    Sampler(
                        model,
                        vocab,
                        batch_size=self.settings.sample_batch_size,
                        steps_per_call=self.settings.steps_per_call,
                        precision=resolved,
                    ),
                )
            return self._samplers[model_id, resolved]


def artifact_key(batch_id: str, name: str) -> str:
    return f"batches/{batch_id}/{name}"


def tune_key(batch_id: str, tid: str, fmt: str) -> str:
    return artifact_key(batch_id, f"{tid}.{fmt}")


def create_batch(ctx: Context, spec: BatchSpec, *, batch_id: str | None = None) -> BatchRecord:
    """Record a new batch with every tune queued; the model must exist and fit the primers."""
    record = resolve_model(ctx.store, spec.model_id)
    chars = set(record.chars)
    for primer in [spec.primer, *(spec.primers or [])]:
        unknown = sorted(set(primer) - chars)
        if unknown:
            raise InvalidInputError(
                f"primer {primer!r} uses characters the model does not know: {''.join(unknown)!r}"
            )
    if spec.primers is not None and len(spec.primers) != spec.count:
        raise InvalidInputError(f"{len(spec.primers)} primers given for {spec.count} tunes")
    render.parse_formats(",".join(spec.formats))
    batch = BatchRecord(id=batch_id or new_batch_id(), spec=spec)
    tunes = [
        TuneRecord(
            batch_id=batch.id,
            tune_id=tune_id(i),
            index=i,
            primed_by=spec.primed_by[i] if spec.primed_by else None,
        )
        for i in range(spec.count)
    ]
    ctx.records.create_batch(batch, tunes)
    return batch


def _check_tune(text: str, settings: Settings) -> tuple[bool, list[str]]:
    """Raw validity: the required headers are there and abc2midi converts it without errors."""
    missing = abc_notation.missing_fields(text)
    problems = [f"missing header field {name}:" for name in missing]
    reason = abc_notation.unsafe_reason(text)
    if reason:
        return False, [*problems, reason]
    result = render.check_abc(text, settings)
    return (not problems and result.ok), problems + result.errors


def _finish_text(sample: SampledTune) -> tuple[str, str]:
    number = sample.index + 1
    text = abc_notation.ensure_headers(sample.text, number, f"Tune {number}")
    title = abc_notation.header_fields(text).get("T", f"Tune {number}")
    return text, title


def generate_chunk(
    ctx: Context, batch_id: str, chunk_no: int, *, should_stop: Callable[[], bool] | None = None
) -> list[str]:
    """Sample the chunk's tunes that are not generated yet; return the ids now ready to render.

    With ``valid_only`` each tune is resampled (a new try, a new random stream) until abc2midi
    accepts it or ``max_tries`` is reached; the last try is kept either way and its raw validity
    and number of tries are recorded. Cancellation is checked between compiled steps.
    """
    from common.sampling import SamplingParams, TuneRequest

    batch = ctx.records.get_batch(batch_id)
    spec = batch.spec
    if batch.cancelled:
        cancel_pending(ctx, batch_id, spec.chunk_indices(chunk_no))
        return []
    todo: list[int] = []
    ready: list[str] = []
    for index in spec.chunk_indices(chunk_no):
        tune = ctx.records.get_tune(batch_id, tune_id(index))
        if tune.status == TuneStatus.GENERATED:
            ready.append(tune.tune_id)
        elif tune.status in (TuneStatus.QUEUED, TuneStatus.GENERATING):
            todo.append(index)
    if not todo:
        return ready
    record, sampler = ctx.sampler(spec.model_id, spec.precision)
    for index in todo:
        ctx.records.update_tune(batch_id, tune_id(index), TuneStatus.GENERATING)
    params = SamplingParams(
        temperature=spec.temperature,
        top_k=spec.top_k,
        max_chars=spec.max_chars,
        seed=spec.seed,
        bar_tracker=spec.bar_tracker,
    )

    def stop() -> bool:
        return (should_stop is not None and should_stop()) or ctx.records.is_cancelled(batch_id)

    run = sampler.start(params, should_stop=stop)
    for index in todo:
        run.submit(TuneRequest(index, 0, spec.primer_for(index)))
    try:
        for sample in run:
            text, title = _finish_text(sample)
            valid, errors = _check_tune(text, ctx.settings)
            if not valid and spec.valid_only and sample.attempt + 1 < spec.max_tries:
                run.submit(
                    TuneRequest(sample.index, sample.attempt + 1, spec.primer_for(sample.index))
                )
                continue
            tid = tune_id(sample.index)
            ctx.store.put_bytes(tune_key(batch_id, tid, "abc"), text.encode(), CONTENT_TYPES["abc"])
            ctx.records.update_tune(
                batch_id,
                tid,
                TuneStatus.GENERATED,
                title=title,
                valid=valid,
                tries=sample.attempt + 1,
                truncated=sample.truncated,
                check_errors=errors[:10],
                precision=sampler.precision,
            )
            ready.append(tid)
    except CancelledError:
        if ctx.records.is_cancelled(batch_id):
            cancel_pending(ctx, batch_id, spec.chunk_indices(chunk_no))
            return []
        # A worker shutting down: put unfinished tunes back so the chunk's redelivery does them.
        for index in todo:
            tune = ctx.records.get_tune(batch_id, tune_id(index))
            if tune.status == TuneStatus.GENERATING:
                ctx.records.reset_tune(tune.model_copy(update={"status": TuneStatus.QUEUED}))
        raise
    log.info(
        "batch %s chunk %d: %d tunes generated with model %s",
        batch_id, chunk_no, len(todo), record.short_id,
    )  # fmt: skip
    return ready


def cancel_pending(ctx: Context, batch_id: str, indices: range | None = None) -> int:
    """Mark every not-yet-final tune (of `indices`, default all) cancelled; return how many."""
    count = 0
    targets = (
        ctx.records.tunes(batch_id)
        if indices is None
        else [ctx.records.get_tune(batch_id, tune_id(i)) for i in indices]
    )
    for tune in targets:
        if not tune.status.final:
            ctx.records.update_tune(batch_id, tune.tune_id, TuneStatus.CANCELLED)
            count += 1
    return count


def render_tune(ctx: Context, batch_id: str, tid: str) -> TuneRecord:
    """Render one generated tune to the batch's formats and store every file.

    A tune the tools reject fails permanently with the tool's message; transient errors (a tool
    killed, disk full, bucket down) propagate so the caller retries; the record then still says
    ``rendering`` and a redelivery picks it up again.
    """
    batch = ctx.records.get_batch(batch_id)
    tune = ctx.records.get_tune(batch_id, tid)
    if tune.status.final:
        return tune
    if batch.cancelled:
        return ctx.records.update_tune(batch_id, tid, TuneStatus.CANCELLED)
    if tune.status not in (TuneStatus.GENERATED, TuneStatus.RENDERING):
        raise InvalidInputError(f"tune {tid} of batch {batch_id} is {tune.status}, not generated")
    tune = ctx.records.update_tune(batch_id, tid, TuneStatus.RENDERING, attempts=tune.attempts + 1)
    abc_key = tune_key(batch_id, tid, "abc")
    try:
        # Our own files are UTF-8; a damaged one must fail as a tune, not as a crash.
        text = ctx.store.get_bytes(abc_key).decode("utf-8", errors="replace")
    except NotFoundError as exc:
        return ctx.records.update_tune(batch_id, tid, TuneStatus.FAILED, error=str(exc))
    abc_info = ctx.store.info(abc_key)
    assert abc_info is not None
    files = [ArtifactFile(format="abc", key=abc_key, size=abc_info.size, sha256=abc_info.sha256)]
    try:
        with render.rendered(text, batch.spec.formats, ctx.settings) as result:
            for fmt in batch.spec.formats:
                if fmt == "abc":
                    continue
                key = tune_key(batch_id, tid, fmt)
                info = ctx.store.put_file(key, result.files[fmt], CONTENT_TYPES.get(fmt))
                files.append(ArtifactFile(format=fmt, key=key, size=info.size, sha256=info.sha256))
            details = result.info()
    except ToolMissingError as exc:
        # This worker is misconfigured, the tune is fine: retry (elsewhere), do not fail it.
        raise TransientError(str(exc)) from exc
    except (RenderError, PermanentError) as exc:
        log.info("tune %s/%s failed: %s", batch_id, tid, exc)
        # The ABC stays listed: people want to see what the tools rejected.
        return ctx.records.update_tune(
            batch_id, tid, TuneStatus.FAILED, error=str(exc), files=files[:1]
        )
    return ctx.records.update_tune(
        batch_id, tid, TuneStatus.DONE, files=files, error=None, render=details
    )


def fail_tune(ctx: Context, batch_id: str, tid: str, error: str) -> TuneRecord:
    """Give up on a tune (retries exhausted, dead-lettered): record it failed, keep the reason."""
    tune = ctx.records.get_tune(batch_id, tid)
    if tune.status.final:
        return tune
    return ctx.records.update_tune(batch_id, tid, TuneStatus.FAILED, error=error)


def manifest_key(batch_id: str) -> str:
    return artifact_key(batch_id, "manifest.json")


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("tunebatch", "tensorflow-cpu", "tensorflow", "keras", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def finalize_batch(ctx: Context, batch_id: str) -> Manifest | None:
    """Write the manifest once every tune is final; None (and nothing written) before that."""
    batch = ctx.records.get_batch(batch_id)
    key = manifest_key(batch_id)
    if batch.manifest_key and ctx.store.exists(key):
        return Manifest.model_validate_json(ctx.store.get_bytes(key))
    tunes = ctx.records.tunes(batch_id)
    if not all(t.status.final for t in tunes):
        return None
    model = resolve_model(ctx.store, batch.spec.model_id)
    finished = max((t.updated_at for t in tunes), default=now())
    counts = {s.value: sum(1 for t in tunes if t.status == s) for s in TuneStatus if s.final}
    manifest = Manifest(
        batch_id=batch_id,
        created_at=batch.created_at,
        finished_at=finished,
        spec=batch.spec,
        model=model.model_dump(mode="json", exclude={"chars", "history"}),
        tool_versions=render.tool_versions(ctx.settings),
        software=software_versions(),
        counts=counts,
        tunes=tunes,
    )
    ctx.store.put_bytes(key, manifest.model_dump_json(indent=2).encode(), CONTENT_TYPES["json"])
    batch.finished_at = finished
    batch.manifest_key = key
    ctx.records.save_batch(batch)
    return manifest


def cancel_batch(ctx: Context, batch_id: str) -> int:
    """Flag the batch cancelled (running chunks see it at their next step) and cancel queued
    tunes; return how many tunes were cancelled now."""
    batch = ctx.records.get_batch(batch_id)
    batch.cancelled = True
    ctx.records.save_batch(batch)
    return cancel_pending(ctx, batch_id)


def retry_failed(ctx: Context, batch_id: str) -> dict[str, list[str]]:
    """Put failed tunes back: those with an ABC file to rendering, the rest to generation.

    Returns ``{"render": [...tune ids], "generate": [...chunk numbers as str]}`` so the caller
    enqueues exactly that work. The batch's manifest is withdrawn until they are final again.
    """
    batch = ctx.records.get_batch(batch_id)
    render_ids: list[str] = []
    chunks: set[int] = set()
    for tune in ctx.records.tunes(batch_id):
        if tune.status != TuneStatus.FAILED:
            continue
        if ctx.store.exists(tune_key(batch_id, tune.tune_id, "abc")):
            fresh = tune.model_copy(update={"status": TuneStatus.GENERATED, "error": None})
            render_ids.append(tune.tune_id)
        else:
            fresh = tune.model_copy(update={"status": TuneStatus.QUEUED, "error": None})
            chunks.add(tune.index // batch.spec.chunk_size)
        ctx.records.reset_tune(fresh)
    if render_ids or chunks:
        batch.finished_at = None
        batch.manifest_key = None
        ctx.records.save_batch(batch)
        ctx.store.delete(manifest_key(batch_id))
    return {"render": render_ids, "generate": [str(c) for c in sorted(chunks)]}
