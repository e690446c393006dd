"""A batch through the job functions on local disk: the path workers and embedded mode share."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from common.errors import (
    IntegrityError,
    InvalidInputError,
    InvalidTransitionError,
    TransientError,
)
from common.jobs import batches, finalize, generate, rendering
from common.jobs.batches import manifest_key, tune_key
from common.jobs.context import Context
from common.jobs.embedded import resume_batch, run_batch
from common.jobs.fetch import fetch_batch
from common.quality.similarity import READING
from common.schemas import BatchSpec, TuneStatus, tune_id
from common.state.local import LocalRecords
from common.store.local import LocalStore
from tests.model_fixtures import TinyEnv, tiny_settings


@pytest.fixture
def ctx(tiny_env: TinyEnv, tmp_path: Path) -> Context:
    """A fresh data dir holding a copy of the session's tiny model."""
    store = LocalStore(tmp_path / "data")
    for key in tiny_env.store.list("models/"):
        store.put_bytes(key, tiny_env.store.get_bytes(key))
    settings = tiny_settings(tmp_path / "data")
    return Context(settings=settings, store=store, records=LocalRecords(tmp_path / "records"))


def spec(model_id: str, **kw: object) -> BatchSpec:
    base: dict[str, object] = {
        "count": 10, "model_id": model_id, "seed": 5, "max_chars": 400, "chunk_size": 4,
        "valid_only": False,
    }  # fmt: skip
    base.update(kw)
    return BatchSpec.model_validate(base)


def test_batch_end_to_end_writes_files_and_manifest(ctx: Context, tiny_env: TinyEnv) -> None:
    manifest = run_batch(ctx, spec(tiny_env.model.id, formats=["abc", "mid", "wav"]))
    assert len(manifest.tunes) == 10 and sum(manifest.counts.values()) == 10
    assert all(t.status.final for t in manifest.tunes)
    assert manifest.tool_versions["abc2midi"] and manifest.tool_versions["timidity"]
    assert manifest.model["id"] == tiny_env.model.id
    for tune in manifest.tunes:
        assert tune.tries == 1 and tune.valid is not None
        assert tune.precision in {"float32", "bfloat16"}  # resolved from "auto", recorded
        formats = {f.format for f in tune.files}
        assert "abc" in formats
        if tune.status == TuneStatus.DONE:
            assert formats == {"abc", "mid", "wav"}
        else:
            assert tune.status == TuneStatus.FAILED and tune.error
        for f in tune.files:
            data = ctx.store.get_bytes(f.key)
            assert len(data) == f.size and hashlib.sha256(data).hexdigest() == f.sha256
    stored = json.loads(ctx.store.get_bytes(batches.manifest_key(manifest.batch_id)))
    assert stored["batch_id"] == manifest.batch_id
    first = ctx.store.get_bytes(tune_key(manifest.batch_id, "t000000", "abc")).decode()
    assert first.startswith("X:1\n")  # numbered (and titled when the model wrote no title)


GOOD = "X:1\nT:Good\nM:2/4\nL:1/8\nK:D\nDE FA|dc BA|d4|]\n"


def test_render_tune_stores_every_requested_format(ctx: Context, tiny_env: TinyEnv) -> None:
    batch = batches.create_batch(
        ctx, spec(tiny_env.model.id, count=2, formats=["abc", "mid", "wav", "svg"])
    )
    for i, text in enumerate([GOOD, "X:1\nT:Bad\nM:2/4\nK:D\n((((]]] [K:Qq\n"]):
        tid = tune_id(i)
        ctx.store.put_bytes(tune_key(batch.id, tid, "abc"), text.encode())
        ctx.records.update_tune(batch.id, tid, TuneStatus.GENERATING)
        ctx.records.update_tune(batch.id, tid, TuneStatus.GENERATED)
    good = rendering.render_tune(ctx, batch.id, "t000000")
    assert good.status == TuneStatus.DONE
    assert [f.format for f in good.files] == ["abc", "mid", "wav", "svg"]
    assert ctx.store.get_bytes(tune_key(batch.id, "t000000", "wav"))[:4] == b"RIFF"
    assert good.render is not None and good.render.midi_seconds  # provenance per tune
    bad = rendering.render_tune(ctx, batch.id, "t000001")
    assert bad.status == TuneStatus.FAILED and "abc2midi" in (bad.error or "")
    assert [f.format for f in bad.files] == ["abc"]
    manifest = finalize.finalize_batch(ctx, batch.id)
    assert manifest is not None and manifest.counts == {"done": 1, "failed": 1, "cancelled": 0}


def test_same_seed_same_tunes_and_reruns_are_idempotent(ctx: Context, tiny_env: TinyEnv) -> None:
    a = batches.create_batch(ctx, spec(tiny_env.model.id, formats=["abc"]))
    b = batches.create_batch(ctx, spec(tiny_env.model.id, formats=["abc"], chunk_size=10))
    ready_a = [tid for c in range(a.spec.chunks) for tid in generate.generate_chunk(ctx, a.id, c)]
    generate.generate_chunk(ctx, b.id, 0)
    texts_a = [ctx.store.get_bytes(tune_key(a.id, tune_id(i), "abc")) for i in range(10)]
    texts_b = [ctx.store.get_bytes(tune_key(b.id, tune_id(i), "abc")) for i in range(10)]
    assert texts_a == texts_b  # chunking does not change the tunes
    # A redelivered chunk neither regenerates nor duplicates.
    assert generate.generate_chunk(ctx, a.id, 0) == ready_a[:4]
    for tid in ready_a:
        rendering.render_tune(ctx, a.id, tid)
        rendering.render_tune(ctx, a.id, tid)
    assert ctx.records.counts(a.id)["done"] == 10
    assert sorted(k for k in ctx.store.list(f"batches/{a.id}/")) == sorted(
        tune_key(a.id, tune_id(i), "abc") for i in range(10)
    )


def test_valid_only_resamples_and_records_tries(ctx: Context, tiny_env: TinyEnv) -> None:
    manifest = run_batch(ctx, spec(tiny_env.model.id, count=6, valid_only=True, max_tries=3,
                                   formats=["abc", "mid"], primer="X:1\nM:6/8\nL:1/8\nK:D\n",
                                   temperature=0.7))  # fmt: skip
    for tune in manifest.tunes:
        assert 1 <= tune.tries <= 3
        # A tune outside the gate (abc2midi, rhythm) only after every try, and then failed.
        assert (tune.valid and tune.rhythm_ok) or tune.tries == 3
        if tune.status == TuneStatus.DONE:
            assert tune.valid and tune.rhythm_ok
        elif not (tune.valid and tune.rhythm_ok):
            assert tune.status == TuneStatus.FAILED and "gate" in (tune.error or "")
        assert tune.tries_valid <= tune.tries and tune.tries_rhythm_ok <= tune.tries
        assert tune.rhythm_ok is not None and tune.bars is not None
        if not tune.rhythm_ok:
            assert any(reason.startswith("rhythm: ") for reason in tune.check_errors)
    quality = manifest.quality
    stored = [t for t in manifest.tunes if "abc" in {f.format for f in t.files}]
    assert quality is not None and quality.tunes == len(stored)
    # Raw rates over every try, the tries of tunes the gate failed included.
    assert quality.tries == sum(t.tries for t in manifest.tunes)
    assert quality.raw_valid is not None and quality.raw_rhythm_ok is not None


def _with_corpus(ctx: Context, tiny_env: TinyEnv) -> None:
    """The model's corpus in the store: the copy check (and so the gate's third rule) runs."""
    for key in tiny_env.store.list("corpora/tiny/"):
        ctx.store.put_bytes(key, tiny_env.store.get_bytes(key))


def test_a_tune_that_fails_every_try_of_the_gate_ends_failed(
    ctx: Context, tiny_env: TinyEnv
) -> None:
    """With the gate on, a tune none of whose tries passes is failed with the reason, never
    stored, rendered or counted done (a near-copy threshold of 0 makes every try a copy)."""
    _with_corpus(ctx, tiny_env)
    gated = spec(tiny_env.model.id, count=3, valid_only=True, max_tries=2, near_copy_threshold=0.0,
                 formats=["abc", "mid"], primer="X:1\nM:6/8\nL:1/8\nK:D\n",
                 temperature=0.7)  # fmt: skip
    manifest = run_batch(ctx, gated)
    assert manifest.counts == {"done": 0, "failed": 3, "cancelled": 0}
    for tune in manifest.tunes:
        assert tune.status == TuneStatus.FAILED and tune.files == []
        assert tune.error is not None and "refused all 2 tries" in tune.error
        assert "near-copy" in tune.error
        assert tune.tries == 2 and tune.tries_near_copy == 2  # the raw figures are kept
        assert not ctx.store.exists(tune_key(manifest.batch_id, tune.tune_id, "abc"))
    assert manifest.quality is None  # no tune was delivered: nothing to describe

    # retry --failed takes them again: back to generation (no ABC to render), sampled afresh.
    record = ctx.records.get_batch(manifest.batch_id)
    record.spec = record.spec.model_copy(update={"near_copy_threshold": 2.0})
    ctx.records.save_batch(record)
    assert batches.retry_failed(ctx, manifest.batch_id) == {"render": [], "generate": ["0"]}
    assert ctx.records.counts(manifest.batch_id)["queued"] == 3
    again = resume_batch(ctx, manifest.batch_id)
    assert sum(again.counts.values()) == 3 and again.counts["done"] > 0
    for tune in again.tunes:
        if tune.status == TuneStatus.DONE:
            assert tune.valid and ctx.store.exists(tune_key(again.batch_id, tune.tune_id, "abc"))


def test_without_the_gate_the_first_try_is_kept(ctx: Context, tiny_env: TinyEnv) -> None:
    """--any: the same rule that fails every gated try keeps the first one, as documented."""
    _with_corpus(ctx, tiny_env)
    loose = spec(tiny_env.model.id, count=3, valid_only=False, max_tries=2,
                 near_copy_threshold=0.0, formats=["abc"])  # fmt: skip
    manifest = run_batch(ctx, loose)
    for tune in manifest.tunes:
        assert tune.tries == 1 and tune.status == TuneStatus.DONE
        assert ctx.store.exists(tune_key(manifest.batch_id, tune.tune_id, "abc"))


def test_copy_check_finds_the_nearest_training_tune(ctx: Context, tiny_env: TinyEnv) -> None:
    for key in tiny_env.store.list("corpora/tiny/"):
        ctx.store.put_bytes(key, tiny_env.store.get_bytes(key))
    batch = batches.create_batch(
        ctx, spec(tiny_env.model.id, count=3, formats=["abc"], near_copy_threshold=2.0)
    )
    generate.generate_chunk(ctx, batch.id, 0)
    tunes = [ctx.records.get_tune(batch.id, tune_id(i)) for i in range(3)]
    assert all(t.nearest_tune and t.similarity is not None for t in tunes)
    index = ctx.melody_index(tiny_env.model)
    assert index is not None and len(index) == tiny_env.corpus.train_tunes
    assert ctx.melody_index(tiny_env.model) is index  # built once per process
    saved = [k for k in ctx.store.list("corpora/tiny/") if "melody-index" in k]
    assert len(saved) == 1  # and kept in the store for the next process
    assert saved[0].endswith(f"-r{READING}.npz")  # an index of an older reading is not reused
    fresh = Context(settings=ctx.settings, store=ctx.store, records=ctx.records)
    again = fresh.melody_index(tiny_env.model)
    assert again is not None and again.names == index.names


def test_cancel_and_retry(ctx: Context, tiny_env: TinyEnv) -> None:
    batch = batches.create_batch(ctx, spec(tiny_env.model.id, formats=["abc", "mid"]))
    ready = generate.generate_chunk(ctx, batch.id, 0)
    assert batches.cancel_batch(ctx, batch.id).cancelled == 10  # 4 generated + 6 queued
    assert generate.generate_chunk(ctx, batch.id, 1) == []
    assert rendering.render_tune(ctx, batch.id, ready[0]).status == TuneStatus.CANCELLED
    counts = ctx.records.counts(batch.id)
    assert counts["cancelled"] == 10
    manifest = finalize.finalize_batch(ctx, batch.id)
    assert manifest is not None and manifest.counts["cancelled"] == 10
    # The 4 tunes generated before the cancel leave no .abc behind: only the manifest is left.
    assert list(ctx.store.list(f"batches/{batch.id}/")) == [manifest_key(batch.id)]
    with pytest.raises(InvalidTransitionError):
        ctx.records.update_tune(batch.id, ready[0], TuneStatus.RENDERING)


def generated(ctx: Context, batch_id: str, index: int) -> str:
    """Tune `index` generated as a tune the tools accept (the tiny model's rarely are)."""
    tid = tune_id(index)
    ctx.store.put_bytes(tune_key(batch_id, tid, "abc"), GOOD.encode())
    ctx.records.update_tune(batch_id, tid, TuneStatus.GENERATING)
    ctx.records.update_tune(batch_id, tid, TuneStatus.GENERATED)
    return tid


def test_cancel_between_a_jobs_check_and_its_upload_leaves_no_file(
    ctx: Context, tiny_env: TinyEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cancel` lands while a render uploads (and while a chunk uploads): the job removes what
    it wrote, the tune ends cancelled, the bucket holds the done tunes' files and the manifest."""
    batch = batches.create_batch(ctx, spec(tiny_env.model.id, count=3, formats=["abc", "mid"]))
    ready = [generated(ctx, batch.id, i) for i in range(3)]
    assert rendering.render_tune(ctx, batch.id, ready[0]).status == TuneStatus.DONE
    put_file = ctx.store.put_file

    def put_then_cancel(key: str, path: Path, content_type: str | None = None) -> Any:
        info = put_file(key, path, content_type)
        outcome = batches.cancel_batch(ctx, batch.id)  # lands after the upload, before "done"
        assert not outcome.finished and outcome.cancelled == 2
        return info

    monkeypatch.setattr(ctx.store, "put_file", put_then_cancel)
    assert rendering.render_tune(ctx, batch.id, ready[1]).status == TuneStatus.CANCELLED
    monkeypatch.undo()
    assert not ctx.store.exists(tune_key(batch.id, ready[1], "mid"))
    assert not ctx.store.exists(tune_key(batch.id, ready[1], "abc"))
    assert rendering.render_tune(ctx, batch.id, ready[2]).status == TuneStatus.CANCELLED
    manifest = finalize.finalize_batch(ctx, batch.id)
    assert manifest is not None and manifest.counts == {"done": 1, "failed": 0, "cancelled": 2}
    listed = {f.key for t in manifest.tunes for f in t.files}
    assert listed == {tune_key(batch.id, ready[0], f) for f in ("abc", "mid")}
    assert set(ctx.store.list(f"batches/{batch.id}/")) == listed | {manifest_key(batch.id)}

    # A render that finds the flag after rendering, before uploading, uploads nothing.
    late = batches.create_batch(ctx, spec(tiny_env.model.id, count=1, formats=["abc", "mid"]))
    tid = generated(ctx, late.id, 0)
    info = ctx.store.info

    def info_then_cancel(key: str) -> Any:
        batches.cancel_batch(ctx, late.id)
        return info(key)

    monkeypatch.setattr(ctx.store, "info", info_then_cancel)
    assert rendering.render_tune(ctx, late.id, tid).status == TuneStatus.CANCELLED
    monkeypatch.undo()
    assert list(ctx.store.list(f"batches/{late.id}/")) == []

    # A chunk whose upload raced the cancel takes its file back; the chunk ends cancelled.
    gen = batches.create_batch(ctx, spec(tiny_env.model.id, count=3, formats=["abc"]))
    put_bytes = ctx.store.put_bytes

    def put_bytes_then_cancel(key: str, data: bytes, content_type: str | None = None) -> Any:
        info = put_bytes(key, data, content_type)
        if key.startswith(f"batches/{gen.id}/"):
            batches.cancel_batch(ctx, gen.id)
        return info

    monkeypatch.setattr(ctx.store, "put_bytes", put_bytes_then_cancel)
    assert generate.generate_chunk(ctx, gen.id, 0) == []
    monkeypatch.undo()
    assert ctx.records.counts(gen.id)["cancelled"] == 3
    assert list(ctx.store.list(f"batches/{gen.id}/")) == []


def test_cancel_on_a_finished_batch_says_so_and_changes_nothing(
    ctx: Context, tiny_env: TinyEnv
) -> None:
    manifest = run_batch(ctx, spec(tiny_env.model.id, count=2, formats=["abc"]))
    before = ctx.records.get_batch(manifest.batch_id)
    body = ctx.store.get_bytes(manifest_key(manifest.batch_id))
    outcome = batches.cancel_batch(ctx, manifest.batch_id)
    assert outcome.finished and outcome.cancelled == 0
    assert outcome.counts == ctx.records.counts(manifest.batch_id)
    after = ctx.records.get_batch(manifest.batch_id)
    assert after == before and not after.cancelled
    assert ctx.store.get_bytes(manifest_key(manifest.batch_id)) == body


def test_a_missing_tool_is_retried_not_a_failed_tune(ctx: Context, tiny_env: TinyEnv) -> None:
    batch = batches.create_batch(ctx, spec(tiny_env.model.id, count=1, formats=["abc", "mid"]))
    ctx.store.put_bytes(tune_key(batch.id, "t000000", "abc"), GOOD.encode())
    ctx.records.update_tune(batch.id, "t000000", TuneStatus.GENERATING)
    ctx.records.update_tune(batch.id, "t000000", TuneStatus.GENERATED)
    broken = Context(
        settings=ctx.settings.model_copy(update={"abc2midi": "/nonexistent/abc2midi"}),
        store=ctx.store,
        records=ctx.records,
    )
    with pytest.raises(TransientError, match="abcmidi"):
        rendering.render_tune(broken, batch.id, "t000000")
    assert ctx.records.get_tune(batch.id, "t000000").status == TuneStatus.RENDERING
    assert rendering.render_tune(ctx, batch.id, "t000000").status == TuneStatus.DONE


def test_failed_tunes_are_retried(ctx: Context, tiny_env: TinyEnv) -> None:
    batch = batches.create_batch(ctx, spec(tiny_env.model.id, count=3, formats=["abc", "mid"]))
    ready = generate.generate_chunk(ctx, batch.id, 0)
    batches.fail_tune(ctx, batch.id, ready[0], "worker died")
    work = batches.retry_failed(ctx, batch.id)
    assert work == {"render": [ready[0]], "generate": []}
    assert ctx.records.get_tune(batch.id, ready[0]).status == TuneStatus.GENERATED


def test_fetch_downloads_verifies_and_resumes(
    ctx: Context, tiny_env: TinyEnv, tmp_path: Path
) -> None:
    manifest = run_batch(ctx, spec(tiny_env.model.id, count=4, formats=["abc", "mid"]))
    files = sum(len(t.files) for t in manifest.tunes)
    first = fetch_batch(ctx.store, manifest.batch_id, tmp_path / "out")
    assert first.downloaded == files and first.skipped == 0
    assert (first.directory / "manifest.json").is_file()
    again = fetch_batch(ctx.store, manifest.batch_id, tmp_path / "out")
    assert again.downloaded == 0 and again.skipped == files
    ctx.store.put_bytes(tune_key(manifest.batch_id, "t000001", "abc"), b"X:1\nT:evil\n")
    with pytest.raises(IntegrityError, match="differs from the manifest"):
        fetch_batch(ctx.store, manifest.batch_id, tmp_path / "other")


def test_requested_precision_is_honoured(ctx: Context, tiny_env: TinyEnv) -> None:
    manifest = run_batch(ctx, spec(tiny_env.model.id, count=2, formats=["abc"],
                                   precision="float32"))  # fmt: skip
    assert manifest.spec.precision == "float32"
    assert {t.precision for t in manifest.tunes} == {"float32"}


def test_bad_batch_requests(ctx: Context, tiny_env: TinyEnv) -> None:
    with pytest.raises(InvalidInputError, match="does not know"):
        batches.create_batch(ctx, spec(tiny_env.model.id, primer="X:1\nT:\u20ac"))
    with pytest.raises(InvalidInputError):
        batches.create_batch(ctx, spec(tiny_env.model.id, formats=["abc", "exe"]))
    assert ctx.records.list_batches() == []


def test_cancel_skips_a_tune_that_finished_while_it_ran(
    ctx: Context, tiny_env: TinyEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A render finishing during `cancel` (the tunes were read, then one became final) is left
    done, not an error that stops the cancel half-way."""
    batch = batches.create_batch(ctx, spec(tiny_env.model.id, count=3, formats=["abc"]))
    stale = ctx.records.tunes(batch.id)
    ctx.records.update_tune(batch.id, tune_id(0), TuneStatus.FAILED, error="tools said no")
    monkeypatch.setattr(ctx.records, "tunes", lambda batch_id: stale)
    outcome = batches.cancel_batch(ctx, batch.id)
    monkeypatch.undo()
    assert outcome.cancelled == 2 and not outcome.finished
    assert [t.status for t in ctx.records.tunes(batch.id)] == [
        TuneStatus.FAILED, TuneStatus.CANCELLED, TuneStatus.CANCELLED,
    ]  # fmt: skip


def test_a_redelivered_render_of_a_cancelled_tune_takes_back_what_its_first_delivery_left(
    ctx: Context, tiny_env: TinyEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first delivery uploaded, then its worker died before the refused "done" made it take
    the files back; the manifest was written meanwhile. The redelivery removes the files."""
    batch = batches.create_batch(ctx, spec(tiny_env.model.id, count=2, formats=["abc", "mid"]))
    ready = [generated(ctx, batch.id, i) for i in range(2)]
    assert rendering.render_tune(ctx, batch.id, ready[0]).status == TuneStatus.DONE

    class WorkerDied(BaseException):
        """SIGKILL: nothing after the upload runs."""

    put_file = ctx.store.put_file

    def put_cancel_then_die(key: str, path: Path, content_type: str | None = None) -> Any:
        put_file(key, path, content_type)
        batches.cancel_batch(ctx, batch.id)
        raise WorkerDied

    monkeypatch.setattr(ctx.store, "put_file", put_cancel_then_die)
    with pytest.raises(WorkerDied):
        rendering.render_tune(ctx, batch.id, ready[1])
    monkeypatch.undo()
    left = tune_key(batch.id, ready[1], "mid")
    assert finalize.finalize_batch(ctx, batch.id) is not None  # swept: nothing left behind yet
    ctx.store.put_bytes(left, b"MThd")  # ...but the dying upload landed after the sweep
    before = ctx.records.get_tune(batch.id, ready[1])
    assert rendering.render_tune(ctx, batch.id, ready[1]) == before  # the redelivery
    assert not ctx.store.exists(left)
    assert ctx.records.get_tune(batch.id, ready[1]) == before  # the record is left as it was
    listed = {tune_key(batch.id, ready[0], f) for f in ("abc", "mid")} | {manifest_key(batch.id)}
    assert set(ctx.store.list(f"batches/{batch.id}/")) == listed
