"""End-to-end throughput of distributed mode, next to the embedded runner, on this machine.

Starts its own redis-server and S3 server (tests/servers.py) and real workers with the documented
commands (``python -m worker.cli gpu`` once, ``python -m worker.cli cpu`` twice), imports the
tiny test corpus into the bucket, has the GPU worker train a model, and then prints:

* tunes per minute for a batch of ``--count`` (200) tunes, from ``submit-batch`` returning to the
  manifest being written, with how long generation and rendering took;
* the same batch (same model, parameters and seed) through the embedded runner in this process,
  as the baseline: the same job functions without broker, bucket or worker processes;
* the same for each audio level of ``--levels`` (`common.params.AudioLevel`; default ``hifi``,
  the settings before levels, then ``standard``, the default), one batch each after a warm-up
  batch, with each level's tunes per minute as a multiple of the first level's;
* how long ``producer submit-batch --count 1000`` takes to return: the command as a user runs it
  (a new Python process, imports included) and the submission itself inside an open client.

On a machine without a GPU every worker runs on the CPU; with 2 cores the GPU worker and the
renders compete for them, which is the situation the figures describe.

    python bench/pipeline.py                       # 200 tunes, 2 cpu workers
    python bench/pipeline.py --count 60 --skip-embedded
    python bench/pipeline.py --levels hifi,standard,preview --skip-embedded
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.render import cpu_model  # noqa: E402
from common.abc.corpus import import_corpus  # noqa: E402
from common.params import DEFAULT_AUDIO, AudioLevel  # noqa: E402
from common.schemas import BatchSpec, TrainSpec  # noqa: E402
from common.store.open import make_store  # noqa: E402
from producer.client import BatchProgress, Client  # noqa: E402
from tests.worker.cluster import Cluster, cluster  # noqa: E402

TINY_CORPUS = ROOT / "tests" / "data" / "tiny_corpus.abc"
PRIMER = "X:1\nM:6/8\nL:1/8\nK:D\n"


def batch_spec(
    model_id: str, count: int, chunk_size: int, audio: AudioLevel = DEFAULT_AUDIO
) -> BatchSpec:
    return BatchSpec(
        count=count,
        model_id=model_id,
        temperature=0.7,
        max_chars=600,
        primer=PRIMER,
        valid_only=True,
        max_tries=3,
        chunk_size=chunk_size,
        formats=("abc", "mid", "wav"),
        audio=audio,
    )


def group_cpu_s(pgid: int) -> float:
    """CPU seconds of the processes in a process group (a worker and its pool), with the
    children they reaped, from /proc (0 off Linux)."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # after "(comm)": state, ppid, pgrp, ...
            total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return total / tick


def run_distributed(
    c: Cluster, model_id: str, count: int, chunk_size: int, audio: AudioLevel = DEFAULT_AUDIO
) -> dict[str, float]:
    client = Client(c.settings)
    generated_at: list[float] = []

    def watch(p: BatchProgress) -> None:
        if not generated_at and p.generated + p.counts.get("cancelled", 0) >= count:
            generated_at.append(time.perf_counter())

    started = time.perf_counter()
    batch = client.submit_batch(batch_spec(model_id, count, chunk_size, audio))
    submitted = time.perf_counter()
    final = client.follow(batch.id, watch, timeout_s=1800)
    ended = time.perf_counter()
    return {
        "submit_s": submitted - started,
        "generated_s": (generated_at[0] if generated_at else ended) - started,
        "total_s": ended - started,
        "done": final.counts["done"],
        "failed": final.counts["failed"],
    }


def run_embedded(
    tmp: Path, c: Cluster, model_id: str, count: int, chunk_size: int
) -> dict[str, float]:
    """The same batch through `common.jobs.embedded`, reading the model from the same bucket."""
    from common.jobs.context import Context
    from common.jobs.embedded import run_batch
    from common.state.local import LocalRecords

    settings = c.settings.model_copy(update={"broker_url": None, "data_dir": tmp / "embedded"})
    ctx = Context(settings=settings, store=make_store(settings), records=LocalRecords(tmp / "rec"))
    stages: dict[str, float] = {}
    started = time.perf_counter()

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "render" and "generated_s" not in stages:
            stages["generated_s"] = time.perf_counter() - started

    manifest = run_batch(ctx, batch_spec(model_id, count, chunk_size), progress=progress)
    total = time.perf_counter() - started
    return {
        "submit_s": total,
        "generated_s": stages.get("generated_s", total),
        "total_s": total,
        "done": manifest.counts.get("done", 0),
        "failed": manifest.counts.get("failed", 0),
    }


def time_submit_1000(c: Cluster, model_id: str) -> tuple[float, float]:
    """(CLI wall seconds incl. Python start, in-client seconds); both batches are cancelled."""
    env = dict(c.env)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "producer.cli", "submit-batch", "--count", "1000",
         "--model", model_id, "--meter", "6/8", "--key", "D"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    cli_s = time.perf_counter() - started
    client = Client(c.settings)
    started = time.perf_counter()
    batch = client.submit_batch(batch_spec(model_id, 1000, c.settings.chunk_size))
    client_s = time.perf_counter() - started
    for batch_id in (proc.stdout.strip(), batch.id):
        client.cancel(batch_id)
    return cli_s, client_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="tunes in the measured batch")
    parser.add_argument("--chunk-size", type=int, default=50, help="tunes per generate job")
    parser.add_argument("--cpu-workers", type=int, default=2)
    parser.add_argument(
        "--cpu-concurrency", type=int, default=None, help="per cpu worker (default CPU count)"
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the tiny model")
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument(
        "--levels",
        default="hifi,standard",
        help="audio levels, one distributed batch each; the first is the baseline",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="rounds over the levels (medians are compared)"
    )
    args = parser.parse_args()
    levels = [AudioLevel(name.strip()) for name in args.levels.split(",") if name.strip()]

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp_name:
        tmp = Path(tmp_name)
        with cluster(tmp, chunk_size=str(args.chunk_size), max_attempts="3") as c:
            t0 = time.perf_counter()
            gpu = c.start_worker("gpu")
            cpu_args = () if args.cpu_concurrency is None else (args.cpu_concurrency,)
            cpus = [
                c.start_worker("cpu", concurrency=cpu_args[0] if cpu_args else os.cpu_count() or 1)
                for _ in range(args.cpu_workers)
            ]
            import_corpus(make_store(c.settings), str(TINY_CORPUS), name="tiny")
            c.wait_ready(gpu, *cpus)
            ready_s = time.perf_counter() - t0
            client = Client(c.settings)
            run = client.train(TrainSpec(corpus="tiny", preset="tiny", epochs=args.epochs))
            trained = client.follow_run(run.id, lambda _r: None, timeout_s=600)
            if trained.model_id is None:
                raise SystemExit(f"training failed: {trained.error}")
            model_id = trained.model_id

            # A warm-up batch: the gpu worker loads the model, every worker its imports and tools.
            run_distributed(c, model_id, max(20, args.chunk_size), args.chunk_size)
            runs: list[tuple[AudioLevel, dict[str, float]]] = []
            for _ in range(args.repeats):
                for level in levels:
                    before = {w.name: group_cpu_s(w.proc.pid) for w in (gpu, *cpus)}
                    r = run_distributed(c, model_id, args.count, args.chunk_size, level)
                    r["gpu_cpu_s"] = group_cpu_s(gpu.proc.pid) - before[gpu.name]
                    r["cpu_cpu_s"] = sum(group_cpu_s(w.proc.pid) - before[w.name] for w in cpus)
                    runs.append((level, r))
            dist = next((r for level, r in runs if level == DEFAULT_AUDIO), runs[0][1])
            embedded = (
                None
                if args.skip_embedded
                else run_embedded(tmp, c, model_id, args.count, args.chunk_size)
            )
            cli_s, client_s = time_submit_1000(c, model_id)

    per_cpu = args.cpu_concurrency or os.cpu_count() or 1
    print(f"machine: {cpu_model() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; no GPU unless the worker log says so")  # fmt: skip
    print(f"workers: 1 gpu-queue (concurrency 1), {args.cpu_workers} cpu-queue "
          f"(concurrency {per_cpu} each); ready in {ready_s:.1f} s")  # fmt: skip
    print(f"batch: {args.count} tunes, tiny model ({args.epochs} epochs), chunks of "
          f"{args.chunk_size}, formats abc,mid,wav, valid-only (≤3 tries), ≤600 chars")  # fmt: skip
    print()
    header = (
        f"{'':<26}{'tunes/min':>10}{'total s':>9}{'generated s':>13}{'done':>6}{'failed':>8}"
        f"{'vs first':>9}{'gpu-w ms':>9}{'cpu-w ms':>9}"
    )
    print(header)
    rows = [(f"distributed, {level}", r) for level, r in runs]
    if embedded is not None:
        rows.append((f"embedded, {DEFAULT_AUDIO} (baseline)", embedded))
    rate_of = {
        level: statistics.median(args.count / r["total_s"] * 60 for lv, r in runs if lv == level)
        for level in levels
    }
    for name, r in rows:
        rate = args.count / r["total_s"] * 60
        cpu_ms = "".join(
            f"{1000 * r[k] / args.count:>9.0f}" if k in r else f"{'':>9}"
            for k in ("gpu_cpu_s", "cpu_cpu_s")
        )
        share = rate / rate_of[levels[0]]
        print(f"{name:<26}{rate:>10.0f}{r['total_s']:>9.1f}{r['generated_s']:>13.1f}"
              f"{r['done']:>6.0f}{r['failed']:>8.0f}{share:>8.2f}x{cpu_ms}")  # fmt: skip
    print(
        f"(x: tunes per minute against the median of distributed, {levels[0]}; medians: "
        + ", ".join(f"{level} {rate:.0f}" for level, rate in rate_of.items())
        + "; gpu-w / cpu-w ms: CPU ms per tune of the gpu-queue worker / both cpu-queue workers' "
        "processes and the children they reaped: Celery, records, uploads, loudness, the tools' "
        "launch; not the jailed tools themselves, whose CPU time bwrap's pid namespace keeps)"
    )
    print()
    print(
        f"submit-batch (distributed) of {args.count}: returned in {dist['submit_s'] * 1000:.0f} ms"
    )
    print(f"producer submit-batch --count 1000: {cli_s:.2f} s as a command (new process, imports), "
          f"{client_s * 1000:.0f} ms inside an open client")  # fmt: skip


if __name__ == "__main__":
    main()
