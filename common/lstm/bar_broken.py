"""Broken rhythm in the bar tracker: the second note of a ``>``/``<`` pair is a plain note.

abc2midi applies broken rhythm only between two plain notes: when the second one carries a
decoration (``G>.a``, ``G>(!breath!a``, ``G>"G".a``) or opens a tuplet (``G>(3abc``) it
reports "Cannot apply broken rhythm. Notes not equal durations" and rejects the tune. The
grammar keeps decorations out right after the ``>`` (mode PREB), but a slur or a guitar chord in
between leads back to the modes where they are allowed, and a mode cannot know what came before
it. The tracker's BRK column does: from the ``>`` until the second note ends, this part takes
decorations and tuplets out of the mask. A note, chord, grace group, slur or guitar chord may
still come, so the row always has a char left.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.lstm.bar_part import BRK, Build, TrackerPart, View
from common.lstm.bar_rules import A_TUP2, A_TUP3, A_TUP4, EV_DECO


class BarBroken(TrackerPart):
    """The broken-rhythm rule over all slots; its state is the tracker's BRK column."""

    def __init__(self, b: Build) -> None:
        t = b.t
        leads = (t.event == EV_DECO) | np.isin(t.act, (A_TUP2, A_TUP3, A_TUP4))
        self._ban = leads & (t.next >= 0)  # [modes, V]: a decoration or a tuplet starts
        self._touches = self._ban.any(axis=1)  # modes where the rule can remove a char

    def mask(self, view: View, allowed: npt.NDArray[np.bool_]) -> None:
        """While a pair waits for its second note, no decoration and no tuplet (in place)."""
        rows = np.flatnonzero((view.s[:, BRK] > 0) & view.live & self._touches[view.mode])
        if rows.size:
            allowed[rows] &= ~self._ban[view.mode[rows]]
