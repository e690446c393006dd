"""The register rule on top of the bar tracker: notes stay within the corpus's range.

No octave mark takes a note above the corpus's highest pitch or below its lowest
(`common.lstm.music_rules.MusicRules.highest` and `lowest`; O'Neill's: G3–B5, the fiddle's G
string to the top of its first position, where the demo model reached C6 or above in 40 % of
its tunes). Notes without marks, C4–B5, are always in reach, so the rule only ever removes an
octave mark and never leaves a note unfinishable. In a chord or grace group, which the tracker
does not spell, octave marks are not written at all.

It is one of the music rules (on wherever they are) and gives way with them
(`TrackerPart.GIVES_WAY`): a row they would leave without a char keeps the tracker's mask. It
has no state of its own: it reads the spelling the tracker keeps of the note being written
(NLET, NOCT).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.lstm.bar_part import NLET, NOCT, Build, TrackerPart, View
from common.lstm.bar_rules import NOTE_LETTERS
from common.lstm.music_rules import MusicRules

#: Natural MIDI pitch of each of `NOTE_LETTERS` without octave marks.
_PITCH = {"C": 60, "D": 62, "E": 64, "F": 65, "G": 67, "A": 69, "B": 71}


class BarRegister(TrackerPart):
    """The register rule over all slots."""

    GIVES_WAY = True

    @classmethod
    def wanted(cls, form: bool, music: MusicRules | None) -> bool:
        return music is not None

    def __init__(self, b: Build) -> None:
        assert b.music is not None
        t, modes, chars = b.t, b.modes, b.chars
        self.highest, self.lowest = b.music.highest, b.music.lowest
        # Octave marks: in a body note they move the note the tracker spells (NLET, NOCT); in a
        # chord or grace group, which it does not spell, they are not written at all.
        up = np.asarray([ch == "'" for ch in chars])
        down = np.asarray([ch == "," for ch in chars])
        body_note = np.asarray([m.startswith("PN") for m in modes])
        group = np.asarray([m.startswith(("CHORD", "GRACE")) for m in modes])
        self._up = body_note[:, None] & up[None, :] & (t.next >= 0)
        self._down = body_note[:, None] & down[None, :] & (t.next >= 0)
        self._group_marks = group[:, None] & (up | down)[None, :]
        self._marks = self._up.any(axis=1) | self._down.any(axis=1)  # modes taking a mark
        # The modes where the rule can remove a char: only those rows are worked out.
        self._touches = self._marks | self._group_marks.any(axis=1)
        self._natural = np.asarray(
            [_PITCH[ch.upper()] + (12 if ch.islower() else 0) for ch in NOTE_LETTERS]
        )

    def mask(self, view: View, allowed: npt.NDArray[np.bool_]) -> None:
        """No octave mark past the register, none in a group (in place)."""
        rows = np.flatnonzero(view.live & self._touches[view.mode])
        if rows.size == 0:
            return
        s, m = view.s, view.mode[rows]
        sub = allowed[rows] & ~self._group_marks[m]
        marking = np.flatnonzero(self._marks[m])
        if marking.size:
            r = rows[marking]
            nlet, marks = s[r, NLET].astype(np.int64), s[r, NOCT].astype(np.int64)
            natural = self._natural[np.maximum(nlet, 0)]
            high = (natural + 12 * (marks + 1) > self.highest) | (nlet < 0)
            low = (natural - 12 * (marks + 1) < self.lowest) | (nlet < 0)
            mm = m[marking]
            sub[marking] &= ~((self._up[mm] & high[:, None]) | (self._down[mm] & low[:, None]))
        allowed[rows] = sub
