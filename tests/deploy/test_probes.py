"""The health probes of the manifests and compose file, run for real against real processes.

A probe that never succeeds restarts a healthy pod forever; one that always succeeds hides a
dead one. So the exact commands from the rendered manifests (and the compose healthchecks) are
run here: the worker probe against a `worker cpu` started with the manifest's own arguments,
the beat probe against a real beat ticking, frozen and stopped, the Redis probe with the right and
a wrong password. Everything runs on 127.0.0.1 with the redis-server the other tests use.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import servers as srv
from tests.deploy.manifests import COMPOSE_FILE, find, kustomize, load_yaml, pod_template

PASSWORD = "probe-test-password"


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[srv.RedisServer]:
    with srv.redis_server(tmp_path / "redis", password=PASSWORD) as server:
        yield server


def _env(broker_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEBATCH_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        HOSTNAME=socket.gethostname(),  # what the container runtime sets
        TUNEBATCH_BROKER_URL=broker_url,
        CELERY_BROKER_URL=broker_url,
        **extra,
    )
    return env


def _probe(command: list[str], env: dict[str, str], timeout: float = 30) -> int:
    return subprocess.run(
        command, env=env, capture_output=True, timeout=timeout, check=False
    ).returncode


def _container(kind: str, name: str) -> dict[str, object]:
    docs = kustomize("k8s/overlays/dev")
    container: dict[str, object] = pod_template(find(docs, kind, name))["spec"]["containers"][0]
    return container


def test_worker_probe_answers_for_the_worker_the_manifest_starts(
    redis_with_password: srv.RedisServer, tmp_path: Path
) -> None:
    container = _container("Deployment", "cpu-worker")
    command = [*container["command"], *container["args"]]  # type: ignore[misc]
    probe = container["livenessProbe"]["exec"]["command"]  # type: ignore[index]
    env = _env(redis_with_password.url, TUNEBATCH_DATA_DIR=str(tmp_path / "data"))
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    quick = [part.replace("--timeout 10", "--timeout 1") for part in probe]
    assert quick != probe
    try:
        deadline = time.monotonic() + 60
        while _probe(quick, env) != 0:  # the worker is starting
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the probe never succeeded"
        assert _probe(probe, env) == 0  # the manifest's own command
        # The compose healthcheck is the same command with Compose's $$ escape.
        compose = load_yaml(COMPOSE_FILE)["services"]["cpu-worker"]["healthcheck"]["test"]
        assert compose[0] == "CMD-SHELL"
        assert _probe(["sh", "-c", compose[1].replace("$$", "$")], env) == 0
        # Another node name gets no answer: the probe really asks this worker.
        other = [part.replace("cpu@", "gpu@") for part in quick]
        assert _probe(other, env) != 0
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        log.close()


def test_beat_probe_follows_beats_ticks(
    redis_with_password: srv.RedisServer, tmp_path: Path
) -> None:
    """The probe of the manifests and the compose file against a real beat: failing before beat
    has ticked, passing while it ticks, failing when it is frozen (SIGSTOP) past its loop
    interval, and again once it has stopped."""
    container = _container("Deployment", "beat")
    probes = [container[k]["exec"]["command"] for k in ("livenessProbe", "readinessProbe")]  # type: ignore[index]
    compose = load_yaml(COMPOSE_FILE)["services"]["beat"]["healthcheck"]["test"]
    assert compose[0] == "CMD" and all(p == compose[1:] for p in probes), (probes, compose)
    heartbeat = tmp_path / "beat.json"
    env = _env(redis_with_password.url, TUNEBATCH_BEAT_HEARTBEAT_FILE=str(heartbeat),
               TUNEBATCH_BEAT_MAX_LOOP_INTERVAL_S="1")  # fmt: skip
    probe = compose[1:]
    assert _probe(probe, env) == 1, "beat has not ticked: the probe must fail"
    beat = subprocess.Popen(
        [*probe[:1], "beat"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not heartbeat.exists():
            assert beat.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        assert _probe(probe, env) == 0
        os.killpg(beat.pid, signal.SIGSTOP)
        from worker.beat import HEARTBEAT_SLACK_S

        time.sleep(1 + HEARTBEAT_SLACK_S + 1)
        assert _probe(probe, env) == 1, "beat frozen past its loop interval: unhealthy"
        os.killpg(beat.pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while _probe(probe, env) != 0:
            assert time.monotonic() < deadline, "beat ticks again: healthy again"
            time.sleep(0.5)
    finally:
        os.killpg(beat.pid, signal.SIGCONT)
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=30)
    assert _probe(probe, env) == 1, "beat stopped: the probe must fail"


def test_redis_probe_authenticates_with_rediscli_auth(redis_with_password: srv.RedisServer) -> None:
    container = _container("StatefulSet", "redis")
    port = str(redis_with_password.port)
    for name in ("livenessProbe", "readinessProbe"):
        shell, flag, script = container[name]["exec"]["command"]  # type: ignore[index]
        script = script.replace("redis-cli", f"redis-cli -p {port}")
        good = {**os.environ, "REDISCLI_AUTH": PASSWORD}
        bad = {**os.environ, "REDISCLI_AUTH": "wrong"}
        assert _probe([shell, flag, script], good) == 0, name
        assert _probe([shell, flag, script], bad) != 0, name
