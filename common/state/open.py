"""The shared record store the settings describe (distributed mode)."""

from __future__ import annotations

from common.state.base import SharedRecords

__all__ = ["shared_records"]


def shared_records(url: str, *, retries: int = 3, timeout_s: float = 5.0) -> SharedRecords:
    """The records at `url`: Redis, the broker itself, so one server holds queues and state.

    `retries` and `timeout_s` bound how long a dead server takes to report: the producer asks
    for seconds (a person waits), workers for more (Celery retries the task anyway)."""
    from common.state.redis import RedisRecords  # the redis client only where it is used

    return RedisRecords.from_url(url, retries=retries, timeout_s=timeout_s)
