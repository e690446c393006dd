"""`make compose-test`: the Compose stack driven end to end, with the same audit as tests/chaos.

1. ``docker/compose.yaml`` (+ ``docker/compose.local.yaml`` where the registry images are not
   there) comes up in a project of its own, with two cpu-worker containers and the gpu queue on
   the CPU (profile ``cpu-fallback``); fresh passwords, free host ports. Compose v2 (``docker
   compose``) is used where the plugin is installed, else v1 (``docker-compose``):
   `compose_command`.
2. The tiny corpus is put in the bucket; the tiny preset is trained for 3 epochs through the
   producer container (``producer train``) on the gpu-queue worker.
3. A schedule firing every minute (``producer schedule add --cron "* * * * *"``, a 2-tune
   corpus) is added; once it has fired twice, ``producer submit-batch --count 200`` runs in the
   producer container.
4. Once a tenth of the batch is final, Redis is killed with SIGKILL (``docker kill``) at the
   next second :50 and started again 20 s later, so the outage spans a slot of the schedule;
   when half the batch is final (before, during or after the outage), one cpu-worker container
   is ``docker kill``ed.
5. Once the batch is finalized it is fetched through the producer container (``producer
   fetch``) and audited by `tests.chaos.driver.audit`: every tune in exactly one final state,
   the bucket equal to the manifest, nothing orphaned; the fetched files match the manifest.
   The schedule is audited against the clock: every minute from its first slot to its removal
   has exactly one firing or a recorded miss, one batch per firing, each batch clean too.
6. Beat's health: it is frozen (SIGSTOP) until its healthcheck says unhealthy, then resumed.
7. Beat's, a worker's and Flower's /metrics are scraped; the stack is torn down (volumes too).

Not part of `make test` (it needs a Docker engine and built images). Prints the audit as
Markdown tables and exits non-zero on any violation.

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
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from common.abc.corpus import import_corpus
from common.abc.notation import split_tunes
from common.dispatch import schedule_store
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
SCHEDULE = "every-minute"
#: How long Redis stays down after its SIGKILL, and the second of the minute it is killed at
#: (so the outage spans the schedule's next slot, at :00).
REDIS_DOWN_S = 20
REDIS_KILL_AT_S = 50
#: Compose v2 first (the Docker CLI plugin), then v1 (Debian bookworm's docker-compose 1.29).
COMPOSE_COMMANDS = (["docker", "compose"], ["docker-compose"])


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


def compose_command(candidates: tuple[list[str], ...] = COMPOSE_COMMANDS) -> list[str]:
    """The first Compose that answers ``version``: ``docker compose`` (v2) or ``docker-compose``
    (v1). Every command this runner uses means the same in both."""
    for argv in candidates:
        try:
            result = subprocess.run(
                [*argv, "version"], capture_output=True, timeout=30, check=False
            )
        except (FileNotFoundError, PermissionError):
            continue
        if result.returncode == 0:
            return argv
    raise RuntimeError(
        "neither `docker compose` (Compose v2) nor `docker-compose` (v1) runs here; on Debian "
        "bookworm `apt-get install docker-compose` gives v1, Docker's own apt repository gives "
        "v2 (package docker-compose-plugin); docs/deploy.md has both"
    )


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
            # A job of the killed worker goes back to its queue a minute after its last lease
            # renewal, not the default five: the drain is timed, not the wait.
            "TUNEBATCH_VISIBILITY_TIMEOUT_S": "60",
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
        self.tool = compose_command()
        self.compose = [*self.tool, "--env-file", str(self.env_file), "-p", PROJECT, *files]
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
        "tunebatch_tunes_",
        "tunebatch_job_attempts_total",
        "tunebatch_queue_length",
        "tunebatch_render_stage_seconds_count",
        "tunebatch_render_stage_seconds_sum",
        "tunebatch_generat",
        "tunebatch_training_",
        "tunebatch_jobs_dead",
        "tunebatch_dead_",
    )
    return "\n".join(line for line in text.splitlines() if line.startswith(keep))


def scrape_in(container: str, prefix: str | None = None) -> str:
    """A worker's or beat's /metrics, read inside its container (the port is not published)."""
    code = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9100/metrics').read().decode())"
    text = sh(["docker", "exec", container, "python", "-c", code])
    if prefix:
        return "\n".join(line for line in text.splitlines() if line.startswith(prefix))
    return metrics_excerpt(text)


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


def health_of(container: str) -> str:
    return sh(
        [
            "docker",
            "inspect",
            "-f",
            "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
            container,
        ]
    ).strip()


def restart_count(container: str) -> int:
    return int(sh(["docker", "inspect", "-f", "{{.RestartCount}}", container]).strip() or 0)


def redis_pings(stack: Stack) -> bool:
    from common.errors import TunebatchError
    from common.state.redis import RedisRecords

    url = stack.settings().broker_url
    assert url is not None
    try:
        RedisRecords.from_url(url, retries=1, timeout_s=2.0).ping()
    except TunebatchError:  # BrokerError while it is down or loading its AOF
        return False
    return True


def kill_redis(stack: Stack, figures: Figures, out: dict[str, Any]) -> None:
    """SIGKILL Redis (``docker kill``), keep it down `REDIS_DOWN_S`, start it again; the
    restart policy is lifted meanwhile so that Docker does not start it at once."""
    (redis_id,) = stack.containers("redis")
    sh(["docker", "update", "--restart", "no", redis_id])
    killed = time.time()
    sh(["docker", "kill", redis_id])
    time.sleep(max(0.0, killed + REDIS_DOWN_S - time.time()))
    sh(["docker", "start", redis_id])
    sh(["docker", "update", "--restart", "unless-stopped", redis_id])
    wait_for("Redis answering again", lambda: redis_pings(stack), 120, 0.5)
    back = time.time()
    figures.redis_restarts = 1
    out["redis_killed_at"], out["redis_back_at"] = killed, back
    out["redis_down_s"] = round(back - killed, 1)
    log(
        f"Redis SIGKILLed at {time.strftime('%H:%M:%S', time.gmtime(killed))} UTC, "
        f"answering again {out['redis_down_s']} s later"
    )


def kill_worker(stack: Stack, figures: Figures, at: int) -> None:
    victim = stack.containers("cpu-worker")[0]
    log(f"docker kill cpu-worker {victim[:12]} at {at} tunes final")
    sh(["docker", "kill", victim])
    figures.whole_worker_kills = figures.worker_kills = 1
    time.sleep(3)
    state = sh(["docker", "inspect", "-f", "{{.State.Status}}", victim]).strip()
    figures.events.append(
        f"killed cpu-worker {victim[:12]} at {at} tunes final; its restart policy left it {state}"
    )
    if state != "running":
        sh(["docker", "start", victim])
        figures.events.append("started it again with docker start")


def drive(stack: Stack, tmp: Path, count: int, figures: Figures, out: dict[str, Any]) -> list[str]:
    started = time.monotonic()
    log(f"compose up ({' '.join(stack.tool)})")
    stack.dc("up", "-d", "--scale", f"cpu-worker={stack.cpu_workers}", timeout=900)
    wait_for("workers answering a ping", lambda: workers_ready(stack), 300)
    out["up_s"] = round(time.monotonic() - started, 1)
    settings = stack.settings()
    store = make_store(settings)
    import_corpus(store, str(TINY_CORPUS), name="tiny")
    two = tmp / "two.abc"
    two.write_text("\n\n".join(list(split_tunes(TINY_CORPUS.read_text()))[:2]) + "\n")
    import_corpus(store, str(two), name="two")

    log("training the tiny preset through the producer container")
    t0 = time.monotonic()
    train = ["train", "--corpus", "tiny", "--preset", "tiny", "--epochs", "3", "--seed", "1"]
    trained = json.loads(stack.producer(*train, "--wait", "--json"))
    model_id = trained["model_id"]
    out["train_s"] = round(time.monotonic() - t0, 1)

    log(f"schedule {SCHEDULE}: every minute, a batch primed by a 2-tune corpus")
    add = [
        "schedule", "add", SCHEDULE, "--cron", "* * * * *", "--corpus", "two", "--model",
        model_id, "--temperature", "0.3", "--max-chars", "300", "--any", "--formats", "abc,mid",
        "--seed", "3", "--json",
    ]  # fmt: skip
    first_slot = datetime.fromisoformat(json.loads(stack.producer(*add))["next_run_at"])
    app = schedule_app(stack)
    beat_id = stack.containers("beat")[0]
    beat_restarts = restart_count(beat_id)

    def fired() -> int:
        return len(schedule_store.firings(app, SCHEDULE)[0])

    # Beat fires twice before the batch starts, so the table has minutes before the outage.
    wait_for("two firings", lambda: fired() >= 2, 200, 1.0)
    log(f"submit-batch --count {count} through the producer container")
    t0 = time.monotonic()
    submit = [
        "submit-batch", "--count", str(count), "--model", model_id, "--temperature", "0.3",
        "--max-chars", "400", "--primer", PRIMER, "--any", "--formats", "abc,mid,wav",
        "--seed", "7", "--no-wait", "--json",
    ]  # fmt: skip
    batch_id = json.loads(stack.producer(*submit))["batch_id"]
    rec = batch_records(stack)

    def final_count() -> int:
        counts = rec.counts(batch_id)
        return sum(int(counts.get(s, 0)) for s in ("done", "failed", "cancelled"))

    # Redis goes at the first second :50 after a tenth of the batch is final (the outage spans
    # the :00 slot); the worker at half the batch, whichever comes first: the two run apart.
    def redis_outage() -> None:
        wait_for("a tenth of the batch", lambda: final_count() >= count // 10, 900, 0.5)
        time.sleep((REDIS_KILL_AT_S - time.time() % 60) % 60)
        out["redis_killed_with_final"] = final_count()
        kill_redis(stack, figures, out)
        figures.events.append(
            f"Redis SIGKILLed with {out['redis_killed_with_final']} of {count} "
            f"tunes final, down {out['redis_down_s']} s"
        )

    outage = threading.Thread(target=redis_outage, name="redis-outage")
    outage.start()
    wait_for("half the batch final", lambda: final_count() >= count // 2, 1200, 0.5)
    out["worker_killed_with_final"] = final_count()
    kill_worker(stack, figures, out["worker_killed_with_final"])
    t_kill = time.monotonic()
    outage.join()
    if "redis_back_at" not in out:
        raise RuntimeError("the Redis outage did not happen (see the log above)")
    wait_for(
        f"batch {batch_id} finalized",
        lambda: rec.get_batch(batch_id).manifest_key is not None,
        1200,
        2.0,
    )
    figures.drain_s = round(time.monotonic() - t_kill, 1)
    out["batch_s"] = round(time.monotonic() - t0, 1)

    # Two firings after Redis came back, then the schedule stops.
    def fired_after_outage() -> int:
        firings = schedule_store.firings(app, SCHEDULE)[0]
        return sum(f.slot.timestamp() > out["redis_back_at"] for f in firings)

    wait_for("two firings after the outage", lambda: fired_after_outage() >= 2, 200, 2.0)
    # What beat recorded, and what `schedule list` says, before the removal deletes them.
    out["schedule_list"] = stack.producer("schedule", "list")
    recorded = schedule_store.firings(app, SCHEDULE)
    stack.producer("schedule", "remove", SCHEDULE)
    schedule_removed = time.time()
    out["beat_restarts"] = restart_count(beat_id) - beat_restarts

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
    manifest = json.loads(store.get_bytes(f"batches/{batch_id}/manifest.json"))
    problems += check_fetched(fetched / batch_id, manifest)
    problems += audit_schedule(
        cluster, recorded, rec, batch_id, out, (first_slot.timestamp(), schedule_removed)
    )

    problems += beat_health_demo(stack, beat_id, out)
    out["beat_metrics"] = scrape_in(beat_id, "tunebatch_beat_")
    out["worker_metrics"] = scrape_in(stack.containers("cpu-worker")[-1])
    out["gpu_worker_metrics"] = scrape_in(stack.containers("gpu-worker-cpu")[0])

    def health() -> dict[str, str]:
        found = {}
        for service in ("redis", "minio", "cpu-worker", "gpu-worker-cpu", "beat", "flower"):
            for container in stack.containers(service):
                found[f"{service} {container[:12]}"] = health_of(container)
        return found

    # Healthchecks run every 15 to 60 s: the restarted worker and Redis need a round or two.
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


def schedule_app(stack: Stack) -> Any:
    from common.dispatch.config import make_app

    return make_app(stack.settings())


def audit_schedule(
    cluster: Cluster,
    recorded: tuple[list[schedule_store.Firing], list[datetime]],
    rec: Any,
    main_batch: str,
    out: dict[str, Any],
    window: tuple[float, float],
) -> list[str]:
    """The schedule against the clock: each minute slot from the first after the schedule was
    added to its removal has exactly one firing or a recorded miss; one batch per firing, each
    drained and clean (tests.chaos.driver.audit)."""
    problems: list[str] = []
    fired, missed = recorded
    first, removed = window
    # Slots from the first (as `schedule add` reported it) to the last whole minute at least
    # 5 s before the removal (a slot right at the removal may or may not have fired).
    slots = list(range(round(first), int(removed - 5) // 60 * 60 + 1, 60))
    by_slot: dict[int, list[Any]] = {}
    for f in fired:
        by_slot.setdefault(round(f.slot.timestamp()), []).append(f)
    missed_at = {round(m.timestamp()) for m in missed}
    killed, back = out["redis_killed_at"], out["redis_back_at"]
    rows = []
    for slot in slots:
        firings = by_slot.get(slot, [])
        phase = "before" if slot < killed else ("after" if slot > back else "down")
        rows.append(
            {
                "minute": time.strftime("%H:%M", time.gmtime(slot)),
                "phase": phase,
                "firings": len(firings),
                "missed": "yes" if slot in missed_at else "",
                "late_s": ", ".join(f"{f.late_s:.1f}" for f in firings),
            }
        )
        if len(firings) > 1:
            problems.append(f"slot {rows[-1]['minute']} fired {len(firings)} times")
        if not firings and slot not in missed_at:
            problems.append(f"slot {rows[-1]['minute']}: no firing and no recorded miss")
    stray = sorted(s for s in by_slot if s < first or s > removed)
    if stray:  # a firing for a slot outside the window: the slot arithmetic is wrong
        problems.append(f"firings for slots outside the schedule's life: {stray}")
    out["schedule_rows"] = rows

    # One batch per firing (a redelivered firing must not submit twice), each drained.
    def schedule_batches() -> list[Any]:
        return [b for b in rec.list_batches() if b.id != main_batch and b.spec.primed_by]

    with contextlib.suppress(TimeoutError):
        wait_for(
            "every scheduled batch finalized",
            lambda: (
                all(b.manifest_key for b in schedule_batches())
                and len(schedule_batches()) >= len(fired)
            ),
            600,
            3.0,
        )
    batches = schedule_batches()
    if len(batches) != len(fired):
        problems.append(f"{len(fired)} firings made {len(batches)} batches")
    totals = {"lost": 0, "duplicates": 0, "orphans": 0, "done": 0, "failed": 0}
    for b in batches:
        figures = Figures(scale="schedule", appendfsync="everysec", tunes=b.spec.count)
        problems += [f"scheduled batch {b.id}: {p}" for p in audit(cluster, b.id, figures)]
        for key in totals:
            totals[key] += int(getattr(figures, key))
    late = [f.late_s for f in fired]
    out["schedule"] = {
        "minutes": len(slots),
        "firings": sum(len(by_slot.get(s, [])) for s in slots),
        "missed": len(missed_at & set(slots)),
        "unaccounted": sum(1 for s in slots if not by_slot.get(s) and s not in missed_at),
        "duplicate_firings": sum(max(0, len(by_slot.get(s, [])) - 1) for s in slots),
        "batches": len(batches),
        "max_late_s": round(max(late), 1) if late else None,
        **{f"batch_{k}": v for k, v in totals.items()},
    }
    return problems


def beat_health_demo(stack: Stack, beat_id: str, out: dict[str, Any]) -> list[str]:
    """Freeze beat (SIGSTOP, so it stops ticking but its container runs the healthcheck) until
    Docker calls it unhealthy, then let it go on until it is healthy again."""
    problems: list[str] = []
    wait_for("beat healthy", lambda: health_of(beat_id) == "healthy", 120, 2)
    log("beat: SIGSTOP, waiting for its healthcheck to say unhealthy")
    sh(["docker", "kill", "--signal", "SIGSTOP", beat_id])
    t0 = time.monotonic()
    try:
        wait_for("beat unhealthy", lambda: health_of(beat_id) == "unhealthy", 300, 2)
        out["beat_unhealthy_after_s"] = round(time.monotonic() - t0, 1)
        last = json.loads(sh(["docker", "inspect", "-f", "{{json .State.Health.Log}}", beat_id]))
        out["beat_health_output"] = last[-1]["Output"].strip()
    except TimeoutError as exc:
        problems.append(f"beat frozen but never unhealthy: {exc}")
    finally:
        sh(["docker", "kill", "--signal", "SIGCONT", beat_id])
    t1 = time.monotonic()
    try:
        wait_for("beat healthy again", lambda: health_of(beat_id) == "healthy", 300, 2)
        out["beat_healthy_again_after_s"] = round(time.monotonic() - t1, 1)
    except TimeoutError as exc:
        problems.append(f"beat resumed but not healthy again: {exc}")
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


_CHAOS_TITLES = dict(COLUMNS)
BATCH_COLUMNS = (
    ("tunes", "tunes submitted"), ("redis", "Redis SIGKILL (docker kill)"),
    ("worker", "cpu-worker SIGKILL"),
    *((key, _CHAOS_TITLES[key])
      for key in ("done", "failed", "lost", "duplicates", "orphans", "dead_lettered")),
    ("drain_s", "drain after the worker kill (s)"),
)  # fmt: skip
SCHEDULE_COLUMNS = (
    ("minutes", "minutes scheduled"),
    ("firings", "firings"),
    ("missed", "missed (recorded)"),
    ("unaccounted", "slots lost"),
    ("duplicate_firings", "slots fired twice"),
    ("max_late_s", "latest firing (s after its slot)"),
    ("batches", "batches from firings"),
    ("batch_lost", "their tunes lost"),
    ("batch_duplicates", "duplicates"),
    ("batch_orphans", "orphans"),
    ("beat_restarts", "beat restarts"),
)
MINUTE_COLUMNS = (
    ("minute", "slot (UTC)"),
    ("phase", "Redis"),
    ("firings", "firings"),
    ("missed", "missed"),
    ("late_s", "sent (s after the slot)"),
)


def report(figures: Figures, out: dict[str, Any]) -> list[str]:
    """The audit as Markdown: the batch, the schedule, the schedule minute by minute."""
    batch = {
        **figures.__dict__,
        "redis": f"{out.get('redis_down_s', '?')} s down, at "
        f"{out.get('redis_killed_with_final', '?')}/{figures.tunes} final",
        "worker": f"at {out.get('worker_killed_with_final', '?')}/{figures.tunes} final",
    }
    schedule = {**out.get("schedule", {}), "beat_restarts": out.get("beat_restarts", "?")}
    return [
        *_table([batch], BATCH_COLUMNS),
        "",
        *_table([schedule], SCHEDULE_COLUMNS),
        "",
        *_table(out.get("schedule_rows", []), MINUTE_COLUMNS),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args(argv)
    started = time.monotonic()
    figures = Figures(scale="compose", appendfsync="everysec", tunes=args.count)
    out: dict[str, Any] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="compose-test-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)
        with stack_up(tmp, 2, args.keep) as stack:
            try:
                problems = drive(stack, tmp, args.count, figures, out)
            finally:
                out["total_s"] = round(time.monotonic() - started, 1)
                print("\n".join(report(figures, out)))
    print(f"\nfailure reasons: {figures.failure_reasons}\nevents: {figures.events}")
    print(
        json.dumps(
            {k: v for k, v in out.items() if not k.endswith("metrics") and k != "schedule_rows"},
            indent=2,
        )
    )
    for key in ("beat_metrics", "worker_metrics", "gpu_worker_metrics", "flower_metrics"):
        print(f"\n--- {key}\n{out.get(key, '')}")
    if problems:
        print("\nAUDIT FAILED:\n" + "\n".join(problems))
        return 1
    print(
        f"\naudit clean: {figures.done} done, {figures.failed} failed, 0 lost, 0 orphans; "
        f"{out['schedule']['firings']} firings in {out['schedule']['minutes']} minutes"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
