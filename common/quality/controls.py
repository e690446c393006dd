"""Plausible nonsense to test a musicality measure with: human bars in no tune, random walks.

A measure that cannot tell real tunes from these is no measure. Both controls start from human
tunes and keep what is easy to imitate, so that only the music is left to tell them apart:

* `bar_shuffled`: every bar of a tune is a random bar of another tune (same meter, bar length
  and kind of third, moved to this tune's tonic, in the octave nearer its register). Pitch and
  rhythm statistics stay human; the tune has no motifs, repeats or phrases of its own.
  Pickups and closing bars are drawn from the other tunes' pickups and closing bars (the only
  bars of their length), so cadences stay rather human too;
* `random_walks`: a tune's rhythm, rests and sections are kept, its notes replaced by a random
  walk on the key's scale (mostly steps, some thirds and fourths), within its own range,
  starting on the tonic.

Both work on `common.quality.musicality.Piece`, the reading the features use, and are seeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction

import numpy as np

from common.quality.musicality import SCALES, Piece, Played, PlayedBar, third_of


def _median(piece: Piece) -> float | None:
    pitched = sorted(n.pitch for n in piece.notes() if n.pitch is not None)
    return float(pitched[len(pitched) // 2]) if pitched else None


def _shift(target: Piece, donor: Piece) -> int:
    """Semitones that move `donor` to `target`'s tonic, up or down, whichever lands its middle
    pitch nearer the target's (a D tune's bar in a G tune goes down a fifth, not up a fourth)."""
    if target.tonic is None or donor.tonic is None:
        return 0
    up = (target.tonic - donor.tonic) % 12
    mine, theirs = _median(target), _median(donor)
    if mine is None or theirs is None:
        return up
    return min((up, up - 12), key=lambda s: abs(theirs + s - mine))


def bar_shuffled(pieces: Sequence[Piece], seed: int = 0) -> list[Piece]:
    """Control (a): each tune keeps its key, meter, length and sections, but every bar is a
    random bar of another tune with the same meter, bar length and kind of third, moved to this
    tune's tonic, drawn without replacement within the tune. Human bars, no tune: a measure must
    score it below human tunes."""
    rng = np.random.default_rng(seed)
    pool: dict[tuple[str, Fraction, int], list[tuple[int, PlayedBar]]] = {}
    for index, piece in enumerate(pieces):
        for bar in piece.bars:
            key = (piece.meter_text, bar.duration, third_of(piece.mode))
            pool.setdefault(key, []).append((index, bar))
    out: list[Piece] = []
    for index, piece in enumerate(pieces):
        bars: list[PlayedBar] = []
        used: set[int] = set()
        for bar in piece.bars:
            donors = [d for d in pool[(piece.meter_text, bar.duration, third_of(piece.mode))]
                      if d[0] != index]  # fmt: skip
            if not donors:
                bars.append(bar)
                continue
            # Each donor bar once per tune while there are unused ones: a small pool must not
            # make the tune repeat bars it would not have by chance in a large one.
            fresh = [d for d in donors if id(d[1]) not in used] or donors
            source, donor = fresh[int(rng.integers(len(fresh)))]
            used.add(id(donor))
            move = _shift(piece, pieces[source])
            notes = [
                Played(n.onset, n.duration, None if n.pitch is None else n.pitch + move)
                for n in donor.notes
            ]
            bars.append(replace(bar, notes=notes))
        out.append(replace(piece, bars=bars))
    return out


def random_walks(pieces: Sequence[Piece], seed: int = 0) -> list[Piece]:
    """Control (b): each tune keeps its key, meter, sections and rhythm (human rhythms, rests
    included), but its notes are a random walk on the key's scale: mostly steps, some thirds and
    fourths, kept within the tune's own range, starting on the tonic. Plausible nonsense."""
    rng = np.random.default_rng(seed)
    moves = np.array([-4, -3, -2, -1, 0, 1, 2, 3, 4])
    weights = np.array([0.03, 0.07, 0.12, 0.25, 0.06, 0.25, 0.12, 0.07, 0.03])
    out: list[Piece] = []
    for piece in pieces:
        pitched = [n.pitch for n in piece.notes() if n.pitch is not None]
        tonic = piece.tonic if piece.tonic is not None else 7
        scale = SCALES.get(piece.mode or "maj", SCALES["maj"])
        low, high = (min(pitched), max(pitched)) if pitched else (62, 83)
        ladder = [p for p in range(low, high + 1) if (p - tonic) % 12 in scale]
        tonics = [i for i, p in enumerate(ladder) if (p - tonic) % 12 == 0]
        step = tonics[len(tonics) // 2] if tonics else len(ladder) // 2
        bars: list[PlayedBar] = []
        for bar in piece.bars:
            notes: list[Played] = []
            for n in bar.notes:
                if n.pitch is None:
                    notes.append(n)
                    continue
                step = int(np.clip(step + rng.choice(moves, p=weights), 0, len(ladder) - 1))
                notes.append(Played(n.onset, n.duration, ladder[step]))
            bars.append(replace(bar, notes=notes))
        out.append(replace(piece, bars=bars))
    return out
