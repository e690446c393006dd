"""Where the live state of the work is kept: the interfaces every record store implements.

Artifacts (ABC, MIDI, WAV, manifests) go to the `ArtifactStore`; the state of the work that makes
them goes here, because it changes many times per tune and must be updated atomically: every
status change is checked against `schemas.ALLOWED_TRANSITIONS` (`apply_update`) under a lock, so
two deliveries of the same job cannot move a tune backwards or count it twice.

Two levels, so code states what it needs and a new store knows what to write:

- `JobRecords`: batches and tunes, all one process needs (`common.state.local`, JSON files).
- `SharedRecords`: what many machines share in distributed mode: `JobRecords` plus the finalize
  guard, the open-batch set, training runs, task attempts, the dead-letter list and schedule
  firings (`common.state.redis`). A store for another server implements this class; nothing
  outside `common.state` names the Redis one except the factory `common.state.open`.

The small protocols (`RunRecords`, `AttemptStore`, `DeadLetterStore`, `FiringMemory`,
`FinalizeGuard`) are what single users of one concern are typed against, so a test can hand
them a fake of five lines.
"""

from __future__ import annotations

import abc
from collections import Counter
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

from common.errors import InvalidTransitionError
from common.schemas import BatchRecord, RunProgress, TuneRecord, TuneStatus, now

__all__ = [
    "AttemptStore",
    "DeadLetter",
    "DeadLetterStore",
    "FinalizeGuard",
    "FiringMemory",
    "JobRecords",
    "RunRecords",
    "SharedRecords",
    "apply_update",
    "check_reset",
]


class DeadLetter(BaseModel):
    """A task given up on: delivered too often, out of retries, or failed permanently."""

    task: str
    task_id: str
    args: list[Any]
    kwargs: dict[str, Any] = Field(default_factory=dict)
    attempts: int
    reason: str
    error: str
    at: datetime = Field(default_factory=now)


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


class FinalizeGuard(Protocol):
    """Exactly one finalize per batch, however many renders end at the same moment."""

    def claim_finalize(self, batch_id: str) -> bool:
        """True for exactly one caller, and only once every tune of the batch is final."""
        ...

    def finalize_claimed(self, batch_id: str) -> bool:
        """Whether a finalize was claimed (and so enqueued) and not released since."""
        ...

    def release_finalize(self, batch_id: str) -> None:
        """Allow a new finalize (after `retry --failed`, or when a finalize job gave up)."""
        ...


class RunRecords(Protocol):
    """Training runs' progress: the gpu worker writes it, `producer run` reads it."""

    def create_run(self, run: RunProgress) -> None:
        """Record a new run; `InvalidInputError` if its id exists."""
        ...

    def get_run(self, run_id: str) -> RunProgress:
        """The run; `NotFoundError` when there is none."""
        ...

    def update_run(self, run_id: str, **fields: Any) -> RunProgress:
        """Last writer wins: one worker at a time writes a run."""
        ...

    def list_runs(self, limit: int = 50) -> list[RunProgress]:
        """Newest first."""
        ...


class AttemptStore(Protocol):
    """Deliveries counted per task message, so a job that kills its worker is given up."""

    def count_attempt(self, task_id: str, ttl_s: int) -> int:
        """Count one more delivery of `task_id`; return the deliveries so far."""
        ...

    def attempts(self, task_id: str) -> int: ...

    def uncount_attempt(self, task_id: str) -> None:
        """Take back a delivery that did no work (a requeue at worker shutdown)."""
        ...

    def forget_attempts(self, task_id: str) -> None: ...


class DeadLetterStore(Protocol):
    """Jobs given up on, for `producer dead-letter`."""

    def push_dead_letter(self, entry: DeadLetter) -> None: ...

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """The newest `limit` entries, oldest first."""
        ...


class FiringMemory(Protocol):
    """What each schedule firing did, so a redelivered firing does not fire twice."""

    def fired(self, task_id: str) -> str | None:
        """What the firing with `task_id` did ("batch <id>"), or None if it has not."""
        ...

    def remember_fired(self, task_id: str, what: str, ttl_s: int) -> None: ...


class SharedRecords(JobRecords):
    """The records distributed mode shares between machines (see the module docstring).

    Abstract, not a protocol: a store missing one method fails when it is created, not in the
    middle of a batch. Each group matches one of the protocols above."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise `BrokerError` (or `ConfigError`) when the store cannot be used."""

    @abc.abstractmethod
    def delete_batch(self, batch_id: str) -> None:
        """Remove every record of a batch (undoes a submission whose enqueue failed)."""

    @abc.abstractmethod
    def open_batches(self) -> list[str]:
        """Ids of the batches without a manifest yet (created, not finalized), sorted."""

    @abc.abstractmethod
    def list_batches(self, limit: int | None = None) -> list[BatchRecord]: ...

    # FinalizeGuard
    @abc.abstractmethod
    def claim_finalize(self, batch_id: str) -> bool: ...

    @abc.abstractmethod
    def finalize_claimed(self, batch_id: str) -> bool: ...

    @abc.abstractmethod
    def release_finalize(self, batch_id: str) -> None: ...

    # RunRecords
    @abc.abstractmethod
    def create_run(self, run: RunProgress) -> None: ...

    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunProgress: ...

    @abc.abstractmethod
    def update_run(self, run_id: str, **fields: Any) -> RunProgress: ...

    @abc.abstractmethod
    def list_runs(self, limit: int = 50) -> list[RunProgress]: ...

    # AttemptStore
    @abc.abstractmethod
    def count_attempt(self, task_id: str, ttl_s: int) -> int: ...

    @abc.abstractmethod
    def attempts(self, task_id: str) -> int: ...

    @abc.abstractmethod
    def uncount_attempt(self, task_id: str) -> None: ...

    @abc.abstractmethod
    def forget_attempts(self, task_id: str) -> None: ...

    # DeadLetterStore
    @abc.abstractmethod
    def push_dead_letter(self, entry: DeadLetter) -> None: ...

    @abc.abstractmethod
    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]: ...

    # FiringMemory
    @abc.abstractmethod
    def fired(self, task_id: str) -> str | None: ...

    @abc.abstractmethod
    def remember_fired(self, task_id: str, what: str, ttl_s: int) -> None: ...


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
