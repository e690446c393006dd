"""abc2midi's verdict on one tune, read from everything it did: output, exit status, MIDI file.

abc2midi writes a MIDI file for almost any text and exits 0 after printing ``Error ...``, so no
single sign is enough. A tune is **valid** only when all of these hold:

* no ``Error`` / ``failed`` line in abc2midi's **full** output. abc2midi runs without
  ``-silent``: that flag also hides real errors ("Could not find note to be tied", "Missing :|
  at end of tune", "Guitar chord does not start with A-G or a-g");
* no runaway: ``eputc: aborting because of file runaway (infinite loop)`` (repeats that
  expand past abc2midi's 500 KB output cap; it then exits 1 with a truncated file);
* exit status 0 (a death by signal — abc2midi segfaults on some nested repeats — raises in
  `common.render.tool_run` and is a not-ok verdict too, so a tune that crashes on some runs and
  runs away on others is invalid on every run);
* a well-formed MIDI file (`common.render.midi`) that plays no longer than
  ``max_midi_seconds``;
* no note longer than `MAX_NOTE_UNITS` units of ``L:`` (abc2midi's tick counter overflows on
  e.g. ``a999999999`` and writes a file of the wrong length, or a malformed one). This is read
  from the text, so the message points at the note.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from common.errors import RenderError
from common.render.midi import midi_duration_seconds

#: Longest note or rest, in units of L:, that a tune may hold (64 bars of 4/4 in eighths).
MAX_NOTE_UNITS = 512

_ERROR_LINE = re.compile(r"^\s*(error|failed)\b", re.IGNORECASE)
_RUNAWAY_LINE = re.compile(r"eputc|runaway|infinite loop", re.IGNORECASE)
_WARNING_LINE = re.compile(r"^\s*warning\b", re.IGNORECASE)
_FIELD = re.compile(r"^\s*[A-Za-z+]:")
#: A note or rest with its length: accidentals, pitch or rest, octave marks, then digits.
_NOTE_LENGTH = re.compile(r"(?:\^{1,2}|_{1,2}|=)?[A-Ga-gzxZX][,']*(\d+)(?:/(\d*))?")
_QUOTED = re.compile(r'"[^"\n]*"|![^!\n]*!|\+[^+\n]*\+')


@dataclass(frozen=True)
class CheckResult:
    """abc2midi's verdict on one tune (see the module docstring for what ``ok`` requires)."""

    ok: bool
    errors: list[str]
    warnings: list[str]
    #: How long the MIDI plays; None when no readable MIDI was written.
    midi_seconds: float | None = field(default=None)


def absurd_note(text: str) -> str | None:
    """Say which note is longer than `MAX_NOTE_UNITS` units, or None (field lines skipped)."""
    for number, line in enumerate(text.split("\n"), start=1):
        if _FIELD.match(line) or line.lstrip().startswith("%"):
            continue
        music = _QUOTED.sub(lambda m: " " * len(m.group(0)), line.split("%", 1)[0])
        for match in _NOTE_LENGTH.finditer(music):
            numerator = int(match.group(1))
            denominator = (
                int(match.group(2)) if match.group(2) else (2 if match.group(2) == "" else 1)
            )
            if numerator / max(denominator, 1) > MAX_NOTE_UNITS:
                return (
                    f"line {number}, char {match.start() + 1}: the note {match.group(0)!r} lasts "
                    f"{numerator}/{denominator} units of L:, more than {MAX_NOTE_UNITS}; "
                    "abc2midi cannot write it (its MIDI clock overflows): shorten the note"
                )
    return None


def judge(returncode: int, output: str, midi: bytes | None, max_midi_seconds: float) -> CheckResult:
    """The verdict from one abc2midi run: its exit status, full output and MIDI file (or None)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    # A runaway first (it explains the rest), then each distinct error line once.
    runaway = [line for line in lines if _RUNAWAY_LINE.search(line)]
    errors = list(dict.fromkeys(runaway + [line for line in lines if _ERROR_LINE.match(line)]))
    warnings = [line for line in lines if _WARNING_LINE.match(line)]
    if returncode != 0:
        errors.append(f"abc2midi exited with status {returncode}")
    seconds: float | None = None
    if midi is None or not midi.startswith(b"MThd"):
        errors.append("abc2midi wrote no MIDI file")
    else:
        try:
            seconds = midi_duration_seconds(midi)
        except RenderError as exc:
            errors.append(f"abc2midi wrote an unreadable MIDI file ({exc})")
        else:
            if seconds > max_midi_seconds:
                errors.append(
                    f"the tune plays for {seconds:.0f} s, longer than the limit of "
                    f"{max_midi_seconds:g} s (TUNEBATCH_MAX_MIDI_SECONDS); check its Q: tempo "
                    "and repeats"
                )
    return CheckResult(ok=not errors, errors=errors, warnings=warnings, midi_seconds=seconds)


__all__ = ["MAX_NOTE_UNITS", "CheckResult", "absurd_note", "judge"]
