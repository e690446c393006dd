"""The local backend of `JobRecords`: JSON files under ``<data_dir>/records``.

Writers are serialised with ``fcntl`` locks (and a lock per process for its threads), so the
embedded runner's threads and several local processes on one machine agree; every file is
written atomically (`common.files.atomic_write`), so a killed process leaves the old record or
the new one. Not shared between machines: that is `common.state.redis`.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.errors import NotFoundError, StorageError, StorageFullError
from common.files import atomic_write_text, is_disk_full
from common.schemas import BatchRecord, TuneRecord, TuneStatus, check_batch_id, tune_index
from common.state.base import JobRecords, apply_update, check_reset

__all__ = ["LocalRecords"]


class LocalRecords(JobRecords):
    """JSON files on local disk; fine for one machine, not shared between machines."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._thread_lock = threading.RLock()

    def _dir(self, batch_id: str) -> Path:
        return self.root / "batches" / check_batch_id(batch_id)

    def _tune_path(self, batch_id: str, tune_id: str) -> Path:
        tune_index(tune_id)
        return self._dir(batch_id) / "tunes" / f"{tune_id}.json"

    @contextlib.contextmanager
    def _locked(self, batch_id: str) -> Iterator[None]:
        path = self._dir(batch_id) / ".lock"
        with self._thread_lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _write(path: Path, text: str) -> None:
        try:
            atomic_write_text(path, text)
        except OSError as exc:
            if is_disk_full(exc):
                raise StorageFullError(
                    f"no space left writing record {path} ({exc.strerror}); free space and retry"
                ) from exc
            raise StorageError(f"cannot write record {path}: {exc.strerror}") from exc

    def create_batch(self, batch: BatchRecord, tunes: list[TuneRecord]) -> None:
        with self._locked(batch.id):
            for tune in tunes:
                self._write(self._tune_path(batch.id, tune.tune_id), tune.model_dump_json())
            # Batch record last: a batch is listed only when all its tunes exist.
            self._write(self._dir(batch.id) / "batch.json", batch.model_dump_json(indent=2))

    def get_batch(self, batch_id: str) -> BatchRecord:
        path = self._dir(batch_id) / "batch.json"
        if not path.is_file():
            raise NotFoundError(f"no batch {batch_id}; see `producer list`")
        return BatchRecord.model_validate_json(path.read_text(encoding="utf-8"))

    def save_batch(self, batch: BatchRecord) -> None:
        with self._locked(batch.id):
            self._write(self._dir(batch.id) / "batch.json", batch.model_dump_json(indent=2))

    def list_batches(self) -> list[BatchRecord]:
        base = self.root / "batches"
        if not base.is_dir():
            return []
        found = [
            BatchRecord.model_validate_json((d / "batch.json").read_text(encoding="utf-8"))
            for d in base.iterdir()
            if (d / "batch.json").is_file()
        ]
        return sorted(found, key=lambda b: b.created_at, reverse=True)

    def get_tune(self, batch_id: str, tune_id: str) -> TuneRecord:
        path = self._tune_path(batch_id, tune_id)
        if not path.is_file():
            raise NotFoundError(f"batch {batch_id} has no tune {tune_id}")
        return TuneRecord.model_validate_json(path.read_text(encoding="utf-8"))

    def tunes(self, batch_id: str) -> list[TuneRecord]:
        folder = self._dir(batch_id) / "tunes"
        if not folder.is_dir():
            raise NotFoundError(f"no batch {batch_id}; see `producer list`")
        return [
            TuneRecord.model_validate_json(p.read_text(encoding="utf-8"))
            for p in sorted(folder.glob("t*.json"))
        ]

    def update_tune(
        self, batch_id: str, tune_id: str, status: TuneStatus | None = None, **fields: Any
    ) -> TuneRecord:
        with self._locked(batch_id):
            tune = apply_update(self.get_tune(batch_id, tune_id), status, fields)
            self._write(self._tune_path(batch_id, tune_id), tune.model_dump_json())
            return tune

    def reset_tune(self, tune: TuneRecord, *, was: TuneStatus | None = None) -> None:
        with self._locked(tune.batch_id):
            if was is not None:  # read only to check: without `was` a reset overwrites, as before
                check_reset(self.get_tune(tune.batch_id, tune.tune_id), was)
            self._write(self._tune_path(tune.batch_id, tune.tune_id), tune.model_dump_json())
