"""The reconciler: a batch's unfinished work whose job message the broker lost is sent again.

Every step of a batch hands its work on with a message: a chunk's tunes wait for their
``generate_chunk``, a generated tune for its ``render_tune``, a batch whose every tune is final
for its ``finalize_batch``. Leases (`worker.leases`) bring back a message whose worker died, but
not one Redis itself lost: with ``appendfsync everysec`` a Redis SIGKILL drops up to the last
second of writes, and Redis promises no more; a message a worker had popped but not yet written
to the unacked hash when Redis died is gone too. The tune's record still says ``generated`` (or
``queued``, ``rendering``) and nothing will ever move it.

So the records, which say what work is left, are checked against the broker, which says what
jobs exist: a tune not final with no job that could finish it, in two looks at the broker
`confirm_s` apart (a message between a worker's pop and its unacked write is in neither for an
instant), gets its job sent again. Every job is idempotent (a render of a done tune returns, a
chunk samples only the tunes not yet generated, a finalize of a finalized batch returns its
manifest), so a message sent twice costs a repeat, never a wrong record.

Which job finishes a tune, by its status:

* ``queued``, ``generating``: its chunk's ``generate_chunk``;
* ``generated``: its ``render_tune``, or its chunk's ``generate_chunk`` (a chunk sends its
  renders when it ends, after writing every tune);
* ``rendering``: its ``render_tune``.

A batch whose tunes are all final, whose finalize was claimed (so a ``finalize_batch`` was sent)
and that has no manifest and no ``finalize_batch`` message gets one again. A finalize that was
given up releases its claim and is left to `producer retry`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from common.dispatch.names import FINALIZE, GENERATE, RENDER
from common.errors import NotFoundError
from common.schemas import BatchRecord, TuneRecord, TuneStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class Job:
    """A job message as the reconciler compares them: task name and arguments as text."""

    task: str
    args: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.task}{list(self.args)}"


def generate_job(batch_id: str, chunk_no: int) -> Job:
    return Job(GENERATE, (batch_id, str(chunk_no)))


def render_job(batch_id: str, tid: str) -> Job:
    return Job(RENDER, (batch_id, tid))


def finalize_job(batch_id: str) -> Job:
    return Job(FINALIZE, (batch_id,))


class OpenBatches(Protocol):
    """What the reconciler reads (`common.state.redis.RedisRecords` has it)."""

    def open_batches(self) -> list[str]: ...
    def get_batch(self, batch_id: str) -> BatchRecord: ...
    def counts(self, batch_id: str) -> dict[str, int]: ...
    def tunes(self, batch_id: str) -> list[TuneRecord]: ...
    def finalize_claimed(self, batch_id: str) -> bool: ...


def _covering(batch: BatchRecord, tune: TuneRecord) -> tuple[Job, set[Job]]:
    """The job to send for a tune not final, and every job whose message means it has one."""
    chunk = generate_job(batch.id, tune.index // batch.spec.chunk_size)
    render = render_job(batch.id, tune.tune_id)
    if tune.status in (TuneStatus.QUEUED, TuneStatus.GENERATING):
        return chunk, {chunk}
    if tune.status == TuneStatus.GENERATED:
        return render, {render, chunk}
    return render, {render}


def missing_jobs(records: OpenBatches, present: set[Job], batch_ids: Iterable[str]) -> set[Job]:
    """The jobs the open batches `batch_ids` need that are not among the broker's `present`."""
    missing: set[Job] = set()
    for batch_id in batch_ids:
        try:
            batch = records.get_batch(batch_id)
            counts = records.counts(batch_id)
        except NotFoundError:  # deleted since it was listed
            continue
        if batch.manifest_key:
            continue
        unfinished = sum(n for status, n in counts.items() if not TuneStatus(status).final)
        if unfinished == 0:
            job = finalize_job(batch_id)
            if job not in present and records.finalize_claimed(batch_id):
                missing.add(job)
            continue
        for tune in records.tunes(batch_id):
            if tune.status.final:
                continue
            send, covered_by = _covering(batch, tune)
            if not covered_by & present:
                missing.add(send)
    return missing


def reconcile(
    records: OpenBatches,
    present: Callable[[], set[Job]],
    send: Callable[[Job], None],
    *,
    confirm_s: float,
    sleep: Callable[[float], None],
) -> list[Job]:
    """Send again every job the open batches need that the broker lacks in two looks `confirm_s`
    apart; return the jobs sent.

    `present` reads the broker (queued and unacked messages); the records are read after it each
    time, so a job that ends between the two reads shows as a final tune, not a missing job.
    """
    first = missing_jobs(records, present(), records.open_batches())
    if not first:
        return []
    sleep(confirm_s)
    batches = sorted({job.args[0] for job in first})
    lost = sorted(first & missing_jobs(records, present(), batches))
    for job in lost:
        log.warning("sending %s again: its work is not done and no queue or worker has it", job)
        send(job)
    return lost
