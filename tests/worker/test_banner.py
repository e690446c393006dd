"""The worker's log names its Redis as the user wrote it: masked only when it has a password."""

from __future__ import annotations

import logging

import pytest
from celery import Celery

from worker import banner


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6399/0", "redis://127.0.0.1:6399/0"),
        ("redis://:s3cret@127.0.0.1:6399/0", "redis://:**@127.0.0.1:6399/0"),
    ],
)
def test_connection_lines_show_the_url_without_a_false_mask(
    url: str, shown: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = Celery(broker=url)
    banner.install(app)
    masked = app.connection().as_uri()  # kombu's form: always redis://:**@...
    assert masked.startswith("redis://:**@")
    with caplog.at_level(logging.INFO):
        logging.getLogger("celery.worker.consumer.connection").info("Connected to %s", masked)
        logging.getLogger("celery.worker.consumer.consumer").error(
            "consumer: Cannot connect to %s: %s.", masked, "Connection refused"
        )
    assert caplog.messages == [
        f"Connected to {shown}",
        f"consumer: Cannot connect to {shown}: Connection refused.",
    ]
    assert "s3cret" not in caplog.text
