"""The worker runtime (`worker.runtime`): importing the worker connects nothing; `init` connects
every receiver once, and the warm-shutdown flag is set by a warm shutdown only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json
from celery import signals

def count():
    names = ("worker_process_init", "worker_shutting_down", "worker_ready", "worker_shutdown",
             "task_failure", "task_prerun", "task_postrun", "worker_process_shutdown")
    return {n: len(getattr(signals, n).receivers) for n in names}

import worker.tasks, tests.worker.poison_tasks  # every worker module with tasks
from common.errors import ConfigError
from common.settings import Settings
from worker import runtime

out = {"imported": count(), "stopping": runtime.stopping()}
try:
    runtime.current()
except ConfigError as exc:
    out["before_init"] = str(exc)
settings = Settings(broker_url="redis://127.0.0.1:9/0")
from worker.cli import init_runtime
init_runtime(settings, "cpu")
init_runtime(settings, "cpu")
out["init_twice"] = count()
signals.worker_shutting_down.send(sender="w", sig="SIGQUIT", how="Cold", exitcode=1)
out["after_cold"] = runtime.stopping()
signals.worker_shutting_down.send(sender="w", sig="SIGTERM", how="Warm", exitcode=0)
out["after_warm"] = runtime.stopping()
print(json.dumps(out))
"""


def test_import_connects_nothing_and_init_connects_each_receiver_once() -> None:
    import json

    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(out["imported"].values()) == {0}, out["imported"]
    assert set(out["init_twice"].values()) == {1}, out["init_twice"]
    assert "worker gpu" in out["before_init"]
    assert out["stopping"] is False
    assert out["after_cold"] is False and out["after_warm"] is True


ARENAS = """
import ctypes, os, sys, tempfile, threading
from worker import runtime

if sys.argv[1] == "limited":
    assert runtime.limit_malloc_arenas()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
start, done = threading.Barrier(9), threading.Barrier(9)

def work():
    start.wait()  # all alive at once: each takes an arena of its own unless capped
    keep = [bytearray(256) for _ in range(2000)]
    done.wait()
    del keep

threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
start.wait()
done.wait()
with tempfile.NamedTemporaryFile(suffix=".xml") as out:
    fp = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(fp))
    libc.fclose(ctypes.c_void_p(fp))
    print(open(out.name).read().count("<heap nr="))
for t in threads:
    t.join()
"""


def test_a_worker_caps_malloc_arenas_for_its_pool() -> None:
    """Eight threads alive at once take eight arenas by glibc's default; after
    `limit_malloc_arenas` (called by `init` before the pool forks) they share two."""

    def arenas(mode: str) -> int:
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
        proc = subprocess.run(
            [sys.executable, "-c", ARENAS, mode], cwd=ROOT, capture_output=True, text=True,
            timeout=120, env=env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.strip().splitlines()[-1])

    assert arenas("default") > 2
    assert arenas("limited") <= 2
