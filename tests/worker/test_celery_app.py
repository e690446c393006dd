"""The Celery configuration: what the issue asks of it, checked on the dict the app is given."""

from __future__ import annotations

import pytest

from common.dispatch.config import celery_config, time_limits
from common.dispatch.names import (
    FINALIZE,
    GENERATE,
    RENDER,
    TRAIN,
)
from common.errors import ConfigError
from common.settings import Settings


def test_config_is_json_only_late_ack_prefetch_one_and_routed_by_name() -> None:
    conf = celery_config(
        Settings(broker_url="redis://127.0.0.1:6379/3", visibility_timeout_s=7200, max_attempts=4)
    )
    assert conf["broker_url"] == conf["result_backend"] == "redis://127.0.0.1:6379/3"
    assert conf["task_serializer"] == conf["result_serializer"] == "json"
    assert conf["accept_content"] == ["json"]
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["broker_transport_options"]["visibility_timeout"] == 7200
    routes = conf["task_routes"]
    assert routes[TRAIN] == routes[GENERATE] == {"queue": "gpu"}
    assert routes[RENDER] == routes[FINALIZE] == {"queue": "cpu"}
    annotations = conf["task_annotations"]
    for name in (TRAIN, GENERATE, RENDER, FINALIZE):
        limits = annotations[name]
        assert 0 < limits["soft_time_limit"] < limits["time_limit"]
        assert "max_retries" not in limits  # attempts are counted by worker.delivery


def test_training_runs_as_long_as_its_own_limit_whatever_the_visibility_timeout() -> None:
    # Leases (worker.leases) keep a running job from being handed out twice, so the timeout
    # only says how soon an abandoned job comes back: short, and unrelated to job lengths.
    limits = time_limits(Settings(visibility_timeout_s=300, train_time_limit_s=20 * 3600))
    assert limits[TRAIN].hard_s == 20 * 3600 and limits[TRAIN].soft_s < limits[TRAIN].hard_s
    assert all(limits[n].hard_s < limits[TRAIN].hard_s for n in (GENERATE, RENDER, FINALIZE))


def test_a_visibility_timeout_too_short_to_renew_is_refused() -> None:
    with pytest.raises(ValueError, match="visibility_timeout_s"):
        Settings(visibility_timeout_s=4)


def test_no_broker_no_config() -> None:
    with pytest.raises(ConfigError, match="TUNEBATCH_BROKER_URL"):
        celery_config(Settings())
