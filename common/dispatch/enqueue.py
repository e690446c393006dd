"""Send a job by task name: the one path from a sender (producer, worker, beat task) to a queue."""

from __future__ import annotations

from typing import Any

from celery import Celery

from common.dispatch.names import QUEUES
from common.errors import BrokerError


def enqueue(
    name: str,
    *args: Any,
    celery_app: Celery,
    task_id: str | None = None,
    link: Any = None,
) -> str:
    """Send task `name` by name (the sender needs no task code); return the message's task id.

    `link`: a signature run with this job's return value when it succeeds (a chain).

    Broker failures become `BrokerError` so every caller shows one line, not kombu's traceback.
    """
    try:
        result = celery_app.send_task(
            name,
            args=list(args),
            task_id=task_id,
            queue=QUEUES.get(name),
            ignore_result=True,
            link=link,
        )
    except Exception as exc:  # kombu raises OperationalError and friends
        from kombu.exceptions import KombuError

        if isinstance(exc, KombuError | OSError):
            from common.state.redis import safe_url

            where = safe_url(str(celery_app.conf.broker_url))
            raise BrokerError(
                f"cannot enqueue {name} on Redis at {where} ({exc}); is redis-server running?"
            ) from None
        raise
    return str(result.id)
