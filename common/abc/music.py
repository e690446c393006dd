"""ABC music as events: notes with exact durations and pitches, barlines, meter changes.

Pure Python, no tools. This is the reading of a tune body that the rhythm check
(`common.abc.rhythm`) and the melody comparison (`common.quality.similarity`) share, so both see
the same
notes. It follows the ABC 2.1 standard for what affects time and pitch:

* durations are exact fractions of a whole note: the unit length ``L:`` (default 1/16 when the
  meter is below 3/4, else 1/8) times the note's length suffix (``A2``, ``A/2``, ``A/``, ``A//``,
  ``A3/2``); broken rhythm (``>``, ``<``, ``>>`` ...) moves time between the two notes it joins;
  a tuplet ``(p:q:r`` plays the next r notes in q/p of their time (q by the standard's defaults
  when omitted); a chord ``[ceg]2`` lasts as long as its first note times the chord's suffix;
  grace notes ``{..}`` take no time; ``Z4`` is four whole bars of rest;
* pitches are MIDI numbers from the key signature (``K:`` with mode and explicit accidentals),
  accidentals that last to the end of the bar for that letter in every octave (as abc2midi plays
  them: ``K:D =c C`` is two naturals), and octave marks;
* decorations (``!trill!``, ``+fermata+``, ``~``, ``.``, H-W and h-w shortcuts), guitar chords and
  annotations (``"..."``), slurs, ties, spacers and beam breaks take no time;
* inline fields ``[M:..]``, ``[L:..]``, ``[K:..]`` and field lines inside the body change the
  meter, unit length or key from there on; ``w:`` lyrics and ``%`` comments are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

from common.abc.notation import FIELD_LINE

#: A line that is a field (``M:6/8``), inside the header or the body.
#: A barline: ``|``, ``||``, ``|]``, ``[|``, ``|:``, ``:|``, ``::``, ``:|:``, ``:||:`` ...
_BARLINE = re.compile(r":*\[?\|+\]?:*|:{2,}")
_ENDING = re.compile(r"[0-9]+(?:[,-][0-9]+)*")
_LENGTH = re.compile(r"([0-9]*)(/*)([0-9]*)")
_TUPLET = re.compile(r"\(([2-9])(?::([0-9]*))?(?::([0-9]*))?")
NOTE = re.compile(r"(\^\^|\^|__|_|=)?([A-Ga-g])([,']*)")
#: Single-character decorations of ABC 2.1 (H-W, h-w are the user-definable shortcuts).
_DECORATION_CHARS = frozenset("~.HIJKLMNOPQRSTUVWhijklmnopqrstuvw")
_IGNORED_CHARS = frozenset(" \t\\-)`$*y&")

SEMITONES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
MAJOR_SHARPS = {
    "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F#": 6, "C#": 7,
    "F": -1, "Bb": -2, "Eb": -3, "Ab": -4, "Db": -5, "Gb": -6, "Cb": -7,
}  # fmt: skip
#: Sharps a mode has relative to the major key on the same tonic.
MODE_SHIFT = {
    "": 0, "maj": 0, "ion": 0, "mix": -1, "dor": -2, "m": -3, "min": -3, "aeo": -3,
    "phr": -4, "loc": -5, "lyd": 1,
}  # fmt: skip
_SHARP_ORDER = "FCGDAEB"
#: Semitones of each accidental sign.
ALTERATION = {"^": 1, "^^": 2, "_": -1, "__": -2, "=": 0}
#: An explicit accidental of a ``K:`` value (``K:D ^c``), not the ``=b`` of ``clef=bass``.
KEY_ACCIDENTAL = re.compile(r"(?<![\w=^_])(\^\^|\^|__|_|=)([A-Ga-g])(?!\w)")


def parse_meter(text: str) -> Fraction | None:
    """Bar length in whole notes: ``6/8`` → 3/4, ``C`` → 1, ``C|`` → 1; None for ``none``/blank.

    Additive numerators (``2+3/8``) are summed; anything unreadable is None (no bar check).
    """
    value = text.split("%", 1)[0].strip()
    if value in ("C", "c", "C|", "c|"):
        return Fraction(1)  # common time 4/4 and cut time 2/2 both last a whole note
    match = re.fullmatch(r"\(?([0-9+ ]+)\)?\s*/\s*([0-9]+)", value)
    if not match:
        return None
    try:
        numerator = sum(int(p) for p in match.group(1).split("+") if p.strip())
        denominator = int(match.group(2))
    except ValueError:
        return None
    if numerator <= 0 or denominator <= 0:
        return None
    return Fraction(numerator, denominator)


def parse_unit(text: str) -> Fraction | None:
    match = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*(?:%.*)?", text)
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        return None
    return Fraction(int(match.group(1)), int(match.group(2)))


def default_unit(meter: Fraction | None) -> Fraction:
    """The standard's default ``L:``: 1/16 for meters below 3/4, else 1/8 (also without meter)."""
    return Fraction(1, 16) if meter is not None and meter < Fraction(3, 4) else Fraction(1, 8)


def mode_key(word: str) -> str | None:
    """The `MODE_SHIFT` key of the word after a tonic (``m``, ``Dor``, ``Minor``); "" (major)
    for a word that is no mode (``K:D clef=bass`` is D major), None for ``exp``, whose
    accidentals are all written out rather than implied by a mode."""
    lowered = word.lower()
    if lowered.startswith("exp"):
        return None
    key = "m" if lowered == "m" else lowered[:3]
    return key if key in MODE_SHIFT else ""


def key_signature(text: str) -> dict[str, int]:
    """Alteration in semitones per letter (upper case) for a ``K:`` value; {} when unreadable.

    ``K:Ador``, ``K:E Minor``, ``K:F#m``, ``K:D exp ^f`` and explicit accidentals after the key
    (``K:D ^c``) are understood; ``K:Hp``/``K:none`` have no signature.
    """
    value = text.split("%", 1)[0].strip()
    match = re.match(r"([A-G])([#b]?)\s*([A-Za-z]*)", value)
    signature: dict[str, int] = {}
    if match and not value.lower().startswith(("none", "hp")):
        tonic = match.group(1) + match.group(2)
        mode = mode_key(match.group(3))
        sharps = MAJOR_SHARPS.get(tonic)
        if sharps is not None and mode is not None:
            sharps += MODE_SHIFT[mode]
            letters = _SHARP_ORDER[:sharps] if sharps > 0 else _SHARP_ORDER[::-1][:-sharps]
            signature = {letter: 1 if sharps > 0 else -1 for letter in letters}
    for acc, letter in KEY_ACCIDENTAL.findall(value[1:] if match else value):
        signature[letter.upper()] = ALTERATION[acc]
    return signature


@dataclass
class Note:
    """A note, rest or chord: `pitches` empty for a rest, the chord's notes top to bottom."""

    duration: Fraction
    pitches: tuple[int, ...] = ()
    tied_from_previous: bool = False


@dataclass(frozen=True)
class Barline:
    kind: str
    ending: str | None = None  # "1", "2", "1,3" when a numbered ending starts here


@dataclass(frozen=True)
class MeterChange:
    meter: Fraction | None
    text: str


@dataclass(frozen=True)
class EndingStart:
    number: str


Event = Note | Barline | MeterChange | EndingStart


@dataclass
class Music:
    """A tune body as events, with the header's meter and what could not be read."""

    meter: Fraction | None
    meter_text: str
    unit: Fraction
    events: list[Event] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def split_header(tune: str) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """(header fields up to ``K:``, numbered body lines after it)."""
    lines = tune.replace("\r\n", "\n").split("\n")
    fields: dict[str, str] = {}
    for i, line in enumerate(lines):
        match = FIELD_LINE.match(line.strip())
        if match:
            fields.setdefault(match.group(1), match.group(2).strip())
            if match.group(1) == "K":
                return fields, list(enumerate(lines[i + 1 :], start=i + 2))
        elif line.strip() and not line.lstrip().startswith("%") and "K" not in fields and fields:
            return fields, list(enumerate(lines[i:], start=i + 1))
    return fields, []


class _Reader:
    """One pass over a body: the state the standard says carries from note to note."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.meter_text = fields.get("M", "")
        self.meter = parse_meter(self.meter_text) if self.meter_text else None
        self.unit = parse_unit(fields.get("L", "")) or default_unit(self.meter)
        self.key = key_signature(fields.get("K", ""))
        #: Per letter, not per octave: abc2midi (4.84) plays ``K:D =c C`` as two naturals.
        self.bar_accidentals: dict[str, int] = {}
        self.tuplet_left = 0
        self.tuplet_ratio = Fraction(1)
        self.broken_next = Fraction(1)
        self.tie_pending = False
        self.music = Music(meter=self.meter, meter_text=self.meter_text, unit=self.unit)

    # -- fields --------------------------------------------------------------------------------
    def set_field(self, name: str, value: str) -> None:
        if name == "M":
            self.meter_text = value.strip()
            self.meter = parse_meter(value)
            self.music.events.append(MeterChange(self.meter, self.meter_text))
        elif name == "L":
            self.unit = parse_unit(value) or self.unit
        elif name == "K":
            self.key = key_signature(value)

    # -- notes ---------------------------------------------------------------------------------
    def pitch(self, acc: str | None, letter: str, octave: str) -> int:
        upper = letter.upper()
        base = 60 + SEMITONES[upper] + (12 if letter.islower() else 0)
        base += 12 * octave.count("'") - 12 * octave.count(",")
        if acc:
            alter = ALTERATION[acc]
            self.bar_accidentals[upper] = alter
        else:
            alter = self.bar_accidentals.get(upper, self.key.get(upper, 0))
        return base + alter

    def length(self, text: str, pos: int) -> tuple[Fraction, int]:
        match = _LENGTH.match(text, pos)
        assert match is not None  # the pattern matches the empty string
        num, slashes, den = match.groups()
        value = Fraction(int(num)) if num else Fraction(1)
        if slashes:
            divisor = int(den) if den and int(den) else 2  # "A/0" is read as "A/"
            value /= divisor * 2 ** min(len(slashes) - 1, 16)
        return value, match.end()

    def add_note(self, note: Note) -> None:
        note.duration *= self.broken_next
        self.broken_next = Fraction(1)
        if self.tuplet_left > 0:
            note.duration *= self.tuplet_ratio
            self.tuplet_left -= 1
        note.tied_from_previous = self.tie_pending
        self.tie_pending = False
        self.music.events.append(note)

    def last_note(self) -> Note | None:
        for event in reversed(self.music.events):
            if isinstance(event, Note):
                return event
            if isinstance(event, Barline):
                return None
        return None

    def tuplet(self, match: re.Match[str]) -> None:
        p = int(match.group(1))
        compound = (
            self.meter is not None and self.meter.numerator % 3 == 0 and (self.meter.numerator > 3)
        )
        default_q = {2: 3, 3: 2, 4: 3, 6: 2, 8: 3}.get(p, 3 if compound else 2)  # n of the standard
        q = int(match.group(2)) if match.group(2) else default_q
        r = int(match.group(3)) if match.group(3) else p
        self.tuplet_ratio = Fraction(q, p)
        self.tuplet_left = r

    # -- the line reader -----------------------------------------------------------------------
    def read_line(self, text: str, lineno: int) -> None:
        i = 0
        n = len(text)
        while i < n:
            c = text[i]
            if c == "%":
                return
            if c in _IGNORED_CHARS:
                if c == "-":
                    self.tie_pending = True
                i += 1
            elif c == '"':
                end = text.find('"', i + 1)
                i = n if end < 0 else end + 1
            elif c in "!+" and text.find(c, i + 1) > i:
                i = text.find(c, i + 1) + 1
            elif c == "{":
                end = text.find("}", i + 1)
                i = n if end < 0 else end + 1
            elif c == "[" and re.match(r"\[[A-Za-z]:", text[i:]):
                end = text.find("]", i)
                end = n if end < 0 else end
                self.set_field(text[i + 1], text[i + 3 : end])
                i = end + 1
            elif c == "[" and i + 1 < n and text[i + 1].isdigit():
                match = _ENDING.match(text, i + 1)
                assert match is not None
                self.music.events.append(EndingStart(match.group(0)))
                i = match.end()
            elif c in "|:" or (c == "[" and text.startswith("[|", i)):
                match = _BARLINE.match(text, i)
                if match is None or not match.group(0):
                    self.music.unreadable.append(f"line {lineno}: {c!r}")
                    i += 1
                    continue
                kind = match.group(0)
                i = match.end()
                ending = _ENDING.match(text, i)
                self.music.events.append(Barline(kind, ending.group(0) if ending else None))
                if ending:
                    i = ending.end()
                self.bar_accidentals = {}
            elif c == "(":
                match = _TUPLET.match(text, i)
                if match:
                    self.tuplet(match)
                    i = match.end()
                else:
                    i += 1  # a slur
            elif c in "<>":
                j = i
                while j < n and text[j] == c:
                    j += 1
                dots = j - i
                shorter = Fraction(1, 2**dots)
                prev = self.last_note()
                first, second = (2 - shorter, shorter) if c == ">" else (shorter, 2 - shorter)
                if prev is not None:
                    prev.duration *= first
                self.broken_next = second
                i = j
            elif c == "[":
                i = self.read_chord(text, i, lineno)
            elif c in "zx":
                value, i = self.length(text, i + 1)
                self.add_note(Note(value * self.unit))
            elif c in "ZX":
                count, i = self.length(text, i + 1)
                bar = self.meter if self.meter is not None else Fraction(1)
                for _ in range(max(1, int(count))):
                    self.music.events.append(Note(bar, (), False))
                    self.music.events.append(Barline("|"))
                self.music.events.pop()  # the tune's own barline follows
            elif c in "^_=" or c.upper() in SEMITONES:
                match = NOTE.match(text, i)
                if not match:
                    self.music.unreadable.append(f"line {lineno}: {text[i : i + 8]!r}")
                    i += 1
                    continue
                pitch = self.pitch(match.group(1), match.group(2), match.group(3))
                value, i = self.length(text, match.end())
                self.add_note(Note(value * self.unit, (pitch,)))
            elif c in _DECORATION_CHARS:
                i += 1
            else:
                self.music.unreadable.append(f"line {lineno}: {c!r}")
                i += 1

    def read_chord(self, text: str, start: int, lineno: int) -> int:
        """Read ``[ceg]2`` from `start`; the chord lasts as its first note times its suffix."""
        end = text.find("]", start)
        if end < 0:
            self.music.unreadable.append(f"line {lineno}: unclosed chord")
            return len(text)
        pitches: list[int] = []
        first: Fraction | None = None
        for match in re.finditer(
            r"(\^\^|\^|__|_|=)?([A-Ga-g])([,']*)([0-9]*/*[0-9]*)", text[start + 1 : end]
        ):
            pitches.append(self.pitch(match.group(1), match.group(2), match.group(3)))
            if first is None:
                first, _ = self.length(match.group(4), 0)
        suffix, after = self.length(text, end + 1)
        if pitches:
            self.add_note(
                Note(
                    (first or Fraction(1)) * suffix * self.unit,
                    tuple(sorted(pitches, reverse=True)),
                )
            )
        return after


def read_music(tune: str) -> Music:
    """The tune's body as events (see the module docstring for what is understood)."""
    fields, body = split_header(tune)
    reader = _Reader(fields)
    for lineno, line in body:
        stripped = line.strip()
        if not stripped or stripped.startswith("%"):
            continue
        match = FIELD_LINE.match(stripped)
        if match and not stripped.startswith(("|", ":")):
            if match.group(1) not in "wW":
                reader.set_field(match.group(1), match.group(2))
            continue
        reader.read_line(line, lineno)
    return reader.music


def melody(music: Music) -> Iterator[int]:
    """The tune's melody as MIDI pitches: the top note of each chord, a tied note once."""
    for event in music.events:
        if isinstance(event, Note) and event.pitches and not event.tied_from_previous:
            yield event.pitches[0]
