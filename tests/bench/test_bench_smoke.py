"""The benchmark scripts' short modes, so a change that breaks them fails here, not on the day
someone needs a figure. Only their output's shape and sanity are checked: the speed and accuracy
targets are read from the scripts' full runs (never timed in a test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.model_fixtures import TinyEnv

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def run_json(*argv: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, *argv, "--json"], cwd=ROOT, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_generation_bench_quick_has_a_row_per_precision_and_batch() -> None:
    report = run_json("bench/generation.py", "--quick", "--batches", "1,64")
    rows = report["sampler"]
    assert {(r["precision"], r["batch"], r["bar_tracker"]) for r in rows} == {
        (p, b, t) for p in ("float32", "bfloat16") for b in (1, 64) for t in (False, True)
    }
    for row in rows:
        assert row["error"] is None and row["chars"] > 0 and row["chars_per_s"] > 0
        assert row["ratio_to_loop"] > 1  # even a B=1 sampler beats a window re-run per char
        assert (row["ratio_to_untracked"] is not None) == row["bar_tracker"]
    assert set(report["targets"]) == {"ratio", "matmul_share", "bf16_speedup", "bar_tracker"}


def test_training_bench_quick_compares_the_variants_against_the_original() -> None:
    report = run_json("bench/training.py", "--quick", "--bf16")
    results = {r["variant"]: r for r in report["results"]}
    assert list(results) == ["original", "sampled", "disjoint", "stateful", "stateful-bf16"]
    original = results["original"]
    assert report["target_bits_per_char"] == original["final_bits_per_char"]
    # The original sees every char seq_len/step times an epoch; a 1-pass variant's budget is a
    # fraction of the original's compute, whether or not it reaches the target within it.
    for name in ("sampled", "disjoint", "stateful", "stateful-bf16"):
        assert 0 < results[name]["chars_total"] < original["chars_total"]
        reached = results[name]["chars_to_target"]
        assert reached is None or reached <= results[name]["chars_total"]


def test_training_bench_compares_key_augmentation_at_equal_char_positions() -> None:
    report = run_json(
        "bench/training.py", "--whole-tunes", "--quick", "--only", "windows",
        "--transpose-copies", "1",
    )  # fmt: skip
    results = {r["variant"]: r for r in report["results"]}
    assert list(results) == ["windows", "keys+1", "windows x2"]
    assert results["windows x2"]["epochs_run"] == 2 * results["keys+1"]["epochs_run"]
    plain = results["windows"]["chars_total"]
    assert results["windows x2"]["chars_total"] == 2 * plain
    # The quick corpus is the 3 test tunes abc2midi passes, whose 48 symbols cannot spell most
    # keys: copies are made where they can be (tests/common/lstm/test_augment.py measures them).
    assert plain <= results["keys+1"]["chars_total"] <= 2 * plain
    assert all(r["final_bits_per_char"] > 0 for r in results.values())


def test_precision_bench_scores_each_precision_on_validation_text(tiny_env: TinyEnv) -> None:
    report = run_json(
        "bench/precision.py", "--data-dir", str(tiny_env.data_dir), "--rows", "16",
        "--length", "64", "--precision", "float32,bfloat16",
    )  # fmt: skip
    rows = {r["precision"]: r for r in report["rows"]}
    assert rows["float32"]["delta"] == 0
    assert 0 < rows["bfloat16"]["bits_per_char"] < 8
    assert abs(rows["bfloat16"]["delta"]) < 0.05  # the tight bound is in tests/common


def test_quality_bench_measures_a_corpus_and_a_file_with_one_checker() -> None:
    report = run_json(
        "bench/quality.py", "--against", "miscfolk", "--corpus", "miscfolk",
        "--file", "tests/data/tiny_corpus.abc", "--limit", "12",
    )  # fmt: skip
    corpus, tiny = report["rows"]
    assert corpus["set"] == "corpus miscfolk" and corpus["tunes"] == 12
    for row in (corpus, tiny):
        assert 0 <= row["valid"] <= 1 and 0 <= row["rhythm_ok"] <= 1
        assert row["bar_regularity"] >= row["rhythm_ok"] * 0.5 and row["near_copy"] is not None
        assert 0 < row["musicality"]["overall"] <= 1  # against held-out O'Neill's tunes
    calibration = run_json("bench/quality.py", "--calibrate")
    assert calibration["same_at_threshold"] > 0.9 > calibration["other_at_threshold"]


def test_musicality_bench_scores_sets_and_controls_against_held_out_tunes(
    tmp_path: Path,
) -> None:
    report = run_json(
        "bench/musicality.py", "--data-dir", str(tmp_path), "--reference", "oneills",
        "--abc", "tests/data/tiny_corpus.abc", "--peers", "",
    )  # fmt: skip
    sets = report["sets"]
    assert list(sets) == ["tiny_corpus.abc", "human", "bar-shuffled", "random walk"]
    assert report["reference"] == "oneills" and report["reference_tunes"] > 40
    assert sets["tiny_corpus.abc"]["tunes"] == 40
    human = sets["human"]["overall"]
    assert human > sets["bar-shuffled"]["overall"] and human > sets["random walk"]["overall"]
    assert sets["tiny_corpus.abc"]["summary"]["final_tonic"] > 0.5  # O'Neill's own tunes
