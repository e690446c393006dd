"""`make compose-test`: the Compose stack driven end to end, with the same audit as tests/chaos.

1. ``docker/compose.yaml`` (+ ``docker/compose.local.yaml`` where the registry images are not
   there) comes up in a project of its own, with two cpu-worker containers and the gpu queue on
   the CPU (profile ``cpu-fallback``); fresh passwords, free host ports.
2. The tiny corpus is put in the bucket; the tiny preset is trained for 3 epochs through the
   producer container (``producer train``) on the gpu-queue worker.
3. ``producer submit-batch --count 200`` runs in the producer container.
4. Mid-batch, one cpu-worker container is ``docker kill``ed and Redis is restarted.
5. Once the batch is finalized it is fetched through the producer container (``producer
   fetch``) and audited by `tests.chaos.driver.audit`: every tune in exactly one final state,
   the bucket equal to the manifest, nothing orphaned; the fetched files match the manifest.
6. A worker's /metrics and Flower's /metrics are scraped; the stack is torn down (volumes too).

Not part of `make test` (it needs a Docker engine and built images). Prints the audit as a
Markdown table and exits non-zero on any violation.

Usage: python -m tests.compose.run [--count N] [--keep]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from common.abc.corpus import import_corpus
from common.settings import Settings
from common.store.open import make_store
from tests import servers as srv
from tests.chaos.driver import COLUMNS, Figures, _table, audit
from tests.model_fixtures import TINY_CORPUS
from tests.worker.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
PROJECT = "tunebatch-compose-test"
BUCKET = "tunebatch"
PRIMER = "X:1\nM:6/8\nL:1/8\nK:D\n"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def sh(argv: list[str], *, timeout: float = 600, check: bool = True) -> str:
    result = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-3000:]}"
            f"\n{result.stderr[-3000:]}"
        )
    return result.stdout


def image_exists(name: str) -> bool:
    result = subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=False)
    return result.returncode == 0


class Stack:
    """One Compose project: its files, env file and host ports."""

    def __init__(self, tmp: Path, cpu_workers: int) -> None:
        self.password = secrets.token_hex(12)
        self.s3_secret = secrets.token_hex(12)
        self.flower_auth = f"admin:{secrets.token_hex(6)}"
        self.ports = {
            "REDIS_HOST_PORT": srv.free_port(),
            "MINIO_HOST_PORT": srv.free_port(),
            "MINIO_CONSOLE_HOST_PORT": srv.free_port(),
            "FLOWER_HOST_PORT": srv.free_port(),
        }
        self.env_file = tmp / "compose.env"
        values = {
            "COMPOSE_PROJECT_NAME": PROJECT,
            "COMPOSE_PROFILES": "cpu-fallback",
            "REDIS_PASSWORD": self.password,
            "MINIO_ROOT_USER": "tunebatch",
            "MINIO_ROOT_PASSWORD": self.s3_secret,
            "FLOWER_BASIC_AUTH": self.flower_auth,
            "TUNEBATCH_S3_BUCKET": BUCKET,
            **{k: str(v) for k, v in self.ports.items()},
        }
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        files = ["-f", str(DOCKER / "compose.yaml")]
        if not image_exists("redis:7.4.11-alpine"):  # no registry here: docker/compose.local.yaml
            files += ["-f", str(DOCKER / "compose.local.yaml")]
        if image_exists("tunebatch/gpu-worker:dev"):
            # The gpu queue's worker runs the gpu-worker image (TensorFlow falls back to the CPU),
            # so that image is driven too, not only the cpu-worker image that `cpu-fallback` uses.
            gpu_image = tmp / "compose.gpu-image.yaml"
            gpu_image.write_text(
                "services:\n  gpu-worker-cpu:\n    image: tunebatch/gpu-worker:dev\n"
            )
            files += ["-f", str(gpu_image)]
        self.compose = [
            "docker-compose", "--env-file", str(self.env_file), "-p", PROJECT, *files,
        ]  # fmt: skip
        self.cpu_workers = cpu_workers

    @property
    def settings_env(self) -> dict[str, str]:
        """The TUNEBATCH_* environment of a producer on this host (through the published ports)."""
        return {
            "TUNEBATCH_BROKER_URL": f"redis://:{self.password}@127.0.0.1:"
            f"{self.ports['REDIS_HOST_PORT']}/0",
            "TUNEBATCH_S3_BUCKET": BUCKET,
            "TUNEBATCH_S3_ENDPOINT_URL": f"http://127.0.0.1:{self.ports['MINIO_HOST_PORT']}",
            "TUNEBATCH_S3_ACCESS_KEY_ID": "tunebatch",
            "TUNEBATCH_S3_SECRET_ACCESS_KEY": self.s3_secret,
        }

    def settings(self) -> Settings:
        return Settings.model_validate(
            {k.removeprefix("TUNEBATCH_").lower(): v for k, v in self.settings_env.items()}
        )

    def dc(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        return sh([*self.compose, *args], timeout=timeout, check=check)

    def producer(self, *args: str, timeout: float = 600, volume: str | None = None) -> str:
        extra = ["-v", volume] if volume else []
        return self.dc("run", "--rm", "-T", *extra, "producer", *args, timeout=timeout)

    def containers(self, service: str) -> list[str]:
        return self.dc("ps", "-q", service).split()


def wait_for(what: str, check: Any, timeout_s: float, every_s: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the service is still starting
            last = exc
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not after {timeout_s:.0f} s (last error: {last})")


def workers_ready(stack: Stack) -> bool:
    from common.dispatch.config import make_app

    app = make_app(stack.settings())
    replies = app.control.ping(timeout=2.0) or []
    names = [name for reply in replies for name in reply]
    gpu = [n for n in names if n.startswith("gpu@")]
    cpu = [n for n in names if n.startswith("cpu@")]
    return len(gpu) >= 1 and len(cpu) >= stack.cpu_workers


def http_get(url: str, auth: str | None = None) -> str:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.read().decode())


def metrics_excerpt(text: str) -> str:
    keep = (
        "tunebatch_tunes_", "tunebatch_job_attempts_total", "tunebatch_queue_length",
        "tunebatch_render_stage_seconds_count", "tunebatch_render_stage_seconds_sum",
        "tunebatch_generat", "tunebatch_training_", "tunebatch_jobs_dead", "tunebatch_dead_",
    )  # fmt: skip
    return "\n".join(line for line in text.splitlines() if line.startswith(keep))


def scrape_in(container: str) -> str:
    """A worker's /metrics, read inside its container (the port is not published)."""
    code = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9100/metrics').read().decode())"
    return metrics_excerpt(sh(["docker", "exec", container, "python", "-c", code]))


def check_fetched(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """The files `producer fetch` wrote are the manifest's, byte for byte."""
    problems = []
    for entry in manifest["tunes"]:
        for f in entry["files"]:
            path = folder / Path(f["key"]).name
            if not path.is_file():
                problems.append(f"fetch: {path.name} missing")
            elif hashlib.sha256(path.read_bytes()).hexdigest() != f["sha256"]:
                problems.append(f"fetch: {path.name} differs from the manifest")
    return problems


def drive(stack: Stack, tmp: Path, count: int, figures: Figures, out: dict[str, Any]) -> list[str]:
    started = time.monotonic()
    log("compose up")
    stack.dc("up", "-d", "--scale", f"cpu-worker={stack.cpu_workers}", timeout=900)
    wait_for("workers answering a ping", lambda: workers_ready(stack), 300)
    out["up_s"] = round(time.monotonic() - started, 1)
    settings = stack.settings()
    import_corpus(make_store(settings), str(TINY_CORPUS), name="tiny")

    log("training the tiny preset through the producer container")
    t0 = time.monotonic()
    train = ["train", "--corpus", "tiny", "--preset", "tiny", "--epochs", "3", "--seed", "1"]
    trained = json.loads(stack.producer(*train, "--wait", "--json"))
    model_id = trained["model_id"]
    out["train_s"] = round(time.monotonic() - t0, 1)

    log(f"submit-batch --count {count} through the producer container")
    t0 = time.monotonic()
    submit = [
        "submit-batch", "--count", str(count), "--model", model_id, "--temperature", "0.3",
        "--max-chars", "400", "--primer", PRIMER, "--any", "--formats", "abc,mid,wav",
        "--seed", "7", "--no-wait", "--json",
    ]  # fmt: skip
    submitted = json.loads(stack.producer(*submit))
    batch_id = submitted["batch_id"]
    rec = batch_records(stack)

    def final_count() -> int:
        counts = rec.counts(batch_id)
        return sum(int(counts.get(s, 0)) for s in ("done", "failed", "cancelled"))

    wait_for("a tenth of the batch rendered", lambda: final_count() >= count // 10, 900, 0.5)
    victim = stack.containers("cpu-worker")[0]
    log(f"docker kill cpu-worker {victim[:12]} at {final_count()} tunes final")
    sh(["docker", "kill", victim])
    figures.whole_worker_kills = figures.worker_kills = 1
    time.sleep(3)
    at = final_count()
    log(f"restarting Redis at {at} tunes final")
    stack.dc("restart", "redis", timeout=120)
    figures.redis_restarts = 1
    state = sh(["docker", "inspect", "-f", "{{.State.Status}}", victim]).strip()
    figures.events.append(f"killed cpu-worker {victim[:12]}; restart policy left it {state}")
    figures.events.append(f"Redis restarted with {at} of {count} tunes final")
    if state != "running":
        sh(["docker", "start", victim])
        figures.events.append("started it again with docker start")

    t_kill = time.monotonic()
    wait_for(
        f"batch {batch_id} finalized",
        lambda: rec.get_batch(batch_id).manifest_key is not None,
        1200,
        2.0,
    )
    figures.drain_s = round(time.monotonic() - t_kill, 1)
    out["batch_s"] = round(time.monotonic() - t0, 1)

    log("fetching the batch through the producer container")
    fetched = tmp / "fetched"
    fetched.mkdir(mode=0o777)
    fetched.chmod(0o777)  # the producer runs as uid 10001
    stack.producer("fetch", batch_id, "--to", "/out", volume=f"{fetched}:/out")

    cluster = Cluster(
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("TUNEBATCH_")},
            **stack.settings_env,
            "PYTHONPATH": str(ROOT),
        },
        settings=settings,
        endpoint_url=stack.settings_env["TUNEBATCH_S3_ENDPOINT_URL"],
        bucket=BUCKET,
        redis=cast(Any, None),  # audit reads Redis through `settings`, never this handle
        log_dir=tmp,
    )
    problems = audit(cluster, batch_id, figures)
    manifest = json.loads(make_store(settings).get_bytes(f"batches/{batch_id}/manifest.json"))
    problems += check_fetched(fetched / batch_id, manifest)

    out["worker_metrics"] = scrape_in(stack.containers("cpu-worker")[-1])
    out["gpu_worker_metrics"] = scrape_in(stack.containers("gpu-worker-cpu")[0])

    def health() -> dict[str, str]:
        out = {}
        for service in ("redis", "minio", "cpu-worker", "gpu-worker-cpu", "beat", "flower"):
            for container in stack.containers(service):
                out[f"{service} {container[:12]}"] = sh(
                    ["docker", "inspect", "-f",
                     "{{if .State.Health}}{{.State.Health.Status}}{{end}}", container]
                ).strip()  # fmt: skip
        return out

    # Healthchecks run every 60 s: the restarted worker and Redis need a round to be healthy.
    with contextlib.suppress(TimeoutError):
        wait_for("every container healthy", lambda: set(health().values()) == {"healthy"}, 150, 5)
    statuses = health()
    problems += [
        f"{name} is {s or 'without health'}" for name, s in statuses.items() if s != "healthy"
    ]
    out["health"] = statuses
    flower = http_get(
        f"http://127.0.0.1:{stack.ports['FLOWER_HOST_PORT']}/metrics", stack.flower_auth
    )
    out["flower_metrics"] = "\n".join(
        line for line in flower.splitlines() if line.startswith("flower_events_total")
    )[:3000]
    out["batch_id"] = batch_id
    return problems


def batch_records(stack: Stack) -> Any:
    from common.state.redis import RedisRecords

    url = stack.settings().broker_url
    assert url is not None
    return RedisRecords.from_url(url)


@contextlib.contextmanager
def stack_up(tmp: Path, cpu_workers: int, keep: bool) -> Iterator[Stack]:
    stack = Stack(tmp, cpu_workers)
    try:
        yield stack
    finally:
        if keep:
            log(f"left running: {' '.join(stack.compose)}")
        else:
            with contextlib.suppress(Exception):
                (tmp / "compose-logs.txt").write_text(stack.dc("logs", "--no-color", check=False))
                print(sh(["tail", "-n", "40", str(tmp / "compose-logs.txt")]), file=sys.stderr)
            log("compose down -v")
            stack.dc("down", "-v", "--remove-orphans", timeout=300, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args(argv)
    started = time.monotonic()
    figures = Figures(scale="compose", appendfsync="everysec", tunes=args.count)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="compose-test-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)
        with stack_up(tmp, 2, args.keep) as stack:
            problems = drive(stack, tmp, args.count, figures, out)
    out["total_s"] = round(time.monotonic() - started, 1)
    print("\n".join(_table([{**figures.__dict__}], COLUMNS)))
    print(f"\nfailure reasons: {figures.failure_reasons}\nevents: {figures.events}")
    print(json.dumps({k: v for k, v in out.items() if not k.endswith("metrics")}, indent=2))
    for key in ("worker_metrics", "gpu_worker_metrics", "flower_metrics"):
        print(f"\n--- {key}\n{out.get(key, '')}")
    if problems:
        print("\nAUDIT FAILED:\n" + "\n".join(problems))
        return 1
    print(f"\naudit clean: {figures.done} done, {figures.failed} failed, 0 lost, 0 orphans")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
