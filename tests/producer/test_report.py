"""``producer report`` on a file and on a batch, in embedded mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.schemas import BatchRecord, BatchSpec, TuneRecord, TuneStatus, new_batch_id, tune_id
from common.state.local import LocalRecords
from common.store.local import LocalStore
from tests.producer_cli import run
from tests.quality_fixtures import copy_reference

GOOD = "X:1\nT:Good\nM:6/8\nL:1/8\nK:G\nD|GAB cBA|GAB c2:|\n"
SHORT = "X:2\nT:Short\nM:6/8\nL:1/8\nK:G\nGAB cBA|GAB c2|GAB cBA|\n"
BROKEN = 'X:3\nT:Broken\nM:4/4\nK:D\nA2 B2 |]] ((( c4 z8 [K:Zz] "unclosed\n'


@pytest.fixture
def env(fresh_data_dir: Path) -> Path:
    return fresh_data_dir


def test_report_on_a_file(env: Path, tmp_path: Path) -> None:
    path = tmp_path / "tunes.abc"
    path.write_text("\n".join([GOOD, SHORT, BROKEN]))
    code, out, err = run("report", "--file", str(path), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["tunes"] == 3 and data["valid"] == round(2 / 3, 4)
    assert data["rhythm_ok"] == round(1 / 3, 4)  # SHORT's second bar, BROKEN's bars
    assert [t["rhythm_ok"] for t in data["per_tune"]] == [True, False, False]
    assert [t["key"] for t in data["per_tune"]] == ["G", "G", "D"]
    assert data["per_tune"][1]["reasons"] == [
        "rhythm: bar 2: 5 units of L:1/8, the meter 6/8 needs 6"
    ]
    assert data["keys"] == {"G": round(2 / 3, 4), "D": round(1 / 3, 4)}
    code, out, err = run("report", "--file", str(path), "--tunes")
    assert code == 0 and "bar regularity" in out and "Short" in out
    assert "keys (most common first)" in out and "G 67 %, D 33 %" in out


def test_report_musicality_against_held_out_tunes(
    env: Path, tmp_path: Path, oneills_reference: LocalStore
) -> None:
    home = "X:4\nT:Home\nM:6/8\nL:1/8\nK:G\n|:GAB cBA|GAB cBA|dcB AGF|G3 G3:|\n"
    path = tmp_path / "tunes.abc"
    path.write_text("\n".join([GOOD, SHORT, home]))
    code, out, err = run("report", "--file", str(path), "--no-check", "--json")
    assert code == 0, err
    missing = json.loads(out)["musicality"]
    assert missing["overall"] is None
    assert missing["unavailable"].startswith("no reference: corpus 'oneills' is not imported")
    assert "producer corpus import oneills" in missing["unavailable"]

    copy_reference(oneills_reference, LocalStore(env))
    code, out, err = run("report", "--file", str(path), "--no-check", "--json")
    assert code == 0, err
    music = json.loads(out)["musicality"]
    assert (music["reference"], music["tunes"], music["unavailable"]) == ("oneills", 3, None)
    assert 0 < music["overall"] <= 1 and set(music["families"]) == {"pitch", "rhythm", "structure"}
    # GOOD ends on c, SHORT on A, Home on its tonic G; Home's second bar repeats its first.
    assert music["figures"]["final_tonic"] == round(1 / 3, 4)
    assert music["figures"]["repeated_bars"] == round(2 / 10, 4)  # and SHORT's third bar
    assert music["baselines"]["human"]["final_tonic"] > 0.5
    rows = json.loads(out)["per_tune"]
    assert [r["tonic_end"] for r in rows] == [False, False, True]
    assert [r["repeated_bars"] for r in rows] == [0.0, round(1 / 3, 3), 0.25]
    # Home's bars 2, 3, 4 against earlier ones: the same bar; B on 3 of 6; G on 1 of 6.
    assert rows[2]["motif_reuse"] == round((1 + 1 / 6 + 1 / 6) / 3, 3)
    code, out, err = run("report", "--file", str(path), "--no-check")
    assert code == 0, err
    assert "musicality: overlap with" in out and "last note on the tonic" in out
    # The batch's figure, then held-out human tunes' and the corpus's in columns of their own.
    row = next(line for line in out.splitlines() if "last note on the tonic" in line)
    assert row.split()[5:7] == ["33.3", "%"], row
    assert row.count("%") == 3, row
    # A number and its unit stay on one line (the table wraps the text column instead).
    assert not any(line.lstrip().startswith("%") for line in out.splitlines()), out


def test_key_spread_row() -> None:
    from common.quality.figures import key_spread

    shares = {k: v / 100 for k, v in [("G", 38), ("D", 26), ("A", 11), ("Em", 5), ("Am", 5),
                                       ("Gm", 4), ("Ador", 3), ("Dmix", 2)]}  # fmt: skip
    assert key_spread(shares) == "G 38 %, D 26 %, A 11 %, Em 5 %, Am 5 %, Gm 4 %, 2 others 5 %"
    assert key_spread(None) == "-" and key_spread({"G": 1.0}, most=6) == "G 100 %"


def test_report_on_a_batch_and_bad_requests(env: Path) -> None:
    store = LocalStore(env)
    records = LocalRecords(env / "records")
    batch = BatchRecord(id=new_batch_id(), spec=BatchSpec(count=2, model_id="a" * 64))
    tunes = [TuneRecord(batch_id=batch.id, tune_id=tune_id(i), index=i) for i in range(2)]
    records.create_batch(batch, tunes)
    for i, text in enumerate([GOOD, SHORT]):
        store.put_bytes(f"batches/{batch.id}/{tune_id(i)}.abc", text.encode())
        records.update_tune(batch.id, tune_id(i), TuneStatus.GENERATING)
        records.update_tune(
            batch.id, tune_id(i), TuneStatus.GENERATED, valid=True, rhythm_ok=i == 0, tries=2,
            tries_valid=2, tries_rhythm_ok=1 - i, nearest_tune="1: Other", similarity=0.6 * i,
        )  # fmt: skip
    code, out, err = run("report", batch.id, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["tunes"], data["valid"], data["rhythm_ok"]) == (2, 1.0, 0.5)
    assert (data["near_copy"], data["tries"], data["raw_rhythm_ok"]) == (0.5, 4, 0.25)
    assert [row["rhythm_ok"] for row in data["per_tune"]] == [True, False]
    code, out, err = run("report", batch.id, "--tunes")  # was silently ignored without --file
    assert code == 0 and "Tunes" in out and out.count("1: Other") == 2, out
    code, _, err = run("report")
    assert code != 0 and "give a batch id or --file" in err
    code, _, err = run("report", "b20260101-000000-abcdef")
    assert code != 0 and "Traceback" not in err
