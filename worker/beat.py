"""The beat scheduler: celery-redbeat's, refusing to start with a lock that can expire in a sleep.

Every way beat is started (``worker beat``, ``celery -A worker.celery_app beat``, compose, k8s)
ends up here through the ``beat_scheduler`` setting, so a ``--max-interval`` too long for the
lock, or settings that contradict each other, stop beat at once with one message instead of a
``LockNotOwnedError`` minutes later.
"""

from __future__ import annotations

from typing import Any

from redbeat import RedBeatScheduler

from common.dispatch.beat_timing import check_beat_timing

#: The ``beat_scheduler`` / ``--scheduler`` name of `Scheduler`.
SCHEDULER = "worker.beat:Scheduler"


class Scheduler(RedBeatScheduler):  # type: ignore[misc]  # redbeat has no type hints
    """`RedBeatScheduler` whose loop interval and lock timeout are checked against each other."""

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        check_beat_timing(float(self.max_interval), float(self.lock_timeout))
