"""The bar tracker's closing phases: near the length limit a tune closes what it opened and ends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.lstm.bar_closing import CLOSE_MARGIN, END_MARGIN, closing_phases
from common.lstm.bar_part import ENDST, MODE, OPENREP
from common.lstm.bar_tracker import BarTracker
from common.lstm.network import load_registered
from common.lstm.sampler import Sampler
from common.lstm.sampling import TuneRequest, generate
from common.params import SamplingParams
from tests.common.lstm.test_bar_tracker import CHARS, adversarial_pick
from tests.model_fixtures import TinyEnv

HEADER = "X:1\nT:Test\nM:4/4\nL:1/8\nK:D\n"
LIMIT = 1500
FAR, CLOSING, ENDING = 1000, CLOSE_MARGIN - 10, END_MARGIN - 10


@pytest.fixture(scope="module")
def tracker() -> BarTracker:
    return BarTracker(CHARS)


def allowed_after(tracker: BarTracker, text: str, left: int, limit: int = LIMIT) -> set[str]:
    """The chars allowed after `text` when the tune may still write `left` chars."""
    state = tracker.initial_state(1)
    mask = None
    for i, ch in enumerate(text):
        c = np.asarray([CHARS.index(ch)])
        state, mask = tracker.step(state, c, np.asarray([i == 0]), np.asarray([left]), limit)
    assert mask is not None
    return {CHARS[i] for i in np.flatnonzero(mask[0])}


def test_the_phases_scale_down_for_short_limits() -> None:
    left = np.asarray([CLOSING, ENDING, FAR])
    phases = closing_phases(left, LIMIT, 3)
    assert phases.closing.tolist() == [True, True, False]
    assert phases.ending.tolist() == [False, True, False]
    short = closing_phases(np.asarray([50, 15]), 300, 2)  # margins 60 and 20
    assert short.closing.tolist() == [True, True] and short.ending.tolist() == [False, True]
    none = closing_phases(None, None, 2)
    assert not none.closing.any() and not none.ending.any()


def test_in_the_closing_phase_no_repeat_or_ending_opens(tracker: BarTracker) -> None:
    for text, opener in (
        (HEADER + "A8|", ":"),  # |:
        (HEADER + "A8|", "1"),  # |1 (the tune's start is an open repeat)
        (HEADER + "A8|[", "1"),  # [1
        (HEADER + "|:A8:", ":"),  # ::
    ):
        assert opener in allowed_after(tracker, text, FAR), text
        assert opener not in allowed_after(tracker, text, CLOSING), text
    # What is open may still close, and other barlines are unchanged.
    assert {":", "|"} <= allowed_after(tracker, HEADER + "|:A8", CLOSING)
    assert {"|", "]"} <= allowed_after(tracker, HEADER + "A8|", CLOSING)
    assert ":" in allowed_after(tracker, HEADER + "A8|", 100, limit=300)  # margin 60 there


def test_in_the_ending_phase_the_tune_closes_and_ends_at_its_next_closed_bar(
    tracker: BarTracker,
) -> None:
    # A full bar in an open repeat or 1st ending closes it with :|.
    for text in (HEADER + "|:A8", HEADER + "|:A8|1 B8"):
        assert "|" in allowed_after(tracker, text, FAR)
        assert ":" in allowed_after(tracker, text, ENDING) and "|" not in allowed_after(
            tracker, text, ENDING
        )
    # Where the tune may end, only the end: a line break, or ] completing |] or :|].
    assert allowed_after(tracker, HEADER + "A8|B8|", ENDING) == {"\n", "]"}
    assert allowed_after(tracker, HEADER + "|:A8|B8:|", ENDING) == {"\n", "]"}
    assert allowed_after(tracker, HEADER + "A8|B8|]", ENDING) == {"\n"}
    assert allowed_after(tracker, HEADER + "A8|B8|\n", ENDING) == {"\n"}
    assert len(allowed_after(tracker, HEADER + "A8|B8|", FAR)) > 10
    # Mid-bar: no run of spaces, no line continuation; notes as before.
    mid = allowed_after(tracker, HEADER + "A8|B4 ", ENDING)
    assert " " not in mid and "\\" not in mid and set("ABCcdz") <= mid
    far = allowed_after(tracker, HEADER + "A8|B4 ", FAR)  # far from the end: a continuation
    assert "\\" in far and " " not in far  # (never a second space: no_space_runs)
    # A waiting tie bans the end: the tied note comes first, the line may still break.
    assert {"B", " ", "\n"} <= allowed_after(tracker, HEADER + "A8|B8-|", ENDING)
    tied = allowed_after(tracker, HEADER + "A8|B8-|\n", ENDING)
    assert "\n" not in tied and "B" in tied
    assert tracker.dead_ends == 0


@pytest.mark.parametrize("seed", range(2))
def test_random_walks_near_the_limit_never_dead_end_and_open_nothing(
    tracker: BarTracker, seed: int
) -> None:
    """Adversarial logits as in the tracker's random walks, each tune with a 400-char limit:
    the mask is never empty, nothing opens in the closing phase, and many tracked tunes end in
    time. Not all: the adversary fills bars with quarter-unit notes, slurs, grace notes and
    spaces, so a bar can take more than the end margin; and since a bar may be short only as the
    tune's pickup or a closing bar that completes it (abc2midi's pairing), a bar once begun must
    be filled. How often a real model's tunes end in time is measured on the tiny model below
    and by bench/tune_validity.py."""
    rng = np.random.default_rng(seed)
    rows, limit = 24, 400
    close = min(CLOSE_MARGIN, limit // 5)
    headers = ["X:1\nM:4/4\nL:1/8\nK:D\n", "X:1\nM:6/8\nK:G\n", "X:1\nM:3/4\nL:1/16\nK:A\n"]
    favour = [set("0123456789/"), set("ABCDEFGabcdefg"), set("|:[]"), set('(<>{}"!-'), set(" ")]
    state = tracker.initial_state(rows)
    texts = [headers[r % 3] for r in range(rows)]
    current = ["" for _ in range(rows)]
    fresh = np.ones(rows, bool)
    mask = np.ones((rows, len(CHARS)), bool)
    ended = cut = 0
    tracker.dead_ends = 0
    for step in range(1500):
        choice = np.empty(rows, int)
        for r in range(rows):
            if len(current[r]) < len(texts[r]):
                choice[r] = CHARS.index(texts[r][len(current[r])])
            else:
                choice[r] = adversarial_pick(mask[r], rng, favour, step, r)
        for r in range(rows):
            current[r] += CHARS[choice[r]]
        left = np.asarray([limit - len(t) for t in current], np.int32)
        before = state
        state, mask = tracker.step(state, choice, fresh, left, limit)
        assert mask.any(axis=1).all()
        # The char just fed was chosen under the closing phase: it opened no repeat or ending.
        tracked = ~fresh & (left + 1 <= close) & (state[:, MODE] != tracker.free)
        opened = (state[:, OPENREP] > before[:, OPENREP]) | (
            (state[:, ENDST] == 1) & (before[:, ENDST] != 1)
        )
        assert not (tracked & opened).any(), [current[r] for r in np.flatnonzero(tracked & opened)]
        fresh[:] = False
        for r in range(rows):
            text = current[r]
            done = text.endswith("\n\n") or text.endswith("\nX")
            if done or len(text) >= limit:
                ended += done
                cut += not done and tracker.mode_name(state[r]) != "FREE"  # FREE: untracked
                current[r] = ""
                texts[r] = headers[rng.integers(3)]
                fresh[r] = True
    assert tracker.dead_ends == 0
    assert ended >= 20 and cut < 2 * ended, (ended, cut)


def test_a_trained_model_ends_its_tunes_before_the_limit(tiny_env: TinyEnv, tmp_path: Path) -> None:
    """The tiny model's text is near random and rarely ends on its own; with the tracker it ends
    near max-chars at a closed bar."""
    _, model, vocab = load_registered(tiny_env.store, tiny_env.model.id, tmp_path / "cache")
    primer = "X:1\nM:6/8\nL:1/8\nK:D\n"
    if set(primer) - set(vocab.chars):
        pytest.skip("the tiny corpus lacks a char of the primer")
    sampler = Sampler(model, vocab, batch_size=16, steps_per_call=16)
    requests = [TuneRequest(i, 0, primer) for i in range(16)]
    params = SamplingParams(temperature=1.0, seed=5, max_chars=700, bar_tracker=True)
    tunes = generate(sampler, params, requests)
    again = generate(sampler, params, requests)
    assert [t.text for t in tunes] == [t.text for t in again]  # still deterministic
    ended = [t for t in tunes if not t.truncated]
    assert len(ended) >= 12, [len(t.text) for t in tunes]
    for tune in ended:
        assert tune.text.rstrip()[-1] in "|]", tune.text  # a closed bar
    assert sampler.tracker.dead_ends == 0
