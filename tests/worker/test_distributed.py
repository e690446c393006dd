"""Distributed mode end to end: real redis-server, real S3 server, real `worker gpu` / `worker cpu`.

One cluster for the module (starting workers and importing TensorFlow in the GPU worker costs
seconds): the tiny corpus is imported into the bucket, the tiny preset is trained for one epoch by
the GPU worker through `producer train`, and every test then submits its own batch through the
producer, as a user would.
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.abc.corpus import import_corpus
from common.dispatch.names import GENERATE, RENDER
from common.jobs.batches import manifest_key, tune_key
from common.schemas import BatchSpec, TrainSpec, TuneStatus
from common.state.redis import RedisRecords
from common.store.open import make_store
from producer import options
from producer.client import Client
from tests import servers as srv
from tests.model_fixtures import TINY_CORPUS
from tests.producer_cli import producer_settings, run
from tests.worker.cluster import Cluster, WorkerProcess, cluster
from tests.worker.poison_tasks import KILL_SELF
from worker.celery_app import app

pytestmark = pytest.mark.slow

PRIMER = "X:1\nM:6/8\nL:1/8\nK:D\n"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, s3_server: srv.S3Server) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("cluster"), s3_server) as c:
        gpu = c.start_worker("gpu")
        cpu = c.start_worker("cpu", concurrency=2, extra=("--include=tests.worker.poison_tasks",))
        import_corpus(make_store(c.settings), str(TINY_CORPUS), name="tiny")
        c.wait_ready(gpu, cpu)
        yield c


@pytest.fixture
def producer_env(running: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """The producer CLI configured like the workers (TUNEBATCH_* of the cluster)."""
    with producer_settings(monkeypatch, running.env):
        yield running


@pytest.fixture(scope="module")
def model_id(running: Cluster) -> str:
    """The tiny model, trained by the GPU worker (so `train` is tested on the way)."""
    c = Client(running.settings)
    run_ = c.train(TrainSpec(corpus="tiny", preset="tiny", epochs=1, seed=1))
    done = c.follow_run(run_.id, lambda _r: None, timeout_s=120)
    assert done.status == "done", done.error
    assert done.epochs_done == 1 and done.model_id is not None
    assert done.val_bits_per_char is not None
    return done.model_id


def spec(model_id: str, count: int, **kw: Any) -> BatchSpec:
    values: dict[str, Any] = {
        "count": count,
        "model_id": model_id,
        "temperature": 0.7,
        "max_chars": 500,
        "primer": PRIMER,
        "valid_only": True,
        "max_tries": 3,
        "chunk_size": 25,
        "formats": ["abc", "mid", "wav"],
    }
    values.update(kw)
    return BatchSpec(**values)


def bucket_objects(c: Cluster, prefix: str) -> dict[str, str]:
    """key → SHA-256 of the bytes actually stored (not the metadata's claim)."""
    client = srv.s3_client(c.endpoint_url)
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=c.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket=c.bucket, Key=obj["Key"])["Body"].read()
            out[obj["Key"]] = hashlib.sha256(body).hexdigest()
    return out


@pytest.fixture(scope="module")
def finished_batch(running: Cluster, model_id: str) -> str:
    """A batch of 60 tunes submitted through the CLI, followed with --wait to its manifest."""
    env = pytest.MonkeyPatch()
    try:
        for key, value in running.env.items():
            if key.startswith("TUNEBATCH_"):
                env.setenv(key, value)
        options.settings.cache_clear()
        code, out, err = run(
            "submit-batch", "--count", "60", "--model", model_id, "--temperature", "0.7",
            "--meter", "6/8", "--key", "D", "--max-chars", "500", "--max-tries", "3",
            "--wait", "--json",
        )  # fmt: skip
    finally:
        env.undo()
        options.settings.cache_clear()
    assert code == 0, err
    result = json.loads(out)
    assert sum(result["counts"].values()) == 60
    return str(result["batch_id"])


def test_batch_end_to_end_every_artifact_in_the_bucket(
    running: Cluster, finished_batch: str
) -> None:
    batch_id = finished_batch
    rec = running.records
    batch = rec.get_batch(batch_id)
    counts = rec.counts(batch_id)
    assert batch.manifest_key == manifest_key(batch_id) and batch.finished_at is not None
    assert counts["done"] + counts["failed"] == 60 and counts["done"] > 0, counts
    assert sum(counts.values()) == 60  # counters are exact: every tune counted once

    objects = bucket_objects(running, f"batches/{batch_id}/")
    manifest = json.loads(
        srv.s3_client(running.endpoint_url)
        .get_object(Bucket=running.bucket, Key=manifest_key(batch_id))["Body"]
        .read()
    )
    assert manifest["counts"] == {"done": counts["done"], "failed": counts["failed"],
                                  "cancelled": 0}  # fmt: skip
    assert [t["tune_id"] for t in manifest["tunes"]] == [f"t{i:06d}" for i in range(60)]
    listed = set()
    for tune in manifest["tunes"]:
        formats = {f["format"] for f in tune["files"]}
        if tune["status"] == "done":
            assert formats == {"abc", "mid", "wav"}, tune
        else:
            assert tune["status"] == "failed" and tune["error"]
        # Every tune has its ABC, but one the gate refused after all its tries (never stored).
        gated = tune["status"] == "failed" and "gate" in tune["error"]
        assert (tune_key(batch_id, tune["tune_id"], "abc") in objects) != gated, tune
        for f in tune["files"]:
            assert objects[f["key"]] == f["sha256"], f["key"]
            listed.add(f["key"])
    # Nothing in the bucket that the manifest does not account for.
    assert set(objects) - listed == {manifest_key(batch_id)}


def test_status_list_url_and_dead_letter_commands(
    producer_env: Cluster, finished_batch: str
) -> None:
    code, out, err = run("status", finished_batch, "--json")
    assert code == 0, err
    assert sum(json.loads(out)["counts"].values()) == 60
    code, out, err = run("status", finished_batch)
    assert code == 0 and "finished" in out, err
    code, out, err = run("status", finished_batch, "--watch")  # returns: the batch is finished
    assert code == 0 and "60/60 final" in out, err
    code, out, _ = run("list", "--json")
    assert finished_batch in [b["id"] for b in json.loads(out)]
    code, out, err = run("url", finished_batch, "--expires", "10m", "--json")
    assert code == 0, err
    link = json.loads(out)["manifest"]
    assert link.startswith(producer_env.endpoint_url) and "X-Amz-Expires=600" in link
    import urllib.request

    with urllib.request.urlopen(link, timeout=10) as response:  # the presigned URL works
        assert json.loads(response.read())["batch_id"] == finished_batch
    code, out, err = run("url", finished_batch, "t000000", "--json")
    assert code == 0 and "abc" in json.loads(out), err
    code, out, err = run("dead-letter", "--json")
    assert code == 0, err
    assert finished_batch not in out  # a clean batch leaves nothing there


def test_train_and_run_commands(producer_env: Cluster) -> None:
    code, out, err = run(
        "train", "--corpus", "tiny", "--preset", "tiny", "--epochs", "1",
        "--max-train-chars", "3000", "--json",
    )  # fmt: skip
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    code, out, err = run("run", run_id, "--wait")
    assert code == 0, err
    assert "model" in out
    code, out, err = run("run", run_id, "--json")
    done = json.loads(out)
    assert done["status"] == "done" and done["epochs_done"] == 1 and done["model_id"]
    code, out, _ = run("model", "list", "--json")
    assert done["model_id"] in [m["id"] for m in json.loads(out)]  # registered in the bucket


def test_retry_failed_enqueues_the_failed_tunes_again(producer_env: Cluster, model_id: str) -> None:
    c = Client(producer_env.settings)
    # Sampled unmasked and ungated, the tiny model writes tunes abc2midi rejects (with the bar
    # tracker and form on, it writes almost none).
    loose = spec(model_id, 25, formats=["abc", "mid"], valid_only=False, bar_tracker=False)
    batch = c.submit_batch(loose)
    first = c.follow(batch.id, lambda _p: None, timeout_s=120)
    failed = [t for t in c.records.tunes(batch.id) if t.status == TuneStatus.FAILED]
    assert failed, first.counts
    code, out, err = run("retry", batch.id, "--failed")
    assert code == 0, err
    assert f"{len(failed)} renders" in out
    again = c.follow(batch.id, lambda _p: None, timeout_s=120)
    assert again.counts == first.counts  # rendering is deterministic: the same tunes fail
    for tune in failed:
        assert c.records.get_tune(batch.id, tune.tune_id).attempts == tune.attempts + 1
    assert make_store(producer_env.settings).exists(manifest_key(batch.id))


def test_a_tune_the_gate_refuses_every_try_ends_failed_and_retry_takes_it_again(
    producer_env: Cluster, model_id: str
) -> None:
    """Real workers: with a near-copy threshold of 0 every try is a copy of a training tune, so
    every tune fails the gate. The chunk renders nothing, yet the batch finishes (the chunk
    enqueues finalize), each tune failed with the reason and no ABC; `retry --failed` sends them
    back to generation."""
    c = Client(producer_env.settings)
    store = make_store(producer_env.settings)
    batch = c.submit_batch(spec(model_id, 3, formats=["abc", "mid"], max_tries=2,
                                near_copy_threshold=0.0))  # fmt: skip
    first = c.follow(batch.id, lambda _p: None, timeout_s=120)
    assert first.counts["failed"] == 3 and sum(first.counts.values()) == 3, first.counts
    for tune in c.records.tunes(batch.id):
        assert tune.status == TuneStatus.FAILED and tune.tries == 2
        assert tune.error is not None and "refused all 2 tries" in tune.error
        assert not store.exists(tune_key(batch.id, tune.tune_id, "abc"))
    assert store.exists(manifest_key(batch.id))
    code, out, err = run("retry", batch.id, "--failed")
    assert code == 0 and "0 renders and 1 generation chunks" in " ".join(out.split()), (out, err)
    again = c.follow(batch.id, lambda _p: None, timeout_s=120)
    assert again.counts == first.counts  # the same rule refuses them again, after new tries
    assert all(t.tries == 2 for t in c.records.tunes(batch.id))
    assert store.exists(manifest_key(batch.id))


def test_retry_writes_the_manifest_a_given_up_finalize_did_not(
    producer_env: Cluster, model_id: str
) -> None:
    """A batch whose tunes are all final but whose finalize job was given up (no manifest, the
    claim released): `status` names `retry --failed`, and with nothing to retry it finalizes."""
    c = Client(producer_env.settings)
    batch = c.submit_batch(spec(model_id, 4, formats=["abc"]))
    c.cancel(batch.id)
    first = c.follow(batch.id, lambda _p: None, timeout_s=120)
    store = make_store(producer_env.settings)
    record = c.records.get_batch(batch.id)
    record.manifest_key = record.finished_at = None
    c.records.save_batch(record)
    store.delete(manifest_key(batch.id))
    c.records.release_finalize(batch.id)
    code, out, err = run("status", batch.id)
    assert code == 0 and "the manifest is being written" in " ".join(out.split()), (out, err)
    code, out, err = run("retry", batch.id, "--failed")
    assert code == 0 and "0 renders and 0 generation chunks" in out, (out, err)
    assert c.follow(batch.id, lambda _p: None, timeout_s=120).counts == first.counts
    assert store.exists(manifest_key(batch.id))


def test_fetch_verifies_hashes(producer_env: Cluster, finished_batch: str, tmp_path: Path) -> None:
    code, out, err = run("fetch", finished_batch, "--to", str(tmp_path), "--json")
    assert code == 0, err
    result = json.loads(out)
    folder = Path(result["directory"])
    assert result["downloaded"] > 60 and (folder / "manifest.json").is_file()
    code, out, err = run("fetch", finished_batch, "--to", str(tmp_path), "--json")
    assert code == 0 and json.loads(out)["downloaded"] == 0  # resumed: all there already

    # Someone overwrites a file in the bucket after the batch finished.
    key = tune_key(finished_batch, "t000000", "abc")
    srv.s3_client(producer_env.endpoint_url).put_object(
        Bucket=producer_env.bucket, Key=key, Body=b"X:1\nT:tampered\nK:C\nCDEF|\n"
    )
    code, out, err = run("fetch", finished_batch, "--to", str(tmp_path / "again"))
    assert code != 0
    assert "Traceback" not in err and err.startswith("error:")
    assert "t000000.abc" in err and "SHA-256" in err
    assert not (tmp_path / "again" / finished_batch / "t000000.abc").exists()


def test_rerun_of_a_chunk_is_idempotent(running: Cluster, model_id: str) -> None:
    c = Client(running.settings)
    batch = c.submit_batch(spec(model_id, 25, formats=["abc", "mid"]))
    c.follow(batch.id, lambda _p: None, timeout_s=120)
    rec = running.records
    before = bucket_objects(running, f"batches/{batch.id}/")
    tunes_before = {t.tune_id: t for t in rec.tunes(batch.id)}
    counts_before = rec.counts(batch.id)

    # Run the whole chunk again from scratch: every tune back to queued, as after a lost worker.
    for tune in tunes_before.values():
        rec.reset_tune(tune.model_copy(update={"status": TuneStatus.QUEUED, "files": []}))
    rec.release_finalize(batch.id)
    app.send_task(GENERATE, args=[batch.id, 0], queue="gpu")
    running.wait_idle(timeout_s=120)
    # And once more, now that everything is final: a duplicate chunk and duplicate renders.
    app.send_task(GENERATE, args=[batch.id, 0], queue="gpu")
    for tid in ("t000000", "t000001"):
        app.send_task(RENDER, args=[batch.id, tid], queue="cpu")
    running.wait_idle(timeout_s=60)

    after = bucket_objects(running, f"batches/{batch.id}/")
    assert after == before  # same keys, same bytes
    tunes_after = {t.tune_id: t for t in rec.tunes(batch.id)}
    assert sorted(tunes_after) == sorted(tunes_before)  # no duplicate tunes
    assert rec.counts(batch.id) == counts_before
    for tid, tune in tunes_after.items():
        assert tune.status == tunes_before[tid].status
        assert tune.files == tunes_before[tid].files, (tune.error, tunes_before[tid].error)


def test_cancel_stops_the_batch(producer_env: Cluster, model_id: str) -> None:
    c = Client(producer_env.settings)
    batch = c.submit_batch(spec(model_id, 200, formats=["abc", "mid"]))
    deadline = time.monotonic() + 60
    while c.progress(batch.id).generated == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    code, out, err = run("cancel", batch.id)
    assert code == 0 and "cancelled" in out, err
    final = c.follow(batch.id, lambda _p: None, timeout_s=120)
    counts = final.counts
    assert final.batch.cancelled
    assert counts["cancelled"] > 100, counts  # most of the batch never ran
    assert counts["done"] + counts["failed"] + counts["cancelled"] == 200, counts
    producer_env.wait_idle(timeout_s=60)
    assert all(batch.id not in json.dumps(e.args) for e in c.dead_letters())
    # Exactly the manifest's files and the manifest: no file of a cancelled tune is left.
    stored = bucket_objects(producer_env, f"batches/{batch.id}/")
    listed = {f.key for t in c.records.tunes(batch.id) for f in t.files}
    assert set(stored) == listed | {manifest_key(batch.id)}, sorted(set(stored) - listed)[:10]
    assert all(not t.files for t in c.records.tunes(batch.id) if t.status == "cancelled")
    # Cancel again, now that it is finished: it says so, and nothing changes.
    record = c.records.get_batch(batch.id)
    code, out, err = run("cancel", batch.id)
    said = " ".join(out.split())
    assert code == 0 and "already finished" in said and "nothing changed" in said, (out, err)
    assert c.records.get_batch(batch.id) == record
    assert bucket_objects(producer_env, f"batches/{batch.id}/") == stored


def test_poison_job_is_dead_lettered_after_max_attempts(running: Cluster, model_id: str) -> None:
    c = Client(running.settings)
    from common.jobs import batches

    batch = batches.create_batch(c.context, spec(model_id, 3))  # recorded, nothing enqueued
    result = app.send_task(KILL_SELF, args=[batch.id, "t000001"], queue="cpu")
    rec = running.records
    deadline = time.monotonic() + 90
    entry = None
    while entry is None:
        assert time.monotonic() < deadline, "the poison job was never dead-lettered"
        entry = next((e for e in rec.dead_letters() if e.task_id == result.id), None)
        time.sleep(0.2)
    assert entry.task == KILL_SELF and entry.args == [batch.id, "t000001"]
    assert entry.attempts == running.settings.max_attempts
    assert "died" in entry.reason
    tune = rec.get_tune(batch.id, "t000001")
    assert tune.status == TuneStatus.FAILED and "gave up after" in (tune.error or "")
    assert rec.get_tune(batch.id, "t000000").status == TuneStatus.QUEUED  # others untouched
    running.wait_idle(timeout_s=30)
    assert rec.r.get(f"tunebatch:attempts:{result.id}") is None  # not redelivered again
    assert all(w.proc.poll() is None for w in running.workers)  # the workers survived


def test_sigterm_requeues_a_running_chunk(running: Cluster, model_id: str) -> None:
    """Warm shutdown: the chunk stops at a step boundary, goes back to the queue, and a new
    GPU worker finishes the batch. Runs last: it replaces the module's GPU worker."""
    c = Client(running.settings)
    batch = c.submit_batch(spec(model_id, 50, chunk_size=50, max_chars=1500, formats=["abc"],
                                valid_only=False, primer="X:"))  # fmt: skip
    gpu: WorkerProcess = next(w for w in running.workers if w.role == "gpu")
    deadline = time.monotonic() + 60
    while c.progress(batch.id).counts["generating"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    gpu.proc.send_signal(signal.SIGTERM)
    gpu.proc.wait(timeout=60)
    counts = c.progress(batch.id).counts
    assert counts["generating"] == 0, counts  # unfinished tunes were put back to queued
    assert counts["queued"] > 0, counts  # the chunk really was interrupted
    rec: RedisRecords = running.records
    assert rec.r.llen("gpu") == 1  # the chunk's message is back in the queue
    assert c.dead_letters() == [] or all(batch.id not in str(e.args) for e in c.dead_letters())

    running.workers.remove(gpu)
    fresh = running.start_worker("gpu")
    running.wait_ready(fresh)
    final = c.follow(batch.id, lambda _p: None, timeout_s=120)
    assert final.counts["done"] + final.counts["failed"] == 50
