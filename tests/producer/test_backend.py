"""The same commands through both backends: records and cancel behave alike embedded (local
records) and distributed (Redis records, real redis-server, no workers); what only the distributed
mode has is one clear error embedded; the mode is decided by the settings alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common.dispatch.names import CPU_QUEUE, GENERATE, GPU_QUEUE, RENDER
from common.errors import ConfigError
from common.jobs import batches
from common.schemas import BatchSpec, TuneStatus
from common.settings import Settings
from producer import views
from producer.backend import (
    Backend,
    DistributedBackend,
    EmbeddedBackend,
    Queued,
    Retried,
    make_backend,
)
from tests import servers as srv
from tests.producer.test_distributed_cli import fake_model


@pytest.fixture(params=["embedded", "distributed"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each mode on its own data folder; distributed with a fresh redis-server."""
    if request.param == "embedded":
        yield make_backend(Settings(data_dir=tmp_path / "data", chunk_size=4))
        return
    with srv.redis_server(tmp_path / "redis") as server:
        yield make_backend(
            Settings(broker_url=server.url, data_dir=tmp_path / "data", chunk_size=4)
        )


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {status: n for status, n in counts.items() if n}


def _queued_batch(backend: Backend, count: int = 10) -> str:
    """A batch recorded with every tune queued, as submit-batch leaves it before any work."""
    model_id = fake_model(backend.settings.data_dir)
    spec = BatchSpec(count=count, model_id=model_id, primer="X:", chunk_size=4, valid_only=False)
    return batches.create_batch(backend.context, spec).id


def test_mode_comes_from_the_settings_alone(tmp_path: Path) -> None:
    assert isinstance(make_backend(Settings(data_dir=tmp_path)), EmbeddedBackend)
    distributed = make_backend(Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0"))
    assert isinstance(distributed, DistributedBackend)


def test_a_recorded_batch_reads_the_same_in_both_modes(backend: Backend) -> None:
    batch_id = _queued_batch(backend)
    records = backend.context.records
    assert [b.id for b in records.list_batches()] == [batch_id]
    assert _nonzero(records.counts(batch_id)) == {"queued": 10}
    assert views.batch_state(records.get_batch(batch_id)) == "running"


def test_cancel_cancels_every_queued_tune_in_both_modes(backend: Backend) -> None:
    batch_id = _queued_batch(backend)
    outcome = backend.cancel(batch_id)
    assert (outcome.batch_id, outcome.cancelled, outcome.finished) == (batch_id, 10, False)
    records = backend.context.records
    assert _nonzero(records.counts(batch_id)) == {"cancelled": 10}
    batch = records.get_batch(batch_id)
    assert batch.cancelled and views.batch_state(batch) == "cancelled"
    again = backend.cancel(batch_id)  # a second cancel finds nothing left to cancel
    assert again.cancelled == 0 and _nonzero(records.counts(batch_id)) == {"cancelled": 10}


def test_distributed_only_commands_say_so_embedded(tmp_path: Path) -> None:
    embedded = make_backend(Settings(data_dir=tmp_path))
    for call, command in (
        (lambda: embedded.get_run("r1"), "producer run"),
        (lambda: embedded.follow_run("r1", lambda _run: None), "producer run"),
        (lambda: embedded.dead_letters(5), "producer dead-letter"),
    ):
        with pytest.raises(ConfigError, match="needs distributed mode") as caught:
            call()
        assert command in str(caught.value) and caught.value.exit_code == 2
    with pytest.raises(ConfigError, match="schedules need a broker"):
        embedded.schedule_app()


def test_distributed_submit_queues_one_job_per_chunk(
    redis_server: srv.RedisServer, tmp_path: Path
) -> None:
    backend = make_backend(Settings(broker_url=redis_server.url, data_dir=tmp_path, chunk_size=4))
    spec = BatchSpec(
        count=10, model_id=fake_model(tmp_path), primer="X:", chunk_size=4, valid_only=False
    )
    told: list[str] = []
    result = backend.submit_batch(
        spec, wait=False, progress=None, on_created=lambda b: told.append(b.id)
    )
    assert isinstance(result, Queued) and result.spec.chunks == 3
    assert told == []  # nothing to announce: the id is the command's output
    queue = redis.Redis.from_url(redis_server.url).lrange(GPU_QUEUE, 0, -1)
    assert len(queue) == 3 and all(GENERATE.encode() in message for message in queue)
    assert backend.dead_letters(5) == []
    assert backend.schedule_app().conf.broker_url == redis_server.url


TUNE = "X:1\nT:Retried\nM:4/4\nL:1/8\nK:D\nDEFG ABcd|dcBA GFED|]\n"


def test_retry_puts_back_the_same_work_in_both_modes(backend: Backend) -> None:
    """A failed tune whose ABC exists goes back to rendering in both modes; embedded renders it
    here (told before it starts), distributed queues one render for a cpu worker."""
    batch_id = _queued_batch(backend, count=2)
    ctx = backend.context
    first, second = ctx.records.tunes(batch_id)
    ctx.store.put_bytes(batches.tune_key(batch_id, first.tune_id, "abc"), TUNE.encode())
    ctx.records.reset_tune(first.model_copy(update={"status": TuneStatus.FAILED, "error": "x"}))
    ctx.records.reset_tune(second.model_copy(update={"status": TuneStatus.DONE}))
    started: list[Retried] = []
    result = backend.retry_failed(batch_id, progress=None, on_start=started.append)
    assert result.work == {"render": [first.tune_id], "generate": []}
    status = ctx.records.get_tune(batch_id, first.tune_id).status
    if isinstance(backend, EmbeddedBackend):
        assert [s.work for s in started] == [result.work] and result.manifest is not None
        assert status == TuneStatus.DONE and result.manifest.counts["done"] == 2
    else:
        assert started == [] and result.manifest is None and status == TuneStatus.GENERATED
        url = backend.settings.broker_url
        assert url is not None
        queue = redis.Redis.from_url(url).lrange(CPU_QUEUE, 0, -1)
        assert len(queue) == 1 and RENDER.encode() in queue[0]
