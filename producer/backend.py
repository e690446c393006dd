"""Where the producer's work runs: in this process (embedded) or on the workers (distributed).

The mode is chosen once, from the settings (`make_backend`): with ``TUNEBATCH_BROKER_URL`` set the
commands go to Redis and the queues, otherwise they run here on local disk (or the configured
bucket). Commands talk to a `Backend` and never ask which mode they are in; what differs between
the modes shows in the result types (`Ran`, `Queued`, `Followed`, ...), which say what happened.
Both implementations call the same job functions (`common.jobs`), not copies.

Nothing here imports TensorFlow at module level (the training and generation code is imported
inside the embedded methods that run it), so the read commands stay instant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

from common.errors import ConfigError
from common.jobs.batches import manifest_key
from common.jobs.cancel import CancelOutcome
from common.jobs.context import Context
from common.schemas import (
    BatchRecord,
    BatchSpec,
    Manifest,
    ModelRecord,
    RunProgress,
    TrainSpec,
    new_run_id,
)
from common.settings import Settings
from common.state.base import DeadLetter

if TYPE_CHECKING:
    from pathlib import Path

    from celery import Celery
    from common.lstm.training import TrainingObserver
    from common.store.base import ArtifactStore

    from producer.client import BatchProgress, Client

log = logging.getLogger(__name__)

#: (stage, done, total): how a running batch reports progress (`common.jobs.embedded`).
ProgressFn = Callable[[str, int, int], None]


# --- what a command gets back ----------------------------------------------------------------
@dataclass(frozen=True)
class Ran:
    """The batch ran to its end in this process; `folder` is where its files are on disk."""

    manifest: Manifest
    folder: Path | None


@dataclass(frozen=True)
class Queued:
    """The batch is recorded and its chunks are on the queue; the workers do the rest."""

    batch: BatchRecord
    spec: BatchSpec


@dataclass(frozen=True)
class Followed:
    """The batch was queued and followed to its manifest."""

    progress: BatchProgress


Submitted = Ran | Queued | Followed


@dataclass(frozen=True)
class Trained:
    """A training run ended in this process with a registered model."""

    model: ModelRecord


@dataclass(frozen=True)
class RunQueued:
    """A training run is recorded and queued on the gpu queue."""

    run: RunProgress


@dataclass(frozen=True)
class RunFollowed:
    """A queued training run, followed to its end (done, failed or cancelled)."""

    run: RunProgress


TrainResult = Trained | RunQueued | RunFollowed


@dataclass(frozen=True)
class Retried:
    """Failed tunes put back: ``work`` as `common.jobs.batches.retry_failed` returns it;
    `manifest` once the work ran here, None while it runs or when it was queued for the
    workers."""

    batch_id: str
    work: dict[str, list[str]]
    manifest: Manifest | None


def needs_distributed(command: str) -> ConfigError:
    """The error of a command that only exists where there are workers and Redis."""
    return ConfigError(
        f"`producer {command}` needs distributed mode: set TUNEBATCH_BROKER_URL "
        "(see docs/distributed.md)"
    )


class Backend(Protocol):
    """What the commands need from where the work runs."""

    settings: Settings

    @property
    def context(self) -> Context:
        """The records and the store of this mode (the read commands use them directly)."""
        ...

    def submit_batch(
        self,
        spec: BatchSpec,
        *,
        wait: bool,
        progress: ProgressFn | None,
        on_created: Callable[[BatchRecord], None],
    ) -> Submitted:
        """Record and start a batch. `wait`: follow it to its end (embedded mode always does);
        `on_created` is told the batch as soon as it exists, before any tune is generated."""
        ...

    def cancel(self, batch_id: str) -> CancelOutcome: ...

    def retry_failed(
        self,
        batch_id: str,
        *,
        progress: ProgressFn | None,
        on_start: Callable[[Retried], None],
    ) -> Retried:
        """Put the failed tunes back and get their work done: run here (`on_start` is told the
        work before it runs, `progress` follows it) or queued for the workers."""
        ...

    def train(
        self,
        spec: TrainSpec,
        *,
        resume: str | None,
        wait: bool,
        observer: TrainingObserver | None,
        on_run: Callable[[RunProgress], None] | None,
    ) -> TrainResult:
        """Train a model. `resume`: the run id to continue from its checkpoint. `observer`
        sees the epochs of a run in this process, `on_run` each poll of a followed run."""
        ...

    def get_run(self, run_id: str) -> RunProgress: ...

    def follow_run(self, run_id: str, on_run: Callable[[RunProgress], None]) -> RunProgress: ...

    def dead_letters(self, limit: int) -> list[DeadLetter]: ...

    def schedule_app(self) -> Celery:
        """The Celery app whose Redis holds the schedules (`common.dispatch.schedule_store`)."""
        ...


class EmbeddedBackend:
    """Everything runs in this process, on local disk or the configured bucket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def context(self) -> Context:
        from common.state.local import LocalRecords
        from common.store.open import make_store

        s = self.settings
        return Context(
            settings=s, store=make_store(s), records=LocalRecords(s.data_dir / "records")
        )

    @property
    def store(self) -> ArtifactStore:
        return self.context.store

    def submit_batch(
        self,
        spec: BatchSpec,
        *,
        wait: bool,
        progress: ProgressFn | None,
        on_created: Callable[[BatchRecord], None],
    ) -> Submitted:
        from common.jobs.embedded import run_batch

        manifest = run_batch(self.context, spec, progress=progress, on_created=on_created)
        return Ran(manifest, self.store.local_path(manifest_key(manifest.batch_id)))

    def cancel(self, batch_id: str) -> CancelOutcome:
        from common.jobs.batches import cancel_batch

        return cancel_batch(self.context, batch_id)

    def retry_failed(
        self,
        batch_id: str,
        *,
        progress: ProgressFn | None,
        on_start: Callable[[Retried], None],
    ) -> Retried:
        from common.jobs.batches import retry_failed
        from common.jobs.embedded import resume_batch

        work = retry_failed(self.context, batch_id)
        on_start(Retried(batch_id, work, None))
        manifest = resume_batch(self.context, batch_id, progress=progress)
        return Retried(batch_id, work, manifest)

    def train(
        self,
        spec: TrainSpec,
        *,
        resume: str | None,
        wait: bool,
        observer: TrainingObserver | None,
        on_run: Callable[[RunProgress], None] | None,
    ) -> TrainResult:
        from common.lstm.training import train as run_training

        run_id = resume or new_run_id()
        return Trained(
            run_training(self.store, spec, run_id, observer=observer, resume=bool(resume))
        )

    def get_run(self, run_id: str) -> RunProgress:
        raise needs_distributed("run")

    def follow_run(self, run_id: str, on_run: Callable[[RunProgress], None]) -> RunProgress:
        raise needs_distributed("run")

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        raise needs_distributed("dead-letter")

    def schedule_app(self) -> Celery:
        raise ConfigError(
            "schedules need a broker: set TUNEBATCH_BROKER_URL to your Redis and run "
            "`celery -A worker.celery_app beat` (see docs/distributed.md)"
        )


class DistributedBackend:
    """Records in Redis, work on the queues (`producer.client.Client`); commands return at once
    unless told to follow."""

    def __init__(self, settings: Settings) -> None:
        # Celery and the redis client load here, in distributed mode only: every embedded
        # command starts 0.3 s sooner without them.
        from producer.client import Client

        self.settings = settings
        self.client: Client = Client(settings)

    @property
    def context(self) -> Context:
        return self.client.context

    def submit_batch(
        self,
        spec: BatchSpec,
        *,
        wait: bool,
        progress: ProgressFn | None,
        on_created: Callable[[BatchRecord], None],
    ) -> Submitted:
        batch = self.client.submit_batch(spec)
        if not wait:
            return Queued(batch, spec)
        on_created(batch)
        return Followed(self.client.follow(batch.id, _stage_reporter(progress)))

    def cancel(self, batch_id: str) -> CancelOutcome:
        return self.client.cancel(batch_id)

    def retry_failed(
        self,
        batch_id: str,
        *,
        progress: ProgressFn | None,
        on_start: Callable[[Retried], None],
    ) -> Retried:
        return Retried(batch_id, self.client.retry_failed(batch_id), None)

    def train(
        self,
        spec: TrainSpec,
        *,
        resume: str | None,
        wait: bool,
        observer: TrainingObserver | None,
        on_run: Callable[[RunProgress], None] | None,
    ) -> TrainResult:
        run = self.client.train(spec, run_id=resume)
        if not wait:
            return RunQueued(run)
        return RunFollowed(self.follow_run(run.id, on_run or _ignore))

    def get_run(self, run_id: str) -> RunProgress:
        return self.client.records.get_run(run_id)

    def follow_run(self, run_id: str, on_run: Callable[[RunProgress], None]) -> RunProgress:
        return self.client.follow_run(run_id, on_run)

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        return self.client.dead_letters(limit)

    def schedule_app(self) -> Celery:
        return self.client.celery


def _ignore(_run: RunProgress) -> None:
    return None


def _stage_reporter(progress: ProgressFn | None) -> Callable[[BatchProgress], None]:
    """A followed batch's polls as the generate/render stages an embedded run reports."""

    def report(current: BatchProgress) -> None:
        if progress is None:
            return
        total = current.batch.spec.count
        cancelled = current.counts.get("cancelled", 0)
        progress("generate", current.generated + cancelled, total)
        progress("render", current.final, total)

    return report


def make_backend(settings: Settings) -> Backend:
    """The one place the mode is decided: distributed when a broker URL is set."""
    if settings.distributed:
        return DistributedBackend(settings)
    return EmbeddedBackend(settings)
