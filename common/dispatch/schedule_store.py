"""The schedule store: scheduled dataset-wide generation as celery-redbeat entries in Redis.

A schedule is a `RedBeatSchedulerEntry` named ``tunebatch:<name>`` whose task is
``tunebatch.run_schedule`` and whose one argument is the `common.jobs.schedules.ScheduleSpec` as
JSON. Redbeat keeps it in Redis (``redbeat:tunebatch:<name>`` and the sorted set
``redbeat::schedule``), so the producer adds, lists and removes schedules without touching beat,
they survive restarts of beat and Redis (AOF), and beat's Redis lock makes a schedule fire once
even when two beat processes run. What a firing does is the worker's (`worker.schedules`).

Beat (`worker.beat`) also writes down here which slot each firing was for and which slots it
missed (a Redis outage longer than the gap between two slots: the latest fires once when Redis
is back, the older ones are recorded as missed), so `producer schedule list` and the compose
audit count firings against the timetable instead of trusting the log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from celery import Celery
from celery.schedules import crontab
from celery.schedules import schedule as every
from celery.utils.time import ffwd, remaining
from pydantic import BaseModel
from redbeat import RedBeatSchedulerEntry
from redbeat.schedulers import ensure_conf, get_redis

from common.dispatch.enqueue import enqueue
from common.dispatch.names import CPU_QUEUE, RUN_SCHEDULE
from common.errors import BrokerError, InvalidInputError, NotFoundError
from common.jobs.schedules import ScheduleSpec
from common.lstm.registry import LATEST
from common.schemas import check_name
from common.state.redis import safe_url

#: Entry names are ``tunebatch:<schedule name>``: other redbeat entries in the same Redis are
#: not ours to list or remove.
ENTRY_PREFIX = "tunebatch:"
#: Per redbeat entry, newest first: its firings (JSON `Firing`) and the slots it missed (ISO
#: times). Both lists keep the last `HISTORY` items.
FIRED_KEY = "tunebatch:beat:fired:{entry}"
MISSED_KEY = "tunebatch:beat:missed:{entry}"
HISTORY = 1000


class Firing(BaseModel):
    """One firing of a schedule: the slot of its timetable it was for, and when beat sent it."""

    slot: datetime
    fired_at: datetime

    @property
    def late_s(self) -> float:
        return (self.fired_at - self.slot).total_seconds()


class ScheduleInfo(BaseModel):
    """A schedule as `producer schedule list` shows it; times in UTC.

    `next_run_at` is the time beat will fire it: redbeat's score for the entry in the sorted set
    beat reads (to the second; Celery's crontab estimate lands a few microseconds before the
    minute, and beat then waits for the minute), not an estimate made again at each listing.
    `last_run_at` is None until beat has fired it once (redbeat stores the time a schedule was
    added in the same field, as the base its first due time is counted from).
    """

    spec: ScheduleSpec
    when: str
    last_run_at: datetime | None
    next_run_at: datetime | None
    total_run_count: int
    #: The slot beat's last firing was for (`last_run_at` is when it was sent, later after an
    #: outage) and the slots beat skipped (an outage spanning several: only the latest fires).
    last_slot: datetime | None = None
    missed_slots: int = 0
    last_missed_slot: datetime | None = None


def parse_cron(expr: str) -> crontab:
    """The five cron fields (minute hour day-of-month month day-of-week) as a Celery crontab."""
    fields = expr.split()
    if len(fields) != 5:
        raise InvalidInputError(
            f"cron expression {expr!r} has {len(fields)} fields, not 5 "
            '(minute hour day-of-month month day-of-week, e.g. "0 3 * * *")'
        )
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month,
            day_of_week=day_of_week,
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInputError(f"cron expression {expr!r} is not valid: {exc}") from None


def check_spec(spec: ScheduleSpec) -> None:
    """What a schedule needs beyond its field types (its formats are one: `Formats`): a valid
    cron, a usable model reference."""
    parse_cron(spec.cron)
    if spec.retrain_if_changed and spec.model.strip().lower() != LATEST:
        raise InvalidInputError(
            "--retrain-if-changed follows the corpus's latest model (a retrained model replaces "
            "it); leave --model out or set it to 'latest'"
        )


@contextlib.contextmanager
def _redis_errors(celery_app: Celery) -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        where = safe_url(str(celery_app.conf.redbeat_redis_url))
        raise BrokerError(
            f"cannot reach Redis at {where} ({exc}); is redis-server running?"
        ) from None


def _key(celery_app: Celery, name: str) -> str:
    """Redbeat's Redis key of entry `name` (its config is set up on the app on first use)."""
    ensure_conf(celery_app)
    return str(RedBeatSchedulerEntry.generate_key(celery_app, name))


def _entry_name(name: str) -> str:
    return ENTRY_PREFIX + check_name(name)


def _entry(celery_app: Celery, name: str) -> RedBeatSchedulerEntry:
    key = _key(celery_app, _entry_name(name))
    with _redis_errors(celery_app):
        try:
            return RedBeatSchedulerEntry.from_key(key, app=celery_app)
        except KeyError:
            raise NotFoundError(f"no schedule {name!r}; see `producer schedule list`") from None


def add_schedule(
    celery_app: Celery,
    spec: ScheduleSpec,
    *,
    replace: bool = False,
    every_s: float | None = None,
) -> ScheduleInfo:
    """Store `spec` as a redbeat entry; beat picks it up at its next tick.

    `every_s` fires every so many seconds instead of on the cron expression (tests, demos).
    A new entry first fires at its next due time, not at once.
    """
    check_spec(spec)
    when: crontab | every = (
        every(run_every=every_s, app=celery_app) if every_s else parse_cron(spec.cron)
    )
    name = _entry_name(spec.name)
    with _redis_errors(celery_app):
        key = _key(celery_app, name)
        if get_redis(celery_app).exists(key) and not replace:
            raise InvalidInputError(
                f"schedule {spec.name!r} exists; remove it first or add it again with --replace"
            )
        entry = RedBeatSchedulerEntry(
            name,
            RUN_SCHEDULE,
            when,
            args=[spec.model_dump_json()],
            options={"queue": CPU_QUEUE},
            app=celery_app,
        )
        entry.save()
        score = get_redis(celery_app).zscore(celery_app.redbeat_conf.schedule_key, key)
        return _info(entry, score, get_redis(celery_app))


def _info(entry: RedBeatSchedulerEntry, score: float | None, client: Any) -> ScheduleInfo:
    spec = ScheduleSpec.model_validate_json(entry.args[0])
    when = entry.schedule
    text = spec.cron if isinstance(when, crontab) else f"every {when.run_every.total_seconds():g} s"
    runs = int(getattr(entry, "total_run_count", 0) or 0)
    with client.pipeline() as pipe:
        pipe.lindex(FIRED_KEY.format(entry=entry.name), 0)
        pipe.llen(MISSED_KEY.format(entry=entry.name))
        pipe.lindex(MISSED_KEY.format(entry=entry.name), 0)
        last_fired, missed, last_missed = pipe.execute()
    return ScheduleInfo(
        spec=spec,
        when=text,
        last_run_at=_utc(entry.last_run_at) if runs else None,
        # A negative score is redbeat's "no run ahead".
        next_run_at=_next_run(entry) if score is not None and score >= 0 else None,
        total_run_count=runs,
        last_slot=Firing.model_validate_json(last_fired).slot if last_fired else None,
        missed_slots=int(missed),
        last_missed_slot=_parse_time(last_missed) if last_missed else None,
    )


def _parse_time(raw: bytes | str) -> datetime:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return _utc(datetime.fromisoformat(text)) or datetime.fromisoformat(text)


def record_firing(
    client: Any, entry_name: str, firing: Firing, missed: Sequence[datetime] = ()
) -> None:
    """Beat's note of one firing and of the older slots it stood for (`worker.beat`)."""
    fired, skipped = FIRED_KEY.format(entry=entry_name), MISSED_KEY.format(entry=entry_name)
    with client.pipeline() as pipe:
        pipe.lpush(fired, firing.model_dump_json())
        pipe.ltrim(fired, 0, HISTORY - 1)
        if missed:
            pipe.lpush(skipped, *(slot.isoformat() for slot in sorted(missed)))
            pipe.ltrim(skipped, 0, HISTORY - 1)
        pipe.execute()


def firings(celery_app: Celery, name: str) -> tuple[list[Firing], list[datetime]]:
    """Schedule `name`'s recorded firings and missed slots, oldest first (the last `HISTORY`)."""
    entry = _entry_name(name)
    with _redis_errors(celery_app):
        client = get_redis(celery_app)
        with client.pipeline() as pipe:
            pipe.lrange(FIRED_KEY.format(entry=entry), 0, -1)
            pipe.lrange(MISSED_KEY.format(entry=entry), 0, -1)
            fired, missed = pipe.execute()
    return (
        [Firing.model_validate_json(raw) for raw in reversed(fired)],
        [_parse_time(raw) for raw in reversed(missed)],
    )


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def _next_run(entry: RedBeatSchedulerEntry) -> datetime | None:
    """When beat fires `entry`: the first time its schedule's ``is_due(last_run_at)`` holds.

    Computed from the stored ``last_run_at`` with one reading of the clock, so every listing
    gives the same time. (Redbeat's own ``due_at`` and its sorted-set score subtract the time
    of the call from an estimate made at another moment: they drift between listings and land
    up to the save's latency early, e.g. 02:59:59.4 for a 03:00 cron. Beat takes the entry at
    its score and then waits for ``is_due``, so it fires at the time computed here.)
    """
    when = entry.schedule
    last = entry.last_run_at
    if last is None:
        return None
    if isinstance(when, crontab):
        start, ends_in, now = when.remaining_delta(last, ffwd=ffwd)
        due = now + remaining(start, ends_in, now)
    else:
        now = when.maybe_make_aware(when.now())
        due = now + remaining(when.maybe_make_aware(last), when.run_every, now, when.relative)
    return datetime.fromtimestamp(round(due.timestamp()), tz=UTC)


def list_schedules(celery_app: Celery) -> list[ScheduleInfo]:
    """Every tunebatch schedule, by name."""
    prefix = _key(celery_app, ENTRY_PREFIX)
    with _redis_errors(celery_app):
        scored = get_redis(celery_app).zrange(
            celery_app.redbeat_conf.schedule_key, 0, -1, withscores=True
        )
        infos = []
        for key, score in scored:
            name = key.decode() if isinstance(key, bytes) else str(key)
            if not name.startswith(prefix):
                continue
            try:
                entry = RedBeatSchedulerEntry.from_key(name, app=celery_app)
            except KeyError:  # removed meanwhile
                continue
            infos.append(_info(entry, float(score), get_redis(celery_app)))
    return sorted(infos, key=lambda info: info.spec.name)


def get_schedule(celery_app: Celery, name: str) -> ScheduleSpec:
    return ScheduleSpec.model_validate_json(_entry(celery_app, name).args[0])


def remove_schedule(celery_app: Celery, name: str) -> None:
    entry = _entry(celery_app, name)
    with _redis_errors(celery_app):
        entry.delete()
        get_redis(celery_app).delete(
            FIRED_KEY.format(entry=entry.name), MISSED_KEY.format(entry=entry.name)
        )


def run_now(celery_app: Celery, name: str) -> str:
    """Fire schedule `name` now (beat's schedule is unchanged); return the task id."""
    _entry(celery_app, name)  # exists, else one clear line
    return enqueue(RUN_SCHEDULE, name, celery_app=celery_app)
