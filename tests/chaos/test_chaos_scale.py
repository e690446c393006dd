"""Load at scale: many producers at once, and a CPU worker's memory over a long run of renders.

Both run on the chaos cluster (real redis-server, S3 server, worker processes) without faults:
what they look for is what only volume shows, such as batches crossing each other when several
producers submit at once, or a render worker that keeps a little of every job until it is killed
for memory. Size: ``TUNEBATCH_CHAOS_SCALE=ci`` (default) or ``full`` (`make chaos`).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from common.dispatch.config import make_app
from common.dispatch.names import CPU_QUEUE, RENDER
from common.jobs.generate import GATE_REFUSAL
from common.schemas import TuneStatus
from producer.client import Client
from tests.chaos import driver
from tests.chaos.faults import children, rss_kib
from tests.worker.cluster import Cluster, WorkerProcess

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ProducerLoad:
    producers: int
    batches_each: int
    drain_timeout_s: float


PRODUCER_LOADS = {
    "ci": ProducerLoad(producers=4, batches_each=3, drain_timeout_s=90.0),
    "full": ProducerLoad(producers=10, batches_each=10, drain_timeout_s=900.0),
}


@dataclass(frozen=True)
class RenderLoad:
    renders: int
    batch_size: int
    drain_timeout_s: float


RENDER_LOADS = {
    "ci": RenderLoad(renders=250, batch_size=25, drain_timeout_s=100.0),
    "full": RenderLoad(renders=5000, batch_size=250, drain_timeout_s=2400.0),
}

#: The pool settings (as `celery inspect stats` names them) under which Celery replaces pool
#: processes by itself; unset ("N/A" / None) in `worker.celery_app`.
RECYCLING = ("max-tasks-per-child", "max-memory-per-child")

#: Seconds without any tune of the watched batches becoming final that count as stuck.
STALL_S = 60.0
#: How much slower than on an idle machine a load may drain before the run counts as failed.
SLOW_FACTOR = 8


def tunes_in(batch_no: int) -> int:
    """3, 4 or 5 tunes: batches of different sizes show a tune counted in the wrong batch."""
    return 3 + batch_no % 3


def submit_with_cli(c: Cluster, model_id: str, batch_no: int) -> tuple[str, int, float]:
    """One `producer submit-batch --json` process, as a script or a cron job runs it; returns the
    batch id and tune count it printed, and the seconds the process took."""
    started = time.monotonic()
    argv = [
        sys.executable, "-m", "producer.cli", "submit-batch", "--json",
        f"--count={tunes_in(batch_no)}", f"--model={model_id}", f"--seed={batch_no}",
        "--temperature=0.3", "--max-chars=300", "--meter=6/8", "--key=D", "--any",
        "--max-tries=1", "--formats=abc,mid",
    ]  # fmt: skip
    out = subprocess.run(
        argv, env=c.env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"submit-batch #{batch_no} exited {out.returncode}: {out.stderr[-800:]}")
    printed = json.loads(out.stdout)
    return str(printed["batch_id"]), int(printed["count"]), time.monotonic() - started


def wait_finished(
    c: Cluster,
    batch_ids: list[str],
    timeout_s: float,
    on_poll: Callable[[int], None] = lambda _final: None,
) -> None:
    """Until every batch has its manifest; `on_poll` gets the number of final tunes so far.

    Fails when no tune became final for `STALL_S` (the property: a loaded system may be slow,
    never stuck), or after `SLOW_FACTOR` × `timeout_s` as a hard cap, naming the batches still
    open and the queues, so a stuck run says why instead of just timing out. `timeout_s` is what
    the load takes on an idle machine; the same suite also runs beside other work (CI machines
    are shared), where a fixed deadline fails a healthy run.
    """
    client = Client(c.settings)
    open_ids = set(batch_ids)
    final_of: dict[str, int] = dict.fromkeys(batch_ids, 0)
    deadline = time.monotonic() + SLOW_FACTOR * timeout_s
    last_total, progressed_at = -1, time.monotonic()
    while open_ids:
        for batch_id in sorted(open_ids):
            p = client.progress(batch_id)
            final_of[batch_id] = p.final
            if p.finished:
                open_ids.discard(batch_id)
        total = sum(final_of.values())
        on_poll(total)
        now = time.monotonic()
        if total != last_total:
            last_total, progressed_at = total, now
        if open_ids and (now > deadline or now - progressed_at > STALL_S):
            r = c.records.r
            stuck = {b: client.progress(b).counts for b in sorted(open_ids)[:5]}
            raise TimeoutError(
                f"{len(open_ids)} of {len(batch_ids)} batches not finished "
                f"({'no progress for ' + str(STALL_S) + ' s' if now <= deadline else 'timeout'}"
                f"): {stuck}; queues gpu {r.llen('gpu')} cpu {r.llen('cpu')}, unacked "
                f"{r.hlen('unacked')}"
            )
        if open_ids:
            time.sleep(0.5)


def test_concurrent_producers_all_batches_complete(chaos_cluster: Cluster, model_id: str) -> None:
    """N producer processes submitting at once must not lose, merge or cross batches.

    Each producer runs `producer submit-batch` M times back to back, N producers at once: the CLI
    submits one batch per process, so this is N scripts racing on Redis (batch records, counters,
    the gpu queue), each batch through the real CLI with the cluster's environment.
    """
    c = chaos_cluster
    size = driver.scale()
    load = PRODUCER_LOADS[size.name]
    start = threading.Barrier(load.producers)

    def producer(p: int) -> list[tuple[str, int, float]]:
        start.wait()
        return [
            submit_with_cli(c, model_id, p * load.batches_each + i)
            for i in range(load.batches_each)
        ]

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=load.producers) as pool:
        submitted = [b for batches in pool.map(producer, range(load.producers)) for b in batches]
    submit_s = time.monotonic() - t0
    batch_ids = [b for b, _, _ in submitted]
    call_s = [s for _, _, s in submitted]
    expected_batches = load.producers * load.batches_each
    assert len(submitted) == expected_batches
    assert len(set(batch_ids)) == expected_batches, f"batch ids repeat: {sorted(batch_ids)}"
    counts = {b: n for b, n, _ in submitted}
    assert sum(counts.values()) == sum(tunes_in(n) for n in range(expected_batches))

    wait_finished(c, batch_ids, load.drain_timeout_s)
    drain_s = time.monotonic() - t0 - submit_s

    problems: dict[str, list[str]] = {}
    done = failed = lost = duplicates = orphans = 0
    for batch_id in batch_ids:
        figures = driver.Figures(size.name, c.redis.appendfsync, counts[batch_id])
        found = driver.audit(c, batch_id, figures)
        if c.records.get_batch(batch_id).spec.count != counts[batch_id]:
            found.append(f"record says {c.records.get_batch(batch_id).spec.count} tunes, "
                         f"the CLI printed {counts[batch_id]}")  # fmt: skip
        if found:
            problems[batch_id] = found
        done, failed = done + figures.done, failed + figures.failed
        lost, duplicates = lost + figures.lost, duplicates + figures.duplicates
        orphans += figures.orphans
    figures_out = {
        "processes": load.producers,
        "batches": len(batch_ids),
        "tunes": sum(counts.values()),
        "done": done,
        "failed_abc2midi": failed,
        "lost": lost,
        "duplicates": duplicates,
        "orphans": orphans,
        "batches_with_problems": len(problems),
        "submit_s": round(submit_s, 1),
        "cli_call_median_s": round(statistics.median(call_s), 2),
        "drain_after_last_submit_s": round(drain_s, 1),
        "total_s": round(submit_s + drain_s, 1),
    }
    driver.report(f"concurrent-producers-{size.name}", figures_out)
    print(figures_out)
    assert not problems, json.dumps(problems, indent=1)[:4000]
    assert lost == duplicates == orphans == 0
    assert done + failed == sum(counts.values())


def worker_rss_kib(worker: WorkerProcess) -> tuple[int, tuple[int, ...]]:
    """RSS of the worker's main process plus its pool processes, and the pool's pids.

    Only direct children: the abc2midi/timidity processes a render starts are the pool
    processes' children, short-lived and limited by the render sandbox, not the worker's memory.
    """
    pool = tuple(children(worker.proc.pid))
    total = 0
    for pid in (worker.proc.pid, *pool):
        # A pool process may exit between the listing and the read.
        with contextlib.suppress(OSError, ValueError):
            total += rss_kib(pid)
    return total, pool


def rss_by_process_mb(worker: WorkerProcess) -> dict[str, float]:
    """RSS of the main process and of each pool process (MB), to say where growth went."""
    out: dict[str, float] = {}
    for role, pid in (("main", worker.proc.pid), *(("pool", p) for p in children(worker.proc.pid))):
        with contextlib.suppress(OSError, ValueError):
            out[f"{role} {pid}"] = round(rss_kib(pid) / 1024, 1)
    return out


def idle_rss_kib(worker: WorkerProcess, samples: int = 5) -> int:
    """The median of a few samples once the worker is idle: what it keeps between jobs."""
    time.sleep(1.0)  # the last job's ack and the finalize job's tail
    values = []
    for _ in range(samples):
        values.append(worker_rss_kib(worker)[0])
        time.sleep(0.2)
    return int(statistics.median(values))


def renders_by(app: Any, worker: WorkerProcess) -> tuple[int, dict[str, Any]]:
    """Render jobs the worker has run since it started, and its pool's settings, from Celery."""
    stats = app.control.inspect(destination=[worker.name], timeout=5.0).stats() or {}
    mine = stats.get(worker.name)
    assert mine is not None, f"no stats from {worker.name}:\n{worker.log_tail()}"
    return int(mine.get("total", {}).get(RENDER, 0)), dict(mine.get("pool", {}))


def test_cpu_worker_memory_stays_flat_over_many_renders(
    chaos_cluster: Cluster, model_id: str
) -> None:
    """A render worker that keeps a little of every job grows until the kernel or Kubernetes
    kills it mid-render; over many renders its resident memory must stay flat (< 10 % growth).

    Measured on a dedicated cpu worker started here: the cluster's other cpu workers stop
    consuming the cpu queue for the run (Celery's cancel_consumer, restored afterwards), so every
    render goes through the measured worker (checked against its own task count). Its memory is
    the main process plus its pool processes, sampled from /proc. Baseline and final are both
    taken idle (after a warm-up of the first 10 % of renders, and after the last), so they compare
    what the worker keeps between jobs, not what one render holds at the moment of sampling; the
    peak during the run is reported beside them. Celery recycles pool processes only when
    `worker_max_tasks_per_child` or `worker_max_memory_per_child` is set, and `worker.celery_app`
    sets neither (the pool's settings are read back from the worker and reported). So the pool
    processes measured at the end must be the ones measured at the baseline: a replaced process
    would hide a leak, and without recycling it means one died, so the test fails saying so. Were
    recycling configured, the sum would still be measured and compared, recycling being then part
    of how the worker keeps its memory flat. Tunes are resampled until abc2midi accepts them (up
    to 4 tries), so most renders run the whole chain (abc2midi, timidity, uploads), not only the
    cheap rejection of an invalid tune.
    """
    c = chaos_cluster
    size = driver.scale()
    load = RENDER_LOADS[size.name]
    warmup = load.renders // 10
    app = make_app(c.settings)
    worker = c.start_worker("cpu", concurrency=2)
    others = [
        w.name for w in c.workers if w.role == "cpu" and w is not worker and w.proc.poll() is None
    ]
    try:
        c.wait_ready(worker)
        replies = app.control.cancel_consumer(CPU_QUEUE, destination=others, reply=True) or []
        assert {n for r in replies for n in r} == set(others), f"cancel_consumer: {replies}"
        client = Client(c.settings)

        def submit(tunes: int, seed: int) -> list[str]:
            ids = []
            for k, start in enumerate(range(0, tunes, load.batch_size)):
                count = min(load.batch_size, tunes - start)
                spec = driver.batch_spec(
                    model_id, count, seed=seed + k, max_chars=300, valid_only=True, max_tries=4
                )
                ids.append(client.submit_batch(spec).id)
            return ids

        t0 = time.monotonic()
        rendered_before, _ = renders_by(app, worker)
        warmup_ids = submit(warmup, seed=1000)
        wait_finished(c, warmup_ids, load.drain_timeout_s)
        baseline = idle_rss_kib(worker)
        _, pool_at_baseline = worker_rss_kib(worker)
        baseline_by_process = rss_by_process_mb(worker)

        peak = baseline
        trend: list[tuple[int, int]] = []  # (final tunes, RSS KiB) during the run

        def sample(final: int) -> None:
            nonlocal peak
            rss, _ = worker_rss_kib(worker)
            peak = max(peak, rss)
            trend.append((final, rss))

        main_ids = submit(load.renders - warmup, seed=2000)
        wait_finished(c, main_ids, load.drain_timeout_s, on_poll=sample)
        final = idle_rss_kib(worker)
        _, pool_at_end = worker_rss_kib(worker)
        final_by_process = rss_by_process_mb(worker)
        elapsed = time.monotonic() - t0
        rendered_after, pool_conf = renders_by(app, worker)
    finally:
        restored = app.control.add_consumer(CPU_QUEUE, destination=others, reply=True) or []
        worker.stop()
        c.workers.remove(worker)
    # The cluster is shared with the rest of the chaos suite: its cpu workers must consume again.
    assert {n for r in restored for n in r} == set(others), f"add_consumer: {restored}"

    rendered = rendered_after - rendered_before
    # A tune the gate refused on every try ends failed with no ABC: nothing renders it.
    refused = sum(
        1
        for b in warmup_ids + main_ids
        for t in c.records.tunes(b)
        if t.status == TuneStatus.FAILED and (t.error or "").startswith(GATE_REFUSAL)
    )
    queued = load.renders - refused
    recycles = any(pool_conf.get(k) not in (None, 0, "N/A") for k in RECYCLING)
    done = sum(c.records.counts(b).get("done", 0) for b in main_ids)
    growth = (final - baseline) / baseline
    late = [rss for n, rss in trend if n >= 0.9 * (load.renders - warmup)]
    figures = {
        "renders": rendered,
        "refused_by_gate": refused,
        "rendered_to_wav_after_warmup": done,
        "baseline_mb": round(baseline / 1024, 1),
        "final_mb": round(final / 1024, 1),
        "peak_mb": round(peak / 1024, 1),
        "busy_last_10pct_median_mb": round(statistics.median(late) / 1024, 1) if late else None,
        "growth_pct": round(100 * growth, 1),
        "baseline_by_process_mb": baseline_by_process,
        "final_by_process_mb": final_by_process,
        "pool_processes": len(pool_at_end),
        "pool_replaced": pool_at_end != pool_at_baseline,
        "pool_recycling": {k: pool_conf.get(k) for k in RECYCLING},
        "seconds": round(elapsed, 1),
    }
    driver.report(f"cpu-rss-{size.name}", figures)
    print(figures)
    # At least: a render left in the queue by an earlier test of the session may come on top.
    assert rendered >= queued, (
        f"the measured worker ran {rendered} of {queued} renders "
        f"({load.renders} tunes, {refused} refused by the gate)"
    )
    assert done > 0, "no tune was rendered to wav: the run measured abc2midi rejections only"
    assert recycles or pool_at_end == pool_at_baseline, (
        f"pool processes replaced during the run ({pool_at_baseline} → {pool_at_end}) with no "
        f"recycling configured: one died, and the sum no longer measures the processes that ran "
        f"the renders\n{worker.log_tail()}"
    )
    assert growth < 0.10, f"cpu worker RSS grew {100 * growth:.1f} % over {rendered} renders"
