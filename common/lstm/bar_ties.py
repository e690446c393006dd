"""Ties in the bar tracker: after ``-`` the next note is the tied note spelled again.

abc2midi reports "Could not find note to be tied" when the note after a tie is another pitch, a
rest or a chord, or never comes. So once a tie is written the tracker remembers the tied note's
spelling (accidental, letter, octave marks: an index into `Tables.spell`) and how much of it has
been written again; until it is complete only barlines, spaces, slurs, tuplets, decorations or
guitar chords may come between (`Tables.tieban` marks the chars that would start anything
else), then the spelling char by char, and no octave mark after it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.lstm.bar_part import FREE_MODE, TIE, TIEK, Build, TrackerPart, View
from common.lstm.bar_tables import SPELL_END


class BarTies(TrackerPart):
    """The tie rule over all slots. Its state is the tracker's columns TIE and TIEK (the
    spelling a tie waits for, -1: none, and how many of its chars are written): the tracker's
    note events set them, as they keep the spelling of the note being written."""

    def __init__(self, b: Build) -> None:
        self.t, self.tie, self.tiek, self.free = b.t, TIE, TIEK, b.mode_id[FREE_MODE]
        self.octave_marks = np.asarray([ch in ",'" for ch in b.chars])

    def feed(
        self, s: npt.NDArray[np.int32], mode: npt.NDArray[np.int64], c: npt.NDArray[np.int64]
    ) -> None:
        """A tie waits for its spelling: count the chars of it written; once all are, end it."""
        rows = np.flatnonzero(s[:, self.tie] >= 0)
        if rows.size == 0:
            return
        tie, k = s[rows, self.tie], s[rows, self.tiek]
        want = self.t.spell[tie, k]
        cr = c[rows]
        hit = (cr == want) & ((k > 0) | self.t.tieban[mode[rows], cr])
        s[rows, self.tiek] = k + hit
        s[rows, self.tie] = np.where(want == SPELL_END, -1, tie)

    def mask(self, view: View, allowed: npt.NDArray[np.bool_]) -> None:
        """While a tie waits, the next note is its spelling: before it starts, no other note,
        group, field or end; once started, its next char; once written, no more octave marks."""
        s, mode = view.s, view.mode
        rows = np.flatnonzero((s[:, self.tie] >= 0) & (mode != self.free))
        if rows.size == 0:
            return
        k = s[rows, self.tiek]
        want = self.t.spell[s[rows, self.tie], k]
        sub = allowed[rows]
        ban = self.t.tieban[mode[rows]]
        start = k == 0
        has = want >= 0
        keep = np.zeros_like(sub)
        keep[np.flatnonzero(has), want[has]] = True
        sub = np.where(start[:, None], sub & (~ban | keep), sub)
        inside = ~start & has
        sub = np.where(inside[:, None], sub & keep, sub)
        done = want == SPELL_END
        sub = np.where(done[:, None], sub & ~self.octave_marks[None, :], sub)
        allowed[rows] = sub
