"""Redis with a password end to end, and no secret in any worker's log output."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest

from common.abc.corpus import import_corpus
from common.errors import ConfigError
from common.settings import Settings
from common.state.redis import RedisRecords
from common.store.open import make_store
from producer.client import Client
from tests import servers as srv
from tests.chaos import driver
from tests.model_fixtures import TINY_CORPUS
from tests.worker.cluster import ROOT, Cluster, cluster_settings, train_through_workers

pytestmark = pytest.mark.slow


def test_password_protected_redis_end_to_end_and_no_secrets_in_logs(
    tmp_path: Path, s3_server: srv.S3Server
) -> None:
    password = f"redis-pw-{uuid.uuid4().hex}"
    secret = f"s3-secret-{uuid.uuid4().hex}"
    bucket = f"secret-{uuid.uuid4().hex[:12]}"
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(srv.redis_server(tmp_path / "redis", password=password))
        srv.create_bucket(s3_server.endpoint_url, bucket)
        stack.callback(srv.delete_bucket, s3_server.endpoint_url, bucket)
        values = cluster_settings(
            redis.url, s3_server.endpoint_url, bucket, tmp_path / "data",
            s3_secret_access_key=secret, log_level="DEBUG",
        )  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEBATCH_")}
        env |= values | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
        settings = Settings.model_validate(
            {k.removeprefix("TUNEBATCH_").lower(): v for k, v in values.items()}
        )
        c = Cluster(env, settings, s3_server.endpoint_url, bucket, redis, tmp_path)
        stack.callback(c.stop_workers)
        c.start_worker("gpu")
        c.start_worker("cpu", concurrency=2)

        anonymous = f"redis://127.0.0.1:{redis.port}/0"
        with pytest.raises(ConfigError, match=r"refused the credentials"):
            RedisRecords.from_url(anonymous, retries=0).ping()

        import_corpus(make_store(settings), str(TINY_CORPUS), name="tiny")
        model_id = train_through_workers(settings, "tiny", epochs=3)
        client = Client(settings)
        batch = client.submit_batch(driver.batch_spec(model_id, 30))
        final = client.follow(batch.id, lambda _p: None, timeout_s=120)
        assert final.final == 30 and final.counts["done"] > 0, final.counts
        c.stop_workers()

    logs = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("worker-*.log")}
    assert len(logs) == 2 and all(logs.values())
    for name, text in logs.items():
        assert password not in text, f"the Redis password is in {name}"
        assert secret not in text, f"the S3 secret key is in {name}"
    assert any(":**@" in text for text in logs.values())  # the URL is logged, masked
