"""Worker log lines as JSON (``TUNEBATCH_LOG_FORMAT=json``), for a log pipeline.

One JSON object per line: time, level, logger, process and message, plus the ids of the job
the line belongs to, taken from the Celery task the process is running: ``task_id``, ``task``,
``batch_id`` and ``tune_id`` (renders) or ``chunk`` (generation). A line with a traceback keeps
it in ``exc``, still on one line, so a log shipper never splits a record.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from celery import current_task

from common.dispatch.names import FINALIZE, GENERATE, RENDER

#: Tasks whose first argument is a batch id, and what their second one is.
_SECOND_ARG = {RENDER: "tune_id", GENERATE: "chunk", FINALIZE: None}


def job_ids() -> dict[str, Any]:
    """The running task's ids (empty outside a task)."""
    task = current_task
    request = getattr(task, "request", None) if task else None
    task_id = getattr(request, "id", None)
    if not task_id:
        return {}
    ids: dict[str, Any] = {"task_id": task_id, "task": task.name}
    args = list(getattr(request, "args", None) or ())
    if task.name in _SECOND_ARG and args:
        ids["batch_id"] = str(args[0])
        second = _SECOND_ARG[task.name]
        if second and len(args) > 1:
            ids[second] = args[1]
    return ids


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the running job's ids."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        entry.update(job_ids())
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str, fmt: str) -> None:
    """Log to stderr at `level`, as text or (`fmt` == "json") JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
        # Libraries' warnings (e.g. Celery's about running as root) become JSON lines too.
        logging.captureWarnings(True)
    else:
        handler.setFormatter(
            logging.Formatter("[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
