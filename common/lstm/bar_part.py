"""The one interface between the bar tracker and its parts, and the tracker's own state columns.

A rule on top of the bar tracker (the two-part form, ties, the closing phases, the music rules,
the repeated bars) is a `TrackerPart`: it claims the state columns it needs (`FIELDS`), and the
tracker calls its hooks at fixed points of each step. So a new rule is one module with one part
and one line in `common.lstm.bar_tracker.PARTS`: the tracker lays out the columns, starts,
feeds and masks every part in that list, and checks that every condition a grammar rule can
require (`common.lstm.bar_rules.Cond`) is answered by exactly one checker.

The state stays one int32 array [B, FIELDS] (the sampler carries it with the LSTM state, and
its compiled signature fixes the width), so the layout follows from the `PARTS` list alone,
whatever a tracker's options: the columns of every listed part exist, only the parts its
options want are built and called.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from common.lstm.bar_rules import Cond
from common.lstm.bar_tables import Tables
from common.lstm.music_rules import MusicRules

# The tracker's own per-slot integer state, one column each. NACC, NLET, NOCT: the spelling of
# the note being written (accidental code, letter index or -1 for a rest or chord, octave
# marks); DEC: it is decorated; TIE, TIEK: the spelling a tie waits for (-1: none) and how much
# of it is written; ENDST: 0, in a 1st ending (1), in a 2nd (2), a 1st just closed by :| (3);
# OPENREP: a repeat is open, 1 by |: or ::, 2 by :|: (which abc2midi counts as a :|);
# CLOSED: a :| came since the last |: (an ending then needs a new |:), 2 if it closed a repeat
# opened by |:, :: or the tune's start (:: may follow), 3 one opened by :|: (only :|: may).
# CARRY: ticks a section's short closing bar left for the next section's pickup to complete;
# SHORT: this bar must close its section short by the pickup.
(MODE, POS, BARLEN, Q, PICKUP, PICKOK, NEED, OPENREP, BARS, TUPR, TUPLEFT, TARGET, BRK,
 LASTQ, LASTV, LASTPLAIN, MNUM, MDEN, UDEN, ACCN, ACCD, FULLS, NACC, NLET, NOCT, DEC, TIE,
 TIEK, ENDST, CLOSED, CARRY, SHORT) = range(32)  # fmt: skip
OWN_FIELDS = 32
#: The mode of a row the tracker does not follow (outside the subset it knows).
FREE_MODE = "FREE"

Array = npt.NDArray[np.int32]
Rows = npt.NDArray[np.intp]
Flags = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Phases:
    """Rows near their length limit (`common.lstm.bar_closing.closing_phases`)."""

    closing: npt.NDArray[np.bool_]
    ending: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Build:
    """What a part is built from: the compiled tables, the vocabulary, its first column and
    the tracker's options (`form`: two 8-bar parts; `music`: the corpus's limits); `bases`:
    every part's first column, for a part that reads another's."""

    t: Tables
    modes: Sequence[str]
    mode_id: dict[str, int]
    chars: tuple[str, ...]
    base: int
    bases: dict[type[TrackerPart], int]
    form: bool
    music: MusicRules | None


@dataclass
class View:
    """Each row as the tracker sees it before the next char, for the parts' masks. `pos`,
    `epos`: the bar's position once the pending note ends (`epos` with the carried pickup);
    `fits_next`: lengths the next note may take; `cadence`, `window`: a part's last bar, and
    its final unit (only with music rules); `can_end`: the tune may end here."""

    s: Array
    mode: Ints
    live: Flags
    pos: Ints
    epos: Ints
    pending: Flags
    fits_next: Ints
    phase: Phases
    last: Array | None
    cadence: Flags | None = None
    window: Flags | None = None
    can_end: Flags | None = None


class TrackerPart:
    """A rule on top of the tracker. Override only the hooks it needs: the tracker calls a hook
    only on the parts that override it (each call is on the sampler's hot path).

    Hooks, in the order of a step: `start` (rows beginning a new tune), `feed` (each row's char,
    after its pending note is committed, before the barline and field actions), `body_start`
    (rows whose header just ended), `conditions` (the `Cond` bits the part answers), `mask`
    (AND the rule into the chars allowed next, in place, in `PARTS` order)."""

    #: State columns this part claims; the tracker passes the first as `Build.base`.
    FIELDS: ClassVar[int] = 0
    #: Columns too many to copy to int64 each step (recorded text): laid out after the others.
    BULK: ClassVar[bool] = False
    #: `mask` gives way as one with the neighbouring parts that set it: a row they would leave
    #: without a char keeps the mask from before the first of them (counted in `gave_way`).
    GIVES_WAY: ClassVar[bool] = False
    #: Conditions this part answers in `conditions` (checked for coverage at build).
    ANSWERS: ClassVar[tuple[Cond, ...]] = ()

    def __init__(self, b: Build) -> None:
        """Build the part's tables over one vocabulary (`b`); its columns start at `b.base`."""

    @classmethod
    def wanted(cls, form: bool, music: MusicRules | None) -> bool:
        """Whether a tracker with these options builds this part."""
        return True

    @classmethod
    def initial(cls, row: Array, base: int) -> None:
        """Set this part's columns of a fresh row (on or off: the columns exist either way)."""

    def start(self, s: Array, fresh: Flags, seeds: npt.NDArray[np.integer] | None) -> None:
        """Rows in `fresh` begin a new tune (already reset to the initial row)."""

    def feed(self, s: Array, mode: Ints, c: Ints) -> None:
        """Each row wrote char `c` in `mode`."""

    def body_start(self, s: Array, rows: Rows) -> None:
        """The header of `rows` just ended with its ``K:`` line."""

    def conditions(self, view: View) -> dict[Cond, Flags]:
        """Per condition in `ANSWERS`, the rows where it holds."""
        return {}

    def mask(self, view: View, allowed: Flags) -> None:
        """AND the rule into `allowed` [B, V] (in place)."""


def overrides(part: TrackerPart, hook: str) -> bool:
    return getattr(type(part), hook) is not getattr(TrackerPart, hook)


def layout(parts: Sequence[type[TrackerPart]]) -> tuple[dict[type[TrackerPart], int], int, int]:
    """Each part's first column, the end of the columns the mask reads as int64 (the tracker's
    and every part's but the `BULK` ones), and the width of the state."""
    bases: dict[type[TrackerPart], int] = {}
    at = OWN_FIELDS
    for bulk in (False, True):
        for part in parts:
            if bulk == part.BULK:
                bases[part] = at
                at += part.FIELDS
        if not bulk:
            core = at
    return bases, core, at
