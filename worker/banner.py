"""How the worker and beat show their Redis URL: the password masked, and no mask without one.

kombu writes every broker URL as ``redis://:**@host`` whether or not it has a password, so a
reader of the banner or the log cannot tell a Redis without a password from one with, which is
what they look for when a connection is refused. `install` makes Celery's worker and beat
banners and the consumer's "Connected to" / "Cannot connect to" log lines show `shown_url`
instead.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from celery.apps.beat import Beat as CeleryBeat
from celery.apps.worker import Worker as CeleryWorker

from common.state.redis import safe_url

MASK = "**"


def shown_url(url: str) -> str:
    """``redis://host:port/db``, or ``redis://[user]:**@host:port/db`` when there is a password."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return safe_url(url)
    if not password:
        return safe_url(url)
    plain = safe_url(url)
    scheme, rest = plain.split("://", 1)
    user = f"{parts.username}" if parts.username else ""
    host = rest.split("@", 1)[1] if parts.username else rest
    return f"{scheme}://{user}:{MASK}@{host}"


def _unmask(app: Any, text: str) -> str:
    return text.replace(app.connection().as_uri(), shown_url(str(app.conf.broker_url)))


class Worker(CeleryWorker):  # type: ignore[misc]  # Celery has no type hints
    def startup_info(self, artlines: bool = True) -> str:
        return _unmask(self.app, super().startup_info(artlines))


class Beat(CeleryBeat):  # type: ignore[misc]
    def startup_info(self, service: Any) -> str:
        return _unmask(self.app, super().startup_info(service))


class _BrokerUrlArgs(logging.Filter):
    """Shows `shown` wherever a log record's arguments carry kombu's masked broker URL: the
    consumer's ``Connected to %s`` and ``Cannot connect to %s`` lines."""

    def __init__(self, masked: str, shown: str) -> None:
        super().__init__()
        self.masked, self.shown = masked, shown

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and self.masked in record.args:
            record.args = tuple(self.shown if a == self.masked else a for a in record.args)
        return True


#: The loggers whose lines name the broker URL.
_URL_LOGGERS = ("celery.worker.consumer.connection", "celery.worker.consumer.consumer")


def install(app: Any) -> None:
    """Use `Worker` and `Beat` for `app`, and the filter on Celery's connection loggers."""
    # `Worker` and `Beat` are cached properties of the app: the instance's own value wins.
    app.__dict__["Worker"] = app.subclass_with_self(Worker)
    app.__dict__["Beat"] = app.subclass_with_self(Beat)
    url_filter = _BrokerUrlArgs(app.connection().as_uri(), shown_url(str(app.conf.broker_url)))
    for name in _URL_LOGGERS:  # one filter a logger: the app installed last names the URL
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _BrokerUrlArgs)]:
            logger.removeFilter(old)
        logger.addFilter(url_filter)
