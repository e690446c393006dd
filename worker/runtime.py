"""A worker process's state and the Celery signals that keep it: built by `init`, none at import.

`worker.cli` calls `init` in the worker's main process before the pool forks. It records the
settings and role, makes the warm-shutdown flag (shared memory the pool's processes inherit) and
connects every signal receiver the worker needs: its own (fresh clients per pool process, the
shutdown flag, the lease renewer, the reconciler) and those `worker.cli` hands in from
`worker.delivery` and `worker.metrics`. Importing a worker module therefore changes nothing;
only a started worker listens to Celery.

The Redis and bucket clients, and the job `Context` with its cache of loaded models, are made on
first use in each process and made again after a fork (`worker_process_init`): a socket shared
across a fork would mix two processes' replies.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing.sharedctypes
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from celery.signals import (
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from celery.utils.dispatch import Signal

from common.errors import ConfigError
from common.jobs.context import Context
from common.settings import Settings
from common.state.base import SharedRecords
from common.state.open import shared_records
from common.store.open import make_store
from worker.leases import LeaseRenewer
from worker.reconcile import Reconciler

log = logging.getLogger(__name__)

#: A signal and the function to connect to it.
Receiver = tuple[Signal, Callable[..., None]]


@dataclass
class Runtime:
    """What a worker process needs; the clients and the context are per process."""

    settings: Settings
    role: str
    records: SharedRecords | None = None
    context: Context | None = None
    #: Told (chars, seconds) after each chunk's sampling (the metrics' `sampled`).
    on_sampled: Callable[[int, float], None] | None = None


_runtime: Runtime | None = None
#: Set by the main process on a warm shutdown, read by the pool processes between steps: shared
#: memory made before the pool forks, so it needs no signal in the children and no Redis call.
_stop_flag: Any = None
_renewer: LeaseRenewer | None = None
_reconciler: Reconciler | None = None


def init(
    settings: Settings,
    role: str,
    others: Sequence[Receiver] = (),
    on_sampled: Callable[[int, float], None] | None = None,
) -> Runtime:
    """Set up this worker (main process, before the pool starts) and connect its receivers and
    `others` (the delivery policy's and the metrics', which read this module's state: they are
    handed in by `worker.cli`, so this module imports neither).

    Connecting again replaces a receiver rather than adding a second (each has a
    ``dispatch_uid``), so calling `init` twice is harmless.
    """
    global _runtime, _stop_flag
    limit_malloc_arenas()
    _stop_flag = multiprocessing.sharedctypes.RawValue(ctypes.c_bool, False)
    _runtime = Runtime(settings=settings, role=role, on_sampled=on_sampled)
    for signal, receiver in (*receivers(), *others):
        signal.connect(receiver, weak=False, dispatch_uid=dispatch_uid(receiver))
    return _runtime


#: glibc's malloc arenas per process (``mallopt(M_ARENA_MAX)``); see `limit_malloc_arenas`.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # from glibc's malloc.h


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas in this process and the pool processes it forks; False where
    the C library is not glibc (nothing changed).

    glibc gives each new thread its own arena, up to eight per core, and an arena keeps the pages
    its freed blocks leave scattered. A pool process is single-threaded but for short-lived
    threads (finalize reads the batch's tunes with 8, boto3 uploads with its own), so every
    finalize lands its garbage in more arenas, and the worker's resident memory steps up until
    each arena has grown to its own high-water mark: a cpu worker rendering and finalizing
    200-tune batches grew 334 → 346 MB (+3.6 %) from its first batch to its seventh with the
    default, 320 → 327 MB (+2.2 %) with 2 arenas; both level off after about 1,000 renders
    (`make chaos`'s memory test measures the same over 5,000). Called before the pool forks, so the
    children inherit the cap; the threads still run, they share two arenas. glibc's own
    ``MALLOC_ARENA_MAX``, when set, wins (nothing changed; `bench/worker_memory.py` sets it to
    compare).
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False


def dispatch_uid(receiver: Callable[..., None]) -> str:
    return f"tunebatch:{receiver.__module__}.{receiver.__qualname__}"


def receivers() -> list[Receiver]:
    """This module's receivers: clients per pool process, the shutdown flag, the leases and the
    reconciler."""
    return [
        (worker_process_init, _process_init),
        (worker_shutting_down, _on_shutting_down),
        (worker_ready, _start_threads),
        (worker_shutdown, _stop_threads),
    ]


def current() -> Runtime:
    """This process's runtime, its clients made on first use."""
    if _runtime is None:
        raise ConfigError(
            "the worker runtime is not set up: start workers with `worker gpu` or `worker cpu` "
            "(worker.cli calls worker.runtime.init before the pool starts)"
        )
    if _runtime.context is None:
        s = _runtime.settings
        if s.broker_url is None:
            raise ConfigError("TUNEBATCH_BROKER_URL is not set: a worker needs Redis")
        _runtime.records = shared_records(s.broker_url)
        _runtime.context = Context(
            settings=s,
            store=make_store(s),
            records=_runtime.records,
            on_sampled=_runtime.on_sampled,
        )
    return _runtime


def context() -> Context:
    ctx = current().context
    assert ctx is not None  # made by current()
    return ctx


def records() -> SharedRecords:
    rec = current().records
    assert rec is not None  # made by current()
    return rec


def stopping() -> bool:
    """The warm-shutdown flag (passed to generate_chunk and train as ``should_stop``)."""
    return bool(_stop_flag is not None and _stop_flag.value)


def _process_init(**_: Any) -> None:
    """A new pool process: fresh Redis and bucket clients; the GPU role logs its device."""
    if _runtime is not None:
        _runtime.records = None
        _runtime.context = None
    if current().role == "gpu":
        _log_device()


def _log_device() -> None:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if gpus:
        log.info("process %d: TensorFlow uses GPU %s", os.getpid(), ", ".join(g.name for g in gpus))
    else:
        log.info(
            "process %d: TensorFlow sees no GPU; training and generating on the CPU", os.getpid()
        )


def _on_shutting_down(how: str = "", **_: Any) -> None:
    """A warm shutdown lets running jobs stop at their next step boundary (a cold one kills)."""
    if how == "Warm" and _stop_flag is not None:
        _stop_flag.value = True


def _start_threads(**_: Any) -> None:
    """In the main process, once the worker consumes: renew the leases of the jobs it holds, and
    send again the jobs of open batches the broker lost (`worker.reconcile`)."""
    global _renewer, _reconciler
    if _runtime is None:
        return
    settings = _runtime.settings
    if settings.broker_url and _renewer is None:
        _renewer = LeaseRenewer(settings.broker_url, settings.visibility_timeout_s)
        _renewer.start()
        log.info("renewing job leases every %.0f s", _renewer.interval_s)
    if settings.broker_url and _reconciler is None:
        _reconciler = Reconciler(settings)
        _reconciler.start()
        log.info("reconciling open batches every %.0f s", _reconciler.interval_s)


def _stop_threads(**_: Any) -> None:
    for thread in (_renewer, _reconciler):
        if thread is not None:
            thread.stop()
