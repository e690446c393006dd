"""The beat scheduler: celery-redbeat's, made to ride out a Redis outage and to say it is alive.

Every way beat is started (``worker beat``, ``celery -A worker.celery_app beat``, compose, k8s)
ends up here through the ``beat_scheduler`` setting. On top of redbeat it keeps these rules:

* Timing: a ``--max-interval`` too long for the lock, or settings that contradict each other,
  stop beat at once with one message instead of a ``LockNotOwnedError`` minutes later.
* A Redis outage is waited out, not fatal: a tick that cannot reach Redis is retried with
  backoff (1 s doubling to `MAX_BACKOFF_S`), where redbeat would let the ConnectionError end
  beat with its lock still held. A firing whose publish failed after redbeat had advanced the
  entry is put back, so the slot fires when Redis answers again.
* A slot missed during an outage fires once when Redis is back (Celery's ``is_due`` sees it
  overdue). When an outage spans several slots only the latest fires; the older ones are written
  down as missed (`common.dispatch.schedule_store.record_firing`), and `producer schedule list`
  shows them. Every firing is written down with the slot it was for.
* The lock: taken without blocking at each tick (a beat waiting for it still ticks, as a
  standby), released when beat stops, and its value names the holder (host, pid). A beat that
  finds the lock held by an earlier process on its own host that is no longer running (the same
  container or pod restarted after a crash or an OOM kill) takes it over at once instead of
  waiting out the lock's lifetime; a holder elsewhere is waited out as before.
* Health: after each tick that reached Redis, beat writes the time to a heartbeat file
  (`Settings.beat_heartbeat_file`); ``worker beat-health`` fails when that is older than the
  loop interval plus `HEARTBEAT_SLACK_S`, so the health check says whether beat ticks, not
  whether a lock key exists.
* Metrics: with ``TUNEBATCH_METRICS_PORT`` set, beat serves its last tick, firings, missed
  slots, Redis errors and lock state (`worker.beat_metrics`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
from celery.schedules import crontab
from celery.signals import beat_init
from celery.utils.time import ffwd
from kombu.exceptions import OperationalError
from redbeat import RedBeatScheduler
from redbeat.schedulers import (
    LUA_EXTEND_TO_SCRIPT,
    RedBeatSchedulerEntry,
    acquire_distributed_beat_lock,
    get_redis,
)
from redis.exceptions import LockNotOwnedError

from common.dispatch.schedule_store import ENTRY_PREFIX, Firing, record_firing
from common.settings import Settings, check_beat_timing
from worker.beat_metrics import BeatMetrics

log = logging.getLogger(__name__)

#: The ``beat_scheduler`` / ``--scheduler`` name of `Scheduler`.
SCHEDULER = "worker.beat:Scheduler"
#: Longest wait between two tries to reach Redis during an outage (also capped by the loop
#: interval): a slot missed in the outage fires at most this long after Redis is back.
MAX_BACKOFF_S = 8.0
#: The heartbeat may be this much older than the loop interval: the tick itself (sending due
#: tasks, Redis round trips) takes time on top of the sleep.
HEARTBEAT_SLACK_S = 15.0
#: Errors that mean "Redis (the schedule store and the broker) cannot be reached right now".
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, OperationalError, ConnectionError)

#: Replace the lock's value only if it is still the dead holder's (another beat may have taken
#: it between our read and this write).
_LUA_TAKE_OVER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
    return 1
end
return 0
"""

# Redbeat's own start-up handler blocks in `lock.acquire()` until the lock is free, and a Redis
# error there leaves beat without a lock and dead at its first tick; `Scheduler.tick` takes the
# lock instead.
beat_init.disconnect(acquire_distributed_beat_lock)


def heartbeat_path(settings: Settings) -> Path:
    return settings.beat_heartbeat_file or Path(tempfile.gettempdir()) / "tunebatch-beat.json"


@dataclass(frozen=True)
class Heartbeat:
    """What beat writes after each tick that reached Redis, and the health check reads."""

    tick: float  # time.time() of the tick
    state: str  # "active" (holds the lock, fires) or "standby" (another beat holds it)
    loop_interval_s: float
    pid: int

    def stale_after_s(self) -> float:
        return self.loop_interval_s + HEARTBEAT_SLACK_S

    def problem(self, now: float) -> str | None:
        """Why this heartbeat says beat is not ticking, or None."""
        age = now - self.tick
        if age > self.stale_after_s():
            return (
                f"beat (pid {self.pid}) last ticked {age:.0f} s ago, more than its loop interval "
                f"{self.loop_interval_s:g} s + {HEARTBEAT_SLACK_S:g} s: it is stuck, or cannot "
                "reach Redis (see its log)"
            )
        return None


def read_heartbeat(path: Path) -> Heartbeat:
    """The heartbeat in `path`; FileNotFoundError when beat has not ticked (or has stopped)."""
    return Heartbeat(**json.loads(path.read_text()))


def check_health(settings: Settings, now: float | None = None) -> str | None:
    """``worker beat-health``: None when beat ticked within its loop interval, else why not."""
    path = heartbeat_path(settings)
    try:
        beat = read_heartbeat(path)
    except FileNotFoundError:
        return f"no heartbeat at {path}: beat has not reached Redis since it started, or stopped"
    except (ValueError, TypeError) as exc:
        return f"heartbeat {path} is unreadable ({exc}); is another program writing it?"
    return beat.problem(time.time() if now is None else now)


def due_slots(
    when: Any, last_run_at: datetime, now: datetime, limit: int = 10_000
) -> list[datetime]:
    """The slots of schedule `when` after `last_run_at` up to `now`, oldest first.

    A crontab's slots are its own times; an interval schedule's are `last_run_at` plus whole
    intervals (Celery counts it from the last run).
    """
    slots: list[datetime] = []
    t = when.maybe_make_aware(last_run_at)
    now = when.maybe_make_aware(now)
    while len(slots) < limit:
        if isinstance(when, crontab):
            start, delta, _ = when.remaining_delta(t, ffwd=ffwd)
            t = start + delta
        else:
            t = t + when.run_every
        if t > now:
            break
        slots.append(t)
    return slots


def _outage(exc: BaseException | None) -> bool:
    """Whether `exc` comes from Redis being unreachable (Celery wraps a failed publish in a
    SchedulingError raised while handling it)."""
    while exc is not None:
        if isinstance(exc, REDIS_DOWN):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class Scheduler(RedBeatScheduler):  # type: ignore[misc]  # redbeat has no type hints
    """`RedBeatScheduler` that waits out Redis outages, records its firings and heartbeats."""

    lock: Any = None  # redis-py's Lock while this beat holds redbeat's lock

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        check_beat_timing(float(self.max_interval), float(self.lock_timeout))
        settings = Settings()
        self._heartbeat = heartbeat_path(settings)
        self._token = f"{socket.gethostname()}|{os.getpid()}|{uuid.uuid4().hex}"
        self._outage_since: float | None = None
        self._backoff_s = 0.0
        # Work that needs Redis and could not be done when it went away: entries whose firing
        # must be put back, and firings to write down.
        self._put_back: list[tuple[RedBeatSchedulerEntry, datetime | None]] = []
        self._unrecorded: list[tuple[str, Firing, list[datetime]]] = []
        self.metrics = BeatMetrics.start(settings.metrics_port)

    # --- the loop ------------------------------------------------------------------------------

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One pass: take or keep the lock, fire what is due; during an outage, back off."""
        try:
            self._catch_up()
            if not self._hold_lock():
                self._beat("standby")
                return float(min(self.max_interval, 5))
            interval = float(super().tick(*args, **kwargs))
        except LockNotOwnedError:
            log.warning("beat: lost its Redis lock (it expired, or another beat took it)")
            self._drop_lock()
            return 1.0
        except REDIS_DOWN as exc:
            return self._redis_down(exc)
        self._redis_back()
        self._beat("active")
        return interval

    def _redis_down(self, exc: BaseException) -> float:
        self.metrics.redis_error()
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning("beat: cannot reach Redis (%s); retrying with backoff, not exiting", exc)
        self._backoff_s = min(max(1.0, 2 * self._backoff_s), MAX_BACKOFF_S, self.max_interval)
        return self._backoff_s

    def _redis_back(self) -> None:
        if self._outage_since is not None:
            log.warning(
                "beat: Redis answers again after %.0f s", time.monotonic() - self._outage_since
            )
        self._outage_since = None
        self._backoff_s = 0.0

    def _beat(self, state: str) -> None:
        now = time.time()
        beat = Heartbeat(tick=now, state=state, loop_interval_s=float(self.max_interval),
                         pid=os.getpid())  # fmt: skip
        tmp = self._heartbeat.with_name(f".{self._heartbeat.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(beat.__dict__))
            tmp.replace(self._heartbeat)  # atomic: the health check never reads half a file
        except OSError as exc:  # beat keeps firing; its health check will say it is stale
            log.warning("beat: cannot write its heartbeat %s: %s", self._heartbeat, exc)
        self.metrics.ticked(now, holds_lock=state == "active")

    # --- firing ----------------------------------------------------------------------------------

    def maybe_due(self, entry: RedBeatSchedulerEntry, **kwargs: Any) -> Any:
        """Redbeat's, except that a firing lost to a Redis outage is put back and re-raised
        (redbeat logs it and moves on: the slot is lost), and every firing is written down."""
        is_due, next_time_to_run = entry.is_due()
        if not is_due:
            return next_time_to_run
        now = self.app.now()
        previous = entry.last_run_at
        slots = due_slots(entry.schedule, previous, now) if previous is not None else []
        log.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        fired = self.reserve(entry)  # advances the entry in Redis; a Redis error: nothing done
        try:
            self.apply_async(fired, advance=False, **kwargs)
        except Exception as exc:
            self._put_back.append((entry, previous))
            if _outage(exc):
                raise ConnectionError(f"sending {entry.name}: {exc}") from exc
            log.exception("Scheduler: Message Error: %s", exc)
            return next_time_to_run
        slot = slots[-1] if slots else now
        firing = Firing(slot=slot, fired_at=now)
        if len(slots) > 1:
            log.warning(
                "beat: %s missed %d slot(s) while Redis was away (%s); fired once for %s",
                entry.name, len(slots) - 1, ", ".join(f"{s:%H:%M:%S}" for s in slots[:-1]),
                f"{slot:%H:%M:%S}",
            )  # fmt: skip
        self._unrecorded.append((entry.name, firing, slots[:-1]))
        schedule = entry.name.removeprefix(ENTRY_PREFIX)
        self.metrics.fired(schedule, late_s=firing.late_s, missed=len(slots[:-1]))
        self._catch_up()
        return next_time_to_run

    def _catch_up(self) -> None:
        """What an outage left undone, now that Redis may answer: put firings back, record."""
        client = get_redis(self.app)
        while self._put_back:
            entry, previous = self._put_back[0]
            # The entry as it was before redbeat advanced it (the run count too): due again.
            entry._next_instance(last_run_at=previous, only_update_last_run_at=True)
            self._put_back.pop(0)
            log.warning("beat: %s was not sent (Redis went away); it fires again", entry.name)
        while self._unrecorded:
            name, firing, missed = self._unrecorded[0]
            record_firing(client, name, firing, missed)
            self._unrecorded.pop(0)

    # --- the lock --------------------------------------------------------------------------------

    def _hold_lock(self) -> bool:
        """Whether this beat holds the lock (taking it if free or its holder is dead)."""
        if self.lock is not None:
            return True  # redbeat's tick extends it, raising LockNotOwnedError if lost
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=1.0)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        if not lock.acquire(blocking=False, token=self._token):
            raw = client.get(self.lock_key)  # str: redbeat's client decodes responses
            holder = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            if holder is None or not self._holder_is_dead(holder):
                return False
            take_over = client.register_script(_LUA_TAKE_OVER)
            ttl_ms = int(self.lock_timeout * 1000)
            if not take_over(keys=[self.lock_key], args=[holder, self._token, ttl_ms]):
                return False
            lock.local.token = self._token.encode()
            log.warning(
                "beat: took over the lock of %s, an earlier beat on this host that stopped "
                "without releasing it", holder,
            )  # fmt: skip
        log.info("beat: Acquired lock")
        self.lock = lock
        return True

    def _holder_is_dead(self, holder: str) -> bool:
        """Whether the lock's holder was a beat on this host whose process is gone: the same
        container or pod restarted (its pid may even be ours again, in a fresh pid namespace)."""
        host, _, rest = holder.partition("|")
        pid_text = rest.partition("|")[0]
        if host != socket.gethostname() or not pid_text.isdigit():
            return False
        pid = int(pid_text)
        if pid == os.getpid():
            return True  # we hold no lock yet, so this is an earlier process with our pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, another user's
        return False

    def _drop_lock(self) -> None:
        self.lock = None
        self.metrics.ticked(None, holds_lock=False)

    def close(self) -> None:
        """Release the lock so that the next beat starts at once; remove the heartbeat."""
        self._heartbeat.unlink(missing_ok=True)
        try:
            super().close()  # releases the lock if this beat still owns it
        except REDIS_DOWN as exc:
            log.warning(
                "beat: could not release its Redis lock (%s); a beat restarted on this host takes "
                "it over, another waits up to %s s for it to expire", exc, self.lock_timeout,
            )  # fmt: skip
            self.lock = None
