"""What a scheduled generation does when it fires (the tasks in `worker.tasks` call these).

A firing (the ``run_schedule`` task, queue cpu: it only plans) loads the corpus and the model and
submits ONE batch through the same path as ``producer submit-batch``
(`common.dispatch.submit`). With ``retrain_if_changed`` and a corpus whose SHA-256 is not the
model's ``corpus_sha256``, it queues a training run with the model's recipe instead, chained to
``submit_scheduled``, which submits the batch with the new model once it is registered. The
schedules themselves live in `common.dispatch.schedule_store`.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator

from celery import Celery

from common.abc.corpus import Corpus, load_corpus
from common.dispatch.enqueue import enqueue
from common.dispatch.names import CPU_QUEUE, SUBMIT_SCHEDULED, TRAIN
from common.dispatch.schedule_store import get_schedule
from common.dispatch.submit import submit_batch
from common.errors import PermanentError
from common.jobs.context import Context
from common.jobs.schedules import ScheduleSpec, dataset_batch_spec, needs_retrain, retrain_spec
from common.lstm.registry import LATEST, resolve_model
from common.schemas import ModelRecord, RunProgress, new_run_id
from common.state.base import SharedRecords
from worker.celery_app import app

log = logging.getLogger(__name__)

#: How long what a firing did is remembered (`SharedRecords.remember_fired`), so a redelivered
#: message (worker killed before the acknowledgement) does not submit twice.
FIRED_TTL_S = 7 * 24 * 3600


def resolve_spec(celery_app: Celery, name_or_spec_json: str) -> ScheduleSpec:
    """The argument of run_schedule: a spec as JSON (beat) or a schedule's name (run-now)."""
    text = name_or_spec_json.strip()
    if text.startswith("{"):
        return ScheduleSpec.model_validate_json(text)
    return get_schedule(celery_app, text)


@contextlib.contextmanager
def _once(records: SharedRecords, task_id: str | None) -> Iterator[list[str]]:
    """Remember what the task with `task_id` did; a redelivery finds it in ``done[0]``."""
    done: list[str] = []
    prior = records.fired(task_id) if task_id else None
    if prior is not None:
        done.append(prior)
    yield done
    if task_id and done:
        records.remember_fired(task_id, done[0], FIRED_TTL_S)


def fire(
    ctx: Context,
    records: SharedRecords,
    name_or_spec_json: str,
    *,
    celery_app: Celery = app,
    task_id: str | None = None,
) -> str:
    """Plan and submit the schedule's batch, or queue the retraining run that precedes it.

    Returns ``batch <id>`` or ``training run <id>`` (for the log). Run again with the same
    `task_id` (a redelivery), it returns what the first run did and submits nothing.
    """
    with _once(records, task_id) as done:
        if not done:
            done.append(_fire(ctx, records, name_or_spec_json, celery_app))
    return done[0]


def _fire(ctx: Context, records: SharedRecords, name_or_spec_json: str, celery_app: Celery) -> str:
    spec = resolve_spec(celery_app, name_or_spec_json)
    corpus = load_corpus(ctx.store, spec.corpus)
    by_corpus = spec.corpus if spec.model.strip().lower() == LATEST else None
    model = resolve_model(ctx.store, spec.model, corpus=by_corpus)
    if spec.retrain_if_changed and needs_retrain(corpus, model):
        train = retrain_spec(spec.corpus, model)
        run = RunProgress(id=new_run_id(), spec=train, epochs=train.epochs)
        records.create_run(run)
        then = celery_app.signature(
            SUBMIT_SCHEDULED, args=(spec.model_dump_json(),), queue=CPU_QUEUE
        )
        enqueue(TRAIN, train.model_dump_json(), run.id, task_id=run.id, celery_app=celery_app,
                link=then)  # fmt: skip
        log.info(
            "schedule %s: corpus %s changed since model %s; training run %s first",
            spec.name, spec.corpus, model.short_id, run.id,
        )  # fmt: skip
        return f"training run {run.id}"
    return f"batch {_submit(ctx, records, spec, corpus, model, celery_app)}"


def submit_after_training(
    ctx: Context,
    records: SharedRecords,
    model_id: str | None,
    spec_json: str,
    *,
    celery_app: Celery = app,
    task_id: str | None = None,
) -> str:
    """The end of the retraining chain: submit the schedule's batch with the new model."""
    with _once(records, task_id) as done:
        if not done:
            done.append(_submit_after_training(ctx, records, model_id, spec_json, celery_app))
    return done[0]


def _submit_after_training(
    ctx: Context, records: SharedRecords, model_id: str | None, spec_json: str, celery_app: Celery
) -> str:
    spec = ScheduleSpec.model_validate_json(spec_json)
    if not model_id:  # the training job was given up on (see worker.tasks.JobTask)
        raise PermanentError(
            f"schedule {spec.name}: the retraining run registered no model; no batch submitted"
        )
    model = resolve_model(ctx.store, model_id)
    corpus = load_corpus(ctx.store, spec.corpus)
    return f"batch {_submit(ctx, records, spec, corpus, model, celery_app)}"


def _submit(
    ctx: Context,
    records: SharedRecords,
    spec: ScheduleSpec,
    corpus: Corpus,
    model: ModelRecord,
    celery_app: Celery,
) -> str:
    seed = spec.seed if spec.seed is not None else secrets.randbelow(2**31)
    batch_spec = dataset_batch_spec(
        spec, corpus, model, chunk_size=ctx.settings.chunk_size, seed=seed
    )
    batch = submit_batch(ctx, records, batch_spec, celery_app=celery_app)
    log.info(
        "schedule %s: batch %s, %d tunes primed by %s with model %s",
        spec.name, batch.id, batch_spec.count, corpus.record.name, model.short_id,
    )  # fmt: skip
    return batch.id
