"""Every Redis key tunebatch writes, built here and nowhere else (all under ``tunebatch:``).

::

    tunebatch:batches                     sorted set: batch id → created time (for `list`)
    tunebatch:open-batches                set: batches without a manifest (for the reconciler)
    tunebatch:reconcile                   SET NX PX: one worker reconciles per period
    tunebatch:reconciled                  hash: task name → jobs the reconciler sent again
    tunebatch:batch:<id>                  BatchRecord JSON (written last when a batch is created)
    tunebatch:batch:<id>:tunes            hash: tune id → TuneRecord JSON
    tunebatch:batch:<id>:counts           hash: status → number of tunes
    tunebatch:batch:<id>:cancelled        the cancel flag; never cleared by a later save
    tunebatch:batch:<id>:finalize         SET NX guard: finalize_batch is enqueued once
    tunebatch:runs                        sorted set: training run id → created time
    tunebatch:run:<id>                    RunProgress JSON (status, epoch, step, loss)
    tunebatch:attempts:<task id>          deliveries of one task message so far
    tunebatch:schedule-fired:<task id>    what one schedule firing did ("batch <id>")
    tunebatch:dead-letter                 list of DeadLetter JSON entries

Ids are checked before they become part of a key, so no input can reach another record's key.
The Celery queues (``gpu``, ``cpu``) and celery-redbeat's keys belong to those libraries.
"""

from __future__ import annotations

from common.schemas import check_batch_id, check_run_id

PREFIX = "tunebatch"
BATCHES = f"{PREFIX}:batches"
RUNS = f"{PREFIX}:runs"
DEAD_LETTER = f"{PREFIX}:dead-letter"
OPEN_BATCHES = f"{PREFIX}:open-batches"
RECONCILE_LOCK = f"{PREFIX}:reconcile"
RECONCILED = f"{PREFIX}:reconciled"


def batch_key(batch_id: str) -> str:
    """The batch record; its tunes, counters and flags hang below it."""
    return f"{PREFIX}:batch:{check_batch_id(batch_id)}"


def batch_tunes_key(batch_id: str) -> str:
    return f"{batch_key(batch_id)}:tunes"


def batch_counts_key(batch_id: str) -> str:
    return f"{batch_key(batch_id)}:counts"


def batch_cancelled_key(batch_id: str) -> str:
    return f"{batch_key(batch_id)}:cancelled"


def batch_finalize_key(batch_id: str) -> str:
    return f"{batch_key(batch_id)}:finalize"


def batch_keys(batch_id: str) -> list[str]:
    """Every key of one batch (to delete a batch whole)."""
    return [
        batch_key(batch_id),
        batch_tunes_key(batch_id),
        batch_counts_key(batch_id),
        batch_cancelled_key(batch_id),
        batch_finalize_key(batch_id),
    ]


def run_progress_key(run_id: str) -> str:
    """A training run's live progress (its durable record is `lstm.training.run_key` in the
    artifact store)."""
    return f"{PREFIX}:run:{check_run_id(run_id)}"


def attempts_key(task_id: str) -> str:
    return f"{PREFIX}:attempts:{task_id}"


def schedule_fired_key(task_id: str) -> str:
    return f"{PREFIX}:schedule-fired:{task_id}"
