"""Leases (`worker.leases`): a live worker keeps a long job to itself past the visibility timeout;
a job whose whole worker was SIGKILLed runs again on another worker within about one timeout."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from kombu.connection import Connection
from kombu.transport.redis import Mutex

from common.dispatch.config import make_app, transport_options
from common.dispatch.enqueue import enqueue
from tests import servers as srv
from tests.worker.cluster import Cluster, cluster
from tests.worker.poison_tasks import HOLD
from worker.leases import UNACKED_INDEX, renew, renew_interval_s

VISIBILITY_S = 6
INCLUDE = ("--include=tests.worker.poison_tasks",)


def test_renew_stamps_only_messages_that_are_still_unacked(tmp_path: Path) -> None:
    with srv.redis_server(tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        client.zadd(UNACKED_INDEX, {"held": 100.0, "other": 100.0})
        assert renew(client, ["held", "acked-meanwhile"], now=5000.0) == 1
        scores = {m: client.zscore(UNACKED_INDEX, m) for m in (b"held", b"other")}
        # an acknowledged message is not brought back; another worker's is left alone
        assert scores == {b"held": 5000.0, b"other": 100.0}
        assert client.zcard(UNACKED_INDEX) == 2
        assert renew(client, [], now=6000.0) == 0
        client.close()


def test_leases_are_renewed_well_inside_the_timeout_and_swept_often() -> None:
    from common.settings import Settings

    assert renew_interval_s(300) == 50 and renew_interval_s(6) == 1.0
    options = transport_options(Settings(visibility_timeout_s=300))
    assert options["visibility_timeout"] == 300
    assert options["unacked_restore_interval"] * options["unacked_restore_throttle"] == 30
    # A sweep lock nobody releases (its holder or Redis killed mid-sweep) costs one sweep.
    assert options["unacked_mutex_expire"] == options["unacked_restore_interval"]


@pytest.fixture()
def lease_cluster(tmp_path: Path, s3_server: srv.S3Server) -> Iterator[Cluster]:
    with cluster(tmp_path, s3_server, visibility_timeout_s=str(VISIBILITY_S)) as c:
        yield c


def _count(c: Cluster, key: str) -> int:
    return int(c.records.r.get(key) or 0)


def _wait(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.slow
def test_a_live_worker_keeps_a_job_longer_than_the_visibility_timeout(
    lease_cluster: Cluster,
) -> None:
    c = lease_cluster
    a, b = (c.start_worker("cpu", extra=INCLUDE) for _ in range(2))
    c.wait_ready(a, b)
    enqueue(HOLD, "hold:long", 3.5 * VISIBILITY_S, celery_app=make_app(c.settings))
    _wait("the job finished", lambda: _count(c, "hold:long:finished") == 1, 60)
    c.wait_idle(timeout_s=10)
    # One run: without leases kombu would have handed it to the idle worker after 6 s.
    assert _count(c, "hold:long") == 1
    assert "renewing job leases" in a.log_tail(100_000) + b.log_tail(100_000)


def _orphan_and_rerun(c: Cluster, key: str, meanwhile: Callable[[], object] = object) -> float:
    """A job starts on a worker that is then SIGKILLed whole (main process and pool: nobody
    rejects the job); `meanwhile` runs, another worker starts. Seconds until the job ran again."""
    doomed = c.start_worker("cpu", extra=INCLUDE)
    c.wait_ready(doomed)
    enqueue(HOLD, key, 2.0, celery_app=make_app(c.settings))
    _wait("the job started", lambda: _count(c, key) == 1, 30)
    os.killpg(doomed.proc.pid, signal.SIGKILL)
    doomed.proc.wait(timeout=10)
    killed_at = time.monotonic()
    assert c.records.r.hlen("unacked") == 1  # the message is held by a dead worker
    kept = meanwhile()  # noqa: F841  # alive until the job ran again
    survivor = c.start_worker("cpu", extra=INCLUDE)
    c.wait_ready(survivor)
    _wait("the job ran again", lambda: _count(c, f"{key}:finished") == 1, 60)
    back_after = time.monotonic() - killed_at
    c.wait_idle(timeout_s=10)
    assert _count(c, key) == 2
    return back_after


@pytest.mark.slow
def test_a_job_whose_worker_vanished_runs_again_within_a_timeout(lease_cluster: Cluster) -> None:
    back_after = _orphan_and_rerun(lease_cluster, "hold:orphan")
    # About one timeout plus a sweep (a tenth of it), not the hours of a job-length timeout.
    assert back_after < VISIBILITY_S + 2 + 15, back_after


@pytest.mark.slow
def test_a_sweep_lock_left_by_a_dead_sweeper_does_not_hold_lapsed_leases_back(
    lease_cluster: Cluster,
) -> None:
    """kombu sweeps lapsed leases under a Redis lock (``unacked_mutex``). A Redis SIGKILLed while
    a worker holds it (or the holder killed) leaves it on disk, unreleased, for its whole expiry:
    300 s by kombu's default, during which no lease lapses anywhere. Here a sweeper configured as
    the cluster's workers are leaves it so; the orphaned job must still run again within about one
    visibility timeout."""
    c = lease_cluster

    def sweeper_dies_holding_the_lock() -> object:
        # kombu's own Mutex, entered and never left.
        options = transport_options(c.settings)
        with Connection(c.settings.broker_url, transport_options=options) as conn:  # type: ignore[no-untyped-call]
            channel = conn.default_channel
            sweep = Mutex(channel.client, channel.unacked_mutex_key, channel.unacked_mutex_expire)
            sweep.__enter__()
            assert c.records.r.exists(channel.unacked_mutex_key)
        return sweep

    back_after = _orphan_and_rerun(c, "hold:locked", sweeper_dies_holding_the_lock)
    assert back_after < VISIBILITY_S + 2 + 15, back_after
