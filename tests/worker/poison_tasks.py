"""Test-only tasks, imported by a test worker (``worker cpu --include tests.worker.poison_tasks``).

A real worker never imports this module, so the poison job exists only where a test asks for it.
"""

from __future__ import annotations

import os
import signal

import redis

from worker.delivery import job_task
from worker.tasks import give_up_tune

KILL_SELF = "tunebatch.test.render_then_die"


@job_task(KILL_SELF, give_up_tune)
def render_then_die(self: object, batch_id: str, tune_id: str) -> None:
    """Stands in for a render that takes its worker process down (OOM kill, segfault)."""
    del self, batch_id, tune_id
    os.kill(os.getpid(), signal.SIGKILL)


HOLD = "tunebatch.test.hold"


def _redis() -> redis.Redis:
    """The workers' own Redis client: the counters live beside the records they test."""
    from common.state.redis import RedisRecords
    from worker.runtime import records

    shared = records()
    assert isinstance(shared, RedisRecords), type(shared)
    return shared.r


@job_task(HOLD, None)
def hold(self: object, key: str, seconds: float) -> None:
    """A long job: counts its runs in Redis under `key`, then works for `seconds`.

    Stands in for a training run or a big chunk that outlasts the visibility timeout.
    """
    del self
    import time

    _redis().incr(key)
    time.sleep(seconds)
    _redis().incr(f"{key}:finished")


FLAKY = "tunebatch.test.flaky"


@job_task(FLAKY, None)
def flaky(self: object, key: str, failures: int) -> int:
    """Fails with a `TransientError` on its first `failures` runs (counted under `key`), then
    succeeds: stands in for a job that meets Redis or the bucket restarting."""
    del self
    from common.errors import TransientError

    runs = int(_redis().incr(key))
    if runs <= failures:
        raise TransientError(f"run {runs} of {key}: the bucket is away")
    return runs


BROKEN = "tunebatch.test.broken"


@job_task(BROKEN, None)
def broken(self: object, key: str) -> None:
    """Fails with a permanent error (bad input), counting its runs under `key`."""
    del self
    from common.errors import InvalidInputError

    _redis().incr(key)
    raise InvalidInputError(f"{key}: this input can never work")
