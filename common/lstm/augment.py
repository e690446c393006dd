"""Key-transposition augmentation of a training text: each tune also in other keys.

Off in the presets, on with ``producer train --transpose-copies N``. Measured on O'Neill's with
the `small` preset (docs/training.md#key-transposition): one copy a tune lowers the best
validation score (1.692 against 1.724 bits/char over whole tunes) and holds off over-fitting, but
costs twice the compute an epoch, and at the demo's fixed budget plain windows score as well.

A copy goes to a key a folk musician plays in (at most `MAX_ACCIDENTALS` sharps or flats, counted
with the mode, so an A-dorian tune may go to E dorian but not to Ab dorian), a different key for
each copy, chosen by a seeded generator so that a run trains on the same text when resumed.
Copies with a char the corpus's vocabulary lacks are left out (the model could not write them
anyway), as are tunes `transpose_tune` cannot move faithfully.
Validation text is never augmented: the score stays the corpus's own tunes in their own keys.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from common.abc.music import split_header
from common.abc.transpose import key_sharps, transpose_tune, transposed_key
from common.abc.vocab import Vocab
from common.lstm.wholetune import TUNE_END, corpus_tunes

#: The most sharps or flats a copy's key may have.
MAX_ACCIDENTALS = 4
#: The shifts tried, in semitones: down a fourth to up a tritone, every key once.
SHIFTS = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6)


@dataclass(frozen=True)
class Augmented:
    """The augmented training text and what went into it."""

    text: str
    tunes: int
    copies: int
    skipped: int  # copies wanted but not made: no key to move to, unmovable or out of vocabulary


def copy_shifts(tune: str, copies: int, rng: random.Random) -> list[int]:
    """Up to `copies` distinct shifts that take the tune's key to one with at most
    `MAX_ACCIDENTALS` accidentals; [] for a tune without a key we can move."""
    fields, _ = split_header(tune)
    key = fields.get("K")
    if key is None or key_sharps(key) is None:
        return []
    allowed = []
    for shift in SHIFTS:
        moved = transposed_key(key, shift)
        sharps = None if moved is None else key_sharps(moved)
        if sharps is not None and abs(sharps) <= MAX_ACCIDENTALS:
            allowed.append(shift)
    return rng.sample(allowed, min(copies, len(allowed)))


def augment_text(text: str, copies: int, vocab: Vocab, seed: int) -> Augmented:
    """`text` (a corpus's training text) with each tune followed by `copies` transposed copies."""
    tunes = corpus_tunes(text)
    if copies <= 0:
        return Augmented(text=text, tunes=len(tunes), copies=0, skipped=0)
    rng = random.Random(seed)
    parts: list[str] = []
    made = skipped = 0
    for tune in tunes:
        parts.append(tune)
        shifts = copy_shifts(tune, copies, rng)
        skipped += copies - len(shifts)
        for shift in shifts:
            moved = transpose_tune(tune.rstrip("\n"), shift)
            if moved is None or any(char not in vocab for char in set(moved)):
                skipped += 1
                continue
            parts.append(moved.strip("\n") + TUNE_END)
            made += 1
    return Augmented(text="".join(parts), tunes=len(tunes), copies=made, skipped=skipped)
