"""Chaos: a batch through real redis-server (AOF), a real S3 server and real worker processes
while worker processes are SIGKILLed, Redis is killed and restarted, and the bucket goes away.

Size: ``TUNEBATCH_CHAOS_SCALE=ci`` (default, part of `make test`) or ``full`` (`make chaos`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.corpus import import_corpus
from common.schemas import TrainSpec
from common.storage import make_store
from producer.client import Client
from tests import servers as srv
from tests.chaos import driver
from tests.chaos.faults import BucketProxy, bucket_proxy
from tests.model_fixtures import TINY_CORPUS
from tests.worker.cluster import Cluster, cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def proxy(s3_server: srv.S3Server) -> Iterator[BucketProxy]:
    with bucket_proxy(s3_server.port) as p:
        yield p


@pytest.fixture(scope="module")
def chaos_cluster(
    tmp_path_factory: pytest.TempPathFactory, proxy: BucketProxy
) -> Iterator[Cluster]:
    """1 gpu-queue + 2 cpu-queue workers; the workers reach the bucket through `proxy`."""
    tmp = tmp_path_factory.mktemp("chaos")
    via_proxy = srv.S3Server(tmp, port=proxy.port)  # never started: only its endpoint is used
    with cluster(tmp, via_proxy, max_attempts="5") as c:
        gpu = c.start_worker("gpu")
        cpus = [c.start_worker("cpu") for _ in range(2)]
        import_corpus(make_store(c.settings), str(TINY_CORPUS), name="tiny")
        c.wait_ready(gpu, *cpus)
        yield c


@pytest.fixture(scope="module")
def model_id(chaos_cluster: Cluster) -> str:
    c = Client(chaos_cluster.settings)
    run = c.train(TrainSpec(corpus="tiny", preset="tiny", epochs=3, seed=1))
    done = c.follow_run(run.id, lambda _r: None, timeout_s=120)
    assert done.status == "done" and done.model_id, done.error
    return done.model_id


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
