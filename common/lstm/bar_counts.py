"""The bar tracker's counting: what a char does to a slot's counters once it is written.

A note's length is known when its suffix ends (`commit`: the bar position grows by it, scaled
inside a tuplet or broken pair); barlines, repeats, endings, tuplets, broken rhythm and fields
change the counters through their actions (`act`); a note's spelling and ties are kept from the
events its chars report (`events`). Kept apart from `common.lstm.bar_tracker` (which decides
the mask from these counters) so that each reads as one job.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.lstm.bar_part import (
    ACCD,
    ACCN,
    BARLEN,
    BARS,
    BRK,
    CARRY,
    CLOSED,
    DEC,
    ENDST,
    FULLS,
    LASTPLAIN,
    LASTQ,
    LASTV,
    MDEN,
    MNUM,
    MODE,
    NACC,
    NEED,
    NLET,
    NOCT,
    OPENREP,
    PICKOK,
    PICKUP,
    POS,
    TARGET,
    TIE,
    TIEK,
    TUPLEFT,
    TUPR,
    UDEN,
    Q,
)
from common.lstm.bar_rules import (
    A_ACC_RESET,
    A_BODY_START,
    A_CLOSE,
    A_CLOSE_COLON,
    A_DEN,
    A_END1,
    A_END2,
    A_GT,
    A_L_END,
    A_L_END_BODY,
    A_LT,
    A_M_C,
    A_M_CC,
    A_M_END,
    A_M_END_BODY,
    A_NUM,
    A_REPOPEN,
    A_SECTION,
    A_TUP2,
    A_TUP3,
    A_TUP4,
    EV_ACC,
    EV_ACC2,
    EV_DECO,
    EV_LET,
    EV_LETA,
    EV_NOPITCH,
    EV_OCT,
    EV_TIE,
    NOTE_LETTERS,
    TICKS_PER_WHOLE,
    TUPLETS,
    VALUES,
)
from common.lstm.bar_tables import Tables


class BarCounts:
    """The counter updates over all slots, for one vocabulary's tables; `free` is mode FREE
    (a meter or unit whose bar cannot be filled turns the row's tracking off); `soft_open` the
    mode after ``:|`` whose ``:`` makes it ``:|:`` (OPENREP 2: open for the tune's form and its
    end, but not for abc2midi's ``::`` and ``|1``, which it counts as after a ``:|``)."""

    def __init__(self, t: Tables, free: int, soft_open: int) -> None:
        self.t, self.free, self.soft_open = t, free, soft_open
        self._values = np.asarray(VALUES, np.int64)
        self.tup_num = np.zeros(5, np.int64)
        self.tup_den = np.ones(5, np.int64)
        for r, (num, den) in TUPLETS.items():
            self.tup_num[r], self.tup_den[r] = num, den

    def events(
        self, s: npt.NDArray[np.int32], event: npt.NDArray[np.int8], c: npt.NDArray[np.int64]
    ) -> None:
        """Keep the spelling of the note being written, its decoration, and set ties."""
        t = self.t
        rows = np.flatnonzero(event)
        ev, cr = event[rows], c[rows]
        nacc, nlet, noct = s[rows, NACC], s[rows, NLET], s[rows, NOCT]
        fresh = (ev == EV_ACC) | (ev == EV_LET)
        nacc = np.where(ev == EV_ACC, t.acc[cr], np.where(ev == EV_LET, 0, nacc))
        nacc = nacc + (ev == EV_ACC2)
        letter = (ev == EV_LET) | (ev == EV_LETA)
        nlet = np.where(letter, t.letter[cr], np.where((ev == EV_NOPITCH) | fresh, -1, nlet))
        noct = np.where(letter | fresh, 0, noct + (ev == EV_OCT))
        s[rows, NACC], s[rows, NLET], s[rows, NOCT] = nacc, nlet, noct
        s[rows, DEC] = np.where(ev == EV_DECO, 1, s[rows, DEC])
        tie = ev == EV_TIE
        spelling = (nacc * len(NOTE_LETTERS) + nlet) * 3 + noct
        s[rows, TIE] = np.where(tie, spelling, s[rows, TIE])
        s[rows, TIEK] = np.where(tie, 0, s[rows, TIEK])

    def factor(
        self, s: npt.NDArray[np.int32], rows: npt.NDArray[np.intp] | slice
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        tupleft = s[rows, TUPLEFT]
        in_tup = tupleft > 0
        brk = s[rows, BRK]
        tupr = s[rows, TUPR]
        fnum = np.where(in_tup, self.tup_num[tupr], np.where(brk == 2, 3, 1))
        fden = np.where(in_tup, self.tup_den[tupr], np.where(brk > 0, 2, 1))
        return fnum, fden, in_tup

    def commit(
        self, s: npt.NDArray[np.int32], rows: npt.NDArray[np.intp], val: npt.NDArray[np.int64]
    ) -> None:
        """The pending note of each row ends with length value index `val`."""
        fnum, fden, in_tup = self.factor(s, rows)
        val = np.maximum(val, 0)
        plain = s[rows, Q].astype(np.int64) * self._values[val]
        s[rows, POS] += (plain * fnum // fden).astype(np.int32)
        tupleft = s[rows, TUPLEFT]
        first = in_tup & (tupleft == s[rows, TUPR])
        left = np.where(in_tup, tupleft - 1, 0)
        target = np.where(first, val, s[rows, TARGET])
        s[rows, TARGET] = np.where(left > 0, target, -1)
        s[rows, TUPLEFT] = left
        s[rows, LASTPLAIN] = ~in_tup & (s[rows, BRK] == 0) & (s[rows, DEC] == 0)
        s[rows, DEC] = 0
        s[rows, BRK] = 0
        s[rows, LASTQ] = plain
        s[rows, LASTV] = val

    def act(
        self,
        s: npt.NDArray[np.int32],
        rows: npt.NDArray[np.intp],
        code: int,
        c: npt.NDArray[np.int64],
        mode: npt.NDArray[np.int64],
    ) -> None:
        """Apply action `code` to `rows`, which wrote chars `c` in modes `mode`."""
        if code in (A_CLOSE, A_CLOSE_COLON):
            pos = s[rows, POS]
            epos = pos + s[rows, CARRY]  # the bar as abc2midi counts it: the carry included
            has = pos > 0
            short = has & (epos < s[rows, BARLEN])
            pickok = s[rows, PICKOK] > 0
            if code == A_CLOSE:
                s[rows, PICKUP] = np.where(short & pickok, pos, s[rows, PICKUP])
                s[rows, NEED] = short & ~pickok
                s[rows, ENDST] = np.where(has & (s[rows, ENDST] == 3), 0, s[rows, ENDST])
            else:
                # 2: this :| closed a repeat abc2midi counts as open (|:, ::, or the tune's
                # start), so :: may follow; 3: one opened by :|:, which abc2midi counts as a
                # plain :| (it reports "found :: before |:" after it), so only :|: may follow
                openrep = s[rows, OPENREP]
                hard = (openrep == 1) | ((openrep == 0) & (s[rows, CLOSED] == 0))
                s[rows, CLOSED] = np.where(hard, 2, np.where(openrep == 2, 3, 1))
                s[rows, OPENREP] = 0
                s[rows, NEED] = 0
                s[rows, ENDST] = np.where(s[rows, ENDST] == 1, 3, s[rows, ENDST])
            # Only the tune's first bar is a free pickup; a section's short closing bar leaves
            # its shortfall for the next section's first bar (the pickup abc2midi pairs it with).
            s[rows, PICKOK] = np.where(has, 0, s[rows, PICKOK])
            s[rows, CARRY] = np.where(has, np.where(short & ~pickok, epos, 0), s[rows, CARRY])
            s[rows, BARS] += has
            # Full bars since the section began: a closing bar needs one before it.
            full = epos == s[rows, BARLEN]
            s[rows, FULLS] = 0 if code == A_CLOSE_COLON else s[rows, FULLS] + full
            s[rows, POS] = 0
        elif code in (A_SECTION, A_REPOPEN, A_END1, A_END2):
            s[rows, NEED] = 0
            s[rows, FULLS] = 0
            s[rows, ENDST] = {A_SECTION: 0, A_REPOPEN: 0, A_END1: 1, A_END2: 2}[code]
            if code == A_REPOPEN:
                s[rows, OPENREP] = np.where(mode == self.soft_open, 2, 1)
                s[rows, CLOSED] = 0
            else:
                # an ending starts where the bar before it ended: on a bar line, nothing carried
                s[rows, CARRY] = np.where(code == A_SECTION, s[rows, CARRY], 0)
        elif code in (A_TUP2, A_TUP3, A_TUP4):
            r = code - A_TUP2 + 2
            s[rows, TUPR] = r
            s[rows, TUPLEFT] = r
            s[rows, TARGET] = -1
        elif code in (A_GT, A_LT):
            half = s[rows, LASTQ] // 2
            s[rows, POS] += half if code == A_GT else -half
            s[rows, BRK] = 1 if code == A_GT else 2
            s[rows, TARGET] = s[rows, LASTV]
        elif code == A_ACC_RESET:
            s[rows, ACCN] = 0
            s[rows, ACCD] = 0
        elif code == A_NUM:
            s[rows, ACCN] = s[rows, ACCN] * 10 + self.t.digit[c[rows]]
        elif code == A_DEN:
            s[rows, ACCD] = s[rows, ACCD] * 10 + self.t.digit[c[rows]]
        elif code in (A_M_C, A_M_CC):
            s[rows, ACCN] = s[rows, ACCD] = 4 if code == A_M_C else 2
        elif code in (A_M_END, A_M_END_BODY):
            s[rows, MNUM] = s[rows, ACCN]
            s[rows, MDEN] = s[rows, ACCD]
            if code == A_M_END_BODY:
                s[rows, PICKUP] = s[rows, CARRY] = 0  # ticks of the old meter's bar
                self.bar_length(s, rows)
        elif code in (A_L_END, A_L_END_BODY):
            s[rows, UDEN] = s[rows, ACCD]
            if code == A_L_END_BODY:
                self.bar_length(s, rows)
        elif code == A_BODY_START:
            num, den = s[rows, MNUM], s[rows, MDEN]
            default = np.where(4 * num < 3 * den, 16, 8)  # the standard's default L
            s[rows, UDEN] = np.where(s[rows, UDEN] > 0, s[rows, UDEN], default)
            s[rows, PICKOK] = 1
            self.bar_length(s, rows)

    def bar_length(self, s: npt.NDArray[np.int32], rows: npt.NDArray[np.intp]) -> None:
        """Bar and quarter-unit in ticks from meter and unit; FREE if the bar cannot be filled."""
        num, den, uden = s[rows, MNUM], s[rows, MDEN], s[rows, UDEN]
        ok = (den > 0) & (uden > 0) & (num > 0)
        den, uden = np.maximum(den, 1), np.maximum(uden, 1)
        barlen = TICKS_PER_WHOLE * num // den
        q = TICKS_PER_WHOLE // uden // 4
        ok &= (TICKS_PER_WHOLE * num % den == 0) & (barlen % np.maximum(q, 1) == 0) & (q % 12 == 0)
        s[rows, BARLEN] = barlen
        s[rows, Q] = q
        s[rows, MODE] = np.where(ok, s[rows, MODE], self.free)
