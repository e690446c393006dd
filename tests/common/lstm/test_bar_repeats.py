"""Repeated bars (`common.lstm.bar_repeats`): a tune follows its plan char for char where every
other rule allows, and the plans are read from the corpus (`music_rules.repeat_plan`)."""

from __future__ import annotations

import numpy as np
import pytest

from common.abc.music import read_music
from common.lstm.bar_tracker import BarTracker
from common.lstm.music_rules import DEFAULT_RULES, HALF, SECOND, MusicRules, repeat_plan
from tests.common.lstm.test_bar_tracker import CHARS, bars_right
from tests.common.lstm.walks import walk

HEAD = "X:1\nM:C|\nL:1/8\nK:D\n"
#: Bar 4 repeats bar 0, bar 5 the first half of bar 1, bar 6 the second half of bar 2, bar 15
#: repeats bar 7; nothing else.
PLAN = tuple({4: 0, 5: HALF + 1, 6: SECOND + 2, 15: 7}.get(i, -1) for i in range(16))


@pytest.fixture
def tracker() -> BarTracker:
    rules = MusicRules(shortest=DEFAULT_RULES.shortest, plans=(PLAN,))
    return BarTracker(CHARS, form=True, music=rules)


def feed(tracker: BarTracker, text: str) -> tuple[np.ndarray, np.ndarray]:
    state = tracker.initial_state(1)
    mask = np.ones((1, len(CHARS)), bool)
    for i, ch in enumerate(text):
        state, mask = tracker.step(
            state, np.asarray([CHARS.index(ch)]), np.asarray([i == 0]), seeds=np.asarray([7])
        )
    return state, mask


def allowed(mask: np.ndarray) -> set[str]:
    return {CHARS[i] for i in np.flatnonzero(mask[0])}


def test_a_planned_bar_is_the_source_bar_again(tracker: BarTracker) -> None:
    bars = '"D"A2FA dAFA|B2GB dBGB|A2FA dfed|cABG FDD2|'
    _, mask = feed(tracker, HEAD + bars)
    # bar 4 starts: the source's first element, or what takes no time before it
    assert '"' in allowed(mask) and "A" not in allowed(mask) and " " in allowed(mask)
    _, mask = feed(tracker, HEAD + bars + ' "D')
    assert allowed(mask) == {'"'}
    _, mask = feed(tracker, HEAD + bars + '"D"A2FA d')
    assert allowed(mask) == {"A"}
    # bar 5 repeats bar 1's first half (B2GB), then it is the model's own again
    _, mask = feed(tracker, HEAD + bars + '"D"A2FA dAFA|B2G')
    assert allowed(mask) == {"B"}
    _, mask = feed(tracker, HEAD + bars + '"D"A2FA dAFA|B2GB ')
    assert {"A", "B", "c", "d", "z"} <= allowed(mask)
    # bar 6 is the model's own up to its middle, then bar 2's second half (dfed)
    _, mask = feed(tracker, HEAD + bars + '"D"A2FA dAFA|B2GB fedc|fgaf')
    assert "d" in allowed(mask) and "e" not in allowed(mask) and "2" in allowed(mask)
    _, mask = feed(tracker, HEAD + bars + '"D"A2FA dAFA|B2GB fedc|fgaf d')
    assert allowed(mask) == {"f"}
    # ...unless a note crossed the middle: no copy
    _, mask = feed(tracker, HEAD + bars + '"D"A2FA dAFA|B2GB fedc|f3g2 ')
    assert {"A", "B", "c"} <= allowed(mask)
    # bar 7 has no plan
    _, mask = feed(tracker, HEAD + bars + '"D"A2FA dAFA|B2GB fedc|fgaf dfed|')
    assert {"A", "B", "c", "z"} <= allowed(mask)
    assert tracker.repeats is not None and tracker.repeats.copied >= 10


def test_a_copy_stops_where_another_rule_refuses_and_the_model_goes_on(
    tracker: BarTracker,
) -> None:
    # bar 7 closes the first part on the tonic; bar 15 repeats it, and ends the tune there
    part = "A2FA dAFA|" * 7 + "cABG FDD2:|"
    _, mask = feed(tracker, HEAD + part + "fedc BAGF|" * 7 + "cABG F")
    assert allowed(mask) == {"D"}
    # without seeds no plan is drawn: nothing is copied
    state = tracker.initial_state(1)
    for i, ch in enumerate(HEAD + "A2FA dAFA|" * 4):
        state, mask = tracker.step(state, np.asarray([CHARS.index(ch)]), np.asarray([i == 0]))
    assert {"A", "B", "c"} <= allowed(mask)


def test_plans_are_read_as_the_form_counts_bars() -> None:
    body = (
        "|:A|" + "dAFA dAFA|" * 3 + "B2GB dBGB|" + "dAFA dAFA|" + "B2GB dBGB|A2FA dfed|cABG FDD:|"
    )
    tune = "X:1\nT:t\nM:C|\nL:1/8\nK:D\n" + body + "\n|:d|" + "fedc BAGF|" * 7 + "cABG FDD:|\n"
    plan = repeat_plan(read_music(tune))
    assert plan == (-1, 0, 0, -1, 0, 3, -1, -1, -1, 8, 8, 8, 8, 8, 8, 7)
    # a bar that begins (or ends) as an earlier one does: its first (second) half is planned
    a = "dAFA dAFA|" * 3 + "B2GB dBGB|dAFA dAFA|dAFA fedB|A2FA dBGB|cABG FDD:|"
    half = tune.replace(body, "|:A|" + a)
    assert repeat_plan(read_music(half)) == (
        (-1, 0, 0, -1, 0, HALF + 0, SECOND + 3, -1, -1, 8, 8, 8, 8, 8, 8, 7)
    ), half
    # a tune with endings, or not two parts of eight, has none
    assert repeat_plan(read_music(tune.replace("FDD:|\n", "FDD|[1 A:|[2 B||\n", 1))) is None
    assert repeat_plan(read_music("X:1\nT:t\nM:C|\nL:1/8\nK:D\n" + "dAFA dAFA|" * 9 + "\n")) is None


@pytest.mark.parametrize("seed", range(2))
def test_random_walks_with_plans_never_dead_end(tracker: BarTracker, seed: int) -> None:
    """Adversarial picks with every row following the plan: the mask is never empty, every bar
    is whole by the independent count, and copies are made."""
    favour = [set("ABCDEFGabcdefg"), set("0123456789/"), set("|:"), set(" \n")]
    assert tracker.repeats is not None
    done = walk(tracker, seed, [HEAD], favour, rows=16, steps=2000, seeds=True)
    assert tracker.dead_ends == 0
    assert len(done) >= 3 and tracker.repeats.copied > 0
    for tune in done:
        right, total = bars_right(tune)
        assert right == total >= 16, tune
