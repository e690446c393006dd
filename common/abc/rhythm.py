"""Rhythm check: does every bar of a tune last what its meter says?

Pure Python over `common.abc.music` events, no tools. The rule, as a musician reads a tune:

* every bar lasts exactly one meter's length (``M:6/8`` → 6/8 of a whole note), with the meter
  in force where the bar starts (inline ``[M:]`` and ``M:`` lines change it);
* except a **pickup** (anacrusis): a shorter bar at the start of the tune or right after a section
  boundary (a repeat sign, a double bar, a numbered ending);
* and a **closing** bar: a shorter bar that ends a section (a repeat sign, a double bar, the end
  of a numbered ending or of the tune) and that, with one of the tune's pickups, makes a whole
  bar — the section's last bar completes the pickup it repeats to or leads into;
* bars without notes (two barlines in a row) are not bars; ``M:none`` (free meter) means there is
  nothing to check; a tune without ``M:`` cannot be checked and is not ok.

The form figure (`two_part`) reads the same bars: AABB means two parts that each play 16 bars —
an 8-bar part with a repeat, or 16 bars written out (one section or two 8-bar ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from common.abc.music import Barline, EndingStart, MeterChange, Music, Note, read_music


@dataclass
class Bar:
    number: int
    duration: Fraction
    expected: Fraction | None
    start: str = ""  # barline(s) before it ("" at the start of the tune)
    end: str = ""  # barline(s) after it ("" at the end of the tune)
    ending: str | None = None  # the numbered ending it belongs to
    #: Its notes and rests in order (the musicality features read them; the check needs only
    #: the duration).
    notes: list[Note] = field(default_factory=list)


@dataclass
class RhythmResult:
    """Per tune: ``ok`` when no bar is wrong; `reasons` name each wrong bar."""

    checked: bool
    bars: int
    wrong_bars: int
    reasons: list[str] = field(default_factory=list)
    two_part: bool = False
    parts: list[int] = field(default_factory=list)
    missing_meter: bool = False

    @property
    def ok(self) -> bool:
        """No wrong bar; a tune without an ``M:`` field is not ok (``M:none`` is)."""
        return self.wrong_bars == 0 and not self.missing_meter

    @property
    def regular_bars(self) -> int:
        return self.bars - self.wrong_bars


def section_boundary(kind: str) -> bool:
    return ":" in kind or "||" in kind or "]" in kind or "[" in kind


def split_bars(music: Music) -> list[Bar]:
    """The tune's bars, in written order, each with its duration and the barlines around it."""
    bars: list[Bar] = []
    meter = music.meter
    current = Bar(number=1, duration=Fraction(0), expected=meter)
    has_notes = False
    ending: str | None = None
    for event in music.events:
        if isinstance(event, Note):
            if not has_notes:
                current.expected = meter
                current.ending = ending
            has_notes = True
            current.duration += event.duration
            current.notes.append(event)
        elif isinstance(event, MeterChange):
            meter = event.meter
            if not has_notes:
                current.expected = meter
        elif isinstance(event, EndingStart):
            ending = event.number
            if not has_notes:
                current.ending = ending
        elif isinstance(event, Barline):
            if section_boundary(event.kind) and not event.ending:
                ending = None
            if has_notes:
                current.end = event.kind
                bars.append(current)
                current = Bar(len(bars) + 1, Fraction(0), meter, start=event.kind)
                has_notes = False
            else:
                current.start = f"{current.start} {event.kind}".strip()
                if bars:
                    bars[-1].end = f"{bars[-1].end} {event.kind}"
            if event.ending:
                ending = event.ending
                current.ending = ending
    if has_notes:
        bars.append(current)
    return bars


def _units(value: Fraction, unit: Fraction) -> str:
    return str(value / unit)


def _may_be_pickup(bars: list[Bar], i: int) -> bool:
    """The first bar of the tune, of a section, or of a numbered ending."""
    bar = bars[i]
    starts_ending = bar.ending is not None and (i == 0 or bars[i - 1].ending != bar.ending)
    return i == 0 or section_boundary(bar.start) or starts_ending


def check_bars(bars: list[Bar], unit: Fraction, meter_text: str = "") -> tuple[int, list[str]]:
    """(number of wrong bars, a reason per wrong bar) under the module's rule."""
    pickups = {
        bar.duration
        for i, bar in enumerate(bars)
        if bar.expected is not None and bar.duration < bar.expected and _may_be_pickup(bars, i)
    }
    wrong = 0
    reasons: list[str] = []
    for i, bar in enumerate(bars):
        expected = bar.expected
        if expected is None or bar.duration == expected:
            continue
        if bar.duration < expected:
            if _may_be_pickup(bars, i):
                continue
            last_of_ending = bar.ending is not None and (
                i + 1 == len(bars) or bars[i + 1].ending != bar.ending
            )
            closes = i + 1 == len(bars) or section_boundary(bar.end) or last_of_ending
            if closes and (expected - bar.duration) in pickups:
                continue  # completes a pickup
        wrong += 1
        reasons.append(
            f"bar {bar.number}: {_units(bar.duration, unit)} units of L:{unit}, "
            f"the meter {meter_text or expected} needs {_units(expected, unit)}"
        )
    return wrong, reasons


def sections(bars: list[Bar]) -> list[list[Bar]]:
    """The tune's bars grouped into sections, in written order.

    A section runs to the next section boundary, but a first ending's repeat sign does not end
    it: the section ends after its last ending.
    """
    out: list[list[Bar]] = []
    current: list[Bar] = []
    for i, bar in enumerate(bars):
        current.append(bar)
        nxt = bars[i + 1] if i + 1 < len(bars) else None
        continues = nxt is not None and nxt.ending is not None and nxt.ending != bar.ending
        if nxt is None or (section_boundary(bar.end) and not continues):
            out.append(current)
            current = []
    return out


def parts(bars: list[Bar]) -> list[tuple[int, bool]]:
    """The tune's `sections` as (bars played once through, repeated?), pickups merged.

    A section's length is its duration in whole bars (the first ending counted, later ones
    not), rounded, so a pickup and the closing bar it completes count as one bar; sections under
    half a bar (a lone pickup before ``|:``) are dropped.
    """
    if any(bar.expected is None for bar in bars):
        return []
    out: list[tuple[int, bool]] = []
    for section in sections(bars):
        total = sum(
            (
                bar.duration / bar.expected
                for bar in section
                if bar.expected is not None and (bar.ending is None or bar.ending.startswith("1"))
            ),
            Fraction(0),
        )
        repeated = any(b.end.lstrip().startswith(":") or b.ending is not None for b in section)
        length = int(total + Fraction(1, 2))
        if length >= 1:
            out.append((length, repeated))
    return out


def is_two_part(sections: list[tuple[int, bool]]) -> bool:
    """Two parts, each 8 bars (its repeat written as a sign or not) or 16 bars written out.

    The figure of a dance tune's AABB form as a musician reads the page; four unrepeated 8-bar
    sections are not counted (AABB written out and ABCD look alike on paper).
    """
    return len(sections) == 2 and all(
        length == 8 or (length == 16 and not rep) for length, rep in sections
    )


def check_music(music: Music) -> RhythmResult:
    bars = split_bars(music)
    if not bars or all(bar.expected is None for bar in bars):
        if not music.meter_text:
            return RhythmResult(False, len(bars), 0, ["no M: field to check the bars against"],
                                missing_meter=True)  # fmt: skip
        return RhythmResult(checked=False, bars=len(bars), wrong_bars=0)
    wrong, reasons = check_bars(bars, music.unit, music.meter_text)
    sections = parts(bars)
    return RhythmResult(
        checked=True,
        bars=len(bars),
        wrong_bars=wrong,
        reasons=reasons,
        two_part=is_two_part(sections),
        parts=[length for length, _ in sections],
    )


def check_rhythm(tune: str) -> RhythmResult:
    """Check one tune's bars against its meter (see the module docstring for the rule)."""
    return check_music(read_music(tune))
