"""The ABC as the synthesiser hears it: the tune type's tempo and the batch's instrument.

The stored ``.abc`` stays as the model wrote it; the copy a render writes for its tools gets

* a ``Q:`` from the tune's type when it has none (`common.abc.tunetype.with_tempo`): abc2midi's
  default of 120 quarter notes a minute plays a reel like a march;
* a ``%%MIDI program`` line after ``K:`` for the batch's instrument (`common.params.GM_PROGRAM`),
  which abc2midi writes into the MIDI, so timidity and fluidsynth play the same sound; piano is
  abc2midi's own default and adds nothing, so a piano batch renders the bytes it always did.

abcm2ps reads the same copy: it prints the tempo above the score and ignores ``%%MIDI``.
"""

from __future__ import annotations

import re

from common.abc.tunetype import with_tempo
from common.params import DEFAULT_INSTRUMENT, GM_PROGRAM, Instrument

_K_LINE = re.compile(r"^K:.*$", re.MULTILINE)


def with_program(tune: str, instrument: Instrument) -> str:
    """The tune with a ``%%MIDI program`` line for `instrument` after its ``K:`` line."""
    if instrument == DEFAULT_INSTRUMENT:
        return tune
    match = _K_LINE.search(tune)
    if match is None:
        return tune
    line = f"%%MIDI program {GM_PROGRAM[instrument]}"
    return f"{tune[: match.end()]}\n{line}{tune[match.end() :]}"


def as_played(tune: str, instrument: Instrument = DEFAULT_INSTRUMENT) -> str:
    """What the render's tools read: `with_tempo`, then `with_program`."""
    return with_program(with_tempo(tune), instrument)
