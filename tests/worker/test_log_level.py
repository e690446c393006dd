"""A worker's log level: --loglevel, else TUNEBATCH_LOG_LEVEL (against a real redis-server)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests import servers as srv
from worker import cli


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_the_setting_sets_the_level_and_the_option_wins(
    redis_server: srv.RedisServer, monkeypatch: pytest.MonkeyPatch, root_logger: logging.Logger
) -> None:
    monkeypatch.setenv("TUNEBATCH_BROKER_URL", redis_server.url)
    monkeypatch.setenv("TUNEBATCH_LOG_LEVEL", "debug")
    cli._start(None, bucket=False)
    assert root_logger.level == logging.DEBUG
    cli._start("warning", bucket=False)
    assert root_logger.level == logging.WARNING
