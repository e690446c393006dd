"""Per-slot bar tracker: the sampler may only write bars that last what the meter says.

The tracker reads each slot's text char by char as it is sampled, and before every step gives the
sampler a mask of the chars that may come next. The rule it keeps:

* a note (or rest, chord, tuplet, broken pair) may start or grow only if it still fits in the
  bar; a note's length is known only after its suffix (``A``, ``A2``, ``A3/2``, ``A//``), so while
  a note is pending a length char is allowed only if some length it can still become fits;
* a barline may start only when the bar is full — or is the tune's pickup (a short first bar),
  or the short last bar of a section that completes it (then the barline must be a section end:
  ``:|``, ``||``, ``|]``, ``|:``). That bar's shortfall is carried (CARRY): the next section's
  first bar is the pickup that fills it, as abc2midi counts them; with a pickup, ``:|`` needs
  such a bar, and ``|:`` a pickup after it (the pickup is what plays again after ``:|``);
* the tune may end (blank line) only after a closed bar, with every ``|:`` and ``|1`` closed
  by ``:|``; inside them a section ends only with ``:|``, a ``|1`` needs an open repeat, a ``|2``
  comes right after the ``:|`` that closes ``|1`` (the pairs abc2midi accepts);
* after a tie ``-`` the next note is the tied note spelled again (`common.lstm.bar_ties`);
* near the tune's length limit (the sampler passes the chars each slot has left), the closing
  phases of `common.lstm.bar_closing` narrow the mask so the tune closes what it opened and
  ends at a closed bar instead of being cut.

It is a deterministic finite automaton over the ABC it knows (its *modes*, `common.lstm.bar_rules`
and `common.lstm.bar_fields`: header fields, notes with their length suffix, chords, grace notes,
decorations, annotations, tuplets, broken rhythm, barlines, inline fields, endings, line
continuations) plus a few integers per slot (bar position in ticks, meter, unit, pickup, tuplet,
broken-rhythm, repeat and tie state, the spelling of the note being written). Anything outside
that subset is masked, so what the model writes is always something the tracker can count. The
tables (`common.lstm.bar_tables`) are built once per vocabulary; a step is a handful of NumPy
operations over all B slots at once.

Why it never dead-ends: every duration it allows is a multiple of a quarter of the unit length
``L`` (lengths down to ``/4``; a tuplet's notes share one length, so ``(3`` three of length m last
2m; a broken pair's notes share one length, so ``>`` pairs last 2m), and so is every bar of the
meters it accepts. So a bar that is not full always has room for a note ``A//``, and a bar that
is full always accepts ``|`` (or ``:|`` where a section must close). A waiting tie bans no
barline, and its note fits wherever a note may start. A primer that leaves the known subset, or a
meter/unit whose bar is not a whole number of such quarters, turns the tracker off for that tune
(mode FREE); a row whose mask would be empty (a vocabulary that lacks ``/`` or ``|``) does too,
and is counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from common.lstm.bar_closing import Closing, closing_phases
from common.lstm.bar_form import FORM_FIELDS, BarForm
from common.lstm.bar_music import MUSIC_FIELDS, BarMusic
from common.lstm.bar_repeats import REPEAT_FIELDS, BarRepeats
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
    C_LEN,
    EV_ACC,
    EV_ACC2,
    EV_DECO,
    EV_LET,
    EV_LETA,
    EV_NOPITCH,
    EV_OCT,
    EV_TIE,
    LENGTH_CHARS,
    N_ACTIONS,
    NOTE_LETTERS,
    TICKS_PER_WHOLE,
    TUPLETS,
    VALUES,
)  # fmt: skip
from common.lstm.bar_tables import compile_tables
from common.lstm.bar_ties import Ties
from common.lstm.music_rules import MusicRules

# Per-slot integer state, one column each. NACC, NLET, NOCT: the spelling of the note being
# written (accidental code, letter index or -1 for a rest or chord, octave marks); DEC: it is
# decorated; TIE, TIEK: the spelling a tie waits for (-1: none) and how much of it is written;
# ENDST: 0, in a 1st ending (1), in a 2nd (2), a 1st just closed by :| (3); CLOSED: a :| came
# since the last |: (an ending then needs a new |:), 2 if it closed an open repeat (:: may follow).
# CARRY: ticks a section's short closing bar left for the next section's pickup to complete;
# SHORT: this bar must close its section short by the pickup (a repeat near the length limit).
(MODE, POS, BARLEN, Q, PICKUP, PICKOK, NEED, OPENREP, BARS, TUPR, TUPLEFT, TARGET, BRK,
 LASTQ, LASTV, LASTPLAIN, MNUM, MDEN, UDEN, ACCN, ACCD, FULLS, NACC, NLET, NOCT, DEC, TIE,
 TIEK, ENDST, CLOSED, CARRY, SHORT) = range(32)  # fmt: skip
_OWN_FIELDS = 32
#: Columns of the state: the tracker's, then `common.lstm.bar_form`'s, `common.lstm.bar_music`'s
#: and `common.lstm.bar_repeats`' (each part claims its own, whether or not it is on). The mask
#: reads the first `_CORE` as int64; the repeats' recorded text stays where it is.
_CORE = _OWN_FIELDS + FORM_FIELDS + MUSIC_FIELDS
FIELDS = _CORE + REPEAT_FIELDS


class BarTracker:
    """Vectorised over slots: `step` feeds one char per slot and returns the next chars' mask.

    State is an int32 array [B, FIELDS] that the caller carries (the sampler keeps it with the
    LSTM state, so slot refill, batch resizing and chunking need nothing special).
    """

    def __init__(
        self, chars: Sequence[str], *, form: bool = False, music: MusicRules | None = None
    ) -> None:
        self.chars = tuple(chars)
        self.t, self.modes = compile_tables(self.chars)
        self.mode_id = {m: i for i, m in enumerate(self.modes)}
        cols = dict(POS=POS, BARLEN=BARLEN, PICKOK=PICKOK, OPENREP=OPENREP, TIE=TIE, CARRY=CARRY)
        base = _OWN_FIELDS
        self.form = BarForm(self.t, self.mode_id, self.chars, base, cols) if form else None
        self.music = (
            BarMusic(
                self.t,
                self.modes,
                self.chars,
                base + FORM_FIELDS,
                dict(NACC=NACC, NLET=NLET, NOCT=NOCT, MNUM=MNUM, MDEN=MDEN),
                music,
            )
            if music is not None
            else None
        )
        # Bars repeated as the corpus repeats them: with the form (it counts the bars) and plans.
        self.repeats = (
            BarRepeats(
                self.t, self.chars, _CORE, (base, base + 1), (POS, CARRY, BARLEN), music.plans
            )
            if self.form is not None and music is not None and music.plans
            else None
        )
        self.free = self.mode_id["FREE"]
        self._is_pending = self.t.node >= 0
        self._values = np.asarray(VALUES, np.int64)
        self._pow = np.int64(1) << np.arange(len(VALUES), dtype=np.int64)
        self._len_shift = np.int64(1) << (C_LEN + np.arange(len(LENGTH_CHARS), dtype=np.int64))
        self._len_shift32 = self._len_shift.astype(np.int32)
        self._tup_num = np.zeros(5, np.int64)
        self._tup_den = np.ones(5, np.int64)
        for r, (num, den) in TUPLETS.items():
            self._tup_num[r], self._tup_den[r] = num, den
        self.dead_ends = 0  # rows whose mask came out empty (the row went FREE)
        init = np.zeros(FIELDS, np.int32)
        init[MODE] = self.mode_id["H_START"]
        init[TARGET] = -1
        init[NLET] = -1
        init[TIE] = -1
        init[_OWN_FIELDS + FORM_FIELDS] = -1  # no tonic before K:
        init[_CORE : _CORE + 4] = -1  # no plan, no bar, no copy
        self.initial = init
        self._ties = Ties(self.t, self.chars, TIE, TIEK, self.free)
        self._closing = Closing(self.chars)
        # (mode, char) pairs that start an inline field or a field line: no time, no end
        starts = [n.startswith(("IFF", "BFF")) for n in self.modes] + [False]
        self._field_start = np.asarray(starts)[self.t.next]
        if ":" in self.chars:  # T: in the body (a T alone is a trill)
            self._field_start[self.mode_id["LST"], self.chars.index(":")] = True
        self._bar1 = self.mode_id["BAR1"]
        self._paren = self.mode_id["PAREN"]
        self._colon = np.asarray([ch == ":" for ch in self.chars])
        self._barline_act = np.zeros(N_ACTIONS, bool)
        self._barline_act[[A_CLOSE, A_CLOSE_COLON, A_SECTION, A_REPOPEN, A_END1, A_END2]] = True

    def initial_state(self, batch: int) -> npt.NDArray[np.int32]:
        return np.tile(self.initial, (batch, 1))

    # -- one step ----------------------------------------------------------------------------
    def step(
        self,
        state: npt.NDArray[np.int32],
        chars: npt.NDArray[np.int32],
        fresh: npt.NDArray[np.bool_],
        left: npt.NDArray[np.int32] | None = None,
        limit: int | np.integer | None = None,
        seeds: npt.NDArray[np.integer] | None = None,
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
        """Reset `fresh` rows, feed each row its char, return (new state, mask of next chars).

        `left` (chars each row may still write) and `limit` (the tune's max chars) turn on the
        closing phases of `common.lstm.bar_closing`; without them the tune has no length limit.
        `seeds` (each row's random stream) draw a fresh row's plan of repeated bars.
        """
        s = np.array(state, np.int32, copy=True)
        if fresh.any():
            s[fresh] = self.initial
            if self.repeats is not None:
                self.repeats.start(s, fresh, seeds)
        self.feed(s, np.asarray(chars, np.int64), closing_phases(left, limit, len(s)).ending)
        return s, self.mask(s, left, limit, chars)

    def feed(
        self,
        s: npt.NDArray[np.int32],
        c: npt.NDArray[np.int64],
        ending: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """Advance every row of `s` (in place) by its char; `ending`: rows in the ending phase
        (`common.lstm.bar_closing`), whose next bar in a repeat must close it."""
        t = self.t
        mode = s[:, MODE].astype(np.int64)
        nxt = t.next[mode, c]
        act = t.act[mode, c]
        commit = t.commit[mode, c]
        self._ties.progress(s, mode, c)
        if commit.any():
            rows = np.flatnonzero(commit)
            self._commit(s, rows, t.term[t.node[mode[rows]]].astype(np.int64))
        if self.form is not None:
            self.form.feed(s, mode, c)
        if self.music is not None:
            self.music.feed(s, mode, c)
        if self.repeats is not None:
            self.repeats.feed(s, mode, c)
        present = np.bincount(act.astype(np.intp), minlength=N_ACTIONS)
        for code in np.flatnonzero(present[1:]) + 1:
            self._act(s, np.flatnonzero(act == code), int(code), c)
        barline = np.flatnonzero(self._barline_act[act])
        if barline.size:
            b = s[barline]
            inside = (b[:, OPENREP] > 0) | (b[:, ENDST] == 1)
            flag = inside & (b[:, PICKUP] > 0) & (b[:, FULLS] > 0)
            s[barline, SHORT] = flag & (ending[barline] if ending is not None else False)
        event = t.event[mode, c]
        if event.any():
            self._events(s, event, c)
        bad = nxt < 0
        nxt = np.where(bad, self.free, nxt)
        # an action may already have set FREE (an unfillable meter): keep it
        s[:, MODE] = np.where(s[:, MODE] == self.free, self.free, nxt)

    def _events(
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

    def _factor(
        self, s: npt.NDArray[np.int32], rows: npt.NDArray[np.intp] | slice
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        tupleft = s[rows, TUPLEFT]
        in_tup = tupleft > 0
        brk = s[rows, BRK]
        tupr = s[rows, TUPR]
        fnum = np.where(in_tup, self._tup_num[tupr], np.where(brk == 2, 3, 1))
        fden = np.where(in_tup, self._tup_den[tupr], np.where(brk > 0, 2, 1))
        return fnum, fden, in_tup

    def _commit(
        self, s: npt.NDArray[np.int32], rows: npt.NDArray[np.intp], val: npt.NDArray[np.int64]
    ) -> None:
        """The pending note of each row ends with length value index `val`."""
        fnum, fden, in_tup = self._factor(s, rows)
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

    def _act(
        self,
        s: npt.NDArray[np.int32],
        rows: npt.NDArray[np.intp],
        code: int,
        c: npt.NDArray[np.int64],
    ) -> None:
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
                # 2: this :| closed an open repeat (explicit, or the tune's start), so :: may follow
                was_open = (s[rows, OPENREP] > 0) | (s[rows, CLOSED] == 0)
                s[rows, CLOSED] = np.where(was_open, 2, 1)
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
                s[rows, OPENREP] = 1
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
                self._bar_length(s, rows)
        elif code in (A_L_END, A_L_END_BODY):
            s[rows, UDEN] = s[rows, ACCD]
            if code == A_L_END_BODY:
                self._bar_length(s, rows)
        elif code == A_BODY_START:
            if self.repeats is not None:
                self.repeats.body_start(s, rows)
            num, den = s[rows, MNUM], s[rows, MDEN]
            default = np.where(4 * num < 3 * den, 16, 8)  # the standard's default L
            s[rows, UDEN] = np.where(s[rows, UDEN] > 0, s[rows, UDEN], default)
            s[rows, PICKOK] = 1
            self._bar_length(s, rows)

    def _bar_length(self, s: npt.NDArray[np.int32], rows: npt.NDArray[np.intp]) -> None:
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

    # -- the mask ----------------------------------------------------------------------------
    def _limit(
        self, s: npt.NDArray[np.int32], col: npt.NDArray[np.int64], epos: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        """Each row's bar length: the meter's, or short by the pickup where the bar must close
        its section (a part's last bar with form on, a repeat near the length limit), so that
        the next section's pickup completes it. Decided at the bar's start (`epos` is still
        within the short length there), so no note already written can overflow it."""
        pickup, barlen = col[PICKUP], col[BARLEN]
        must = col[SHORT] > 0
        if self.form is not None:
            must = must | self.form.last_bar(s, pickup)
        cut = must & (pickup > 0) & (col[FULLS] > 0) & (epos <= barlen - pickup)
        return barlen - np.where(cut, pickup, 0)  # type: ignore[no-any-return]

    def _fits(
        self,
        pos: npt.NDArray[np.int64],
        barlen: npt.NDArray[np.int64],
        q: npt.NDArray[np.int64],
        tupleft: npt.NDArray[np.int64],
        tupr: npt.NDArray[np.int64],
        target: npt.NDArray[np.int64],
        brk: npt.NDArray[np.int64],
        least: npt.NDArray[np.int64] | None = None,
        gap: tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]] | None = None,
    ) -> npt.NDArray[np.int64]:
        """Bitmask of the length values the next (or pending) note may take; with `least` (the
        shortest note in ticks, `common.lstm.bar_music`) no note is shorter and a note or group
        ends on a multiple of it; with `gap` (rows, position) a flagged row's note ends by the
        position or exactly at the bar's end (a part's final note fills what is left)."""
        in_tup = tupleft > 0
        fnum = np.where(in_tup, self._tup_num[tupr], np.where(brk == 2, 3, 1))
        fden = np.where(in_tup, self._tup_den[tupr], np.where(brk > 0, 2, 1))
        group = np.where(in_tup & (tupleft == tupr), tupr, 1)
        need = (group * q * fnum)[:, None] * self._values[None, :]
        ok = need <= ((barlen - pos) * fden)[:, None]
        ok &= (target[:, None] < 0) | (target[:, None] == np.arange(len(VALUES))[None, :])
        if least is not None:
            note = (q * fnum)[:, None] * self._values[None, :]  # one note, times fden
            unit = (least * fden)[:, None]
            inner = (in_tup & (tupleft != tupr))[:, None]  # a tuplet's later notes
            ok &= (note >= unit) & (inner | (need % unit == 0))
        if gap is not None:
            rows, end = gap
            by_gap = need <= ((end - pos) * fden)[:, None]
            whole = need == ((barlen - pos) * fden)[:, None]
            ok &= ~rows[:, None] | by_gap | whole
        bits: npt.NDArray[np.int64] = ok.astype(np.int64) @ self._pow
        return bits

    def mask(
        self,
        s: npt.NDArray[np.int32],
        left: npt.NDArray[np.int32] | None = None,
        limit: int | np.integer | None = None,
        last: npt.NDArray[np.int32] | None = None,
    ) -> npt.NDArray[np.bool_]:
        """The chars each row may write next; `left`, `limit` and `last` (the char just fed)
        drive the closing phases (`common.lstm.bar_closing`)."""
        t = self.t
        mode = s[:, MODE].astype(np.int64)
        col = s[:, :_CORE].astype(np.int64).T
        pos, barlen, q = col[POS], col[BARLEN], col[Q]
        tupleft, tupr, target, brk = col[TUPLEFT], col[TUPR], col[TARGET], col[BRK]
        carry, pickup = col[CARRY], col[PICKUP]
        endst, openrep = col[ENDST], col[OPENREP] > 0
        phase = closing_phases(left, limit, len(mode))
        lim = self._limit(s, col, pos + carry)
        node = t.node[mode].astype(np.int64)
        pending = node >= 0
        least = cadence = lim_other = None
        if self.music is not None:
            least = self.music.shortest(col, q, barlen)
            # A bar whose limit or position is off that grid (a pickup written under another
            # L:) keeps the tracker's own quarter unit, and no cadence.
            on_grid = (lim % least == 0) & (((pos + carry) % least == 0) | (tupleft > 0))
            least = np.where(on_grid, least, np.maximum(q, 1))
            # A part's last bar ends on the tonic: any other note ends a unit before it does.
            final = np.maximum(4 * q, least)
            cadence = on_grid & (lim >= least)  # a closing bar of one unit: the tonic alone
            if self.form is not None:
                cadence &= self.form.last_bar_any(s, pickup)
            else:
                cadence[:] = False
            lim_other = lim - np.where(cadence, final, 0)
            tonic = self.music.tonic_pending(col) & (tupleft == 0)
            other = cadence & ~tonic
            fits_now = self._fits(
                pos + carry,
                np.where(other, lim_other, lim),
                q, tupleft, tupr, target, brk, least, (cadence & tonic, lim_other),
            )  # fmt: skip
            # A note begun where the rules could not foresee its end (a tuplet's later notes)
            # ends as the tracker alone allows: the rules never leave a note unfinishable.
            stuck = pending & (fits_now == 0)
            if stuck.any():
                loose = self._fits(pos + carry, lim, q, tupleft, tupr, target, brk, least)
                base = self._fits(pos + carry, lim, q, tupleft, tupr, target, brk)
                fits_now = np.where(stuck, np.where(loose != 0, loose, base), fits_now)
                self.music.yielded += int((stuck & (base != 0)).sum())
        else:
            fits_now = self._fits(pos + carry, lim, q, tupleft, tupr, target, brk)
        term = t.term[np.where(pending, node, len(t.term) - 1)].astype(np.int64)
        term_ok = pending & (term >= 0) & ((fits_now >> np.maximum(term, 0)) & 1 > 0)
        lastq, lastplain = col[LASTQ], col[LASTPLAIN] > 0
        if term_ok.any():
            # What the state would be once the pending note ends: the next char is judged there.
            e = s[:, :_CORE].copy()
            rows = np.flatnonzero(term_ok)
            self._commit(e, rows, term[rows])
            ecol = e.astype(np.int64).T
            pos, tupleft, target, brk = ecol[POS], ecol[TUPLEFT], ecol[TARGET], ecol[BRK]
            lastq, lastplain = ecol[LASTQ], ecol[LASTPLAIN] > 0
        epos = pos + carry  # the bar as abc2midi counts it
        if least is not None:  # the next note starts where the pending one ends: on the grid?
            least = np.where(epos % least == 0, least, np.maximum(q, 1))
        fits_next = self._fits(epos, lim, q, tupleft, tupr, target, brk, least)
        free_of_groups = (tupleft == 0) & (brk == 0)
        rem = barlen - epos
        room = lim - epos if lim_other is None else lim_other - epos  # a tuplet is no cadence
        short = free_of_groups & (pos > 0) & (rem > 0)
        closing = (pickup > 0) & (rem == pickup) & (col[FULLS] > 0)
        at_start = (pos == 0) & free_of_groups
        section_ok = (endst != 1) & ~openrep  # an open repeat or 1st ending ends with :|
        # With a pickup, a repeat closes on a short bar that completes it (abc2midi plays the
        # pickup again after :|), and opens only where a pickup follows.
        no_pickup = pickup == 0
        opens_ok = no_pickup | (carry > 0)
        # After a barline at the start of a pickup's bar, only ':' (making it |:) may follow.
        before_pickup = (mode == self._bar1) & (pos == 0) & (carry > 0) & (col[NEED] == 0)
        repopen_ok = ~openrep & (endst != 1) & (~phase.closing | before_pickup) & opens_ok
        # A barline before a pickup is the start of |: (abc2midi would end the bar empty there
        # and not pair the pickup with the closing bar before it).
        empty_bar_ok = (carry == 0) | repopen_ok
        # Near the length limit a row opens no repeat or ending, and closes open ones with :|
        # (with a pickup, a full bar first takes | and the next bar closes short).
        must_colon = phase.ending & (openrep | (endst == 1)) & ~((pickup > 0) & (rem == 0))
        ok = [
            term_ok,
            fits_next != 0,
            # inside a repeat or a 1st ending a short closing bar ends with :| (not || or |])
            ~must_colon
            & (
                (rem == 0)
                | (at_start & empty_bar_ok)
                | (short & ((col[PICKOK] > 0) | (closing & section_ok)))
            ),
            ((rem == 0) & no_pickup) | (at_start & no_pickup) | (short & closing),
            col[NEED] == 0,
            at_start & (col[BARS] >= 2) & ~openrep & (col[NEED] == 0) & (endst != 1),
            pos == 0,
        ]
        # A tuplet's digit comes only after '(' (mode PAREN): the music rules' check of a
        # whole group of notes no shorter than `least` is made for those rows alone.
        paren = (
            np.flatnonzero((mode == self._paren) & free_of_groups) if least is not None else None
        )
        for r in (2, 3, 4):
            num, den = TUPLETS[r]
            if paren is None:
                ok.append(free_of_groups & (r * q * num <= room * den))
            else:  # a tuplet of its shortest notes that fit (`_fits` as for its first note)
                assert least is not None
                tup_ok = np.zeros(len(mode), bool)
                if paren.size:
                    first = np.full(paren.size, r, np.int64)
                    e, rm = epos[paren], np.maximum(room[paren], 0)
                    bits_r = self._fits(e, e + rm, q[paren], first, first,
                                        np.full(paren.size, -1, np.int64),
                                        np.zeros(paren.size, np.int64), least[paren])  # fmt: skip
                    tup_ok[paren] = bits_r != 0
                ok.append(tup_ok)
        broken_ok = term_ok & lastplain & (epos + lastq <= lim)
        if least is not None:  # the short half of a broken pair is no shorter than `least`
            broken_ok &= (lastq // 2 >= least) & ((lastq // 2) % np.maximum(least, 1) == 0)
        ok.append(broken_ok)
        ok.append(col[MDEN] > 0)
        ok.append((col[NLET] >= 0) & (col[DEC] == 0))  # C_TIE: a plain note
        ok.append(repopen_ok)  # C_REPOPEN
        ok.append((endst == 0) & (openrep | (col[CLOSED] == 0)) & ~phase.closing)  # C_END1
        ok.append(endst == 3)  # C_END2
        ok.append(section_ok)  # C_SECTION
        ok.append((col[CLOSED] == 2) & ~phase.closing & opens_ok)  # C_REOPEN
        ok.append(col[MDEN] == 0)  # C_NOMETER
        ok.append(col[UDEN] == 0)  # C_NOUNIT
        bits = np.zeros(len(mode), np.int64)
        for i, cond in enumerate(ok):
            bits |= cond.astype(np.int64) << i
        # Length chars: the child node must still reach a length that fits.
        child = t.child[np.where(pending, node, len(t.term) - 1)]  # [B, 11]
        len_ok = (t.comp[child] & fits_now[:, None]) != 0
        bits |= (len_ok.astype(np.int64) * self._len_shift).sum(axis=1)
        bits32 = bits.astype(np.int32)
        allowed = (t.next[mode] >= 0) & ((t.req[mode] & ~bits32[:, None]) == 0)
        allowed[before_pickup] &= self._colon
        if self.form is not None:
            self.form.mask(s, mode, pos, allowed)
        if self.music is not None:
            assert cadence is not None and lim_other is not None and least is not None
            window = cadence & (lim_other - epos < least)
            self.music.mask(s, mode, mode != self.free, cadence, window, allowed)
        self._ties.mask(s, mode, allowed)
        can_end = ok[5] & (mode != self.free) & (s[:, TIE] < 0)  # a waiting tie bans the end
        self._closing.no_space_runs(allowed, mode != self.free, last)
        self._closing.full_bar(allowed, (fits_next == 0) & ~pending & (mode != self.free), last)
        ending = phase.ending & (mode != self.free)
        fields = self._field_start[mode[ending]]  # only the ending rows: this is every step
        self._closing.finish(allowed, phase.ending & can_end, ending, last, fields)
        if self.repeats is not None:
            self.repeats.mask(s, mode, mode != self.free, epos, allowed)
        empty = ~allowed.any(axis=1)
        if empty.any():
            # A slot past its tune's length limit is idle: the sampler feeds it its last char
            # again until it gets a new tune, so a dead end there is no tune's.
            counted = empty if left is None else empty & (np.asarray(left) >= 0)
            self.dead_ends += int(counted.sum())
            s[empty, MODE] = self.free
            allowed[empty] = True
        return allowed  # type: ignore[no-any-return]

    # -- for tests and tools -----------------------------------------------------------------
    def mode_name(self, state_row: npt.NDArray[np.int32]) -> str:
        return self.modes[int(state_row[MODE])]
