"""Transposition: keys spelled with the fewest accidentals, notes and chords moved, and abc2midi's
own pitches of every copy exactly the original's plus the shift."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from music21 import midi

from common.abc.transpose import key_name, key_sharps, transpose_tune, transposed_key
from tests.model_fixtures import TINY_CORPUS

JIG = """X:1
T:Test
M:6/8
L:1/8
K:D
"D"A|dfa afd|"G"g2e "A7"fed|^c2B =c2A|dcB A2:|
|:g|f^ga bag|(3efg e d2c|1 d3 d2:|2 d3-d2|]"""

# In G: the c# of D major is the f# of G; =c becomes =f; a bar's ^g (and the g after it, which
# abc2midi also plays sharp) becomes ^c' with the accidental written again on the later c'.
JIG_IN_G = """X:1
T:Test
M:6/8
L:1/8
K:G
"G"d|gbd' d'bg|"C"c'2a "D7"bag|f2e =f2d|gfe d2:|
|:c'|b^c'd' e'd'^c'|(3abc' a g2f|1 g3 g2:|2 g3-g2|]"""


@pytest.mark.parametrize(
    ("key", "shift", "moved"),
    [
        ("D", 5, "G"), ("D", -2, "C"), ("D", 1, "Eb"), ("Ador", 2, "Bdor"),
        ("E Minor", -5, "B Minor"), ("F#m", 1, "Gm"), ("Gm", 4, "Bm"),
        ("D clef=bass", 2, "E clef=bass"), ("C", 6, "Gb"), ("Amix", -1, "Abmix"),
    ],
)  # fmt: skip
def test_keys_move_with_the_fewest_accidentals_and_keep_their_mode(
    key: str, shift: int, moved: str
) -> None:
    assert transposed_key(key, shift) == moved
    assert key_sharps(moved) is not None and abs(key_sharps(moved) or 0) <= 6


@pytest.mark.parametrize("key", ["none", "Hp", "D exp ^f", "D ^c", "", "Xyz"])
def test_keys_we_cannot_move_faithfully_are_refused(key: str) -> None:
    assert transposed_key(key, 2) is None
    assert transpose_tune(f"X:1\nT:t\nM:4/4\nK:{key}\nABcd|", 2) is None


def test_a_jig_moves_to_g_as_a_musician_would_write_it() -> None:
    assert transpose_tune(JIG, 5) == JIG_IN_G
    back = JIG.replace("^c2B", "c2B").replace("bag|", "ba^g|")  # ^c is in D; g# written again
    assert transpose_tune(JIG_IN_G, -5) == back
    assert transpose_tune(JIG, 0) == JIG


def test_fields_lyrics_comments_and_annotations_stay() -> None:
    tune = 'X:1\nT:Air in D\nM:3/4\nK:D\n"^slow"d2 [K:G] g2 !trill!a2|% in D\nw:la la la\nA:3|'
    moved = transpose_tune(tune, 2)
    assert moved == (
        'X:1\nT:Air in D\nM:3/4\nK:E\n"^slow"e2 [K:A] a2 !trill!b2|% in D\nw:la la la\nB:3|'
    )


def test_a_note_that_would_need_a_triple_accidental_refuses_the_tune() -> None:
    # C major down a semitone is B major, each letter one down: D## would be C###.
    assert transpose_tune("X:1\nM:4/4\nK:C\n^^D4|", -1) is None
    assert transpose_tune("X:1\nM:4/4\nK:C\n^^D4|", 1) == "X:1\nM:4/4\nK:Db\n^E4|"


def _midi_pitches(abc: str, tmp: Path) -> list[int]:
    """The melody's note-on pitches as abc2midi writes them (its reading, not ours). Channel 1
    only: the accompaniment abc2midi adds for guitar chords keeps its bass in a fixed register,
    so it moves by an octave less or more than the chord's root."""
    (tmp / "t.abc").write_text(abc)
    subprocess.run(
        ["abc2midi", str(tmp / "t.abc"), "-o", str(tmp / "t.mid")], capture_output=True, check=True
    )
    song = midi.MidiFile()
    song.open(str(tmp / "t.mid"))
    song.read()
    song.close()
    return [
        int(event.pitch or 0)
        for track in song.tracks
        for event in track.events
        if event.type == midi.ChannelVoiceMessages.NOTE_ON and event.velocity and event.channel == 1
    ]


def test_abc2midi_plays_every_copy_exactly_shifted(tmp_path: Path) -> None:
    """40 O'Neill's tunes (grace notes, ties, bar accidentals, minor and modal keys) and the
    hand-made jig, each at every shift: abc2midi's pitches of the copy are the original's plus
    the shift, note for note."""
    text = TINY_CORPUS.read_text()
    tunes = [JIG, "X:1\nM:4/4\nL:1/4\nK:D\n=c C c C|C c C c|"]
    tunes += ["X:" + t.strip() for t in text.split("\nX:")[1:]]
    moved_count = 0
    for number, tune in enumerate(tunes):
        original = _midi_pitches(tune, tmp_path)
        assert original, tune
        for shift in (-5, -1, 2, 6) if number % 2 else (-4, 1, 3, 5):
            moved = transpose_tune(tune, shift)
            assert moved is not None, (tune, shift)
            assert _midi_pitches(moved, tmp_path) == [p + shift for p in original], (shift, moved)
            moved_count += 1
    assert moved_count == 4 * len(tunes) == 168


@pytest.mark.parametrize(
    ("value", "name"),
    [("G", "G"), ("Gmaj", "G"), ("F#m", "F#m"), ("Bb Mixolydian", "Bbmix"), ("D dor", "Ddor"),
     ("Ephr", "Ephr"), ("C clef=bass", "C"), ("Am % comment", "Am"), ("none", None), ("Hp", None),
     ("D exp ^f ^c", None)],
)  # fmt: skip
def test_key_name(value: str, name: str | None) -> None:
    assert key_name(value) == name
