"""The musicality features on hand-written tunes whose answers a musician can count."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from common.quality.musicality import (
    LENGTH_BINS,
    beat_of,
    piece_of,
    summary,
    tune_features,
)


def tune(body: str, *, key: str = "G", meter: str = "4/4", unit: str = "1/8") -> str:
    return f"X:1\nT:Test\nM:{meter}\nL:{unit}\nK:{key}\n{body}\n"


def value(text: str, name: str) -> float:
    found = tune_features(text).values[name]
    assert found is not None, name
    return float(found[0])


def test_last_note_and_section_ends_on_the_tonic_mode_aware() -> None:
    # A Dorian: A is the tonic, though the signature is G major's.
    dorian = tune("|:ABcd efge|dBGB A4:|\n|:a2ge dBGB|ABcB A4:|", key="Ador")
    assert value(dorian, "final_tonic") == 1.0
    assert value(dorian, "section_tonic") == 1.0
    assert value(tune("|:ABcd efge|dBGB A4:|", key="A Dorian"), "final_tonic") == 1.0
    # Same notes in G major: A is the second degree.
    assert value(tune("|:ABcd efge|dBGB A4:|"), "final_tonic") == 0.0
    # Sections end at ||, :|, |], :: and the tune's end; the first of three ends elsewhere.
    three = tune("GABc d4||GABc G4::GABc dBG2|]")
    assert value(three, "section_tonic") == pytest.approx(2 / 3)
    features = tune_features(three)
    assert (features.sections, features.sections_tonic) == (3, 2)
    # A line that ends with | and a next line that starts with | is not a double bar.
    split_line = tune("GABc d4|\n|GABc G4|]")
    assert (tune_features(split_line).sections, value(split_line, "section_tonic")) == (1, 1.0)


def test_a_first_ending_belongs_to_its_section() -> None:
    text = tune("|:GABc dBAG|1 ABcA d4:|2 ABcA G4||")
    piece = piece_of(text)
    assert {bar.section for bar in piece.bars} == {0}
    assert [bar.closes for bar in piece.bars] == [False, True, True]
    # The first ending's :| closes on D (the dominant), the second on G.
    assert value(text, "section_tonic") == 0.5


def test_repeated_bars_and_motif_reuse() -> None:
    text = tune("GABc|GABc|dcBA|GABc|", meter="2/4")
    features = tune_features(text)
    assert (features.bars, features.repeated) == (4, 2)
    assert value(text, "repeated_bars") == 0.5
    # Best match of bars 2, 3, 4 with an earlier bar: 1, 1/4 (only B on beat 3 agrees), 1.
    assert value(text, "motif_reuse") == pytest.approx((1 + 0.25 + 1) / 3)
    # The same pitches in another rhythm are another bar.
    assert value(tune("GABc|G2Bc|", meter="2/4"), "repeated_bars") == 0.0


def test_pitches_relative_to_the_tonic_and_the_register() -> None:
    text = tune("DEFG ABcd|efga bc'd'2|", key="D")  # D major scale, two octaves
    features = tune_features(text)
    histogram = features.values["pitch_class_histogram"]
    assert histogram is not None
    # Degrees of D major relative to D: 0 2 4 5 7 9 11, D itself three times.
    assert np.flatnonzero(histogram).tolist() == [0, 2, 4, 5, 7, 9, 11]
    assert histogram[0] == pytest.approx(3 / 15)
    assert (value(text, "lowest_pitch"), value(text, "highest_pitch")) == (62, 86)
    assert value(text, "pitch_range") == 24 and value(text, "pitch_count") == 15
    transitions = features.values["pitch_class_transitions"]
    assert transitions is not None and transitions.reshape(12, 12)[0, 2] == pytest.approx(2 / 14)
    # Every move is a step of one or two semitones.
    assert value(text, "step_share") == 1.0
    assert value(text, "mean_interval") == pytest.approx(24 / 14)
    assert summary([features])["reach_high_c"] == 1.0


def test_intervals_and_leaps() -> None:
    text = tune("GBdg dBG2|")
    assert value(text, "mean_interval") == pytest.approx((4 + 3 + 5 + 5 + 3 + 4) / 6)
    assert value(text, "step_share") == 0.0


def test_note_lengths_in_whole_notes_whatever_the_unit() -> None:
    # A sixteenth written as A/ under L:1/8 and as A under L:1/16 is one bin.
    eighth_unit = tune_features(tune("A/B/c/d/ e2 f4|", meter="2/4"))
    sixteenth_unit = tune_features(tune("ABcd e4 f8|", meter="2/4", unit="1/16"))
    assert eighth_unit.values["length_histogram"] == pytest.approx(
        sixteenth_unit.values["length_histogram"]
    )
    histogram = eighth_unit.values["length_histogram"]
    assert histogram is not None
    assert histogram[LENGTH_BINS.index(Fraction(1, 16))] == pytest.approx(4 / 6)
    assert eighth_unit.sixteenths == 4 and eighth_unit.shortest == Fraction(1, 16)


def test_notes_per_beat_by_meter_and_ties_and_rests() -> None:
    assert value(tune("GAB cBA|", meter="6/8"), "notes_per_beat") == 3.0  # dotted-quarter beat
    assert value(tune("GABc dcBA|"), "notes_per_beat") == 2.0
    assert value(tune("G4 A4|", meter="2/2"), "notes_per_beat") == 1.0  # half-note beat
    # A tied note is one note: G2-G2 is a half note, and z is a rest.
    tied = tune_features(tune("G2-G2 z2 A2|"))
    assert (tied.notes, tied.rests) == (2, 1)
    histogram = tied.values["length_histogram"]
    assert histogram is not None and histogram[LENGTH_BINS.index(Fraction(1, 2))] == 1 / 3
    assert value(tune("G2-G2 z2 A2|"), "rest_share") == pytest.approx(1 / 3)


def test_beats() -> None:
    assert [beat_of(m) for m in ("6/8", "9/8", "12/8", "3/4", "4/4", "2/2", "C", "C|", "3/8")] == [
        Fraction(3, 8), Fraction(3, 8), Fraction(3, 8), Fraction(1, 4), Fraction(1, 4),
        Fraction(1, 2), Fraction(1, 4), Fraction(1, 2), Fraction(1, 8),
    ]  # fmt: skip


def test_downbeats_on_the_tonic_triad() -> None:
    # G major's triad G B D: bars start on G, B, C and D; a pickup bar is not a downbeat.
    text = tune("E|GABc|BAGA|cBAG|DEFG|", meter="4/4", unit="1/4")
    assert value(text, "downbeat_triad") == 0.75
    # E minor's third is G.
    assert value(tune("E2G2|G2B2|", key="Em", meter="2/4"), "downbeat_triad") == 1.0


def test_a_b_similarity() -> None:
    part = "GABc dBAG|ABcd e4"
    same = tune(f"|:{part}:|\n|:{part}:|")
    other = tune(f"|:{part}:|\n|:g2fe d2cB|A2GF G4:|")
    assert value(same, "ab_similarity") == 1.0
    # Bar by bar, B shares d on beat 3 of the first bar (1 of 8 notes) and A at the start of
    # the second (1 of 5).
    assert value(other, "ab_similarity") == pytest.approx((1 / 8 + 1 / 5) / 2)
    # One long section is compared half with half.
    assert value(tune(f"{part}|{part}|]"), "ab_similarity") == 1.0


def test_a_tune_without_a_tonic_has_no_tonic_features() -> None:
    features = tune_features(tune("GABc dBAG|", key="none"))
    for name in ("final_tonic", "section_tonic", "pitch_class_histogram", "downbeat_triad"):
        assert features.values[name] is None
    assert features.values["pitch_count"] is not None


def test_summary_pools_sections_and_bars() -> None:
    home = tune_features(tune("GABc d4||GABc G4|]"))  # 2 bars, 2 sections ending on d and G
    away = tune_features(tune("GABc GABc|GABc GABc|dcBA G4||"))  # 3 bars, one repeated
    figures = summary([home, away])
    assert figures["final_tonic"] == 1.0
    assert figures["section_tonic"] == pytest.approx(2 / 3, abs=1e-4)
    assert figures["repeated_bars"] == pytest.approx(1 / 5, abs=1e-4)
    assert figures["mean_highest"] == pytest.approx(74.0)
