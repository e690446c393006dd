"""LocalRecords: the same checked transitions as Redis, atomic JSON files, a full disk reported."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from common.errors import InvalidTransitionError, NotFoundError, StorageError, StorageFullError
from common.schemas import BatchRecord, BatchSpec, TuneRecord, TuneStatus, new_batch_id, tune_id
from common.state.base import apply_update
from common.state.local import LocalRecords

MODEL = "a" * 64


def make_batch(rec: LocalRecords, count: int = 4) -> BatchRecord:
    batch = BatchRecord(id=new_batch_id(), spec=BatchSpec(count=count, model_id=MODEL))
    tunes = [TuneRecord(batch_id=batch.id, tune_id=tune_id(i), index=i) for i in range(count)]
    rec.create_batch(batch, tunes)
    return batch


def test_transitions_are_checked_and_counted(tmp_path: Path) -> None:
    rec = LocalRecords(tmp_path)
    batch = make_batch(rec)
    tid = tune_id(1)
    rec.update_tune(batch.id, tid, TuneStatus.GENERATING)
    done = rec.update_tune(batch.id, tid, TuneStatus.GENERATED, title="Reel")
    assert rec.get_tune(batch.id, tid) == done and done.title == "Reel"
    with pytest.raises(InvalidTransitionError):
        rec.update_tune(batch.id, tid, TuneStatus.QUEUED)
    with pytest.raises(ValueError, match="no field 'colour'"):
        rec.update_tune(batch.id, tid, colour="red")
    assert rec.get_tune(batch.id, tid) == done  # a refused change leaves the record as it was
    assert rec.counts(batch.id) == {
        "queued": 3, "generating": 0, "generated": 1, "rendering": 0, "done": 0, "failed": 0,
        "cancelled": 0,
    }  # fmt: skip
    rec.reset_tune(done.model_copy(update={"status": TuneStatus.QUEUED}))
    assert rec.get_tune(batch.id, tid).status == TuneStatus.QUEUED
    # A reset that expects another status than the stored one (cancelled meanwhile) is refused.
    gone = rec.update_tune(batch.id, tid, TuneStatus.CANCELLED)
    with pytest.raises(InvalidTransitionError, match="cancelled now, not generating"):
        rec.reset_tune(
            gone.model_copy(update={"status": TuneStatus.QUEUED}), was=TuneStatus.GENERATING
        )
    assert rec.get_tune(batch.id, tid) == gone
    with pytest.raises(NotFoundError):
        rec.get_tune(batch.id, tune_id(9))


def test_apply_update_does_not_touch_a_refused_record() -> None:
    tune = TuneRecord(batch_id=new_batch_id(), tune_id=tune_id(0), index=0)
    with pytest.raises(InvalidTransitionError):
        apply_update(tune, TuneStatus.DONE, {})
    moved = apply_update(tune, TuneStatus.GENERATING, {"title": "Jig"})
    assert (moved.status, moved.title) == (TuneStatus.GENERATING, "Jig")


def test_records_are_written_whole_and_readable_by_others(tmp_path: Path) -> None:
    rec = LocalRecords(tmp_path)
    batch = make_batch(rec, 2)
    folder = tmp_path / "batches" / batch.id
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == [
        ".lock", "batch.json", f"{tune_id(0)}.json", f"{tune_id(1)}.json"
    ]  # fmt: skip
    assert (folder / "batch.json").stat().st_mode & 0o777 == 0o644
    assert LocalRecords(tmp_path).get_batch(batch.id) == batch


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_or_quota_is_storage_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    rec = LocalRecords(tmp_path)
    batch = make_batch(rec, 1)

    def full(*args: Any, **kwargs: Any) -> tuple[int, str]:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(StorageFullError, match=r"no space left.*free space"):
        rec.update_tune(batch.id, tune_id(0), TuneStatus.GENERATING)


def test_other_write_errors_are_storage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = LocalRecords(tmp_path)
    batch = make_batch(rec, 1)

    def broken(*args: Any, **kwargs: Any) -> tuple[int, str]:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(tempfile, "mkstemp", broken)
    with pytest.raises(StorageError) as info:
        rec.save_batch(batch)
    assert not isinstance(info.value, StorageFullError)
