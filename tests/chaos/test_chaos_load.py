"""Load: queued jobs survive `kill -9` of Redis with AOF; enqueue cost per appendfsync policy.

Nothing consumes the queue: the jobs are sent as the producer sends them (`send_task`, JSON), the
server is SIGKILLed right after the last send, restarted on its AOF, and the queue is counted.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from celery import Celery

from common.dispatch.names import RENDER
from tests import servers as srv
from tests.chaos import driver

pytestmark = pytest.mark.slow

QUEUE = "chaos-load"


@pytest.mark.parametrize("appendfsync", ["everysec", "always"])
def test_queued_jobs_survive_kill_9_of_redis(tmp_path: Path, appendfsync: str) -> None:
    jobs = 10_000 if driver.scale().name == "full" else 2_000
    with srv.redis_server(tmp_path / "redis", appendfsync=appendfsync) as redis:
        app = Celery("load", broker=redis.url, set_as_current=False)
        app.conf.update(task_serializer="json", accept_content=["json"])
        start = time.monotonic()
        with app.connection_for_write() as conn:
            for i in range(jobs):
                app.send_task(RENDER, args=["b-load", f"t{i:06d}"], queue=QUEUE, connection=conn)
        send_s = time.monotonic() - start
        app.close()
        if appendfsync == "everysec":
            time.sleep(1.5)  # the policy's promise: at most the last second is at risk
        redis.restart()  # SIGKILL, then start on the same AOF
        import redis as redis_py

        client = redis_py.Redis.from_url(redis.url)
        survived = int(client.llen(QUEUE))
        client.close()
    driver.report(
        f"load-{driver.scale().name}-{appendfsync}",
        {"jobs": jobs, "survived": survived, "enqueue_s": round(send_s, 2),
         "jobs_per_s": round(jobs / send_s)},
    )  # fmt: skip
    assert survived == jobs, f"{jobs - survived} of {jobs} queued jobs lost ({appendfsync})"
