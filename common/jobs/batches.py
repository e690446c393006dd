"""A batch's life as plain functions: its keys, create, cancel and retry.

The jobs themselves are one module each: `common.jobs.generate` (sample a chunk),
`common.jobs.rendering` (render a tune), `common.jobs.finalize` (write the manifest). Celery tasks
and the embedded runner call exactly these functions, so there is one code path to test. Every
function is idempotent — it reads the records first and skips work already done — and
ends each tune in exactly one final state (done, failed or cancelled). Tune ids are positions in
the batch and the random stream of a tune depends only on (seed, index, try), so a re-run rewrites
the same keys with the same bytes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from common.errors import InvalidTransitionError
from common.jobs import cancel as cancelling
from common.jobs.context import Context
from common.jobs.request_checks import check_batch_spec
from common.lstm.registry import resolve_model
from common.schemas import (
    BatchRecord,
    BatchSpec,
    TuneRecord,
    TuneStatus,
    new_batch_id,
    tune_id,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


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


def fail_tune(ctx: Context, batch_id: str, tid: str, error: str) -> TuneRecord:
    """Give up on a tune (retries exhausted, dead-lettered): record it failed, keep the reason."""
    tune = ctx.records.get_tune(batch_id, tid)
    if tune.status.final:
        return tune
    return ctx.records.update_tune(batch_id, tid, TuneStatus.FAILED, error=error)


def manifest_key(batch_id: str) -> str:
    return artifact_key(batch_id, "manifest.json")


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
        ctx.records.reset_tune(fresh, was=TuneStatus.FAILED)
    if render_ids or chunks:
        batch.finished_at = None
        batch.manifest_key = None
        ctx.records.save_batch(batch)
        ctx.store.delete(manifest_key(batch_id))
    return {"render": render_ids, "generate": [str(c) for c in sorted(chunks)]}
