"""A GPU worker's job process SIGKILLed mid-epoch: the training run resumes from its last
checkpoint (not from epoch 0) and registers a model."""

from __future__ import annotations

import re
import time

import pytest

from common.schemas import TrainSpec
from producer.client import Client
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
