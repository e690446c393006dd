"""Where the live state of batches and tunes is kept: the `JobRecords` interface and its rules.

Artifacts (ABC, MIDI, WAV, manifests) go to the `ArtifactStore`; the state of the work that makes
them goes here, because it changes many times per tune and must be updated atomically: every
status change is checked against `schemas.ALLOWED_TRANSITIONS` (`apply_update`) under a lock, so
two deliveries of the same job cannot move a tune backwards or count it twice. The backends are
`common.state.local` (JSON files, one machine) and `common.state.redis` (shared by all machines).
"""

from __future__ import annotations

import abc
from collections import Counter
from typing import Any

from common.errors import InvalidTransitionError
from common.schemas import BatchRecord, TuneRecord, TuneStatus, now

__all__ = ["JobRecords", "apply_update", "check_reset"]


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
    def reset_tune(self, tune: TuneRecord, *, was: TuneStatus | None = None) -> None:
        """Overwrite a tune record: only `retry` and a chunk put back for a shutdown move a tune
        backwards. With `was`, only while the stored tune still has that status (else
        InvalidTransitionError): a chunk putting its ``generating`` tunes back must not revive
        one that `producer cancel` ended in between."""

    def counts(self, batch_id: str) -> dict[str, int]:
        counter = Counter(t.status.value for t in self.tunes(batch_id))
        return {s.value: counter.get(s.value, 0) for s in TuneStatus}

    def is_cancelled(self, batch_id: str) -> bool:
        return self.get_batch(batch_id).cancelled


def check_reset(current: TuneRecord, was: TuneStatus | None) -> None:
    if was is not None and current.status != was:
        raise InvalidTransitionError(
            f"tune {current.tune_id} is {current.status} now, not {was}: not reset"
        )


def apply_update(tune: TuneRecord, status: TuneStatus | None, fields: dict[str, Any]) -> TuneRecord:
    """The tune after a status change and field updates, checked, as every backend applies it.

    The transition is checked against `schemas.ALLOWED_TRANSITIONS` (`InvalidTransitionError`),
    an unknown field is a `ValueError`, and the result is validated afresh, so no backend can
    store a record that a read would reject.
    """
    if status is not None:
        tune.move_to(status)
    for name, value in fields.items():
        if name not in TuneRecord.model_fields:
            raise ValueError(f"tune records have no field {name!r}")
        setattr(tune, name, value)
    tune.updated_at = now()
    return TuneRecord.model_validate(tune.model_dump())
