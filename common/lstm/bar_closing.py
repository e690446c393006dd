"""Closing phases of the bar tracker: a tune near its length limit winds down instead of being cut.

The sampler cuts a tune at ``max_chars``; a cut tune is usually invalid (an open ``|:`` is
"Missing :| at end of tune") and always unfinished. The tracker only lets a tune end after a
closed bar with every repeat and first ending closed, so a long tune needs room to get there.
Two phases, by the chars a row may still write (``left``), take characters away — they never
add one, so the mask stays a subset of what the tracker allows anyway:

* *closing* (``left <= CLOSE_MARGIN``): no new ``|:``, ``::``, ``|1`` or ``[1``, so nothing opens
  that would have to close later;
* *ending* (``left <= END_MARGIN``): a full bar inside an open repeat or first ending closes
  with ``:|`` (a plain ``|`` is masked); wherever the tune may end (a closed bar, nothing
  open), only a line break, or ``]`` completing ``|]``/``:|]``, may follow, so the tune ends at
  its next closed bar; elsewhere no line continuation, ``!decoration!``, ``"annotation"``,
  field (``[K:G]``, a ``K:`` line): text that takes no time, which rambling tunes use to fill
  their last chars (a second space in a row is never written: `Closing.no_space_runs`).

The margins scale down for short limits (a fifth and a fifteenth of it), so a short tune still
gets its repeats. A row whose restriction would leave no char keeps its mask (a waiting tie bans
the end of tune): the phases never make a dead end.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.lstm.bar_part import Build, Phases, TrackerPart, View

#: Chars left at which no new repeat or ending may open (1500-char tunes: the last 300).
CLOSE_MARGIN = 300
#: Chars left at which the tune ends at its next closed bar: room for a bar and its :|, once
#: runs of spaces are banned (bench/tune_validity.py: 50 and 100 both leave no tune cut at 1500).
END_MARGIN = 50
#: Chars that start text taking no time, banned in the ending phase: a line continuation, a
#: ``!decoration!`` and a "guitar chord" or annotation (a run of them could fill the last chars).
FILLERS = '\\!"'


def closing_phases(
    left: npt.NDArray[np.int32] | None, limit: int | np.integer | None, rows: int
) -> Phases:
    """Which rows are in the closing and the ending phase (none without a limit)."""
    if left is None or limit is None:
        none = np.zeros(rows, bool)
        return Phases(none, none)
    left64 = np.asarray(left, np.int64)
    close = min(CLOSE_MARGIN, int(limit) // 5)
    end = min(END_MARGIN, int(limit) // 15)
    return Phases(left64 <= close, left64 <= end)


def _narrow(
    allowed: npt.NDArray[np.bool_], rows: npt.NDArray[np.intp], sub: npt.NDArray[np.bool_]
) -> None:
    """Replace `rows` of `allowed` by `sub`, except rows it would leave with no char."""
    keep = sub.any(axis=1)
    allowed[rows[keep]] = sub[keep]


class BarClosing(TrackerPart):
    """The ending phase's restrictions over one vocabulary (no state of its own: it reads the
    chars left, which the sampler passes each step)."""

    def __init__(self, b: Build) -> None:
        chars = b.chars
        self.finishers = np.asarray([ch in "\n]" for ch in chars])
        self.space = chars.index(" ") if " " in chars else -1
        self.newline = chars.index("\n") if "\n" in chars else -1
        self.filler = np.asarray([ch in FILLERS for ch in chars])
        self.bracket = np.asarray([ch == "[" for ch in chars])
        self.stall = np.asarray([ch in ")\\" for ch in chars])
        self.idle = np.asarray([ch in " )\\\n]" for ch in chars])
        # (mode, char) pairs that start an inline field or a field line: no time, no end
        starts = [n.startswith(("IFF", "BFF")) for n in b.modes] + [False]
        self.field_start = np.asarray(starts)[b.t.next]
        if ":" in chars:  # T: in the body (a T alone is a trill)
            self.field_start[b.mode_id["LST"], chars.index(":")] = True

    def mask(self, view: View, allowed: npt.NDArray[np.bool_]) -> None:
        """No runs of spaces; at a full bar no stalling; in the ending phase only what ends."""
        live, last = view.live, view.last
        assert view.can_end is not None
        self.no_space_runs(allowed, live, last)
        self.full_bar(allowed, (view.fits_next == 0) & ~view.pending & live, last)
        ending = view.phase.ending & live
        fields = self.field_start[view.mode[ending]]  # only the ending rows: this is every step
        self.finish(allowed, view.phase.ending & view.can_end, ending, last, fields)

    def no_space_runs(
        self,
        allowed: npt.NDArray[np.bool_],
        tracked: npt.NDArray[np.bool_],
        last: npt.NDArray[np.int32] | None,
    ) -> None:
        """In place, on every tracked row and not only near the end: no space right after a
        space or a line break. Spaces take no time, so where the model may not write the note it
        wants (a full bar waiting for its barline) it waited on them: a fifth of the demo model's
        text came out as runs of ten or more spaces. One space still separates notes (it breaks
        a beam); a row left with no char keeps its mask."""
        if last is None or self.space < 0:
            return
        rows = np.flatnonzero(tracked & ((last == self.space) | (last == self.newline)))
        sub = allowed[rows]
        sub[:, self.space] = False
        _narrow(allowed, rows, sub)

    def full_bar(
        self,
        allowed: npt.NDArray[np.bool_],
        full: npt.NDArray[np.bool_],
        last: npt.NDArray[np.int32] | None,
    ) -> None:
        """In place, on rows whose bar is full (no note fits; only its barline is music): no
        ``[`` (there it could only start ``[K:...]``, which a model stalled at a full bar wrote
        over and over until the tune was cut), and no slur end or line continuation right after
        text that takes no time. A row left with no char keeps its mask."""
        rows = np.flatnonzero(full)
        if rows.size == 0:
            return
        sub = allowed[rows] & ~self.bracket
        if last is not None:
            idle = self.idle[np.asarray(last)[rows]]
            sub[idle] &= ~self.stall
        _narrow(allowed, rows, sub)

    def finish(
        self,
        allowed: npt.NDArray[np.bool_],
        can_end: npt.NDArray[np.bool_],
        ending: npt.NDArray[np.bool_],
        last: npt.NDArray[np.int32] | None,
        fields: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """In place: rows that may end keep only the chars that end the tune; the other rows in
        the ending phase write no line continuation, decoration, annotation or field (no text
        without time, which could fill the last chars; `fields`: the chars that would start a
        field, one row per `ending` row). A row that would be left with no char keeps its mask."""
        if not ending.any():
            return
        ban = np.zeros_like(allowed)
        ban[ending] |= self.filler
        if fields is not None:
            ban[ending] |= fields
        ban[can_end] |= ~self.finishers
        sub = allowed & ~ban
        keep = sub.any(axis=1) & ending
        allowed[keep] = sub[keep]
