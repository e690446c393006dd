"""RedisRecords against a real redis-server: checked transitions, exact counters, the flags."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from common.errors import (
    BrokerError,
    ConfigError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
)
from common.schemas import (
    BatchRecord,
    BatchSpec,
    RunProgress,
    RunStatus,
    TrainSpec,
    TuneRecord,
    TuneStatus,
    new_batch_id,
    new_run_id,
    tune_id,
)
from common.state import keys
from common.state.base import DeadLetter
from common.state.redis import RedisRecords, safe_url
from tests import servers as srv

MODEL = "a" * 64


@pytest.fixture
def records(redis_server: srv.RedisServer) -> Iterator[RedisRecords]:
    rec = RedisRecords.from_url(redis_server.url)
    yield rec
    rec.r.close()


def make_batch(rec: RedisRecords, count: int = 10) -> BatchRecord:
    batch = BatchRecord(id=new_batch_id(), spec=BatchSpec(count=count, model_id=MODEL))
    tunes = [TuneRecord(batch_id=batch.id, tune_id=tune_id(i), index=i) for i in range(count)]
    rec.create_batch(batch, tunes)
    return batch


def test_create_read_list(records: RedisRecords) -> None:
    first = make_batch(records, 3)
    second = make_batch(records, 5)
    assert records.get_batch(first.id) == first
    assert [b.id for b in records.list_batches()] == [second.id, first.id]
    assert [t.tune_id for t in records.tunes(second.id)] == [tune_id(i) for i in range(5)]
    assert records.counts(second.id)["queued"] == 5
    assert sum(records.counts(second.id).values()) == 5
    with pytest.raises(InvalidInputError):
        records.create_batch(first, [])
    with pytest.raises(NotFoundError):
        records.get_batch(new_batch_id())
    with pytest.raises(NotFoundError):
        records.get_tune(first.id, "t000009")


def test_transitions_are_checked_and_counted(records: RedisRecords) -> None:
    batch = make_batch(records, 2)
    t = records.update_tune(batch.id, "t000000", TuneStatus.GENERATING)
    assert t.status == TuneStatus.GENERATING
    records.update_tune(batch.id, "t000000", TuneStatus.GENERATED, title="Tune 1", tries=2)
    stored = records.get_tune(batch.id, "t000000")
    assert stored.title == "Tune 1" and stored.tries == 2 and stored.files == []
    with pytest.raises(InvalidTransitionError):
        records.update_tune(batch.id, "t000000", TuneStatus.QUEUED)
    with pytest.raises(ValueError, match="no field"):
        records.update_tune(batch.id, "t000000", nonsense=1)
    counts = records.counts(batch.id)
    assert counts["generated"] == 1 and counts["queued"] == 1 and sum(counts.values()) == 2
    # Only `reset_tune` (retry) goes backwards, and the counters follow it.
    records.reset_tune(stored.model_copy(update={"status": TuneStatus.QUEUED}))
    assert records.counts(batch.id)["queued"] == 2
    # With `was`, only from that status: a chunk putting a tune back cannot revive a cancelled one.
    records.update_tune(batch.id, "t000000", TuneStatus.GENERATING)
    gone = records.update_tune(batch.id, "t000000", TuneStatus.CANCELLED)
    with pytest.raises(InvalidTransitionError, match="cancelled now, not generating"):
        records.reset_tune(
            gone.model_copy(update={"status": TuneStatus.QUEUED}), was=TuneStatus.GENERATING
        )
    assert records.get_tune(batch.id, "t000000") == gone
    assert records.counts(batch.id)["cancelled"] == 1
    records.reset_tune(
        gone.model_copy(update={"status": TuneStatus.FAILED}), was=TuneStatus.CANCELLED
    )
    assert records.get_tune(batch.id, "t000000").status == TuneStatus.FAILED


def test_counters_stay_exact_under_concurrent_writers(records: RedisRecords) -> None:
    """Eight threads race every tune through its statuses; each change is counted exactly once."""
    batch = make_batch(records, 40)
    path = [TuneStatus.GENERATING, TuneStatus.GENERATED, TuneStatus.RENDERING, TuneStatus.DONE]
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for i in range(40):
                for status in path:
                    # Another thread may have moved it further already.
                    with contextlib.suppress(InvalidTransitionError):
                        records.update_tune(batch.id, tune_id(i), status, attempts=i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    counts = records.counts(batch.id)
    assert counts["done"] == 40 and sum(counts.values()) == 40, counts
    assert all(t.status == TuneStatus.DONE for t in records.tunes(batch.id))


def test_cancel_flag_survives_a_stale_save(records: RedisRecords) -> None:
    batch = make_batch(records)
    stale = records.get_batch(batch.id)
    cancelled = records.get_batch(batch.id)
    cancelled.cancelled = True
    records.save_batch(cancelled)
    stale.manifest_key = "batches/x/manifest.json"  # e.g. a finalize that read before the cancel
    records.save_batch(stale)
    assert records.is_cancelled(batch.id)
    assert records.get_batch(batch.id).cancelled
    assert records.list_batches()[0].cancelled


def test_finalize_is_claimed_once_and_only_when_all_final(records: RedisRecords) -> None:
    batch = make_batch(records, 2)
    assert not records.claim_finalize(batch.id)
    for i in range(2):
        records.update_tune(batch.id, tune_id(i), TuneStatus.CANCELLED)
    assert records.claim_finalize(batch.id)
    assert not records.claim_finalize(batch.id)
    records.release_finalize(batch.id)
    assert records.claim_finalize(batch.id)


def test_delete_batch_removes_everything(records: RedisRecords) -> None:
    batch = make_batch(records)
    records.delete_batch(batch.id)
    assert records.list_batches() == []
    assert records.r.keys("tunebatch:batch:*") == []


def test_runs_attempts_and_dead_letters(records: RedisRecords) -> None:
    run = RunProgress(id=new_run_id(), spec=TrainSpec(corpus="tiny", preset="tiny"))
    records.create_run(run)
    with pytest.raises(InvalidInputError):
        records.create_run(run)
    records.update_run(run.id, status=RunStatus.RUNNING, epochs=3, loss=2.5)
    got = records.get_run(run.id)
    assert got.status == RunStatus.RUNNING and got.loss == 2.5
    assert [r.id for r in records.list_runs()] == [run.id]

    assert records.count_attempt("task-1", 60) == 1
    assert records.count_attempt("task-1", 60) == 2
    records.uncount_attempt("task-1")
    assert records.count_attempt("task-1", 60) == 2
    records.forget_attempts("task-1")
    assert records.count_attempt("task-1", 60) == 1

    entry = DeadLetter(task="t", task_id="x", args=["b", 1], attempts=3, reason="r", error="e")
    records.push_dead_letter(entry)
    assert records.dead_letters() == [entry]


def test_unreachable_redis_is_one_line_without_password() -> None:
    port = srv.free_port()
    rec = RedisRecords.from_url(f"redis://:hunter2@127.0.0.1:{port}/0", retries=0, timeout_s=1)
    with pytest.raises(BrokerError) as info:
        rec.get_batch(new_batch_id())
    message = str(info.value)
    assert f"redis://127.0.0.1:{port}/0" in message
    assert "hunter2" not in message and "\n" not in message


def test_wrong_password_is_a_config_error(tmp_path_factory: pytest.TempPathFactory) -> None:
    with srv.redis_server(tmp_path_factory.mktemp("authed"), password="right") as server:
        rec = RedisRecords.from_url(f"redis://:wrong@127.0.0.1:{server.port}/0", retries=0)
        with pytest.raises(ConfigError, match="refused the credentials"):
            rec.ping()


def test_safe_url() -> None:
    assert safe_url("redis://user:pw@host:6380/2") == "redis://user@host:6380/2"
    assert safe_url("rediss://:pw@h/0") == "rediss://h/0"


def test_every_key_written_is_built_by_the_keys_module(records: RedisRecords) -> None:
    batch = make_batch(records, 2)
    records.update_tune(batch.id, tune_id(0), TuneStatus.CANCELLED)
    batch.cancelled = True
    records.save_batch(batch)
    assert records.claim_finalize(batch.id) is False  # one tune is still queued
    records.update_tune(batch.id, tune_id(1), TuneStatus.CANCELLED)
    assert records.claim_finalize(batch.id)
    run = RunProgress(id=new_run_id(), spec=TrainSpec(corpus="tiny", preset="tiny"))
    records.create_run(run)
    records.count_attempt("task-9", 60)
    records.remember_fired("task-9", f"batch {batch.id}", 60)
    records.push_dead_letter(
        DeadLetter(task="t", task_id="task-9", args=[], attempts=1, reason="r", error="e")
    )
    built = {
        *keys.batch_keys(batch.id),
        keys.BATCHES,
        keys.OPEN_BATCHES,
        keys.RUNS,
        keys.DEAD_LETTER,
        keys.run_progress_key(run.id),
        keys.attempts_key("task-9"),
        keys.schedule_fired_key("task-9"),
    }
    assert set(records.r.keys("*")) == built


def test_a_firing_is_remembered_for_its_task_only(records: RedisRecords) -> None:
    assert records.fired("task-a") is None
    records.remember_fired("task-a", "batch b1", 60)
    assert records.fired("task-a") == "batch b1"
    assert records.fired("task-b") is None
    assert 0 < records.r.ttl(keys.schedule_fired_key("task-a")) <= 60


def test_keys_refuse_ids_that_could_reach_another_record() -> None:
    with pytest.raises(InvalidInputError):
        keys.batch_key("b1:tunes")
    with pytest.raises(InvalidInputError):
        keys.run_progress_key("../r1")
    with pytest.raises(InvalidInputError):  # `$` alone would let a trailing newline through
        keys.batch_key(new_batch_id() + "\n")
