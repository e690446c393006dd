"""Cancel mid-batch on the chaos cluster (real workers, Redis, S3), then the chaos audit: after
the cancel, the bucket holds exactly the done tunes' files (and the .abc of failed ones, which
the manifest lists) plus the manifest; no cancelled tune leaves a file behind.
"""

from __future__ import annotations

import pytest

from common.jobs.batches import artifact_key, manifest_key
from tests.chaos import driver
from tests.worker.cluster import Cluster

pytestmark = pytest.mark.slow


def test_cancel_mid_batch_leaves_exactly_the_manifests_files(
    chaos_cluster: Cluster, model_id: str
) -> None:
    c = chaos_cluster
    tunes = 100 if driver.scale().name == "ci" else 600
    batch_id, figures, said = driver.cancel_mid_batch(c, model_id, tunes, at_final=tunes // 5)
    assert f"batch {batch_id} cancelled (" in said, said
    problems = driver.audit(c, batch_id, figures)
    driver.report(f"cancel-{driver.scale().name}", driver.figures_dict(figures))
    assert not problems, "\n".join(problems + figures.events)
    assert figures.orphans == 0 and figures.lost == 0 and figures.duplicates == 0
    assert figures.done > 0 and figures.cancelled > 0, figures
    record = c.records.get_batch(batch_id)
    assert record.cancelled and record.manifest_key == manifest_key(batch_id)

    # Cancel again: the batch is finished; it says so and changes nothing.
    before = driver.bucket_objects(c.endpoint_url, c.bucket, artifact_key(batch_id, ""))
    said = driver.producer_cancel(c, batch_id)
    assert f"batch {batch_id} is already finished (" in said and "nothing changed" in said, said
    assert c.records.get_batch(batch_id) == record
    assert driver.bucket_objects(c.endpoint_url, c.bucket, artifact_key(batch_id, "")) == before

    # The workers' banners and logs name the password-less Redis without a password mask.
    logs = [w.log_path.read_text(errors="replace") for w in c.workers]
    assert all(f"Connected to {c.redis.url}" in log for log in logs), logs[0][-2000:]
    assert not any("redis://:**@" in log for log in logs)
