"""``producer schedule add|list|remove|run-now``: scheduled dataset-wide generation.

The schedules live in Redis as celery-redbeat entries (`common.dispatch.schedule_store`); beat
fires them and a cpu worker submits the batch, so they need distributed mode.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from common.formats import parse_formats
from common.params import (
    DEFAULT_AUDIO,
    DEFAULT_FORM,
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_TRIES,
    DEFAULT_TEMPERATURE,
    DEFAULT_VALID_ONLY,
)

from producer import views
from producer.options import (
    DEFAULT_FORMATS_OPT,
    DEFAULT_INSTRUMENT_OPT,
    AudioOpt,
    FormatsOpt,
    FormOpt,
    InstrumentOpt,
    JsonOpt,
    MaxCharsOpt,
    MaxTriesOpt,
    OptionalSeedOpt,
    TemperatureOpt,
    TopKOpt,
    ValidOnlyOpt,
    backend,
    handles_errors,
    store,
)

if TYPE_CHECKING:
    from common.dispatch.schedule_store import ScheduleInfo

schedule_app = typer.Typer(
    help="Scheduled dataset-wide generation (distributed mode: Celery beat + redbeat).",
    no_args_is_help=True,
)


def _when(t: datetime | None, none: str = "-") -> str:
    """A schedule's time in UTC to the second (beat fires on the second, not the minute)."""
    return f"{t.astimezone(UTC):%Y-%m-%d %H:%M:%S}" if t else none


def schedule_row(info: ScheduleInfo) -> tuple[str | int, ...]:
    spec = info.spec
    return (spec.name, info.when, spec.corpus, spec.per_tune, spec.model[:12],
            "yes" if spec.retrain_if_changed else "no", _when(info.last_run_at, "never"),
            _when(info.next_run_at, "no run ahead"), _missed(info))  # fmt: skip


def _missed(info: ScheduleInfo) -> str:
    """The slots beat skipped, or '': when Redis or beat itself was away for several slots, only
    the latest fires (late) once they are back."""
    if not info.missed_slots:
        return ""
    return (
        f"missed: {info.missed_slots} slot(s) while beat was down or could not reach Redis, the "
        f"last {_when(info.last_missed_slot)} UTC (the slot after them fired once, late)"
    )


@schedule_app.command("add")
@handles_errors
def schedule_add(
    name: Annotated[str, typer.Argument(help="Schedule name (lowercase letters, digits, - _).")],
    cron: Annotated[
        str, typer.Option(help='Five cron fields in UTC, e.g. "0 3 * * *" (03:00 every day).')
    ],
    corpus: Annotated[str, typer.Option(help="Imported corpus whose every tune primes tunes.")],
    per_tune: Annotated[int, typer.Option(min=1, max=1000, help="New tunes per dataset tune.")] = 1,
    model: Annotated[
        str, typer.Option(help="Model id, unique prefix or 'latest' (the corpus's newest).")
    ] = "latest",
    retrain_if_changed: Annotated[
        bool,
        typer.Option(
            "--retrain-if-changed",
            help="Train a new model first (same preset) when the corpus changed since the "
            "latest model was trained on it.",
        ),
    ] = False,
    temperature: TemperatureOpt = DEFAULT_TEMPERATURE,
    top_k: TopKOpt = 0,
    seed: OptionalSeedOpt = None,
    max_chars: MaxCharsOpt = DEFAULT_MAX_CHARS,
    valid_only: ValidOnlyOpt = DEFAULT_VALID_ONLY,
    max_tries: MaxTriesOpt = DEFAULT_MAX_TRIES,
    formats: FormatsOpt = DEFAULT_FORMATS_OPT,
    audio: AudioOpt = DEFAULT_AUDIO,
    instrument: InstrumentOpt = DEFAULT_INSTRUMENT_OPT,
    form: FormOpt = DEFAULT_FORM,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a schedule of the same name.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a schedule: each time it fires, one batch with PER_TUNE tunes per dataset tune."""
    from common.dispatch import schedule_store
    from common.jobs.schedules import ScheduleSpec

    spec = ScheduleSpec(
        name=name,
        cron=cron,
        corpus=corpus,
        per_tune=per_tune,
        model=model,
        retrain_if_changed=retrain_if_changed,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        max_chars=max_chars,
        valid_only=valid_only,
        max_tries=max_tries,
        formats=parse_formats(formats),
        audio=audio,
        instrument=instrument,
        form=form,
    )
    schedule_store.check_spec(spec)  # a bad cron is one line before any connection
    celery_app = backend().schedule_app()
    from common.abc.corpus import corpus_record
    from common.lstm.registry import resolve_model

    corpus_record(store(), spec.corpus)  # fail now, not at 3 am on a worker
    resolve_model(store(), spec.model, corpus=spec.corpus if spec.model == "latest" else None)
    info = schedule_store.add_schedule(celery_app, spec, replace=replace)
    if as_json:
        views.print_json(info)
        return
    views.console.print(
        f"schedule [bold]{spec.name}[/] ({spec.cron} UTC): {spec.per_tune} tunes per tune of "
        f"{spec.corpus}; next run {_when(info.next_run_at)} UTC"
    )


@schedule_app.command("list")
@handles_errors
def schedule_list(as_json: JsonOpt = False) -> None:
    """List the schedules with their last and next run."""
    from common.dispatch import schedule_store

    infos = schedule_store.list_schedules(backend().schedule_app())
    if as_json:
        views.print_json(infos)
        return
    views.schedule_list([schedule_row(info) for info in infos])


@schedule_app.command("remove")
@handles_errors
def schedule_remove(name: Annotated[str, typer.Argument(help="Schedule name.")]) -> None:
    """Remove a schedule (beat stops firing it at its next tick)."""
    from common.dispatch import schedule_store

    schedule_store.remove_schedule(backend().schedule_app(), name)
    views.console.print(f"schedule {name} removed")


@schedule_app.command("run-now")
@handles_errors
def schedule_run_now(
    name: Annotated[str, typer.Argument(help="Schedule name.")],
    as_json: JsonOpt = False,
) -> None:
    """Fire a schedule now (its timetable is unchanged); a cpu worker submits the batch."""
    from common.dispatch import schedule_store

    task_id = schedule_store.run_now(backend().schedule_app(), name)
    if as_json:
        views.print_json({"schedule": name, "task_id": task_id})
        return
    views.console.print(
        f"schedule {name} fired (task {task_id}); `producer list` shows its batch shortly"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(schedule_app, name="schedule")
