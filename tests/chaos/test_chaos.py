"""Chaos: a batch through real redis-server (AOF), a real S3 server and real worker processes
while worker processes are SIGKILLed, Redis is killed and restarted, and the bucket goes away.

Size: ``TUNEBATCH_CHAOS_SCALE=ci`` (default, part of `make test`) or ``full`` (`make chaos`).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos import driver
from tests.chaos.faults import BucketProxy
from tests.worker.cluster import Cluster

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("appendfsync", ["everysec", "always"])
def test_batch_survives_worker_kills_redis_restarts_and_a_bucket_outage(
    chaos_cluster: Cluster, proxy: BucketProxy, model_id: str, appendfsync: str, tmp_path: Path
) -> None:
    size = driver.scale()
    if size.name == "ci" and appendfsync == "always":
        pytest.skip("appendfsync always is measured at full size (make chaos)")
    c = chaos_cluster
    c.redis.appendfsync = appendfsync  # used by the restarts below
    c.records.r.config_set("appendfsync", appendfsync)
    batch_id, figures = driver.run_batch_under_faults(c, proxy, model_id, size)
    problems = driver.audit(c, batch_id, figures)
    driver.report(f"chaos-{size.name}-{appendfsync}", driver.figures_dict(figures))
    print("\n".join(figures.events))
    assert not problems, "\n".join(problems + figures.events)
    assert figures.worker_kills + figures.redis_restarts + figures.bucket_outages > 0
    assert figures.lost == 0 and figures.duplicates == 0 and figures.orphans == 0
    assert figures.done > 0
    # A tune fails only on its own merits (abc2midi rejects it), never for the faults.
    for t in c.records.tunes(batch_id):
        if t.status.value == "failed":
            assert "gave up" not in (t.error or ""), (t.tune_id, t.error, figures.events)


def test_a_worker_started_while_the_bucket_is_away_waits_for_it(
    chaos_cluster: Cluster, proxy: BucketProxy
) -> None:
    """A replacement worker that starts during an outage waits (TUNEBATCH_STARTUP_WAIT_S) instead
    of exiting, else a cluster that loses its bucket for a minute also loses its workers.

    The bucket stays away until the worker has said it is waiting (however long its start-up
    takes on a loaded machine), then comes back, and the same process must go on to serve."""
    c = chaos_cluster
    proxy.down()
    try:
        worker = c.start_worker("cpu")
        deadline = time.monotonic() + 180
        while "trying again in" not in worker.log_tail(100_000):
            assert worker.proc.poll() is None, worker.log_tail()
            assert time.monotonic() < deadline, f"no retry logged in 180 s:\n{worker.log_tail()}"
            time.sleep(0.5)
        assert worker.proc.poll() is None, worker.log_tail()
    finally:
        proxy.up()
    c.wait_ready(worker)
    worker.stop()
    c.workers.remove(worker)
