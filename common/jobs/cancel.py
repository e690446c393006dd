"""What cancelling a batch leaves in the bucket: exactly the files its manifest lists.

The rule: a tune that ends ``cancelled`` has no files. Three parts keep it, each covering the
windows the others cannot:

* a job checks the batch's cancel flag right before it uploads, and uploads nothing if it is set;
* a job whose upload raced a `cancel` (its final status update is refused because the tune is
  cancelled now) deletes what it wrote;
* the manifest of a cancelled batch is written after a sweep of the batch's folder that deletes
  every tune file the manifest does not list (files of tunes generated before the cancel, and of
  a job that died between its upload and its clean-up).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from common.store.base import ArtifactStore

log = logging.getLogger(__name__)

#: A tune's file inside a batch's folder (``t000042.wav``); other objects there are left alone.
TUNE_FILE = re.compile(r"t\d+\.[a-z0-9]+")


@dataclass(frozen=True)
class CancelOutcome:
    """What `producer cancel` did: tunes cancelled now, or nothing because the batch had ended."""

    batch_id: str
    cancelled: int
    finished: bool
    counts: dict[str, int]


def remove(store: ArtifactStore, keys: Iterable[str]) -> int:
    """Delete `keys` (absent ones are fine); return how many were asked for."""
    n = 0
    for key in keys:
        store.delete(key)
        n += 1
    return n


def sweep(store: ArtifactStore, folder: str, keep: set[str]) -> list[str]:
    """Delete every tune file under `folder` (``batches/<id>/``) that is not in `keep`."""
    gone = [
        key
        for key in store.list(folder)
        if key not in keep and TUNE_FILE.fullmatch(key.removeprefix(folder))
    ]
    remove(store, gone)
    if gone:
        log.info("%s: removed %d files of cancelled tunes", folder, len(gone))
    return gone
