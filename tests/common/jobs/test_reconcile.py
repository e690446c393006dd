"""The reconciler (`common.jobs.reconcile`, `worker.reconcile`): against a real redis-server, with
real Celery messages in the queues and a real kombu delivery in the unacked hash, a tune left
not final with no job that could finish it gets that job sent again, and only such a tune."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from kombu.connection import Connection

from common.dispatch.config import make_app, transport_options
from common.dispatch.enqueue import enqueue
from common.dispatch.names import GENERATE, RENDER
from common.jobs.reconcile import (
    Job,
    finalize_job,
    generate_job,
    missing_jobs,
    reconcile,
    render_job,
)
from common.schemas import BatchRecord, BatchSpec, TuneRecord, TuneStatus, new_batch_id, tune_id
from common.settings import Settings
from common.state import keys
from common.state.redis import RedisRecords
from tests import servers as srv
from worker.reconcile import Reconciler, broker_jobs

MODEL = "a" * 64


@pytest.fixture
def broker(redis_server: srv.RedisServer) -> Iterator[tuple[RedisRecords, redis.Redis, Settings]]:
    settings = Settings(broker_url=redis_server.url, visibility_timeout_s=20)
    client = redis.Redis.from_url(redis_server.url)
    yield RedisRecords.from_url(redis_server.url), client, settings
    client.close()


def batch_with(records: RedisRecords, statuses: list[TuneStatus], chunk_size: int = 2) -> str:
    """A batch whose tunes have `statuses` (records only: no job is sent for any of them)."""
    spec = BatchSpec(count=len(statuses), model_id=MODEL, chunk_size=chunk_size)
    batch = BatchRecord(spec=spec, id=new_batch_id())
    tunes = [
        TuneRecord(batch_id=batch.id, tune_id=tune_id(i), index=i, status=status)
        for i, status in enumerate(statuses)
    ]
    records.create_batch(batch, tunes)
    return batch.id


def take_without_ack(settings: Settings, queue: str) -> None:
    """What a worker does with the next message of `queue`: kombu moves it to the unacked hash."""
    assert settings.broker_url is not None
    options = transport_options(settings)
    with Connection(settings.broker_url, transport_options=options) as conn:  # type: ignore[no-untyped-call]
        message = conn.default_channel.basic_get(queue=queue, no_ack=False)
        assert message is not None
        conn.default_channel.qos._delivered.clear()  # a worker that died: nobody restores it


def test_only_tunes_without_a_job_that_could_finish_them_get_one(
    broker: tuple[RedisRecords, redis.Redis, Settings],
) -> None:
    records, client, settings = broker
    s = TuneStatus
    statuses = [s.DONE, s.GENERATED, s.GENERATED, s.RENDERING, s.QUEUED, s.GENERATING, s.GENERATED]
    batch_id = batch_with(records, statuses, chunk_size=2)
    app = make_app(settings)
    enqueue(RENDER, batch_id, "t000002", celery_app=app)  # t2's render waits in the queue
    enqueue(GENERATE, batch_id, 3, celery_app=app)  # chunk 3 (t6) is being generated
    take_without_ack(settings, "gpu")

    present = broker_jobs(client)
    assert present == {render_job(batch_id, "t000002"), generate_job(batch_id, 3)}
    assert records.open_batches() == [batch_id]
    # t1: generated, its render lost; t3: rendering, its render lost; t4 and t5: chunk 2 lost
    # (one job for both); t6 is generated while its chunk still runs (renders come at its end).
    assert missing_jobs(records, present, [batch_id]) == {
        render_job(batch_id, "t000001"),
        render_job(batch_id, "t000003"),
        generate_job(batch_id, 2),
    }

    sent: list[Job] = []

    def send(job: Job) -> None:
        sent.append(job)
        second = int(job.args[1]) if job.task == GENERATE else job.args[1]
        args: list[object] = [job.args[0], second]
        enqueue(job.task, *args, celery_app=app)

    lost = reconcile(
        records, lambda: broker_jobs(client), send, confirm_s=0.0, sleep=lambda _s: None
    )
    assert lost == sent == sorted(missing_jobs(records, present, [batch_id]))
    # Sent once: the messages are in the queues now, so the next round finds nothing missing.
    assert (
        reconcile(records, lambda: broker_jobs(client), send, confirm_s=0.0, sleep=lambda _s: None)
        == []
    )
    assert len(sent) == 3


def test_a_job_that_shows_up_between_the_two_looks_is_not_sent(
    broker: tuple[RedisRecords, redis.Redis, Settings],
) -> None:
    """A message between a worker's pop and its unacked write is in neither for an instant."""
    records, _, _ = broker
    batch_id = batch_with(records, [TuneStatus.GENERATED])
    looks = iter([set(), {render_job(batch_id, "t000000")}])
    waited: list[float] = []
    sent: list[Job] = []
    assert reconcile(records, lambda: next(looks), sent.append, confirm_s=2.0,
                     sleep=waited.append) == []  # fmt: skip
    assert sent == [] and waited == [2.0]


def test_a_finished_batch_whose_finalize_was_lost_gets_it_again(
    broker: tuple[RedisRecords, redis.Redis, Settings],
) -> None:
    records, client, _ = broker
    batch_id = batch_with(records, [TuneStatus.DONE, TuneStatus.FAILED])
    # Not claimed: no finalize was sent (or one was given up and released): left alone.
    assert missing_jobs(records, broker_jobs(client), [batch_id]) == set()
    assert records.claim_finalize(batch_id)  # claimed, and its message then lost
    assert missing_jobs(records, broker_jobs(client), [batch_id]) == {finalize_job(batch_id)}
    assert missing_jobs(records, {finalize_job(batch_id)}, [batch_id]) == set()

    batch = records.get_batch(batch_id)
    batch.manifest_key = f"batches/{batch_id}/manifest.json"
    records.save_batch(batch)  # finalized: the batch leaves the open set
    assert records.open_batches() == []
    assert missing_jobs(records, set(), [batch_id]) == set()
    batch.manifest_key = None
    records.save_batch(batch)  # `producer retry` withdrew the manifest: open again
    assert records.open_batches() == [batch_id]
    records.delete_batch(batch_id)
    assert records.open_batches() == []


def test_one_worker_reconciles_per_period(
    broker: tuple[RedisRecords, redis.Redis, Settings],
) -> None:
    """Every worker runs a `Reconciler`; a Redis lock lets one of them act per period, and what
    it sends goes through the real enqueue path and is counted."""
    records, client, settings = broker
    batch_id = batch_with(records, [TuneStatus.GENERATED])
    first, second = Reconciler(settings, interval_s=30.0), Reconciler(settings, interval_s=30.0)
    assert first.run_once() == [render_job(batch_id, "t000000")]
    assert broker_jobs(client) == {render_job(batch_id, "t000000")}
    client.delete("cpu")  # lost again
    assert second.run_once() == []  # within the first one's period
    assert 0 < client.pttl(keys.RECONCILE_LOCK) <= 27_000
    client.delete(keys.RECONCILE_LOCK)  # the period is over
    assert second.run_once() == [render_job(batch_id, "t000000")]
    assert client.hgetall(keys.RECONCILED) == {RENDER.encode(): b"2"}
