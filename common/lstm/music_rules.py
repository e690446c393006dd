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

* whether its tunes use ``[`` in the body at all (chords, inline fields): fewer than
  `BRACKET_SHARE` of O'Neill's tunes do (0.5 % have a chord, 0.08 % an inline key or meter
  change), against 11 % and 1 % of the demo model's before this rule;
* whether its slurs stay within a bar: all but `SLUR_SHARE` of O'Neill's tunes close every slur
  in the bar that opens it and never nest one (the demo model's: 27 % of tunes had a slur
  across a barline and 20 % left one open, drawn as arcs over whole lines);
* how tunes repeat their own bars: for each tune of two 8-bar parts, which earlier bar each of
  its 16 bars is note for note (a *plan*; `common.lstm.bar_repeats` has a generated tune follow
  one, drawn per tune). 26 % of the bars of O'Neill's held-out tunes repeat an earlier one;
  0.7 % of the demo model's did before.

A corpus too small to say (fewer than `MIN_TUNES` readable tunes) gives the defaults, which are
O'Neill's figures (and no plans: with no corpus at hand nothing is copied).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from fractions import Fraction

from common.abc.music import (
    Barline,
    EndingStart,
    MeterChange,
    Music,
    Note,
    parse_meter,
    read_music,
    split_header,
)

#: A meter's shortest note: notes shorter than it are below this share of its notes.
SHORTEST_SHARE = 0.01
#: Share of the corpus's tunes whose highest note, and whose lowest, lies within the register:
#: the top is where tunes that climb too high are heard; the bottom only bans what is rare.
HIGH_SHARE, LOW_SHARE = 0.95, 0.99
#: Share of a corpus's tunes with chords or inline fields below which the sampler writes none.
BRACKET_SHARE = 0.01
#: Share of a corpus's tunes with a slur across a barline below which slurs close in their bar.
SLUR_SHARE = 0.05
#: Fewer readable tunes than this: the defaults.
MIN_TUNES = 50
#: The shortest note the tracker counts (a quarter of L:1/8).
FLOOR = Fraction(1, 32)
#: O'Neill's figures (1,289 training tunes).
DEFAULT_LOWEST, DEFAULT_HIGHEST = 55, 83
DEFAULT_SHORTEST = Fraction(1, 16)
#: Bars in a plan: two parts of eight (`common.lstm.bar_form`).
PLAN_BARS = 16
#: Added to a plan's entry where a bar repeats only the first half of the earlier bar, or only
#: its second half.
HALF, SECOND = 100, 200


@dataclass(frozen=True)
class MusicRules:
    """Limits for the tracker's music rules (`common.lstm.bar_music`), learned from a corpus."""

    lowest: int = DEFAULT_LOWEST  # MIDI pitch
    highest: int = DEFAULT_HIGHEST
    #: Meter as (numerator, denominator) (C is 4/4, C| 2/2) → shortest note in whole notes.
    shortest: dict[tuple[int, int], Fraction] = field(default_factory=dict)
    default_shortest: Fraction = DEFAULT_SHORTEST
    #: Chords and inline fields (``[``) in the body, as the corpus has them or not.
    brackets: bool = False
    #: Slurs may run across a barline (else each closes in the bar that opens it).
    long_slurs: bool = False
    #: Per two-part tune of the corpus: for each of its 16 bars, the first earlier bar it
    #: repeats note for note, `HALF` + the first earlier bar whose first half it begins with,
    #: `SECOND` + the first whose second half it ends with, or -1 (in that order of choice).
    plans: tuple[tuple[int, ...], ...] = ()

    def shortest_for(self, num: int, den: int) -> Fraction:
        return self.shortest.get((num, den), self.default_shortest)

    def to_json(self) -> str:
        return json.dumps(
            {
                "lowest": self.lowest,
                "highest": self.highest,
                "shortest": {f"{n}/{d}": str(v) for (n, d), v in sorted(self.shortest.items())},
                "default_shortest": str(self.default_shortest),
                "plans": [list(p) for p in self.plans],
                "brackets": self.brackets,
                "long_slurs": self.long_slurs,
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
            plans=tuple(tuple(int(b) for b in p) for p in data.get("plans", [])),
            brackets=bool(data.get("brackets", False)),
            long_slurs=bool(data.get("long_slurs", False)),
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


Bar = tuple[tuple[Fraction, tuple[int, ...]], ...]


def musical_bars(music: Music) -> list[Bar] | None:
    """A tune's 16 bars (notes as duration and pitches) if it has two parts of eight, else None.

    Bars are counted as the form writes them: a pickup is no bar (the short bar that closes a
    part with it is), and tunes with endings or meter changes have no plan."""
    bars: list[Bar] = []
    ends: list[int] = []  # bar counts at each section end
    current: list[tuple[Fraction, tuple[int, ...]]] = []
    length = Fraction(0)
    meter = music.meter
    if meter is None:
        return None
    for event in music.events:
        if isinstance(event, EndingStart | MeterChange):
            return None
        if isinstance(event, Note):
            current.append((event.duration, event.pitches))
            length += event.duration
            continue
        if not isinstance(event, Barline) or event.ending:
            if isinstance(event, Barline):
                return None
            continue
        section = any(k in event.kind for k in (":", "||", "]"))
        if current and (length == meter or section):
            bars.append(tuple(current))
        if section and bars and (not ends or ends[-1] != len(bars)):
            ends.append(len(bars))
        current, length = [], Fraction(0)
    if current and length == meter:
        bars.append(tuple(current))
    if len(bars) != PLAN_BARS or ends[:1] != [PLAN_BARS // 2]:
        return None
    return bars


def repeat_plan(music: Music) -> tuple[int, ...] | None:
    """For a tune of two 8-bar parts: each bar's first earlier bar with the same notes, else
    `HALF` + the first whose first half (to a note ending mid-bar) it begins with, else
    `SECOND` + the first whose second half it ends with, else -1."""
    bars = musical_bars(music)
    if bars is None or music.meter is None:
        return None
    meter = music.meter
    first: dict[Bar, int] = {}
    halves: tuple[dict[Bar, int], dict[Bar, int]] = ({}, {})
    plan = []
    for i, bar in enumerate(bars):
        front, back = _halves(bar, meter)
        if bar in first:
            plan.append(first[bar])
        elif front and front in halves[0]:
            plan.append(HALF + halves[0][front])
        elif back and back in halves[1]:
            plan.append(SECOND + halves[1][back])
        else:
            plan.append(-1)
        first.setdefault(bar, i)
        if front:
            halves[0].setdefault(front, i)
            halves[1].setdefault(back, i)
    return tuple(plan)


def _halves(bar: Bar, meter: Fraction) -> tuple[Bar, Bar]:
    """The bar's notes before and after its middle, if a note ends exactly there (else none)."""
    at = Fraction(0)
    for k, (duration, _) in enumerate(bar):
        at += duration
        if at == meter / 2:
            return bar[: k + 1], bar[k + 1 :]
        if at > meter / 2:
            break
    return (), ()


def learn_music_rules(tunes: list[str]) -> MusicRules:
    """The corpus's register and each meter's shortest note (see the module's docstring)."""
    lengths: dict[tuple[int, int], Counter[Fraction]] = defaultdict(Counter)
    lows: list[int] = []
    highs: list[int] = []
    plans: list[tuple[int, ...]] = []
    bracketed = long_slurs = 0
    for tune in tunes:
        fields, _ = split_header(tune)
        meter = meter_pair(fields.get("M", ""))
        try:
            music = read_music(tune)
        except ValueError:
            continue
        pitches: list[int] = []
        bracketed += (
            any(
                isinstance(e, MeterChange) or (isinstance(e, Note) and len(e.pitches) > 1)
                for e in music.events
            )
            or "[K:" in tune.split("\nK:", 1)[-1]
        )
        long_slurs += _slur_across_bar(tune)
        for event in music.events:
            if isinstance(event, Note) and event.duration > 0:
                if meter is not None:
                    lengths[meter][_power_of_two_floor(event.duration)] += 1
                pitches.extend(event.pitches)
        if pitches:
            lows.append(min(pitches))
            highs.append(max(pitches))
        plan = repeat_plan(music)
        if plan is not None:
            plans.append(plan)
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
        plans=tuple(plans),
        brackets=bracketed >= BRACKET_SHARE * len(highs),
        long_slurs=long_slurs >= SLUR_SHARE * len(highs),
    )


def _slur_across_bar(tune: str) -> bool:
    """A slur open at a barline (quoted text aside; ``(3`` is a tuplet, not a slur)."""
    _, body = split_header(tune)
    depth = 0
    for _, line in body:
        text = re.sub(r'"[^"]*"', "", line)
        for i, ch in enumerate(text):
            if ch == "(" and not text[i + 1 : i + 2].isdigit():
                depth += 1
            elif ch == ")":
                depth = max(0, depth - 1)
            elif ch == "|" and depth > 0:
                return True
    return False
