"""The delivery policy (`worker.delivery`): each piece on its own, the pieces together against a
real redis-server, and a real worker that retries a transient error, dead-letters a permanent one
at once and a job that kills its worker after its last attempt."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery.exceptions import Reject, TimeLimitExceeded

from common.dispatch.config import make_app
from common.dispatch.enqueue import enqueue
from common.errors import InvalidInputError, StorageError
from common.settings import Settings
from common.state.keys import attempts_key
from common.state.redis import RedisRecords
from tests import servers as srv
from tests.worker.cluster import Cluster, cluster
from tests.worker.poison_tasks import BROKEN, FLAKY, KILL_SELF, hold
from worker import runtime
from worker.delivery import (
    Attempts,
    DeadLetters,
    Delivery,
    Policy,
    ShuttingDown,
    TransientRetry,
    error_summary,
    on_task_failure,
)

DELIVERY = Delivery("tunebatch.render_tune", "task-1", ["b1", "t0001"])


class FakeClock:
    """Monotonic time that moves only when slept: a retry schedule runs instantly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def instant_retry(
    clock: FakeClock, budget_s: float = 150, stopping: Callable[[], bool] = lambda: False
) -> TransientRetry:
    """The real schedule (2 s doubling to 30 s) on the fake clock, jitter at its longest."""
    return TransientRetry(
        budget_s=budget_s,
        base_s=2,
        cap_s=30,
        stopping=stopping,
        clock=clock,
        sleep=clock.sleep,
        jitter=lambda _low, high: high,
    )


def failing(
    times: int, error: Exception, result: str = "ok"
) -> tuple[Callable[[], str], list[int]]:
    """A call that raises `error` its first `times` calls; the list counts the calls."""
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return result

    return call, calls


# --- TransientRetry -------------------------------------------------------------------------------
def test_a_transient_error_is_retried_with_doubling_waits() -> None:
    clock = FakeClock()
    call, calls = failing(3, StorageError("bucket away"))
    assert instant_retry(clock).run("job", call) == "ok"
    assert len(calls) == 4
    assert sum(clock.slept) == pytest.approx(2 + 4 + 8)


def test_a_permanent_error_is_raised_at_once() -> None:
    clock = FakeClock()
    call, calls = failing(1, InvalidInputError("bad tune"))
    with pytest.raises(InvalidInputError):
        instant_retry(clock).run("job", call)
    assert len(calls) == 1 and clock.slept == []


def test_retries_stop_within_the_budget_and_the_wait_is_capped() -> None:
    clock = FakeClock()
    call, calls = failing(100, StorageError("bucket away"))
    with pytest.raises(StorageError):
        instant_retry(clock, budget_s=150).run("job", call)
    # waits 2, 4, 8, 16, then 30 s each up to the 150 s budget; another would pass it
    assert sum(clock.slept) == pytest.approx(2 + 4 + 8 + 16 + 4 * 30)
    assert max(clock.slept) <= 0.5  # in half-second steps, to see a shutdown
    assert len(calls) == 9


def test_jitter_waits_between_half_and_all_of_the_delay() -> None:
    bounds: list[tuple[float, float]] = []

    def jitter(low: float, high: float) -> float:
        bounds.append((low, high))
        return low

    clock = FakeClock()
    retry = TransientRetry(base_s=2, cap_s=30, clock=clock, sleep=clock.sleep, jitter=jitter)
    retry.run("job", failing(2, StorageError("away"))[0])
    assert bounds == [(1, 2), (2, 4)]


def test_a_warm_shutdown_ends_the_wait() -> None:
    clock = FakeClock()
    call, calls = failing(5, StorageError("bucket away"))
    with pytest.raises(ShuttingDown):
        instant_retry(clock, stopping=lambda: clock.now > 1001).run("job", call)
    assert len(calls) == 1  # stopped while waiting for the second try


# --- Attempts and DeadLetters ---------------------------------------------------------------------
@pytest.fixture
def records(redis_server: srv.RedisServer) -> Iterator[RedisRecords]:
    rec = RedisRecords.from_url(redis_server.url)
    yield rec
    rec.r.close()


def test_attempts_count_per_task_and_run_out_after_the_maximum(records: RedisRecords) -> None:
    attempts = Attempts(records, max_attempts=2)
    assert [attempts.count("a") for _ in range(3)] == [1, 2, 3]
    assert [attempts.exhausted(n) for n in (1, 2, 3)] == [False, False, True]
    assert attempts.count("b") == 1
    attempts.take_back("a")
    assert attempts.seen("a") == 2
    attempts.forget("a")
    assert attempts.seen("a") == 0 and attempts.seen("b") == 1
    assert 0 < records.r.ttl(attempts_key("b")) <= attempts.ttl_s


def test_dead_letter_entry_survives_a_failing_give_up(records: RedisRecords) -> None:
    records.count_attempt(DELIVERY.task_id, 60)
    counted: list[str] = []

    def give_up(error: str) -> None:
        raise RuntimeError(f"the batch is gone ({error})")

    DeadLetters(records, on_dead_letter=counted.append).abandon(
        DELIVERY, 3, reason="failed (permanent)", error="RenderError: x", give_up=give_up
    )
    [entry] = records.dead_letters()
    assert (entry.task, entry.task_id, entry.args) == (DELIVERY.task, "task-1", ["b1", "t0001"])
    assert (entry.attempts, entry.reason, entry.error) == (
        3,
        "failed (permanent)",
        "RenderError: x",
    )
    assert counted == [DELIVERY.task]
    assert records.attempts(DELIVERY.task_id) == 0


def test_one_line_keeps_the_type_and_the_first_line() -> None:
    assert error_summary(StorageError("bucket away\ntraceback...")) == "StorageError: bucket away"
    assert len(error_summary(ValueError("x" * 2000))) == 500


# --- the Policy: the pieces together --------------------------------------------------------------
def policy(records: RedisRecords, stopping: Callable[[], bool] = lambda: False) -> Policy:
    clock = FakeClock()
    retry = instant_retry(clock, budget_s=20, stopping=stopping)
    return Policy.for_store(records, max_attempts=3, stopping=stopping, retry=retry)


def test_a_job_that_succeeds_after_transient_errors_leaves_no_trace(records: RedisRecords) -> None:
    call, calls = failing(2, StorageError("bucket away"), result="rendered")
    given_up: list[str] = []
    assert policy(records).deliver(DELIVERY, call, given_up.append) == "rendered"
    assert len(calls) == 3
    assert given_up == [] and records.dead_letters() == []
    assert records.attempts(DELIVERY.task_id) == 0  # forgotten once done


def test_a_permanent_error_gives_the_job_up_on_its_first_attempt(records: RedisRecords) -> None:
    call, calls = failing(1, InvalidInputError("tune t0001 has no K: header"))
    given_up: list[str] = []
    with pytest.raises(InvalidInputError):
        policy(records).deliver(DELIVERY, call, given_up.append)
    assert len(calls) == 1
    assert given_up == ["gave up after 1 attempts: InvalidInputError: tune t0001 has no K: header"]
    [entry] = records.dead_letters()
    assert entry.reason == "failed (permanent)" and entry.attempts == 1


def test_a_transient_error_that_stays_gives_the_job_up(records: RedisRecords) -> None:
    call, calls = failing(100, StorageError("bucket away"))
    with pytest.raises(StorageError):
        policy(records).deliver(DELIVERY, call)
    assert len(calls) == 4  # waits 2 + 4 + 8; a fourth wait (16 s) would pass the 20 s budget
    [entry] = records.dead_letters()
    assert entry.reason == "failed (transient, still failing after 20 s of retries)"


def test_the_delivery_after_the_last_attempt_is_dead_lettered_unrun(records: RedisRecords) -> None:
    for _ in range(3):  # three deliveries whose worker process died: nothing ended them
        records.count_attempt(DELIVERY.task_id, 60)
    call, calls = failing(0, RuntimeError("never"))
    given_up: list[str] = []
    assert policy(records).deliver(DELIVERY, call, given_up.append) is None
    assert calls == []
    assert given_up == ["gave up after 3 attempts: worker lost"]
    [entry] = records.dead_letters()
    assert entry.attempts == 3 and entry.error == "worker lost"
    assert entry.reason.startswith("delivered 3 times without finishing")
    assert records.attempts(DELIVERY.task_id) == 0


def test_a_job_stopped_for_shutdown_is_requeued_uncounted(records: RedisRecords) -> None:
    records.count_attempt(DELIVERY.task_id, 60)  # one earlier delivery

    def body() -> str:
        raise ShuttingDown("chunk 0 of b1")

    with pytest.raises(Reject) as caught:
        policy(records).deliver(DELIVERY, body)
    assert caught.value.requeue is True
    assert records.attempts(DELIVERY.task_id) == 1  # this delivery is not counted
    assert records.dead_letters() == []


def test_a_shutdown_during_a_retry_wait_requeues_too(records: RedisRecords) -> None:
    call, calls = failing(100, StorageError("bucket away"))
    with pytest.raises(Reject):
        policy(records, stopping=lambda: True).deliver(DELIVERY, call)
    assert len(calls) == 1
    assert records.attempts(DELIVERY.task_id) == 0 and records.dead_letters() == []


def test_a_job_killed_at_its_hard_limit_is_dead_lettered_by_the_main_process(
    records: RedisRecords, redis_server: srv.RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(broker_url=redis_server.url, max_attempts=3)
    monkeypatch.setattr(runtime, "_runtime", runtime.Runtime(settings=settings, role="cpu"))
    records.count_attempt("task-9", 60)
    on_task_failure(sender=hold, task_id="task-9", exception=ValueError("handled in the job"))
    assert records.dead_letters() == []
    on_task_failure(
        sender=hold, task_id="task-9", exception=TimeLimitExceeded(360), args=["k", 1000.0]
    )
    [entry] = records.dead_letters()
    assert (entry.task, entry.args, entry.attempts) == (hold.name, ["k", 1000.0], 1)
    assert entry.reason == "killed at its hard time limit"


# --- through a real worker ------------------------------------------------------------------------
@pytest.fixture
def worker_cluster(tmp_path: Path, s3_server: srv.S3Server) -> Iterator[Cluster]:
    with cluster(tmp_path, s3_server) as c:  # TUNEBATCH_MAX_ATTEMPTS=2
        w = c.start_worker("cpu", extra=("--include=tests.worker.poison_tasks",))
        c.wait_ready(w)
        yield c


def _until(what: str, check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.mark.slow
def test_a_real_worker_retries_transient_errors_only(worker_cluster: Cluster) -> None:
    c = worker_cluster
    app = make_app(c.settings)
    r = c.records.r
    enqueue(FLAKY, "flaky", 2, celery_app=app)
    enqueue(BROKEN, "broken", celery_app=app)
    enqueue(KILL_SELF, "b-missing", "t0000", celery_app=app)
    _until(
        "the broken and the killing job dead-lettered", lambda: len(c.records.dead_letters()) == 2
    )
    c.wait_idle(timeout_s=30)
    assert int(r.get("flaky") or 0) == 3  # two transient failures, then done in one delivery
    by_task = {e.task: e for e in c.records.dead_letters()}
    assert set(by_task) == {BROKEN, KILL_SELF}
    assert int(r.get("broken") or 0) == 1  # a permanent error is not retried
    assert by_task[BROKEN].reason == "failed (permanent)" and by_task[BROKEN].attempts == 1
    assert by_task[KILL_SELF].attempts == c.settings.max_attempts == 2
    assert by_task[KILL_SELF].error == "worker lost"
    assert r.keys("tunebatch:attempts:*") == []
