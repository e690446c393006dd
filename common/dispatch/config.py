"""The Celery configuration, built from `Settings`: one for workers, beat and the producer.

Why these settings (Celery's advice for long jobs, and what a killed worker must not cause):

* JSON only (``accept_content=["json"]``): a message is ids and numbers; pickle is banned.
* ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged when its job ends,
  so a worker killed mid-job (OOM, preemption) does not lose it; Celery requeues it at once when a
  pool process dies, and Redis redelivers it ``visibility_timeout`` after its worker stopped
  renewing its lease when the whole worker died (`worker.leases`). Every job is idempotent, so a
  second delivery is safe; the attempt counter in `worker.tasks` keeps a job that kills its
  worker every time from coming back forever.
* ``worker_prefetch_multiplier=1`` and ``-Ofair``: a worker holds no more jobs than it runs, so a
  second worker can take the next chunk instead of it waiting behind a long one.
* A short ``visibility_timeout`` (default 5 minutes) swept every tenth of it: a worker renews the
  lease of every job it holds (`worker.leases`), so a running job is never handed out twice
  however long it runs, and an abandoned one is back in the queue within minutes.
* Separate queues per resource (`common.dispatch.names`), routed by task name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery

from common.dispatch.names import (
    CPU_QUEUE,
    FINALIZE,
    GENERATE,
    QUEUES,
    RENDER,
    RUN_SCHEDULE,
    SUBMIT_SCHEDULED,
    TRAIN,
)
from common.errors import ConfigError
from common.settings import Settings


@dataclass(frozen=True)
class Limits:
    """Soft limit: the job gets an exception it can clean up after. Hard: its process is killed."""

    soft_s: int
    hard_s: int


#: Fixed limits of the short jobs. A chunk of 256 tunes takes a minute or two on a GPU and about
#: ten on two CPU cores; a render is seconds (each tool has its own limit in
#: `common.render.pipeline`).
FIXED_LIMITS: dict[str, Limits] = {
    GENERATE: Limits(soft_s=45 * 60, hard_s=50 * 60),
    RENDER: Limits(soft_s=5 * 60, hard_s=6 * 60),
    FINALIZE: Limits(soft_s=10 * 60, hard_s=11 * 60),
    RUN_SCHEDULE: Limits(soft_s=10 * 60, hard_s=11 * 60),
    SUBMIT_SCHEDULED: Limits(soft_s=10 * 60, hard_s=11 * 60),
}

#: Celery beat with celery-redbeat: schedules live in Redis (``redbeat:<name>`` and the sorted set
#: ``redbeat::schedule``), so they survive restarts and the producer edits them without
#: restarting beat. A beat holds the lock ``redbeat::lock`` (what the compose healthcheck and
#: the k8s probes look at) and renews it every tick; it sleeps at most
#: ``beat_max_loop_interval`` between ticks (``Settings.beat_max_loop_interval_s``, 30 s), and
#: the lock lives ``redbeat_lock_timeout`` (``Settings.beat_lock_timeout_s``, 150 s, checked to
#: be at least 3 loop intervals by `worker.beat.Scheduler`). A second beat waits for the lock, so
#: a schedule fires once; the lock of a beat that died without releasing it expires, and a
#: waiting or restarted beat takes over.


def time_limits(settings: Settings) -> dict[str, Limits]:
    """Every task's limits; training's come from settings (a run may take a day on a CPU)."""
    train_hard = settings.train_time_limit_s
    return {**FIXED_LIMITS, TRAIN: Limits(soft_s=train_hard - 120, hard_s=train_hard)}


def transport_options(settings: Settings) -> dict[str, Any]:
    """kombu's Redis options: the lease length, and a sweep for lapsed leases every tenth of it
    (``throttle`` 1: kombu's default sweeps only every tenth call of a 10 s timer).

    The sweep runs under kombu's ``unacked_mutex``, a Redis lock that by default lives 300 s. A
    sweeper that never releases it (Redis SIGKILLed mid-sweep, the lock already on disk; or the
    sweeping worker killed) stops every worker's sweep until it expires, and with it every
    lapsed lease: the chaos suite saw two renders sit unacked, unrun, for minutes after a Redis
    restart. The lock only keeps sweepers from doing the same work twice (each restore is a
    WATCHed transaction, so two at once still restore a message once), so it lives one sweep
    interval: an orphaned lock delays the next sweep by one interval, not five minutes.
    """
    interval = max(1, settings.visibility_timeout_s // 10)
    return {
        "visibility_timeout": settings.visibility_timeout_s,
        "unacked_restore_interval": interval,
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": interval,
    }


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings for `settings` (a plain dict, so tests can look at it)."""
    if not settings.broker_url:
        raise ConfigError(
            "TUNEBATCH_BROKER_URL is not set: workers and the distributed producer need Redis, "
            "e.g. TUNEBATCH_BROKER_URL=redis://127.0.0.1:6379/0"
        )
    limits = time_limits(settings)
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.broker_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_routes": {name: {"queue": queue} for name, queue in QUEUES.items()},
        "task_default_queue": CPU_QUEUE,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # A new pool process runs `worker_process_init` (the gpu role imports TensorFlow: 4-10 s
        # on a busy machine). Under Celery's default 4 s every replacement pool process is killed
        # in a loop after one dies, and a killed GPU job never runs again.
        "worker_proc_alive_timeout": 120.0,
        "broker_transport_options": transport_options(settings),
        "broker_connection_retry_on_startup": True,
        # Progress lives in the job records; results would only be thousands of unread keys.
        "task_ignore_result": True,
        "result_expires": 24 * 3600,
        "task_annotations": {
            name: {
                "soft_time_limit": limit.soft_s,
                "time_limit": limit.hard_s,
            }
            for name, limit in limits.items()
        },
        "worker_hijack_root_logger": False,
        "enable_utc": True,
        "timezone": "UTC",
        "beat_scheduler": "worker.beat:Scheduler",
        # Celery's name; a misspelt one is silently ignored (beat then sleeps its default 300 s).
        "beat_max_loop_interval": settings.beat_max_loop_interval_s,
        "redbeat_redis_url": settings.broker_url,
        # Explicit (else redbeat falls back to broker_transport_options, with a warning).
        "redbeat_redis_options": {"socket_connect_timeout": 5, "socket_timeout": 30},
        "redbeat_lock_timeout": settings.beat_lock_timeout_s,
    }


def configure(settings: Settings, celery_app: Celery) -> Celery:
    """Apply `settings` to the app; call before the worker starts or the first `send_task`."""
    celery_app.conf.update(celery_config(settings))
    return celery_app


def make_app(settings: Settings) -> Celery:
    """A separate, configured app: a client that sends to the Redis of `settings`, whatever any
    other app in the process was configured with (tests and tools talk to several)."""
    return configure(settings, Celery("tunebatch", set_as_current=False))
