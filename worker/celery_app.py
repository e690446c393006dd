"""The worker's Celery app: what ``worker gpu|cpu|beat`` and ``celery -A worker.celery_app`` run.

Its configuration, the task names and the enqueue path are `common.dispatch`'s, shared with the
producer; this module holds the process-wide app the tasks are registered on, and the retry
policy of the tasks that run on it.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from common.dispatch import config
from common.dispatch import enqueue as sender
from common.settings import Settings

#: Base and cap (seconds) of the exponential backoff between retries of a transient error, and
#: how long a job keeps retrying one before it gives up (well inside the render's 5-minute soft
#: limit): Redis restarting or the bucket away for a minute or two does not fail a tune.
RETRY_BACKOFF_S = 2
RETRY_BACKOFF_MAX_S = 30
TRANSIENT_BUDGET_S = 150

app = Celery("tunebatch")


def configure(settings: Settings) -> Celery:
    """Apply `settings` to the worker's app; call before the worker or beat starts."""
    return config.configure(settings, app)


def _defaults_from_environment() -> dict[str, Any]:
    """``TUNEBATCH_*`` settings for ``celery -A worker.celery_app ...`` (beat, Flower, inspect).

    Defaults only: `configure` (the worker command) overrides them, and without
    ``TUNEBATCH_BROKER_URL`` there are none, so importing this module never needs Redis settings.
    """
    settings = Settings()
    return config.celery_config(settings) if settings.broker_url else {}


app.add_defaults(_defaults_from_environment)


def enqueue(name: str, *args: Any, task_id: str | None = None, link: Any = None) -> str:
    """Send task `name` through the worker's app (the next step of a job, a firing's batch)."""
    return sender.enqueue(name, *args, celery_app=app, task_id=task_id, link=link)
