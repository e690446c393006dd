"""Where the live state of batches and tunes is kept: one interface, a local and a Redis backend.

Artifacts (ABC, MIDI, WAV, manifests) go to the `ArtifactStore`; the state of the work that makes
them goes here, because it changes many times per tune and must be updated atomically: every
status change is checked against `schemas.ALLOWED_TRANSITIONS` under a lock, so two deliveries of
the same job cannot move a tune backwards or count it twice.

The local backend keeps JSON files under ``<data_dir>/records`` and serialises writers with
``fcntl`` locks, so the embedded runner's threads and several local processes agree.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.errors import NotFoundError, StorageError, StorageFullError
from common.schemas import (
    BatchRecord,
    TuneRecord,
    TuneStatus,
    check_batch_id,
    now,
    tune_index,
)


class JobRecords(abc.ABC):
    """Batch and tune records with checked, atomic status transitions."""

    @abc.abstractmethod
    def create_batch(self, batch: BatchRecord, tunes: list[TuneRecord]) -> None: ...

    @abc.abstractmethod
    def get_batch(self, batch_id: str) -> BatchRecord: ...

    @abc.abstractmethod
    def save_batch(self, batch: BatchRecord) -> None: ...

    @abc.abstractmethod
    def list_batches(self) -> list[BatchRecord]: ...

    @abc.abstractmethod
    def get_tune(self, batch_id: str, tune_id: str) -> TuneRecord: ...

    @abc.abstractmethod
    def tunes(self, batch_id: str) -> list[TuneRecord]: ...

    @abc.abstractmethod
    def update_tune(
        self, batch_id: str, tune_id: str, status: TuneStatus | None = None, **fields: Any
    ) -> TuneRecord:
        """Atomically apply a checked status transition and field updates; return the result."""

    @abc.abstractmethod
    def reset_tune(self, tune: TuneRecord) -> None:
        """Overwrite a tune record unconditionally: only `retry` may move a tune backwards."""

    def counts(self, batch_id: str) -> dict[str, int]:
        counter = Counter(t.status.value for t in self.tunes(batch_id))
        return {s.value: counter.get(s.value, 0) for s in TuneStatus}

    def is_cancelled(self, batch_id: str) -> bool:
        return self.get_batch(batch_id).cancelled


def _apply(tune: TuneRecord, status: TuneStatus | None, fields: dict[str, Any]) -> TuneRecord:
    if status is not None:
        tune.move_to(status)
    for name, value in fields.items():
        if name not in TuneRecord.model_fields:
            raise ValueError(f"tune records have no field {name!r}")
        setattr(tune, name, value)
    tune.updated_at = now()
    return TuneRecord.model_validate(tune.model_dump())


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
    def _write(path: Path, data: dict[str, Any] | str) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            Path(tmp).replace(path)
        except OSError as exc:
            if exc.errno == 28:
                raise StorageFullError(f"disk full writing {path}: {exc.strerror}") from exc
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
            tune = _apply(self.get_tune(batch_id, tune_id), status, fields)
            self._write(self._tune_path(batch_id, tune_id), tune.model_dump_json())
            return tune

    def reset_tune(self, tune: TuneRecord) -> None:
        with self._locked(tune.batch_id):
            self._write(self._tune_path(tune.batch_id, tune.tune_id), tune.model_dump_json())
