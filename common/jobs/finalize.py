"""The finalize job: once every tune of a batch is final, write its manifest and quality report.

The report's figures were measured when each tune was generated and are on the tune records;
finalize sums them up rather than reading and checking every tune again. Only the diversity
figure compares melodies, which the records do not keep: the tunes it samples (at most
`similarity.DIVERSITY_SAMPLE`) are read for it. A record without the figures is read whole.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from common.jobs import batches
from common.jobs import cancel as cancelling
from common.jobs.context import Context
from common.lstm.registry import resolve_model
from common.render.versions import tool_versions
from common.schemas import Manifest, QualityReport, TuneRecord, TuneStatus, now
from common.store.base import ArtifactStore

if TYPE_CHECKING:
    from common.quality.figures import TuneQuality


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("tunebatch", "tensorflow-cpu", "tensorflow", "keras", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def finalize_batch(ctx: Context, batch_id: str) -> Manifest | None:
    """Write the manifest once every tune is final; None (and nothing written) before that."""
    batch = ctx.records.get_batch(batch_id)
    key = batches.manifest_key(batch_id)
    if batch.manifest_key and ctx.store.exists(key):
        return Manifest.model_validate_json(ctx.store.get_bytes(key))
    tunes = ctx.records.tunes(batch_id)
    if not all(t.status.final for t in tunes):
        return None
    model = resolve_model(ctx.store, batch.spec.model_id)
    finished = max((t.updated_at for t in tunes), default=now())
    counts = {s.value: sum(1 for t in tunes if t.status == s) for s in TuneStatus if s.final}
    manifest = Manifest(
        batch_id=batch_id,
        created_at=batch.created_at,
        finished_at=finished,
        spec=batch.spec,
        model=model.model_dump(mode="json", exclude={"chars", "history"}),
        tool_versions=tool_versions(ctx.settings),
        software=software_versions(),
        counts=counts,
        quality=batch_quality(
            ctx.store,
            batch_id,
            tunes,
            batch.spec.near_copy_threshold,
            reference=ctx.settings.musicality_reference,
        ),
        tunes=tunes,
    )
    if batch.cancelled:  # the tunes cancelled mid-way leave no files (see common.jobs.cancel)
        listed = {f.key for t in tunes for f in t.files}
        cancelling.sweep(ctx.store, batches.artifact_key(batch_id, ""), listed)
    ctx.store.put_bytes(key, manifest.model_dump_json(indent=2).encode())
    batch.finished_at = finished
    batch.manifest_key = key
    ctx.records.save_batch(batch)
    return manifest


def batch_quality(
    store: ArtifactStore,
    batch_id: str,
    tunes: list[TuneRecord],
    threshold: float,
    *,
    reference: str = "",
) -> QualityReport | None:
    """The quality figures of a batch's generated tunes (those whose ABC is stored), raw rates
    over all tries (the gate's failed tunes' too); None when no tune was generated.

    With a `reference` corpus the musicality figures score the tunes the diversity figure reads
    (all of them up to `similarity.DIVERSITY_SAMPLE`, else an even sample) against that corpus's
    stored reference (`common.quality.reference`); no tune is read for them alone.

    Cancelled tunes are left out: they deliver nothing, and their ABC may be being deleted while
    this runs (a render that raced `producer cancel` removes its files after the tune is already
    final), so reading it could find it gone and fail the whole finalize.
    """
    from common.quality.figures import summarise

    stored = set(store.list(batches.artifact_key(batch_id, "")))
    made = [
        t
        for t in tunes
        if t.tries > 0 and t.status != TuneStatus.CANCELLED and _abc_key(batch_id, t) in stored
    ]
    if not made:
        return None
    qualities, sampled = _qualities(store, batch_id, made)
    # The raw rates count every try, those of tunes the gate failed after all their tries too
    # (failed, with figures, and no ABC stored): leaving them out would flatter the model.
    tried = made + [
        t
        for t in tunes
        if t.status == TuneStatus.FAILED and t.tries > 0 and _abc_key(batch_id, t) not in stored
    ]
    if any(t.rhythm_ok is None for t in tried):  # a record without rhythm figures has no try counts
        report = summarise(qualities, threshold=threshold)
    else:
        report = summarise(
            qualities,
            threshold=threshold,
            tries=sum(t.tries for t in tried),
            tries_valid=sum(t.tries_valid for t in tried),
            tries_rhythm_ok=sum(t.tries_rhythm_ok for t in tried),
        )
    if reference:
        from common.quality.musicality import tune_features
        from common.quality.reference import musicality

        report.musicality = musicality(store, reference, [tune_features(t) for t in sampled])
    return report


def _abc_key(batch_id: str, tune: TuneRecord) -> str:
    return batches.tune_key(batch_id, tune.tune_id, "abc")


def _qualities(
    store: ArtifactStore, batch_id: str, made: list[TuneRecord]
) -> tuple[list[TuneQuality], list[str]]:
    """One `TuneQuality` per tune, from its record where it has the figures, else from its ABC;
    and the texts of the tunes the diversity figure compares, in batch order.

    Only the tunes the diversity figure compares keep their melody fingerprint (the others get
    None), so `summarise` compares exactly the tunes it would have sampled from all of them.
    """
    from common.quality.figures import assess_tune
    from common.quality.similarity import diversity_sample, fingerprint

    texts: dict[str, str] = {}

    def text_of(tune: TuneRecord) -> str:
        text = store.get_bytes(_abc_key(batch_id, tune)).decode(errors="replace")
        texts[tune.tune_id] = text
        return text

    def assess(tune: TuneRecord) -> TuneQuality:
        quality = assess_tune(text_of(tune))
        quality.valid, quality.similarity = tune.valid, tune.similarity
        quality.nearest_tune = tune.nearest_tune
        return quality

    recorded = [_recorded(t) for t in made]
    unrecorded = [i for i, q in enumerate(recorded) if q is None]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assessed = dict(
            zip(unrecorded, pool.map(assess, [made[i] for i in unrecorded]), strict=True)
        )
        qualities = [q if q is not None else assessed[i] for i, q in enumerate(recorded)]
        comparable = [
            i
            for i, (t, q) in enumerate(zip(made, qualities, strict=True))
            if (len(q.fingerprint) if q.fingerprint is not None else t.melody_grams or 0) > 0
        ]
        sampled = {comparable[k] for k in diversity_sample(len(comparable))}
        missing = [i for i in sampled if qualities[i].fingerprint is None]
        prints = pool.map(lambda i: fingerprint(text_of(made[i])), missing)
        for i, grams in zip(missing, prints, strict=True):
            qualities[i].fingerprint = grams
    for i, quality in enumerate(qualities):
        if i not in sampled:
            quality.fingerprint = None
    return qualities, [texts[made[i].tune_id] for i in sorted(sampled)]


def _recorded(tune: TuneRecord) -> TuneQuality | None:
    """The tune's figures as its record keeps them; None when a figure is missing."""
    from common.quality.figures import TuneQuality

    if (
        tune.chars is None
        or tune.rhythm_checked is None
        or tune.rhythm_ok is None
        or tune.bars is None
        or tune.wrong_bars is None
        or tune.two_part is None
        or tune.melody_grams is None
    ):
        return None
    return TuneQuality(
        chars=tune.chars,
        valid=tune.valid,
        rhythm_checked=tune.rhythm_checked,
        rhythm_ok=tune.rhythm_ok,
        bars=tune.bars,
        wrong_bars=tune.wrong_bars,
        two_part=tune.two_part,
        nearest_tune=tune.nearest_tune,
        similarity=tune.similarity,
        key=tune.key,
    )
