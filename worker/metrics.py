"""Prometheus metrics of a worker: what its jobs did, scraped from ``:<metrics_port>/metrics``.

Celery's prefork pool runs the jobs in child processes, so the metrics use prometheus_client's
multiprocess mode: every process writes its samples to memory-mapped files in one directory
(``PROMETHEUS_MULTIPROC_DIR``), and the HTTP server in the main process adds them up when
scraped. `prepare` sets that directory up in the main process *before* prometheus_client is
imported and before the pool forks (the library picks its storage once, at import); the
metrics themselves are created lazily, in whichever process first records one.

The metrics are fed from Celery's task signals (connected by `worker.runtime.init`) and from a
few calls in `worker.tasks` and `worker.delivery`, so the work in `common` knows nothing of them:

* ``tunebatch_tunes_generated_total``, ``tunebatch_tunes_rendered_total``,
  ``tunebatch_tunes_failed_total{reason}``, ``tunebatch_tunes_cancelled_total``;
* ``tunebatch_generated_chars_total`` and ``tunebatch_generation_seconds_total`` (their rate
  ratio is chars/s) and ``tunebatch_generation_chars_per_second`` (the last chunk's);
* ``tunebatch_render_stage_seconds{stage}`` (histogram: abc2midi, timidity, abcm2ps, ...);
* ``tunebatch_job_attempts_total{task}`` (every delivery) and
  ``tunebatch_jobs_dead_lettered_total{task}``;
* ``tunebatch_training_epochs{run}``, ``..._epochs_done{run}``, ``..._step{run}``,
  ``..._loss{run}``;
* ``tunebatch_queue_length{queue}`` and ``tunebatch_dead_letter_length``, read from Redis at
  scrape time by the main process.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery.signals import task_postrun, task_prerun, worker_process_shutdown
from celery.utils.dispatch import Signal

from common.formats import TOOLS
from common.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram
    from prometheus_client.core import Metric

log = logging.getLogger(__name__)

#: The variable prometheus_client reads (at import) to choose multiprocess storage.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Render stage histogram buckets, in seconds: abc2midi takes milliseconds, a long WAV seconds.
STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Known tools, as they start a render error message (common.render.pipeline), for the failure
#: reason: every tool of the formats table.
_TOOLS = tuple(tool.name for tool in TOOLS)


def prepare(settings: Settings) -> Path | None:
    """In the worker's main process, before the pool starts: an empty multiprocess directory,
    named in the environment that the pool's processes inherit. None when metrics are off."""
    if settings.metrics_port is None:
        return None
    directory = settings.metrics_dir or Path(tempfile.gettempdir()) / "tunebatch-metrics"
    # Samples of a previous run in the same directory would be added to this run's.
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def serve(settings: Settings, queues: tuple[str, ...]) -> None:
    """Start the /metrics HTTP server (a daemon thread of the main process)."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    assert settings.metrics_port is not None
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    if settings.broker_url:
        registry.register(_QueueCollector(settings.broker_url, queues))
    start_http_server(settings.metrics_port, registry=registry)
    log.info("metrics on :%d/metrics", settings.metrics_port)


def enabled() -> bool:
    return MULTIPROC_ENV in os.environ


class _Metrics:
    """The metrics, created once per process (after `prepare` set the storage)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.generated: Counter = Counter(
            "tunebatch_tunes_generated", "Tunes generated and handed to rendering."
        )
        self.rendered: Counter = Counter(
            "tunebatch_tunes_rendered", "Tunes rendered to every format of their batch."
        )
        self.failed: Counter = Counter(
            "tunebatch_tunes_failed",
            "Tunes that ended failed, by reason (the tool that rejected them, a limit, "
            "gave_up after repeated worker loss, ...).",
            ["reason"],
        )
        self.cancelled: Counter = Counter("tunebatch_tunes_cancelled", "Tunes cancelled.")
        self.chars: Counter = Counter(
            "tunebatch_generated_chars", "Characters sampled by the generator."
        )
        self.sampling_seconds: Counter = Counter(
            "tunebatch_generation_seconds", "Seconds spent sampling (inside compiled steps)."
        )
        self.chars_per_s: Gauge = Gauge(
            "tunebatch_generation_chars_per_second",
            "Characters per second of the last chunk this worker generated.",
            multiprocess_mode="mostrecent",
        )
        self.stage_seconds: Histogram = Histogram(
            "tunebatch_render_stage_seconds",
            "Wall seconds of one render stage (abc2midi, timidity, abcm2ps, encoders, ...).",
            ["stage"],
            buckets=STAGE_BUCKETS,
        )
        self.attempts: Counter = Counter(
            "tunebatch_job_attempts",
            "Job deliveries started (a redelivery counts again).",
            ["task"],
        )
        self.dead_lettered: Counter = Counter(
            "tunebatch_jobs_dead_lettered", "Jobs given up on and put on the dead-letter list.",
            ["task"],
        )  # fmt: skip
        self.epochs: Gauge = Gauge(
            "tunebatch_training_epochs", "Epochs of a training run.", ["run"],
            multiprocess_mode="livemostrecent",
        )  # fmt: skip
        self.epochs_done: Gauge = Gauge(
            "tunebatch_training_epochs_done", "Epochs a training run has finished.", ["run"],
            multiprocess_mode="livemostrecent",
        )  # fmt: skip
        self.step: Gauge = Gauge(
            "tunebatch_training_step", "Step within the current epoch.", ["run"],
            multiprocess_mode="livemostrecent",
        )  # fmt: skip
        self.loss: Gauge = Gauge(
            "tunebatch_training_loss", "Latest training loss.", ["run"],
            multiprocess_mode="livemostrecent",
        )  # fmt: skip


@functools.cache
def _m() -> _Metrics:
    return _Metrics()


def failure_reason(error: str | None) -> str:
    """A short, bounded label for why a tune failed (the full text is in its record)."""
    text = (error or "").lower()
    if "gave up after" in text:
        return "gave_up"
    if "limit" in text or "timed out" in text or "timeout" in text:
        return "limit"
    for tool in _TOOLS:
        if re.search(rf"\b{re.escape(tool)}\b", text):
            return tool
    if "not found" in text or "no such" in text:
        return "missing_input"
    return "other"


# --- calls from the jobs ----------------------------------------------------------------------
def sampled(chars: int, seconds: float) -> None:
    """One chunk's sampling finished: `chars` characters in `seconds` of compiled steps."""
    if not enabled():
        return
    m = _m()
    m.chars.inc(chars)
    m.sampling_seconds.inc(seconds)
    if seconds > 0:
        m.chars_per_s.set(chars / seconds)


def dead_lettered(task: str) -> None:
    if enabled():
        _m().dead_lettered.labels(task=task).inc()


def training(
    run: str,
    *,
    epochs: int | None = None,
    epochs_done: int | None = None,
    step: int | None = None,
    loss: float | None = None,
) -> None:
    """Progress of a training run (what `worker.tasks._RunObserver` writes to its record)."""
    if not enabled():
        return
    m = _m()
    for gauge, value in ((m.epochs, epochs), (m.epochs_done, epochs_done), (m.step, step)):
        if value is not None:
            gauge.labels(run=run).set(value)
    if loss is not None:
        m.loss.labels(run=run).set(loss)


# --- Celery signals ----------------------------------------------------------------------------
def _on_prerun(sender: Any = None, **_: Any) -> None:
    if enabled() and sender is not None:
        _m().attempts.labels(task=str(sender.name)).inc()


def _on_postrun(sender: Any = None, args: Any = (), retval: Any = None, **_: Any) -> None:
    from common.dispatch.names import GENERATE, RENDER

    if not enabled() or sender is None:
        return
    try:
        if sender.name == GENERATE and isinstance(retval, int):
            _m().generated.inc(retval)
        elif sender.name == RENDER and len(args) >= 2:
            _record_render(str(args[0]), str(args[1]))
    except Exception:  # a metric must never fail the job it describes
        log.warning("could not record metrics for %s%s", sender.name, list(args), exc_info=True)


def _record_render(batch_id: str, tid: str) -> None:
    from common.schemas import TuneStatus
    from worker.runtime import records

    tune = records().get_tune(batch_id, tid)
    m = _m()
    if tune.status == TuneStatus.DONE:
        m.rendered.inc()
        for stage, seconds in (tune.render.seconds if tune.render else {}).items():
            m.stage_seconds.labels(stage=stage).observe(seconds)
    elif tune.status == TuneStatus.FAILED:
        m.failed.labels(reason=failure_reason(tune.error)).inc()
    elif tune.status == TuneStatus.CANCELLED:
        m.cancelled.inc()


def _on_process_exit(**_: Any) -> None:
    """A pool process ends: drop its live gauges (its counters stay in the totals)."""
    if enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def receivers() -> list[tuple[Signal, Callable[..., None]]]:
    """The signals that feed the metrics (connected by `worker.runtime.init`)."""
    return [
        (task_prerun, _on_prerun),
        (task_postrun, _on_postrun),
        (worker_process_shutdown, _on_process_exit),
    ]


# --- queue depth -------------------------------------------------------------------------------
class _QueueCollector:
    """Queue lengths, read from Redis when scraped (one round trip; nothing when it is away)."""

    def __init__(self, broker_url: str, queues: tuple[str, ...]) -> None:
        import redis

        self.queues = queues
        self.redis = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        from common.state.keys import DEAD_LETTER

        pipe = self.redis.pipeline(transaction=False)
        for queue in self.queues:
            pipe.llen(queue)
        pipe.llen(DEAD_LETTER)
        try:
            *lengths, dead = pipe.execute()
        except Exception as exc:  # the scrape still returns the job metrics
            log.warning("queue lengths unavailable: %s", exc)
            return
        family = GaugeMetricFamily(
            "tunebatch_queue_length",
            "Jobs waiting in a queue (Redis list length).",
            labels=["queue"],
        )
        for queue, length in zip(self.queues, lengths, strict=True):
            family.add_metric([queue], float(length))
        yield family
        yield GaugeMetricFamily(
            "tunebatch_dead_letter_length", "Entries on the dead-letter list.", value=float(dead)
        )
