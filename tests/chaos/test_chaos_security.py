"""Poison jobs and security on the chaos cluster: a tune whose render kills its worker, a
pickled message, a model whose file does not match its record, path-traversal titles."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from common.dispatch.names import RENDER
from common.jobs.batches import artifact_key
from common.lstm.registry import model_key
from common.schemas import ModelRecord, TuneStatus
from producer.client import Client
from tests import servers as srv
from tests.chaos import driver
from tests.chaos.poison import POISON_SEED, POISON_TUNE
from tests.worker.cluster import ROOT, Cluster

pytestmark = pytest.mark.slow


def producer(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producer.cli", *args],
        env=c.env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_poison_tune_is_dead_lettered_and_the_rest_of_the_batch_finishes(
    chaos_cluster: Cluster, model_id: str
) -> None:
    c = chaos_cluster
    client = Client(c.settings)
    spec = driver.batch_spec(model_id, 30, seed=POISON_SEED, formats=["abc", "mid"])
    batch = client.submit_batch(spec)
    final = client.follow(batch.id, lambda _p: None, timeout_s=150)
    assert sum(final.counts.values()) == 30 and final.final == 30, final.counts

    poisoned = c.records.get_tune(batch.id, POISON_TUNE)
    entries = [e for e in client.dead_letters() if e.args == [batch.id, POISON_TUNE]]
    if poisoned.error and "abc2midi" in poisoned.error:
        pytest.fail(f"{POISON_TUNE} failed before rendering; pick another poison tune")
    assert len(entries) == 1, entries
    assert entries[0].task == RENDER and entries[0].attempts == c.settings.max_attempts
    assert "died" in entries[0].reason
    assert poisoned.status == TuneStatus.FAILED and "gave up after" in (poisoned.error or "")
    for tune in c.records.tunes(batch.id):  # the others finished on their own merits
        if tune.tune_id != POISON_TUNE:
            assert "gave up" not in (tune.error or ""), tune
    assert final.counts["done"] > 0

    shown = producer(c, "status", batch.id)
    assert shown.returncode == 0, shown.stderr
    assert POISON_TUNE in shown.stdout and "gave up" in shown.stdout, shown.stdout
    listed = producer(c, "dead-letter", "--json")
    assert listed.returncode == 0 and batch.id in listed.stdout, listed.stderr


def test_pickled_message_is_refused_not_executed(chaos_cluster: Cluster, tmp_path: Path) -> None:
    from celery import Celery

    c = chaos_cluster
    canary = tmp_path / "canary"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(canary), "w"))  # runs on unpickling

    evil = Celery("evil", broker=c.settings.broker_url, set_as_current=False)
    evil.conf.update(task_serializer="pickle", accept_content=["pickle"])
    refused = "Refusing to deserialize"
    before = sum(w.log_path.read_text(errors="replace").count(refused) for w in c.workers)
    result = evil.send_task(RENDER, args=[Payload(), "t000000"], queue="cpu", serializer="pickle")
    evil.close()

    def logs() -> str:
        return "\n".join(w.log_path.read_text(errors="replace") for w in c.workers)

    deadline = time.monotonic() + 60  # until a worker took the message and logged its verdict
    while logs().count(refused) <= before and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    assert not canary.exists(), "a pickled payload was executed by a worker"
    assert logs().count(refused) > before, "no worker logged refusing the message"
    assert result.id not in c.records.r.hkeys("unacked")  # refused, not left for redelivery
    assert c.records.r.llen("cpu") == 0


def test_model_whose_file_does_not_match_its_record_is_refused(
    chaos_cluster: Cluster, model_id: str
) -> None:
    c = chaos_cluster
    s3 = srv.s3_client(c.endpoint_url)
    real = ModelRecord.model_validate_json(
        s3.get_object(Bucket=c.bucket, Key=model_key(model_id, "json"))["Body"].read()
    )
    forged_id = "ab" * 32  # a record whose id (the file's supposed SHA-256) is not the file's
    forged = real.model_copy(update={"id": forged_id})
    body = s3.get_object(Bucket=c.bucket, Key=model_key(model_id, "keras"))["Body"].read()
    s3.put_object(Bucket=c.bucket, Key=model_key(forged_id, "keras"), Body=body)
    s3.put_object(
        Bucket=c.bucket, Key=model_key(forged_id, "json"), Body=forged.model_dump_json().encode()
    )
    try:
        client = Client(c.settings)
        batch = client.submit_batch(driver.batch_spec(forged_id, 10))
        final = client.follow(batch.id, lambda _p: None, timeout_s=120)
    finally:
        for ext in ("json", "keras"):
            s3.delete_object(Bucket=c.bucket, Key=model_key(forged_id, ext))
    assert final.counts["failed"] == 10, final.counts
    for tune in c.records.tunes(batch.id):
        assert "SHA-256" in (tune.error or "") and "refusing" in (tune.error or ""), tune.error
    assert not any(k.endswith(".abc") for k in _keys(c, artifact_key(batch.id, "")))


def _keys(c: Cluster, prefix: str) -> list[str]:
    s3 = srv.s3_client(c.endpoint_url)
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=c.bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def test_keys_are_ids_never_titles(chaos_cluster: Cluster, model_id: str) -> None:
    c = chaos_cluster
    title = f"../../../{uuid.uuid4().hex[:6]}/..\\evil"
    primer = f"X:1\nT:{title}\nM:6/8\nL:1/8\nK:D\n"
    client = Client(c.settings)
    batch = client.submit_batch(driver.batch_spec(model_id, 10, primer=primer))
    client.follow(batch.id, lambda _p: None, timeout_s=120)
    tunes = c.records.tunes(batch.id)
    assert any(t.title == title for t in tunes), [t.title for t in tunes]  # titles: records only
    pattern = re.compile(
        rf"^batches/{re.escape(batch.id)}/(t\d{{6}}\.(abc|mid|wav)|manifest\.json)$"
    )
    everything = _keys(c, "")
    mine = [k for k in everything if batch.id in k]
    assert mine and all(pattern.match(k) for k in mine), mine
    assert not [k for k in everything if ".." in k or "evil" in k]
    manifest = json.loads(
        srv.s3_client(c.endpoint_url)
        .get_object(Bucket=c.bucket, Key=artifact_key(batch.id, "manifest.json"))["Body"]
        .read()
    )
    assert title in {t["title"] for t in manifest["tunes"]}
