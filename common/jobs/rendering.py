"""The render job: turn one generated tune into the batch's formats and store every file.

A tune the tools reject fails permanently with the tool's message; a tune of a cancelled batch
ends cancelled without files; a worker's own trouble (a tool missing, disk full, bucket down) is
transient, so the job is retried and the tune stays ``rendering`` until a delivery finishes it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from common.errors import (
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    PermanentError,
    RenderError,
    ToolMissingError,
    TransientError,
)
from common.jobs import batches
from common.jobs import cancel as cancelling
from common.jobs.context import Context
from common.render import pipeline as render
from common.schemas import ArtifactFile, TuneRecord, TuneStatus

log = logging.getLogger(__name__)


def render_tune(ctx: Context, batch_id: str, tid: str) -> TuneRecord:
    """Render one generated tune to the batch's formats and store every file.

    A tune the tools reject fails permanently with the tool's message; transient errors (a tool
    killed, disk full, bucket down) propagate so the caller retries; the record then still says
    ``rendering`` and a redelivery picks it up again.
    """
    batch = ctx.records.get_batch(batch_id)
    tune = ctx.records.get_tune(batch_id, tid)
    if tune.status == TuneStatus.CANCELLED:
        # A redelivery: the first delivery may have died between uploading and taking its files
        # back, after the batch's manifest was written (and its folder swept). Deletes are cheap.
        _remove_files(ctx, batch_id, tid, batch.spec.formats)
        return tune
    if tune.status.final:
        return tune
    if batch.cancelled:
        return _cancel_tune(ctx, batch_id, tid, batch.spec.formats)
    if tune.status not in (TuneStatus.GENERATED, TuneStatus.RENDERING):
        raise InvalidInputError(f"tune {tid} of batch {batch_id} is {tune.status}, not generated")
    tune = ctx.records.update_tune(batch_id, tid, TuneStatus.RENDERING, attempts=tune.attempts + 1)
    abc_key = batches.tune_key(batch_id, tid, "abc")
    try:
        # Our own files are UTF-8; a damaged one must fail as a tune, not as a crash.
        text = ctx.store.get_bytes(abc_key).decode("utf-8", errors="replace")
    except NotFoundError as exc:
        return ctx.records.update_tune(batch_id, tid, TuneStatus.FAILED, error=str(exc))
    abc_info = ctx.store.info(abc_key)
    assert abc_info is not None
    files = [ArtifactFile(format="abc", key=abc_key, size=abc_info.size, sha256=abc_info.sha256)]
    written: list[str] = []
    try:
        with render.rendered(
            text, batch.spec.formats, ctx.settings, batch.spec.audio, batch.spec.instrument
        ) as result:
            if ctx.records.is_cancelled(batch_id):  # cancelled while rendering: upload nothing
                return _cancel_tune(ctx, batch_id, tid, batch.spec.formats)
            for fmt in batch.spec.formats:
                if fmt == "abc":
                    continue
                key = batches.tune_key(batch_id, tid, fmt)
                written.append(key)
                info = ctx.store.put_file(key, result.files[fmt])
                files.append(ArtifactFile(format=fmt, key=key, size=info.size, sha256=info.sha256))
            details = result.info()
    except ToolMissingError as exc:
        # This worker is misconfigured, the tune is fine: retry (elsewhere), do not fail it.
        raise TransientError(str(exc)) from exc
    except (RenderError, PermanentError) as exc:
        log.info("tune %s/%s failed: %s", batch_id, tid, exc)
        # The ABC stays listed: people want to see what the tools rejected.
        try:
            return ctx.records.update_tune(
                batch_id, tid, TuneStatus.FAILED, error=str(exc), files=files[:1]
            )
        except InvalidTransitionError:  # cancelled meanwhile: a cancelled tune has no files
            return _dropped(ctx, batch_id, tid, [abc_key, *written])
    try:
        return ctx.records.update_tune(
            batch_id, tid, TuneStatus.DONE, files=files, error=None, render=details
        )
    except InvalidTransitionError:  # `cancel` came in between: take the files back
        return _dropped(ctx, batch_id, tid, [abc_key, *written])


def _dropped(ctx: Context, batch_id: str, tid: str, written: list[str]) -> TuneRecord:
    """The tune was cancelled while it rendered: delete what the render wrote, and its ABC."""
    tune = ctx.records.get_tune(batch_id, tid)
    if tune.status != TuneStatus.CANCELLED:
        raise InvalidTransitionError(f"tune {tid} of batch {batch_id} became {tune.status}")
    cancelling.remove(ctx.store, written)
    log.info("tune %s/%s was cancelled while rendering; its files are removed", batch_id, tid)
    return tune


def _cancel_tune(ctx: Context, batch_id: str, tid: str, formats: Sequence[str]) -> TuneRecord:
    """End a tune of a cancelled batch: cancelled, without the files it had (its ABC too)."""
    _remove_files(ctx, batch_id, tid, formats)
    return ctx.records.update_tune(batch_id, tid, TuneStatus.CANCELLED)


def _remove_files(ctx: Context, batch_id: str, tid: str, formats: Sequence[str]) -> None:
    cancelling.remove(ctx.store, [batches.tune_key(batch_id, tid, f) for f in formats])
