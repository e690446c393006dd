"""A whole distributed tunebatch on loopback: redis-server, an S3 server, `worker gpu` / `cpu`.

Used by tests/worker/test_distributed.py and bench/pipeline.py, so both run the
real thing: real servers from tests/servers.py and real worker processes started with the
documented command (``python -m worker.cli gpu|cpu``) and nothing but ``TUNEBATCH_*`` settings.
Every worker runs in its own process group and is stopped (SIGTERM, then SIGKILL) on exit, also
when the code using the cluster fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import kombu.exceptions
import redis

from common.settings import Settings
from common.state.redis import RedisRecords
from tests import servers as srv

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 90.0


@dataclass
class WorkerProcess:
    role: str
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 20.0) -> None:
        """Warm shutdown (SIGTERM to the main process), then SIGKILL the whole group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


@dataclass
class Cluster:
    env: dict[str, str]
    settings: Settings
    endpoint_url: str
    bucket: str
    redis: srv.RedisServer
    log_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def records(self) -> RedisRecords:
        assert self.settings.broker_url is not None
        return RedisRecords.from_url(self.settings.broker_url)

    def start_worker(
        self,
        role: str,
        *,
        concurrency: int = 1,
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        """Start `worker <role>`; `env` adds to (or overrides) the cluster's environment."""
        name = f"{role}-{uuid.uuid4().hex[:6]}@test"
        log_path = self.log_dir / f"worker-{name.split('@')[0]}.log"
        argv = [
            sys.executable, "-m", "worker.cli", role, f"--concurrency={concurrency}",
            f"--name={name}", "--loglevel=INFO", *extra,
        ]  # fmt: skip
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: teardown kills the pool with it
            )
        worker = WorkerProcess(role, name, proc, log_path)
        self.workers.append(worker)
        return worker

    def wait_ready(self, *workers: WorkerProcess, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until each worker answers a Celery ping (its consumer is up and reading its queue)."""
        from common.dispatch.config import make_app

        # A fresh app: the module's `app` keeps its broker connection to an earlier cluster's Redis.
        app = make_app(self.settings)
        deadline = time.monotonic() + timeout_s
        waiting = {w.name: w for w in workers}
        while waiting:
            for w in waiting.values():
                if w.proc.poll() is not None:
                    raise RuntimeError(f"worker {w.name} exited:\n{w.log_tail()}")
            try:
                replies = app.control.ping(destination=list(waiting), timeout=0.5) or []
            except (OSError, redis.RedisError, kombu.exceptions.OperationalError):
                # A Redis that restarted may close the connection ("Connection closed by
                # server"): the next ping opens a new one.
                replies = []
                time.sleep(0.2)
            for reply in replies:
                for name in reply:
                    waiting.pop(name, None)
            if waiting and time.monotonic() > deadline:
                tails = "\n".join(w.log_tail() for w in waiting.values())
                raise RuntimeError(f"workers {list(waiting)} not ready:\n{tails}")

    def wait_idle(self, timeout_s: float = 60.0, settle_s: float = 0.5) -> None:
        """Until both queues are empty and no message is in flight (Redis' unacked hash)."""
        r = self.records.r
        deadline = time.monotonic() + timeout_s
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            busy = r.llen("gpu") + r.llen("cpu") + r.hlen("unacked")
            if busy == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle_s:
                    return
            else:
                quiet_since = None
            time.sleep(0.1)
        raise TimeoutError(f"workers still busy after {timeout_s} s")

    def stop_workers(self) -> None:
        for w in self.workers:
            w.stop()
        self.workers.clear()


def cluster_settings(
    redis_url: str, endpoint_url: str, bucket: str, data_dir: Path, **overrides: str
) -> dict[str, str]:
    """The ``TUNEBATCH_*`` environment of every process of the cluster."""
    env = {
        "TUNEBATCH_BROKER_URL": redis_url,
        "TUNEBATCH_S3_BUCKET": bucket,
        "TUNEBATCH_S3_ENDPOINT_URL": endpoint_url,
        "TUNEBATCH_S3_REGION": srv.FAKE_REGION,
        "TUNEBATCH_S3_ACCESS_KEY_ID": srv.FAKE_ACCESS_KEY_ID,
        "TUNEBATCH_S3_SECRET_ACCESS_KEY": srv.FAKE_SECRET_ACCESS_KEY,
        "TUNEBATCH_DATA_DIR": str(data_dir),
        "TUNEBATCH_SAMPLE_BATCH_SIZE": "64",
        "TUNEBATCH_STEPS_PER_CALL": "16",
        "TUNEBATCH_CHUNK_SIZE": "25",
        "TUNEBATCH_MAX_ATTEMPTS": "2",
        "TUNEBATCH_LOG_LEVEL": "INFO",
    }
    env.update({f"TUNEBATCH_{k.upper()}": v for k, v in overrides.items()})
    return env


@contextlib.contextmanager
def cluster(tmp_dir: Path, s3: srv.S3Server | None = None, **overrides: str) -> Iterator[Cluster]:
    """Redis + S3 bucket (+ the given S3 server or a new one); start workers with `start_worker`."""
    from worker.celery_app import configure

    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(srv.redis_server(tmp_dir / "redis"))
        if s3 is None:
            s3 = stack.enter_context(srv.s3_server(tmp_dir))
        bucket = f"dist-{uuid.uuid4().hex[:12]}"
        srv.create_bucket(s3.endpoint_url, bucket)
        stack.callback(srv.delete_bucket, s3.endpoint_url, bucket)
        values = cluster_settings(redis.url, s3.endpoint_url, bucket, tmp_dir / "data", **overrides)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEBATCH_")}
        env.update(values)
        env["PYTHONPATH"] = str(ROOT)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        settings = Settings.model_validate(
            {k.removeprefix("TUNEBATCH_").lower(): v for k, v in values.items()}
        )
        configure(settings)
        c = Cluster(env, settings, s3.endpoint_url, bucket, redis, tmp_dir)
        stack.callback(c.stop_workers)
        yield c


def train_through_workers(
    settings: Settings, corpus: str, *, epochs: int, timeout_s: float = 150.0
) -> str:
    """Train the tiny preset on the gpu-queue worker, wait for it, return the model id."""
    from common.schemas import TrainSpec
    from producer.client import Client

    client = Client(settings)
    run = client.train(TrainSpec(corpus=corpus, preset="tiny", epochs=epochs, seed=1))
    done = client.follow_run(run.id, lambda _r: None, timeout_s=timeout_s)
    assert done.status == "done" and done.model_id, done.error
    return done.model_id
