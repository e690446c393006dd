"""Test-only tasks, imported by a test worker (``worker cpu --include tests.worker.poison_tasks``).

A real worker never imports this module, so the poison job exists only where a test asks for it.
"""

from __future__ import annotations

import os
import signal

from worker.tasks import give_up_tune, job_task

KILL_SELF = "tunebatch.test.render_then_die"


@job_task(KILL_SELF, give_up_tune)
def render_then_die(self: object, batch_id: str, tune_id: str) -> None:
    """Stands in for a render that takes its worker process down (OOM kill, segfault)."""
    del self, batch_id, tune_id
    os.kill(os.getpid(), signal.SIGKILL)


HOLD = "tunebatch.test.hold"


@job_task(HOLD, None)
def hold(self: object, key: str, seconds: float) -> None:
    """A long job: counts its runs in Redis under `key`, then works for `seconds`.

    Stands in for a training run or a big chunk that outlasts the visibility timeout.
    """
    del self
    import time

    from worker.tasks import records

    records().r.incr(key)
    time.sleep(seconds)
    records().r.incr(f"{key}:finished")
