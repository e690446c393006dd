"""Import corpora — music21's bundled ABC collections or the user's own files — into one clean text.

An import splits files into tunes, strips every directive the allow-list refuses
(`common.abc.directives`: the lines go, the tune stays, and the record counts what went by
directive, so a model never learns to write ``I:format`` or ``I:bgcolor``), cleans them
(`abc_notation.normalise_tune`), drops what a model should not learn from (control bytes, include
spellings left in text, tunes without meter or key, duplicates, and with ``valid_only`` tunes
abc2midi rejects), then writes a train/validation split by tune and
the vocabulary to the artifact store under ``corpora/<name>/``. The split is decided by a hash of
each tune, so re-importing the same data gives the same split, and adding tunes never moves an old
tune from train to validation.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.abc import directives as abc_directives
from common.abc import notation as abc_notation
from common.abc.vocab import Vocab
from common.errors import InvalidInputError, NotFoundError
from common.files import read_regular_file
from common.schemas import CorpusRecord, check_name
from common.store.base import ArtifactStore

log = logging.getLogger(__name__)

#: Bundled collections: our name → (music21 corpus folder, description).
#: In O'Neill's the X: number is the tune's number in the book, so it identifies a tune across
#: music21's overlapping files (see `NUMBERED`); elsewhere numbers restart per file.
BUNDLED: dict[str, tuple[str, str]] = {
    "oneills": ("oneills1850", "O'Neill's Music of Ireland (1850 tunes), Irish dance music"),
    "ryans": ("ryansMammoth", "Ryan's Mammoth Collection (1883), reels, jigs, hornpipes"),
    "airds": ("airdsAirs", "Aird's Selection of Scotch, English, Irish and Foreign Airs"),
    "essen": ("essenFolksong", "Essen folksong collection, German and other folk songs"),
    "nottingham": ("nottingham-dataset", "Nottingham dataset sample (reels a-c)"),
    "miscfolk": ("miscFolk", "American fife tunes and Northumbrian minstrelsy"),
}

NUMBERED = frozenset({"oneills"})

DEFAULT_VALID_FRACTION = 0.05


@dataclass(frozen=True)
class Corpus:
    record: CorpusRecord
    train_text: str
    valid_text: str
    vocab: Vocab


def corpus_key(name: str, filename: str) -> str:
    return f"corpora/{check_name(name)}/{filename}"


def music21_corpus_dir() -> Path:
    """Where music21's corpus lives, found without importing music21 (slow to import)."""
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError(
            "music21 is not installed, so its bundled collections are unavailable; "
            "install tunebatch's dependencies (make install) or import your own .abc files"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "corpus"


def bundled_files(name: str) -> list[Path]:
    folder, _ = BUNDLED[name]
    files = sorted((music21_corpus_dir() / folder).glob("*.abc"))
    if not files:
        raise NotFoundError(f"music21's corpus folder {folder!r} has no .abc files")
    return files


def resolve_source(source: str) -> tuple[str, list[Path]]:
    """(default corpus name, files) for a bundled collection name or a path."""
    if source in BUNDLED:
        return source, bundled_files(source)
    path = Path(source).expanduser()
    if path.exists() and not path.is_dir():  # a device or FIFO too: read_abc_file says what it is
        return _slug(path.stem), [path]
    if path.is_dir():
        files, outside = folder_files(path)
        if outside:
            log.warning(
                "%s: %d symlinks point outside the folder and were not followed: %s",
                path, len(outside), ", ".join(str(p) for p in outside[:5]),
            )  # fmt: skip
        if not files:
            raise InvalidInputError(f"folder {path} holds no .abc files")
        return _slug(path.name), files
    raise NotFoundError(
        f"unknown corpus {source!r}: not a bundled collection ({', '.join(BUNDLED)}) "
        "and no such file or folder"
    )


def folder_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(the .abc files of `folder` and its subfolders, the symlinks there that lead out of it).

    A symlink is followed only to a file inside the folder (read at its real path); one that
    leads out (``link.abc -> /etc/shadow``) is left out and returned, so the caller can say so;
    linked subfolders are not entered. Only regular files are listed (not a FIFO or a device
    named ``*.abc``); `read_abc_file` checks again when it opens each one.
    """
    root = folder.resolve()
    found: list[tuple[Path, Path]] = []
    outside: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False: no linked folders
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath) / name
            if path.suffix.lower() != ".abc":
                continue
            real = path.resolve()
            if not real.is_relative_to(root):
                outside.append(path)
            elif real.is_file():
                found.append((path, real))
    files = list(dict.fromkeys(real for _, real in sorted(found)))  # a file linked twice: once
    return files, sorted(outside)


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:64]
    return slug or "corpus"


#: Bytes 0x80-0x9F as the Atari ST code page writes them (the code page 437 letters, and ß at
#: 0x9E). Some old files (music21's Essen collection) were converted to Unicode as if they were
#: Latin-1, which turned their ü, ä, ö, ß into the control characters U+0081, U+0084, U+0094,
#: U+009E; this table turns them back.
_C1_LETTERS = {
    code: (bytes([code]).decode("cp437") if code != 0x9E else "ß") for code in range(0x80, 0xA0)
}


#: The largest ABC file a command reads (music21's largest collection file is a few MB).
MAX_ABC_FILE_BYTES = 64 << 20


def read_abc_file(path: Path) -> str:
    """Text of an ABC file: UTF-8, or Latin-1 for the many old files that are not; control
    characters U+0080-U+009F are read as the letters they stand for (see `_C1_LETTERS`).

    Only a regular file of at most `MAX_ABC_FILE_BYTES` is read: a device, a FIFO or a folder
    is refused with one clear line (`common.files.read_regular_file`)."""
    data = read_regular_file(path, limit=MAX_ABC_FILE_BYTES, what="ABC file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.translate(_C1_LETTERS)


def in_validation(tune: str, fraction: float) -> bool:
    digest = hashlib.sha256(abc_notation.tune_body_key(tune).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def duplicate_keys(tune: str, *, numbered: bool = False) -> set[str]:
    """Two tunes are the same when their music is, or (in a `numbered` collection) their number.

    The second rule catches overlapping files of one collection that transcribe the same tune
    differently (music21's O'Neill's files: 171 tune numbers occur twice, all with different
    transcriptions); the first occurrence is kept.
    """
    keys = {"body:" + abc_notation.tune_body_key(tune)}
    number = abc_notation.header_fields(tune).get("X", "")
    if numbered and number:
        keys.add(f"number:{number}")
    return keys


@dataclass
class CleanResult:
    tunes: list[str]
    found: int = 0
    unsafe: int = 0
    duplicates: int = 0
    missing_headers: int = 0
    invalid: int = 0
    #: Directive lines (and inline fields) stripped by the allow-list, by directive.
    stripped: Counter[str] = field(default_factory=Counter)


def clean_tunes(
    texts: Iterable[str],
    *,
    is_valid: Callable[[str], bool] | None = None,
    workers: int = 4,
    numbered: bool = False,
) -> CleanResult:
    """Split, normalise, filter and de-duplicate the tunes of several file texts, keeping order."""
    result = CleanResult(tunes=[])
    seen: set[str] = set()
    for text in texts:
        for found in abc_notation.split_tunes(text):
            result.found += 1
            raw, stripped = abc_directives.strip(found)
            result.stripped.update(stripped)
            if abc_notation.unsafe_reason(raw) is not None:
                result.unsafe += 1
                continue
            tune = abc_notation.normalise_tune(raw)
            missing = abc_notation.missing_fields(tune)
            if (
                "M" in missing
                or "K" in missing
                or tune.rstrip().endswith("K:" + abc_notation.header_fields(tune).get("K", ""))
            ):
                result.missing_headers += 1
                continue
            if "T" in missing:
                number = abc_notation.header_fields(tune).get("X", "")
                tune = abc_notation.ensure_headers(tune, int(number or 1), "Untitled").rstrip("\n")
            keys = duplicate_keys(tune, numbered=numbered)
            if keys & seen:
                result.duplicates += 1
                continue
            seen.update(keys)
            result.tunes.append(tune)
    if is_valid is not None and result.tunes:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            verdicts = list(pool.map(is_valid, result.tunes))
        kept = [t for t, ok in zip(result.tunes, verdicts, strict=True) if ok]
        result.invalid = len(result.tunes) - len(kept)
        result.tunes = kept
    return result


def import_corpus(
    store: ArtifactStore,
    source: str,
    *,
    name: str | None = None,
    valid_only: bool = False,
    is_valid: Callable[[str], bool] | None = None,
    valid_fraction: float = DEFAULT_VALID_FRACTION,
    workers: int = 4,
) -> CorpusRecord:
    """Import `source` (bundled name, file or folder) and store it as corpus `name`.

    `is_valid` decides validity when `valid_only` is set (the caller passes abc2midi's check;
    this module runs no tools). Nothing is written unless the import succeeds.
    """
    if not 0.0 < valid_fraction < 0.5:
        raise InvalidInputError(f"validation fraction must be in (0, 0.5), got {valid_fraction}")
    default_name, files = resolve_source(source)
    name = check_name(name or default_name)
    if valid_only and is_valid is None:
        raise InvalidInputError("valid_only needs a validity check")
    texts = (read_abc_file(p) for p in files)
    cleaned = clean_tunes(
        texts,
        is_valid=is_valid if valid_only else None,
        workers=workers,
        numbered=source in NUMBERED,
    )
    if cleaned.stripped:
        log.info(
            "%s: stripped directives not on the allow-list: %s",
            source,
            ", ".join(f"{name} x{n}" for name, n in cleaned.stripped.most_common()),
        )
    if not cleaned.tunes:
        raise InvalidInputError(
            f"{source}: no usable tunes ({cleaned.found} found; {cleaned.unsafe} unsafe, "
            f"{cleaned.missing_headers} without M:/K: or music, {cleaned.duplicates} duplicates, "
            f"{cleaned.invalid} rejected by abc2midi)"
        )
    return store_corpus(
        store,
        cleaned.tunes,
        valid_fraction,
        name=name,
        source=source if source in BUNDLED else str(Path(source).expanduser().resolve()),
        files=len(files),
        tunes_found=cleaned.found,
        dropped_unsafe=cleaned.unsafe,
        dropped_duplicates=cleaned.duplicates,
        dropped_missing_headers=cleaned.missing_headers,
        dropped_invalid=cleaned.invalid,
        stripped_directives=dict(sorted(cleaned.stripped.items())),
        valid_only=valid_only,
    )


def store_corpus(
    store: ArtifactStore,
    tunes: list[str],
    valid_fraction: float = DEFAULT_VALID_FRACTION,
    sources: list[str] | None = None,
    **facts: Any,
) -> CorpusRecord:
    """Split `tunes`, write the corpus and return its record: `facts` (the `CorpusRecord` fields
    of the import: name, source, counts) and the sizes and hash of the split.

    With `sources` (one per tune) the split's source of each tune is written too
    (``sources.json``: ``{"train": [...], "valid": [...]}``).
    """
    import json

    in_valid = [in_validation(t, valid_fraction) for t in tunes]
    train = [t for t, v in zip(tunes, in_valid, strict=True) if not v]
    valid = [t for t, v in zip(tunes, in_valid, strict=True) if v]
    labels = sources or [""] * len(tunes)
    train_src = [s for s, v in zip(labels, in_valid, strict=True) if not v]
    valid_src = [s for s, v in zip(labels, in_valid, strict=True) if v]
    if not valid and len(train) > 1:
        valid.append(train.pop())
        valid_src.append(train_src.pop())
    if not train:
        train, valid, train_src, valid_src = valid, [], valid_src, []
    train_text = abc_notation.join_tunes(train)
    valid_text = abc_notation.join_tunes(valid)
    vocab = Vocab.from_texts([train_text, valid_text])
    record = CorpusRecord(
        **facts,
        train_tunes=len(train),
        valid_tunes=len(valid),
        train_chars=len(train_text),
        valid_chars=len(valid_text),
        vocab_size=len(vocab),
        sha256=hashlib.sha256((train_text + "\x00" + valid_text).encode("utf-8")).hexdigest(),
    )
    name = record.name
    store.put_bytes(corpus_key(name, "train.txt"), train_text.encode("utf-8"))
    store.put_bytes(corpus_key(name, "valid.txt"), valid_text.encode("utf-8"))
    store.put_bytes(corpus_key(name, "vocab.json"), vocab.to_json().encode("utf-8"))
    if sources is not None:
        payload = json.dumps({"train": train_src, "valid": valid_src})
        store.put_bytes(corpus_key(name, "sources.json"), payload.encode("utf-8"))
    # The record goes last: a corpus is visible only once all its files are in place.
    store.put_bytes(
        corpus_key(name, "corpus.json"), record.model_dump_json(indent=2).encode("utf-8")
    )
    log.info("imported corpus %s: %d train / %d valid tunes", name, len(train), len(valid))
    return record


def list_corpora(store: ArtifactStore) -> list[CorpusRecord]:
    records = []
    for key in store.list("corpora/"):
        if key.endswith("/corpus.json"):
            records.append(CorpusRecord.model_validate_json(store.get_bytes(key)))
    return sorted(records, key=lambda r: r.name)


def corpus_record(store: ArtifactStore, name: str) -> CorpusRecord:
    key = corpus_key(name, "corpus.json")
    if not store.exists(key):
        hint = (
            f"producer corpus import {name}" if name in BUNDLED else "producer corpus import PATH"
        )
        raise NotFoundError(f"corpus {name!r} is not imported; run `{hint}` first")
    return CorpusRecord.model_validate_json(store.get_bytes(key))


def load_corpus(store: ArtifactStore, name: str) -> Corpus:
    record = corpus_record(store, name)
    return Corpus(
        record=record,
        train_text=store.get_bytes(corpus_key(name, "train.txt")).decode("utf-8"),
        valid_text=store.get_bytes(corpus_key(name, "valid.txt")).decode("utf-8"),
        vocab=Vocab.from_json(store.get_bytes(corpus_key(name, "vocab.json")).decode("utf-8")),
    )
