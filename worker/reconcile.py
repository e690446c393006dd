"""The reconciler's thread in each worker's main process: `common.jobs.reconcile` once a period.

Every worker runs the thread; a Redis ``SET NX PX`` lets one of them reconcile per period (the
visibility timeout, so a job Redis lost is sent again within about one timeout, as one whose
worker died is). The broker is read as kombu's Redis transport stores it: each queue a list of
messages, the messages workers hold in the ``unacked`` hash; all three in one transaction, so a
message moving between a queue and the hash is seen once, not missed.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis
from celery import Celery
from kombu.transport.redis import Channel

from common.dispatch.config import make_app
from common.dispatch.enqueue import enqueue
from common.dispatch.names import GENERATE, QUEUES
from common.jobs import reconcile
from common.jobs.reconcile import Job
from common.settings import Settings
from common.state import keys
from common.state.open import shared_records

log = logging.getLogger(__name__)

#: kombu's hash of the messages taken by a worker and not yet acknowledged.
UNACKED = Channel.unacked_key
#: Seconds between the reconciler's two looks at the broker (see `common.jobs.reconcile`).
CONFIRM_S = 2.0


def _job(message: dict[str, Any]) -> Job | None:
    """The job of one kombu message (JSON body ``[args, kwargs, embed]``); None if not ours."""
    try:
        task = str(message["headers"]["task"])
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if task not in QUEUES:
        return None
    return Job(task, tuple(str(a) for a in args))


def broker_jobs(client: redis.Redis, queues: Iterable[str] = ("gpu", "cpu")) -> set[Job]:
    """Every job message in the queues and the unacked hash, read in one transaction."""
    names = sorted(set(queues))
    pipe = client.pipeline(transaction=True)
    for queue in names:
        pipe.lrange(queue, 0, -1)
    pipe.hvals(UNACKED)
    *lists, held = pipe.execute()
    raws = [raw for found in lists for raw in found]
    jobs = {_job(json.loads(raw)) for raw in raws}
    for raw in held:
        jobs.add(_job(json.loads(raw)[0]))  # [message, exchange, routing key]
    return {j for j in jobs if j is not None}


class Reconciler:
    """Runs `common.jobs.reconcile.reconcile` every `interval_s` in a daemon thread, in one
    worker of the cluster at a time."""

    def __init__(self, settings: Settings, interval_s: float | None = None) -> None:
        assert settings.broker_url is not None
        self.interval_s = float(interval_s or settings.visibility_timeout_s)
        self.records = shared_records(settings.broker_url)
        self.client = redis.Redis.from_url(
            settings.broker_url, socket_connect_timeout=3, socket_timeout=10
        )
        self._app: Celery = make_app(settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _send(self, job: Job) -> None:
        args: list[Any] = list(job.args)
        if job.task == GENERATE:
            args[1] = int(args[1])
        enqueue(job.task, *args, celery_app=self._app)
        self.client.hincrby(keys.RECONCILED, job.task, 1)

    def run_once(self) -> list[Job]:
        """Reconcile if no other worker did this period; the jobs sent again."""
        lock_ms = max(1, int(self.interval_s * 1000 * 0.9))
        if not self.client.set(keys.RECONCILE_LOCK, "1", nx=True, px=lock_ms):
            return []
        return reconcile.reconcile(
            self.records,
            lambda: broker_jobs(self.client),
            self._send,
            confirm_s=CONFIRM_S,
            sleep=time.sleep,
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception as exc:  # Redis restarting: the next period tries again
                log.warning("reconciling open batches failed: %s", exc)
