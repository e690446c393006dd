"""O'Neill's as a musicality reference, imported and built once per session.

The import reads music21's bundled files (no abc2midi filter: fast, and every tune is human
anyway); building the reference reads all 1,838 tunes once. Tests copy the stored files into
their own store with `copy_reference`, as a store that has imported the corpus would hold them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from common.abc.corpus import import_corpus
from common.quality.reference import load_reference
from common.store.base import ArtifactStore
from common.store.local import LocalStore

REFERENCE = "oneills"


@pytest.fixture(scope="session")
def oneills_reference(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    store = LocalStore(Path(tmp_path_factory.mktemp("oneills")))
    import_corpus(store, REFERENCE)
    load_reference(store, REFERENCE)
    return store


def copy_reference(source: ArtifactStore, target: ArtifactStore) -> None:
    """The corpus and its stored reference, copied into `target`."""
    for prefix in (f"corpora/{REFERENCE}/", "quality/references/"):
        for key in source.list(prefix):
            target.put_bytes(key, source.get_bytes(key))
