"""Melody similarity that ignores transposition, and the nearest training tune of each tune.

A tune's melody is its sequence of pitches (`common.abc.music.melody`: the top note of a chord,
a tied note once, rests and grace notes left out). Its **fingerprint** is the set of its distinct
interval n-grams: every run of `N` consecutive intervals in semitones (clipped to two octaves),
so a tune and its transposition have the same fingerprint, and so do the two halves of a
repeated part.

The **similarity** of tune A to tune B is the share of A's n-grams that also occur in B
(containment, |A ∩ B| / |A|): 1.0 when all of A's melody occurs in B, whatever else B holds. It
answers the question the copy check asks — "how much of this generated tune was lifted from that
training tune?" — where a symmetric measure would be diluted by a long training tune.

`MelodyIndex` finds the most similar training tune of many tunes at once: an inverted index from
n-gram to the training tunes holding it (sorted numpy arrays), so one query costs a few array
lookups and a bincount, not one comparison per training tune.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from common.abc.music import melody, read_music

#: Intervals per n-gram: 5 intervals = 6 notes, about a bar of a reel. Shorter n-grams are stock
#: figures that every tune shares (scale runs, arpeggios); longer ones miss copies with one note
#: changed. On O'Neill's, n = 4/5/6/7 put 4.3/2.9/2.4/2.1 % of tunes at >= 0.5 to another tune
#: while keeping 98-99 % of the second transcriptions of one tune at >= 0.5.
N = 5
#: Which reading of pitches an index holds: a stored index names it, so one built before the
#: reading changed is rebuilt rather than compared with new tunes (2: a bar's accidental holds
#: in every octave, as abc2midi plays it).
READING = 2

_CLIP = 24
_BASE = 2 * _CLIP + 1

Grams = npt.NDArray[np.int64]


def fingerprint_of_pitches(pitches: Sequence[int], n: int = N) -> Grams:
    """The distinct interval n-grams of a pitch sequence, as sorted integers."""
    if len(pitches) <= n:
        return np.zeros(0, dtype=np.int64)
    values = np.asarray(pitches, dtype=np.int64)
    steps: Grams = np.clip(values[1:] - values[:-1], -_CLIP, _CLIP) + _CLIP
    codes: Grams = np.zeros(len(steps) - n + 1, dtype=np.int64)
    for k in range(n):
        codes = codes * _BASE + steps[k : len(steps) - n + 1 + k]
    return np.unique(codes)


def fingerprint(tune: str, n: int = N) -> Grams:
    return fingerprint_of_pitches(list(melody(read_music(tune))), n)


def similarity(a: Grams, b: Grams) -> float:
    """Share of `a`'s n-grams found in `b` (0.0 when `a` has none)."""
    if len(a) == 0:
        return 0.0
    return float(np.isin(a, b, assume_unique=True).sum() / len(a))


#: Tunes compared pairwise for diversity at most (pairs grow with the square).
DIVERSITY_SAMPLE = 200


def diversity_sample(count: int) -> list[int]:
    """Which of `count` comparable tunes `distinct_share` compares: all, or an even sample."""
    if count <= DIVERSITY_SAMPLE:
        return list(range(count))
    return [int(i) for i in np.linspace(0, count - 1, DIVERSITY_SAMPLE)]


def distinct_share(fingerprints: Sequence[Grams]) -> float:
    """Diversity of a set of tunes: mean over pairs of the share of n-grams the pair does not share.

    1 - Jaccard(A, B) averaged over all pairs (of the tunes with any n-gram, `diversity_sample`):
    1.0 when no two tunes share a figure, 0.0 when all tunes are the same melody.
    """
    comparable = [f for f in fingerprints if len(f)]
    picked = [comparable[i] for i in diversity_sample(len(comparable))]
    total, pairs = 0.0, 0
    for i, a in enumerate(picked):
        for b in picked[i + 1 :]:
            shared = int(np.isin(a, b, assume_unique=True).sum())
            total += 1.0 - shared / (len(a) + len(b) - shared)
            pairs += 1
    return total / pairs if pairs else 0.0


@dataclass(frozen=True)
class Match:
    """A tune's nearest training tune: its position and name in the index, and the similarity."""

    index: int
    name: str
    similarity: float


class MelodyIndex:
    """Inverted index from interval n-gram to the training tunes that contain it."""

    def __init__(self, names: Sequence[str], fingerprints: Sequence[Grams]) -> None:
        if len(names) != len(fingerprints):
            raise ValueError(f"{len(names)} names for {len(fingerprints)} fingerprints")
        self.names = list(names)
        lengths = np.array([len(f) for f in fingerprints], dtype=np.int64)
        grams = np.concatenate(list(fingerprints)) if len(fingerprints) else np.zeros(0, np.int64)
        owners = np.repeat(np.arange(len(fingerprints), dtype=np.int64), lengths)
        order = np.argsort(grams, kind="stable")
        grams, self._postings = grams[order], owners[order]
        self._keys, starts = np.unique(grams, return_index=True)
        self._starts = starts.astype(np.int64)
        self._ends = np.append(self._starts[1:], len(grams)).astype(np.int64)

    @classmethod
    def from_tunes(cls, tunes: Iterable[str], n: int = N) -> MelodyIndex:
        """Index tunes by their title (``T:``), or their position when untitled."""
        from common.abc.notation import header_fields

        names: list[str] = []
        prints: list[Grams] = []
        for i, tune in enumerate(tunes):
            fields = header_fields(tune)
            names.append(f"{fields.get('X', i + 1)}: {fields.get('T', 'untitled')}")
            prints.append(fingerprint(tune, n))
        return cls(names, prints)

    def to_bytes(self) -> bytes:
        """The index as an ``.npz`` file (plain arrays, no pickle)."""
        import io

        buffer = io.BytesIO()
        np.savez(
            buffer, names=np.array(self.names, dtype=str), keys=self._keys, starts=self._starts,
            ends=self._ends, postings=self._postings,
        )  # fmt: skip
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> MelodyIndex:
        import io

        arrays = np.load(io.BytesIO(data), allow_pickle=False)
        index = cls.__new__(cls)
        index.names = [str(n) for n in arrays["names"]]
        index._keys, index._starts = arrays["keys"], arrays["starts"]
        index._ends, index._postings = arrays["ends"], arrays["postings"]
        return index

    def __len__(self) -> int:
        return len(self.names)

    def counts(self, grams: Grams) -> npt.NDArray[np.int64]:
        """For each indexed tune, how many of `grams` (distinct, sorted) it contains."""
        if len(grams) == 0 or len(self._keys) == 0:
            return np.zeros(len(self.names), dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._keys, grams), len(self._keys) - 1)
        hit = pos[self._keys[pos] == grams]
        starts, ends = self._starts[hit], self._ends[hit]
        sizes = ends - starts
        if sizes.sum() == 0:
            return np.zeros(len(self.names), dtype=np.int64)
        offsets = np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(sizes.sum())
        return np.bincount(self._postings[offsets], minlength=len(self.names))

    def nearest(self, grams: Grams, *, exclude: int | None = None) -> Match | None:
        """The indexed tune that holds the largest share of `grams`; None for an empty index."""
        if not self.names:
            return None
        shared = self.counts(grams)
        if exclude is not None:
            shared[exclude] = -1
        best = int(np.argmax(shared))
        score = max(0, int(shared[best])) / len(grams) if len(grams) else 0.0
        return Match(best, self.names[best], round(score, 4))
