"""The reconciler in real workers (`worker.reconcile`): a tune recorded ``generated`` whose render
message Redis lost (``appendfsync everysec`` drops up to a second of writes on a SIGKILL) is
rendered anyway, and its batch gets its manifest, within about one visibility timeout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.abc.notation import split_tunes
from common.jobs.batches import manifest_key, tune_key
from common.schemas import BatchRecord, BatchSpec, TuneRecord, TuneStatus, new_batch_id, tune_id
from common.state import keys
from common.store.open import make_store
from tests import servers as srv
from tests.model_fixtures import TINY_CORPUS, TinyEnv
from tests.worker.cluster import Cluster, cluster

pytestmark = pytest.mark.slow

VISIBILITY_S = 6


@pytest.fixture()
def reconcile_cluster(tmp_path: Path, s3_server: srv.S3Server) -> Iterator[Cluster]:
    with cluster(tmp_path, s3_server, visibility_timeout_s=str(VISIBILITY_S)) as c:
        yield c


def test_a_generated_tune_whose_render_message_was_lost_is_rendered(
    reconcile_cluster: Cluster, tiny_env: TinyEnv
) -> None:
    c = reconcile_cluster
    store = make_store(c.settings)
    for key in tiny_env.store.list("models/"):
        store.put_bytes(key, tiny_env.store.get_bytes(key))
    texts = list(split_tunes(TINY_CORPUS.read_text()))[:2]
    spec = BatchSpec(
        count=2, model_id=tiny_env.model.id, formats=("abc", "mid"), chunk_size=2, valid_only=False
    )
    batch = BatchRecord(id=new_batch_id(), spec=spec)
    # Both tunes generated and stored; their chunk ended (acked) and sent its renders, which a
    # Redis SIGKILL then dropped: the records say `generated` and no queue holds a job.
    tunes = [
        TuneRecord(batch_id=batch.id, tune_id=tune_id(i), index=i, status=TuneStatus.GENERATED,
                   tries=1)
        for i in range(2)
    ]  # fmt: skip
    for tune, text in zip(tunes, texts, strict=True):
        store.put_bytes(tune_key(batch.id, tune.tune_id, "abc"), text.encode())
    c.records.create_batch(batch, tunes)

    worker = c.start_worker("cpu")
    c.wait_ready(worker)
    deadline = time.monotonic() + 6 * VISIBILITY_S
    while c.records.get_batch(batch.id).manifest_key is None:
        assert time.monotonic() < deadline, (c.records.counts(batch.id), worker.log_tail())
        time.sleep(0.2)
    c.wait_idle(timeout_s=30)

    assert all(t.status.final for t in c.records.tunes(batch.id))
    assert store.exists(manifest_key(batch.id))
    # Sent again once each: the second round found the renders' messages, then their tunes final.
    assert c.records.r.hgetall(keys.RECONCILED) == {"tunebatch.render_tune": "2"}
    assert "no queue or worker has it" in worker.log_tail(100_000)
    assert c.records.open_batches() == []
