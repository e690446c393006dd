"""The chaos driver: one batch through a real cluster while faults are injected, then an audit.

Sizes come from ``TUNEBATCH_CHAOS_SCALE``: ``ci`` (default, the size `make test` runs) or ``full``
(`make chaos`). ``TUNEBATCH_CHAOS_REPORT`` names a JSON file the figures are appended to.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.errors import TunebatchError
from common.jobs.batches import artifact_key, manifest_key, tune_key
from common.schemas import BatchSpec, TuneStatus
from common.state import keys
from producer.client import Client
from tests import servers as srv
from tests.chaos.faults import BucketProxy, children, sigkill, sigkill_group
from tests.worker.cluster import Cluster, WorkerProcess

PRIMER = "X:1\nM:6/8\nL:1/8\nK:D\n"
FORMATS = ["abc", "mid", "wav"]


@dataclass(frozen=True)
class Scale:
    name: str
    tunes: int
    worker_kills: int
    redis_restarts: int
    bucket_outage_s: float
    drain_timeout_s: float


SCALES = {
    "ci": Scale("ci", tunes=120, worker_kills=3, redis_restarts=1, bucket_outage_s=8.0,
                drain_timeout_s=300.0),
    "full": Scale("full", tunes=1000, worker_kills=10, redis_restarts=3, bucket_outage_s=30.0,
                  drain_timeout_s=1500.0),
}  # fmt: skip


def scale() -> Scale:
    name = os.environ.get("TUNEBATCH_CHAOS_SCALE", "ci")
    if name not in SCALES:
        raise ValueError(f"TUNEBATCH_CHAOS_SCALE={name!r}: use one of {sorted(SCALES)}")
    return SCALES[name]


def report(section: str, figures: dict[str, Any]) -> None:
    """Add `figures` under `section` to the JSON file named by TUNEBATCH_CHAOS_REPORT (if set)."""
    path = os.environ.get("TUNEBATCH_CHAOS_REPORT")
    if not path:
        return
    target = Path(path)
    data: dict[str, Any] = json.loads(target.read_text()) if target.exists() else {}
    data[section] = figures
    target.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@dataclass
class Figures:
    scale: str
    appendfsync: str
    tunes: int
    worker_kills: int = 0
    whole_worker_kills: int = 0
    redis_restarts: int = 0
    bucket_outages: int = 0
    bucket_outage_s: float = 0.0
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    lost: int = 0
    duplicates: int = 0
    orphans: int = 0
    dead_lettered: int = 0
    #: Jobs the reconciler (`worker.reconcile`) sent again because the broker had lost them.
    resent: int = 0
    drain_s: float = 0.0
    events: list[str] = field(default_factory=list)
    failure_reasons: dict[str, int] = field(default_factory=dict)


def batch_spec(model_id: str, count: int, **kw: Any) -> BatchSpec:
    values: dict[str, Any] = {
        "count": count,
        "model_id": model_id,
        "temperature": 0.3,
        "max_chars": 400,
        "primer": PRIMER,
        "valid_only": False,
        "max_tries": 1,
        "chunk_size": 25,
        "formats": FORMATS,
    }
    values.update(kw)
    return BatchSpec(**values)


def bucket_objects(endpoint_url: str, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    """key → (size, SHA-256) of the bytes actually stored."""
    client = srv.s3_client(endpoint_url)
    out: dict[str, tuple[int, str]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            out[obj["Key"]] = (len(body), hashlib.sha256(body).hexdigest())
    return out


def kill_a_worker_process(c: Cluster, rng: random.Random) -> str:
    """SIGKILL the pool process of a random worker (the process that runs jobs).

    Celery's main process sees its child die, rejects the job back to the queue
    (``task_reject_on_worker_lost``) and forks a new pool process.
    """
    worker = rng.choice([w for w in c.workers if w.proc.poll() is None])
    pids = children(worker.proc.pid)
    if not pids:
        return f"{worker.name}: no pool process to kill"
    pid = rng.choice(pids)
    sigkill(pid)
    return f"SIGKILL pool process {pid} of {worker.name}"


def kill_a_whole_worker(
    c: Cluster, rng: random.Random, *, only: WorkerProcess | None = None
) -> str:
    """SIGKILL a random worker's main process with its pool (a node lost), start a replacement.

    Nobody rejects or acknowledges its jobs: they come back when their leases lapse
    (`worker.leases`, the cluster's visibility timeout after the last renewal).
    """
    worker = only or rng.choice([w for w in c.workers if w.proc.poll() is None])
    sigkill_group(worker.proc.pid)
    worker.proc.wait(timeout=10)
    c.workers.remove(worker)
    extra = ("--include=tests.chaos.poison",) if worker.role == "cpu" else ()
    replacement = c.start_worker(worker.role, extra=extra)
    return f"SIGKILL worker {worker.name} (main + pool), started {replacement.name}"


def resent_so_far(c: Cluster) -> int:
    """Jobs the cluster's reconciler has sent again so far (all batches)."""
    return sum(int(n) for n in c.records.r.hvals(keys.RECONCILED))


def _progress(client: Client, batch_id: str) -> tuple[bool, int]:
    try:
        p = client.progress(batch_id)
    except TunebatchError:  # Redis is being restarted
        return False, -1
    return p.finished, p.final


def run_batch_under_faults(
    c: Cluster,
    proxy: BucketProxy,
    model_id: str,
    size: Scale,
    *,
    seed: int = 7,
) -> tuple[str, Figures]:
    """Submit one batch and inject every fault of `size` while it runs; return when drained."""
    rng = random.Random(seed)
    client = Client(c.settings)
    figures = Figures(size.name, c.redis.appendfsync, size.tunes)
    faults = ["worker"] * size.worker_kills + ["redis"] * size.redis_restarts
    rng.shuffle(faults)
    if size.bucket_outage_s > 0:  # mid-batch, while renders are uploading
        faults.insert(len(faults) // 2, "bucket")
    started = time.monotonic()
    resent_before = resent_so_far(c)
    batch = client.submit_batch(batch_spec(model_id, size.tunes))
    # Spread the faults over the batch: one whenever another 1/(n+1) of the tunes is final.
    step = size.tunes / (len(faults) + 1)
    deadline = started + size.drain_timeout_s
    finished = False
    last_final, progressed_at = -1, time.monotonic()
    while not finished:
        stalled = not faults and time.monotonic() - progressed_at > STALL_S
        if stalled:
            raise StalledError(stalled_on(c, batch.id, figures))
        if time.monotonic() > deadline:
            r = c.records.r
            raise TimeoutError(
                f"batch {batch.id} not drained in {size.drain_timeout_s} s: "
                f"{client.progress(batch.id).counts}; queues gpu {r.llen('gpu')} cpu "
                f"{r.llen('cpu')}, unacked {r.hlen('unacked')}; {figures.events}"
            )
        finished, final = _progress(client, batch.id)
        if final != last_final:
            last_final, progressed_at = final, time.monotonic()
        due = faults and final >= step * (len(figures.events) + 1) - 1e-9
        if due or (faults and final >= 0 and time.monotonic() - started > 20 * (
                len(figures.events) + 1)):  # fmt: skip
            kind = faults.pop()
            at = f"{time.monotonic() - started:6.1f}s {final:>5} final: "
            if kind == "worker":
                # Alternate: a job process dies (its worker requeues the job at once), or a
                # whole worker does (its jobs come back when their leases lapse).
                whole = figures.worker_kills % 2 == 1
                kill = kill_a_whole_worker if whole else kill_a_worker_process
                figures.events.append(at + kill(c, rng))
                figures.worker_kills += 1
                figures.whole_worker_kills += whole
            elif kind == "redis":
                c.redis.restart()
                figures.events.append(at + "redis-server SIGKILL + restart (AOF reloaded)")
                figures.redis_restarts += 1
            else:
                proxy.down()
                time.sleep(size.bucket_outage_s)
                proxy.up()
                figures.events.append(at + f"bucket unreachable for {size.bucket_outage_s:.0f} s")
                figures.bucket_outages += 1
                figures.bucket_outage_s += size.bucket_outage_s
            progressed_at = time.monotonic()  # the stall clock starts after the last fault
        time.sleep(0.2)
    figures.drain_s = round(time.monotonic() - started, 1)
    figures.resent = resent_so_far(c) - resent_before
    if faults:
        figures.events.append(f"batch finished before {len(faults)} faults: {faults}")
    return batch.id, figures


#: Seconds without a tune becoming final, after the last fault, that count as stuck.
STALL_S = 60.0


class StalledError(AssertionError):
    """The batch stopped making progress; `orphaned` says whether every tune it waits for has its
    job message in Redis' unacked set (see `stalled_on`): a lease that is not lapsing."""

    def __init__(self, details: tuple[str, bool]) -> None:
        super().__init__(details[0])
        self.orphaned = details[1]


def unacked_jobs(c: Cluster, batch_id: str) -> list[str]:
    """The batch's job messages in Redis' unacked set (taken by a worker, not yet acked)."""
    import base64

    jobs = []
    for raw in c.records.r.hvals("unacked"):
        message = json.loads(raw)[0]
        args = json.loads(base64.b64decode(message["body"]))[0]
        if args and args[0] == batch_id:
            jobs.append(f"{message['headers']['task']}{args}")
    return jobs


def stalled_on(c: Cluster, batch_id: str, figures: Figures) -> tuple[str, bool]:
    """What a stalled batch waits for: its unfinished tunes and the messages left unacked.

    With leases a message no live worker holds is back in its queue one visibility timeout after
    its last renewal; one still unacked after `STALL_S` is a lease renewed for a job no one runs.
    """
    r = c.records.r
    text = (
        f"batch {batch_id} stalled {STALL_S:.0f} s after the last fault: "
        f"{waiting_for(c, batch_id)}\nfaults: {figures.events}"
    )
    # Orphaned: the queues are empty and nothing but unacked messages could finish the batch.
    orphaned = bool(unacked_jobs(c, batch_id)) and r.llen("gpu") + r.llen("cpu") == 0
    return text, orphaned


def waiting_for(c: Cluster, batch_id: str) -> str:
    """What an unfinished batch waits for, to read in a failed test: the tunes not final, the
    queues, its job messages left unacked, the finalize claim, and what the workers last logged
    about it (warnings and errors included)."""
    r = c.records.r
    batch = c.records.get_batch(batch_id)
    pending = [(t.tune_id, t.status.value) for t in c.records.tunes(batch_id) if not t.status.final]
    unacked = unacked_jobs(c, batch_id)
    logged = []
    for w in c.workers:
        lines = w.log_tail(400_000).splitlines()
        about = [ln for ln in lines if batch_id in ln or "WARNING" in ln or "ERROR" in ln]
        logged.append(f"--- {w.name} (alive: {w.proc.poll() is None})\n" + "\n".join(about[-25:]))
    return (
        f"cancelled {batch.cancelled}, manifest {batch.manifest_key}, "
        f"counts {c.records.counts(batch_id)}, not final {pending[:10]}, "
        f"finalize claimed {bool(r.exists(keys.batch_finalize_key(batch_id)))}, "
        f"queues gpu {r.llen('gpu')} cpu {r.llen('cpu')}, unacked {unacked}\n" + "\n".join(logged)
    )


def producer_status_json(c: Cluster, batch_id: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "producer.cli", "status", batch_id, "--json"],
        env=c.env, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def audit(c: Cluster, batch_id: str, figures: Figures) -> list[str]:
    """Every invariant of a drained batch; returns the violations (empty when all hold)."""
    problems: list[str] = []
    rec = c.records
    spec = rec.get_batch(batch_id).spec
    tunes = rec.tunes(batch_id)
    ids = [t.tune_id for t in tunes]
    expected_ids = [f"t{i:06d}" for i in range(spec.count)]
    if sorted(ids) != expected_ids:
        problems.append(f"tune records: {len(ids)} ({len(set(ids))} distinct), not {spec.count}")
    not_final = [t.tune_id for t in tunes if not t.status.final]
    if not_final:
        problems.append(f"{len(not_final)} tunes not final: {not_final[:10]}")
    counts = rec.counts(batch_id)
    by_status: dict[str, int] = {}
    for t in tunes:
        by_status[t.status.value] = by_status.get(t.status.value, 0) + 1
    if {k: v for k, v in counts.items() if v} != by_status:
        problems.append(f"counters {counts} != records {by_status}")
    figures.done = by_status.get("done", 0)
    figures.failed = by_status.get("failed", 0)
    figures.cancelled = by_status.get("cancelled", 0)
    for t in tunes:
        if t.status == TuneStatus.FAILED:
            reason = (t.error or "?").split(":")[0][:80]
            figures.failure_reasons[reason] = figures.failure_reasons.get(reason, 0) + 1

    # The bucket: exactly one set of files per done tune, the .abc of a failed one, nothing else;
    # a cancelled tune has no files at all.
    objects = bucket_objects(c.endpoint_url, c.bucket, artifact_key(batch_id, ""))
    expected: set[str] = {manifest_key(batch_id)}
    missing: list[str] = []
    for t in tunes:
        if t.status == TuneStatus.DONE:
            want = {tune_key(batch_id, t.tune_id, f) for f in spec.formats}
            missing += sorted(want - set(objects))
            expected |= want
        elif t.status == TuneStatus.FAILED and tune_key(batch_id, t.tune_id, "abc") in objects:
            expected.add(tune_key(batch_id, t.tune_id, "abc"))
    orphans = sorted(set(objects) - expected)
    figures.orphans = len(orphans)
    figures.lost = len(not_final) + len({k.rsplit("/", 1)[-1].split(".")[0] for k in missing})
    if missing:
        problems.append(f"{len(missing)} files of done tunes missing: {missing[:10]}")
    if orphans:
        problems.append(f"{len(orphans)} objects no final tune accounts for: {orphans[:10]}")

    # The manifest against the bucket and the records.
    if manifest_key(batch_id) not in objects:
        problems.append("no manifest")
        return problems
    manifest = json.loads(
        srv.s3_client(c.endpoint_url)
        .get_object(Bucket=c.bucket, Key=manifest_key(batch_id))["Body"]
        .read()
    )
    listed = [t["tune_id"] for t in manifest["tunes"]]
    figures.duplicates = len(listed) - len(set(listed)) + max(0, len(ids) - len(set(ids)))
    if listed != expected_ids:
        problems.append(f"manifest lists {len(listed)} tunes ({len(set(listed))} distinct)")
    records_by_id = {t.tune_id: t for t in tunes}
    for entry in manifest["tunes"]:
        record = records_by_id.get(entry["tune_id"])
        if record is None or record.status.value != entry["status"]:
            problems.append(f"manifest {entry['tune_id']} {entry['status']} != records")
            continue
        if [f["key"] for f in entry["files"]] != [f.key for f in record.files]:
            problems.append(f"manifest files of {entry['tune_id']} != records")
        for f in entry["files"]:
            if objects.get(f["key"]) != (f["size"], f["sha256"]):
                problems.append(f"manifest {f['key']} size/sha256 != the bucket's bytes")
        if entry["status"] == "done" and {f["format"] for f in entry["files"]} != set(spec.formats):
            problems.append(f"manifest: done tune {entry['tune_id']} lacks formats")
    if manifest["counts"] != {s: by_status.get(s, 0) for s in ("done", "failed", "cancelled")}:
        problems.append(f"manifest counts {manifest['counts']} != records {by_status}")

    # What the producer shows.
    shown = producer_status_json(c, batch_id)
    if {k: v for k, v in shown["counts"].items() if v} != by_status:
        problems.append(f"producer status --json {shown['counts']} != records {by_status}")
    figures.dead_lettered = sum(1 for e in rec.dead_letters() if batch_id in json.dumps(e.args))
    return problems


def producer_cancel(c: Cluster, batch_id: str) -> str:
    """``producer cancel BATCH`` as a user runs it; its output."""
    out = subprocess.run(
        [sys.executable, "-m", "producer.cli", "cancel", batch_id],
        env={**c.env, "COLUMNS": "200"}, cwd=Path(__file__).resolve().parents[2],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr)
    return " ".join(out.stdout.split())


def cancel_mid_batch(
    c: Cluster, model_id: str, tunes: int, *, at_final: int, timeout_s: float = 300.0
) -> tuple[str, Figures, str]:
    """Submit a batch, `producer cancel` it once `at_final` tunes are final (chunks still being
    generated, renders running), and wait for its manifest; return the cancel's output."""
    client = Client(c.settings)
    figures = Figures("cancel", c.redis.appendfsync, tunes)
    started = time.monotonic()
    batch = client.submit_batch(batch_spec(model_id, tunes))
    while True:
        finished, final = _progress(client, batch.id)
        if final >= at_final or finished:
            break
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"batch {batch.id}: {final} final after {timeout_s} s")
        time.sleep(0.1)
    said = producer_cancel(c, batch.id)
    figures.events.append(f"{time.monotonic() - started:6.1f}s {final:>5} final: cancel")
    while not _progress(client, batch.id)[0]:
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(
                f"batch {batch.id} not finalized after the cancel: {waiting_for(c, batch.id)}"
            )
        time.sleep(0.2)
    c.wait_idle(timeout_s=120)  # renders that raced the cancel have cleaned up after themselves
    figures.drain_s = round(time.monotonic() - started, 1)
    return batch.id, figures, said


def figures_dict(figures: Figures) -> dict[str, Any]:
    return asdict(figures)


COLUMNS = (
    ("scale", "size"),
    ("appendfsync", "appendfsync"),
    ("tunes", "tunes submitted"),
    ("worker_kills", "SIGKILLs"),
    ("whole_worker_kills", "of them whole workers"),
    ("redis_restarts", "Redis kill -9 + restart"),
    ("bucket_outage_s", "bucket away (s)"),
    ("done", "done"),
    ("failed", "failed (abc2midi)"),
    ("lost", "lost"),
    ("duplicates", "duplicates"),
    ("orphans", "orphan objects"),
    ("dead_lettered", "dead-lettered"),
    ("resent", "re-sent by the reconciler"),
    ("drain_s", "time to drain (s)"),
)


def _table(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...]) -> list[str]:
    lines = ["| " + " | ".join(title for _, title in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(key, "")) for key, _ in columns) + " |")
    return lines


LOAD_COLUMNS = (
    ("section", "run"), ("jobs", "jobs queued"), ("survived", "survived kill -9"),
    ("jobs_per_s", "enqueued per s"),
)  # fmt: skip
PRODUCER_COLUMNS = (
    ("section", "run"), ("processes", "producer processes"), ("batches", "batches"),
    ("tunes", "tunes"), ("lost", "lost"), ("duplicates", "duplicates"), ("orphans", "orphans"),
    ("total_s", "submit + drain (s)"),
)  # fmt: skip
RSS_COLUMNS = (
    ("section", "run"), ("renders", "renders"), ("baseline_mb", "RSS after warm-up (MB)"),
    ("final_mb", "RSS at the end (MB)"), ("peak_mb", "peak (MB)"), ("growth_pct", "growth %"),
)  # fmt: skip


def markdown(data: dict[str, Any]) -> str:
    """The report as Markdown tables (for the README): chaos runs, then the load figures."""

    def rows(prefix: str) -> list[dict[str, Any]]:
        return [{"section": k, **v} for k, v in sorted(data.items()) if k.startswith(prefix)]

    lines = _table(rows("chaos-"), COLUMNS)
    for prefix, columns in (("load-", LOAD_COLUMNS), ("concurrent-producers-", PRODUCER_COLUMNS),
                            ("cpu-rss-", RSS_COLUMNS)):  # fmt: skip
        if rows(prefix):
            lines += ["", *_table(rows(prefix), columns)]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m tests.chaos.driver chaos-report.json
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
