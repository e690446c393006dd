"""The Celery tasks: thin bodies that call `common.jobs`, record state and enqueue the next step.

The work itself is in `common.jobs` (batches, generate, rendering, finalize) and
`common.lstm.training`, the same functions the embedded runner calls; nothing here generates,
renders or trains. Every task is a `worker.delivery.JobTask`, so attempts, transient retries,
dead-lettering and the requeue on a warm shutdown happen around these bodies, not in them. What
a body adds:

* **Stopping for a shutdown.** A chunk or a training run sees the warm-shutdown flag at its next
  step boundary (`generate_chunk` puts its unfinished tunes back to ``queued``) and raises
  `ShuttingDown`, so its message is requeued.
* **Giving up.** Each task names what to mark failed when it is given up (the ``give_up_*``
  handlers), so a batch still finishes when one of its jobs is dead-lettered.
* **The next step.** A finished chunk enqueues one render per tune; a render that makes every tune
  of the batch final enqueues ``finalize_batch``, exactly once (a Redis ``SET NX`` guard).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from common.dispatch.names import FINALIZE, GENERATE, RENDER, RUN_SCHEDULE, SUBMIT_SCHEDULED, TRAIN
from common.errors import CancelledError, InvalidInputError, InvalidTransitionError
from common.jobs import batches, finalize, generate, rendering
from common.jobs.context import Context
from common.schemas import RunStatus, TrainSpec, TuneStatus, tune_id
from common.state.base import SharedRecords
from worker import metrics as worker_metrics
from worker.celery_app import enqueue
from worker.delivery import JobTask, ShuttingDown, job_task
from worker.runtime import context, records, stopping

log = logging.getLogger(__name__)


def finalize_when_done(rec: SharedRecords, batch_id: str) -> bool:
    """Enqueue finalize_batch if every tune is final and nobody enqueued it yet."""
    if rec.claim_finalize(batch_id):
        enqueue(FINALIZE, batch_id)
        return True
    return False


# --- give-up handlers -------------------------------------------------------------------------
def give_up_tune(ctx: Context, args: Sequence[Any], error: str) -> None:
    batch_id, tid = str(args[0]), str(args[1])
    batches.fail_tune(ctx, batch_id, tid, error)
    finalize_when_done(records(), batch_id)


def give_up_chunk(ctx: Context, args: Sequence[Any], error: str) -> None:
    batch_id, chunk_no = str(args[0]), int(args[1])
    spec = ctx.records.get_batch(batch_id).spec
    for index in spec.chunk_indices(chunk_no):
        batches.fail_tune(ctx, batch_id, tune_id(index), error)
    finalize_when_done(records(), batch_id)


def give_up_finalize(ctx: Context, args: Sequence[Any], error: str) -> None:
    del ctx, error
    records().release_finalize(str(args[0]))  # a later trigger (`producer retry`) may try again


def give_up_run(ctx: Context, args: Sequence[Any], error: str) -> None:
    del ctx
    records().update_run(str(args[1]), status=RunStatus.FAILED, error=error)


# --- the tasks --------------------------------------------------------------------------------
@job_task(GENERATE, give_up_chunk)
def generate_chunk(self: JobTask, batch_id: str, chunk_no: int) -> int:
    """Generate one chunk of a batch, then enqueue a render for each tune that is ready."""
    ctx = context()
    try:
        ready = generate.generate_chunk(ctx, batch_id, int(chunk_no), should_stop=stopping)
    except CancelledError:
        if stopping():
            raise ShuttingDown(f"chunk {chunk_no} of {batch_id}") from None
        raise
    except InvalidTransitionError:
        # `producer cancel` marked tunes cancelled between two of the sampler's checks.
        if not ctx.records.is_cancelled(batch_id):
            raise
        spec = ctx.records.get_batch(batch_id).spec
        batches.cancel_pending(ctx, batch_id, spec.chunk_indices(int(chunk_no)))
        ready = []
    for tid in ready:
        enqueue(RENDER, batch_id, tid)
    if not ready:  # all cancelled or failed already: this may have been the batch's last work
        finalize_when_done(records(), batch_id)
    return len(ready)


@job_task(RENDER, give_up_tune)
def render_tune(self: JobTask, batch_id: str, tid: str) -> str:
    """Render one tune; the render that makes the batch complete enqueues its finalize."""
    ctx = context()
    try:
        tune = rendering.render_tune(ctx, batch_id, tid)
    except InvalidInputError:
        tune = ctx.records.get_tune(batch_id, tid)
        if tune.status not in (TuneStatus.QUEUED, TuneStatus.GENERATING):
            raise
        # A stale duplicate (e.g. from before `retry --failed` sent the tune back to generation):
        # its chunk enqueues a fresh render once the tune is generated again.
        log.info("render of %s/%s skipped: the tune is %s", batch_id, tid, tune.status)
        return tune.status.value
    except InvalidTransitionError:
        tune = ctx.records.get_tune(batch_id, tid)
        if not tune.status.final:
            raise
        log.info("tune %s/%s became %s while rendering; result dropped", batch_id, tid, tune.status)
    finalize_when_done(records(), batch_id)
    return tune.status.value


@job_task(FINALIZE, give_up_finalize)
def finalize_batch(self: JobTask, batch_id: str) -> bool:
    """Write the batch's manifest (once every tune is final)."""
    manifest = finalize.finalize_batch(context(), batch_id)
    if manifest is None:  # tunes were put back (retry) after the trigger: the next one decides
        records().release_finalize(batch_id)
        finalize_when_done(records(), batch_id)
        return False
    log.info("batch %s finalized: %s", batch_id, manifest.counts)
    return True


class _RunObserver:
    """`common.lstm.training.TrainingObserver` that writes progress to the run's Redis record."""

    def __init__(self, rec: SharedRecords, run_id: str, every_s: float = 1.0) -> None:
        self.rec, self.run_id, self.every_s = rec, run_id, every_s
        self._last = 0.0
        self._epochs = self._steps = 0

    def on_start(self, run_id: str, epochs: int, steps_per_epoch: int, initial_epoch: int) -> None:
        self._epochs, self._steps = epochs, steps_per_epoch
        worker_metrics.training(self.run_id, epochs=epochs, epochs_done=initial_epoch, step=0)
        self.rec.update_run(
            self.run_id,
            status=RunStatus.RUNNING,
            epochs=epochs,
            steps=steps_per_epoch,
            epochs_done=initial_epoch,
            step=0,
        )

    def on_batch(self, epoch: int, step: int, loss: float) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            worker_metrics.training(self.run_id, step=step, loss=loss)
            self.rec.update_run(self.run_id, step=step, loss=loss)

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        worker_metrics.training(self.run_id, epochs_done=epoch, step=0, loss=metrics.get("loss"))
        self.rec.update_run(
            self.run_id,
            epochs_done=epoch,
            # The step within the next epoch; after the last one, the last step (all of them).
            step=self._steps if epoch >= self._epochs else 0,
            loss=metrics.get("loss"),
            val_bits_per_char=metrics.get("val_bits_per_char"),
        )


@job_task(TRAIN, give_up_run)
def train(self: JobTask, spec_json: str, run_id: str) -> str:
    """Train (or resume after a kill or a shutdown) run `run_id`; register the model."""
    from common.lstm.training import load_run, run_key
    from common.lstm.training import train as run_training

    ctx = context()
    rec = records()
    spec = TrainSpec.model_validate_json(spec_json)
    if ctx.store.exists(run_key(run_id, "run.json")):
        done = load_run(ctx.store, run_id)
        if done.status == RunStatus.DONE and done.model_id:  # a redelivery after it finished
            rec.update_run(run_id, status=RunStatus.DONE, model_id=done.model_id)
            return done.model_id
    try:
        model = run_training(
            ctx.store,
            spec,
            run_id,
            observer=_RunObserver(rec, run_id),
            should_stop=stopping,
            resume=True,
        )
    except CancelledError:
        if stopping():
            rec.update_run(run_id, status=RunStatus.QUEUED)
            raise ShuttingDown(f"training run {run_id}") from None
        raise
    rec.update_run(
        run_id,
        status=RunStatus.DONE,
        model_id=model.id,
        val_bits_per_char=model.valid_bits_per_char,
        error=None,
    )
    log.info("training run %s registered model %s", run_id, model.short_id)
    return model.id


# --- scheduled dataset-wide generation (worker.schedules) -------------------------------------
@job_task(RUN_SCHEDULE, None)
def run_schedule(self: JobTask, name_or_spec_json: str) -> str:
    """A schedule fired (beat, or `producer schedule run-now`): submit its batch, or retrain
    first when the corpus changed."""
    from worker import schedules

    what = schedules.fire(context(), records(), name_or_spec_json, task_id=str(self.request.id))
    log.info("schedule fired: %s", what)
    return what


@job_task(SUBMIT_SCHEDULED, None)
def submit_scheduled(self: JobTask, model_id: str | None, spec_json: str) -> str:
    """After a schedule's retraining run (a chain from `train`): submit the batch with it."""
    from worker import schedules

    what = schedules.submit_after_training(
        context(), records(), model_id, spec_json, task_id=str(self.request.id)
    )
    log.info("scheduled batch after retraining: %s", what)
    return what
