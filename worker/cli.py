"""``worker gpu`` / ``worker cpu``: start a Celery worker for one role, configured from settings.

One command per role instead of a raw ``celery -A ... worker -Q ...`` line, so the queue, the pool,
``-Ofair`` and a unique node name cannot be got wrong, and a missing Redis or bucket is one line
at start instead of a retry loop. Settings come from the ``TUNEBATCH_*`` environment, as for the
producer; both must name the same Redis and bucket.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from common import cli_help
from common.errors import TransientError, TunebatchError
from common.lstm.tf_logs import quiet_startup
from common.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

    from common.store.base import ArtifactStore

log = logging.getLogger(__name__)

app = typer.Typer(
    name="worker",
    help="tunebatch workers: `worker gpu` trains and generates, `worker cpu` renders, "
    "`worker beat` fires the schedules.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
cli_help.install()

LogLevel = Annotated[
    str | None,
    typer.Option(help="DEBUG, INFO, WARNING or ERROR (default: TUNEBATCH_LOG_LEVEL, INFO)."),
]
Name = Annotated[
    str | None,
    typer.Option(help="Node name (default <role>-<pid>@<host>; must be unique per worker)."),
]
Include = Annotated[
    list[str] | None,
    typer.Option(help="Extra module with tasks to import (repeatable; e.g. test tasks)."),
]


def init_runtime(settings: Settings, role: str) -> None:
    """The worker's runtime with every receiver: the runtime's own, the delivery policy's and
    the metrics' (wired here so that none of the three modules imports another in a circle)."""
    from worker import delivery, metrics, runtime

    others = [*delivery.receivers(), *metrics.receivers()]
    runtime.init(settings, role, others, on_sampled=metrics.sampled)


def _fail(message: str, code: int) -> typer.Exit:
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


def _start(loglevel: str | None, *, bucket: bool) -> tuple[Settings, Celery]:
    """Logging, settings and the configured Celery app for a worker or beat, once the services
    it needs answer (`bucket`: the artifact store too); errors become one line and an exit code.
    The log level is `loglevel`, else the settings' `log_level`."""
    logging.basicConfig(
        level=(loglevel or "INFO").upper(),
        format="[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = Settings()
        from worker import logs

        level = (loglevel or settings.log_level).upper()
        logs.configure(level, settings.log_format)
        # TensorFlow's start-up lines only at DEBUG: at INFO they bury the worker's own banner.
        quiet_startup(show=level == "DEBUG")
        from worker import banner
        from worker.celery_app import app as celery_app
        from worker.celery_app import configure

        configure(settings)
        banner.install(celery_app)
        if bucket:  # a worker runs the render tools (beat does not): isolated, or it says why
            from common.render.sandbox import require

            log.info("render tools run in sandbox mode %s", require(settings))
        _check_services(settings, bucket=bucket)
    except TunebatchError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    except ValueError as exc:  # pydantic's ValidationError is one
        raise _fail(f"bad TUNEBATCH_ setting: {exc}", 2) from None
    return settings, celery_app


def _check_services(settings: Settings, *, bucket: bool) -> None:
    """Redis answers (and, with `bucket`, the bucket exists): one clear line beats a process
    retrying forever.

    A service that is only away for a moment (Redis restarting, the bucket's network blipping
    while a replacement worker starts) is waited for, up to ``startup_wait_s``; a wrong setting
    (a missing bucket, refused credentials) is a `PermanentError` and fails at once: a
    replacement worker started during an outage must not exit and leave its queue unserved.
    """
    deadline = time.monotonic() + settings.startup_wait_s
    delay = 1.0
    while True:
        try:
            store = _probe_services(settings, bucket=bucket)
            break
        except TransientError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            wait = min(delay, left)
            log.warning("%s; trying again in %.0f s (giving up in %.0f s)", exc, wait, left)
            time.sleep(wait)
            delay = min(delay * 2, 10.0)
    if store is not None and not settings.s3_bucket:
        log.warning(
            "TUNEBATCH_S3_BUCKET is not set: artifacts go to %s, which only workers on this "
            "machine share",
            store.description,
        )


def _probe_services(settings: Settings, *, bucket: bool) -> ArtifactStore | None:
    from common.state.open import shared_records
    from common.store.open import make_store

    assert settings.broker_url is not None
    shared_records(settings.broker_url, retries=1, timeout_s=3.0).ping()
    if not bucket:
        return None
    store = make_store(settings)
    next(iter(store.list("models/")), None)
    return store


def run_worker(
    role: str,
    concurrency: int,
    loglevel: str | None,
    name: str | None,
    include: list[str] | None,
    pool: str = "prefork",
) -> None:
    """Configure the app for `role` and run a Celery worker on that role's queue until stopped."""
    settings, celery_app = _start(loglevel, bucket=True)
    from worker import metrics

    # Before the pool forks: its processes inherit the samples directory (worker/metrics.py).
    if metrics.prepare(settings) is not None:
        metrics.serve(settings, (role,))
    import worker.tasks  # noqa: F401  # registers the tasks with the Celery app

    init_runtime(settings, role)  # before the pool forks: its processes inherit the receivers
    hostname = name or f"{role}-{os.getpid()}@{socket.gethostname()}"
    argv = [
        "worker",
        f"--queues={role}",
        f"--concurrency={concurrency}",
        f"--hostname={hostname}",
        f"--pool={pool}",
        "-Ofair",
        f"--loglevel={(loglevel or settings.log_level).upper()}",
        # No gossip/mingle: workers share nothing but the queues; they only slow the start.
        "--without-gossip",
        "--without-mingle",
    ]
    for module in include or []:
        argv.append(f"--include={module}")
    if settings.log_format == "json":
        argv.insert(0, "--quiet")  # Celery's start-up banner is text on stdout
    log.info("starting %s worker %s (concurrency %d)", role, hostname, concurrency)
    celery_app.worker_main(argv)


@app.command()
def gpu(
    concurrency: Annotated[
        int, typer.Option(min=1, help="Jobs at once; 1 per GPU (a chunk already fills it).")
    ] = 1,
    loglevel: LogLevel = None,
    name: Name = None,
    include: Include = None,
) -> None:
    """Train and generate (queue `gpu`); uses a GPU when TensorFlow sees one, else the CPU."""
    run_worker("gpu", concurrency, loglevel, name, include)


@app.command()
def cpu(
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Renders at once (default: the CPU count).")
    ] = None,
    loglevel: LogLevel = None,
    name: Name = None,
    include: Include = None,
) -> None:
    """Render tunes and write manifests (queue `cpu`)."""
    run_worker("cpu", concurrency or os.cpu_count() or 1, loglevel, name, include)


@app.command()
def beat(
    max_interval: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Longest sleep between ticks in seconds. Default 30, set by "
            "TUNEBATCH_BEAT_MAX_LOOP_INTERVAL_S\n\nBeat's Redis lock lives 150 s by default "
            "(TUNEBATCH_BEAT_LOCK_TIMEOUT_S) and must last at least 3 of these sleeps.",
        ),
    ] = None,
    loglevel: LogLevel = None,
) -> None:
    """Celery beat with redbeat: fires the schedules stored in Redis (`producer schedule`).

    The same as ``celery -A worker.celery_app beat``. Run one; a second waits for the first's
    Redis lock, so a schedule fires once either way.
    """
    settings, celery_app = _start(loglevel, bucket=False)
    from common.settings import check_beat_timing
    from worker.beat import SCHEDULER

    try:
        check_beat_timing(
            max_interval or settings.beat_max_loop_interval_s, settings.beat_lock_timeout_s
        )
    except TunebatchError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    level = (loglevel or settings.log_level).upper()
    argv = ["beat", "--scheduler", SCHEDULER, f"--loglevel={level}"]
    if max_interval is not None:
        argv.append(f"--max-interval={max_interval}")
    celery_app.start(argv)


@app.command("beat-health")
def beat_health() -> None:
    """Exit 0 if beat ticked within its loop interval (its heartbeat file), else 1 with why.

    The health check of beat in compose and k8s: a beat that is stuck, or has not reached Redis
    for longer than a loop interval, is unhealthy; one waiting for another beat's lock ticks
    (as a standby) and is healthy.
    """
    from worker.beat import check_health

    try:
        problem = check_health(Settings())
    except ValueError as exc:  # pydantic's ValidationError is one
        raise _fail(f"bad TUNEBATCH_ setting: {exc}", 2) from None
    if problem:
        raise _fail(problem, 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
