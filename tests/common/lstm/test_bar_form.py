"""Two-part form by construction (the bar tracker with form on): hand-written tunes, random
walks, and a trained model's tunes, each judged by `common.abc.rhythm`'s independent count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.abc.rhythm import check_rhythm
from common.lstm.bar_tracker import BarTracker
from common.lstm.network import load_registered
from common.lstm.sampler import Sampler
from common.lstm.sampling import TuneRequest, generate
from common.params import SamplingParams
from tests.common.lstm.test_bar_tracker import CHARS, HEADER, bars_right
from tests.common.lstm.walks import walk
from tests.model_fixtures import TinyEnv

BAR = "ABcd efga|"
PART = "|:" + BAR * 7 + "ABcd efga:|\n"


@pytest.fixture(scope="module")
def form() -> BarTracker:
    return BarTracker(CHARS, form=True)


def first_refused(tracker: BarTracker, text: str) -> int | None:
    state = tracker.initial_state(1)
    mask = None
    for i, ch in enumerate(text):
        c = CHARS.index(ch)
        if mask is not None and not mask[0, c]:
            return i
        state, mask = tracker.step(state, np.asarray([c]), np.asarray([i == 0]))
    return None


@pytest.mark.parametrize(
    "body",
    [
        PART + PART,  # AABB with repeat signs
        BAR * 8 + "|" + BAR * 7 + "ABcd efga|]\n",  # two parts, repeats not written
        "|:A|" + BAR * 7 + "ABcd efg:|\n|:A|" + BAR * 7 + "ABcd efg:|\n",  # pickups
        "d|" + BAR * 7 + "ABcd efg||\nd|" + BAR * 7 + "ABcd efg|]\n",  # pickup + short bar 8
        "|:" + BAR * 7 + "A8:|\n" + BAR * 7 + "A8||\n",  # A repeated, B written once
    ],
)
def test_two_part_tunes_are_written_and_counted_two_part(form: BarTracker, body: str) -> None:
    tune = HEADER + body + "\n"
    assert first_refused(form, tune) is None, tune
    assert check_rhythm(tune.strip()).two_part


@pytest.mark.parametrize(
    ("body", "bad"),
    [
        ("|:" + BAR * 3 + "ABcd efga:", ":"),  # a boundary after 4 bars
        (BAR * 3 + "ABcd efga||", "|"),  # also as '||' (the second '|')
        (BAR * 8 + "A", "A"),  # bar 8 must close a section
        ("|:" + BAR * 7 + "ABcd efga|", "|"),  # ... and an open repeat only with ':|'
        (PART + "\n", "\n"),  # no end after one part
        (PART + BAR * 8 + ":", ":"),  # the last part does not close with '|:'
        (PART + PART.rstrip("\n") + "A", "A"),  # no third part
        (PART + PART.rstrip("\n") + ":", ":"),  # not even '::'
        ("|:" + BAR * 6 + "ABcd efga|1", "1"),  # no endings
        (PART + "|:" + BAR * 7 + "ABcd efga-", "-"),  # the last note is not tied
        ("|:" + BAR * 7 + "ABcd efga-", "-"),  # nor the first part's (abc2midi: "^b b-::b")
    ],
)
def test_the_form_rule_refuses(form: BarTracker, body: str, bad: str) -> None:
    tune = HEADER + body
    assert first_refused(form, tune) == len(tune) - len(bad)
    assert first_refused(BarTracker(CHARS), tune) is None  # the tracker alone takes it


@pytest.mark.parametrize("seed", range(4))
def test_random_walks_with_form_never_dead_end_and_write_two_parts(
    form: BarTracker, seed: int
) -> None:
    """Adversarial random picks among the allowed chars (favouring digits, notes, barlines or
    the end in turn): the mask is never empty, and every tune that ends is two-part, with every
    bar of the meter's length, by the independent count."""
    headers = ["X:1\nM:4/4\nL:1/8\nK:D\n", "X:1\nM:6/8\nK:G\n", "X:1\nM:3/4\nL:1/16\nK:A\n"]
    favour = [set("0123456789/"), set("ABCDEFGabcdefg"), set("|:[]"), set('(<>{}"!-'), set("|\n")]
    form.dead_ends = 0
    assert form.form is not None
    form.form.yielded = 0
    done = walk(form, seed, headers, favour, rows=24, steps=2500)
    assert form.dead_ends == 0 and form.form is not None and form.form.yielded == 0
    assert len(done) >= 3
    for tune in done:
        right, total = bars_right(tune)
        assert right == total >= 16, tune
        assert check_rhythm(tune).two_part, (tune, check_rhythm(tune).parts)


def test_batched_rows_match_single_rows(form: BarTracker) -> None:
    """A row's mask depends on its own chars only (slots of a batch do not interact)."""
    tunes = [HEADER + PART + PART + "\n", HEADER + "d|" + BAR * 7 + "ABcd efg||\n", HEADER + BAR]
    width = max(len(t) for t in tunes)
    state = form.initial_state(len(tunes))
    singles = [form.initial_state(1) for _ in tunes]
    for i in range(width):
        chars = np.asarray([CHARS.index(t[i]) if i < len(t) else CHARS.index(" ") for t in tunes])
        state, mask = form.step(state, chars, np.full(len(tunes), i == 0))
        for r in range(len(tunes)):
            singles[r], one = form.step(singles[r], chars[r : r + 1], np.asarray([i == 0]))
            assert (one[0] == mask[r]).all() and (singles[r][0] == state[r]).all()


def test_a_trained_model_with_form_writes_only_two_part_tunes(
    tiny_env: TinyEnv, tmp_path: Path
) -> None:
    """Every tune the tiny model finishes with form on is two-part; the same seed gives the
    same tunes again."""
    _, model, vocab = load_registered(tiny_env.store, tiny_env.model.id, tmp_path / "cache")
    primer = "X:1\nM:6/8\nL:1/8\nK:D\n"
    if set(primer) - set(vocab.chars):
        pytest.skip("the tiny corpus lacks a char of the primer")
    sampler = Sampler(model, vocab, batch_size=16, steps_per_call=16)
    requests = [TuneRequest(i, 0, primer) for i in range(16)]
    params = SamplingParams(temperature=1.0, seed=3, max_chars=900, form=True)
    first = [t.text for t in generate(sampler, params, requests)]
    tunes = generate(sampler, params, requests)
    assert [t.text for t in tunes] == first
    for tune in tunes:
        r, total = bars_right(tune.text, closed_only=tune.truncated)
        assert r == total, tune.text
        if not tune.truncated:
            assert check_rhythm(tune.text).two_part, tune.text
    assert sampler.form_tracker.dead_ends == 0
