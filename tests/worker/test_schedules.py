"""Scheduled dataset-wide generation end to end: real redis-server, real S3 server (moto), real
`worker gpu` / `worker cpu`, and real Celery beat processes with redbeat.

One cluster for the module: a 4-tune corpus is imported into the bucket and the tiny preset
trained on it by the gpu worker. Then two beat processes — one started with Celery's own command
(``celery -A worker.celery_app beat``), one with ``worker beat`` (the deployments' command) —
run a schedule that fires every 2 s: no firing is sent twice, each makes exactly one batch, and
each batch has 2 tunes per dataset tune, primed by that tune's header and naming it in the
manifest. The CLI test adds, lists, fires (`run-now`) and removes a schedule, with a retraining
run first because the corpus changed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from common.abc import notation as abc_notation
from common.abc.corpus import import_corpus, load_corpus
from common.dispatch import schedule_store
from common.dispatch.config import make_app
from common.jobs.batches import manifest_key, tune_key
from common.jobs.generate import GATE_REFUSAL
from common.jobs.schedules import ScheduleSpec, dataset_tunes
from common.lstm.registry import resolve_model
from common.schemas import BatchRecord, Manifest
from common.store.open import make_store
from producer import options
from tests import servers as srv
from tests.common.render.test_playing import programs
from tests.model_fixtures import TINY_CORPUS
from tests.producer_cli import producer_settings, run
from tests.worker.cluster import ROOT, Cluster, cluster, train_through_workers
from worker import schedules

pytestmark = pytest.mark.slow

TUNES = list(abc_notation.split_tunes(TINY_CORPUS.read_text()))


def write_corpus(path: Path, n: int) -> Path:
    path.write_text("\n\n".join(TUNES[:n]) + "\n")
    return path


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, s3_server: srv.S3Server) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("sched")
    with cluster(tmp, s3_server) as c:
        gpu = c.start_worker("gpu")
        cpu = c.start_worker("cpu", concurrency=2)
        import_corpus(make_store(c.settings), str(write_corpus(tmp / "mini.abc", 4)), name="mini")
        c.wait_ready(gpu, cpu)
        yield c


@pytest.fixture(scope="module")
def model_id(running: Cluster) -> str:
    return train_through_workers(running.settings, "mini", epochs=1, timeout_s=120)


@pytest.fixture
def producer_env(running: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    with producer_settings(monkeypatch, running.env):
        yield running


@contextlib.contextmanager
def beat(
    c: Cluster, argv: list[str], name: str, env: dict[str, str] | None = None
) -> Iterator[Path]:
    """A beat process (own process group, log in the cluster's folder), stopped with SIGTERM."""
    log_path = c.log_dir / f"beat-{name}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env={**c.env, **(env or {})}, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield log_path
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_for(what: str, check: object, timeout_s: float = 60.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s} s")
        time.sleep(0.2)


def manifest(c: Cluster, batch_id: str) -> Manifest:
    body = srv.s3_client(c.endpoint_url).get_object(Bucket=c.bucket, Key=manifest_key(batch_id))
    return Manifest.model_validate_json(body["Body"].read())


def abc_text(c: Cluster, batch_id: str, tid: str) -> str:
    body = srv.s3_client(c.endpoint_url).get_object(
        Bucket=c.bucket, Key=tune_key(batch_id, tid, "abc")
    )
    return str(body["Body"].read().decode())


def check_covers_dataset(c: Cluster, batch: BatchRecord, per_tune: int) -> Manifest:
    """The batch has `per_tune` tunes per dataset tune, each primed by and naming that tune."""
    dataset = dataset_tunes(load_corpus(make_store(c.settings), "mini"))
    assert batch.spec.count == per_tune * len(dataset)
    m = manifest(c, batch.id)
    assert sum(m.counts.values()) == batch.spec.count
    for tune in m.tunes:
        source = dataset[tune.index // per_tune]
        assert tune.primed_by == source.ref and source.ref.startswith("mini:X:")
        assert tune.status in ("done", "failed")
        if (tune.error or "").startswith(GATE_REFUSAL):
            continue  # the gate kept none of its tries: no text to check (--valid-only)
        text = abc_text(c, batch.id, tune.tune_id)
        # The sampler continued the primer: the dataset tune's header, after our X:/T: lines.
        body = [line for line in text.split("\n") if not line.startswith(("X:", "T:"))]
        primer = [line for line in source.primer.split("\n") if line and not line.startswith("X:")]
        assert body[: len(primer)] == primer, (text, source.primer)
    return m


def test_beat_fires_once_per_interval_with_two_beats_and_each_batch_covers_the_dataset(
    running: Cluster, model_id: str
) -> None:
    del model_id
    app = make_app(running.settings)
    spec = ScheduleSpec(
        name="every2", cron="* * * * *", corpus="mini", per_tune=2, temperature=0.8,
        max_chars=300, valid_only=False, formats=("abc", "mid"),
    )  # fmt: skip
    schedule_store.add_schedule(app, spec, every_s=2)
    rec = running.records
    # Both ways beat is started: Celery's own command and ours; a 1 s loop interval through the
    # setting (the lock keeps its product default, 150 s).
    celery_cmd = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat",
                  "--loglevel", "INFO"]  # fmt: skip
    ours = [sys.executable, "-m", "worker.cli", "beat"]
    fast = {"TUNEBATCH_BEAT_MAX_LOOP_INTERVAL_S": "1"}
    with (
        beat(running, celery_cmd, "a", fast) as log_a,
        beat(running, ours, "b", fast) as log_b,
    ):
        wait_for("a first scheduled batch", lambda: rec.list_batches(), timeout_s=40)
        time.sleep(6.0)
        schedule_store.remove_schedule(app, "every2")
        time.sleep(1.5)  # a tick (≤ 1 s) already past its due check may still send
    logs = [log_a.read_text(errors="replace"), log_b.read_text(errors="replace")]
    assert all("beat: Starting..." in log for log in logs), logs  # both commands run beat
    assert any("beat: Acquired lock" in log for log in logs), logs
    # The property that matters, whichever beat held the lock when: no firing is sent twice.
    # A firing sent by both beats would be two sends of one 2 s slot, under a second apart.
    sent_at = sorted(
        datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")
        for log in logs
        for line in log.splitlines()
        if "Sending due task tunebatch:every2" in line
    )
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(sent_at)]
    assert len(sent_at) >= 3 and all(gap > 1.0 for gap in gaps), gaps
    running.wait_idle(timeout_s=60)
    found = rec.list_batches()
    assert len(found) == len(sent_at), (len(found), gaps)  # one batch per firing, none twice
    wait_for("every manifest", lambda: all(b.manifest_key for b in rec.list_batches()), 60)
    for batch in rec.list_batches():
        assert batch.spec.primed_by is not None
    m = check_covers_dataset(running, found[-1], per_tune=2)
    assert m.spec.primed_by == [t.primed_by for t in m.tunes]


def test_embedded_mode_and_bad_input_are_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("TUNEBATCH_"):
            monkeypatch.delenv(key)
    options.settings.cache_clear()
    try:
        code, _, err = run("schedule", "list")
        assert code == 2 and "schedules need a broker" in err and len(err.splitlines()) == 1
        code, _, err = run("schedule", "add", "x", "--cron", "61 3 * * *", "--corpus", "mini")
        assert code == 2 and "not valid" in err and len(err.splitlines()) == 1, err
        code, _, err = run("schedule", "add", "x", "--cron", "0 3 * *", "--corpus", "mini")
        assert code == 2 and "not 5" in err and len(err.splitlines()) == 1, err
        code, _, err = run("schedule", "add", "Bad Name", "--cron", "0 3 * * *", "--corpus", "m")
        assert code == 2 and "name" in err and len(err.splitlines()) == 1, err
    finally:
        options.settings.cache_clear()


def test_cli_add_list_run_now_retrains_after_a_corpus_change_then_remove(
    producer_env: Cluster, model_id: str, tmp_path: Path
) -> None:
    c = producer_env
    code, _, err = run("schedule", "add", "x", "--cron", "0 3 * * *", "--corpus", "nosuch")
    assert code == 2 and "not imported" in err and len(err.splitlines()) == 1, err
    code, _, err = run("schedule", "add", "nightly", "--cron", "0 3 * * *", "--corpus", "mini")
    assert code == 0, err
    code, _, err = run("schedule", "add", "nightly", "--cron", "0 3 * * *", "--corpus", "mini")
    assert code == 2 and "--replace" in err and len(err.splitlines()) == 1
    code, _, err = run(
        "schedule", "add", "nightly", "--cron", "0 3 * * *", "--corpus", "mini", "--per-tune",
        "1", "--retrain-if-changed", "--valid-only", "--formats", "abc,mid", "--max-chars", "300",
        "--audio", "preview", "--instrument", "fiddle", "--replace", "--json",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = run("schedule", "list", "--json")
    assert code == 0, err
    [listed] = json.loads(out)
    assert listed["spec"]["name"] == "nightly" and listed["when"] == "0 3 * * *"
    assert listed["spec"]["retrain_if_changed"] is True and listed["spec"]["per_tune"] == 1
    assert listed["spec"]["audio"] == "preview" and listed["spec"]["instrument"] == "fiddle"
    assert listed["spec"]["valid_only"] is True
    # Never run: no last run (redbeat's field holds the time it was added). The next run is the
    # time redbeat holds for it, 03:00:00 UTC to the second, the same at every listing.
    assert listed["last_run_at"] is None and listed["total_run_count"] == 0
    next_run = datetime.fromisoformat(listed["next_run_at"])
    assert next_run.utcoffset() == timedelta(0) and (next_run.hour, next_run.minute) == (3, 0)
    assert next_run.second == 0 and next_run.microsecond == 0
    score = c.records.r.zscore("redbeat::schedule", "redbeat:tunebatch:nightly")
    assert score is not None and next_run.timestamp() - 10 < score <= next_run.timestamp()
    code, table, err = run("schedule", "list")
    assert code == 0, err
    assert "never" in table and f"{next_run:%Y-%m-%d} 03:00:00" in table, table
    assert run("schedule", "list", "--json")[1] == out  # no drift between two listings

    # The corpus changes (a 5th tune): run-now trains a new model first, then submits.
    store = make_store(c.settings)
    before = {b.id for b in c.records.list_batches()}
    record = import_corpus(store, str(write_corpus(tmp_path / "mini.abc", 5)), name="mini")
    code, out, err = run("schedule", "run-now", "nightly", "--json")
    assert code == 0 and json.loads(out)["schedule"] == "nightly", err

    def new_batch() -> BatchRecord | None:
        fresh = [b for b in c.records.list_batches() if b.id not in before]
        return fresh[0] if fresh and fresh[0].manifest_key else None

    wait_for("the retrained schedule's batch", new_batch, timeout_s=90)
    batch = new_batch()
    assert batch is not None
    model = resolve_model(store, batch.spec.model_id)
    assert model.id != model_id and model.corpus_sha256 == record.sha256
    assert model.preset == "tiny" and model.epochs == 1  # the old model's recipe
    check_covers_dataset(c, batch, per_tune=1)
    assert batch.spec.count == 5 and batch.spec.audio == "preview"  # the schedule's level
    # The schedule's instrument, heard in every MIDI it rendered (GM program 40, violin).
    assert batch.spec.instrument == "fiddle"
    # The model had one epoch on 5 tunes: the gate retries what abc2midi rejects (--valid-only),
    # so every tune it kept was rendered (with --any, a CI run once saw all 5 rejected).
    m = manifest(c, batch.id)
    kept = [t.tune_id for t in m.tunes if t.status == "done"]
    midis = [k for k in store.list(f"batches/{batch.id}/") if k.endswith(".mid")]
    assert kept and sorted(midis) == [tune_key(batch.id, t, "mid") for t in sorted(kept)]
    assert all(programs(store.get_bytes(k)) == {40} for k in midis), midis

    code, _, err = run("schedule", "remove", "nightly")
    assert code == 0, err
    code, out, _ = run("schedule", "list", "--json")
    assert json.loads(out) == []
    code, _, err = run("schedule", "run-now", "nightly")
    assert code != 0 and "no schedule 'nightly'" in err and len(err.splitlines()) == 1


def test_a_redelivered_firing_submits_no_second_batch(running: Cluster, model_id: str) -> None:
    from common.jobs.context import Context

    del model_id
    c = running
    ctx = Context(settings=c.settings, store=make_store(c.settings), records=c.records)
    spec = ScheduleSpec(
        name="once", cron="0 3 * * *", corpus="mini", max_chars=200, valid_only=False,
        formats=("abc",),
    ).model_dump_json()  # fmt: skip
    app = make_app(c.settings)
    first = schedules.fire(ctx, c.records, spec, celery_app=app, task_id="redelivered-1")
    again = schedules.fire(ctx, c.records, spec, celery_app=app, task_id="redelivered-1")
    assert first == again and first.startswith("batch b")
    assert [b.id for b in c.records.list_batches()].count(first.removeprefix("batch ")) == 1
    c.wait_idle(timeout_s=60)
