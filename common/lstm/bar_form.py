"""Two-part form by construction: per-slot section counting on top of the bar tracker.

With form on, the sampler writes a dance tune's two parts, each of 8 bars, and then ends:

* a section's length is the closed bars' durations added up exactly (in `PER_BAR` units of
  each bar), so a pickup and the closing bar that completes it make one bar, and a part with a
  half-bar pickup is not let off after seven bars and a half (`common.abc.rhythm.parts`, which
  judges tunes it did not write, rounds instead);
* a section boundary (``:|``, ``||``, ``|]``, ``|:``, ``::``, ``:|:``) may be written only when
  the section has exactly 8 bars (or none: ``|:`` before the tune's pickup), and the barline that
  closes bar 8 must be one; inside an open repeat that is ``:|`` (``||`` there would leave the
  repeat open), and the second part does not close with ``|:`` (an open repeat cannot end it);
* the tune may end only after two sections; once the second is closed only the end of the tune
  may follow (no third section);
* endings (``|1``, ``|2``, ``[1``, ``[2``) are not written: an ending's bars count once and its
  second time not, which the 8-bar rule would have to follow through ``:|`` (left for later).

Why it never dead-ends on top of the tracker: a bar that is not full still takes a note, so a
barline this module bans there only delays it; a part lands on exactly 8 bars (whole bars
without a pickup; with one, its last bar is cut short by it); at a full bar the tracker allows
``:`` (``:|``) and ``|`` outside an open repeat, and this module keeps the one the rule needs; a
part's last note is never tied (in the last part its note would have to come after the end).
Should the rule still leave a row no char, the row keeps the tracker's mask for that step, and
`yielded` counts it (the random-walk tests expect none).

With a pickup, each part's last bar is short by it (the tracker's limit, asked of `last_bar`),
and the next part starts with the pickup that completes it: abc2midi plays ``A|...|d2:|`` as
whole bars, the pickup once more after the repeat.

The state is two int32 columns in the tracker's state array (`ACC`: the closed bars of the
current section in `PER_BAR` units of each bar, `SEC`: sections closed); the tracker calls
`feed` after the pending note is committed and before its barline actions, and ANDs `mask` into
its own.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.lstm.bar_part import (
    BARLEN,
    CARRY,
    FREE_MODE,
    OPENREP,
    PICKOK,
    POS,
    TIE,
    Build,
    TrackerPart,
    View,
)
from common.lstm.bar_rules import (
    A_CLOSE,
    A_CLOSE_COLON,
    A_END1,
    A_END2,
    A_REPOPEN,
    A_SECTION,
    EV_TIE,
    Cond,
)
from common.lstm.music_rules import MusicRules

#: Bars in each of the two parts.
PART_BARS = 8
#: Parts in the tune.
PARTS = 2
#: Columns this module adds to the tracker's state.
FORM_FIELDS = 2
#: A section's length is kept in these units per bar (its bars may differ: inline ``[M:]``); a
#: bar of any meter the tracker counts divides into them exactly for numerators up to 10.
PER_BAR = 2**9 * 3**3 * 5 * 7
#: Chars that may follow the second part: finishing its barline, then the blank line that ends.
AFTER_CHARS = "|]\n"


class BarForm(TrackerPart):
    """Section counter and mask over all slots: its two state columns (ACC, SEC), and the
    tracker's it reads (POS, BARLEN, PICKOK, OPENREP, TIE, CARRY)."""

    FIELDS = FORM_FIELDS

    @classmethod
    def wanted(cls, form: bool, music: MusicRules | None) -> bool:
        return form

    def __init__(self, b: Build) -> None:
        self.acc_col, self.sec_col = b.base, b.base + 1
        self.pos, self.barlen = POS, BARLEN
        self.pickok, self.openrep, self.tie = PICKOK, OPENREP, TIE
        self.carry = CARRY
        self.free = b.mode_id[FREE_MODE]
        self.bar1 = b.mode_id["BAR1"]
        t, chars = b.t, b.chars
        act = t.act
        self.close_bar = act == A_CLOSE  # [modes, V]: '|' closes a bar (a boundary may follow)
        self.close_colon = act == A_CLOSE_COLON  # ':' closes a bar and its section
        self.boundary = (act == A_SECTION) | (act == A_REPOPEN)  # after '|' in BAR1: a boundary
        self.repopen = act == A_REPOPEN
        self.ending = (act == A_END1) | (act == A_END2)
        self.ties = t.event == EV_TIE
        self.ends = (t.req & (1 << Cond.END)) != 0
        self.after = np.asarray([ch in AFTER_CHARS for ch in chars])
        self.newline = np.asarray([ch == "\n" for ch in chars])
        self.yielded = 0  # rows where the rule gave way to the tracker's mask (see `mask`)

    @staticmethod
    def _share(
        pos: npt.NDArray[np.integer], barlen: npt.NDArray[np.integer]
    ) -> npt.NDArray[np.int64]:
        """A bar's `pos` ticks in `PER_BAR` units of its meter's bar."""
        return pos.astype(np.int64) * PER_BAR // np.maximum(barlen.astype(np.int64), 1)

    @staticmethod
    def _bars(acc: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Whole bars, rounded half up (as `common.abc.rhythm.parts` rounds)."""
        return (2 * acc + PER_BAR) // (2 * PER_BAR)

    def last_bar(
        self, s: npt.NDArray[np.int32], pickup: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        """Rows whose current bar, ended short by the pickup, completes the part: the tracker
        ends it there, so the next part's pickup makes it whole."""
        acc = s[:, self.acc_col].astype(np.int64)
        barlen = np.maximum(s[:, self.barlen].astype(np.int64), 1)
        whole = acc + self._share(barlen - pickup, barlen) == PART_BARS * PER_BAR
        return whole & (pickup > 0)  # type: ignore[no-any-return]

    def last_bar_any(
        self, s: npt.NDArray[np.int32], pickup: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        """Rows whose current bar is a part's last (with or without a pickup)."""
        acc = s[:, self.acc_col].astype(np.int64)
        barlen = np.maximum(s[:, self.barlen].astype(np.int64), 1)
        whole = acc + self._share(barlen - pickup, barlen) == PART_BARS * PER_BAR
        return whole & (s[:, self.sec_col] < PARTS)  # type: ignore[no-any-return]

    def feed(
        self, s: npt.NDArray[np.int32], mode: npt.NDArray[np.int64], c: npt.NDArray[np.int64]
    ) -> None:
        """Count the bar a barline closes, and close the section at a boundary (in place)."""
        live = mode != self.free
        close = live & (self.close_bar[mode, c] | self.close_colon[mode, c])
        bnd = live & (self.close_colon[mode, c] | ((mode == self.bar1) & self.boundary[mode, c]))
        if not (close.any() or bnd.any()):
            return
        share = self._share(s[:, self.pos], s[:, self.barlen])
        acc = s[:, self.acc_col].astype(np.int64) + np.where(close, share, 0)
        counted = bnd & (self._bars(acc) >= 1)
        s[:, self.sec_col] += counted
        s[:, self.acc_col] = np.where(bnd, 0, acc)

    def mask(self, view: View, allowed: npt.NDArray[np.bool_]) -> None:
        """AND the form rule into `allowed` (in place); `view.pos` is each bar's position once
        the pending note ends (the tracker's projection)."""
        s, mode, pos = view.s, view.mode, view.pos
        rows = np.flatnonzero(mode != self.free)
        if rows.size == 0:
            return
        m = mode[rows]
        col = s[rows].astype(np.int64).T
        acc, sec = col[self.acc_col], col[self.sec_col]
        barlen = np.maximum(col[self.barlen], 1)
        p = pos[rows]
        # The section's length if it closes now, and after '|' (BAR1: the bar already counted),
        # in PER_BAR units: a part is exactly 8 bars (a pickup and its closing bar make one).
        eight = PART_BARS * PER_BAR
        close = acc + self._share(p, barlen)
        openrep = col[self.openrep] > 0
        # A short bar that is no pickup must end its section (the tracker's NEED rule); a bar
        # that completes a carried pickup counts from the carry.
        epos = p + col[self.carry]
        must_end = (p > 0) & (epos < barlen) & (col[self.pickok] == 0)
        colon_ok = close == eight
        bar_ok = np.where(close >= eight, (close == eight) & ~openrep, ~must_end | (close == 0))
        at_bar1 = m == self.bar1
        bnd_ok = (acc == 0) | (acc == eight)
        boundary = self.boundary[m]
        keep = ~self.ending[m]
        keep &= ~(self.close_colon[m] & ~colon_ok[:, None])
        keep &= ~(self.close_bar[m] & ~bar_ok[:, None])
        keep &= ~(at_bar1[:, None] & boundary & ~bnd_ok[:, None])
        keep &= ~((at_bar1 & (acc == eight))[:, None] & ~boundary)
        keep &= ~(self.ends[m] & (sec < PARTS)[:, None])
        # A part's last note is not tied: in the last part its note would have to follow the
        # end; in the first, it would cross the part's repeat barline, where abc2midi finds no
        # note to tie to once an accidental carried in the bar ("^b b-::b", "[^D] D-::D"), and
        # which O'Neill's never ties across.
        keep &= ~(self.ties[m] & (close >= eight)[:, None])
        # The last part ends with '||', '|]' or ':|': after '|:' the tune could not end.
        keep &= ~(self.repopen[m] & (sec == PARTS - 1)[:, None] & (acc == eight)[:, None])
        sub = allowed[rows] & keep
        done = (sec >= PARTS) & (col[self.tie] < 0)  # a waiting tie's note must come first
        if done.any():
            fin = sub[done] & self.after[None, :]
            has_nl = (fin & self.newline[None, :]).any(axis=1)
            sub[done] = np.where(has_nl[:, None], fin & self.newline[None, :], fin)
        # A row the rule would leave without a char keeps the tracker's mask (counted): only
        # music still open after the last barline (a tied note in a tuplet) does that.
        empty = ~sub.any(axis=1)
        if empty.any():
            self.yielded += int(empty.sum())
            sub[empty] = allowed[rows[empty]]
        allowed[rows] = sub
