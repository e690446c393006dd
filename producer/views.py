"""How the producer shows things to people: rich tables and progress bars, and JSON for scripts.

Kept apart from the commands so each command reads as "do the thing, then show it".
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from common.jobs.cancel import CancelOutcome
    from common.schemas import BatchRecord, RunProgress, TuneRecord
    from common.state.base import JobRecords
    from rich.console import Group

    from producer.backend import Retried

console = Console()
err_console = Console(stderr=True)


def print_json(data: object) -> None:
    if isinstance(data, BaseModel):
        text = data.model_dump_json(indent=2)
    elif isinstance(data, list) and all(isinstance(d, BaseModel) for d in data):
        text = json.dumps([d.model_dump(mode="json") for d in data], indent=2)
    else:
        text = json.dumps(data, indent=2, default=str)
    # Plain print: rich would wrap and colour what scripts parse.
    print(text)


#: A cell this short, or without a space (ids, numbers, dates), never wraps: a table that is too
#: wide for the terminal wraps its text columns instead, so "85.4 %" never becomes "85.4" / "%".
SHORT_CELL = 16


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A table that fits 80 columns as well as it can: no box (it costs a column per border),
    whole short cells, and no column that is empty in every row."""
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    shown = [i for i in range(len(columns)) if not cells or any(row[i] for row in cells)]
    t = Table(
        title=title, title_justify="left", box=None, padding=(0, 2, 0, 0), pad_edge=False,
        header_style="bold underline", min_width=len(title),
    )  # fmt: skip
    natural = [max([len(columns[i]), *(len(row[i]) for row in cells)]) for i in shown]
    # Whole cells only where the table fits: rich crops what cannot wrap in a table too wide.
    fits = sum(natural) + 2 * (len(shown) - 1) <= console.width
    for i in shown:
        whole = fits and all(len(row[i]) <= SHORT_CELL or " " not in row[i] for row in cells)
        t.add_column(columns[i], no_wrap=whole, overflow="fold")
    for row in cells:
        t.add_row(*(row[i] for i in shown))
    console.print(t)


def when(moment: dt.datetime) -> str:
    """A record's time as ``ls -l`` writes it: "Dec 06 16:16" this year, else the date."""
    if moment.year == dt.datetime.now(dt.UTC).year:
        return f"{moment:%b %d %H:%M}"
    return f"{moment:%Y-%m-%d}"


def batch_list(batches: Sequence[tuple[BatchRecord, dict[str, int]]]) -> None:
    """`producer list`: one row per batch that fits 80 columns with every id whole (ids are
    what people copy; the model and the rest are in `status` and `--json`)."""
    table(
        "Batches (times UTC)",
        ["id", "tunes", "done", "failed", "cancelled", "state", "created"],
        [
            (batch.id, batch.spec.count, counts.get("done", 0), counts.get("failed", 0),
             counts.get("cancelled", 0), batch_state(batch), when(batch.created_at))
            for batch, counts in batches
        ],
    )  # fmt: skip


def schedule_list(rows: Sequence[Sequence[object]]) -> None:
    """`producer schedule list`: two lines per schedule, so the times (UTC, to the second) and
    the names are never cut at 80 columns, and a third when beat missed slots; `rows` as
    `producer.schedule_cli.schedule_row` makes them."""
    if not rows:
        console.print("no schedules; add one with `producer schedule add`")
        return
    for name, when, corpus, per_tune, model, retrain, last, next_run, missed in rows:
        console.print(
            f"[bold]{name}[/]  {when} (UTC): {per_tune} per tune of {corpus}, model {model}",
            soft_wrap=True,
        )
        console.print(
            f"  retrain: {retrain}   last run: {last}   next run: {next_run} UTC",
            highlight=False,
            soft_wrap=True,
        )
        if missed:
            console.print(f"  [yellow]{missed}[/]", highlight=False, soft_wrap=True)


def fmt_float(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def progress_bar(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )


class StageProgress:
    """A bar per stage ('generate', 'render'), fed by (stage, done, total) callbacks."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total, info="")
        self.progress.update(self.tasks[stage], completed=done, total=total)


@contextmanager
def stage_progress(enabled: bool = True) -> Iterator[StageProgress | None]:
    if not enabled:
        yield None
        return
    with progress_bar() as progress:
        yield StageProgress(progress)


class TrainingBar:
    """Implements `common.lstm.training.TrainingObserver` with a rich bar per epoch."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None
        self.epochs = 0
        self.steps = 0

    def on_start(self, run_id: str, epochs: int, steps_per_epoch: int, initial_epoch: int) -> None:
        self.epochs, self.steps = epochs, steps_per_epoch
        err_console.print(
            f"run [bold]{run_id}[/]: {epochs} epochs of {steps_per_epoch} batches"
            + (f", resuming after epoch {initial_epoch}" if initial_epoch else "")
        )

    def on_batch(self, epoch: int, step: int, loss: float) -> None:
        if self.task is None:
            self.task = self.progress.add_task(
                f"epoch {epoch + 1}/{self.epochs}", total=self.steps, info=""
            )
        self.progress.update(self.task, completed=step, info=f"loss {loss:.3f}")

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=self.steps)
            self.task = None
        err_console.print(
            f"epoch {epoch}: train {metrics['loss'] / math.log(2):.3f} bits/char, held-out "
            f"{metrics['val_bits_per_char']:.3f} bits/char, {metrics.get('seconds', 0):.0f} s "
            "(checkpoint saved)"
        )


def show_batch(batch: BatchRecord, counts: dict[str, int], tunes: Sequence[TuneRecord]) -> None:
    """`rq info`-style view of one batch: parameters, a bar of final tunes, failures."""
    spec = batch.spec
    total = spec.count
    final = counts.get("done", 0) + counts.get("failed", 0) + counts.get("cancelled", 0)
    state = batch_state(batch)
    console.print(
        f"batch [bold]{batch.id}[/] ({state}): {total} tunes, model {spec.model_id[:12]}, "
        f"T={spec.temperature}, top-k={spec.top_k}, seed={spec.seed}, "
        f"formats={','.join(spec.formats)}, audio={spec.audio}"
    )
    width = 40
    filled = int(width * final / total) if total else width
    console.print(f"[{'#' * filled}{'.' * (width - filled)}] {final}/{total} final", markup=False)
    table("Tunes by status", ["status", "count"], [(k, v) for k, v in counts.items() if v])
    failed = [t for t in tunes if t.status == "failed"][:10]
    if failed:
        table("Failures (first 10)", ["tune", "error"], [(t.tune_id, t.error) for t in failed])
    if batch.manifest_key:
        console.print(f"manifest: {batch.manifest_key}")
    elif final == total:
        console.print(MANIFEST_PENDING.format(batch=batch.id))


#: `status` of a batch whose tunes are all final but whose manifest is not written: normally for
#: the seconds finalize takes; if it stays, its finalize job was given up, and `retry` re-runs it.
MANIFEST_PENDING = (
    "every tune is final; the manifest is being written. If this stays, its finalize job was "
    "given up (see `producer dead-letter`): `producer retry {batch} --failed` writes it."
)


def batch_json(
    batch: BatchRecord, counts: dict[str, int], tunes: Sequence[TuneRecord]
) -> dict[str, Any]:
    """`producer status --json`: what the table shows (state, counts, every failure with its
    error), plus the whole batch record."""
    return {
        "batch": batch.model_dump(mode="json"),
        "state": batch_state(batch),
        "counts": counts,
        "failures": [
            {"tune_id": t.tune_id, "error": t.error} for t in tunes if t.status == "failed"
        ],
    }


def parse_duration(text: str) -> int:
    """Seconds in '90', '30m', '1h', '2d' (what `producer url --expires` accepts)."""
    from common.errors import InvalidInputError

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    factor = units.get(value[-1:], 0)
    number = value[:-1] if factor else value
    if not factor:
        factor = 1
    try:
        seconds = int(float(number) * factor)
    except ValueError:
        raise InvalidInputError(
            f"{text!r} is not a duration; use seconds or a number with s, m, h or d (e.g. 1h)"
        ) from None
    return seconds


class RunBar:
    """A bar per epoch for a training run followed through its Redis record."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None
        self.epochs_done = -1
        self.announced = False

    def update(self, run: RunProgress) -> None:
        if run.status == "queued" and not self.announced:
            err_console.print(f"run [bold]{run.id}[/] queued; waiting for a gpu worker")
            self.announced = True
        if run.steps is None or run.epochs is None:
            return
        if run.epochs_done != self.epochs_done:
            if self.task is not None:
                self.progress.remove_task(self.task)
                self.task = None
            if self.epochs_done >= 0 and run.epochs_done > 0:
                err_console.print(
                    f"epoch {run.epochs_done}: held-out {fmt_float(run.val_bits_per_char)} "
                    "bits/char (checkpoint saved)"
                )
            self.epochs_done = run.epochs_done
            if run.epochs_done < run.epochs:
                self.task = self.progress.add_task(
                    f"epoch {run.epochs_done + 1}/{run.epochs}", total=run.steps, info=""
                )
        if self.task is not None:
            self.progress.update(self.task, completed=run.step, info=f"loss {fmt_float(run.loss)}")


def show_run(run: RunProgress) -> None:
    # A finished run ran every step of its last epoch (records written before the worker said
    # so show step 0 there).
    step = run.steps if run.status == "done" and run.steps else run.step
    console.print(
        f"run [bold]{run.id}[/] ({run.status}): {run.spec.preset} on {run.spec.corpus}, "
        f"epoch {run.epochs_done}/{run.epochs or '?'}, step {step}/{run.steps or '?'}, "
        f"loss {fmt_float(run.loss)}, held-out {fmt_float(run.val_bits_per_char)} bits/char"
    )
    if run.model_id:
        console.print(f"model: {run.model_id}")
    if run.error:
        console.print(f"error: {run.error}")


def cancel_line(outcome: CancelOutcome) -> str:
    """What `producer cancel` did (a `common.jobs.cancel.CancelOutcome`), in one line."""
    if outcome.finished:
        parts = ", ".join(f"{n} {status}" for status, n in outcome.counts.items() if n)
        return (
            f"batch {outcome.batch_id} is already finished ({parts}); nothing to cancel, "
            "nothing changed"
        )
    return (
        f"batch {outcome.batch_id} cancelled ({outcome.cancelled} tunes not finished are "
        "cancelled; running jobs stop at their next step and keep no files)"
    )


def batch_state(batch: BatchRecord) -> str:
    """The one word every view shows for a batch: ``cancelled`` once it is flagged cancelled
    (whether or not its manifest is written yet: a cancelled batch stays cancelled), else
    ``finished`` once its manifest is written, else ``running``."""
    return "cancelled" if batch.cancelled else "finished" if batch.manifest_key else "running"


def retry_line(result: Retried) -> str:
    """What `producer retry --failed` did: the counts once the work ran here, or the work
    queued again for the workers."""
    if result.manifest is not None:
        return f"batch {result.batch_id}: {result.manifest.counts}"
    renders, chunks = len(result.work["render"]), len(result.work["generate"])
    return f"batch {result.batch_id}: {renders} renders and {chunks} generation chunks queued again"


def retrying_line(started: Retried) -> str:
    """The work `producer retry --failed` is about to run in this process."""
    renders, chunks = len(started.work["render"]), len(started.work["generate"])
    return f"retrying {renders} renders and {chunks} generation chunks"


def status_line(batch: BatchRecord, counts: dict[str, int]) -> str:
    """One line per watched state: ``<time> batch <id> (<state>) 12/200 final: done 10, ...``."""
    total = batch.spec.count
    final = counts.get("done", 0) + counts.get("failed", 0) + counts.get("cancelled", 0)
    parts = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
    stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%SZ")
    return f"{stamp} batch {batch.id} ({batch_state(batch)}) {final}/{total} final: {parts}"


def watch_batch(
    records: JobRecords, batch_id: str, interval_s: float = 1.0, *, live: bool | None = None
) -> None:
    """Follow the batch until its manifest is written (Ctrl-C stops watching only).

    On a terminal the status table is redrawn in place; otherwise (a pipe, a log file, CI) one
    line is printed per change of the counts or the state, so a reader sees progress as it
    happens and every line is whole.
    """
    import time

    if live is None:
        live = console.is_terminal
    if not live:
        last = ""
        while True:
            batch = records.get_batch(batch_id)
            counts = records.counts(batch_id)
            line = status_line(batch, counts)
            key = line.split(" ", 1)[1]  # the time stamp alone is no change
            if key != last:
                print(line, flush=True)
                last = key
            if batch.manifest_key:
                return
            time.sleep(interval_s)

    from rich.live import Live

    def render() -> tuple[Group, bool]:
        from rich.console import Group
        from rich.text import Text

        batch = records.get_batch(batch_id)
        counts = records.counts(batch_id)
        total = batch.spec.count
        final = counts.get("done", 0) + counts.get("failed", 0) + counts.get("cancelled", 0)
        # The heading is its own line: as a table title it wrapped to the narrow table's width
        # and split the batch id.
        heading = Text(f"batch {batch_id} ({batch_state(batch)})", no_wrap=True)
        t = Table()
        t.add_column("status")
        t.add_column("count", justify="right")
        for name, n in counts.items():
            if n:
                t.add_row(name, str(n))
        width = 40
        filled = int(width * final / total) if total else width
        bar = Text(f"[{'#' * filled}{'.' * (width - filled)}] {final}/{total} final")
        return Group(heading, t, bar), batch.manifest_key is not None

    view, done = render()
    with Live(view, console=console, auto_refresh=False) as live_view:
        while not done:
            time.sleep(interval_s)
            view, done = render()
            live_view.update(view, refresh=True)
