"""The ABC the render's tools read: the tune type's tempo and the batch's instrument, checked in
the MIDI abc2midi writes from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from music21 import midi as m21midi

from common.abc.tunetype import tune_type, with_tempo
from common.params import GM_PROGRAM, Instrument
from common.render.pipeline import rendered
from common.render.playing import as_played, with_program
from common.settings import Settings

REEL = "X:1\nT:Reel\nR:reel\nM:4/4\nL:1/8\nK:D\n|:FAdA FAdA|GBdB GBdB|FAdA FAdA|GBAG FDD2:|\n"


def programs(midi: bytes) -> set[int]:
    """Program numbers of every program change in a MIDI file, read by music21's MIDI parser
    (independent of ours). A byte scan for 0xC0-0xCF found programs 0, 49 and 81 in one tune of
    five with guitar chords or trills: their events' data bytes look like program changes."""
    parsed = m21midi.MidiFile()
    parsed.readstr(midi)
    return {
        event.data
        for track in parsed.tracks
        for event in track.events
        if event.type == m21midi.ChannelVoiceMessages.PROGRAM_CHANGE and isinstance(event.data, int)
    }


def test_the_type_gives_a_tempo_only_where_the_tune_has_none() -> None:
    assert "Q:1/2=100\nK:D" in with_tempo(REEL)
    own = REEL.replace("K:D", "Q:1/4=90\nK:D")
    assert with_tempo(own) == own
    six_eight = REEL.replace("M:4/4", "M:6/8")
    assert with_tempo(six_eight) == six_eight  # a "reel" in 6/8 is no reel: no tempo from it
    assert tune_type("Slip Jig", "9/8") is not None and tune_type("", "6/8") is None


def test_the_instrument_is_a_program_line_after_k_and_piano_adds_nothing() -> None:
    assert with_program(REEL, Instrument.PIANO) == REEL
    fiddle = with_program(REEL, Instrument.FIDDLE)
    assert "K:D\n%%MIDI program 40\n|:FAdA" in fiddle
    assert as_played(REEL, Instrument.FLUTE).count("%%MIDI program 73") == 1


@pytest.mark.parametrize("instrument", [Instrument.FIDDLE, Instrument.WHISTLE])
def test_abc2midi_plays_the_instrument_at_the_types_tempo(
    instrument: Instrument, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    with rendered(REEL, ["abc", "mid"], settings, instrument=instrument) as result:
        midi = result.files["mid"].read_bytes()
        seconds = result.midi_seconds
    assert GM_PROGRAM[instrument] in programs(midi)
    # 4 bars twice at Q:1/2=100 (1.2 s a bar): 9.6 s, against 8 s at abc2midi's default.
    assert seconds == pytest.approx(9.6, abs=0.1)
