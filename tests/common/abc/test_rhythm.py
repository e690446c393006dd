"""The rhythm check: exact bar durations from ABC, and the pickup/closing-bar rule."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from common.abc.music import Note, key_signature, melody, parse_meter, read_music
from common.abc.rhythm import check_rhythm, is_two_part, parts, split_bars


def tune(body: str, meter: str = "4/4", unit: str | None = "1/8", key: str = "C") -> str:
    head = f"X:1\nT:t\nM:{meter}\n" + (f"L:{unit}\n" if unit else "") + f"K:{key}\n"
    return head + body + "\n"


def durations(text: str) -> list[Fraction]:
    return [bar.duration for bar in split_bars(read_music(text))]


@pytest.mark.parametrize(
    ("meter", "bar"),
    [("6/8", Fraction(3, 4)), ("C", Fraction(1)), ("C|", Fraction(1)), ("2+3/8", Fraction(5, 8)),
     ("3/4 % waltz", Fraction(3, 4)), ("none", None), ("", None)],
)  # fmt: skip
def test_meters(meter: str, bar: Fraction | None) -> None:
    assert parse_meter(meter) == bar


@pytest.mark.parametrize(
    ("body", "units"),
    [
        ("A2 A/2 A/ A// A3/2 A4 z2 x|", Fraction(2 + 0.5 + 0.5 + 0.25 + 1.5 + 4 + 2 + 1)),
        ("A>B C<D A>>B|", Fraction(6)),  # broken rhythm moves time, keeps the pair's total
        ("(3ABC D2 (3:2:3EFG|", Fraction(6)),  # triplets: 3 in the time of 2
        ("(3A2B2C2|", Fraction(4)),
        ("(5ABCDE|", Fraction(2)),  # 5 in the time of 2 in simple time
        ("[ceg]2 [c2e2g2] [ce]/ [ce]/|", Fraction(2 + 2 + 1)),  # chord = first note x suffix
        ("{ga}A2 {/g}B2 {abc}c4|", Fraction(8)),  # grace notes take no time
        ('"Am"A2 "^annotation"B2 !trill!c2 +fermata+d2|', Fraction(8)),
        ("~A2 .B2 TA2 uv HA2|", Fraction(8)),  # one-char decorations, u/v bowings
        ("(AB) A2-A2 (cd)|", Fraction(8)),  # slurs and ties
        ("^A2 _B2 =c2 ^^d _e|", Fraction(8)),
        ("A2 B2 \\\nc2 d2|", Fraction(8)),  # line continuation
        ("A2`B2 y c4|", Fraction(8)),  # beam break and spacer
    ],
)
def test_note_lengths(body: str, units: Fraction) -> None:
    assert durations(tune(body)) == [units / 8]


def test_default_unit_length_follows_the_meter() -> None:
    assert durations(tune("A8|", "2/4", None)) == [Fraction(1, 2)]  # L:1/16
    assert durations(tune("A6|", "3/4", None)) == [Fraction(3, 4)]  # L:1/8


def test_inline_fields_change_meter_and_unit() -> None:
    text = tune("A4 B4|[M:3/4] A6|[L:1/4] A3|\nM:2/4\nA2|[K:G] F2|[I:anything] A2|")
    result = check_rhythm(text)
    assert result.ok and result.bars == 6, result.reasons


def test_multi_bar_rest_counts_as_whole_bars() -> None:
    result = check_rhythm(tune("A8|Z2|B8|"))
    assert result.ok and result.bars == 4


def test_repeats_endings_and_pickups() -> None:
    reel = tune("AB|:c2c2 c2d2|c8|c8|c6:|\n|:ef|g8|g8|g8|1 g6:|2 g4 z2||")
    result = check_rhythm(reel)
    assert result.ok, result.reasons


def test_pickup_and_closing_bar_must_add_up() -> None:
    assert check_rhythm(tune("D|G3 G2 G|G3 G2:|", "6/8")).ok
    wrong = check_rhythm(tune("D|G3 G2 G|G3 G:|", "6/8"))
    assert not wrong.ok and wrong.wrong_bars == 1
    assert wrong.reasons == ["bar 3: 4 units of L:1/8, the meter 6/8 needs 6"]


def test_short_or_long_bars_inside_a_section_are_wrong() -> None:
    result = check_rhythm(tune("c8|c7|c9|c8|"))
    assert (result.ok, result.bars, result.wrong_bars) == (False, 4, 2)
    assert result.regular_bars == 2


def test_barline_kinds_and_empty_bars() -> None:
    text = tune("[|c8||c8|]\n|:c8::c8:|:c8:||c8|\n|c8|]")
    result = check_rhythm(text)
    assert result.ok and result.bars == 7


def test_no_meter_is_not_checked() -> None:
    result = check_rhythm(tune("c5|c3|", "none"))
    assert not result.checked and result.ok
    headless = check_rhythm("X:1\nT:t\nK:C\nc5|c3|\n")
    assert not headless.checked and not headless.ok
    assert headless.reasons == ["no M: field to check the bars against"]


def test_comments_lyrics_and_unreadable() -> None:
    text = tune("c8| % a comment |c|\nw: la la la\nc8|")
    assert durations(text) == [1, 1]


def test_two_part_form() -> None:
    eight = "c8|" * 7 + "c6"
    aabb = tune(f"AB|:{eight}:|\n|:AB|{eight}:|")
    sections = parts(split_bars(read_music(aabb)))
    assert sections == [(8, True), (8, True)]
    assert check_rhythm(aabb).two_part
    written = tune("c8|" * 16 + "||" + "c8|" * 16 + "|]")
    assert check_rhythm(written).two_part
    endings = tune("|:" + "c8|" * 7 + "|1 c8:|2 c8||" + "c8|" * 8 + "|]")
    assert parts(split_bars(read_music(endings))) == [(8, True), (8, False)]
    assert not is_two_part([(8, True), (8, True), (8, True)])
    assert not is_two_part([(16, True), (8, True)])


def test_pitches_follow_key_accidentals_and_octaves() -> None:
    assert key_signature("D") == {"F": 1, "C": 1}
    assert key_signature("Ador") == {"F": 1}
    assert key_signature("Amix") == {"F": 1, "C": 1}
    assert key_signature("Hp") == {}
    assert key_signature("E Minor") == {"F": 1}
    assert key_signature("Bb") == {"B": -1, "E": -1}
    assert key_signature("D ^g") == {"F": 1, "C": 1, "G": 1}
    # A clef is no mode, and its "=b" no natural.
    assert key_signature("D clef=bass") == {"F": 1, "C": 1}
    assert key_signature("Gm clef=bass middle=d") == {"B": -1, "E": -1}
    music = read_music(tune("C c c' C, F ^F F|F [ceg] A2-A", key="G"))
    assert list(melody(music)) == [60, 72, 84, 48, 66, 66, 66, 66, 79, 69]
    # A bar's accidental holds for its letter in every octave, as abc2midi 4.84 plays it
    # (tests/common/abc/test_transpose.py checks the same against abc2midi's MIDI).
    assert list(melody(read_music(tune("=c C c' ^C|C", key="D")))) == [72, 60, 84, 61, 61]
    assert all(isinstance(e, Note) for e in music.events[:3])


def test_any_text_is_read_without_crashing() -> None:
    rng = random.Random(7)
    alphabet = "ABCDEFGabcdefgzZxX/0123456789|:[]()<>{}!+\"^_=,'-~.HT MLK\n%"
    for _ in range(300):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        result = check_rhythm(tune(body, rng.choice(["4/4", "6/8", "C|", "none", "0/0"])))
        assert result.wrong_bars <= result.bars
        assert list(melody(read_music(tune(body)))) is not None
