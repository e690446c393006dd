"""The Celery configuration: what the issue asks of it, checked on the dict the app is given."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from common.settings import Settings
from worker.celery_app import (
    FINALIZE,
    GENERATE,
    RENDER,
    TRAIN,
    celery_config,
    time_limits,
)


def test_config_is_json_only_late_ack_prefetch_one_and_routed_by_name() -> None:
    conf = celery_config(
        Settings(broker_url="redis://127.0.0.1:6379/3", visibility_timeout_s=7200, max_attempts=4)
    )
    assert conf["broker_url"] == conf["result_backend"] == "redis://127.0.0.1:6379/3"
    assert conf["task_serializer"] == conf["result_serializer"] == "json"
    assert conf["accept_content"] == ["json"]
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["broker_transport_options"] == {"visibility_timeout": 7200}
    routes = conf["task_routes"]
    assert routes[TRAIN] == routes[GENERATE] == {"queue": "gpu"}
    assert routes[RENDER] == routes[FINALIZE] == {"queue": "cpu"}
    annotations = conf["task_annotations"]
    for name in (TRAIN, GENERATE, RENDER, FINALIZE):
        limits = annotations[name]
        assert 0 < limits["soft_time_limit"] < limits["time_limit"] < 7200
        assert limits["max_retries"] == 3


def test_training_may_run_until_just_before_the_visibility_timeout() -> None:
    limits = time_limits(Settings(visibility_timeout_s=6 * 3600))
    assert 5 * 3600 < limits[TRAIN].hard_s < 6 * 3600
    assert all(limits[n].hard_s < limits[TRAIN].hard_s for n in (GENERATE, RENDER, FINALIZE))


def test_a_visibility_timeout_shorter_than_a_job_is_refused() -> None:
    with pytest.raises(ConfigError, match="VISIBILITY_TIMEOUT_S=600 is too short"):
        celery_config(Settings(broker_url="redis://x:6379/0", visibility_timeout_s=600))


def test_no_broker_no_config() -> None:
    with pytest.raises(ConfigError, match="TUNEBATCH_BROKER_URL"):
        celery_config(Settings())
