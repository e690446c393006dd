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

from common.abc import notation as abc_notation
from common.errors import (
    CancelledError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    PermanentError,
    RenderError,
    ToolMissingError,
    TransientError,
)
from common.jobs import cancel as cancelling
from common.jobs.request_checks import check_batch_spec
from common.lstm.registry import resolve_model
from common.render import pipeline as render
from common.schemas import (
    ArtifactFile,
    BatchRecord,
    BatchSpec,
    Manifest,
    ModelRecord,
    QualityReport,
    TuneRecord,
    TuneStatus,
    new_batch_id,
    now,
    tune_id,
)
from common.settings import Settings
from common.state.records import JobRecords
from common.store.artifacts import ArtifactStore

if TYPE_CHECKING:
    from common.abc.corpus import Corpus
    from common.lstm.sampler import Sampler
    from common.lstm.sampling import SampledTune
    from common.quality.figures import TuneQuality
    from common.quality.similarity import MelodyIndex

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
    _indexes: dict[str, MelodyIndex | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Told (chars, seconds) after each chunk's sampling; the workers feed their metrics.
    on_sampled: Callable[[int, float], None] | None = None

    def melody_index(self, model: ModelRecord) -> MelodyIndex | None:
        """The melody index of the model's training tunes, loaded or built once per process.

        None (no copy check) when the model's corpus is not in this store.
        """
        from common.abc.corpus import load_corpus

        with self._lock:
            if model.corpus_sha256 not in self._indexes:
                try:
                    corpus = load_corpus(self.store, model.corpus)
                except NotFoundError:
                    log.warning("corpus %s of model %s is not in the store: no copy check",
                                model.corpus, model.short_id)  # fmt: skip
                    self._indexes[model.corpus_sha256] = None
                else:
                    if corpus.record.sha256 != model.corpus_sha256:
                        log.warning("corpus %s changed since model %s was trained; the copy "
                                    "check uses today's", model.corpus, model.short_id)  # fmt: skip
                    self._indexes.clear()  # one corpus at a time, like the samplers
                    self._indexes[model.corpus_sha256] = self._build_index(corpus)
            return self._indexes[model.corpus_sha256]

    def sampler(self, model_id: str, precision: str = "auto") -> tuple[ModelRecord, Sampler]:
        """The model's sampler, loaded (hash-checked) once per process and kept."""
        from common.lstm import precision as precisions
        from common.lstm.network import load_registered
        from common.lstm.sampler import Sampler

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

    def _build_index(self, corpus: Corpus) -> MelodyIndex:
        """The corpus's melody index, from the store when an earlier process saved it there
        (building it reads every tune: ~40 s for 11,000 tunes on a 2-core machine)."""
        from common.abc.corpus import corpus_key
        from common.quality.similarity import MelodyIndex

        key = corpus_key(corpus.record.name, f"melody-index-{corpus.record.sha256[:16]}.npz")
        if self.store.exists(key):
            return MelodyIndex.from_bytes(self.store.get_bytes(key))
        index = MelodyIndex.from_tunes(abc_notation.split_tunes(corpus.train_text))
        self.store.put_bytes(key, index.to_bytes(), "application/octet-stream")
        return index


def artifact_key(batch_id: str, name: str) -> str:
    return f"batches/{batch_id}/{name}"


def tune_key(batch_id: str, tid: str, fmt: str) -> str:
    return artifact_key(batch_id, f"{tid}.{fmt}")


def create_batch(ctx: Context, spec: BatchSpec, *, batch_id: str | None = None) -> BatchRecord:
    """Record a new batch with every tune queued; the model must exist and fit the primers.

    Every parameter is checked before the first record is written (`check_batch_spec`).
    """
    record = resolve_model(ctx.store, spec.model_id)
    check_batch_spec(spec, record.chars)
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


def _check_tune(text: str, settings: Settings, index: MelodyIndex | None = None) -> TuneQuality:
    """Raw quality of one try: valid (the required headers are there and abc2midi converts it
    without errors), rhythm (every bar fits the meter), nearest training tune (with `index`)."""
    from common.quality.figures import assess_tune

    missing = abc_notation.missing_fields(text)
    problems = [f"missing header field {name}:" for name in missing]
    reason = abc_notation.unsafe_reason(text)

    def abc2midi(tune: str) -> tuple[bool, list[str]]:
        if reason:
            return False, [*problems, reason]
        result = render.check_abc(tune, settings)
        return (not problems and result.ok), problems + result.errors

    return assess_tune(text, checker=abc2midi, index=index)


def _accepted(quality: TuneQuality, spec: BatchSpec) -> bool:
    """The gate: valid, in rhythm, and no near-copy of a training tune."""
    return (
        bool(quality.valid)
        and quality.rhythm_ok
        and not quality.near_copy(spec.near_copy_threshold)
    )


def _finish_text(sample: SampledTune) -> tuple[str, str]:
    number = sample.index + 1
    text = abc_notation.ensure_headers(sample.text, number, f"Tune {number}")
    title = abc_notation.header_fields(text).get("T", f"Tune {number}")
    return text, title


def generate_chunk(
    ctx: Context, batch_id: str, chunk_no: int, *, should_stop: Callable[[], bool] | None = None
) -> list[str]:
    """Sample the chunk's tunes that are not generated yet; return the ids now ready to render.

    With ``valid_only`` each tune is resampled (a new try, a new random stream) until it passes
    the gate (`_accepted`) or ``max_tries`` is reached; the last try is kept either way, and its
    raw figures and how many tries were valid, in rhythm or near-copies are recorded.
    Cancellation is checked between compiled steps.
    """
    from common.lstm.sampling import TuneRequest

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

    def stop() -> bool:
        return (should_stop is not None and should_stop()) or ctx.records.is_cancelled(batch_id)

    melodies = ctx.melody_index(record)
    raw: dict[int, list[int]] = {index: [0, 0, 0] for index in todo}  # valid, rhythm, copies
    run = sampler.start(spec, should_stop=stop)  # a batch spec holds its sampling params
    for index in todo:
        run.submit(TuneRequest(index, 0, spec.primer_for(index)))
    try:
        for sample in run:
            text, title = _finish_text(sample)
            quality = _check_tune(text, ctx.settings, melodies)
            counts = raw[sample.index]
            counts[0] += bool(quality.valid)
            counts[1] += quality.rhythm_ok
            counts[2] += quality.near_copy(spec.near_copy_threshold)
            accepted = _accepted(quality, spec)
            if not accepted and spec.valid_only and sample.attempt + 1 < spec.max_tries:
                run.submit(
                    TuneRequest(sample.index, sample.attempt + 1, spec.primer_for(sample.index))
                )
                continue
            tid = tune_id(sample.index)
            if ctx.records.is_cancelled(batch_id):  # cancelled: upload nothing more
                raise CancelledError(f"batch {batch_id} cancelled")
            abc_key = tune_key(batch_id, tid, "abc")
            ctx.store.put_bytes(abc_key, text.encode(), CONTENT_TYPES["abc"])
            try:
                ctx.records.update_tune(
                    batch_id,
                    tid,
                    TuneStatus.GENERATED,
                    title=title,
                    valid=quality.valid,
                    rhythm_ok=quality.rhythm_ok,
                    tries=sample.attempt + 1,
                    tries_valid=counts[0],
                    tries_rhythm_ok=counts[1],
                    tries_near_copy=counts[2],
                    bars=quality.bars,
                    wrong_bars=quality.wrong_bars,
                    nearest_tune=quality.nearest_tune,
                    similarity=quality.similarity,
                    truncated=sample.truncated,
                    check_errors=quality.brief_reasons(),
                    precision=sampler.precision,
                )
            except InvalidTransitionError:  # `cancel` came in between: take the file back
                cancelling.remove(ctx.store, [abc_key])
                if ctx.records.is_cancelled(batch_id):
                    raise CancelledError(f"batch {batch_id} cancelled") from None
                raise
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
    if ctx.on_sampled is not None:
        ctx.on_sampled(run.chars, run.seconds)
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
            try:
                ctx.records.update_tune(batch_id, tune.tune_id, TuneStatus.CANCELLED)
            except InvalidTransitionError:  # it became done or failed since it was read
                continue
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
        return _cancel_tune(ctx, batch_id, tid)
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
    written: list[str] = []
    try:
        with render.rendered(text, batch.spec.formats, ctx.settings) as result:
            if ctx.records.is_cancelled(batch_id):  # cancelled while rendering: upload nothing
                return _cancel_tune(ctx, batch_id, tid)
            for fmt in batch.spec.formats:
                if fmt == "abc":
                    continue
                key = tune_key(batch_id, tid, fmt)
                written.append(key)
                info = ctx.store.put_file(key, result.files[fmt], CONTENT_TYPES.get(fmt))
                files.append(ArtifactFile(format=fmt, key=key, size=info.size, sha256=info.sha256))
            details = result.info()
    except ToolMissingError as exc:
        # This worker is misconfigured, the tune is fine: retry (elsewhere), do not fail it.
        raise TransientError(str(exc)) from exc
    except (RenderError, PermanentError) as exc:
        log.info("tune %s/%s failed: %s", batch_id, tid, exc)
        # The ABC stays listed: people want to see what the tools rejected.
        try:
            return ctx.records.update_tune(
                batch_id, tid, TuneStatus.FAILED, error=str(exc), files=files[:1]
            )
        except InvalidTransitionError:  # cancelled meanwhile: a cancelled tune has no files
            return _dropped(ctx, batch_id, tid, [abc_key, *written])
    try:
        return ctx.records.update_tune(
            batch_id, tid, TuneStatus.DONE, files=files, error=None, render=details
        )
    except InvalidTransitionError:  # `cancel` came in between: take the files back
        return _dropped(ctx, batch_id, tid, [abc_key, *written])


def _dropped(ctx: Context, batch_id: str, tid: str, written: list[str]) -> TuneRecord:
    """The tune was cancelled while it rendered: delete what the render wrote, and its ABC."""
    tune = ctx.records.get_tune(batch_id, tid)
    if tune.status != TuneStatus.CANCELLED:
        raise InvalidTransitionError(f"tune {tid} of batch {batch_id} became {tune.status}")
    cancelling.remove(ctx.store, written)
    log.info("tune %s/%s was cancelled while rendering; its files are removed", batch_id, tid)
    return tune


def _cancel_tune(ctx: Context, batch_id: str, tid: str) -> TuneRecord:
    """End a tune of a cancelled batch: cancelled, without the files it had (its ABC too)."""
    formats = ctx.records.get_batch(batch_id).spec.formats
    cancelling.remove(ctx.store, [tune_key(batch_id, tid, f) for f in formats])
    return ctx.records.update_tune(batch_id, tid, TuneStatus.CANCELLED)


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
        quality=batch_quality(ctx.store, batch_id, tunes, batch.spec.near_copy_threshold),
        tunes=tunes,
    )
    if batch.cancelled:  # the tunes cancelled mid-way leave no files (see common.jobs.cancel)
        listed = {f.key for t in tunes for f in t.files}
        cancelling.sweep(ctx.store, artifact_key(batch_id, ""), listed)
    ctx.store.put_bytes(key, manifest.model_dump_json(indent=2).encode(), CONTENT_TYPES["json"])
    batch.finished_at = finished
    batch.manifest_key = key
    ctx.records.save_batch(batch)
    return manifest


def batch_quality(
    store: ArtifactStore, batch_id: str, tunes: list[TuneRecord], threshold: float
) -> QualityReport | None:
    """The quality figures of a batch's generated tunes, raw rates over all their tries.

    Reads each tune's ABC once; validity and similarity are the ones recorded at generation.
    """
    from concurrent.futures import ThreadPoolExecutor

    from common.quality.figures import assess_tune, summarise

    made = [t for t in tunes if t.tries > 0 and store.exists(tune_key(batch_id, t.tune_id, "abc"))]
    if not made:
        return None

    def assess(tune: TuneRecord) -> TuneQuality:
        text = store.get_bytes(tune_key(batch_id, tune.tune_id, "abc")).decode(errors="replace")
        quality = assess_tune(text)
        quality.valid, quality.similarity = tune.valid, tune.similarity
        quality.nearest_tune = tune.nearest_tune
        return quality

    with ThreadPoolExecutor(max_workers=8) as pool:
        assessed = list(pool.map(assess, made))
    if any(t.rhythm_ok is None for t in made):  # generated before tries were counted
        return summarise(assessed, threshold=threshold)
    return summarise(
        assessed,
        threshold=threshold,
        tries=sum(t.tries for t in made),
        tries_valid=sum(t.tries_valid for t in made),
        tries_rhythm_ok=sum(t.tries_rhythm_ok for t in made),
    )


def cancel_batch(ctx: Context, batch_id: str) -> cancelling.CancelOutcome:
    """Flag the batch cancelled (running chunks see it at their next step) and cancel queued
    tunes. A batch whose every tune is final already is left as it is (`finished`)."""
    batch = ctx.records.get_batch(batch_id)
    counts = ctx.records.counts(batch_id)
    if all(TuneStatus(s).final for s, n in counts.items() if n):
        return cancelling.CancelOutcome(batch_id, 0, finished=True, counts=counts)
    batch.cancelled = True
    ctx.records.save_batch(batch)
    n = cancel_pending(ctx, batch_id)
    counts = ctx.records.counts(batch_id)
    return cancelling.CancelOutcome(batch_id, n, finished=False, counts=counts)


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
