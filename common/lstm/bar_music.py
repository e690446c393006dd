"""Music rules on top of the bar tracker: the corpus's shortest notes, slurs, brackets, cadences.

The tracker keeps bars the meter's length; these rules keep what is written inside them within
what the training corpus does (`common.lstm.music_rules` reads the limits from it):

* **shortest note**: a note (a tuplet's note, the short half of a broken pair) is never shorter
  than the shortest note the corpus uses in the tune's meter, and a group ends on a multiple of
  it, so a bar is always filled by notes of at least that length;
* **register**: its own part, `common.lstm.bar_register`;
* **slurs**: where the corpus's slurs close in their bar (`MusicRules.long_slurs` off), no slur
  opens inside an open one and no barline comes while one is open;
* **brackets**: no chord and no inline field (``[``) in the body where the corpus has almost
  none (`MusicRules.brackets`);
* **cadence** (with the two-part form): each part's last bar ends on the tonic of the tune's
  ``K:``. In that bar any other note, rest, chord or tuplet must end at least one unit length
  (``L:``) before the bar does, what comes after that is one tonic note that fills the bar, in
  either octave, without an accidental (the key signature spells it), and no broken rhythm or
  tie leads a note into that room (fewer than 1 % of O'Neill's parts end on a note shorter
  than 1/8). 86 % of O'Neill's tunes end on the tonic; the demo model's, before this
  rule, 18 %.

Why it never dead-ends: bar lengths and pickups are multiples of the shortest note (where they
are not, for a meter the corpus does not use, the rule falls back to the tracker's own quarter
unit), so a bar that is not full still takes a note of that length; in a part's last bar the
tonic letter, always in the vocabulary the tracker needs, fits wherever a note may start. A row
the rules would leave without a char keeps the tracker's mask for that step (the tracker's
`gave_way` counts it; `yielded` counts the notes whose end the rules could not foresee).

Its state is two int32 columns (`TONIC`: the letter index of the key's tonic, -1 before ``K:``;
`SLUR`: slurs open).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.lstm.bar_part import MDEN, MNUM, NACC, NLET, NOCT, Build, TrackerPart, View
from common.lstm.bar_rules import (
    A_CLOSE,
    A_CLOSE_COLON,
    A_GT,
    A_LT,
    A_REPOPEN,
    A_SECTION,
    A_TUP2,
    A_TUP3,
    A_TUP4,
    EV_ACC,
    EV_ACC2,
    EV_LET,
    EV_LETA,
    EV_TIE,
    NOTE_LETTERS,
    TICKS_PER_WHOLE,
)
from common.lstm.music_rules import MusicRules

#: Columns this module adds to the tracker's state: TONIC, SLUR.
MUSIC_FIELDS = 2
#: The key field's first char of value, in the header, a body line and an inline field.
_KEY_MODES = ("HK0", "BFK0", "IFK0")
#: Largest meter numerator and denominator the tracker accepts.
_MAX_METER = 17


class BarMusic(TrackerPart):
    """The rules over all slots: its state columns (TONIC, SLUR), and the tracker's it reads
    (NACC, NLET, NOCT, MNUM, MDEN). The tracker asks it for each row's shortest note and
    whether the pending note is the tonic, and passes the cadence rows to its mask."""

    FIELDS = MUSIC_FIELDS
    GIVES_WAY = True

    @classmethod
    def wanted(cls, form: bool, music: MusicRules | None) -> bool:
        return music is not None

    @classmethod
    def initial(cls, row: npt.NDArray[np.int32], base: int) -> None:
        row[base] = -1  # no tonic before K:

    def __init__(self, b: Build) -> None:
        assert b.music is not None
        t, modes, chars, rules = b.t, b.modes, b.chars, b.music
        self.rules = rules
        self.tonic_col, self.slur_col = b.base, b.base + 1
        self.nacc, self.nlet, self.noct = NACC, NLET, NOCT
        self.mnum, self.mden = MNUM, MDEN
        letters = "ABCDEFG"
        self._key_mode = np.asarray([m in _KEY_MODES for m in modes])
        self._key_letter = np.asarray([letters.index(ch) if ch in letters else -1 for ch in chars])
        # The letter (A-G index) a body note starts with, per (mode, char); -1 for other chars.
        char_letter = np.asarray(
            [letters.index(ch.upper()) if ch in NOTE_LETTERS else -1 for ch in chars]
        )
        note = (t.event == EV_LET) | (t.event == EV_LETA)
        self._note_letter = np.where(note & (t.next >= 0), char_letter[None, :], -1)
        self._timed = t.timed
        # a chord or an inline field: `[` leads to either
        lbrack = [i for i, m in enumerate(modes) if m == "LBRACK"]
        self._accidental = (t.event == EV_ACC) | (t.event == EV_ACC2) | np.isin(t.next, lbrack)
        paren = [i for i, m in enumerate(modes) if m == "PAREN"]
        self._paren = np.isin(t.next, paren) & (
            t.next >= 0
        )  # a slur, or a tuplet if a digit follows
        self._tuplet = np.isin(t.act, (A_TUP2, A_TUP3, A_TUP4))
        self._slur_end = np.asarray([ch == ")" for ch in chars])[None, :] & (t.next >= 0)
        self._barline = np.isin(t.act, (A_CLOSE, A_CLOSE_COLON, A_SECTION, A_REPOPEN))
        opens = [i for i, m in enumerate(modes) if m in ("LBRACK", "CHORD0")]
        self._bracket = np.isin(t.next, opens) & (t.next >= 0)
        self._broken = (t.act == A_GT) | (t.act == A_LT)
        self._tie = t.event == EV_TIE
        self._banned = self._bracket & (not rules.brackets)
        self._slur_ban = self._paren | self._barline
        self._start = self._timed | self._accidental
        shortest = np.full((_MAX_METER, _MAX_METER), self._ticks(rules.default_shortest))
        for (num, den), value in rules.shortest.items():
            if num < _MAX_METER and den < _MAX_METER:
                shortest[num, den] = self._ticks(value)
        self._shortest = shortest
        self.yielded = 0

    @staticmethod
    def _ticks(value: object) -> int:
        from fractions import Fraction

        return int(Fraction(str(value)) * TICKS_PER_WHOLE)

    # -- state ------------------------------------------------------------------------------
    def feed(
        self, s: npt.NDArray[np.int32], mode: npt.NDArray[np.int64], c: npt.NDArray[np.int64]
    ) -> None:
        """Keep the key's tonic (the letter after ``K:``, in the header or a key change)."""
        rows = np.flatnonzero(self._key_mode[mode] & (self._key_letter[c] >= 0))
        if rows.size:
            s[rows, self.tonic_col] = self._key_letter[c[rows]]
        slur = self._paren[mode, c].astype(np.int32) - self._tuplet[mode, c]
        slur -= self._slur_end[mode, c]
        if slur.any():
            s[:, self.slur_col] = np.maximum(s[:, self.slur_col] + slur, 0)

    def shortest(
        self,
        col: npt.NDArray[np.int64],
        q: npt.NDArray[np.int64],
        barlen: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.int64]:
        """Each row's shortest note in ticks: the corpus's for its meter, never below the
        tracker's quarter unit `q`; `q` itself where the bar is no multiple of it."""
        num = np.clip(col[self.mnum], 0, _MAX_METER - 1)
        den = np.clip(col[self.mden], 0, _MAX_METER - 1)
        least = np.maximum(self._shortest[num, den], q)
        ok = barlen % np.maximum(least, 1) == 0
        return np.maximum(np.where(ok, least, q), 1)

    def tonic_pending(self, col: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Rows whose note being written is the tonic as the key spells it (a rest, a chord or
        a note with an accidental is not)."""
        nlet = col[self.nlet]
        tonic: npt.NDArray[np.bool_] = (
            (nlet >= 0) & (nlet % 7 == col[self.tonic_col]) & (col[self.nacc] == 0)
        )
        return tonic

    # -- the mask ---------------------------------------------------------------------------
    def mask(self, view: View, allowed: npt.NDArray[np.bool_]) -> None:
        """AND the bracket, slur and cadence rules into `allowed` (in place). `view.cadence`: rows
        in a part's last bar; `view.window`: those where only the tonic may start (no room
        left before the final unit for another note)."""
        s, mode, live, cadence, window = view.s, view.mode, view.live, view.cadence, view.window
        assert cadence is not None and window is not None
        rows = np.flatnonzero(live)
        if rows.size == 0:
            return
        m = mode[rows]
        # What no row may write (chords, inline fields where the corpus has none): one lookup.
        sub = allowed[rows] & ~self._banned[m]
        # The rest concerns few rows at a time (an open slur, a part's last bar): each is
        # worked out on those rows only.
        if not self.rules.long_slurs:
            slurred = np.flatnonzero(s[rows, self.slur_col] > 0)
            sub[slurred] &= ~self._slur_ban[m[slurred]]
        cad = np.flatnonzero(cadence[rows])
        if cad.size:
            # In a part's last bar no broken rhythm, no tie from another note than the tonic,
            # and in the final unit only the tonic's letter starts a note.
            r, mc = rows[cad], m[cad]
            col = s[r].astype(np.int64).T
            tonic = col[self.tonic_col]
            not_tonic = ~self.tonic_pending(col)
            win = window[r]
            ban = self._broken[mc] | (self._tie[mc] & not_tonic[:, None])
            is_tonic = self._note_letter[mc] == tonic[:, None]
            ban |= win[:, None] & self._start[mc] & ~is_tonic
            sub[cad] &= ~ban
        allowed[rows] = sub
