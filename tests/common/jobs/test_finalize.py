"""finalize: the quality report from the figures the tune records keep, equal to re-checking
every tune, reading only the tunes the diversity figure compares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common.abc.notation import split_tunes
from common.jobs import batches, finalize, generate
from common.jobs.batches import tune_key
from common.jobs.context import Context
from common.quality import similarity
from common.quality.figures import assess_tune, summarise
from common.schemas import (
    ArtifactFile,
    BatchSpec,
    QualityReport,
    TuneRecord,
    TuneStatus,
    tune_id,
)
from common.state.local import LocalRecords
from common.store.local import LocalStore
from tests.model_fixtures import TINY_CORPUS, TinyEnv, tiny_settings
from tests.quality_fixtures import copy_reference


@pytest.fixture
def ctx(tiny_env: TinyEnv, tmp_path: Path) -> Context:
    store = LocalStore(tmp_path / "data")
    for key in tiny_env.store.list("models/"):
        store.put_bytes(key, tiny_env.store.get_bytes(key))
    settings = tiny_settings(tmp_path / "data")
    return Context(settings=settings, store=store, records=LocalRecords(tmp_path / "records"))


def reassessed(ctx: Context, batch_id: str, tunes: list[TuneRecord]) -> QualityReport:
    """The report as it is defined: every stored tune read and assessed again."""
    made = [
        t for t in tunes if t.tries > 0 and ctx.store.exists(tune_key(batch_id, t.tune_id, "abc"))
    ]
    qualities = []
    for tune in made:
        quality = assess_tune(ctx.store.get_bytes(tune_key(batch_id, tune.tune_id, "abc")).decode())
        quality.valid, quality.similarity = tune.valid, tune.similarity
        quality.nearest_tune = tune.nearest_tune
        qualities.append(quality)
    return summarise(
        qualities,
        threshold=0.5,
        tries=sum(t.tries for t in made),
        tries_valid=sum(t.tries_valid for t in made),
        tries_rhythm_ok=sum(t.tries_rhythm_ok for t in made),
    )


def counting_reads(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    get_bytes = ctx.store.get_bytes

    def counted(key: str) -> Any:
        if key.endswith(".abc"):
            reads.append(key)
        return get_bytes(key)

    monkeypatch.setattr(ctx.store, "get_bytes", counted)
    return reads


def generated(ctx: Context, batch_id: str, index: int, text: str, **figures: Any) -> None:
    """Store `text` as tune `index` of the batch, generated, with the figures generation records
    (from the text) and `figures` (tries, verdicts)."""
    quality = assess_tune(text)
    assert quality.fingerprint is not None
    tid = tune_id(index)
    ctx.store.put_bytes(tune_key(batch_id, tid, "abc"), text.encode())
    ctx.records.update_tune(batch_id, tid, TuneStatus.GENERATING)
    ctx.records.update_tune(
        batch_id, tid, TuneStatus.GENERATED, chars=quality.chars,
        rhythm_checked=quality.rhythm_checked, rhythm_ok=quality.rhythm_ok, bars=quality.bars,
        wrong_bars=quality.wrong_bars, two_part=quality.two_part,
        melody_grams=len(quality.fingerprint), key=quality.key, **figures,
    )  # fmt: skip


def test_generation_records_the_figures_of_the_stored_text(ctx: Context, tiny_env: TinyEnv) -> None:
    spec = BatchSpec(count=4, model_id=tiny_env.model.id, seed=3, max_chars=400, chunk_size=4,
                     formats=("abc",), valid_only=False)  # fmt: skip
    batch = batches.create_batch(ctx, spec)
    generate.generate_chunk(ctx, batch.id, 0)
    for tune in ctx.records.tunes(batch.id):
        text = ctx.store.get_bytes(tune_key(batch.id, tune.tune_id, "abc")).decode()
        quality = assess_tune(text)
        assert quality.fingerprint is not None
        assert (tune.chars, tune.rhythm_checked, tune.rhythm_ok, tune.bars, tune.wrong_bars,
                tune.two_part, tune.melody_grams, tune.key) == (
            quality.chars, quality.rhythm_checked, quality.rhythm_ok, quality.bars,
            quality.wrong_bars, quality.two_part, len(quality.fingerprint), quality.key,
        )  # fmt: skip


def test_report_from_records_equals_reassessing_and_reads_only_the_sample(
    ctx: Context, tiny_env: TinyEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Corpus tunes stand in for generated ones: long melodies, so the diversity figure has work.
    texts = list(split_tunes(TINY_CORPUS.read_text(encoding="utf-8")))[:9]
    batch = batches.create_batch(ctx, BatchSpec(count=10, model_id=tiny_env.model.id))
    for i, text in enumerate(texts):  # tune 9 is never generated: not in the report
        generated(
            ctx, batch.id, i, text, tries=2, tries_valid=i % 2, tries_rhythm_ok=1,
            valid=i % 3 != 0, similarity=i / 10, nearest_tune=f"{i}: a tune",
        )  # fmt: skip
    ctx.store.delete(tune_key(batch.id, tune_id(8), "abc"))  # a cancelled tune leaves no ABC
    monkeypatch.setattr(similarity, "DIVERSITY_SAMPLE", 3)
    tunes = ctx.records.tunes(batch.id)
    expected = reassessed(ctx, batch.id, tunes)
    assert expected.tunes == 8 and expected.diversity > 0
    assert expected.keys is not None and len(expected.keys) > 1  # records carry each tune's key
    assert all(t.melody_grams for t in tunes[:8])  # every one is compared for diversity

    reads = counting_reads(ctx, monkeypatch)
    assert finalize.batch_quality(ctx.store, batch.id, tunes, 0.5) == expected
    assert len(reads) == 3  # the diversity sample, nothing else

    # Records without the figures (written before they were kept): every tune is read.
    reads.clear()
    bare = [t.model_copy(update={"chars": None}) if t.index % 2 else t for t in tunes]
    assert finalize.batch_quality(ctx.store, batch.id, bare, 0.5) == expected
    # Tunes 1, 3, 5 and 7 are assessed; of the sample (0, 3, 7 of the 8) tune 0 is read for its
    # melody.
    assert sorted(reads) == [tune_key(batch.id, tune_id(i), "abc") for i in (0, 1, 3, 5, 7)]


def test_musicality_scores_the_sample_finalize_reads_and_says_when_it_cannot(
    ctx: Context,
    tiny_env: TinyEnv,
    oneills_reference: LocalStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = list(split_tunes(TINY_CORPUS.read_text(encoding="utf-8")))[:6]
    batch = batches.create_batch(ctx, BatchSpec(count=6, model_id=tiny_env.model.id))
    for i, text in enumerate(texts):
        generated(ctx, batch.id, i, text, tries=1, tries_valid=1, tries_rhythm_ok=1, valid=True)
    monkeypatch.setattr(similarity, "DIVERSITY_SAMPLE", 4)
    tunes = ctx.records.tunes(batch.id)
    # Without the reference corpus imported, the report says what to do.
    report = finalize.batch_quality(ctx.store, batch.id, tunes, 0.5, reference="oneills")
    assert report is not None and report.musicality is not None
    assert report.musicality.overall is None
    assert "producer corpus import oneills" in (report.musicality.unavailable or "")

    copy_reference(oneills_reference, ctx.store)
    reads = counting_reads(ctx, monkeypatch)
    report = finalize.batch_quality(ctx.store, batch.id, tunes, 0.5, reference="oneills")
    assert len(reads) == 4  # the diversity sample, nothing more for the musicality figures
    assert report is not None and report.musicality is not None
    music = report.musicality
    assert music.tunes == 4 and music.reference == "oneills" and music.overall is not None
    # O'Neill's own tunes (the tiny corpus) score as human tunes do.
    human = music.baselines["human"]["overall"]
    assert human is not None and music.overall > human - 0.15
    assert report.model_copy(update={"musicality": None}) == finalize.batch_quality(
        ctx.store, batch.id, tunes, 0.5
    )


def test_a_cancelled_tune_whose_abc_vanishes_meanwhile_does_not_stop_the_manifest(
    ctx: Context, tiny_env: TinyEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the chaos cancel test found (1 run in 15): `producer cancel` marks a tune that is
    rendering cancelled, every tune is final, finalize starts and lists the batch's folder; then
    the render sees its result refused and deletes the tune's ABC. Finalize read that ABC for the
    quality report, got NotFoundError, gave up, and the batch never got its manifest."""
    texts = list(split_tunes(TINY_CORPUS.read_text(encoding="utf-8")))[:3]
    batch = batches.create_batch(ctx, BatchSpec(count=3, model_id=tiny_env.model.id))
    for i, text in enumerate(texts):
        tid = tune_id(i)
        ctx.store.put_bytes(tune_key(batch.id, tid, "abc"), text.encode())
        ctx.records.update_tune(batch.id, tid, TuneStatus.GENERATING)
        ctx.records.update_tune(batch.id, tid, TuneStatus.GENERATED, tries=1, valid=True)
        ctx.records.update_tune(batch.id, tid, TuneStatus.RENDERING)
    info = ctx.store.info(tune_key(batch.id, tune_id(0), "abc"))
    assert info is not None
    abc0 = ArtifactFile(format="abc", key=info.key, size=info.size, sha256=info.sha256)
    ctx.records.update_tune(batch.id, tune_id(0), TuneStatus.DONE, files=[abc0])
    ctx.records.update_tune(batch.id, tune_id(1), TuneStatus.FAILED, error="abc2midi: no")
    batches.cancel_batch(ctx, batch.id)  # tune 2 was rendering: cancelled, its ABC still there
    racing = tune_key(batch.id, tune_id(2), "abc")
    get_bytes = ctx.store.get_bytes

    def render_deletes_first(key: str) -> bytes:
        if key == racing:  # the racing render's clean-up got there first
            ctx.store.delete(key)
        return get_bytes(key)

    monkeypatch.setattr(ctx.store, "get_bytes", render_deletes_first)
    manifest = finalize.finalize_batch(ctx, batch.id)
    assert manifest is not None
    assert manifest.counts == {"done": 1, "failed": 1, "cancelled": 1}
    assert manifest.quality is not None and manifest.quality.tunes == 2  # the delivered ones
    assert not ctx.store.exists(racing)
