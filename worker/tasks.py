"""The Celery tasks: thin wrappers that call `common`, record state and enqueue the next step.

The work itself is in `common.jobs` (batches, generate, rendering, finalize) and
`common.lstm.training`, the same functions the embedded runner calls; nothing here generates,
renders or trains. What this module adds is what only a distributed system needs:

* **Attempts and the dead-letter list.** Every delivery of a message counts one attempt in Redis
  (keyed by the task id, which a redelivery or a retry keeps). A job that kills its worker (OOM,
  a segfault in a native library) is requeued by ``acks_late`` + ``reject_on_worker_lost`` and
  would come back forever; after ``max_attempts`` deliveries it is dead-lettered instead, and its
  tunes are marked failed (`batches.fail_tune`) so the batch can still finish. Transient errors
  (`common.errors.TransientError`: Redis or the bucket away) are retried in the worker with
  exponential backoff for up to `TRANSIENT_BUDGET_S` (see `JobTask._ride_out`); permanent errors
  are given up on at once.
* **Warm shutdown.** On SIGTERM Celery stops taking jobs and waits for running ones. A running
  chunk (or training run) sees the flag at its next step boundary, puts its unfinished tunes back
  to ``queued`` (generate_chunk does that) and its message is requeued, without counting an attempt.
* **The next step.** A finished chunk enqueues one render per tune; a render that makes every tune
  of the batch final enqueues ``finalize_batch``, exactly once (a Redis ``SET NX`` guard).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing.sharedctypes
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Task
from celery.exceptions import Reject, Retry, TimeLimitExceeded
from celery.signals import (
    task_failure,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from common.errors import (
    CancelledError,
    InvalidInputError,
    InvalidTransitionError,
    TransientError,
)
from common.jobs import batches, finalize, generate, rendering
from common.jobs.batches import Context
from common.schemas import RunStatus, TrainSpec, TuneStatus, tune_id
from common.settings import Settings
from common.state.redis import DeadLetter, RedisRecords
from common.store.open import make_store
from worker import metrics as worker_metrics
from worker.celery_app import (
    FINALIZE,
    GENERATE,
    RENDER,
    RETRY_BACKOFF_MAX_S,
    RETRY_BACKOFF_S,
    RUN_SCHEDULE,
    SUBMIT_SCHEDULED,
    TRAIN,
    TRANSIENT_BUDGET_S,
    app,
    enqueue,
)
from worker.leases import LeaseRenewer

log = logging.getLogger(__name__)

#: Set by the main process on a warm shutdown, read by the pool processes between steps. Shared
#: memory made before the pool forks, so it needs no signal in the children and no Redis call.
_STOPPING = multiprocessing.sharedctypes.RawValue(ctypes.c_bool, False)


@dataclass
class Runtime:
    """What a worker process needs, built once per process (after the fork: no shared sockets)."""

    settings: Settings
    role: str
    records: RedisRecords | None = None
    context: Context | None = None


_runtime: Runtime | None = None


def init(settings: Settings, role: str) -> None:
    """Called by `worker.cli` in the main process before the pool starts."""
    global _runtime
    _runtime = Runtime(settings=settings, role=role)


def _ensure() -> Runtime:
    global _runtime
    if _runtime is None:  # a worker started with `celery -A worker.tasks worker` directly
        settings = Settings()
        from worker.celery_app import configure

        configure(settings)
        _runtime = Runtime(settings=settings, role="any")
    if _runtime.context is None:
        s = _runtime.settings
        assert s.broker_url is not None
        _runtime.records = RedisRecords.from_url(s.broker_url)
        _runtime.context = Context(
            settings=s,
            store=make_store(s),
            records=_runtime.records,
            on_sampled=worker_metrics.sampled,
        )
    return _runtime


def context() -> Context:
    ctx = _ensure().context
    assert ctx is not None
    return ctx


def records() -> RedisRecords:
    rec = _ensure().records
    assert rec is not None
    return rec


def stopping() -> bool:
    """The warm-shutdown flag (passed to generate_chunk and train as ``should_stop``)."""
    return bool(_STOPPING.value)


def _process_init(**_: Any) -> None:
    """Fresh Redis and S3 clients per pool process; the GPU role says which device it uses."""
    rt = _ensure_fresh()
    if rt.role == "gpu":
        _log_device()


def _ensure_fresh() -> Runtime:
    if _runtime is not None:
        _runtime.records = None
        _runtime.context = None
    return _ensure()


def _log_device() -> None:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if gpus:
        log.info("process %d: TensorFlow uses GPU %s", os.getpid(), ", ".join(g.name for g in gpus))
    else:
        log.info(
            "process %d: TensorFlow sees no GPU; training and generating on the CPU", os.getpid()
        )


def _on_shutdown(how: str = "", **_: Any) -> None:
    if how == "Warm":
        _STOPPING.value = True


_renewer: LeaseRenewer | None = None


def _start_leases(**_: Any) -> None:
    """In the main process, once the worker consumes: renew the leases of the jobs it holds."""
    global _renewer
    settings = _runtime.settings if _runtime is not None else Settings()
    if settings.broker_url and _renewer is None:
        _renewer = LeaseRenewer(settings.broker_url, settings.visibility_timeout_s)
        _renewer.start()
        log.info("renewing job leases every %.0f s", _renewer.interval_s)


def _stop_leases(**_: Any) -> None:
    if _renewer is not None:
        _renewer.stop()


worker_ready.connect(_start_leases, weak=False)
worker_shutdown.connect(_stop_leases, weak=False)

#: How long a job's delivery count is kept: a redelivery may wait behind a long queue.
ATTEMPTS_TTL_S = 7 * 24 * 3600


# --- attempts, give-up and the dead-letter list ---------------------------------------------
GiveUp = Callable[[Context, Sequence[Any], str], None]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


class JobTask(Task):  # type: ignore[misc]  # Celery is untyped
    """Counts deliveries, dead-letters jobs that keep failing, and gives their tunes up."""

    #: What to mark failed when the job is given up on (set per task in the decorator).
    give_up: GiveUp | None = None

    def _ride_out(self, what: str, call: Callable[[], Any]) -> Any:
        """Run `call`, again after each `TransientError` with exponential backoff (jittered),
        for up to `TRANSIENT_BUDGET_S`; then the last error is raised.

        In this process, not with Celery's ``retry(countdown=...)``: a retry message with an ETA
        waits in the worker's memory and in Redis' unacked set, and when the broker connection
        drops (a Redis restart) Celery forgets it, so the job came back only after the visibility
        timeout (an hour or more) with its tune stuck in ``rendering``. Retries also no longer use
        up the delivery attempts meant for jobs that kill their worker.
        """
        deadline = time.monotonic() + TRANSIENT_BUDGET_S
        delay = float(RETRY_BACKOFF_S)
        while True:
            try:
                return call()
            except TransientError as exc:
                wait = random.uniform(delay / 2, delay)
                if time.monotonic() + wait > deadline:
                    raise
                log.warning("%s: %s; trying again in %.1f s", what, _one_line(exc), wait)
            end = time.monotonic() + wait
            while time.monotonic() < end:
                if stopping():
                    raise _requeue_for_shutdown(self, what)
                time.sleep(min(0.5, max(0.0, end - time.monotonic())))
            delay = min(delay * 2, RETRY_BACKOFF_MAX_S)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # `self.run`, not `super().__call__`: Task.__call__ pushes a bare request (no id,
        # no delivery info) that `Reject(requeue=True)` could not requeue.
        rt = _ensure()
        task_id = str(self.request.id)
        what = f"{self.name}{list(args)}"
        attempts = self._ride_out(what, lambda: records().count_attempt(task_id, ATTEMPTS_TTL_S))
        if attempts > rt.settings.max_attempts:
            self.abandon(
                args,
                kwargs,
                attempts - 1,
                reason=f"delivered {attempts - 1} times without finishing: its worker process "
                "died each time (killed, out of memory?)",
                error="worker lost",
            )
            return None
        try:
            result = self._ride_out(what, lambda: self.run(*args, **kwargs))
        except (Retry, Reject):
            raise
        except Exception as exc:
            kind = (
                f"transient, still failing after {TRANSIENT_BUDGET_S} s of retries"
                if isinstance(exc, TransientError)
                else "permanent"
            )
            self.abandon(args, kwargs, attempts, reason=f"failed ({kind})", error=_one_line(exc))
            raise
        self._ride_out(what, lambda: records().forget_attempts(task_id))
        return result

    def abandon(
        self,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        attempts: int,
        *,
        reason: str,
        error: str,
        task_id: str | None = None,
    ) -> None:
        """Give the job's tunes up, dead-letter the message, forget its attempts."""
        task_id = task_id or str(self.request.id)
        log.error("giving up on %s%s (%s): %s", self.name, list(args), reason, error)
        give_up = type(self).give_up
        if give_up is not None:
            try:
                give_up(context(), args, f"gave up after {attempts} attempts: {error}")
            except Exception:  # the dead-letter entry below matters more than this cleanup
                log.exception("could not mark the work of %s%s failed", self.name, list(args))
        rec = records()
        worker_metrics.dead_lettered(self.name)
        rec.push_dead_letter(
            DeadLetter(
                task=self.name,
                task_id=task_id,
                args=list(args),
                kwargs=dict(kwargs),
                attempts=attempts,
                reason=reason,
                error=error,
            )
        )
        rec.forget_attempts(task_id)


def _on_hard_time_limit(
    sender: Any = None,
    task_id: str = "",
    exception: BaseException | None = None,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """A job past its hard limit was killed by the main process: nothing in the job ran this."""
    if isinstance(exception, TimeLimitExceeded) and isinstance(sender, JobTask):
        sender.abandon(
            args,
            kwargs or {},
            records().attempts(task_id),
            reason="killed at its hard time limit",
            error=_one_line(exception),
            task_id=task_id,
        )


worker_process_init.connect(_process_init, weak=False)
worker_shutting_down.connect(_on_shutdown, weak=False)
task_failure.connect(_on_hard_time_limit, weak=False)


def job_task(name: str, give_up: GiveUp | None) -> Callable[[Callable[..., Any]], Any]:
    """Register a bound `JobTask` under `name` with its give-up handler."""
    decorator: Callable[[Callable[..., Any]], Any] = app.task(
        name=name, bind=True, base=JobTask, give_up=staticmethod(give_up) if give_up else None
    )
    return decorator


def finalize_when_done(rec: RedisRecords, batch_id: str) -> bool:
    """Enqueue finalize_batch if every tune is final and nobody enqueued it yet."""
    if rec.claim_finalize(batch_id):
        enqueue(FINALIZE, batch_id)
        return True
    return False


def _requeue_for_shutdown(task: Task, what: str) -> Reject:
    records().uncount_attempt(str(task.request.id))
    log.info("worker shutting down: %s stopped at a step boundary and is requeued", what)
    return Reject(f"{what}: worker shutting down, requeued", requeue=True)


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
            raise _requeue_for_shutdown(self, f"chunk {chunk_no} of {batch_id}") from None
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

    def __init__(self, rec: RedisRecords, run_id: str, every_s: float = 1.0) -> None:
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
            raise _requeue_for_shutdown(self, f"training run {run_id}") from None
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
