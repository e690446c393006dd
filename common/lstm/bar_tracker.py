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
operations over all B slots at once. The counting is `common.lstm.bar_counts`'; the rules on top
(ties, broken rhythm, closing, form, music, register, repeats) are `PARTS`, each a
`common.lstm.bar_part.TrackerPart` with its own columns, so that a new rule touches one new
module and this list.

Why it never dead-ends: every duration it allows is a multiple of a quarter of the unit length
``L`` (lengths down to ``/4``; a tuplet's notes share one length, so ``(3`` three of length m last
2m; a broken pair's notes share one length, so ``>`` pairs last 2m), and so is every bar of the
meters it accepts. So a bar that is not full always has room for a note ``A//``, and a bar that
is full always accepts ``|`` (or ``:|`` where a section must close). A waiting tie bans no
barline, and its note fits wherever a note may start. A primer that leaves the known subset, or a
meter/unit whose bar is not a whole number of such quarters, turns the tracker off for that tune
(mode FREE); a row whose mask would be empty (a vocabulary that lacks ``/`` or ``|``) does too,
and is counted. Prefixes the vocabulary cannot finish (``K:AMa`` without a ``j``) are never
offered: the tables drop every move into a mode its chars cannot leave.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from common.lstm.bar_broken import BarBroken
from common.lstm.bar_closing import BarClosing, closing_phases
from common.lstm.bar_counts import BarCounts
from common.lstm.bar_form import BarForm
from common.lstm.bar_music import BarMusic
from common.lstm.bar_part import (
    BARLEN,
    BARS,
    BRK,
    CARRY,
    CLOSED,
    DEC,
    ENDST,
    FREE_MODE,
    FULLS,
    LASTPLAIN,
    LASTQ,
    MDEN,
    MODE,
    NEED,
    NLET,
    OPENREP,
    PICKOK,
    PICKUP,
    POS,
    SHORT,
    TARGET,
    TIE,
    TUPLEFT,
    TUPR,
    UDEN,
    Build,
    Q,
    TrackerPart,
    View,
    layout,
    overrides,
)
from common.lstm.bar_register import BarRegister
from common.lstm.bar_repeats import BarRepeats
from common.lstm.bar_rules import A_BODY_START, LENGTHS, N_ACTIONS, TUPLETS, VALUES, Cond
from common.lstm.bar_tables import BARLINE_ACTIONS, check_coverage, compile_tables
from common.lstm.bar_ties import BarTies
from common.lstm.music_rules import MusicRules

#: The tracker's parts, one line each, in the order their masks narrow the tracker's (a part's
#: `feed` runs in this order too). Their state columns follow the tracker's own, in this order,
#: the `BULK` ones last; the tracker finds form and music by type for the bar limits below.
PARTS: tuple[type[TrackerPart], ...] = (
    BarForm,
    BarRegister,
    BarMusic,
    BarTies,
    BarBroken,
    BarClosing,
    BarRepeats,
)
_BASES, _CORE, FIELDS = layout(PARTS)
_TUPLET = {2: Cond.TUP2, 3: Cond.TUP3, 4: Cond.TUP4}
#: Conditions the tracker answers itself; its parts answer the rest (`TrackerPart.ANSWERS`).
ANSWERS: tuple[Cond, ...] = (
    Cond.TERM, Cond.NOTE, Cond.BAR, Cond.COLON, Cond.NOTNEED, Cond.END, Cond.BARSTART,
    Cond.TUP2, Cond.TUP3, Cond.TUP4, Cond.BROKEN, Cond.METER, Cond.TIE, Cond.REPOPEN,
    Cond.END1, Cond.END2, Cond.SECTION, Cond.REOPEN, Cond.NOMETER, Cond.NOUNIT, *LENGTHS,
)  # fmt: skip


_P = TypeVar("_P", bound=TrackerPart)


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
        self.free = self.mode_id[FREE_MODE]
        self.parts: list[TrackerPart] = [
            part(
                Build(
                    self.t, self.modes, self.mode_id, self.chars, _BASES[part], _BASES, form, music
                )
            )
            for part in PARTS
            if part.wanted(form, music)
        ]
        answers = [*ANSWERS, *(c for p in self.parts for c in p.ANSWERS)]
        check_coverage(answers)
        # The conditions `mask` answers by name (the length chars are one block there).
        self._named = frozenset(answers) - frozenset(LENGTHS)
        self._hooks = {
            hook: [p for p in self.parts if overrides(p, hook)]
            for hook in ("start", "feed", "body_start", "conditions")
        }
        # The masks in order; a run of parts that give way together is one group.
        self._masks: list[list[TrackerPart]] = []
        for p in self.parts:
            if not overrides(p, "mask"):
                continue
            if p.GIVES_WAY and self._masks and self._masks[-1][-1].GIVES_WAY:
                self._masks[-1].append(p)
            else:
                self._masks.append([p])
        self.form = self._part(BarForm)
        self.music = self._part(BarMusic)
        self.repeats = self._part(BarRepeats)
        self._counts = BarCounts(self.t, self.free, self.mode_id["COLONBAR"])
        self._colon1 = self.mode_id["COLON1"]  # after a ':' that may become '::'
        self._sep = self.mode_id["B_SEP"]  # within a line, after a barline, note or space
        self._is_pending = self.t.node >= 0
        self._values = np.asarray(VALUES, np.int64)
        self._pow = np.int64(1) << np.arange(len(VALUES), dtype=np.int64)
        self._len_shift = np.int64(1) << np.asarray(LENGTHS, np.int64)
        self.dead_ends = 0  # rows whose mask came out empty (the row went FREE)
        self.gave_way = 0  # rows where a group of parts that give way kept the mask before them
        init = np.zeros(FIELDS, np.int32)
        init[MODE] = self.mode_id["H_START"]
        init[TARGET] = -1
        init[NLET] = -1
        init[TIE] = -1
        for part in PARTS:
            part.initial(init, _BASES[part])
        self.initial = init
        self._bar1 = self.mode_id["BAR1"]
        self._paren = self.mode_id["PAREN"]
        self._colon = np.asarray([ch == ":" for ch in self.chars])
        self._barline_act = np.zeros(N_ACTIONS, bool)
        self._barline_act[list(BARLINE_ACTIONS)] = True

    def _part(self, kind: type[_P]) -> _P | None:
        return next((p for p in self.parts if isinstance(p, kind)), None)

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
            for part in self._hooks["start"]:
                part.start(s, fresh, seeds)
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
        if commit.any():
            rows = np.flatnonzero(commit)
            self._counts.commit(s, rows, t.term[t.node[mode[rows]]].astype(np.int64))
        for part in self._hooks["feed"]:
            part.feed(s, mode, c)
        present = np.bincount(act.astype(np.intp), minlength=N_ACTIONS)
        for code in np.flatnonzero(present[1:]) + 1:
            rows = np.flatnonzero(act == code)
            self._counts.act(s, rows, int(code), c, mode[rows])
            if code == A_BODY_START:
                for part in self._hooks["body_start"]:
                    part.body_start(s, rows)
        barline = np.flatnonzero(self._barline_act[act])  # by action: one small lookup
        if barline.size:
            b = s[barline]
            inside = (b[:, OPENREP] > 0) | (b[:, ENDST] == 1)
            flag = inside & (b[:, PICKUP] > 0) & (b[:, FULLS] > 0)
            s[barline, SHORT] = flag & (ending[barline] if ending is not None else False)
        event = t.event[mode, c]
        if event.any():
            self._counts.events(s, event, c)
        bad = nxt < 0
        nxt = np.where(bad, self.free, nxt)
        # an action may already have set FREE (an unfillable meter): keep it
        s[:, MODE] = np.where(s[:, MODE] == self.free, self.free, nxt)

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
        fnum = np.where(in_tup, self._counts.tup_num[tupr], np.where(brk == 2, 3, 1))
        fden = np.where(in_tup, self._counts.tup_den[tupr], np.where(brk > 0, 2, 1))
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
            self._counts.commit(e, rows, term[rows])
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
        # An empty bar only across a line break ("|\n|"): within a line, "| | | |" is a stray
        # barline that takes no time (O'Neill's has 4 in 1,289 tunes; a barely trained model at
        # a low temperature filled whole tunes with them until --max-chars cut them).
        in_line = mode == self._sep
        empty_bar_ok = ((carry == 0) | repopen_ok) & ~in_line
        # Near the length limit a row opens no repeat or ending, and closes open ones with :|
        # (with a pickup, a full bar first takes | and the next bar closes short).
        must_colon = phase.ending & (openrep | (endst == 1)) & ~((pickup > 0) & (rem == 0))
        ok: dict[Cond, npt.NDArray[np.bool_]] = {
            Cond.TERM: term_ok,
            Cond.NOTE: fits_next != 0,
            # inside a repeat or a 1st ending a short closing bar ends with :| (not || or |])
            Cond.BAR: ~must_colon
            & (
                (rem == 0)
                | (at_start & empty_bar_ok)
                | (short & ((col[PICKOK] > 0) | (closing & section_ok)))
            ),
            Cond.COLON: ((rem == 0) & no_pickup)
            | (at_start & no_pickup & ~in_line)
            | (short & closing),
            Cond.NOTNEED: col[NEED] == 0,
            Cond.END: at_start & (col[BARS] >= 2) & ~openrep & (col[NEED] == 0) & (endst != 1),
            Cond.BARSTART: pos == 0,
        }
        # A tuplet's digit comes only after '(' (mode PAREN): the music rules' check of a
        # whole group of notes no shorter than `least` is made for those rows alone.
        paren = (
            np.flatnonzero((mode == self._paren) & free_of_groups) if least is not None else None
        )
        for r in (2, 3, 4):
            num, den = TUPLETS[r]
            if paren is None:
                ok[_TUPLET[r]] = free_of_groups & (r * q * num <= room * den)
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
                ok[_TUPLET[r]] = tup_ok
        broken_ok = term_ok & lastplain & (epos + lastq <= lim)
        if least is not None:  # the short half of a broken pair is no shorter than `least`
            broken_ok &= (lastq // 2 >= least) & ((lastq // 2) % np.maximum(least, 1) == 0)
        ok[Cond.BROKEN] = broken_ok
        ok[Cond.METER] = col[MDEN] > 0
        ok[Cond.TIE] = (col[NLET] >= 0) & (col[DEC] == 0)  # a plain note
        ok[Cond.REPOPEN] = repopen_ok
        # As abc2midi counts repeats: open after |:, :: or at the tune's start, not after :|:
        # (it reads that as a :|, then "found [1 or like before |:" or "found :: before |:").
        hard_open = (col[OPENREP] == 1) | ((col[OPENREP] == 0) & (col[CLOSED] == 0))
        ok[Cond.END1] = (endst == 0) & hard_open & ~phase.closing
        ok[Cond.END2] = endst == 3
        ok[Cond.SECTION] = section_ok
        reopens = np.where(mode == self._colon1, col[CLOSED] == 2, col[CLOSED] >= 2)
        ok[Cond.REOPEN] = reopens & ~phase.closing & opens_ok
        ok[Cond.NOMETER] = col[MDEN] == 0
        ok[Cond.NOUNIT] = col[UDEN] == 0
        view = View(s, mode, mode != self.free, pos, epos, pending, fits_next, phase, last)
        for part in self._hooks["conditions"]:
            ok.update(part.conditions(view))
        assert ok.keys() == self._named, f"conditions answered {sorted(ok)}: see ANSWERS"
        bits = np.zeros(len(mode), np.int64)
        for cond, holds in ok.items():
            bits |= holds.astype(np.int64) << int(cond)  # an IntEnum shift is 3x slower
        # Length chars: the child node must still reach a length that fits.
        child = t.child[np.where(pending, node, len(t.term) - 1)]  # [B, 11]
        len_ok = (t.comp[child] & fits_now[:, None]) != 0
        bits |= (len_ok.astype(np.int64) * self._len_shift).sum(axis=1)
        allowed = (t.next[mode] >= 0) & ((t.req[mode] & ~bits.astype(t.req.dtype)[:, None]) == 0)
        allowed[before_pickup] &= self._colon
        if self.music is not None:
            assert cadence is not None and lim_other is not None and least is not None
            view.cadence = cadence
            view.window = cadence & (lim_other - epos < least)
        view.can_end = ok[Cond.END] & view.live & (s[:, TIE] < 0)  # a waiting tie bans the end
        for group in self._masks:
            self._mask_group(group, view, allowed)
        empty = ~allowed.any(axis=1)
        if empty.any():
            # A slot past its tune's length limit is idle: the sampler feeds it its last char
            # again until it gets a new tune, so a dead end there is no tune's.
            counted = empty if left is None else empty & (np.asarray(left) >= 0)
            self.dead_ends += int(counted.sum())
            s[empty, MODE] = self.free
            allowed[empty] = True
        return allowed  # type: ignore[no-any-return]

    def _mask_group(
        self, group: list[TrackerPart], view: View, allowed: npt.NDArray[np.bool_]
    ) -> None:
        """AND a part's mask into `allowed`; for a group that gives way, a row it would leave
        without a char keeps the mask it had before (counted in `gave_way`)."""
        if not group[0].GIVES_WAY:
            group[0].mask(view, allowed)
            return
        rows = np.flatnonzero(view.live)
        if rows.size == 0:
            return
        before = allowed[rows]
        for part in group:
            part.mask(view, allowed)
        empty = ~allowed[rows].any(axis=1)
        if empty.any():
            self.gave_way += int(empty.sum())
            allowed[rows[empty]] = before[empty]

    # -- for tests and tools -----------------------------------------------------------------
    def mode_name(self, state_row: npt.NDArray[np.int32]) -> str:
        return self.modes[int(state_row[MODE])]
