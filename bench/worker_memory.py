"""Resident memory of a real cpu worker over many renders, per process, glibc's default malloc
arenas side by side with the worker's cap (`worker.runtime.limit_malloc_arenas`).

Starts its own redis-server and S3 server (tests/servers.py), imports the tiny corpus and trains
the tiny model into the bucket (finalize needs it), then, for each variant, starts one
``python -m worker.cli cpu --concurrency=2`` and feeds it batches of tunes already generated (the
corpus's tunes, retitled so no two are alike; records say ``generated``, no model runs): every
batch is rendered (abc, mid, wav) and finalized, as in `make chaos`'s memory test, and the RSS of
the main process and of each pool process is printed after each batch, idle. The default variant
runs with ``MALLOC_ARENA_MAX`` set to glibc's own default (8 per core), which the worker leaves
alone.

    python bench/worker_memory.py                      # 8 batches of 200 tunes per variant
    python bench/worker_memory.py --batches 4 --size 100
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.abc.corpus import import_corpus  # noqa: E402
from common.abc.notation import split_tunes  # noqa: E402
from common.dispatch.config import make_app  # noqa: E402
from common.dispatch.enqueue import enqueue  # noqa: E402
from common.dispatch.names import RENDER  # noqa: E402
from common.jobs.batches import tune_key  # noqa: E402
from common.schemas import (  # noqa: E402
    BatchRecord,
    BatchSpec,
    TrainSpec,
    TuneRecord,
    TuneStatus,
    new_batch_id,
    new_run_id,
    tune_id,
)
from common.store.open import make_store  # noqa: E402
from tests import servers as srv  # noqa: E402
from tests.chaos.faults import children, rss_kib  # noqa: E402
from tests.worker.cluster import Cluster, cluster  # noqa: E402

TINY_CORPUS = ROOT / "tests" / "data" / "tiny_corpus.abc"


def rss_mb(c: Cluster) -> list[float]:
    """The worker's main process, then each pool process, in MB."""
    worker = c.workers[0]
    return [round(rss_kib(pid) / 1024, 1) for pid in (worker.proc.pid, *children(worker.proc.pid))]


Rows = list[tuple[int, list[float]]]


def run_variant(c: Cluster, model_id: str, batches: int, size: int, env: dict[str, str]) -> Rows:
    """Per batch: renders so far and the RSS list after it, idle."""
    store = make_store(c.settings)
    app = make_app(c.settings)
    texts = list(split_tunes(TINY_CORPUS.read_text()))
    worker = c.start_worker("cpu", concurrency=2, env=env)
    c.wait_ready(worker)
    rows: Rows = []
    done = 0
    try:
        for _ in range(batches):
            spec = BatchSpec(count=size, model_id=model_id, formats=("abc", "mid", "wav"),
                             chunk_size=size, valid_only=False)  # fmt: skip
            batch = BatchRecord(id=new_batch_id(), spec=spec)
            for i in range(size):
                text = texts[(done + i) % len(texts)].replace("T:", f"T:Bench {done + i} ", 1)
                store.put_bytes(tune_key(batch.id, tune_id(i), "abc"), text.encode())
            c.records.create_batch(batch, [
                TuneRecord(batch_id=batch.id, tune_id=tune_id(i), index=i,
                           status=TuneStatus.GENERATED, tries=1)
                for i in range(size)
            ])  # fmt: skip
            for i in range(size):
                enqueue(RENDER, batch.id, tune_id(i), celery_app=app)
            while c.records.get_batch(batch.id).manifest_key is None:
                time.sleep(0.5)
            c.wait_idle(timeout_s=600, settle_s=1.0)
            time.sleep(1.0)
            done += size
            rows.append((done, rss_mb(c)))
            print(f"  {done:5d} renders: main + pool MB {rows[-1][1]}", flush=True)
    finally:
        worker.stop()
        c.workers.remove(worker)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--size", type=int, default=200)
    args = parser.parse_args()
    default_arenas = str(8 * (os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp_dir:
        tmp = Path(tmp_dir)
        with srv.s3_server(tmp) as s3, cluster(tmp, s3, visibility_timeout_s="20") as c:
            from common.lstm.training import train

            store = make_store(c.settings)
            import_corpus(store, str(TINY_CORPUS), name="tiny")
            model = train(store, TrainSpec(corpus="tiny", preset="tiny", epochs=1), new_run_id())
            results = {}
            for name, env in (
                (f"glibc default (MALLOC_ARENA_MAX={default_arenas})",
                 {"MALLOC_ARENA_MAX": default_arenas}),
                ("worker's cap (2 arenas)", {}),
            ):  # fmt: skip
                print(name, flush=True)
                results[name] = run_variant(c, model.id, args.batches, args.size, env)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"\nmachine: {machine}; {args.batches} batches of {args.size} tunes (abc, mid, wav), "
          "each finalized")  # fmt: skip
    print("| variant | RSS after 1st batch (MB) | RSS at the end (MB) | growth % |")
    print("|---|---|---|---|")
    for name, rows in results.items():
        first, last = sum(rows[0][1]), sum(rows[-1][1])
        print(f"| {name} | {first:.1f} | {last:.1f} | {100 * (last - first) / first:.1f} |")


if __name__ == "__main__":
    main()
