"""The generate job: sample a chunk of a batch's tunes, check each try, store the accepted ABC.

Every figure the quality report needs is measured here, once, on the text that is stored, and
kept on the tune's record, so finalize and `producer report` read the records instead of every
tune again. The job is idempotent: tunes already generated are returned as ready, not resampled.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.abc import notation as abc_notation
from common.errors import CancelledError, InvalidTransitionError
from common.jobs import batches
from common.jobs import cancel as cancelling
from common.jobs.context import Context
from common.render import pipeline as render
from common.schemas import BatchSpec, TuneStatus, tune_id
from common.settings import Settings

if TYPE_CHECKING:
    from common.lstm.sampling import SampledTune
    from common.quality.figures import TuneQuality
    from common.quality.similarity import MelodyIndex

log = logging.getLogger(__name__)


def check_tune(text: str, settings: Settings, index: MelodyIndex | None = None) -> TuneQuality:
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


GATE_REFUSAL = "the gate (--valid-only) refused all"
"""How a tune's error starts when the gate refused every try: such a tune has no ABC, so it is
never rendered (operators and the chaos suite count renders by it)."""


def _gate_refusal(quality: TuneQuality, spec: BatchSpec) -> str:
    """Why the gate refused a tune's last try, in one line."""
    why = []
    if not quality.valid:
        why.append("not valid (" + "; ".join(quality.brief_reasons(2)[:2]) + ")")
    if not quality.rhythm_ok:
        why.append("bars off the meter")
    if quality.near_copy(spec.near_copy_threshold):
        why.append(f"a near-copy of {quality.nearest_tune} (similarity {quality.similarity:.2f})")
    return (
        f"{GATE_REFUSAL} {spec.max_tries} tries; the last was "
        + ", ".join(why)
        + " (retry --failed samples it again; --any keeps the first try)"
    )


def _finish_text(sample: SampledTune) -> tuple[str, str]:
    number = sample.index + 1
    text = abc_notation.ensure_headers(sample.text, number, f"Tune {number}")
    title = abc_notation.header_fields(text).get("T", f"Tune {number}")
    return text, title


@dataclass
class _RawCounts:
    """One tune's tries so far: how many abc2midi accepted, fit the meter, were near-copies."""

    valid: int = 0
    rhythm_ok: int = 0
    near_copy: int = 0

    def add(self, quality: TuneQuality, threshold: float) -> None:
        self.valid += bool(quality.valid)
        self.rhythm_ok += quality.rhythm_ok
        self.near_copy += quality.near_copy(threshold)


def _figures(
    sample: SampledTune, title: str, quality: TuneQuality, raw: _RawCounts, precision: str
) -> dict[str, object]:
    """What a tune's record keeps of its last try, whether the gate took it or not."""
    return {
        "title": title,
        "valid": quality.valid,
        "rhythm_ok": quality.rhythm_ok,
        "tries": sample.attempt + 1,
        "tries_valid": raw.valid,
        "tries_rhythm_ok": raw.rhythm_ok,
        "tries_near_copy": raw.near_copy,
        "bars": quality.bars,
        "wrong_bars": quality.wrong_bars,
        "chars": quality.chars,
        "rhythm_checked": quality.rhythm_checked,
        "two_part": quality.two_part,
        "melody_grams": len(quality.fingerprint) if quality.fingerprint is not None else 0,
        "nearest_tune": quality.nearest_tune,
        "similarity": quality.similarity,
        "key": quality.key,
        "truncated": sample.truncated,
        "check_errors": quality.brief_reasons(),
        "precision": precision,
    }


def _chunk_state(ctx: Context, batch_id: str, indices: range) -> tuple[list[str], list[int]]:
    """(ids already generated, indices still to sample) among a chunk's tunes: a redelivered
    chunk redoes only what its first delivery did not finish."""
    ready: list[str] = []
    todo: list[int] = []
    for index in indices:
        tune = ctx.records.get_tune(batch_id, tune_id(index))
        if tune.status == TuneStatus.GENERATED:
            ready.append(tune.tune_id)
        elif tune.status in (TuneStatus.QUEUED, TuneStatus.GENERATING):
            todo.append(index)
    return ready, todo


def _record(ctx: Context, batch_id: str, tid: str, status: TuneStatus, **fields: object) -> None:
    """A tune's new status; a `cancel` that came in between ends the chunk as cancelled."""
    try:
        ctx.records.update_tune(batch_id, tid, status, **fields)
    except InvalidTransitionError:
        if ctx.records.is_cancelled(batch_id):
            raise CancelledError(f"batch {batch_id} cancelled") from None
        raise


def _keep(ctx: Context, batch_id: str, tid: str, text: str, figures: dict[str, object]) -> None:
    """Store an accepted tune's ABC, then mark it generated (the file first: a render job must
    find it); a cancel in between takes the file back."""
    abc_key = batches.tune_key(batch_id, tid, "abc")
    ctx.store.put_bytes(abc_key, text.encode())
    try:
        _record(ctx, batch_id, tid, TuneStatus.GENERATED, **figures)
    except (CancelledError, InvalidTransitionError):
        cancelling.remove(ctx.store, [abc_key])
        raise


def _put_back(ctx: Context, batch_id: str, todo: list[int]) -> None:
    """A worker shutting down: unfinished tunes back to queued, so the chunk's redelivery
    does them (a tune cancelled meanwhile stays cancelled)."""
    for index in todo:
        tune = ctx.records.get_tune(batch_id, tune_id(index))
        if tune.status == TuneStatus.GENERATING:
            with contextlib.suppress(InvalidTransitionError):
                ctx.records.reset_tune(
                    tune.model_copy(update={"status": TuneStatus.QUEUED}),
                    was=TuneStatus.GENERATING,
                )


def generate_chunk(
    ctx: Context, batch_id: str, chunk_no: int, *, should_stop: Callable[[], bool] | None = None
) -> list[str]:
    """Sample the chunk's tunes that are not generated yet; return the ids now ready to render.

    With ``valid_only`` each tune is resampled (a new try, a new random stream) until it passes
    the gate (`_accepted`); a tune whose ``max_tries`` tries all fail it ends ``failed`` with the
    reason, and no ABC is stored (so nothing renders it, and `retry --failed` samples it again).
    Without it the first try is kept, whatever it is. Either way the tune's raw figures and how
    many tries were valid, in rhythm or near-copies are recorded.
    Cancellation is checked between compiled steps.
    """
    from common.lstm.sampling import TuneRequest

    batch = ctx.records.get_batch(batch_id)
    spec = batch.spec
    if batch.cancelled:
        batches.cancel_pending(ctx, batch_id, spec.chunk_indices(chunk_no))
        return []
    ready, todo = _chunk_state(ctx, batch_id, spec.chunk_indices(chunk_no))
    if not todo:
        return ready
    record, sampler = ctx.sampler(spec.model_id, spec.precision)
    for index in todo:
        ctx.records.update_tune(batch_id, tune_id(index), TuneStatus.GENERATING)

    def stop() -> bool:
        return (should_stop is not None and should_stop()) or ctx.records.is_cancelled(batch_id)

    melodies = ctx.melody_index(record)
    raw = {index: _RawCounts() for index in todo}
    run = sampler.start(spec, should_stop=stop)  # a batch spec holds its sampling params
    for index in todo:
        run.submit(TuneRequest(index, 0, spec.primer_for(index)))
    try:
        for sample in run:
            text, title = _finish_text(sample)
            quality = check_tune(text, ctx.settings, melodies)
            raw[sample.index].add(quality, spec.near_copy_threshold)
            accepted = _accepted(quality, spec)
            if not accepted and spec.valid_only and sample.attempt + 1 < spec.max_tries:
                retry = sample.attempt + 1
                run.submit(TuneRequest(sample.index, retry, spec.primer_for(sample.index)))
                continue
            tid = tune_id(sample.index)
            if ctx.records.is_cancelled(batch_id):  # cancelled: upload nothing more
                raise CancelledError(f"batch {batch_id} cancelled")
            figures = _figures(sample, title, quality, raw[sample.index], sampler.precision)
            if accepted or not spec.valid_only:
                _keep(ctx, batch_id, tid, text, figures)
                ready.append(tid)
            else:
                error = _gate_refusal(quality, spec)
                _record(ctx, batch_id, tid, TuneStatus.FAILED, error=error, **figures)
    except CancelledError:
        if ctx.records.is_cancelled(batch_id):
            batches.cancel_pending(ctx, batch_id, spec.chunk_indices(chunk_no))
            return []
        _put_back(ctx, batch_id, todo)
        raise
    log.info(
        "batch %s chunk %d: %d tunes generated with model %s",
        batch_id, chunk_no, len(todo), record.short_id,
    )  # fmt: skip
    if ctx.on_sampled is not None:
        ctx.on_sampled(run.chars, run.seconds)
    return ready
