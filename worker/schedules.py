"""Scheduled dataset-wide generation: schedules in Redis (celery-redbeat) and what a firing does.

A schedule is a `RedBeatSchedulerEntry` named ``tunebatch:<name>`` whose task is
``tunebatch.run_schedule`` and whose one argument is the `common.jobs.schedules.ScheduleSpec` as
JSON.
Redbeat keeps it in Redis (``redbeat:tunebatch:<name>`` and the sorted set
``redbeat::schedule``), so the producer adds, lists and removes schedules without touching beat,
they survive restarts of beat and Redis (AOF), and beat's Redis lock makes a schedule fire once
even when two beat processes run.

A firing (the ``run_schedule`` task, queue cpu: it only plans) loads the corpus and the model and
submits ONE batch through the same path as ``producer submit-batch`` (`worker.submit`). With
``retrain_if_changed`` and a corpus whose SHA-256 is not the model's ``corpus_sha256``, it
queues a training run with the model's recipe instead, chained to ``submit_scheduled``, which
submits the batch with the new model once it is registered.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import redis
from celery.schedules import crontab
from celery.schedules import schedule as every
from celery.utils.time import ffwd, remaining
from pydantic import BaseModel
from redbeat import RedBeatSchedulerEntry
from redbeat.schedulers import ensure_conf, get_redis

from common.abc.corpus import Corpus, load_corpus
from common.errors import BrokerError, InvalidInputError, NotFoundError, PermanentError
from common.jobs.batches import Context
from common.jobs.schedules import ScheduleSpec, dataset_batch_spec, needs_retrain, retrain_spec
from common.lstm.registry import LATEST, resolve_model
from common.schemas import ModelRecord, RunProgress, check_name, new_run_id
from common.state.redis import RedisRecords, safe_url
from worker.celery_app import CPU_QUEUE, RUN_SCHEDULE, SUBMIT_SCHEDULED, TRAIN, app, enqueue
from worker.submit import submit_batch

log = logging.getLogger(__name__)

#: How long what a firing did is remembered (`RedisRecords.remember_fired`), so a redelivered
#: message (worker killed before the acknowledgement) does not submit twice.
FIRED_TTL_S = 7 * 24 * 3600

#: Entry names are ``tunebatch:<schedule name>``: other redbeat entries in the same Redis are
#: not ours to list or remove.
ENTRY_PREFIX = "tunebatch:"


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
    """What a schedule needs beyond its field types: a valid cron, a usable model reference."""
    from common.render import pipeline as render

    parse_cron(spec.cron)
    render.parse_formats(",".join(spec.formats))
    if spec.retrain_if_changed and spec.model.strip().lower() != LATEST:
        raise InvalidInputError(
            "--retrain-if-changed follows the corpus's latest model (a retrained model replaces "
            "it); leave --model out or set it to 'latest'"
        )


@contextlib.contextmanager
def _redis_errors(celery_app: Any) -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        where = safe_url(str(celery_app.conf.redbeat_redis_url))
        raise BrokerError(
            f"cannot reach Redis at {where} ({exc}); is redis-server running?"
        ) from None


def _key(celery_app: Any, name: str) -> str:
    """Redbeat's Redis key of entry `name` (its config is set up on the app on first use)."""
    ensure_conf(celery_app)
    return str(RedBeatSchedulerEntry.generate_key(celery_app, name))


def _entry_name(name: str) -> str:
    return ENTRY_PREFIX + check_name(name)


def _entry(celery_app: Any, name: str) -> RedBeatSchedulerEntry:
    key = _key(celery_app, _entry_name(name))
    with _redis_errors(celery_app):
        try:
            return RedBeatSchedulerEntry.from_key(key, app=celery_app)
        except KeyError:
            raise NotFoundError(f"no schedule {name!r}; see `producer schedule list`") from None


def add_schedule(
    celery_app: Any,
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
    when: Any = every(run_every=every_s, app=celery_app) if every_s else parse_cron(spec.cron)
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
    return _info(entry, score)


def _info(entry: RedBeatSchedulerEntry, score: float | None) -> ScheduleInfo:
    spec = ScheduleSpec.model_validate_json(entry.args[0])
    when = entry.schedule
    text = spec.cron if isinstance(when, crontab) else f"every {when.run_every.total_seconds():g} s"
    runs = int(getattr(entry, "total_run_count", 0) or 0)
    return ScheduleInfo(
        spec=spec,
        when=text,
        last_run_at=_utc(entry.last_run_at) if runs else None,
        # A negative score is redbeat's "no run ahead".
        next_run_at=_next_run(entry) if score is not None and score >= 0 else None,
        total_run_count=runs,
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


def list_schedules(celery_app: Any) -> list[ScheduleInfo]:
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
            infos.append(_info(entry, float(score)))
    return sorted(infos, key=lambda info: info.spec.name)


def get_schedule(celery_app: Any, name: str) -> ScheduleSpec:
    return ScheduleSpec.model_validate_json(_entry(celery_app, name).args[0])


def remove_schedule(celery_app: Any, name: str) -> None:
    entry = _entry(celery_app, name)
    with _redis_errors(celery_app):
        entry.delete()


def run_now(celery_app: Any, name: str) -> str:
    """Fire schedule `name` now (beat's schedule is unchanged); return the task id."""
    _entry(celery_app, name)  # exists, else one clear line
    return enqueue(RUN_SCHEDULE, name, celery_app=celery_app)


# --- what a firing does (the tasks in worker.tasks call these) --------------------------------
def resolve_spec(celery_app: Any, name_or_spec_json: str) -> ScheduleSpec:
    """The argument of run_schedule: a spec as JSON (beat) or a schedule's name (run-now)."""
    text = name_or_spec_json.strip()
    if text.startswith("{"):
        return ScheduleSpec.model_validate_json(text)
    return get_schedule(celery_app, text)


@contextlib.contextmanager
def _once(records: RedisRecords, task_id: str | None) -> Iterator[list[str]]:
    """Remember what the task with `task_id` did; a redelivery finds it in ``done[0]``."""
    done: list[str] = []
    prior = records.fired(task_id) if task_id else None
    if prior is not None:
        done.append(prior)
    yield done
    if task_id and done:
        records.remember_fired(task_id, done[0], FIRED_TTL_S)


def fire(
    ctx: Context,
    records: RedisRecords,
    name_or_spec_json: str,
    *,
    celery_app: Any = app,
    task_id: str | None = None,
) -> str:
    """Plan and submit the schedule's batch, or queue the retraining run that precedes it.

    Returns ``batch <id>`` or ``training run <id>`` (for the log). Run again with the same
    `task_id` (a redelivery), it returns what the first run did and submits nothing.
    """
    with _once(records, task_id) as done:
        if not done:
            done.append(_fire(ctx, records, name_or_spec_json, celery_app))
    return done[0]


def _fire(ctx: Context, records: RedisRecords, name_or_spec_json: str, celery_app: Any) -> str:
    spec = resolve_spec(celery_app, name_or_spec_json)
    corpus = load_corpus(ctx.store, spec.corpus)
    by_corpus = spec.corpus if spec.model.strip().lower() == LATEST else None
    model = resolve_model(ctx.store, spec.model, corpus=by_corpus)
    if spec.retrain_if_changed and needs_retrain(corpus, model):
        train = retrain_spec(spec.corpus, model)
        run = RunProgress(id=new_run_id(), spec=train, epochs=train.epochs)
        records.create_run(run)
        then = celery_app.signature(
            SUBMIT_SCHEDULED, args=(spec.model_dump_json(),), queue=CPU_QUEUE
        )
        enqueue(TRAIN, train.model_dump_json(), run.id, task_id=run.id, celery_app=celery_app,
                link=then)  # fmt: skip
        log.info(
            "schedule %s: corpus %s changed since model %s; training run %s first",
            spec.name, spec.corpus, model.short_id, run.id,
        )  # fmt: skip
        return f"training run {run.id}"
    return f"batch {_submit(ctx, records, spec, corpus, model, celery_app)}"


def submit_after_training(
    ctx: Context,
    records: RedisRecords,
    model_id: str | None,
    spec_json: str,
    *,
    celery_app: Any = app,
    task_id: str | None = None,
) -> str:
    """The end of the retraining chain: submit the schedule's batch with the new model."""
    with _once(records, task_id) as done:
        if not done:
            done.append(_submit_after_training(ctx, records, model_id, spec_json, celery_app))
    return done[0]


def _submit_after_training(
    ctx: Context, records: RedisRecords, model_id: str | None, spec_json: str, celery_app: Any
) -> str:
    spec = ScheduleSpec.model_validate_json(spec_json)
    if not model_id:  # the training job was given up on (see worker.tasks.JobTask)
        raise PermanentError(
            f"schedule {spec.name}: the retraining run registered no model; no batch submitted"
        )
    model = resolve_model(ctx.store, model_id)
    corpus = load_corpus(ctx.store, spec.corpus)
    return f"batch {_submit(ctx, records, spec, corpus, model, celery_app)}"


def _submit(
    ctx: Context,
    records: RedisRecords,
    spec: ScheduleSpec,
    corpus: Corpus,
    model: ModelRecord,
    celery_app: Any,
) -> str:
    seed = spec.seed if spec.seed is not None else secrets.randbelow(2**31)
    batch_spec = dataset_batch_spec(
        spec, corpus, model, chunk_size=ctx.settings.chunk_size, seed=seed
    )
    batch = submit_batch(ctx, records, batch_spec, celery_app=celery_app)
    log.info(
        "schedule %s: batch %s, %d tunes primed by %s with model %s",
        spec.name, batch.id, batch_spec.count, corpus.record.name, model.short_id,
    )  # fmt: skip
    return batch.id
