"""The bar tracker against abc2midi itself: adversarial random walks through the tracker that
samples with (two-part form, with and without the music rules), every finished tune read by the
real abc2midi, its full output searched for errors.

The rules were written from abc2midi's behaviour one case at a time; this is the independent
check that they add up. A walk starts from ``X:1`` alone, so the tracker writes the header too,
and leans on one class of chars at a time (decorations, ties, barlines, fields, line breaks...),
the corners a model near the start of its training wanders into: a CI run's one-epoch model
wrote ``c-\\\\\\n~c`` (a roll on a tied note), ``K:AMa`` (a vocabulary without ``j``) and ``:|:``
then ``::``, and abc2midi rejected all 5 of its tunes.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from common.lstm.bar_tracker import BarTracker
from common.lstm.music_rules import DEFAULT_RULES
from tests.common.lstm.test_bar_tracker import CHARS
from tests.common.lstm.walks import walk

#: abc2midi errors that a rule of the tracker is there to prevent: none may appear.
PREVENTED = (
    "Could not find note to be tied",  # bar_ties: the tied note spelled again, no roll/trill
    "Cannot apply broken rhythm",  # bar_broken: the pair's second note is plain
    "found :: before |:",  # repeats as abc2midi counts them (bar_counts, bar_rules)
    "found another |: after a |:",
    "found [1 or like before |:",
    "Missing :| at end of tune",  # the tune ends with its repeats closed
    "Malformed note",  # decorations abc2midi reads (bar_rules)
    "Unknown mode",  # keys the vocabulary can finish (bar_tables)
)
#: Tunes with any other error, at most (seen: "Sustained notes beyond end of track" and
#: "Chord already finished", about 1 tune in 100 of these walks, none in a trained model's).
OTHER_AT_MOST = 0.05
FAVOUR = [
    set("0123456789/"), set("ABCDEFGabcdefg"), set("|:[]"), set('(<>{}"!-'), set(".~Tuv-"),
    set("\\\n "), set("KMLPT:"),
]  # fmt: skip


def abc2midi_errors(tune: str, workdir: Path) -> list[str]:
    """abc2midi's error lines for `tune` (its full output, not -silent; its bar-count warnings
    are `test_bar_tracker`'s, on a trained model's tunes)."""
    source = workdir / "tune.abc"
    source.write_text(tune + "\n")
    out = subprocess.run(
        ["abc2midi", str(source), "-o", str(workdir / "tune.mid")],
        capture_output=True, text=True, errors="replace", timeout=30, check=False,
    ).stdout  # fmt: skip
    return [
        re.sub(r"line-char \d+-\d+ : ", "", line)
        for line in out.splitlines()
        if line.startswith("Error")
    ]


@pytest.mark.parametrize("music", [False, True], ids=["form", "form+music"])
def test_every_finished_walk_is_a_tune_abc2midi_reads(music: bool, tmp_path: Path) -> None:
    tracker = BarTracker(CHARS, form=True, music=DEFAULT_RULES if music else None)
    tunes: list[str] = []
    for seed in range(3):
        tunes += walk(
            tracker, seed, ["X:1\n", "X:1\nM:6/8\nK:G\n"], FAVOUR, rows=24, steps=2500, seeds=True
        )
    assert len(tunes) >= 30 and tracker.dead_ends == 0
    prevented: list[tuple[str, str]] = []
    other: Counter[str] = Counter()
    for tune in tunes:
        errors = abc2midi_errors(tune, tmp_path)
        prevented += [(e, tune) for e in errors if any(p in e for p in PREVENTED)]
        other[errors[0] if errors else ""] += 1
    assert not prevented, prevented[:3]
    assert len(tunes) - other[""] <= OTHER_AT_MOST * len(tunes), other
