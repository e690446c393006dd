"""The tracker's music rules (`common.lstm.bar_music`): shortest notes, register and cadences,
on hand-written streams and adversarial random walks, each judged by the independent reader
(`common.abc.music`), not by the tracker's own counters."""

from __future__ import annotations

from fractions import Fraction

import pytest

from common.abc.music import Note, read_music, split_header
from common.lstm.bar_tracker import BarTracker
from common.lstm.music_rules import DEFAULT_RULES, MusicRules, learn_music_rules
from tests.common.lstm.test_bar_form import first_refused
from tests.common.lstm.test_bar_tracker import CHARS, bars_right
from tests.common.lstm.walks import walk

BAR = "ABcd efga|"


@pytest.fixture(scope="module")
def music() -> BarTracker:
    return BarTracker(CHARS, form=True, music=DEFAULT_RULES)


@pytest.fixture(scope="module")
def plain() -> BarTracker:
    return BarTracker(CHARS, form=True)


def test_shortest_notes_follow_the_meter(music: BarTracker, plain: BarTracker) -> None:
    reel = "X:1\nM:C|\nL:1/8\nK:G\nABcd e"
    polka = "X:1\nM:2/4\nL:1/8\nK:G\nAB c"
    # 1/32 (A//) is shorter than any reel of O'Neill's uses, a 1/16 (A/) is not
    assert first_refused(music, reel + "//") == len(reel) + 1
    assert first_refused(music, reel + "/e/") is None
    assert first_refused(plain, reel + "//") is None
    # O'Neill's 2/4 tunes use 1/32 notes: allowed there
    assert first_refused(music, polka + "//") is None
    # the short half of a broken pair is no shorter either: A/>B/ would make a 1/32
    assert first_refused(music, reel + "/>") == len(reel) + 1
    assert first_refused(music, reel + ">") is None
    # a triplet of sixteenths (1/24 each) is shorter than 1/16
    assert first_refused(music, reel + " (3A/") == len(reel) + 4


def test_octave_marks_stay_in_the_corpus_register(music: BarTracker, plain: BarTracker) -> None:
    tune = "X:1\nM:C|\nL:1/8\nK:G\nABcd "
    assert first_refused(music, tune + "c'") == len(tune) + 1  # C6 is above B5
    assert first_refused(music, tune + "b") is None
    assert first_refused(music, tune + "G,") is None  # G3, the fiddle's open G string
    assert first_refused(music, tune + "F,") == len(tune) + 1
    chords = BarTracker(CHARS, form=True, music=MusicRules(brackets=True))
    assert first_refused(chords, tune + "[Gc'") == len(tune) + 3  # no marks in chords
    assert first_refused(plain, tune + "c'") is None


def test_each_part_ends_on_the_tonic(music: BarTracker) -> None:
    head = "X:1\nM:C|\nL:1/8\nK:D\n"
    seven = "|:" + BAR * 7
    assert first_refused(music, head + seven + "ABcd efgd:|") is None  # d: the tonic
    at = len(head + seven) + 7  # the eighth unit's note
    assert first_refused(music, head + seven + "ABcd efga:|") == at + 1
    # in the last unit only the tonic starts a note, and no other note reaches into it
    assert first_refused(music, head + seven + "ABcd efD2:|") is None
    assert first_refused(music, head + seven + "ABcd e3D:|") is None
    assert first_refused(music, head + seven + "ABcd efg2") == at + 1
    # one tonic note fills the final unit: no squeezed d/d/, no note ending inside it
    assert first_refused(music, head + seven + "ABcd efgd/") == at + 2
    assert first_refused(music, head + seven + "ABcd ef d3/") == at + 2  # no 3, 3/, 3/2
    assert first_refused(music, head + seven + "ABcd ef d2:|") is None
    assert first_refused(music, head + seven + "ABcd efg^d") == at + 1  # the key's tonic
    assert first_refused(music, head + seven + "ABcd ef^d d:|") is None  # D# is no tonic
    assert first_refused(music, head + seven + "ABcd ef^d2") == at + 2
    assert first_refused(music, head + seven + "ABcd ef>") == at  # no broken rhythm there
    # a mode's tonic is the key's letter: A Dorian ends on A
    dorian = "X:1\nM:C|\nL:1/8\nK:Ador\n" + seven
    assert first_refused(music, dorian + "ABcd efgA:|") is None
    assert first_refused(music, dorian + "ABcd efgd:|") == len(dorian) + 8
    assert first_refused(music, dorian + "ABcd efg[") == len(dorian) + 8  # no chord there


@pytest.mark.parametrize("seed", range(3))
def test_random_walks_keep_the_rules_and_never_dead_end(music: BarTracker, seed: int) -> None:
    """Adversarial picks among the allowed chars: the mask is never empty, the rules hardly give
    way, and every tune that ends has whole bars (the form's own tests judge its parts) and no
    note shorter than its meter's shortest nor outside the register, by the independent reader
    (the walks change key too often to judge cadences: the hand-written cases above do)."""
    headers = ["X:1\nM:C|\nL:1/8\nK:D\n", "X:1\nM:6/8\nK:G\n", "X:1\nM:2/4\nL:1/16\nK:Ador\n"]
    favour = [set("0123456789/"), set("ABCDEFGabcdefg',"), set("|:[]"), set('(<>{}"!-'), set("|\n")]
    assert music.music is not None and music.form is not None
    music.dead_ends = music.music.yielded = music.form.yielded = music.gave_way = 0
    done = walk(music, seed, headers, favour, rows=24, steps=2500)
    # The rules give way (to the tracker's own mask) only in corners no model reaches, such as
    # a tuplet begun off the grid of the bar: a handful in 60,000 adversarial steps at most.
    assert music.dead_ends == 0 and music.form.yielded == 0
    assert music.music.yielded + music.gave_way <= 10
    assert len(done) >= 3
    for tune in done:
        right, total = bars_right(tune)
        assert right == total >= 16, tune
        meter = split_header(tune)[0]["M"].strip()
        least = Fraction(1, 32) if meter == "2/4" else Fraction(1, 16)
        for event in read_music(tune).events:
            if isinstance(event, Note):
                # a tuplet's notes are shorter than written: judge the written length
                assert event.duration >= least * Fraction(2, 3), (tune, event)
                # G3-B5 as written, give or take a double accidental
                assert all(55 - 2 <= p <= 83 + 2 for p in event.pitches), (tune, event)


def test_no_chords_or_inline_fields_where_the_corpus_has_none(
    music: BarTracker, plain: BarTracker
) -> None:
    tune = "X:1\nM:C|\nL:1/8\nK:G\nABcd "
    assert first_refused(music, tune + "[GB]") == len(tune)
    assert first_refused(music, tune + "efga|[K:D]") == len(tune) + 5
    assert first_refused(plain, tune + "[GB]") is None
    chords = BarTracker(CHARS, form=True, music=MusicRules(brackets=True))
    assert first_refused(chords, tune + "[GB]") is None


def test_slurs_close_in_their_bar(music: BarTracker, plain: BarTracker) -> None:
    tune = "X:1\nM:C|\nL:1/8\nK:G\nABcd (efga"
    assert first_refused(music, tune + "|") == len(tune)
    assert first_refused(music, tune + ")|(ABc)d (3efg a2|") is None  # a tuplet is no slur
    assert first_refused(music, "X:1\nM:C|\nL:1/8\nK:G\nAB(c(d") == len(tune) - 6  # no nesting
    assert first_refused(plain, tune + "|") is None
    slurs = BarTracker(CHARS, form=True, music=MusicRules(long_slurs=True))
    assert first_refused(slurs, tune + "|") is None


def test_rules_are_learned_from_the_corpus() -> None:
    high = "X:{n}\nT:t\nM:6/8\nL:1/8\nK:G\nGAB c'BA|G3 G3|]\n"
    low = "X:{n}\nT:t\nM:2/4\nL:1/16\nK:D\nD,EFG ABcd|d8|]\n"
    tunes = [high.format(n=i) for i in range(60)] + [low.format(n=i) for i in range(60)]
    rules = learn_music_rules(tunes)
    assert rules.highest == 84 and rules.lowest == 50
    assert rules.shortest_for(6, 8) == Fraction(1, 8)
    assert rules.shortest_for(2, 4) == Fraction(1, 16)
    assert rules.shortest_for(3, 4) == rules.default_shortest
    assert MusicRules.from_json(rules.to_json()) == rules
    assert not rules.brackets
    chorded = [t.replace("GAB c'BA", "[GB]AB c'BA") for t in tunes]
    assert learn_music_rules(chorded).brackets
    assert not rules.long_slurs
    slurred = [t.replace("GAB c'BA|", "GAB (c'BA|") for t in tunes]
    assert learn_music_rules(slurred).long_slurs
    # too few tunes to say anything: O'Neill's figures
    assert learn_music_rules(tunes[:10]) == MusicRules()
