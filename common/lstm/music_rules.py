"""What the training corpus does, as limits the bar tracker's music rules keep while sampling.

The tracker alone lets the sampler write anything that fits a bar, so where the model's rhythm
drifts the only notes left are ones short enough to finish the bar (1/32 and 1/64 notes in
reels), and nothing keeps a tune in the register of the instruments it was written for. These
limits are read from the corpus itself, not chosen by taste:

* the shortest note each meter uses: the shortest power-of-two length that at least
  `SHORTEST_SHARE` of the meter's notes reach (O'Neill's: 1/16 in 6/8, C| and C, where fewer
  than 0.4 % of the notes are shorter; 1/32 in 2/4, 3/4 and 3/8, where 2–9 % are);
* the register: the highest pitch that `HIGH_SHARE` of the tunes stay below, and the lowest
  that `LOW_SHARE` stay above (O'Neill's: G3–B5, the fiddle's G string to the top of its first
  position; 4 % of its tunes reach C6 or above, against 40 % of the demo model's before).

A corpus too small to say (fewer than `MIN_TUNES` readable tunes) gives the defaults, which are
O'Neill's figures.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from fractions import Fraction

from common.abc.music import Note, parse_meter, read_music, split_header

#: A meter's shortest note: notes shorter than it are below this share of its notes.
SHORTEST_SHARE = 0.01
#: Share of the corpus's tunes whose highest note, and whose lowest, lies within the register:
#: the top is where tunes that climb too high are heard; the bottom only bans what is rare.
HIGH_SHARE, LOW_SHARE = 0.95, 0.99
#: Fewer readable tunes than this: the defaults.
MIN_TUNES = 50
#: The shortest note the tracker counts (a quarter of L:1/8).
FLOOR = Fraction(1, 32)
#: O'Neill's figures (1,289 training tunes).
DEFAULT_LOWEST, DEFAULT_HIGHEST = 55, 83
DEFAULT_SHORTEST = Fraction(1, 16)


@dataclass(frozen=True)
class MusicRules:
    """Limits for the tracker's music rules (`common.lstm.bar_music`), learned from a corpus."""

    lowest: int = DEFAULT_LOWEST  # MIDI pitch
    highest: int = DEFAULT_HIGHEST
    #: Meter as (numerator, denominator) (C is 4/4, C| 2/2) → shortest note in whole notes.
    shortest: dict[tuple[int, int], Fraction] = field(default_factory=dict)
    default_shortest: Fraction = DEFAULT_SHORTEST

    def shortest_for(self, num: int, den: int) -> Fraction:
        return self.shortest.get((num, den), self.default_shortest)

    def to_json(self) -> str:
        return json.dumps(
            {
                "lowest": self.lowest,
                "highest": self.highest,
                "shortest": {f"{n}/{d}": str(v) for (n, d), v in sorted(self.shortest.items())},
                "default_shortest": str(self.default_shortest),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> MusicRules:
        data = json.loads(text)
        shortest = {}
        for meter, value in data["shortest"].items():
            n, d = meter.split("/")
            shortest[int(n), int(d)] = Fraction(value)
        return cls(
            lowest=int(data["lowest"]),
            highest=int(data["highest"]),
            shortest=shortest,
            default_shortest=Fraction(data["default_shortest"]),
        )


#: O'Neill's limits, for a sampler whose corpus is not at hand.
DEFAULT_RULES = MusicRules(
    shortest={(2, 4): Fraction(1, 32), (3, 4): Fraction(1, 32), (3, 8): Fraction(1, 32)}
)


def meter_pair(text: str) -> tuple[int, int] | None:
    """(numerator, denominator) as the tracker keeps a meter: C is 4/4, C| is 2/2."""
    text = text.strip()
    if text == "C":
        return 4, 4
    if text == "C|":
        return 2, 2
    if parse_meter(text) is None or "/" not in text:
        return None
    num, den = text.split("/", 1)
    try:
        return int(num), int(den)
    except ValueError:
        return None


def _power_of_two_floor(value: Fraction) -> Fraction:
    """The longest 1/2^k no longer than `value` (a dotted or tuplet note counts as its base)."""
    k = max(0, math.ceil(math.log2(value.denominator / value.numerator)))
    return max(FLOOR, Fraction(1, 2**k))


def _quantile(values: list[int], share: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def learn_music_rules(tunes: list[str]) -> MusicRules:
    """The corpus's register and each meter's shortest note (see the module's docstring)."""
    lengths: dict[tuple[int, int], Counter[Fraction]] = defaultdict(Counter)
    lows: list[int] = []
    highs: list[int] = []
    for tune in tunes:
        fields, _ = split_header(tune)
        meter = meter_pair(fields.get("M", ""))
        try:
            music = read_music(tune)
        except ValueError:
            continue
        pitches: list[int] = []
        for event in music.events:
            if isinstance(event, Note) and event.duration > 0:
                if meter is not None:
                    lengths[meter][_power_of_two_floor(event.duration)] += 1
                pitches.extend(event.pitches)
        if pitches:
            lows.append(min(pitches))
            highs.append(max(pitches))
    if len(highs) < MIN_TUNES:
        return MusicRules()
    shortest: dict[tuple[int, int], Fraction] = {}
    for meter, counts in lengths.items():
        total = sum(counts.values())
        below = 0
        for value in sorted(counts):  # shortest first
            below += counts[value]
            if below >= SHORTEST_SHARE * total:
                shortest[meter] = value
                break
    return MusicRules(
        lowest=_quantile(lows, 1 - LOW_SHARE),
        highest=_quantile(highs, HIGH_SHARE),
        shortest=shortest,
    )
