"""The combined corpus: every music21 ABC collection in one corpus, each tune's source kept.

``producer corpus import all`` runs `import_all`: each bundled collection is read, its dialect
normalised (`normalise_dialect`), cleaned and checked like a single import (`corpus.clean_tunes`),
de-duplicated across collections (the first collection in `corpus.BUNDLED` order keeps a tune),
optionally filtered to tunes whose rhythm checks out, and stored as one corpus with a per-tune
source list (``sources.json``) and per-collection counts in the record.

With ``source_header`` each tune also carries its collection as an ``S:`` line right after
``X:`` (``S:`` is the standard's "source" field), so a model trained on it can be conditioned on
a collection's style by the primer ``X:1\\nS:oneills\\n``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from common.abc import notation as abc_notation
from common.abc.corpus import (
    BUNDLED,
    DEFAULT_VALID_FRACTION,
    NUMBERED,
    bundled_files,
    clean_tunes,
    read_abc_file,
    store_corpus,
)
from common.abc.rhythm import check_rhythm
from common.errors import InvalidInputError
from common.schemas import CorpusRecord, check_name
from common.store.base import ArtifactStore

#: An I: line that is an instruction ("I:linebreak $"), not a transcriber's note ("I: :: ||").
_INSTRUCTION = re.compile(r"^I:\s*[A-Za-z][\w-]*(\s|$)")
_LINEBREAK = re.compile(r"^I:\s*linebreak\b", re.IGNORECASE)
_LONG_MODE = re.compile(
    r"^K:\s*([A-G][#b]?)\s+(major|minor|ionian|aeolian|mixolydian|dorian|phrygian|lydian|locrian)"
    r"\b\s*(.*)$",
    re.IGNORECASE,
)
_MODES = {"major": "", "ionian": "", "minor": "m", "aeolian": "m"}
_QUOTED = re.compile(r'"([^"\n]*)"')
#: A chord symbol abc2midi can play: a root A-G, then no dots or spaces (Am7, G/B, D(7); not
#: "D.C." or "Da capo", which are words).
_CHORD = re.compile(r"^\(?[A-G][^.\s]*$")
#: A one-character decoration written before a slur or tuplet, where abc2midi cannot read it.
_DECORATION_BEFORE_GROUP = re.compile(r"([uvTHLMPS~.])((?:\([2-9](?::[0-9]?){0,2}|\()+)")


#: A staccato dot between a broken-rhythm sign and its note (``A>.B``), where abc2midi cannot
#: apply the broken rhythm.
_STACCATO_AFTER_BROKEN = re.compile(r"([<>]+)\.")
#: A fermata or other one-letter decoration on a barline (``H|]``): abc2midi wants a note.
_DECORATED_BARLINE = re.compile(r"(?<![A-Za-z\"])[HTLMPS](?=[|:\]])")


def _quoted(match: re.Match[str]) -> str:
    text = match.group(1)
    if not text or text[0] in "^_<>@" or _CHORD.match(text):
        return match.group(0)
    if text.strip().isdigit():
        return ""  # a fingering
    return f'"^{text}"'  # words written as a chord symbol are an annotation above the note


def normalise_dialect(text: str) -> str:
    """Rewrite collection-specific habits into standard ABC that abc2midi reads as meant.

    * ``I:`` lines that are a transcriber's notes on the repeat structure (Aird's:
      ``I: :: ||``) are dropped, and so is ``I:linebreak``: a layout instruction for
      typesetters that abc2midi reports as an error ("I: key ' linebreak' not recognized"), so a
      tune carrying it would fail the gate; other instructions stay;
    * modes written out in ``K:`` (Aird's ``K:E Minor``, ``K:A Mixolydian``) are abbreviated
      (``K:Em``, ``K:AMix``), the spelling every other collection uses;
    * backquotes (Aird's beam breaks, which abc2midi warns about) are removed;
    * quoted text that is no chord symbol: fingerings (Ryan's ``"4"``) are dropped, words
      (``"p"``, ``"Segno"``) become annotations (``"^p"``) as the standard wants;
    * a one-character decoration before a slur or tuplet (Ryan's ``u((3DEF)``) moves onto the
      note, where abc2midi reads it; a staccato dot after a broken-rhythm sign (``A>.B``) and a
      decoration on a barline (``H|]``), which abc2midi cannot read, are dropped;
    * quoted-printable leftovers of files once sent by e-mail (Ryan's ``=3D``, ``=20``) are
      decoded.
    """
    out: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith("I:") and (not _INSTRUCTION.match(line) or _LINEBREAK.match(line)):
            continue
        mode = _LONG_MODE.match(line)
        if mode:
            name = mode.group(2).lower()
            short = _MODES.get(name, name[:3].capitalize())
            line = f"K:{mode.group(1)}{short}" + (f" {mode.group(3)}" if mode.group(3) else "")
        elif not abc_notation.FIELD_LINE.match(line) and not line.lstrip().startswith("%"):
            line = line.replace("`", "")
            line = _QUOTED.sub(_quoted, line)
            line = _DECORATION_BEFORE_GROUP.sub(lambda m: m.group(2) + m.group(1), line)
            line = line.replace("=3D", "=").replace("=20", " ")
            line = _STACCATO_AFTER_BROKEN.sub(r"\1", line)
            line = _DECORATED_BARLINE.sub("", line)
        out.append(line)
    return "\n".join(out)


def with_source(tune: str, source: str) -> str:
    """The tune with ``S:source`` as its second line (after ``X:``)."""
    lines = tune.split("\n")
    if lines and lines[0].startswith("X:"):
        return "\n".join([lines[0], f"S:{source}", *lines[1:]])
    return f"S:{source}\n{tune}"


def import_all(
    store: ArtifactStore,
    *,
    name: str = "all",
    collections: Sequence[str] | None = None,
    valid_only: bool = False,
    is_valid: Callable[[str], bool] | None = None,
    rhythm_only: bool = False,
    source_header: bool = False,
    valid_fraction: float = DEFAULT_VALID_FRACTION,
    workers: int = 4,
) -> CorpusRecord:
    """Import every bundled collection (or `collections`) as one corpus `name`."""
    names = list(collections or BUNDLED)
    unknown = [c for c in names if c not in BUNDLED]
    if unknown:
        raise InvalidInputError(f"unknown collections {unknown}; choose from {list(BUNDLED)}")
    if valid_only and is_valid is None:
        raise InvalidInputError("valid_only needs a validity check")
    seen: set[str] = set()
    tunes: list[str] = []
    sources: list[str] = []
    per: dict[str, dict[str, int]] = {}
    totals = {"found": 0, "unsafe": 0, "missing_headers": 0, "duplicates": 0, "invalid": 0}
    files = 0
    dropped_rhythm = 0
    for collection in names:
        paths = bundled_files(collection)
        files += len(paths)
        texts = (normalise_dialect(read_abc_file(p)) for p in paths)
        cleaned = clean_tunes(texts, numbered=collection in NUMBERED)
        fresh = []
        across = 0
        for tune in cleaned.tunes:
            key = abc_notation.tune_body_key(tune)
            if key in seen:
                across += 1
                continue
            seen.add(key)
            fresh.append(tune)
        invalid = 0
        if valid_only and is_valid is not None:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                verdicts = list(pool.map(is_valid, fresh))
            invalid = verdicts.count(False)
            fresh = [t for t, ok in zip(fresh, verdicts, strict=True) if ok]
        off_beat = 0
        if rhythm_only:
            in_rhythm = [t for t in fresh if (r := check_rhythm(t)).checked and r.ok]
            off_beat = len(fresh) - len(in_rhythm)
            fresh = in_rhythm
        dropped_rhythm += off_beat
        per[collection] = {
            "found": cleaned.found,
            "kept": len(fresh),
            "unsafe": cleaned.unsafe,
            "missing_headers": cleaned.missing_headers,
            "duplicates": cleaned.duplicates + across,
            "invalid": invalid,
            "rhythm": off_beat,
        }
        for field, value in (
            ("found", cleaned.found),
            ("unsafe", cleaned.unsafe),
            ("missing_headers", cleaned.missing_headers),
            ("duplicates", cleaned.duplicates + across),
            ("invalid", invalid),
        ):
            totals[field] += value
        tunes.extend(with_source(t, collection) if source_header else t for t in fresh)
        sources.extend([collection] * len(fresh))
    if not tunes:
        raise InvalidInputError(f"no usable tunes in {names}: {per}")
    return store_corpus(
        store,
        tunes,
        valid_fraction,
        sources=sources,
        name=check_name(name),
        source="+".join(names),
        files=files,
        tunes_found=totals["found"],
        dropped_unsafe=totals["unsafe"],
        dropped_duplicates=totals["duplicates"],
        dropped_missing_headers=totals["missing_headers"],
        dropped_invalid=totals["invalid"],
        valid_only=valid_only,
        rhythm_only=rhythm_only,
        dropped_rhythm=dropped_rhythm,
        source_header=source_header,
        collections=per,
    )
