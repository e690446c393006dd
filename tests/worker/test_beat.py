"""Celery beat stays up: the loop interval Celery's own beat uses, the lock it must outlive, and a
real beat started with the deployed arguments (k8s and compose) running past its lock period.

A beat that sleeps longer than its Redis lock lives loses the lock and dies at its next tick
(``LockNotOwnedError``) before it fires anything. That shipped once: the config set
``beat_max_interval``, a name Celery ignores, so beat slept its default 300 s against a 300 s lock.
These tests read what Celery's Beat really uses, so a misnamed setting cannot pass again.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
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


# --- riding out Redis outages, the lock, the heartbeat ----------------------------------------


def _beat_env(redis_url: str, tmp_path: Path, name: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEBATCH_")}
    env.update(
        PYTHONPATH=str(ROOT),
        TUNEBATCH_BROKER_URL=redis_url,
        TUNEBATCH_BEAT_MAX_LOOP_INTERVAL_S="1",
        TUNEBATCH_BEAT_LOCK_TIMEOUT_S="60",
        TUNEBATCH_BEAT_HEARTBEAT_FILE=str(tmp_path / f"{name}.heartbeat.json"),
        # Redis away: the start-up check gives up at once instead of waiting for it.
        TUNEBATCH_STARTUP_WAIT_S="0",
        **extra,
    )
    return env


def _wait(what: str, check: Any, timeout_s: float, log_path: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    tail = log_path.read_text(errors="replace")[-3000:] if log_path else ""
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s\n{tail}")


def _holder(r: Any) -> str:
    """The value of redbeat's lock (``host|pid|nonce`` for our beat), '' when nobody holds it."""
    raw = r.get("redbeat::lock")
    return raw.decode() if isinstance(raw, bytes) else str(raw or "")


def _scrape(port: int) -> dict[str, float]:
    """Beat's /metrics as {sample name with labels: value}."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _health(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "beat-health"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_slots_between_two_runs_of_a_crontab_and_of_an_interval() -> None:
    from datetime import UTC, datetime, timedelta

    from celery.schedules import schedule as every

    app = make_app(Settings(broker_url="redis://127.0.0.1:1/0"))
    minutely = schedule_store.parse_cron("* * * * *")
    minutely.app = app
    last = datetime(2026, 12, 6, 13, 6, 0, 2000, tzinfo=UTC)
    now = datetime(2026, 12, 6, 13, 9, 20, tzinfo=UTC)
    slots = beat_module.due_slots(minutely, last, now)
    assert [f"{s:%H:%M:%S}" for s in slots] == ["13:07:00", "13:08:00", "13:09:00"]
    assert beat_module.due_slots(minutely, last, last + timedelta(seconds=59)) == []
    interval = every(run_every=timedelta(seconds=20), app=app)
    assert [f"{s:%H:%M:%S}" for s in beat_module.due_slots(interval, last, now)][:2] == [
        "13:06:20", "13:06:40",
    ]  # fmt: skip


def test_beat_rides_out_a_redis_sigkill_and_each_slot_fires_or_is_said_missed(
    redis_server: srv.RedisServer, tmp_path: Path
) -> None:
    """Beat, Redis killed with SIGKILL for longer than two slots of a 3 s schedule, Redis back
    on the same port (AOF): beat never exits, fires once for the latest slot and records the
    older ones as missed, and every slot from start to end is either fired or recorded missed;
    `producer schedule list` says so. Its health check passes while it runs and fails once it
    has stopped."""
    every_s, outage_s = 3, 8
    port = srv.free_port()
    env = _beat_env(redis_server.url, tmp_path, "a", TUNEBATCH_METRICS_PORT=str(port))
    app = make_app(Settings(broker_url=redis_server.url))
    spec = ScheduleSpec(name="often", cron="* * * * *", corpus="mini")
    schedule_store.add_schedule(app, spec, every_s=every_s)
    log_path = tmp_path / "beat.log"

    def fired() -> list[schedule_store.Firing]:
        return schedule_store.firings(app, "often")[0]

    with _process([sys.executable, "-m", "worker.cli", "beat"], env, log_path) as proc:
        _wait("two firings", lambda: len(fired()) >= 2, 30, log_path)
        assert _health(env).returncode == 0, _health(env).stderr
        time.sleep(1.5)  # the last firing's record reaches the AOF (appendfsync everysec)
        before = len(fired())
        redis_server.kill()
        time.sleep(outage_s)
        assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        redis_server.start()
        _wait("a firing after the outage", lambda: len(fired()) > before, 30, log_path)
        _wait("a firing on time again", lambda: len(fired()) > before + 1, 30, log_path)
        assert proc.poll() is None
        metrics = _scrape(port)
        at_scrape = schedule_store.firings(app, "often")
    log = log_path.read_text(errors="replace")
    assert "cannot reach Redis" in log and "retrying with backoff, not exiting" in log, log
    assert "Redis answers again after" in log, log
    assert "CRITICAL" not in log and "Traceback" not in log, log
    assert "beat: Releasing lock" in log, log
    # Every slot is accounted for: each is one interval after the run before it (an interval
    # schedule counts from when it last ran: a firing's sending, a missed slot's own time), so
    # between two firings there are only the recorded misses; the one after the outage was
    # late, not lost.
    firings, missed = schedule_store.firings(app, "often")
    step = timedelta(seconds=every_s)
    runs = sorted([(f.slot, f.fired_at) for f in firings] + [(m, m) for m in missed])
    gaps = [(slot - ran) - step for (_, ran), (slot, _) in itertools.pairwise(runs)]
    assert all(abs(gap) < timedelta(seconds=0.5) for gap in gaps), (runs, gaps)
    assert len(missed) >= 1, (firings, missed)  # 8 s away from a 3 s schedule
    # The catch-up firing is for the latest slot before Redis came back (less than an interval
    # before it went out); the ones before the outage went out on time.
    catch_up = next(f for f in firings if f.slot > max(missed))
    assert 0 <= catch_up.late_s < every_s, catch_up
    assert all(f.late_s < every_s for f in firings if f.slot < min(missed)), firings
    [info] = schedule_store.list_schedules(app)
    assert info.missed_slots == len(missed) and info.last_missed_slot == max(missed)
    # Its /metrics said the same while it ran (a firing may land between the two reads).
    fired_then, missed_then = len(at_scrape[0]), len(at_scrape[1])
    assert metrics['tunebatch_beat_firings_total{schedule="often"}'] in (fired_then, fired_then + 1)
    assert metrics['tunebatch_beat_missed_slots_total{schedule="often"}'] == missed_then
    assert metrics["tunebatch_beat_redis_errors_total"] >= 1
    assert metrics["tunebatch_beat_lock_held"] == 1
    assert time.time() - metrics["tunebatch_beat_last_tick_timestamp_seconds"] < 10
    # Stopped (SIGTERM): the lock is released and the health check fails at once.
    r = redis_client.Redis.from_url(redis_server.url)
    assert not r.exists("redbeat::lock")
    result = _health(env)
    assert result.returncode == 1 and "no heartbeat" in result.stderr, result.stderr
    r.close()


def test_a_restarted_beat_takes_over_its_dead_predecessors_lock_and_a_live_one_is_waited_for(
    redis_server: srv.RedisServer, tmp_path: Path
) -> None:
    """Beat A is SIGKILLed holding the lock (60 s left on it): beat B on the same host takes it
    over at once, since A's process is gone. Beat C, started while B runs, waits as a standby
    (it ticks: its health check passes) and fires nothing; it takes the lock as soon as B stops,
    because B releases it."""
    app = make_app(Settings(broker_url=redis_server.url))
    schedule_store.add_schedule(app, ScheduleSpec(name="often", cron="* * * * *", corpus="mini"),
                                every_s=2)  # fmt: skip
    r = redis_client.Redis.from_url(redis_server.url)
    argv = [sys.executable, "-m", "worker.cli", "beat"]
    env_a, env_b, env_c = (_beat_env(redis_server.url, tmp_path, n) for n in "abc")
    with _process(argv, env_a, tmp_path / "a.log") as a:
        _wait("A holds the lock", lambda: _holder(r), 30, tmp_path / "a.log")
        holder = _holder(r)
        assert holder.split("|")[1] == str(a.pid), holder
        os.killpg(a.pid, signal.SIGKILL)
        a.wait()
    assert r.pttl("redbeat::lock") > 40_000  # left behind, as by a crash
    t0 = time.monotonic()
    with _process(argv, env_b, tmp_path / "b.log") as b:
        _wait("B takes over", lambda: _holder(r) not in ("", holder), 30, tmp_path / "b.log")
        assert time.monotonic() - t0 < 20  # not the 60 s the old lock had left
        b_log = (tmp_path / "b.log").read_text()
        assert "took over the lock of" in b_log and f"|{a.pid}|" in b_log, b_log
        with _process(argv, env_c, tmp_path / "c.log") as c:
            _wait("C ticks as a standby",
                  lambda: "standby" in Path(env_c["TUNEBATCH_BEAT_HEARTBEAT_FILE"]).read_text()
                  if Path(env_c["TUNEBATCH_BEAT_HEARTBEAT_FILE"]).exists() else False,
                  30, tmp_path / "c.log")  # fmt: skip
            assert _health(env_c).returncode == 0
            time.sleep(4)  # two slots
            assert "Sending due task" not in (tmp_path / "c.log").read_text()
            b.send_signal(signal.SIGTERM)
            b.wait(timeout=15)
            _wait("C takes the released lock",
                  lambda: _holder(r).split("|")[1:2] == [str(c.pid)],
                  15, tmp_path / "c.log")  # fmt: skip
            _wait("C fires", lambda: "Sending due task" in (tmp_path / "c.log").read_text(), 15)
    c_log = (tmp_path / "c.log").read_text()
    assert "took over" not in c_log, c_log  # B released it: nothing to take over
    r.close()


def test_the_health_check_fails_when_beat_stops_ticking(tmp_path: Path) -> None:
    """The heartbeat a real tick writes, read as `worker beat-health` reads it, at the time it
    was written and after the loop interval and slack have passed without a tick."""
    path = tmp_path / "hb.json"
    settings = Settings(beat_heartbeat_file=path, beat_max_loop_interval_s=30)
    assert "no heartbeat" in (beat_module.check_health(settings) or "")
    path.write_text(json.dumps({"tick": 1000.0, "state": "active", "loop_interval_s": 30.0,
                                "pid": 7}))  # fmt: skip
    assert beat_module.check_health(settings, now=1000.0 + 30 + 14) is None
    problem = beat_module.check_health(settings, now=1000.0 + 30 + 16)
    assert problem is not None and "last ticked 46 s ago" in problem, problem
    path.write_text("{")
    assert "unreadable" in (beat_module.check_health(settings) or "")
