"""Get a batch's files back from the artifact store: in parallel, resumable, verified.

The manifest lists every file with its size and SHA-256, so a download is checked against what
the worker uploaded, and a file already on disk with the right hash is not fetched again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from common.errors import IntegrityError, NotFoundError
from common.files import atomic_write_text, file_sha256, output_dir, own_subdir
from common.jobs.batches import manifest_key
from common.schemas import ArtifactFile, Manifest, check_batch_id
from common.store.base import ArtifactStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchResult:
    directory: Path
    downloaded: int
    skipped: int
    bytes: int


def read_manifest(store: ArtifactStore, batch_id: str) -> Manifest:
    key = manifest_key(check_batch_id(batch_id))
    if not store.exists(key):
        raise NotFoundError(
            f"batch {batch_id} has no manifest yet: it is still running, or does not exist "
            "(see `producer status`)"
        )
    return Manifest.model_validate_json(store.get_bytes(key))


def _fetch_one(store: ArtifactStore, item: ArtifactFile, dest: Path) -> bool:
    # A file already there counts only if it is a regular file of ours (not a symlink, which the
    # atomic download replaces rather than writes through, nor a FIFO or device to hash).
    if (
        not dest.is_symlink()
        and dest.is_file()
        and dest.stat().st_size == item.size
        and file_sha256(dest) == item.sha256
    ):
        return False
    actual = store.get_file(item.key, dest).sha256  # hashed while it was written
    if actual != item.sha256:
        dest.unlink(missing_ok=True)
        raise IntegrityError(
            f"{item.key}: downloaded SHA-256 {actual[:12]}… differs from the manifest's "
            f"{item.sha256[:12]}…; the file was changed after the batch finished"
        )
    return True


def fetch_batch(
    store: ArtifactStore,
    batch_id: str,
    to: Path,
    *,
    workers: int = 8,
    formats: set[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FetchResult:
    """Download the batch's files listed in its manifest into ``to/<batch_id>/``."""
    manifest = read_manifest(store, batch_id)
    output_dir(to, "--to")  # one clear line for a file, a device or a folder it cannot make
    folder = own_subdir(to / batch_id, "batch folder")
    items = [
        f for tune in manifest.tunes for f in tune.files if formats is None or f.format in formats
    ]
    downloaded = skipped = size = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {
            pool.submit(_fetch_one, store, item, folder / Path(item.key).name): item
            for item in items
        }
        for n, future in enumerate(as_completed(futures), start=1):
            if future.result():
                downloaded += 1
            else:
                skipped += 1
            size += futures[future].size
            if progress is not None:
                progress(n, len(items))
    atomic_write_text(folder / "manifest.json", manifest.model_dump_json(indent=2))
    return FetchResult(folder, downloaded, skipped, size)
