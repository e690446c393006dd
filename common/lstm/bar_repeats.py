"""Bars a tune repeats, as the corpus's tunes repeat theirs: on top of the two-part form.

A dance tune is built from a few bars heard again: O'Neill's repeat bar 1 at bar 5 in 70 % of
their two-part tunes and end the second part with the first part's last bar in 73 %; in all,
26–28 % of their bars repeat an earlier one note for note. A 1 × 512 LSTM writes almost none
(0.7 % of the demo model's bars): it does not remember 8 bars back. So each tune draws one of
the corpus's own *plans* (`common.lstm.music_rules.repeat_plan`: for each of its 16 bars the
earlier bar it repeats, or none), and where its plan says bar i repeats bar j the sampler writes
bar j's text again, char for char; the model goes on from there with its state as if it had
written them itself.

The copy only narrows the mask to the one char the source bar has next, and only where every
other rule allows it; where a rule does not (a bar cut short by a pickup, a part's last bar that
must end on the tonic, a tie from the bar before), the copy stops and the model goes on on its
own, so this rule never dead-ends and never breaks another. A bar's text is recorded from its
first timed element (note, rest, chord, group, decoration) to the char before its barline;
spaces, line breaks and barline chars before it are the model's own.

State, in the tracker's array: PLAN (row of the plan table, -1: none), CUR (the bar being
written, counted as the form counts parts: `PART_BARS` per part, a pickup sharing the number of
the first full bar; -1 before the body or after the second part), REC (its text has started),
CK (chars of the source written, -1: no copy), LEN (chars recorded per bar, -1: longer than
`WIDTH`), MID (chars recorded before the first element that starts at or past the middle of
the bar, 0: none yet), then the bars' text, one byte a char, four to a column.

A plan entry of `HALF` + j repeats only bar j's first half (to its first element at or past
the middle): 12 % of the bars of O'Neill's two-part tunes begin as an earlier bar does and then
go their own way. `SECOND` + j repeats bar j's second half, from the middle on, where the bar
reaches its middle on a note boundary (7 % of O'Neill's bars end as an earlier bar does); CK is
-2 while such a bar waits for its middle.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.lstm.bar_form import PART_BARS, PARTS, PER_BAR, BarForm
from common.lstm.bar_part import BARLEN, CARRY, POS, Build, TrackerPart, View
from common.lstm.music_rules import HALF, SECOND, MusicRules

BARS = PART_BARS * PARTS
#: Chars recorded per bar; a longer bar is not copied.
WIDTH = 32
_SMALL = 4 + 2 * BARS  # PLAN, CUR, REC, CK, LEN[BARS], MID[BARS]
#: Columns this module adds to the tracker's state.
REPEAT_FIELDS = _SMALL + BARS * WIDTH // 4


def plan_row(seeds: npt.NDArray[np.integer], plans: int) -> npt.NDArray[np.int32]:
    """A tune's plan from its random stream's seed (so a re-run draws the same)."""
    mixed = (seeds.astype(np.uint64) * np.uint64(0x9E3779B1)) >> np.uint64(7)
    return (mixed % np.uint64(max(plans, 1))).astype(np.int32)


class BarRepeats(TrackerPart):
    """Recording and copying over all slots: its columns (after every other part's: the text
    is not copied each step), the form's section columns (ACC, SEC) it counts bars from, the
    tracker's (POS, CARRY, BARLEN) it finds a bar's middle with."""

    FIELDS = REPEAT_FIELDS
    BULK = True

    @classmethod
    def wanted(cls, form: bool, music: MusicRules | None) -> bool:
        # Bars repeated as the corpus repeats them: with the form (it counts the bars) and plans.
        return form and music is not None and bool(music.plans)

    @classmethod
    def initial(cls, row: npt.NDArray[np.int32], base: int) -> None:
        row[base : base + 4] = -1  # no plan, no bar, no copy

    def __init__(self, b: Build) -> None:
        assert b.music is not None
        t, chars, base, plans = b.t, b.chars, b.base, b.music.plans
        if len(chars) > 127:
            raise ValueError("bar repeats keep a char in a byte: at most 127 chars")
        self.plan, self.cur, self.rec, self.ck = base, base + 1, base + 2, base + 3
        self.len0 = base + 4
        self.mid0 = base + 4 + BARS
        self.buf0 = base + _SMALL
        form = b.bases[BarForm]
        self.acc_col, self.sec_col = form, form + 1
        self.pos, self.carry, self.barlen = POS, CARRY, BARLEN
        table = np.asarray(plans, np.int32).reshape(-1, BARS)
        #: Source bar per (plan, bar), -1: none; and which part of it is repeated.
        self.plans = np.where(
            table >= SECOND, table - SECOND, np.where(table >= HALF, table - HALF, table)
        )
        self.half = (table >= HALF) & (table < SECOND)
        self.second = table >= SECOND
        self._timed = t.timed
        self._barline = t.barline
        self.copied = 0  # chars written as copies (for tests and benchmarks)

    def _text(self, s: npt.NDArray[np.int32]) -> npt.NDArray[np.int8]:
        """The recorded bars as a writable [B, BARS * WIDTH] byte view of the state."""
        return s[:, self.buf0 : self.buf0 + BARS * WIDTH // 4].view(np.int8)

    def start(
        self,
        s: npt.NDArray[np.int32],
        rows: npt.NDArray[np.bool_],
        seeds: npt.NDArray[np.integer] | None,
    ) -> None:
        """Fresh rows: a plan drawn from each one's seed (none without seeds or plans)."""
        s[rows, self.plan] = -1
        s[rows, self.cur] = -1
        s[rows, self.ck] = -1
        if seeds is not None and len(self.plans):
            seed = np.asarray(seeds)[rows]
            s[rows, self.plan] = plan_row(seed, len(self.plans))

    def feed(
        self, s: npt.NDArray[np.int32], mode: npt.NDArray[np.int64], c: npt.NDArray[np.int64]
    ) -> None:
        """Record the char in its bar, follow the copy, and start a new bar at a barline (after
        the form has counted it)."""
        live = s[:, self.cur] >= 0
        barline = self._barline[mode, c]
        music = live & ~barline & ((s[:, self.rec] > 0) | self._timed[mode, c])
        rows = np.flatnonzero(music)
        if rows.size:
            text = self._text(s)
            cur = s[rows, self.cur]
            length = s[rows, self.len0 + cur]
            # The first element at or past the bar's middle: what came before is its first half.
            at = (s[rows, self.pos] + s[rows, self.carry]) * 2 >= s[rows, self.barlen]
            mid = at & self._timed[mode[rows], c[rows]] & (s[rows, self.mid0 + cur] == 0)
            s[rows[mid], self.mid0 + cur[mid]] = length[mid]
            self._second_half(s, rows[mid])
            ok = (length >= 0) & (length < WIDTH)
            r_ok = rows[ok]
            text[r_ok, cur[ok] * WIDTH + length[ok]] = c[r_ok]
            s[rows, self.len0 + cur] = np.where(ok, length + 1, -1)
            s[rows, self.rec] = 1
            self._follow(s, rows, c[rows], text)
        ends = np.flatnonzero(barline)
        if ends.size:
            self._new_bar(s, ends)

    def _second_half(self, s: npt.NDArray[np.int32], rows: npt.NDArray[np.intp]) -> None:
        """Rows waiting for their middle reach it: the copy of the source's second half starts
        here if this bar is exactly at its middle (a note that crossed it: no copy)."""
        waiting = rows[s[rows, self.ck] == -2]
        if waiting.size == 0:
            return
        exact = (s[waiting, self.pos] + s[waiting, self.carry]) * 2 == s[waiting, self.barlen]
        src = self.plans[s[waiting, self.plan], s[waiting, self.cur]]
        s[waiting, self.ck] = np.where(exact, s[waiting, self.mid0 + src], -1)

    def _follow(
        self,
        s: npt.NDArray[np.int32],
        rows: npt.NDArray[np.intp],
        c: npt.NDArray[np.int64],
        text: npt.NDArray[np.int8],
    ) -> None:
        ck = s[rows, self.ck]
        copying = ck >= 0
        if not copying.any():
            return
        rows, c, ck = rows[copying], c[copying], ck[copying]
        plan, cur = s[rows, self.plan], s[rows, self.cur]
        src = self.plans[plan, cur]
        want = text[rows, src * WIDTH + ck]
        hit = c == want
        self.copied += int(hit.sum())
        end = np.where(self.half[plan, cur], s[rows, self.mid0 + src], s[rows, self.len0 + src])
        done = ck + 1 >= end
        s[rows, self.ck] = np.where(hit & ~done, ck + 1, -1)

    def _new_bar(self, s: npt.NDArray[np.int32], rows: npt.NDArray[np.intp]) -> None:
        """The bar the form now counts, cleared for recording; its copy set up if planned."""
        sec = s[rows, self.sec_col]
        acc = s[rows, self.acc_col].astype(np.int64)
        bar = sec * PART_BARS + acc // PER_BAR
        inside = (sec < PARTS) & (bar < BARS)
        cur = np.where(inside, bar, -1).astype(np.int32)
        s[rows, self.cur] = cur
        s[rows, self.rec] = 0
        s[rows, self.ck] = -1
        live = rows[inside]
        if live.size == 0:
            return
        bar_live = cur[inside]
        s[live, self.len0 + bar_live] = 0
        s[live, self.mid0 + bar_live] = 0
        plan = s[live, self.plan]
        planned = plan >= 0
        src = np.where(planned, self.plans[np.maximum(plan, 0), bar_live], -1)
        ready = planned & (src >= 0)
        at = np.maximum(plan, 0), bar_live
        length = np.where(self.half[at], self.mid0, self.len0) + np.maximum(src, 0)
        ready[ready] &= s[live[ready], length[ready]] > 0
        second = ready & self.second[at]
        second[second] &= s[live[second], self.mid0 + src[second]] > 0
        s[live, self.ck] = np.where(second, -2, np.where(ready, 0, -1))

    def body_start(self, s: npt.NDArray[np.int32], rows: npt.NDArray[np.intp]) -> None:
        """The tune's body begins: bar 0 (or its pickup) is being written."""
        s[rows, self.cur] = 0
        s[rows, self.rec] = 0
        s[rows, self.ck] = -1
        s[rows, self.len0 : self.len0 + 2 * BARS] = 0

    def mask(self, view: View, allowed: npt.NDArray[np.bool_]) -> None:
        """Narrow copying rows to the source bar's next char, where every other rule allows
        it (in place; the last rule the tracker applies); `epos` is each bar's position once
        the pending note ends (a row waiting for its middle starts there)."""
        s, mode, live, epos = view.s, view.mode, view.live, view.epos
        ck_all = s[:, self.ck]
        middle = (ck_all == -2) & (epos * 2 == s[:, self.barlen])
        rows = np.flatnonzero(((ck_all >= 0) | middle) & live)
        if rows.size == 0:
            return
        src = self.plans[s[rows, self.plan], s[rows, self.cur]]
        ck = np.where(middle[rows], s[rows, self.mid0 + src], ck_all[rows])
        want = self._text(s)[rows, src * WIDTH + ck].astype(np.int64)
        can = allowed[rows, want]
        rows, want, ck = rows[can], want[can], ck[can]
        if rows.size == 0:
            return
        m = mode[rows]
        # Before the bar's first element (or its second half's): spaces, line breaks, barline
        # chars and the pending note's length stay free.
        keep = np.zeros((rows.size, allowed.shape[1]), bool)
        keep[np.arange(rows.size), want] = True
        before = ((ck == 0) & (s[rows, self.rec] == 0)) | middle[rows]
        keep[before] |= ~self._timed[m[before]]
        allowed[rows] &= keep
