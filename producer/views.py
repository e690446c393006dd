"""How the producer shows things to people: rich tables and progress bars, and JSON for scripts.

Kept apart from the commands so each command reads as "do the thing, then show it".
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

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

console = Console()
err_console = Console(stderr=True)


def print_json(data: Any) -> None:
    if isinstance(data, BaseModel):
        text = data.model_dump_json(indent=2)
    elif isinstance(data, list) and all(isinstance(d, BaseModel) for d in data):
        text = json.dumps([d.model_dump(mode="json") for d in data], indent=2)
    else:
        text = json.dumps(data, indent=2, default=str)
    # Plain print: rich would wrap and colour what scripts parse.
    print(text)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=title, title_justify="left")
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    console.print(t)


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
    """Implements `common.training.TrainingObserver` with a rich bar per epoch."""

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
            f"epoch {epoch}: train {metrics['loss'] / math.log(2):.3f} bits/char, validation "
            f"{metrics['val_bits_per_char']:.3f} bits/char, {metrics.get('seconds', 0):.0f} s "
            "(checkpoint saved)"
        )


def show_batch(batch: Any, counts: dict[str, int], tunes: Sequence[Any]) -> None:
    """`rq info`-style view of one batch: parameters, a bar of final tunes, failures."""
    spec = batch.spec
    total = spec.count
    final = counts.get("done", 0) + counts.get("failed", 0) + counts.get("cancelled", 0)
    state = "cancelled" if batch.cancelled else ("finished" if batch.manifest_key else "running")
    console.print(
        f"batch [bold]{batch.id}[/] ({state}): {total} tunes, model {spec.model_id[:12]}, "
        f"T={spec.temperature}, top-k={spec.top_k}, seed={spec.seed}, "
        f"formats={','.join(spec.formats)}"
    )
    width = 40
    filled = int(width * final / total) if total else width
    console.print(f"[{'#' * filled}{'.' * (width - filled)}] {final}/{total} final")
    table("Tunes by status", ["status", "count"], [(k, v) for k, v in counts.items() if v])
    failed = [t for t in tunes if t.status == "failed"][:10]
    if failed:
        table("Failures (first 10)", ["tune", "error"], [(t.tune_id, t.error) for t in failed])
    if batch.manifest_key:
        console.print(f"manifest: {batch.manifest_key}")
