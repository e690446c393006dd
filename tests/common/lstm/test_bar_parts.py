"""The bar tracker's parts: conditions answered by name, columns laid out from the parts list."""

from __future__ import annotations

import numpy as np
import pytest

from common.lstm.bar_form import FORM_FIELDS
from common.lstm.bar_music import MUSIC_FIELDS
from common.lstm.bar_part import OWN_FIELDS, TrackerPart, layout
from common.lstm.bar_repeats import REPEAT_FIELDS
from common.lstm.bar_rules import LENGTHS, Cond
from common.lstm.bar_tables import REQ_DTYPE, check_coverage, compile_tables
from common.lstm.bar_tracker import ANSWERS, FIELDS, PARTS, BarTracker
from common.lstm.music_rules import DEFAULT_RULES
from tests.common.lstm.test_bar_tracker import CHARS, HEADER, ids


def test_every_condition_is_answered_once_and_every_required_bit_is_a_condition() -> None:
    check_coverage(ANSWERS)
    with pytest.raises(RuntimeError, match="not answered: \\['NOUNIT'\\]"):
        check_coverage([c for c in ANSWERS if c != Cond.NOUNIT])
    with pytest.raises(RuntimeError, match="more than once: \\['TIE'\\]"):
        check_coverage([*ANSWERS, Cond.TIE])
    t, _ = compile_tables(CHARS)
    required = int(np.bitwise_or.reduce(t.req.astype(np.int64), axis=None))
    assert required >> len(Cond) == 0  # no rule requires a bit that is no condition
    # every named condition is some rule's (no length suffix has a 0 or a 9 next)
    assert {c for c in Cond if not (required >> c) & 1} == {Cond.LEN_0, Cond.LEN_9}
    assert np.iinfo(REQ_DTYPE).bits > len(Cond)  # the table holds them all, sign bit spare
    assert LENGTHS[-1] == Cond.LEN_SLASH


def test_the_state_layout_is_the_parts_columns_after_the_trackers() -> None:
    # The sampler's compiled signature carries FIELDS columns: the layout is fixed by PARTS.
    assert FIELDS == OWN_FIELDS + FORM_FIELDS + MUSIC_FIELDS + REPEAT_FIELDS

    class Extra(TrackerPart):
        FIELDS = 3

    bases, core, width = layout((*PARTS, Extra))
    assert width == FIELDS + 3 and bases[Extra] == core - 3  # before the bulk columns


def test_a_part_is_built_and_called_only_where_its_options_want_it() -> None:
    calls: list[str] = []

    class Probe(TrackerPart):
        def feed(self, s: np.ndarray, mode: np.ndarray, c: np.ndarray) -> None:
            calls.append("feed")

    plain = BarTracker(CHARS)
    assert {type(p).__name__ for p in plain.parts} == {"BarTies", "BarBroken", "BarClosing"}
    music = BarTracker(CHARS, form=True, music=DEFAULT_RULES)
    assert music.form is not None and music.music is not None and music.repeats is None
    plain._hooks["feed"].append(Probe.__new__(Probe))
    state = plain.initial_state(1)
    for i, c in enumerate(ids(HEADER + "A")):
        state, _ = plain.step(state, np.asarray([c]), np.asarray([i == 0]))
    assert len(calls) == len(HEADER) + 1
