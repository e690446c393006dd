"""Musicality: per-tune features of a folk tune and a set's overlap with human tunes (MGEval).

Pure Python and NumPy over `common.abc.music` events and `common.abc.rhythm` bars, no tools.
Well formed is the floor; this module measures what a fiddler hears: does the tune come home to
its tonic, reuse its bars and motifs, sit in the register and move in the rhythms of the
tradition? Each tune gets the features of `FEATURES` (grouped into the families pitch, rhythm
and structure), read as a musician reads the page:

* pitches are the melody (the top note of a chord, a tied note once), relative to the tonic of
  ``K:`` (``Ador``'s tonic is A); tunes without a tonic (``K:none``) have no tonic features;
* note lengths are in whole notes (an eighth is 1/8 in every meter), put into fixed bins so
  that tunes in different meters and ``L:`` compare;
* a **section** ends at ``||``, ``:|``, ``|]``, ``::`` (and at the tune's end); first and
  second endings belong to the section they end;
* two bars are **similar** by the share of their (onset, pitch) pairs they share: the same
  notes at the same places in the bar score 1, the same rhythm on other notes 0 (see
  `bar_similarity`).

A set is summed up by `summary` in the plain figures a musician would quote (last note on the
tonic, bars repeated, reaching c''); `common.quality.overlap` compares sets feature by feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from common.abc.music import Note, read_music, split_header
from common.abc.rhythm import Bar, sections, split_bars
from common.abc.transpose import key_identity

Vector = npt.NDArray[np.float64]

#: Semitones above the tonic of each mode's scale (for the random-walk control) and its third.
SCALES: dict[str, tuple[int, ...]] = {
    "maj": (0, 2, 4, 5, 7, 9, 11),
    "min": (0, 2, 3, 5, 7, 8, 10),
    "dor": (0, 2, 3, 5, 7, 9, 10),
    "mix": (0, 2, 4, 5, 7, 9, 10),
    "phr": (0, 1, 3, 5, 7, 8, 10),
    "lyd": (0, 2, 4, 6, 7, 9, 11),
    "loc": (0, 1, 3, 5, 6, 8, 10),
}
#: Note-length bins in whole notes, the same for every meter; other lengths go to a last bin.
LENGTH_BINS: tuple[Fraction, ...] = tuple(
    Fraction(x)
    for x in ("1/64", "1/32", "1/24", "1/16", "1/12", "3/32", "1/8", "1/6", "3/16", "1/4",
              "3/8", "1/2", "3/4", "1")
)  # fmt: skip
_LENGTH_INDEX = {value: i for i, value in enumerate(LENGTH_BINS)}
N_LENGTHS = len(LENGTH_BINS) + 1
SIXTEENTH = Fraction(1, 16)
#: MIDI number of c'' (ABC ``c'``): the top of the fiddle's first position and of most tunes.
HIGH_C = 84

#: Feature name -> family. Vectors (histograms, transition matrices) and scalars alike.
FEATURES: dict[str, str] = {
    "pitch_count": "pitch",
    "pitch_class_histogram": "pitch",
    "pitch_class_transitions": "pitch",
    "pitch_range": "pitch",
    "highest_pitch": "pitch",
    "lowest_pitch": "pitch",
    "mean_interval": "pitch",
    "step_share": "pitch",
    "length_histogram": "rhythm",
    "length_transitions": "rhythm",
    "notes_per_beat": "rhythm",
    "rest_share": "rhythm",
    "final_tonic": "structure",
    "section_tonic": "structure",
    "repeated_bars": "structure",
    "motif_reuse": "structure",
    "ab_similarity": "structure",
    "downbeat_triad": "structure",
}
FAMILIES = ("pitch", "rhythm", "structure")


@dataclass(frozen=True)
class Played:
    """One note or rest as played: where it starts in its bar, how long it sounds (ties merged
    into the note they continue), its melody pitch (None for a rest)."""

    onset: Fraction
    duration: Fraction
    pitch: int | None


@dataclass
class PlayedBar:
    notes: list[Played]
    duration: Fraction
    expected: Fraction | None
    #: The section ends after this bar (``||``, ``:|``, ``|]``, ``::`` or the tune's end).
    closes: bool = False
    #: The section (0, 1, ...) the bar belongs to; bars of second and later endings are marked.
    section: int = 0
    later_ending: bool = False

    @property
    def full(self) -> bool:
        return self.expected is not None and self.duration == self.expected


@dataclass
class Piece:
    """A tune as the features see it: tonic, meter and played bars."""

    tonic: int | None
    mode: str | None
    meter_text: str
    meter: Fraction | None
    bars: list[PlayedBar]

    def notes(self) -> list[Played]:
        return [n for bar in self.bars for n in bar.notes]


def _closes_section(kind: str) -> bool:
    """Barlines that end a section: ``||``, ``|]``, a repeat end ``:|`` / ``::`` / ``:|:``.

    `kind` may be several barlines in a row (``|| |:``, or ``| |`` where a line ends and the
    next starts with a barline), each read on its own: ``| |`` is no double bar.
    """
    return any(
        part.startswith(":") or "||" in part or "|]" in part or "::" in part
        for part in kind.split()
    )


def _played(bar_notes: list[Note]) -> list[Played]:
    out: list[Played] = []
    onset = Fraction(0)
    for note in bar_notes:
        pitch = note.pitches[0] if note.pitches else None
        if note.tied_from_previous and out and out[-1].pitch == pitch and pitch is not None:
            last = out[-1]
            out[-1] = Played(last.onset, last.duration + note.duration, pitch)
        else:
            out.append(Played(onset, note.duration, pitch))
        onset += note.duration
    return out


def piece_of(tune: str) -> Piece:
    """Read one ABC tune into a `Piece` (the project's reader, `common.abc.music`)."""
    music = read_music(tune)
    identity = key_identity(split_header(tune)[0].get("K", ""))
    bars: list[Bar] = split_bars(music)
    played: list[PlayedBar] = []
    for number, section in enumerate(sections(bars)):
        for bar in section:
            played.append(
                PlayedBar(
                    notes=_played(bar.notes),
                    duration=bar.duration,
                    expected=bar.expected,
                    closes=_closes_section(bar.end),
                    section=number,
                    later_ending=bar.ending is not None and not bar.ending.startswith("1"),
                )
            )
    if played:
        played[-1].closes = True
    return Piece(
        tonic=identity[0] if identity else None,
        mode=identity[1] if identity else None,
        meter_text=music.meter_text,
        meter=music.meter,
        bars=played,
    )


def beat_of(meter_text: str) -> Fraction:
    """One beat in whole notes: a dotted quarter in 6/8, 9/8, 12/8; the denominator's note in
    simple meters (a quarter in 4/4 and ``C``, a half in 2/2 and ``C|``)."""
    text = meter_text.strip()
    if text in ("C|", "c|"):
        return Fraction(1, 2)
    try:
        num_text, den_text = text.split("/", 1)
        numerator = sum(int(p) for p in num_text.strip("() ").split("+"))
        denominator = int(den_text.split()[0])
    except (ValueError, IndexError):
        return Fraction(1, 4)
    if denominator <= 0:
        return Fraction(1, 4)
    if numerator % 3 == 0 and numerator > 3 and denominator >= 8:
        return Fraction(3, denominator)
    return Fraction(1, denominator)


def length_bin(duration: Fraction) -> int:
    return _LENGTH_INDEX.get(duration, N_LENGTHS - 1)


Motif = frozenset[tuple[int, int, int | None]]


def motif(notes: Sequence[Played]) -> Motif:
    """A bar as the set of its (onset, pitch) pairs (onsets as numerator and denominator: hashing
    Fractions is slow, and a tune's bars are compared pairwise)."""
    return frozenset((n.onset.numerator, n.onset.denominator, n.pitch) for n in notes)


def similarity(left: Motif, right: Motif) -> float:
    """Share of (onset, pitch) pairs two bars share, of the larger bar's count.

    The onsets carry the rhythm (every note's duration but the last), the pitches the melody:
    an exact repeat scores 1, a bar with one of eight notes changed 7/8, the same rhythm on
    other pitches 0 (rests count as a pitch of their own).
    """
    if not left or not right:
        return 0.0
    return len(left & right) / max(len(left), len(right))


def bar_similarity(a: Sequence[Played], b: Sequence[Played]) -> float:
    """`similarity` of two bars' notes."""
    return similarity(motif(a), motif(b))


def third_of(mode: str | None) -> int:
    return 4 if mode in ("maj", "mix", "lyd") else 3


@dataclass
class TuneFeatures:
    """One tune's features (None where undefined: no tonic, no notes) and the raw counts the
    set's summary figures add up."""

    values: dict[str, Vector | None]
    notes: int = 0
    rests: int = 0
    sixteenths: int = 0
    shortest: Fraction | None = None
    meter_text: str = ""
    bars: int = 0
    repeated: int = 0
    sections: int = 0
    sections_tonic: int = 0

    def scalar(self, name: str) -> float | None:
        """A one-number feature's value (``final_tonic``, ``motif_reuse`` ...), None if unset."""
        value = self.values[name]
        return None if value is None else float(value[0])


def _scalar(value: float) -> Vector:
    return np.array([value], dtype=np.float64)


def features(piece: Piece) -> TuneFeatures:
    """Every feature of `FEATURES` for one tune (see the module docstring for the readings)."""
    values: dict[str, Vector | None] = dict.fromkeys(FEATURES)
    notes = piece.notes()
    pitched = [n for n in notes if n.pitch is not None]
    pitches = [n.pitch for n in pitched if n.pitch is not None]
    out = TuneFeatures(values=values, meter_text=piece.meter_text, bars=len(piece.bars))
    out.notes = len(pitched)
    out.rests = len(notes) - len(pitched)
    out.sixteenths = sum(1 for n in pitched if n.duration == SIXTEENTH)
    out.shortest = min((n.duration for n in pitched), default=None)
    if not pitches:
        return out
    tonic = piece.tonic
    values["pitch_count"] = _scalar(len(set(pitches)))
    values["highest_pitch"] = _scalar(max(pitches))
    values["lowest_pitch"] = _scalar(min(pitches))
    values["pitch_range"] = _scalar(max(pitches) - min(pitches))
    intervals = np.abs(np.diff(np.array(pitches, dtype=np.float64)))
    if len(intervals):
        values["mean_interval"] = _scalar(float(intervals.mean()))
        values["step_share"] = _scalar(float((intervals <= 2).mean()))
    if tonic is not None:
        classes = [(p - tonic) % 12 for p in pitches]
        histogram = np.bincount(classes, minlength=12).astype(np.float64)
        values["pitch_class_histogram"] = histogram / histogram.sum()
        if len(classes) > 1:
            moves = np.zeros((12, 12), dtype=np.float64)
            np.add.at(moves, (classes[:-1], classes[1:]), 1.0)
            values["pitch_class_transitions"] = (moves / moves.sum()).ravel()
    bins = [length_bin(n.duration) for n in notes]
    lengths = np.bincount(bins, minlength=N_LENGTHS).astype(np.float64)
    values["length_histogram"] = lengths / lengths.sum()
    if len(bins) > 1:
        moves = np.zeros((N_LENGTHS, N_LENGTHS), dtype=np.float64)
        np.add.at(moves, (bins[:-1], bins[1:]), 1.0)
        values["length_transitions"] = (moves / moves.sum()).ravel()
    total = sum((n.duration for n in notes), Fraction(0))
    if total > 0:
        values["notes_per_beat"] = _scalar(
            float(len(pitched) / (total / beat_of(piece.meter_text)))
        )
    values["rest_share"] = _scalar(out.rests / len(notes))
    _structure(piece, tonic, out)
    return out


def _last_pitch(bar: PlayedBar) -> int | None:
    return next((n.pitch for n in reversed(bar.notes) if n.pitch is not None), None)


def _structure(piece: Piece, tonic: int | None, out: TuneFeatures) -> None:
    values = out.values
    bars = piece.bars
    if tonic is not None:
        last = next((p for b in reversed(bars) if (p := _last_pitch(b)) is not None), None)
        values["final_tonic"] = _scalar(float(last is not None and last % 12 == tonic))
        ends = [p for b in bars if b.closes and (p := _last_pitch(b)) is not None]
        out.sections = len(ends)
        out.sections_tonic = sum(1 for p in ends if p % 12 == tonic)
        if ends:
            values["section_tonic"] = _scalar(out.sections_tonic / len(ends))
        triad = {tonic, (tonic + third_of(piece.mode)) % 12, (tonic + 7) % 12}
        downbeats = [
            b.notes[0].pitch % 12 in triad
            for b in bars
            if b.full and b.notes and b.notes[0].pitch is not None
        ]
        if downbeats:
            values["downbeat_triad"] = _scalar(sum(downbeats) / len(downbeats))
    seen: set[tuple[tuple[float, float, int | None], ...]] = set()
    for bar in bars:
        signature = tuple((float(n.onset), float(n.duration), n.pitch) for n in bar.notes)
        out.repeated += signature in seen
        seen.add(signature)
    values["repeated_bars"] = _scalar(out.repeated / len(bars))
    if len(bars) > 1:
        motifs = [motif(b.notes) for b in bars]
        best = [max(similarity(motifs[i], motifs[j]) for j in range(i)) for i in
                range(1, len(bars))]  # fmt: skip
        values["motif_reuse"] = _scalar(sum(best) / len(best))
    first, second = _two_parts(bars)
    if first and second:
        pairs = list(zip(first, second, strict=False))
        values["ab_similarity"] = _scalar(
            sum(bar_similarity(a.notes, b.notes) for a, b in pairs) / len(pairs)
        )


def _two_parts(bars: list[PlayedBar]) -> tuple[list[PlayedBar], list[PlayedBar]]:
    """The whole bars of the first two sections of 2 bars or more (second endings left out);
    one long section is cut in halves."""
    grouped: dict[int, list[PlayedBar]] = {}
    for bar in bars:
        if bar.full and not bar.later_ending:
            grouped.setdefault(bar.section, []).append(bar)
    parts = [group for group in grouped.values() if len(group) >= 2]
    if len(parts) >= 2:
        return parts[0], parts[1]
    if parts and len(parts[0]) >= 4:
        half = len(parts[0]) // 2
        return parts[0][:half], parts[0][half:]
    return [], []


def tune_features(tune: str) -> TuneFeatures:
    return features(piece_of(tune))


def _scalar_mean(tunes: Sequence[TuneFeatures], name: str) -> float | None:
    values = [float(v[0]) for t in tunes if (v := t.values[name]) is not None]
    return round(sum(values) / len(values), 4) if values else None


#: The summary figures of a set, in the order tables show them, with their labels.
SUMMARY_LABELS: dict[str, str] = {
    "final_tonic": "last note on the tonic",
    "section_tonic": "sections ending on the tonic",
    "repeated_bars": "bars repeating an earlier bar",
    "motif_reuse": "motif reuse (best earlier bar)",
    "ab_similarity": "A/B similarity",
    "downbeat_triad": "downbeats on the tonic triad",
    "mean_highest": "mean highest pitch (MIDI)",
    "reach_high_c": "tunes reaching c'' (84) or above",
    "distinct_pitches": "distinct pitches per tune",
    "sixteenths": "notes that are sixteenths",
    "rests": "rests among notes and rests",
    "notes_per_beat": "notes per beat",
    "below_shortest": "tunes with a note shorter than the corpus's shortest in their meter",
}
#: Summary figures that are shares (shown as percentages).
SHARES = frozenset(
    {"final_tonic", "section_tonic", "repeated_bars", "reach_high_c", "sixteenths", "rests",
     "below_shortest"}
)  # fmt: skip


def summary(
    tunes: Sequence[TuneFeatures], shortest: dict[str, str] | None = None
) -> dict[str, float | None]:
    """Plain figures of a set (pooled counts where a musician would count: sections, bars,
    notes), as `SUMMARY_LABELS` names them."""

    def share(hits: int, total: int) -> float | None:
        return round(hits / total, 4) if total else None

    tonal = [t for t in tunes if t.values["final_tonic"] is not None]
    highest = [float(v[0]) for t in tunes if (v := t.values["highest_pitch"]) is not None]
    notes = sum(t.notes for t in tunes)
    out: dict[str, float | None] = {
        "final_tonic": share(sum(1 for t in tonal if _flag(t, "final_tonic")), len(tonal)),
        "section_tonic": share(
            sum(t.sections_tonic for t in tunes), sum(t.sections for t in tunes)
        ),
        "repeated_bars": share(sum(t.repeated for t in tunes), sum(t.bars for t in tunes)),
        "motif_reuse": _scalar_mean(tunes, "motif_reuse"),
        "ab_similarity": _scalar_mean(tunes, "ab_similarity"),
        "downbeat_triad": _scalar_mean(tunes, "downbeat_triad"),
        "mean_highest": round(sum(highest) / len(highest), 2) if highest else None,
        "reach_high_c": share(sum(1 for h in highest if h >= HIGH_C), len(highest)),
        "distinct_pitches": _scalar_mean(tunes, "pitch_count"),
        "sixteenths": share(sum(t.sixteenths for t in tunes), notes),
        "rests": share(sum(t.rests for t in tunes), notes + sum(t.rests for t in tunes)),
        "notes_per_beat": _scalar_mean(tunes, "notes_per_beat"),
        "below_shortest": None,
    }
    if shortest is not None:
        judged = [t for t in tunes if t.shortest is not None and t.meter_text in shortest]
        below = sum(
            1
            for t in judged
            if t.shortest is not None and t.shortest < Fraction(shortest[t.meter_text])
        )
        out["below_shortest"] = share(below, len(judged))
    return out


def _flag(tune: TuneFeatures, name: str) -> bool:
    value = tune.values[name]
    return value is not None and float(value[0]) >= 0.5
