"""Leases on the job messages a worker holds, so a job whose worker died comes back in minutes.

With ``acks_late`` a job's message stays in kombu's Redis ``unacked`` hash until the job ends, and
kombu hands it to another worker once it has been there ``visibility_timeout`` seconds (scored by
delivery time in the ``unacked_index`` sorted set, swept by every worker). On its own that forces
a choice: a timeout above the longest job (hours, for training) means a job held by a worker whose
main process was SIGKILLed, or one a worker dropped when Redis restarted under it, waits hours;
a short one hands a long job that is still running to a second worker.

A lease removes the choice. Every worker's main process re-stamps the ``unacked_index`` score of
each message it still holds (Celery's own record of reserved and active requests) every
``visibility_timeout / 6`` seconds, so kombu's sweep never restores a message while its holder is
alive, however long the job runs; a message nobody renews (its worker is dead, or the worker lost
it with a broker connection) goes back to the queue ``visibility_timeout`` seconds after its last
renewal. ``ZADD XX`` only updates entries that still exist: an acknowledged message is never
re-added.

A thread, not a timer of the worker's event loop: the loop stops early in a warm shutdown while
the pool still finishes its jobs, and their leases must not lapse then.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterable

import redis
from kombu.transport.redis import Channel

log = logging.getLogger(__name__)

#: kombu's sorted set of unacknowledged delivery tags, scored by (last) delivery time.
UNACKED_INDEX = Channel.unacked_index_key


def renew_interval_s(visibility_timeout_s: int) -> float:
    """Renew six times per timeout: a lease survives several missed renewals (Redis restarting)."""
    return max(1.0, visibility_timeout_s / 6)


def held_delivery_tags() -> list[str]:
    """Delivery tags of the messages this worker process has reserved or is running."""
    from celery.worker import state

    while True:
        try:  # the event loop may change the sets while this thread reads them
            requests = list(itertools.chain(state.reserved_requests, state.active_requests))
            break
        except RuntimeError:
            continue
    tags = {getattr(r.message, "delivery_tag", None) for r in requests}
    return sorted(str(t) for t in tags if t)


def renew(client: redis.Redis, tags: Iterable[str], now: float | None = None) -> int:
    """Stamp `tags` as delivered `now`; returns how many were still unacked (and so renewed)."""
    stamp = time.time() if now is None else now
    mapping: dict[str, float] = {tag: stamp for tag in tags}
    if not mapping:
        return 0
    changed = client.zadd(UNACKED_INDEX, mapping, xx=True, ch=True)
    return int(changed or 0)


class LeaseRenewer:
    """Renews this worker's leases in a daemon thread until `stop` (or the process exits)."""

    def __init__(self, broker_url: str, visibility_timeout_s: int) -> None:
        self.interval_s = renew_interval_s(visibility_timeout_s)
        self._client = redis.Redis.from_url(broker_url, socket_connect_timeout=3, socket_timeout=5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lease-renewer", daemon=True)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def renew_once(self) -> int:
        tags = held_delivery_tags()
        try:
            renewed = renew(self._client, tags)
        except redis.RedisError as exc:  # Redis restarting: the next round tries again
            if not self._failing:
                log.warning("cannot renew the leases of %d jobs: %s", len(tags), exc)
            self._failing = True
            return 0
        if self._failing:
            log.info("renewing job leases again (%d held)", len(tags))
        self._failing = False
        return renewed

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.renew_once()
            except Exception:  # never let the thread die: the leases would lapse silently
                log.exception("lease renewal failed")
