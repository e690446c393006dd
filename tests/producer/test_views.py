"""One rule decides a batch's state, and every view shows it: a cancelled batch whose manifest
is written is "cancelled" in `status`, `status --json`, `list` and both kinds of `--watch`."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from common.schemas import BatchRecord, BatchSpec, TuneRecord, TuneStatus, tune_id
from common.state.local import LocalRecords
from producer import options, views
from tests.producer_cli import run

BATCH = "b20260101-000000-cafe01"
MODEL = "ab" * 32


@pytest.fixture
def records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRecords]:
    """Embedded mode with its records in tmp_path."""
    for key in list(os.environ):
        if key.startswith("TUNEBATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TUNEBATCH_DATA_DIR", str(tmp_path / "data"))
    options.settings.cache_clear()
    yield LocalRecords(tmp_path / "data" / "records")
    options.settings.cache_clear()


def _ended_batch(recs: LocalRecords, *, cancelled: bool) -> BatchRecord:
    """A batch of 4 tunes whose manifest is written: 2 done, 2 cancelled when `cancelled`."""
    batch = BatchRecord(id=BATCH, spec=BatchSpec(count=4, model_id=MODEL, formats=("abc",)))
    status = [TuneStatus.DONE if i < 2 or not cancelled else TuneStatus.CANCELLED
              for i in range(4)]  # fmt: skip
    recs.create_batch(batch, [TuneRecord(batch_id=BATCH, tune_id=tune_id(i), index=i,
                                         status=status[i]) for i in range(4)])  # fmt: skip
    batch.cancelled = cancelled
    batch.manifest_key = f"batches/{BATCH}/manifest.json"
    recs.save_batch(batch)
    return batch


def _live_heading(recs: LocalRecords, monkeypatch: pytest.MonkeyPatch) -> str:
    out = io.StringIO()
    monkeypatch.setattr(views, "console", Console(file=out, force_terminal=True, width=100))
    views.watch_batch(recs, BATCH, interval_s=0.01, live=True)
    return out.getvalue()


@pytest.mark.parametrize(("cancelled", "state"), [(True, "cancelled"), (False, "finished")])
def test_every_view_shows_the_same_state(
    records: LocalRecords,
    monkeypatch: pytest.MonkeyPatch,
    cancelled: bool,
    state: str,
) -> None:
    _ended_batch(records, cancelled=cancelled)
    code, out, _ = run("status", BATCH)
    assert code == 0 and f"({state})" in out.splitlines()[0]
    code, out, _ = run("status", BATCH, "--json")
    assert code == 0 and json.loads(out)["state"] == state
    code, out, _ = run("status", BATCH, "--watch")  # not a terminal: one line per change
    assert code == 0 and f"batch {BATCH} ({state})" in out
    code, out, _ = run("list")
    assert code == 0 and state in out
    assert f"batch {BATCH} ({state})" in _live_heading(records, monkeypatch)


def test_the_rule_cancelled_before_finished_before_running(tmp_path: Path) -> None:
    spec = BatchSpec(count=1, model_id=MODEL, formats=("abc",))
    assert views.batch_state(BatchRecord(id=BATCH, spec=spec)) == "running"
    key = f"batches/{BATCH}/manifest.json"
    assert views.batch_state(BatchRecord(id=BATCH, spec=spec, manifest_key=key)) == "finished"
    assert views.batch_state(BatchRecord(id=BATCH, spec=spec, cancelled=True)) == "cancelled"
    both = BatchRecord(id=BATCH, spec=spec, cancelled=True, manifest_key=key)
    assert views.batch_state(both) == "cancelled"


def test_status_of_a_batch_whose_manifest_is_missing_says_how_to_get_it(
    records: LocalRecords,
) -> None:
    """Every tune is final but no manifest (a finalize job was given up): `status` says so and
    names the command that writes it, which does."""
    batch = _ended_batch(records, cancelled=False)
    batch.manifest_key = None
    records.save_batch(batch)
    code, out, _ = run("status", BATCH)
    assert code == 0 and "4/4 final" in out, out
    assert "the manifest is being written" in " ".join(out.split()), out
    assert f"producer retry {BATCH} --failed" in " ".join(out.split()), out
