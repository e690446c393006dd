"""A GPU worker killed mid-epoch or mid-chunk: the training run resumes from its last checkpoint
(not from epoch 0) and registers a model; the chunk resumes with only its unwritten tunes."""

from __future__ import annotations

import random
import re
import time

import pytest

from common.jobs.batches import artifact_key
from common.schemas import TrainSpec, TuneStatus
from producer.client import Client
from tests.chaos import driver
from tests.chaos.faults import children, sigkill
from tests.worker.cluster import Cluster

pytestmark = pytest.mark.slow


def test_training_killed_mid_epoch_resumes_from_its_last_checkpoint(
    chaos_cluster: Cluster,
) -> None:
    c = chaos_cluster
    client = Client(c.settings)
    gpu = next(w for w in c.workers if w.role == "gpu")
    run = client.train(TrainSpec(corpus="tiny", preset="tiny", epochs=8, seed=3))
    deadline = time.monotonic() + 180
    while True:  # into the third epoch: two checkpoints written, the third under way
        progress = client.records.get_run(run.id)
        if progress.status == "running" and progress.epochs_done >= 2:
            break
        assert progress.status not in ("done", "failed"), progress
        assert time.monotonic() < deadline, progress
        time.sleep(0.05)
    at_kill = progress.epochs_done
    pids = children(gpu.proc.pid)
    assert pids and all(sigkill(pid) for pid in pids)

    seen: list[int] = []  # epochs_done as the run goes on after the kill
    while True:
        progress = client.records.get_run(run.id)
        seen.append(progress.epochs_done)
        if progress.status in ("done", "failed"):
            break
        assert time.monotonic() < deadline + 120, progress
        time.sleep(0.05)
    assert progress.status == "done" and progress.model_id, progress.error
    assert progress.epochs_done == 8
    assert min(seen) >= at_kill, f"restarted below epoch {at_kill}: {sorted(set(seen))}"
    resumed = re.findall(rf"resuming run {run.id} after epoch (\d+)", gpu.log_tail(200_000))
    assert resumed and int(resumed[-1]) >= at_kill, resumed


@pytest.mark.parametrize("kill", ["job-process", "whole-worker"])
def test_gpu_worker_killed_mid_chunk_resumes_without_duplicates(
    chaos_cluster: Cluster, model_id: str, kill: str
) -> None:
    """The kill lands while the chunk's tunes are being written (some generated, some not); the
    chunk's next delivery samples only the tunes not yet generated, and every tune ends up once
    in the records, the bucket and the manifest."""
    c = chaos_cluster
    client = Client(c.settings)
    count = 150
    batch = client.submit_batch(driver.batch_spec(model_id, count, chunk_size=count, seed=11))
    deadline = time.monotonic() + 120
    while True:
        tunes = c.records.tunes(batch.id)
        generated = {t.tune_id for t in tunes if t.status != TuneStatus.GENERATING
                     and t.status != TuneStatus.QUEUED}  # fmt: skip
        if len(generated) >= 5:
            break
        assert time.monotonic() < deadline, [t.status for t in tunes]
        time.sleep(0.02)
    gpu = next(w for w in c.workers if w.role == "gpu" and w.proc.poll() is None)
    if kill == "job-process":
        assert all(sigkill(pid) for pid in children(gpu.proc.pid))
    else:
        driver.kill_a_whole_worker(c, random.Random(0), only=gpu)
    assert 0 < len(generated) < count, "the kill did not land mid-chunk"
    before = {k: v for k, v in _abc_objects(c, batch.id).items() if k in generated}

    finished = client.follow(batch.id, lambda _p: None, timeout_s=240)
    assert finished.finished, finished.counts
    figures = driver.Figures("resume", c.redis.appendfsync, count)
    problems = driver.audit(c, batch.id, figures)
    assert not problems, problems
    assert figures.lost == figures.duplicates == figures.orphans == 0
    # Tunes written before the kill were not sampled again: the resumed delivery logged only
    # the rest (at most `count - len(generated)`), and their files are unchanged.
    # Every gpu worker's log, the killed one's included.
    logs = "".join(p.read_text(errors="replace") for p in c.log_dir.glob("worker-gpu-*.log"))
    resumed = {
        int(n) for n in re.findall(rf"batch {batch.id} chunk 0: (\d+) tunes generated", logs)
    }
    assert resumed and max(resumed) <= count - len(generated), (resumed, len(generated))
    after = _abc_objects(c, batch.id)
    assert all(after[k] == v for k, v in before.items())


def _abc_objects(c: Cluster, batch_id: str) -> dict[str, tuple[int, str]]:
    """tune id → (size, sha256) of its .abc in the bucket."""
    objects = driver.bucket_objects(c.endpoint_url, c.bucket, artifact_key(batch_id, ""))
    return {k.rsplit("/", 1)[-1].removesuffix(".abc"): v for k, v in objects.items()
            if k.endswith(".abc")}  # fmt: skip
