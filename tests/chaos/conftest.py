"""The chaos cluster, shared by the chaos and security tests of this folder: real redis-server
(AOF), the session's S3 server behind a `BucketProxy`, 1 gpu-queue + 2 cpu-queue workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.abc.corpus import import_corpus
from common.store.open import make_store
from tests import servers as srv
from tests.chaos.faults import BucketProxy, bucket_proxy
from tests.model_fixtures import TINY_CORPUS
from tests.worker.cluster import Cluster, cluster, train_through_workers


@pytest.fixture(scope="session")
def proxy(s3_server: srv.S3Server) -> Iterator[BucketProxy]:
    with bucket_proxy(s3_server.port) as p:
        yield p


@pytest.fixture(scope="session")
def chaos_cluster(
    tmp_path_factory: pytest.TempPathFactory, proxy: BucketProxy
) -> Iterator[Cluster]:
    """1 gpu-queue + 2 cpu-queue workers; the workers reach the bucket through `proxy`."""
    tmp = tmp_path_factory.mktemp("chaos")
    via_proxy = srv.S3Server(tmp, port=proxy.port)  # never started: only its endpoint is used
    # A 20 s lease: a job whose whole worker was killed is back in its queue within ~22 s.
    with cluster(tmp, via_proxy, max_attempts="5", visibility_timeout_s="20") as c:
        gpu = c.start_worker("gpu")
        cpus = [c.start_worker("cpu", extra=("--include=tests.chaos.poison",)) for _ in range(2)]
        import_corpus(make_store(c.settings), str(TINY_CORPUS), name="tiny")
        c.wait_ready(gpu, *cpus)
        yield c


@pytest.fixture(scope="session")
def model_id(chaos_cluster: Cluster) -> str:
    return train_through_workers(chaos_cluster.settings, "tiny", epochs=3, timeout_s=120)
