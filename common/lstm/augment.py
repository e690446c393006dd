"""Key-transposition augmentation of a training text: each tune also in other keys.

The `small` preset trains with one copy a tune; ``producer train --transpose-copies N`` sets it
for any run. On O'Neill's it lowered the best whole-tune validation score from 1.724 to 1.674
bits/char (docs/training.md#key-transposition).

A copy goes to another key of the same mode that the corpus itself uses, drawn in proportion to
the corpus's tunes in each: a D-major reel may go to G or A major, often, or to C or F major,
seldom, but never to Ab major when no tune of the corpus is in Ab. Copies to any key a model can
spell (Ab, Eb, Bb included) taught it to write those keys: a quarter of its tunes were in F, Bb,
Eb or Ab, against 3 % of O'Neill's. Drawing from the corpus's own keys keeps the keys a musician
gets the corpus's while the model sees each tune's shape in several spellings. A different key
for each copy, chosen by a seeded generator, so that a run trains on the same text when resumed.
Copies with a char the corpus's vocabulary lacks are left out (the model could not write them
anyway), as are tunes `transpose_tune` cannot move faithfully. Validation text is never
augmented: the score stays the corpus's own tunes in their own keys.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from common.abc.music import split_header
from common.abc.transpose import key_identity, transpose_tune
from common.abc.vocab import Vocab
from common.lstm.wholetune import TUNE_END, corpus_tunes

#: The shifts tried, in semitones: down a fourth to up a tritone, every key once.
SHIFTS = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6)

KeyCounts = Mapping[tuple[int, str], int]


@dataclass(frozen=True)
class Augmented:
    """The augmented training text and what went into it."""

    text: str
    tunes: int
    copies: int
    skipped: int  # copies wanted but not made: no key to move to, unmovable or out of vocabulary


def _key_of(tune: str) -> tuple[int, str] | None:
    key = split_header(tune)[0].get("K")
    return None if key is None else key_identity(key)


def corpus_keys(tunes: Iterable[str]) -> Counter[tuple[int, str]]:
    """How many tunes are in each (tonic pitch class, mode)."""
    return Counter(key for tune in tunes if (key := _key_of(tune)) is not None)


def copy_shifts(tune: str, copies: int, rng: random.Random, keys: KeyCounts) -> list[int]:
    """Up to `copies` distinct shifts to other keys of the tune's mode, drawn without
    replacement in proportion to `keys` (the corpus's tunes per key); [] for a tune without a
    key we can move, or whose mode the corpus has in one key only."""
    own = _key_of(tune)
    if own is None:
        return []
    tonic, mode = own
    weights = {s: keys.get(((tonic + s) % 12, mode), 0) for s in SHIFTS}
    shifts: list[int] = []
    while len(shifts) < copies and (left := {s: w for s, w in weights.items() if w > 0}):
        shift = rng.choices(list(left), weights=list(left.values()))[0]
        shifts.append(shift)
        weights[shift] = 0
    return shifts


def augment_text(text: str, copies: int, vocab: Vocab, seed: int) -> Augmented:
    """`text` (a corpus's training text) with each tune followed by `copies` transposed copies."""
    tunes = corpus_tunes(text)
    if copies <= 0:
        return Augmented(text=text, tunes=len(tunes), copies=0, skipped=0)
    rng = random.Random(seed)
    keys = corpus_keys(tunes)
    parts: list[str] = []
    made = skipped = 0
    for tune in tunes:
        parts.append(tune)
        shifts = copy_shifts(tune, copies, rng, keys)
        skipped += copies - len(shifts)
        for shift in shifts:
            moved = transpose_tune(tune.rstrip("\n"), shift)
            if moved is None or any(char not in vocab for char in set(moved)):
                skipped += 1
                continue
            parts.append(moved.strip("\n") + TUNE_END)
            made += 1
    return Augmented(text="".join(parts), tunes=len(tunes), copies=made, skipped=skipped)
