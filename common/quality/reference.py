"""The human reference of the musicality figures: a corpus's held-out tunes, built once, stored.

The reference is half of an imported corpus's validation tunes (tunes no model trained on; the
split is the import's, `common.abc.corpus.in_validation`), halved by `overlap.split_halves`; the
other half is scored against it like any batch, and its figures are kept as the "human" baseline
a batch's figures are read against. The whole corpus's plain figures are kept as the "corpus"
baseline, and its shortest note per meter is what a batch's notes are checked against.

Building it reads every tune of the corpus (a few seconds for O'Neill's), so it is done once
and stored at ``quality/references/<corpus>.json``; a batch's finalize loads it. It is rebuilt
when the corpus is re-imported (its hash changes) or `FEATURES_VERSION` moves. Only an imported
corpus is a reference (``producer corpus import oneills`` is offline: music21 ships the tunes);
without one the figures say so instead of failing the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from common.abc import notation as abc_notation
from common.abc.corpus import (
    BUNDLED,
    DEFAULT_VALID_FRACTION,
    NUMBERED,
    bundled_files,
    clean_tunes,
    corpus_record,
    in_validation,
    load_corpus,
    read_abc_file,
)
from common.errors import InvalidInputError, NotFoundError
from common.quality.musicality import TuneFeatures, summary, tune_features
from common.quality.overlap import (
    Comparison,
    Reference,
    build_reference,
    compare,
    shortest_per_meter,
    split_halves,
)
from common.schemas import MusicalityReport
from common.store.base import ArtifactStore

log = logging.getLogger(__name__)

#: Bumped whenever a feature's definition changes, so stored references are rebuilt.
FEATURES_VERSION = 2
#: Fewer held-out tunes than this in the reference half make no reference: the overlaps of a
#: dozen tunes' distances are noise.
MIN_TUNES = 10


def reference_key(name: str) -> str:
    return f"quality/references/{name}.json"


def reference_of(
    name: str, validation: Sequence[str], corpus: Sequence[str], source: str = ""
) -> Reference:
    """Build the reference of corpus `name` from its validation and all its tunes."""
    ref_half, human_half = split_halves(validation)
    if len(ref_half) < MIN_TUNES:
        raise InvalidInputError(
            f"corpus {name!r} has {len(validation)} validation tunes; a musicality reference "
            f"needs at least {2 * MIN_TUNES} (import a larger corpus)"
        )
    everything = [tune_features(t) for t in corpus]
    reference = build_reference(
        name,
        [tune_features(t) for t in ref_half],
        source=source,
        shortest=shortest_per_meter(everything),
    )
    human = compare([tune_features(t) for t in human_half], reference)
    reference.baselines = {
        "human": {**human.summary, **_overlaps(human)},
        "corpus": summary(everything, reference.shortest),
    }
    return reference


def _overlaps(comparison: Comparison) -> dict[str, float | None]:
    return {"overall": comparison.overall, **comparison.families}


def load_reference(store: ArtifactStore, name: str) -> Reference:
    """The stored reference of imported corpus `name`, built and stored first if missing or
    stale; NotFoundError when the corpus is not imported."""
    record = corpus_record(store, name)
    source = f"{record.sha256}:{FEATURES_VERSION}"
    key = reference_key(name)
    if store.exists(key):
        stored = Reference.from_json(store.get_bytes(key).decode("utf-8"))
        if stored.source == source:
            return stored
    corpus = load_corpus(store, name)
    validation = list(abc_notation.split_tunes(corpus.valid_text))
    every = list(abc_notation.split_tunes(corpus.train_text)) + validation
    reference = reference_of(name, validation, every, source)
    store.put_bytes(key, reference.to_json().encode("utf-8"))
    log.info("musicality reference %s: %d held-out tunes", name, reference.tunes)
    return reference


def reference_and_human(store: ArtifactStore, names: Sequence[str]) -> tuple[Reference, list[str]]:
    """(reference, held-out human half) of one or more corpora, for benches and comparisons.

    One imported corpus gives its stored reference (the one manifests use). A bundled
    collection that is not imported is read from music21 and split by the import's rule (the
    same tunes land in validation, without abc2midi's ``--valid-only`` filter); several corpora
    make one reference of all their validation tunes, built here and not stored.
    """
    validation: list[str] = []
    everything: list[str] = []
    imported = 0
    for name in names:
        try:
            corpus = load_corpus(store, name)
        except NotFoundError:
            if name not in BUNDLED:
                raise
            texts = (read_abc_file(p) for p in bundled_files(name))
            tunes = clean_tunes(texts, numbered=name in NUMBERED).tunes
            validation += [t for t in tunes if in_validation(t, DEFAULT_VALID_FRACTION)]
            everything += tunes
            continue
        imported += 1
        valid = list(abc_notation.split_tunes(corpus.valid_text))
        validation += valid
        everything += list(abc_notation.split_tunes(corpus.train_text)) + valid
    human = split_halves(validation)[1]
    if len(names) == 1 and imported == 1:
        return load_reference(store, names[0]), human
    return reference_of("+".join(names), validation, everything), human


def score(tunes: Sequence[TuneFeatures], reference: Reference) -> MusicalityReport:
    """A set's musicality report against `reference`."""
    comparison = compare(tunes, reference)
    return MusicalityReport(
        reference=reference.name,
        reference_tunes=reference.tunes,
        tunes=comparison.tunes,
        overall=comparison.overall,
        families=comparison.families,
        overlap={k: v.overlap for k, v in comparison.features.items()},
        kl={k: v.kl for k, v in comparison.features.items()},
        figures=comparison.summary,
        baselines=reference.baselines,
    )


def musicality(store: ArtifactStore, name: str, tunes: Sequence[TuneFeatures]) -> MusicalityReport:
    """Score `tunes` (their `tune_features`) against corpus `name`'s stored reference; a report
    that says why there is no score when the name is empty or the corpus is not imported or too
    small."""
    if not name:
        return MusicalityReport(reference=None, unavailable="no musicality reference configured")
    try:
        reference = load_reference(store, name)
    except (NotFoundError, InvalidInputError) as exc:
        return MusicalityReport(reference=name, unavailable=f"no reference: {exc}")
    return score(tunes, reference)
