"""Submit a batch in distributed mode: record it, then enqueue one generation job per chunk.

Shared by the producer (`producer.backend.DistributedBackend.submit_batch`) and the
scheduled-generation task (`worker.schedules`), so both go through the same records and the same
enqueue path. No task code is imported here (jobs are sent by name), so the producer stays free
of TensorFlow.
"""

from __future__ import annotations

import contextlib
import logging

from celery import Celery

from common.dispatch import enqueue as sender
from common.dispatch.names import GENERATE
from common.errors import BrokerError, TunebatchError
from common.jobs import batches
from common.jobs.context import Context
from common.schemas import BatchRecord, BatchSpec
from common.state.base import SharedRecords

log = logging.getLogger(__name__)


def submit_batch(
    ctx: Context, records: SharedRecords, spec: BatchSpec, *, celery_app: Celery
) -> BatchRecord:
    """Record the batch with every tune queued, then enqueue its chunks; return the batch.

    If enqueueing fails after the records were written they are removed again, so a batch either
    exists with its work queued or does not exist. `records` are `ctx`'s records (Redis).
    """
    records.ping()  # before touching the bucket: Redis down is the common failure
    batch = batches.create_batch(ctx, spec)
    try:
        for chunk_no in range(spec.chunks):
            # Looked up on the module per call, so a test can stand in for the broker.
            sender.enqueue(GENERATE, batch.id, chunk_no, celery_app=celery_app)
    except TunebatchError as exc:
        with contextlib.suppress(TunebatchError):
            records.delete_batch(batch.id)
        raise BrokerError(f"{exc}; batch {batch.id} was withdrawn, nothing is queued") from None
    log.info("batch %s: %d tunes in %d chunks queued", batch.id, spec.count, spec.chunks)
    return batch
