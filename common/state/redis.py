"""Job records in Redis: the shared, live state of batches, tunes, training runs and task attempts.

Why Redis: producers and workers on different machines must agree on every tune's status, and the
broker is already a Redis, so the records live beside the queues (one server to run, AOF on).

Why a compare-and-set script: a tune's status changes several times per tune, from different
processes, and the per-status counters that `producer status` and the finalize trigger read must
stay exact. Each change is computed in Python with the same code as the local backend
(`common.state.base.apply_update` → `schemas.ALLOWED_TRANSITIONS`), then written by one Lua
script that only applies it if the stored JSON is still the one the check was made against, and
moves the counters in the same atomic step. A lost race (rare: one job owns a tune at a time)
re-reads and re-checks. The JSON itself is never re-encoded in Lua: Redis' cjson would turn
``[]`` into ``{}``.

Keys: `common.state.keys` builds every one of them.

Every Redis failure surfaces as our own error with the server's URL, password left out:
`BrokerError` (transient) when Redis cannot be reached, `ConfigError` when it refuses the
credentials.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from common.errors import BrokerError, ConfigError, InvalidInputError, NotFoundError
from common.schemas import (
    FINAL_STATUSES,
    BatchRecord,
    RunProgress,
    TuneRecord,
    TuneStatus,
    now,
    tune_index,
)
from common.state import keys
from common.state.base import DeadLetter, SharedRecords, apply_update, check_reset

log = logging.getLogger(__name__)

#: Tunes per HSET command when a batch is created (one transaction either way).
_CREATE_SLICE = 5000
#: Re-reads after a lost compare-and-set before giving up (contention means a bug elsewhere).
_CAS_TRIES = 100

# KEYS: tunes hash, counts hash. ARGV: tune id, expected JSON, new JSON, old status, new status.
# Returns 1 when applied, 0 when the record changed since it was read, -1 when it is missing.
_CAS_TUNE = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return -1 end
if cur ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] ~= ARGV[5] then
  redis.call('HINCRBY', KEYS[2], ARGV[4], -1)
  redis.call('HINCRBY', KEYS[2], ARGV[5], 1)
end
return 1
"""

# KEYS: counts hash, guard key. ARGV: total tunes, the final statuses...
# Sets the guard (and returns 1) only when every tune is final and nobody set it before.
_CLAIM_FINALIZE = """
local final = 0
for i = 2, #ARGV do
  final = final + tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
end
if final < tonumber(ARGV[1]) then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX') then return 1 end
return 0
"""


def safe_url(url: str) -> str:
    """The URL as it may be shown to people: scheme, user, host, port and db; no password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparseable redis URL)"
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def connect(url: str, *, retries: int = 3, timeout_s: float = 5.0) -> redis.Redis:
    """A client for `url` that fails within about ``timeout_s * (retries + 1)`` when Redis is down.

    The producer passes few retries so a user waits seconds, not a minute, for the error; workers
    pass more, since Celery retries the whole task anyway.
    """
    try:
        return redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=timeout_s,
            socket_timeout=max(timeout_s, 10.0),
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
    except ValueError as exc:
        raise ConfigError(f"TUNEBATCH_BROKER_URL is not a redis:// URL: {exc}") from exc


class RedisRecords(SharedRecords):
    """`SharedRecords` in Redis (the contract of each method is in `common.state.base`)."""

    def __init__(self, client: redis.Redis, url: str = "") -> None:
        self.r = client
        self.url = safe_url(url) if url else "Redis"
        self._cas_tune = client.register_script(_CAS_TUNE)
        self._claim = client.register_script(_CLAIM_FINALIZE)

    @classmethod
    def from_url(cls, url: str, *, retries: int = 3, timeout_s: float = 5.0) -> RedisRecords:
        return cls(connect(url, retries=retries, timeout_s=timeout_s), url)

    # -- errors ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except redis.AuthenticationError as exc:
            raise ConfigError(
                f"Redis at {self.url} refused the credentials while {doing} ({exc}); "
                "check the password in TUNEBATCH_BROKER_URL"
            ) from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BrokerError(
                f"cannot reach Redis at {self.url} while {doing} ({reason}); is redis-server "
                "running and TUNEBATCH_BROKER_URL right?"
            ) from None
        except redis.RedisError as exc:
            raise BrokerError(f"Redis at {self.url} failed while {doing}: {exc}") from None

    def ping(self) -> None:
        with self._errors("connecting"):
            self.r.ping()

    # -- batches -----------------------------------------------------------------------------
    def create_batch(self, batch: BatchRecord, tunes: list[TuneRecord]) -> None:
        """Write tunes, counters, batch and list entry in one transaction: all or nothing."""
        key = keys.batch_key(batch.id)
        tunes_key, counts_key = keys.batch_tunes_key(batch.id), keys.batch_counts_key(batch.id)
        counts = {s.value: 0 for s in TuneStatus}
        for tune in tunes:
            counts[tune.status.value] += 1
        with self._errors(f"creating batch {batch.id}"):
            if self.r.exists(key):
                raise InvalidInputError(f"batch {batch.id} exists already")
            pipe = self.r.pipeline(transaction=True)
            pipe.delete(tunes_key, counts_key, keys.batch_finalize_key(batch.id))
            for start in range(0, len(tunes), _CREATE_SLICE):
                part = tunes[start : start + _CREATE_SLICE]
                pipe.hset(tunes_key, mapping={t.tune_id: t.model_dump_json() for t in part})
            pipe.hset(counts_key, mapping=dict[Any, Any](counts))
            if batch.cancelled:
                pipe.set(keys.batch_cancelled_key(batch.id), "1")
            # The batch record last: readers treat a batch as existing once it is there.
            pipe.set(key, batch.model_dump_json())
            pipe.zadd(keys.BATCHES, {batch.id: batch.created_at.timestamp()})
            pipe.sadd(keys.OPEN_BATCHES, batch.id)
            pipe.execute()

    def delete_batch(self, batch_id: str) -> None:
        """Remove every key of a batch (used to undo a submission whose enqueue failed)."""
        with self._errors(f"deleting batch {batch_id}"):
            pipe = self.r.pipeline(transaction=True)
            pipe.zrem(keys.BATCHES, batch_id)
            pipe.srem(keys.OPEN_BATCHES, batch_id)
            pipe.delete(*keys.batch_keys(batch_id))
            pipe.execute()

    def get_batch(self, batch_id: str) -> BatchRecord:
        with self._errors(f"reading batch {batch_id}"):
            pipe = self.r.pipeline(transaction=False)
            pipe.get(keys.batch_key(batch_id))
            pipe.exists(keys.batch_cancelled_key(batch_id))
            raw, flagged = pipe.execute()
        if raw is None:
            raise NotFoundError(f"no batch {batch_id}; see `producer list`")
        batch = BatchRecord.model_validate_json(raw)
        batch.cancelled = batch.cancelled or bool(flagged)
        return batch

    def save_batch(self, batch: BatchRecord) -> None:
        """Write the record; a batch with a manifest leaves the open set, one without (a retry
        withdrew it) joins it again, in the same transaction."""
        with self._errors(f"saving batch {batch.id}"):
            pipe = self.r.pipeline(transaction=True)
            if batch.cancelled:
                pipe.set(keys.batch_cancelled_key(batch.id), "1")
            if batch.manifest_key:
                pipe.srem(keys.OPEN_BATCHES, batch.id)
            else:
                pipe.sadd(keys.OPEN_BATCHES, batch.id)
            pipe.set(keys.batch_key(batch.id), batch.model_dump_json(), xx=True)
            written = pipe.execute()[-1]
        if not written:
            with self._errors(f"saving batch {batch.id}"):
                self.r.srem(keys.OPEN_BATCHES, batch.id)
            raise NotFoundError(f"no batch {batch.id}; see `producer list`")

    def open_batches(self) -> list[str]:
        """Ids of the batches without a manifest yet (created, not finalized), sorted."""
        with self._errors("listing open batches"):
            return sorted(str(b) for b in self.r.smembers(keys.OPEN_BATCHES))

    def is_cancelled(self, batch_id: str) -> bool:
        """One EXISTS: generation asks this between compiled steps."""
        with self._errors(f"reading batch {batch_id}"):
            return bool(self.r.exists(keys.batch_cancelled_key(batch_id)))

    def list_batches(self, limit: int | None = None) -> list[BatchRecord]:
        with self._errors("listing batches"):
            ids = [
                str(i)
                for i in self.r.zrevrange(keys.BATCHES, 0, -1 if limit is None else limit - 1)
            ]
            if not ids:
                return []
            raws = self.r.mget([keys.batch_key(i) for i in ids])
            flags = self.r.mget([keys.batch_cancelled_key(i) for i in ids])
        out = []
        for raw, flag in zip(raws, flags, strict=True):
            if raw is None:
                continue
            batch = BatchRecord.model_validate_json(raw)
            batch.cancelled = batch.cancelled or flag is not None
            out.append(batch)
        return out

    def counts(self, batch_id: str) -> dict[str, int]:
        """Exact per-status counts from the counters (one HGETALL, no tune is read)."""
        with self._errors(f"reading batch {batch_id}"):
            raw = self.r.hgetall(keys.batch_counts_key(batch_id))
        if not raw:
            raise NotFoundError(f"no batch {batch_id}; see `producer list`")
        return {s.value: int(raw.get(s.value, 0)) for s in TuneStatus}

    # -- tunes -------------------------------------------------------------------------------
    def get_tune(self, batch_id: str, tune_id: str) -> TuneRecord:
        tune_index(tune_id)
        with self._errors(f"reading tune {batch_id}/{tune_id}"):
            raw = self.r.hget(keys.batch_tunes_key(batch_id), tune_id)
        if raw is None:
            raise NotFoundError(f"batch {batch_id} has no tune {tune_id}")
        return TuneRecord.model_validate_json(raw)

    def tunes(self, batch_id: str) -> list[TuneRecord]:
        with self._errors(f"reading tunes of {batch_id}"):
            raw = self.r.hgetall(keys.batch_tunes_key(batch_id))
        if not raw:
            raise NotFoundError(f"no batch {batch_id}; see `producer list`")
        return [TuneRecord.model_validate_json(raw[k]) for k in sorted(raw)]

    def _swap(self, batch_id: str, tune_id: str, change: Any, doing: str) -> TuneRecord:
        """Read, compute the new record with `change(old)`, write if unchanged; retry on races."""
        tune_index(tune_id)
        tunes_key, counts_key = keys.batch_tunes_key(batch_id), keys.batch_counts_key(batch_id)
        with self._errors(f"{doing} tune {batch_id}/{tune_id}"):
            for _ in range(_CAS_TRIES):
                raw = self.r.hget(tunes_key, tune_id)
                if raw is None:
                    raise NotFoundError(f"batch {batch_id} has no tune {tune_id}")
                old = TuneRecord.model_validate_json(raw)
                new: TuneRecord = change(TuneRecord.model_validate_json(raw))
                applied = self._cas_tune(
                    keys=[tunes_key, counts_key],
                    args=[tune_id, raw, new.model_dump_json(), old.status.value, new.status.value],
                )
                if applied == 1:
                    return new
                if applied == -1:
                    raise NotFoundError(f"batch {batch_id} has no tune {tune_id}")
        raise BrokerError(
            f"tune {batch_id}/{tune_id} kept changing while {doing} it ({_CAS_TRIES} tries)"
        )

    def update_tune(
        self, batch_id: str, tune_id: str, status: TuneStatus | None = None, **fields: Any
    ) -> TuneRecord:
        return self._swap(
            batch_id, tune_id, lambda tune: apply_update(tune, status, fields), "updating"
        )

    def reset_tune(self, tune: TuneRecord, *, was: TuneStatus | None = None) -> None:
        fresh = tune.model_copy(update={"updated_at": now()})

        def change(old: TuneRecord) -> TuneRecord:
            check_reset(old, was)
            return fresh

        self._swap(tune.batch_id, tune.tune_id, change, "resetting")

    # -- finalize guard ----------------------------------------------------------------------
    def claim_finalize(self, batch_id: str) -> bool:
        """True for exactly one caller, and only once every tune of the batch is final.

        The caller then enqueues ``finalize_batch``; everyone else (a render finishing at the
        same moment, a redelivered task) sees False.
        """
        batch = self.get_batch(batch_id)
        with self._errors(f"finalizing batch {batch_id}"):
            claimed = self._claim(
                keys=[keys.batch_counts_key(batch_id), keys.batch_finalize_key(batch_id)],
                args=[batch.spec.count, *(s.value for s in FINAL_STATUSES)],
            )
        return bool(claimed)

    def finalize_claimed(self, batch_id: str) -> bool:
        """Whether a finalize was claimed (and so enqueued) and not released since."""
        with self._errors(f"finalizing batch {batch_id}"):
            return bool(self.r.exists(keys.batch_finalize_key(batch_id)))

    def release_finalize(self, batch_id: str) -> None:
        """Allow a new finalize (after `retry --failed`, or when a finalize job gave up)."""
        with self._errors(f"finalizing batch {batch_id}"):
            self.r.delete(keys.batch_finalize_key(batch_id))

    # -- training runs -----------------------------------------------------------------------
    def create_run(self, run: RunProgress) -> None:
        with self._errors(f"creating training run {run.id}"):
            pipe = self.r.pipeline(transaction=True)
            pipe.set(keys.run_progress_key(run.id), run.model_dump_json(), nx=True)
            pipe.zadd(keys.RUNS, {run.id: run.created_at.timestamp()})
            created, _ = pipe.execute()
        if not created:
            raise InvalidInputError(f"training run {run.id} exists already")

    def get_run(self, run_id: str) -> RunProgress:
        with self._errors(f"reading training run {run_id}"):
            raw = self.r.get(keys.run_progress_key(run_id))
        if raw is None:
            raise NotFoundError(f"no training run {run_id}; see `producer runs`")
        return RunProgress.model_validate_json(raw)

    def update_run(self, run_id: str, **fields: Any) -> RunProgress:
        """Last writer wins: one worker at a time writes a run (the producer only creates it)."""
        run = self.get_run(run_id).model_copy(update={**fields, "updated_at": now()})
        run = RunProgress.model_validate(run.model_dump())
        with self._errors(f"updating training run {run_id}"):
            self.r.set(keys.run_progress_key(run_id), run.model_dump_json())
        return run

    def list_runs(self, limit: int = 50) -> list[RunProgress]:
        with self._errors("listing training runs"):
            ids = [str(i) for i in self.r.zrevrange(keys.RUNS, 0, limit - 1)]
            raws = self.r.mget([keys.run_progress_key(i) for i in ids]) if ids else []
        return [RunProgress.model_validate_json(r) for r in raws if r is not None]

    # -- task attempts and the dead-letter list ----------------------------------------------
    def count_attempt(self, task_id: str, ttl_s: int) -> int:
        """Count one more delivery of task message `task_id`; return the deliveries so far."""
        key = keys.attempts_key(task_id)
        with self._errors("counting a task attempt"):
            pipe = self.r.pipeline(transaction=True)
            pipe.incr(key)
            pipe.expire(key, ttl_s)
            attempts, _ = pipe.execute()
        return int(attempts)

    def attempts(self, task_id: str) -> int:
        with self._errors("counting a task attempt"):
            raw = self.r.get(keys.attempts_key(task_id))
        return int(raw) if raw else 0

    def uncount_attempt(self, task_id: str) -> None:
        """Take back a delivery that did no work (a requeue at worker shutdown)."""
        with self._errors("counting a task attempt"):
            self.r.decr(keys.attempts_key(task_id))

    def forget_attempts(self, task_id: str) -> None:
        with self._errors("counting a task attempt"):
            self.r.delete(keys.attempts_key(task_id))

    def push_dead_letter(self, entry: DeadLetter) -> None:
        with self._errors("writing the dead-letter list"):
            self.r.rpush(keys.DEAD_LETTER, entry.model_dump_json())

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """The newest `limit` entries, oldest first."""
        with self._errors("reading the dead-letter list"):
            raws = self.r.lrange(keys.DEAD_LETTER, -limit, -1)
        return [DeadLetter.model_validate_json(r) for r in raws]

    # -- schedule firings --------------------------------------------------------------------
    def fired(self, task_id: str) -> str | None:
        """What the schedule firing with `task_id` did ("batch <id>"), or None if it has not."""
        with self._errors("reading a schedule firing"):
            raw = self.r.get(keys.schedule_fired_key(task_id))
        return None if raw is None else str(raw)

    def remember_fired(self, task_id: str, what: str, ttl_s: int) -> None:
        """Record what a firing did, so a redelivered message does not fire it again."""
        with self._errors("recording a schedule firing"):
            self.r.set(keys.schedule_fired_key(task_id), what, ex=ttl_s)
