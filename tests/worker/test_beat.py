"""Celery beat stays up: the loop interval Celery's own beat uses, the lock it must outlive, and a
real beat started with the deployed arguments (k8s and compose) running past its lock period.

A beat that sleeps longer than its Redis lock lives loses the lock and dies at its next tick
(``LockNotOwnedError``) before it fires anything. That shipped once: the config set
``beat_max_interval``, a name Celery ignores, so beat slept its default 300 s against a 300 s lock.
These tests read what Celery's Beat really uses, so a misnamed setting cannot pass again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_client
from celery.app.defaults import DEFAULTS
from celery.beat import Service
from typer.testing import CliRunner

from common.dispatch import schedule_store
from common.dispatch.config import celery_config, make_app
from common.errors import ConfigError
from common.jobs.schedules import ScheduleSpec
from common.settings import Settings
from tests import servers as srv
from tests.deploy.manifests import COMPOSE_FILE, load_yaml
from worker import beat as beat_module
from worker import cli as worker_cli

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_we_give_celery_is_one_it_knows() -> None:
    conf = celery_config(Settings(broker_url="redis://127.0.0.1:6379/0"))
    unknown = [k for k in conf if k not in DEFAULTS and not k.startswith("redbeat_")]
    assert unknown == [], f"Celery ignores these (misspelt?): {unknown}"


def _scheduler(settings: Settings, **kw: Any) -> Any:
    """The scheduler Celery's own beat service builds for an app configured from `settings`."""
    app = make_app(settings)
    service = Service(app, scheduler_cls=app.conf.beat_scheduler, **kw)
    return service.get_scheduler()


def test_celerys_beat_uses_our_loop_interval_and_lock(redis_server: srv.RedisServer) -> None:
    defaults = _scheduler(Settings(broker_url=redis_server.url))
    assert isinstance(defaults, beat_module.Scheduler)
    assert defaults.max_interval == 30 and defaults.lock_timeout == 150
    assert defaults.lock_timeout >= 3 * defaults.max_interval
    tuned = _scheduler(
        Settings(broker_url=redis_server.url, beat_max_loop_interval_s=7, beat_lock_timeout_s=40)
    )
    assert tuned.max_interval == 7 and tuned.lock_timeout == 40


def test_a_lock_that_can_expire_between_ticks_is_refused_at_start(
    redis_server: srv.RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="TUNEBATCH_BEAT_LOCK_TIMEOUT_S"):
        Settings(beat_max_loop_interval_s=60, beat_lock_timeout_s=100)
    # --max-interval on Celery's own command line reaches the scheduler, which checks it too.
    with pytest.raises(ConfigError, match="at least 3 times"):
        _scheduler(Settings(broker_url=redis_server.url), max_interval=100)
    for key in list(os.environ):
        if key.startswith("TUNEBATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TUNEBATCH_BROKER_URL", redis_server.url)
    result = CliRunner().invoke(worker_cli.app, ["beat", "--max-interval", "100"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: beat's Redis lock would expire") and "150 s" in line
    help_text = CliRunner().invoke(worker_cli.app, ["beat", "--help"]).output
    words = " ".join(help_text.replace("│", " ").split()).lower()
    assert "default 30, set by tunebatch_beat_max_loop_interval_s" in words, help_text


def _deployed_beat_argv() -> list[str]:
    """The beat command of the k8s Deployment, which the compose file must run too."""
    deployment = load_yaml(ROOT / "k8s" / "base" / "beat.yaml")
    assert deployment["kind"] == "Deployment"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    argv = [*container["command"], *container["args"]]
    compose = load_yaml(COMPOSE_FILE)["services"]["beat"]
    assert ["worker", *compose["command"]] == argv  # the cpu-worker image's entrypoint is worker
    assert not any(part.startswith("--max-interval") for part in argv)
    assert argv[0] == "worker"
    return [sys.executable, "-m", "worker.cli", *argv[1:]]


@contextlib.contextmanager
def _process(argv: list[str], env: dict[str, str], log_path: Path) -> Iterator[Any]:
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_deployed_beat_outlives_its_lock_period_and_fires(
    redis_server: srv.RedisServer, tmp_path: Path
) -> None:
    """Beat from the manifests (no --max-interval) with a 6 s lock, set through settings, and a
    schedule every 9 s: beat's only reason to wake before the next firing is its loop interval,
    so if that setting did not reach Celery, the lock would expire in its sleep and beat die."""
    lock_s, loop_s, every_s = 6, 2, 9
    values = {
        "TUNEBATCH_BROKER_URL": redis_server.url,
        "TUNEBATCH_BEAT_LOCK_TIMEOUT_S": str(lock_s),
        "TUNEBATCH_BEAT_MAX_LOOP_INTERVAL_S": str(loop_s),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEBATCH_")}
    env.update(values, PYTHONPATH=str(ROOT))
    settings = Settings(broker_url=redis_server.url)
    spec = ScheduleSpec(name="slow", cron="* * * * *", corpus="mini")
    schedule_store.add_schedule(make_app(settings), spec, every_s=every_s)
    r = redis_client.Redis.from_url(redis_server.url)
    log_path = tmp_path / "beat.log"
    with _process(_deployed_beat_argv(), env, log_path) as proc:
        deadline = time.monotonic() + 3 * every_s + 10
        while log_path.read_text(errors="replace").count("Sending due task tunebatch:slow") < 3:
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        assert proc.poll() is None  # alive after 3 firings: 27 s, four and a half lock periods
        assert 0 < r.pttl("redbeat::lock") <= lock_s * 1000  # held and renewed
    log = log_path.read_text(errors="replace")
    assert f"maxinterval -> {loop_s}.00 seconds" in log, log
    assert f"lock -> `redbeat::lock` {lock_s}.00 seconds" in log, log
    assert "scheduler -> worker.beat.Scheduler" in log, log
    assert "LockNotOwnedError" not in log and "CRITICAL" not in log, log
    assert "redis://:**@" not in log, log  # no password, no mask in the banner
    # Each firing is one run_schedule message on the cpu queue (no worker here to take it).
    assert r.llen("cpu") >= 3
    r.close()
