"""The producer's side of distributed mode: write records, enqueue jobs by name, read progress.

It runs the same job functions as everything else (`common.jobs.batches.create_batch`,
`cancel_batch`, `retry_failed`) against Redis records and the bucket, and enqueues by task name
(`common.dispatch.enqueue`) so no task code — and so no TensorFlow — is imported here.

Submitting a batch never loops over tunes beyond building their records, which go to Redis in one
transaction; then one message per chunk is sent. If Redis is down, the first command fails and
nothing is written; if enqueueing fails after the records were written, they are removed again,
so a batch either exists with its work queued or does not exist.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from common.dispatch import enqueue as sender
from common.dispatch.config import make_app
from common.dispatch.names import FINALIZE, GENERATE, RENDER, TRAIN
from common.dispatch.submit import submit_batch
from common.errors import BrokerError, ConfigError, NotFoundError, TunebatchError
from common.jobs import batches
from common.jobs.cancel import CancelOutcome
from common.jobs.context import Context
from common.schemas import (
    FINAL_STATUSES,
    BatchRecord,
    BatchSpec,
    RunProgress,
    RunStatus,
    TrainSpec,
    new_run_id,
)
from common.settings import Settings
from common.state.base import DeadLetter
from common.state.open import shared_records

if TYPE_CHECKING:
    from celery import Celery
    from common.store.base import ArtifactStore

log = logging.getLogger(__name__)

#: Seconds between polls while following a batch or a run.
POLL_S = 0.5


@dataclass(frozen=True)
class BatchProgress:
    batch: BatchRecord
    counts: dict[str, int]

    @property
    def final(self) -> int:
        return sum(self.counts.get(s.value, 0) for s in FINAL_STATUSES)

    @property
    def generated(self) -> int:
        """Tunes past generation (ready, rendering or final, except those never generated)."""
        return sum(self.counts.get(s, 0) for s in ("generated", "rendering", "done", "failed"))

    @property
    def finished(self) -> bool:
        return self.batch.manifest_key is not None


class Client:
    """Distributed-mode operations; one per CLI command (cheap: connections are lazy)."""

    def __init__(self, settings: Settings) -> None:
        if not settings.broker_url:
            raise ConfigError("TUNEBATCH_BROKER_URL is not set; distributed mode needs Redis")
        self.settings = settings
        # Few retries: a person waits for the answer; the error names the URL.
        self.records = shared_records(settings.broker_url, retries=1, timeout_s=2.0)

    @cached_property
    def store(self) -> ArtifactStore:
        from common.store.open import make_store

        return make_store(self.settings)

    @cached_property
    def context(self) -> Context:
        return Context(settings=self.settings, store=self.store, records=self.records)

    @cached_property
    def celery(self) -> Celery:
        """A Celery app of its own, sending to this client's Redis."""
        return make_app(self.settings)

    def _enqueue(self, name: str, *args: str | int, task_id: str | None = None) -> None:
        sender.enqueue(name, *args, task_id=task_id, celery_app=self.celery)

    # -- batches -----------------------------------------------------------------------------
    def submit_batch(self, spec: BatchSpec) -> BatchRecord:
        """Record the batch with every tune queued, then enqueue its chunks; return the batch."""
        return submit_batch(self.context, self.records, spec, celery_app=self.celery)

    def progress(self, batch_id: str) -> BatchProgress:
        return BatchProgress(self.records.get_batch(batch_id), self.records.counts(batch_id))

    def follow(
        self,
        batch_id: str,
        on_progress: Callable[[BatchProgress], None],
        *,
        timeout_s: float | None = None,
    ) -> BatchProgress:
        """Poll until the batch's manifest is written; report each poll."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            current = self.progress(batch_id)
            on_progress(current)
            if current.finished:
                return current
            if deadline is not None and time.monotonic() > deadline:
                raise BrokerError(f"batch {batch_id} did not finish within {timeout_s:.0f} s")
            time.sleep(POLL_S)

    def cancel(self, batch_id: str) -> CancelOutcome:
        """Flag the batch cancelled and cancel its queued tunes; finalize if nothing runs.
        A finished batch is left as it is (``outcome.finished``)."""
        outcome = batches.cancel_batch(self.context, batch_id)
        if not outcome.finished:
            self._finalize_when_done(batch_id)
        return outcome

    def retry_failed(self, batch_id: str) -> dict[str, list[str]]:
        """Put failed tunes back (`batches.retry_failed`) and enqueue exactly that work."""
        work = batches.retry_failed(self.context, batch_id)
        self.records.release_finalize(batch_id)
        for tid in work["render"]:
            self._enqueue(RENDER, batch_id, tid)
        for chunk in work["generate"]:
            self._enqueue(GENERATE, batch_id, int(chunk))
        if not work["render"] and not work["generate"]:
            self._finalize_when_done(batch_id)
        return work

    def _finalize_when_done(self, batch_id: str) -> None:
        if self.records.get_batch(batch_id).manifest_key is None and self.records.claim_finalize(
            batch_id
        ):
            self._enqueue(FINALIZE, batch_id)

    # -- training ----------------------------------------------------------------------------
    def train(self, spec: TrainSpec, run_id: str | None = None) -> RunProgress:
        """Record a training run and enqueue it on the gpu queue; the run id is the task id."""
        from common.abc.corpus import corpus_record

        self.records.ping()
        corpus_record(self.store, spec.corpus)  # fail now, not on a worker, if it is missing
        if run_id is not None and self._run_exists(run_id):  # --resume: same run, requeued
            run = self.records.update_run(run_id, status=RunStatus.QUEUED, error=None)
        else:
            run = RunProgress(id=run_id or new_run_id(), spec=spec, epochs=spec.epochs)
            self.records.create_run(run)
        try:
            self._enqueue(TRAIN, spec.model_dump_json(), run.id, task_id=run.id)
        except TunebatchError:
            with contextlib.suppress(TunebatchError):
                self.records.update_run(run.id, status=RunStatus.FAILED, error="not enqueued")
            raise
        return run

    def _run_exists(self, run_id: str) -> bool:
        try:
            self.records.get_run(run_id)
        except NotFoundError:
            return False
        return True

    def follow_run(
        self,
        run_id: str,
        on_progress: Callable[[RunProgress], None],
        *,
        timeout_s: float | None = None,
    ) -> RunProgress:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        final = {RunStatus.DONE, RunStatus.FAILED, RunStatus.CANCELLED}
        while True:
            run = self.records.get_run(run_id)
            on_progress(run)
            if run.status in final:
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise BrokerError(f"training run {run_id} did not finish within {timeout_s:.0f} s")
            time.sleep(POLL_S)

    # -- the system at a glance --------------------------------------------------------------
    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        return self.records.dead_letters(limit)
