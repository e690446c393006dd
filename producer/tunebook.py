"""Chosen tunes of a batch as one ``.abc`` tunebook.

The gallery page builds the same text in the browser (``exportTunebook`` in
``gallery_assets/gallery.js``) from its favourites; this module is the command-line side, from a
list of tune ids such as the page's "Export favourite ids" file. Both keep one format, so a list
exported from the page gives the same bytes here: a ``%abc-2.1`` line, a comment naming the batch
and the ids, then each tune in the order given, renumbered ``X:1``, ``X:2``, … (tunebook readers
expect distinct reference numbers), separated by one blank line.
"""

from __future__ import annotations

import re

from common.errors import InvalidInputError, NotFoundError
from common.jobs.batches import tune_key
from common.jobs.fetch import read_manifest
from common.schemas import tune_index
from common.store.base import ArtifactStore

_X_LINE = re.compile(r"^X:.*$", re.MULTILINE)


#: How many ids an error message names before it says "and N more".
_SHOWN = 5


def parse_ids(text: str) -> list[str]:
    """Tune ids separated by whitespace or commas; ``#`` starts a comment; duplicates dropped
    (the first kept, in one pass: 100,000 ids take a fraction of a second)."""
    ids: dict[str, None] = {}
    for line in text.splitlines():
        for word in re.split(r"[\s,]+", line.split("#", 1)[0]):
            if word:
                try:
                    tune_index(word)
                except InvalidInputError:
                    shown = word if len(word) <= 40 else word[:37] + "..."
                    raise InvalidInputError(
                        f"{shown!r} is not a tune id (they look like t000042)"
                    ) from None
                ids[word] = None
    return list(ids)


def _listing(ids: list[str]) -> str:
    """The first few of `ids`, and how many more: an error stays one short line."""
    more = f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
    return ", ".join(ids[:_SHOWN]) + more


def renumber(abc: str, number: int) -> str:
    """The tune with its first ``X:`` line set to ``number`` (one added when it has none)."""
    text = abc.strip().replace("\r\n", "\n")
    if _X_LINE.search(text):
        return _X_LINE.sub(f"X:{number}", text, count=1)
    return f"X:{number}\n{text}"


def tunebook(batch_id: str, tunes: list[tuple[str, str]]) -> str:
    """Join (tune id, ABC) pairs into one tunebook text."""
    head = f"%abc-2.1\n% tunebatch batch {batch_id}: {' '.join(tid for tid, _ in tunes)}\n"
    body = "\n\n".join(renumber(abc, n) for n, (_, abc) in enumerate(tunes, start=1))
    return f"{head}\n{body}\n"


def tunes_with_abc(store: ArtifactStore, batch_id: str) -> list[str]:
    """Ids of the batch's tunes that have their ABC, in batch order (``tunebook --all``)."""
    manifest = read_manifest(store, batch_id)
    return [t.tune_id for t in manifest.tunes if any(f.format == "abc" for f in t.files)]


def export_tunebook(store: ArtifactStore, batch_id: str, ids: list[str]) -> str:
    """The tunebook of ``ids`` (in that order) from a finished batch in ``store``."""
    if not ids:
        raise InvalidInputError("no tune ids given; name some (e.g. t000003 t000017) or --ids FILE")
    manifest = read_manifest(store, batch_id)
    has_abc = {t.tune_id for t in manifest.tunes if any(f.format == "abc" for f in t.files)}
    missing = [tid for tid in ids if tid not in has_abc]
    if missing:
        raise NotFoundError(
            f"batch {batch_id} has no ABC for {_listing(missing)}; see `producer status "
            f"{batch_id} --json` for its tunes"
        )
    tunes = [
        (tid, store.get_bytes(tune_key(batch_id, tid, "abc")).decode("utf-8", errors="replace"))
        for tid in ids
    ]
    return tunebook(batch_id, tunes)
