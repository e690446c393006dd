"""What the producer prints: watch mode without a terminal, whole ids at 80 columns, JSON that
carries what the tables show, a finished run's last step, cancel on a finished batch, and the
limits of --count and --formats. Records are written directly (no model, no workers needed)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.schemas import (
    BatchRecord,
    BatchSpec,
    RunProgress,
    RunStatus,
    TrainSpec,
    TuneRecord,
    TuneStatus,
    tune_id,
)
from common.state.local import LocalRecords
from common.state.redis import RedisRecords
from producer import options, views
from tests import servers as srv
from tests.producer_cli import run

MODEL = "ab" * 32


@pytest.fixture
def records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRecords]:
    """Embedded mode with its records in tmp_path, an 80-column output like a default terminal."""
    for key in list(os.environ):
        if key.startswith("TUNEBATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TUNEBATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "80")
    options.settings.cache_clear()
    yield LocalRecords(tmp_path / "data" / "records")
    options.settings.cache_clear()


def new_batch(records: LocalRecords, count: int, batch_id: str) -> BatchRecord:
    batch = BatchRecord(id=batch_id, spec=BatchSpec(count=count, model_id=MODEL, formats=("abc",)))
    # At most 12 tune records: a million-tune batch needs its count, not a million files.
    tunes = [
        TuneRecord(batch_id=batch.id, tune_id=tune_id(i), index=i) for i in range(min(count, 12))
    ]
    records.create_batch(batch, tunes)
    return batch


def finish(records: LocalRecords, batch: BatchRecord) -> None:
    batch.manifest_key = f"batches/{batch.id}/manifest.json"
    records.save_batch(batch)


def test_watch_without_a_terminal_prints_one_whole_line_per_change(
    records: LocalRecords, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = new_batch(records, 3, "b20261129-101500-a1b2c3")

    def work() -> None:
        for i in range(3):
            time.sleep(0.3)
            records.update_tune(batch.id, tune_id(i), TuneStatus.FAILED, error="no")
        time.sleep(0.3)
        finish(records, records.get_batch(batch.id))

    worker = threading.Thread(target=work)
    worker.start()
    views.watch_batch(records, batch.id, interval_s=0.05, live=False)
    worker.join()
    lines = capsys.readouterr().out.splitlines()
    # queued 3 → 1, 2, 3 failed → finished: five states, each printed once, as it happened.
    assert len(lines) == 5, lines
    assert all(f"batch {batch.id} (" in line for line in lines), lines
    assert lines[0].endswith("0/3 final: queued 3") and "(running)" in lines[0]
    assert lines[-1].endswith("3/3 final: failed 3") and "(finished)" in lines[-1]


def test_status_watch_through_the_cli_when_output_is_a_pipe(records: LocalRecords) -> None:
    batch = new_batch(records, 2, "b20261129-101500-d4e5f6")
    finish(records, batch)
    code, out, err = run("status", batch.id, "--watch")
    assert code == 0, err
    [line] = out.splitlines()  # one line, the id whole (the old last frame split it)
    assert f"batch {batch.id} (finished) 0/2 final: queued 2" in line


def test_list_at_80_columns_shows_every_id_whole(records: LocalRecords) -> None:
    ids = [f"b20261129-10150{i}-abcde{i}" for i in range(3)]
    for i, batch_id in enumerate(ids):
        new_batch(records, 1_000_000 if i == 0 else 5, batch_id)
    code, out, err = run("list")
    assert code == 0, err
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "…" not in out, out
    for batch_id in ids:
        assert any(line.startswith(batch_id) for line in out.splitlines()), out


def test_status_json_carries_every_failure_the_table_shows(records: LocalRecords) -> None:
    batch = new_batch(records, 12, "b20261129-101500-0f0f0f")
    for i in range(12):
        records.update_tune(batch.id, tune_id(i), TuneStatus.FAILED, error=f"bad bar {i}")
    code, out, _ = run("status", batch.id, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["state"] == "running" and data["counts"]["failed"] == 12
    assert data["failures"] == [
        {"tune_id": tune_id(i), "error": f"bad bar {i}"} for i in range(12)
    ]  # all of them; the table shows the first 10
    code, table, _ = run("status", batch.id)
    assert code == 0 and "bad bar 9" in table and "bad bar 10" not in table


def test_cancel_on_a_finished_batch_says_so_and_changes_nothing(records: LocalRecords) -> None:
    batch = new_batch(records, 2, "b20261129-101500-cafe00")
    for i in range(2):
        records.update_tune(batch.id, tune_id(i), TuneStatus.FAILED, error="x")
    finish(records, batch)
    before = records.get_batch(batch.id)
    code, out, err = run("cancel", batch.id)
    assert code == 0, err
    assert "already finished (2 failed); nothing to cancel" in " ".join(out.split())
    assert records.get_batch(batch.id) == before and not before.cancelled
    code, out, _ = run("status", batch.id, "--json")
    assert json.loads(out)["state"] == "finished"


def test_count_help_states_the_limit_and_empty_formats_are_refused(records: LocalRecords) -> None:
    code, out, _ = run("submit-batch", "--help")
    assert code == 0 and "1,000,000" in out, out
    code, _, err = run("submit-batch", "--count", "1000001")
    assert code == 2 and "less than or equal to 1000000" in " ".join(err.split()), err
    for command in (["submit-batch"], ["schedule", "add", "x", "--cron", "0 3 * * *",
                                       "--corpus", "c"]):  # fmt: skip
        code, _, err = run(*command, "--formats", "")
        assert code == 2, err
        assert "no format given" in " ".join(err.split()), err
    assert not (Path(os.environ["TUNEBATCH_DATA_DIR"]) / "records").exists()  # nothing written


def test_a_finished_run_shows_its_last_step(
    redis_server: srv.RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("TUNEBATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TUNEBATCH_BROKER_URL", redis_server.url)
    rec = RedisRecords.from_url(redis_server.url)
    spec = TrainSpec(corpus="c", preset="tiny", epochs=3)
    # As a worker leaves it: the records of earlier workers say step 0 after the last epoch.
    rec.create_run(RunProgress(id="r20261129-101500-abcdef", spec=spec, epochs=3))
    rec.update_run(
        "r20261129-101500-abcdef", status=RunStatus.DONE, epochs_done=3, step=0, steps=129,
        model_id=MODEL,
    )  # fmt: skip
    options.settings.cache_clear()
    try:
        code, out, err = run("run", "r20261129-101500-abcdef")
    finally:
        options.settings.cache_clear()
    assert code == 0, err
    assert "epoch 3/3, step 129/129" in " ".join(out.split()), out


def test_the_workers_progress_record_ends_on_the_last_step(redis_server: srv.RedisServer) -> None:
    from worker.tasks import _RunObserver

    rec = RedisRecords.from_url(redis_server.url)
    spec = TrainSpec(corpus="c", preset="tiny", epochs=2)
    rec.create_run(RunProgress(id="r20261129-101500-000001", spec=spec, epochs=2))
    observer = _RunObserver(rec, "r20261129-101500-000001")
    observer.on_start("r20261129-101500-000001", 2, 129, 0)
    observer.on_epoch(1, {"loss": 1.0, "val_bits_per_char": 2.0})
    assert rec.get_run("r20261129-101500-000001").step == 0  # the next epoch starts
    observer.on_epoch(2, {"loss": 0.9, "val_bits_per_char": 1.9})
    assert rec.get_run("r20261129-101500-000001").step == 129  # the last one ended
