"""Every abc2midi outcome read correctly (common/render/verdict.py), with the real abc2midi.

The three tunes below were checked first with the real tool, ``abc2midi tune.abc -o tune.mid``
(4.84): each prints its ``Error`` line without ``-silent`` and nothing with it, exits 0 and
writes a MIDI file, so only the full output tells that they are broken.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from common.errors import RenderError, RenderLimitError
from common.render.pipeline import check_abc, rendered
from common.render.verdict import MAX_NOTE_UNITS, absurd_note, judge
from common.settings import Settings

HEAD = "X:1\nT:Verdict\nM:4/4\nL:1/8\nK:D\n"
HOSTILE = Path(__file__).resolve().parents[2] / "data" / "hostile"

SILENT_ERRORS = {
    "Could not find note to be tied": HEAD + "dAFA dAF-|B2 c2 d4|\n",
    "Missing :| at end of tune": HEAD + "|:dAFA dAFA|BGEG BGEG|\n",
    "Guitar chord does not start with A-G or a-g": HEAD + '"Xm"dAFA dAFA|"7"BGEG BGEG|\n',
}


@pytest.fixture
def settings() -> Settings:
    return Settings(abc2midi="abc2midi", max_midi_seconds=600.0, render_timeout_s=30.0)


@pytest.mark.parametrize("message", sorted(SILENT_ERRORS))
def test_errors_that_silent_would_hide_make_the_tune_invalid(
    message: str, settings: Settings
) -> None:
    result = check_abc(SILENT_ERRORS[message], settings)
    assert not result.ok
    assert any(message in line for line in result.errors), result.errors
    with (
        pytest.raises(RenderError, match="abc2midi rejected the tune"),
        rendered(SILENT_ERRORS[message], ["mid"], settings),
    ):
        pass


def test_a_runaway_is_invalid_on_every_run(settings: Settings) -> None:
    text = (HOSTILE / "many-repeats.abc").read_text()
    verdicts = [check_abc(text, settings) for _ in range(3)]
    for result in verdicts:
        assert not result.ok
        assert any("runaway" in line for line in result.errors)
        assert "abc2midi exited with status 1" in result.errors
    with pytest.raises(RenderError, match="runaway"), rendered(text, ["wav"], settings):
        pass


def _flaky_abc2midi(tmp_path: Path) -> Path:
    """An abc2midi that, like the real one on some nested repeats, segfaults on some runs and
    runs away on the others (alternating, by a counter file)."""
    counter = tmp_path / "runs"
    counter.write_text("0")
    script = tmp_path / "abc2midi"
    script.write_text(
        "#!/bin/sh\n"
        f"n=$(cat {counter}); echo $((n + 1)) > {counter}\n"
        "if [ $((n % 2)) -eq 0 ]; then kill -SEGV $$; fi\n"
        "printf 'MThd\\000\\000\\000\\006\\000\\000\\000\\001\\001\\340' > tune.mid\n"
        "echo 'eputc: aborting because of file runaway (infinite loop)'\n"
        "exit 1\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_a_flaky_crash_gives_the_same_verdict_on_every_run(
    settings: Settings, tmp_path: Path
) -> None:
    # rlimits: the stand-in keeps its run counter in a file outside the tune's directory.
    flaky = settings.model_copy(
        update={"abc2midi": str(_flaky_abc2midi(tmp_path)), "sandbox": "rlimits"}
    )
    results = [check_abc(HEAD + "|:dAFA:|\n", flaky) for _ in range(4)]
    assert [r.ok for r in results] == [False] * 4
    assert "crashed (SIGSEGV)" in results[0].errors[0]
    assert any("runaway" in e for e in results[1].errors)


def test_a_midi_longer_than_the_limit_is_invalid_at_check_time(settings: Settings) -> None:
    slow = HEAD.replace("K:D", "Q:1/4=2\nK:D") + "dAFA dAFA|" * 40 + "\n"
    result = check_abc(slow, settings)
    assert not result.ok
    assert any("longer than the limit of 600 s" in e for e in result.errors)
    assert result.midi_seconds is not None and result.midi_seconds > 600
    with pytest.raises(RenderLimitError, match="600 s"), rendered(slow, ["mid"], settings):
        pass


def test_an_absurd_note_is_refused_with_a_pointer_to_it(settings: Settings) -> None:
    text = HEAD + "dAFA dAFA|\nB2 c2 a999999999|\n"
    result = check_abc(text, settings)
    assert not result.ok
    assert "line 7, char 7: the note 'a999999999'" in result.errors[0]
    assert "refused before any tool" in result.errors[0]
    assert absurd_note(HEAD + f"z{MAX_NOTE_UNITS}|a3/2 b/ c//|\n") is None
    assert absurd_note(HEAD + 'w:a999999999\n"^z9999"a|\n') is None


#: The smallest playable MIDI file: one track holding only End of Track.
TINY_MIDI = b"MThd\0\0\0\6\0\0\0\1\1\xe0" + b"MTrk\0\0\0\4\0\xff\x2f\0"


def test_judge_reads_exit_status_and_missing_or_broken_midi() -> None:
    assert judge(0, "writing MIDI file tune.mid", TINY_MIDI, 600).ok
    assert judge(2, "", TINY_MIDI, 600).errors == ["abc2midi exited with status 2"]
    assert judge(0, "", None, 600).errors == ["abc2midi wrote no MIDI file"]
    broken = judge(0, "", TINY_MIDI.replace(b"\0\1\1\xe0", b"\0\2\1\xe0"), 600)
    assert not broken.ok and "unreadable MIDI" in broken.errors[0]
    warning = "Warning in line-char 6-3 : Bar 1 has 9 units"
    warned = judge(0, warning, TINY_MIDI, 600)
    assert warned.ok and warned.warnings == [warning]
