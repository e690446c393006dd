"""Workers' Prometheus metrics and JSON logs, read from real workers during a real batch.

A cluster of its own (tests/worker/cluster.py): a gpu worker and a cpu worker with two pool
processes, each with its /metrics port, the cpu worker logging JSON. The tiny preset is trained
for one epoch through the gpu worker, a batch is submitted through the producer's client, and
both endpoints are scraped over HTTP while it runs and after: the counters move from nothing to
the batch's figures, summed over the pool's processes (the multiprocess mode).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.abc.corpus import import_corpus
from common.dispatch.names import GENERATE, RENDER
from common.schemas import BatchSpec, TrainSpec, TuneStatus
from common.store.open import make_store
from producer.client import Client
from tests import servers as srv
from tests.model_fixtures import TINY_CORPUS
from tests.worker.cluster import Cluster, WorkerProcess, cluster
from worker import metrics

pytestmark = pytest.mark.slow

COUNT = 30

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of the endpoint, keyed by name and sorted labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, s3_server: srv.S3Server
) -> Iterator[tuple[Cluster, dict[str, int], dict[str, WorkerProcess]]]:
    tmp = tmp_path_factory.mktemp("metrics")
    with cluster(tmp, s3_server) as c:
        ports = {"gpu": srv.free_port(), "cpu": srv.free_port()}
        workers = {
            role: c.start_worker(
                role,
                concurrency=2 if role == "cpu" else 1,
                env={
                    "TUNEBATCH_METRICS_PORT": str(ports[role]),
                    "TUNEBATCH_METRICS_DIR": str(tmp / f"metrics-{role}"),
                    "TUNEBATCH_LOG_FORMAT": "json" if role == "cpu" else "text",
                },
            )
            for role in ("gpu", "cpu")
        }
        import_corpus(make_store(c.settings), str(TINY_CORPUS), name="tiny")
        c.wait_ready(*workers.values())
        yield c, ports, workers


def test_counters_move_during_a_real_batch(
    running: tuple[Cluster, dict[str, int], dict[str, WorkerProcess]],
) -> None:
    c, ports, _ = running
    before = {role: scrape(port) for role, port in ports.items()}
    assert total(before["cpu"], "tunebatch_tunes_rendered_total") == 0
    assert ("tunebatch_queue_length", (("queue", "cpu"),)) in before["cpu"]

    client = Client(c.settings)
    run = client.train(TrainSpec(corpus="tiny", preset="tiny", epochs=1, seed=1))
    done = client.follow_run(run.id, lambda _r: None, timeout_s=120)
    assert done.status == "done" and done.model_id, done.error
    trained = scrape(ports["gpu"])
    assert total(trained, "tunebatch_training_epochs_done", run=run.id) == 1
    assert total(trained, "tunebatch_training_epochs", run=run.id) == 1

    spec = BatchSpec(
        count=COUNT,
        model_id=done.model_id,
        # Primed with a bar and sampled cold, as the gallery's batch is: the tiny model's tunes
        # then pass abc2midi's full check often enough that every run renders some.
        temperature=0.4,
        top_k=4,
        max_tries=8,
        max_chars=400,
        primer="X:1\nM:6/8\nL:1/8\nK:D\nDFA dFA|",
        chunk_size=10,
        formats=("abc", "mid", "wav"),
        valid_only=False,
    )
    batch = client.submit_batch(spec)
    seen: list[float] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        cpu = scrape(ports["cpu"])
        seen.append(total(cpu, "tunebatch_tunes_rendered_total"))
        if client.progress(batch.id).finished:
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"batch {batch.id} did not finish: {client.progress(batch.id).counts}")
    assert seen == sorted(seen), "a counter went down"

    gpu, cpu = scrape(ports["gpu"]), scrape(ports["cpu"])
    by_status = client.progress(batch.id).counts
    done_n = by_status.get(TuneStatus.DONE.value, 0)
    failed_n = by_status.get(TuneStatus.FAILED.value, 0)
    assert total(gpu, "tunebatch_tunes_generated_total") == COUNT
    assert total(gpu, "tunebatch_job_attempts_total", task=GENERATE) == COUNT // 10
    assert total(gpu, "tunebatch_generated_chars_total") > COUNT * 10
    assert total(gpu, "tunebatch_generation_chars_per_second") > 0
    assert total(cpu, "tunebatch_tunes_rendered_total") == done_n > 0
    assert total(cpu, "tunebatch_tunes_failed_total") == failed_n
    assert total(cpu, "tunebatch_job_attempts_total", task=RENDER) == COUNT
    # Every rendered tune went through abc2midi and timidity once.
    assert total(cpu, "tunebatch_render_stage_seconds_count", stage="abc2midi") == done_n
    assert total(cpu, "tunebatch_render_stage_seconds_count", stage="timidity") == done_n
    assert total(cpu, "tunebatch_render_stage_seconds_sum", stage="timidity") > 0
    assert total(cpu, "tunebatch_queue_length", queue="cpu") == 0
    # Two pool processes rendered: the endpoint adds up both processes' files.
    assert len(list(Path(c.log_dir / "metrics-cpu").glob("counter_*.db"))) >= 2


def test_json_logs_carry_batch_tune_and_task_ids(
    running: tuple[Cluster, dict[str, int], dict[str, WorkerProcess]],
) -> None:
    _, _, workers = running
    lines = [line for line in workers["cpu"].log_tail(10**7).splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    renders = [e for e in entries if e.get("task") == RENDER]
    assert renders, lines[-20:]
    assert all(e["batch_id"] and e["tune_id"] and e["task_id"] for e in renders)
    assert {"time", "level", "logger", "message"} <= set(entries[0])


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("gave up after 2 attempts: worker lost", "gave_up"),
        ("abc2midi rejected the tune: Error in line 3", "abc2midi"),
        ("timidity ran past its 60 s time limit", "limit"),
        ("something else", "other"),
        (None, "other"),
    ],
)
def test_failure_reasons_are_few_and_named(error: str | None, reason: str) -> None:
    assert metrics.failure_reason(error) == reason
