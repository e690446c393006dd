"""How a job message is delivered, retried and given up on: the policy around every task body.

With ``acks_late`` and ``reject_on_worker_lost`` (`worker.celery_app`) a message comes back until
a job ends, so the worker decides what "ends" means. Four pieces decide it, each with one job and
tested on its own, the way Dramatiq splits its middleware; `Policy` runs them in order and
`JobTask` (every task's base class) hands each delivery to a `Policy`:

* `Attempts`: every delivery counts one attempt in Redis, keyed by the task id (which a
  redelivery keeps). A job that kills its worker process (out of memory, a segfault in a native
  library) is requeued by Celery and would come back forever; past ``max_attempts`` deliveries
  it is given up instead.
* `TransientRetry`: a `TransientError` (Redis or the bucket away) is retried in this process with
  jittered exponential backoff for up to `TRANSIENT_BUDGET_S`; any other error is not retried.
  In-process rather than Celery's ``retry(countdown=...)``: a retry message with an ETA waits in
  the worker's memory and in Redis' unacked set, and when the broker connection drops (a Redis
  restart) Celery loses it, so the job would return only when its lease lapsed, its tune stuck
  in ``rendering`` until then; and a retry would use up an attempt meant for worker loss.
* `DeadLetters`: a job given up (attempts spent, a permanent error, transient retries spent, its
  hard time limit) has its work marked failed by the task's `GiveUp` handler, so its batch can
  still finish, and goes on the dead-letter list for `producer dead-letter`.
* `ShutdownRequeue`: on a warm shutdown a running job stops at its next step boundary and raises
  `ShuttingDown`; its message is requeued (``Reject(requeue=True)``) and the delivery does not
  count as an attempt.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from celery import Task
from celery.exceptions import Reject, TimeLimitExceeded
from celery.signals import task_failure
from celery.utils.dispatch import Signal

from common.errors import TransientError
from common.jobs.context import Context
from common.state.base import AttemptStore, DeadLetter, DeadLetterStore
from worker import metrics, runtime
from worker.celery_app import RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_S, TRANSIENT_BUDGET_S, app

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a job's delivery count is kept: a redelivery may wait behind a long queue.
ATTEMPTS_TTL_S = 7 * 24 * 3600

#: What to mark failed when a job is given up: (context, the job's args, the error to record).
GiveUp = Callable[[Context, Sequence[Any], str], None]


class ShuttingDown(Exception):  # noqa: N818  # a signal to the policy, not an error
    """Raised by a job that stopped at a step boundary for a warm shutdown: requeue it.

    Not a `TunebatchError`: it never reaches a user, `Policy.deliver` turns it into a requeue.
    """


class PolicyStore(AttemptStore, DeadLetterStore, Protocol):
    """What the delivery policy writes: attempts, and dead letters when it gives a job up."""


@dataclass(frozen=True)
class Delivery:
    """One delivery of a job message."""

    task: str
    task_id: str
    args: Sequence[Any]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def what(self) -> str:
        """The job as log lines name it: ``tunebatch.render_tune['b1', 't0001']``."""
        return f"{self.task}{list(self.args)}"


def error_summary(exc: BaseException) -> str:
    """An error as one bounded line (its type and the first line of its message)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


@dataclass
class Attempts:
    """Deliveries per task id; a job delivered more than `max_attempts` times is given up."""

    store: AttemptStore
    max_attempts: int
    ttl_s: int = ATTEMPTS_TTL_S

    def count(self, task_id: str) -> int:
        """Count this delivery; return the deliveries so far, this one included."""
        return self.store.count_attempt(task_id, self.ttl_s)

    def exhausted(self, attempts: int) -> bool:
        """True when this delivery is one too many: the earlier ones each lost their worker."""
        return attempts > self.max_attempts

    def seen(self, task_id: str) -> int:
        return self.store.attempts(task_id)

    def take_back(self, task_id: str) -> None:
        """Undo this delivery's count: it did no work (requeued at shutdown)."""
        self.store.uncount_attempt(task_id)

    def forget(self, task_id: str) -> None:
        """The job ended (done or dead-lettered): drop its count."""
        self.store.forget_attempts(task_id)


@dataclass
class TransientRetry:
    """Runs a call again after each `TransientError`, with jittered exponential backoff, until
    `budget_s` would be exceeded; then that error is raised. Other errors are raised at once.

    While waiting it checks `stopping` every half second and raises `ShuttingDown`, so a warm
    shutdown is not held up by a job waiting for Redis. The clock, the sleep and the jitter are
    parameters so the schedule can be tested without waiting.
    """

    budget_s: float = TRANSIENT_BUDGET_S
    base_s: float = RETRY_BACKOFF_S
    cap_s: float = RETRY_BACKOFF_MAX_S
    stopping: Callable[[], bool] = lambda: False
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[float, float], float] = random.uniform

    def run(self, what: str, call: Callable[[], T]) -> T:
        deadline = self.clock() + self.budget_s
        delay = float(self.base_s)
        while True:
            try:
                return call()
            except TransientError as exc:
                wait = self.jitter(delay / 2, delay)
                if self.clock() + wait > deadline:
                    raise
                log.warning("%s: %s; trying again in %.1f s", what, error_summary(exc), wait)
            self._wait(what, wait)
            delay = min(delay * 2, self.cap_s)

    def _wait(self, what: str, seconds: float) -> None:
        end = self.clock() + seconds
        while self.clock() < end:
            if self.stopping():
                raise ShuttingDown(f"{what}: worker shutting down while waiting to retry")
            self.sleep(min(0.5, max(0.0, end - self.clock())))


@dataclass
class DeadLetters:
    """Gives a job up: its work marked failed, an entry on the dead-letter list, its count gone."""

    store: PolicyStore
    on_dead_letter: Callable[[str], None] = metrics.dead_lettered

    def abandon(
        self,
        delivery: Delivery,
        attempts: int,
        *,
        reason: str,
        error: str,
        give_up: Callable[[str], None] | None,
    ) -> None:
        """`give_up` is told ``gave up after N attempts: <error>`` (the text its tunes record)."""
        log.error("giving up on %s (%s): %s", delivery.what, reason, error)
        if give_up is not None:
            try:
                give_up(f"gave up after {attempts} attempts: {error}")
            except Exception:  # the dead-letter entry below matters more than this cleanup
                log.exception("could not mark the work of %s failed", delivery.what)
        self.on_dead_letter(delivery.task)
        self.store.push_dead_letter(
            DeadLetter(
                task=delivery.task,
                task_id=delivery.task_id,
                args=list(delivery.args),
                kwargs=dict(delivery.kwargs),
                attempts=attempts,
                reason=reason,
                error=error,
            )
        )
        self.store.forget_attempts(delivery.task_id)


@dataclass
class ShutdownRequeue:
    """A job stopped for a warm shutdown goes back to its queue, its attempt not counted."""

    attempts: Attempts

    def requeue(self, delivery: Delivery) -> Reject:
        """Take the attempt back; the `Reject` to raise so Celery requeues the message."""
        self.attempts.take_back(delivery.task_id)
        log.info("worker shutting down: %s stopped at a step boundary, requeued", delivery.what)
        return Reject(f"{delivery.what}: worker shutting down, requeued", requeue=True)


@dataclass
class Policy:
    """The pieces in order: count the attempt (give up when spent), run the body riding out
    transient errors, give up on an error that stays, requeue on shutdown, forget on success."""

    attempts: Attempts
    retry: TransientRetry
    dead_letters: DeadLetters
    shutdown: ShutdownRequeue

    @classmethod
    def for_store(
        cls,
        store: PolicyStore,
        max_attempts: int,
        stopping: Callable[[], bool],
        retry: TransientRetry | None = None,
    ) -> Policy:
        attempts = Attempts(store, max_attempts)
        retry = retry or TransientRetry(stopping=stopping)
        return cls(attempts, retry, DeadLetters(store), ShutdownRequeue(attempts))

    def deliver(
        self,
        delivery: Delivery,
        body: Callable[[], T],
        give_up: Callable[[str], None] | None = None,
    ) -> T | None:
        """Run `body` for `delivery`; None when the delivery was one too many (dead-lettered).

        The body's own error is raised again after the job is given up, so Celery logs it as
        the task's failure; `ShuttingDown` becomes Celery's `Reject(requeue=True)`.
        """
        try:
            attempts = self.retry.run(delivery.what, lambda: self.attempts.count(delivery.task_id))
            if self.attempts.exhausted(attempts):
                self.dead_letters.abandon(
                    delivery,
                    attempts - 1,
                    reason=f"delivered {attempts - 1} times without finishing: its worker "
                    "process died each time (killed, out of memory?)",
                    error="worker lost",
                    give_up=give_up,
                )
                return None
            try:
                result = self.retry.run(delivery.what, body)
            except ShuttingDown:
                raise
            except Exception as exc:
                kind = (
                    f"transient, still failing after {self.retry.budget_s:g} s of retries"
                    if isinstance(exc, TransientError)
                    else "permanent"
                )
                self.dead_letters.abandon(
                    delivery, attempts, reason=f"failed ({kind})", error=error_summary(exc),
                    give_up=give_up,
                )  # fmt: skip
                raise
            self.retry.run(delivery.what, lambda: self.attempts.forget(delivery.task_id))
        except ShuttingDown:
            raise self.shutdown.requeue(delivery) from None
        return result


def _policy() -> Policy:
    rt = runtime.current()
    return Policy.for_store(runtime.records(), rt.settings.max_attempts, runtime.stopping)


class JobTask(Task):  # type: ignore[misc]  # Celery is untyped
    """Every tunebatch task: each delivery goes through the worker's `Policy`."""

    #: What to mark failed when the job is given up (set per task by `job_task`).
    give_up: GiveUp | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # `self.run`, not `super().__call__`: Task.__call__ pushes a bare request (no id,
        # no delivery info) that `Reject(requeue=True)` could not requeue.
        delivery = Delivery(self.name, str(self.request.id), args, kwargs)
        return _policy().deliver(
            delivery, lambda: self.run(*args, **kwargs), self.give_up_with(args)
        )

    @classmethod
    def give_up_with(cls, args: Sequence[Any]) -> Callable[[str], None] | None:
        """The task's `GiveUp` handler bound to this job's args and the process's context."""
        handler = cls.give_up
        if handler is None:
            return None
        return lambda error: handler(runtime.context(), args, error)


def job_task(name: str, give_up: GiveUp | None) -> Callable[[Callable[..., Any]], Any]:
    """Register a bound `JobTask` under `name` with its give-up handler."""
    decorator: Callable[[Callable[..., Any]], Any] = app.task(
        name=name, bind=True, base=JobTask, give_up=staticmethod(give_up) if give_up else None
    )
    return decorator


def on_task_failure(
    sender: Any = None,
    task_id: str = "",
    exception: BaseException | None = None,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """A job past its hard time limit was killed by the main process, so no `Policy` in the job
    saw it end: the main process gives it up here (any other failure was handled in the job)."""
    if not (isinstance(exception, TimeLimitExceeded) and isinstance(sender, JobTask)):
        return
    store = runtime.records()
    DeadLetters(store).abandon(
        Delivery(str(sender.name), task_id, args, kwargs or {}),
        Attempts(store, runtime.current().settings.max_attempts).seen(task_id),
        reason="killed at its hard time limit",
        error=error_summary(exception),
        give_up=sender.give_up_with(args),
    )


def receivers() -> list[tuple[Signal, Callable[..., None]]]:
    """The signals this module listens to (connected by `worker.runtime.init`)."""
    return [(task_failure, on_task_failure)]
