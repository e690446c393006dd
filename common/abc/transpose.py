"""Transposing an ABC tune by semitones, as a musician would write it in the new key.

This is the training corpus's key augmentation (`common.lstm.augment`): a tune in D and the same
tune in G are the same music to a listener but different text to a char model, so a model that
has seen both may learn the tune's shape rather than its spelling. For that the copy has to read
as if it were written in its key: the ``K:`` tonic moves (mode and the rest of the field kept,
spelled with the fewest accidentals), each note moves by the same number of letters as the tonic
(so a D-major scale stays a scale of letters in G major), and an accidental is written only where
the new key and the bar's earlier accidentals do not already give the pitch. Guitar chords move
with the notes. Durations, barlines, decorations, annotations, lyrics and comments are untouched.

Pitches are read as abc2midi plays them (and `common.abc.music` reads them): the key signature
with its mode, and an accidental that lasts to the end of the bar for every note of that letter in
any octave (abc2midi 4.84 plays ``K:D`` ``=c C`` as two naturals). ABC 2.1 players that keep it to
one octave exist, so in the copy, once a letter has a written accidental in a bar, every later
note of that letter in the bar gets one too: the copy sounds the same under either reading.

A tune that cannot be moved faithfully — no key, ``K:none`` or bagpipe keys, a key with explicit
accidentals (``K:D exp ^f``), a note that would need a triple sharp — gives None, never a copy that
sounds different from the original.
"""

from __future__ import annotations

import re

from common.abc.music import (
    ALTERATION,
    KEY_ACCIDENTAL,
    MAJOR_SHARPS,
    MODE_SHIFT,
    NOTE,
    SEMITONES,
    key_signature,
    mode_key,
)
from common.abc.notation import FIELD_LINE

_INLINE_FIELD = re.compile(r"\[([A-Za-z]):([^\]\n]*)\]")
_KEY = re.compile(r"\s*([A-G])([#b]?)(\s*)([A-Za-z]*)(.*)$", re.DOTALL)
_GUITAR_CHORD = re.compile(r"([A-G])([#b]?)([^/\"]*)(?:/([A-G])([#b]?))?$")
_LETTERS = "CDEFGAB"
_ACCIDENTAL_TEXT = {-2: "__", -1: "_", 0: "=", 1: "^", 2: "^^"}
_SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")


class _CannotMoveError(Exception):
    """The tune cannot be moved faithfully; `transpose_tune` answers None."""


def _pitch_class(name: str) -> int:
    return (SEMITONES[name[0]] + {"#": 1, "b": -1}.get(name[1:], 0)) % 12


def _read_key(text: str) -> tuple[re.Match[str], str, str] | None:
    """(match, tonic, mode key) of a ``K:`` value; None without a tonic and mode we can move."""
    match = _KEY.match(text)
    if not match or (tonic := match.group(1) + match.group(2)) not in MAJOR_SHARPS:
        return None
    mode = mode_key(match.group(4))
    return None if mode is None else (match, tonic, mode)


def key_sharps(value: str) -> int | None:
    """Sharps (negative: flats) of a ``K:`` value's tonic and mode; None without a readable one."""
    key = _read_key(value.split("%", 1)[0])
    return None if key is None else MAJOR_SHARPS[key[1]] + MODE_SHIFT[key[2]]


#: One name per mode for `MODE_SHIFT`'s synonyms of major and minor; other modes keep theirs.
_MODE = {"": "maj", "maj": "maj", "ion": "maj", "m": "min", "min": "min", "aeo": "min"}


def key_name(value: str) -> str | None:
    """The key of a ``K:`` value as musicians name it (``K:A Dorian`` -> ``Ador``, ``K:E minor``
    -> ``Em``, ``K:G`` -> ``G``); None without a tonic and mode (``K:none``, ``K:Hp``)."""
    key = _read_key(value.split("%", 1)[0])
    if key is None:
        return None
    _, tonic, mode = key
    mode = _MODE.get(mode, mode)
    return tonic + {"maj": "", "min": "m"}.get(mode, mode)


def key_identity(value: str) -> tuple[int, str] | None:
    """(tonic pitch class, mode) of a ``K:`` value: ``K:Ador`` and ``K:A Dorian`` are one key, as
    are ``K:F#`` and ``K:Gb``; None without a tonic and mode we can move."""
    key = _read_key(value.split("%", 1)[0])
    if key is None:
        return None
    _, tonic, mode = key
    return _pitch_class(tonic), _MODE.get(mode, mode)


def transposed_key(value: str, semitones: int) -> str | None:
    """The ``K:`` value `semitones` up (down if negative), spelled with the fewest accidentals;
    None when the value has no tonic and mode we can move, or explicit accidentals."""
    key = _read_key(value)
    if key is None or KEY_ACCIDENTAL.search(key[0].group(5)):
        return None
    match, tonic, mode = key
    target = (_pitch_class(tonic) + semitones) % 12
    candidates = [
        (abs(sharps + MODE_SHIFT[mode]), sharps + MODE_SHIFT[mode], name)
        for name, sharps in MAJOR_SHARPS.items()
        if _pitch_class(name) == target and abs(sharps + MODE_SHIFT[mode]) <= 7
    ]
    if not candidates:
        return None
    new_tonic = min(candidates)[2]  # fewest accidentals; of F# and Gb, the flats
    return value[: match.start(1)] + new_tonic + value[match.end(2) :]


class _Mover:
    """One pass over a tune: the source key and bar accidentals (to read each pitch), the target
    key and the accidentals written so far in the bar (to spell it)."""

    def __init__(self, semitones: int) -> None:
        self.semitones = semitones
        self.source_key: dict[str, int] = {}
        self.target_key: dict[str, int] = {}
        self.letter_steps = 0
        self.source_bar: dict[str, int] = {}
        self.target_bar: set[str] = set()
        self.prefer_flats = False

    def set_key(self, value: str) -> str:
        moved = transposed_key(value, self.semitones)
        if moved is None:
            raise _CannotMoveError(f"key {value!r}")
        self.source_key = key_signature(value)
        self.target_key = key_signature(moved)
        old = _KEY.match(value)
        new = _KEY.match(moved)
        assert old is not None and new is not None
        steps = (_LETTERS.index(new.group(1)) - _LETTERS.index(old.group(1))) % 7
        if self.semitones < 0 and steps:
            steps -= 7
        self.letter_steps = steps
        self.prefer_flats = (key_sharps(moved) or 0) < 0
        return moved

    def new_bar(self) -> None:
        self.source_bar.clear()
        self.target_bar.clear()

    def note(self, accidental: str | None, letter: str, octave_marks: str) -> str:
        upper = letter.upper()
        octave = (5 if letter.islower() else 4) + octave_marks.count("'") - octave_marks.count(",")
        if accidental:
            alteration = ALTERATION[accidental]
            self.source_bar[upper] = alteration
        else:
            alteration = self.source_bar.get(upper, self.source_key.get(upper, 0))
        pitch = 12 * (octave + 1) + SEMITONES[upper] + alteration + self.semitones
        index = _LETTERS.index(upper) + self.letter_steps
        new_octave, new_index = octave + index // 7, index % 7
        new_letter = _LETTERS[new_index]
        new_alteration = pitch - 12 * (new_octave + 1) - SEMITONES[new_letter]
        if new_alteration not in _ACCIDENTAL_TEXT:
            raise _CannotMoveError(f"note {accidental or ''}{letter}{octave_marks}")
        written = ""
        if new_letter in self.target_bar or new_alteration != self.target_key.get(new_letter, 0):
            written = _ACCIDENTAL_TEXT[new_alteration]
            self.target_bar.add(new_letter)
        if new_octave >= 5:
            return written + new_letter.lower() + "'" * (new_octave - 5)
        return written + new_letter + "," * (4 - new_octave)

    def chord_name(self, text: str) -> str:
        """A guitar chord moved like the notes (``"Am7/E"``); annotations (``"^text"``) and
        what is not a chord name stay as they are."""
        match = _GUITAR_CHORD.match(text)
        if not match:
            return text
        names = _FLAT_NAMES if self.prefer_flats else _SHARP_NAMES
        root = names[(_pitch_class(match.group(1) + match.group(2)) + self.semitones) % 12]
        moved = root + match.group(3)
        if match.group(4):
            bass = _pitch_class(match.group(4) + match.group(5))
            moved += "/" + names[(bass + self.semitones) % 12]
        return moved

    def body_line(self, text: str) -> str:
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            if c == "%":
                out.append(text[i:])
                break
            if c == '"':
                end = text.find('"', i + 1)
                end = n if end < 0 else end
                out.append('"' + self.chord_name(text[i + 1 : end]) + text[end : end + 1])
                i = end + 1
            elif c in "!+" and text.find(c, i + 1) > i:
                end = text.find(c, i + 1) + 1
                out.append(text[i:end])
                i = end
            elif c == "[" and (field := _INLINE_FIELD.match(text, i)):
                value = self.set_key(field.group(2)) if field.group(1) == "K" else field.group(2)
                out.append(f"[{field.group(1)}:{value}]")
                i = field.end()
            elif note := NOTE.match(text, i):
                out.append(self.note(note.group(1), note.group(2), note.group(3)))
                i = note.end()
            else:
                if c == "|":
                    self.new_bar()
                out.append(c)
                i += 1
        return "".join(out)


def transpose_tune(tune: str, semitones: int) -> str | None:
    """`tune` moved `semitones` up (down if negative), or None if it cannot be moved faithfully.

    Header lines before ``K:`` pass unchanged; ``K:`` (in the header, in the body, inline) moves;
    body lines move note by note; ``w:``/``W:`` lyrics and other fields pass. In the body a line
    that starts like ``e:|`` is music, not a field: no body field is named by a note letter.
    """
    if semitones == 0:
        return tune
    mover = _Mover(semitones)
    in_body = False
    out: list[str] = []
    try:
        for line in tune.split("\n"):
            indent = line[: len(line) - len(line.lstrip())]
            field = FIELD_LINE.match(line.lstrip())
            if field and not (in_body and field.group(1) in _LETTERS + _LETTERS.lower()):
                if field.group(1) == "K":
                    line = f"{indent}K:{mover.set_key(field.group(2))}"
                    in_body = True
                out.append(line)
            elif in_body:
                out.append(mover.body_line(line))
            else:
                out.append(line)
    except _CannotMoveError:
        return None
    return "\n".join(out) if in_body else None
