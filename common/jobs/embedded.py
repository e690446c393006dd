"""The embedded runner: a whole batch in this process, through the same job functions as workers.

No broker, no bucket: chunks are generated one after another (the model is the bottleneck and
uses every core), then tunes are rendered in a thread pool (each render is an external process,
so threads are enough to keep every core busy), then the manifest is written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

from common.errors import TransientError
from common.jobs import batches, finalize, generate, rendering
from common.jobs.context import Context
from common.schemas import BatchRecord, BatchSpec, Manifest, TuneRecord

log = logging.getLogger(__name__)

#: (stage, done, total) — stage is "generate" or "render".
ProgressFn = Callable[[str, int, int], None]

RENDER_ATTEMPTS = 3


def _render_with_retries(ctx: Context, batch_id: str, tid: str) -> TuneRecord:
    for attempt in range(1, RENDER_ATTEMPTS + 1):
        try:
            return rendering.render_tune(ctx, batch_id, tid)
        except TransientError as exc:
            if attempt == RENDER_ATTEMPTS:
                return batches.fail_tune(
                    ctx, batch_id, tid, f"gave up after {attempt} tries: {exc}"
                )
            log.warning("render of %s/%s failed (%s); retrying", batch_id, tid, exc)
    raise AssertionError("unreachable")


def run_batch(
    ctx: Context,
    spec: BatchSpec,
    *,
    progress: ProgressFn | None = None,
    on_created: Callable[[BatchRecord], None] | None = None,
) -> Manifest:
    """Create, generate, render and finalize a batch; return its manifest."""
    batch = batches.create_batch(ctx, spec)
    if on_created is not None:
        on_created(batch)
    return resume_batch(ctx, batch.id, progress=progress)


def resume_batch(ctx: Context, batch_id: str, *, progress: ProgressFn | None = None) -> Manifest:
    """Do whatever work of the batch is not done yet (also after a crash or `retry --failed`)."""
    spec = ctx.records.get_batch(batch_id).spec
    report = progress or (lambda stage, done, total: None)
    ready: list[str] = []
    generated = 0
    report("generate", 0, spec.count)
    for chunk_no in range(spec.chunks):
        ready.extend(generate.generate_chunk(ctx, batch_id, chunk_no))
        generated += len(spec.chunk_indices(chunk_no))
        report("generate", generated, spec.count)
    workers = ctx.settings.render_workers or os.cpu_count() or 1
    report("render", 0, len(ready))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="render") as pool:
        futures = [pool.submit(_render_with_retries, ctx, batch_id, tid) for tid in ready]
        for done, future in enumerate(as_completed(futures), start=1):
            future.result()
            report("render", done, len(ready))
    manifest = finalize.finalize_batch(ctx, batch_id)
    if manifest is None:
        counts = ctx.records.counts(batch_id)
        raise TransientError(f"batch {batch_id} has unfinished tunes after the run: {counts}")
    return manifest
