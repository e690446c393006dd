r"""The directives a tune may hold: an allow-list, with the arguments each one may take.

ABC has three spellings of a directive, and the tools honour all three: a ``%%name args`` line,
an ``I:name args`` field line (abcm2ps treats it exactly as ``%%``) and an inline ``[I:name args]``
field. Many directives make a tool read a file (``format``, ``abc-include``, ``EPS``,
``%%MIDI ptstress``), run PostScript or insert raw SVG (``beginps``, ``beginsvg``, ``ps``,
``svg``), or write their value unescaped into the SVG (``bgcolor``, every ``*font``,
``musicfont url(...)``); and ``%%abcm2ps`` / ``%%ss-pref`` change the prefix abcm2ps recognises,
so a later ``%#format`` escapes any rule written for ``%%``. A deny-list of spellings always
misses one, so the rule is an **allow-list**, applied to the text as the tools read it:

* every ``%%`` line, every ``I:`` line and every inline ``[I:...]`` must name a directive
  below, with arguments that match its pattern in full; anything else is refused (render,
  check, primers, what the sampler writes) or stripped and counted (corpus import);
* names are compared case-insensitively (so ``%%FORMAT`` is not a way round), leading
  whitespace is ignored, and a ``+:`` line continuing a directive is refused with it;
* no kept directive names a file, takes free text, or reaches the SVG as anything but a number;
* **escapes that spell ASCII are refused everywhere** (titles, music, fields, directives).
  abcm2ps's front end (``txt_add_cnv`` in its ``front.c``) decodes ``\ooo`` (octal, first digit
  0-3) and ``\uXXXX`` in every music line and field value *after* it has decided what kind of
  line it is, and hands the decoded text to its parser: ``\111:bgcolor red`` becomes an
  ``I:`` line, ``[\111:...]`` or ``\133I:...]`` an inline field, ``\045\045`` a ``%%``. Its
  other escapes (``\'e``, ``\ae``, ``\o``...) and latin-N bytes decode to non-ASCII letters
  only, and every character that starts a field, a directive or a bracket is ASCII; so with
  ASCII-spelling escapes refused, the decoded text has the same fields and directives as the
  text the allow-list read. (``\001``-``\005`` stay: abcm2ps turns them into the sharp, flat
  and natural signs.) abc2midi decodes none of these (checked: ``\045\045MIDI program 50``
  and ``[\111:MIDI ...]`` change nothing in its MIDI);
* **a line ending in ``\`` is also read joined to the next one**: in ABC 2.0 files
  (``%abc-2.0``) abcm2ps joins them before parsing, so ``[I\`` + ``:bgcolor red]`` is an
  inline field; the joined text is checked too.

What is kept, and why:

* ``%%MIDI`` (abc2midi: how a tune sounds; the project's audio is made from these), with
  only the sub-commands of `MIDI_COMMANDS`, each number in the range abc2midi's guide gives it
  (channel 1-16; program, volume, velocity, pitch, controller 0-127; lengths in ``gchord`` /
  ``drum`` patterns 1-99; ``gracedivider`` 2 or more; ``grace a/b`` with a < b). abc2midi does
  **not** check all of these itself: ``program 5000 1`` writes past its channel table
  (SIGSEGV) and a zero length in a ``drum`` pattern crashes it, so the allow-list checks every
  number. Not ``ptstress`` (reads a file), nor the rest of abc2midi's list (none is used by the
  corpora we ship).
* layout (abcm2ps), numbers only: ``scale``, ``staffsep``, ``sysstaffsep``, ``indent`` (with an
  optional pt/cm/in/mm unit), ``slurgraces``, ``continueall`` (booleans), ``measurenb`` /
  ``barnumbers`` (a number). ``scale``, ``staffsep``, ``slurgraces`` and ``indent`` are the only
  ``%%`` directives in music21's ABC collections (O'Neill's, Ryan's);
* ``score`` / ``staves`` with voice ids, brackets and bar marks only: multi-voice tunes need it;
* ``linebreak`` with ``$``, ``!``, ``<EOL>`` or ``<none>``: ABC 2.1's standard line-break field.

What music21's collections hold beyond this, and import strips and counts (see
tests/common/abc/test_abc_directives.py): Aird's ``I: :: ::`` / ``I:(1)`` lines (the transcriber's
repeat notes, not directives) and its ``%% D ^F G A`` scale lines (comments that abcm2ps would
read as a directive named ``D``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

_NUM = r"-?\d{1,6}"
_UNSIGNED = r"\d{1,6}"
_SIZE = r"\d{1,4}(?:\.\d{1,3})?(?:pt|cm|in|mm)?"
_BOOL = r"(?:0|1|true|false|yes|no)"
#: A gchord / drum pattern: its letters, each with an optional length of 1-99 (abc2midi crashes
#: on a zero length in a drum pattern, and refuses one in a gchord pattern).
_GCHORD = r"(?:[fbczghijGHIJ](?:[1-9][0-9]?)?){1,32}"
_DRUM = r"(?:[dz](?:[1-9][0-9]?)?){1,32}"


@dataclass(frozen=True)
class MidiArgs:
    """What a ``%%MIDI`` sub-command may take: a pattern for its whole argument text (spaces
    collapsed), then the range of each number in it, in order (the last range repeats)."""

    pattern: str
    ranges: tuple[tuple[int, int, str], ...] = ()


_BYTE = (0, 127, "a MIDI value (0-127)")
_CHANNEL = (1, 16, "a MIDI channel (1-16)")
_SEMITONES = (-36, 36, "a transposition (-36 to 36 semitones)")

#: MIDI sub-command → its arguments. Ranges are abc2midi's (its guide, abcguide.txt, and
#: genmidi.c): programs, volumes, velocities, pitches and controller data are 0-127, channels
#: 1-16; ``beat``'s last number divides the bar (1-64), ``gracedivider`` is 2 or more,
#: ``ratio`` is two positive numbers; transpositions stay within three octaves.
MIDI_COMMANDS: dict[str, MidiArgs] = {
    # [channel] program; channel and program are told apart by count (see _midi_problem).
    "program": MidiArgs(r"(?:\d{1,6} )?\d{1,6}", (_BYTE,)),
    "chordprog": MidiArgs(_UNSIGNED, (_BYTE,)),
    "bassprog": MidiArgs(_UNSIGNED, (_BYTE,)),
    "chordvol": MidiArgs(_UNSIGNED, (_BYTE,)),
    "bassvol": MidiArgs(_UNSIGNED, (_BYTE,)),
    "channel": MidiArgs(_UNSIGNED, (_CHANNEL,)),
    "transpose": MidiArgs(_NUM, (_SEMITONES,)),
    "rtranspose": MidiArgs(_NUM, (_SEMITONES,)),
    "gchord": MidiArgs(_GCHORD),
    "gchordon": MidiArgs(""),
    "gchordoff": MidiArgs(""),
    "beat": MidiArgs(
        rf"{_UNSIGNED}(?: {_UNSIGNED}){{3}}", (_BYTE, _BYTE, _BYTE, (1, 64, "a beat (1-64)"))
    ),
    "beatmod": MidiArgs(_NUM, ((-127, 127, "a velocity change (-127 to 127)"),)),
    "beatstring": MidiArgs(r"[fmp]{1,64}"),
    # pattern, then a pitch per 'd' and a velocity per 'd' (see _midi_problem)
    "drum": MidiArgs(rf"{_DRUM}(?: {_UNSIGNED}){{0,64}}", (_BYTE,)),
    "drumon": MidiArgs(""),
    "drumoff": MidiArgs(""),
    "drumbars": MidiArgs(_UNSIGNED, ((1, 64, "a number of bars (1-64)"),)),
    "drone": MidiArgs(rf"{_UNSIGNED}(?: {_UNSIGNED}){{0,4}}", (_BYTE,)),
    "droneon": MidiArgs(""),
    "droneoff": MidiArgs(""),
    "ratio": MidiArgs(rf"{_UNSIGNED} {_UNSIGNED}", ((1, 99, "a ratio term (1-99)"),)),
    "grace": MidiArgs(rf"{_UNSIGNED}/{_UNSIGNED}", ((1, 64, "a fraction term (1-64)"),)),
    "gracedivider": MidiArgs(_UNSIGNED, ((2, 64, "a divider (2-64)"),)),
    "control": MidiArgs(rf"{_UNSIGNED} {_UNSIGNED}", (_BYTE,)),
    "barlines": MidiArgs(""),
    "nobarlines": MidiArgs(""),
}

#: Directive (lower case) → pattern of its arguments; ``midi`` is checked per sub-command.
DIRECTIVES: dict[str, str] = {
    "scale": r"\d{0,2}(?:\.\d{1,4})?",
    "staffsep": _SIZE,
    "sysstaffsep": _SIZE,
    "indent": _SIZE,
    "slurgraces": _BOOL,
    "continueall": _BOOL,
    "measurenb": _NUM,
    "barnumbers": _NUM,
    "score": r"[A-Za-z0-9_ ()\[\]{}|*]{1,200}",
    "staves": r"[A-Za-z0-9_ ()\[\]{}|*]{1,200}",
    "linebreak": r"(?:<EOL>|<none>|\$|!)(?: (?:<EOL>|<none>|\$|!)){0,3}",
}

_COMPILED = {name: re.compile(pattern) for name, pattern in DIRECTIVES.items()}
_MIDI_COMPILED = {name: re.compile(args.pattern) for name, args in MIDI_COMMANDS.items()}

_PERCENT_LINE = re.compile(r"^\s*%%(.*)$")
_FIELD_LINE = re.compile(r"^\s*I\s*:(.*)$")
_CONTINUATION = re.compile(r"^\s*\+\s*:")
_INLINE = re.compile(r"\[\s*I\s*:([^\]\n]*)\]?")
#: abcm2ps's escapes that can decode to ASCII: ``\ooo`` (first digit 0-3) and ``\uXXXX``.
_ESCAPE = re.compile(r"\\(?:([0-3][0-7]{2})|u([0-9A-Fa-f]{4}))")
#: Octal escapes abcm2ps turns into the sharp, flat, natural, double sharp and double flat signs.
_ACCIDENTAL_ESCAPES = frozenset(range(1, 6))
#: A line abcm2ps joins to the next one in an ABC 2.0 file (a ``\`` last, trailing space aside).
_JOINED = re.compile(r"\\[ \t]*$")
#: One refused item: (line index, start, end, directive, text, why).
_Found = tuple[int, int, int, str, str, str]


@dataclass(frozen=True)
class Problem:
    """One directive the allow-list refuses: where, how it was written, and why."""

    line: int
    directive: str
    text: str
    why: str

    def message(self) -> str:
        shown = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return f"line {self.line}: directive {self.directive!r} ({shown!r}) {self.why}"


def _name_and_args(body: str) -> tuple[str, str]:
    words = body.split()
    if not words:
        return "", ""
    return words[0].lower(), " ".join(words[1:])


def _midi_problem(sub: str, args: str) -> str | None:
    """Why the numbers of ``%%MIDI sub args`` (already matching its pattern) are refused."""
    words = args.split()
    if sub == "drum":  # the pattern's letters are not numbers; at most a pitch and a velocity per d
        beats = words[0].count("d") if words else 0
        words = words[1:]
        if len(words) > 2 * beats:
            return f"gives {len(words)} numbers for {beats} drum beats (at most 2 per 'd')"
    numbers = [int(n) for n in re.findall(r"-?\d+", " ".join(words).replace("/", " "))]
    ranges = MIDI_COMMANDS[sub].ranges
    if sub == "program" and len(numbers) == 2:
        ranges = (_CHANNEL, _BYTE)
    if sub == "grace" and numbers[0] >= numbers[1]:
        return f"has {args!r}: a grace fraction must be less than 1 (e.g. 1/3)"
    for n, value in enumerate(numbers):
        low, high, what = ranges[min(n, len(ranges) - 1)] if ranges else (0, 0, "")
        if ranges and not low <= value <= high:
            return f"has {value} where it takes {what}"
    return None


def escape_problem(text: str) -> tuple[str, str] | None:
    """(shown, why) when the escape `text` (``\\ooo`` or ``\\uXXXX``) decodes to ASCII."""
    match = _ESCAPE.fullmatch(text)
    if match is None:
        return None
    code = int(match.group(1), 8) if match.group(1) else int(match.group(2), 16)
    if code >= 0x80 or (match.group(1) and code in _ACCIDENTAL_ESCAPES):
        return None
    return text, (
        f"is an escape abcm2ps reads as {chr(code)!r}: escapes may only spell non-ASCII "
        "characters (write the character itself)"
    )


def directive_problem(body: str) -> tuple[str, str] | None:
    """(name, why) when the directive whose text after ``%%`` / ``I:`` is `body` is refused."""
    name, args = _name_and_args(body)
    if not name:
        return "(empty)", "is empty; write a directive from the allow-list or a '%' comment"
    if name == "midi":
        sub, sub_args = _name_and_args(args)
        if sub not in _MIDI_COMPILED:
            return f"MIDI {sub}", "is not an allowed MIDI directive (see common/abc/directives.py)"
        if not _MIDI_COMPILED[sub].fullmatch(sub_args):
            return f"MIDI {sub}", f"has arguments {sub_args!r} it may not take"
        out_of_range = _midi_problem(sub, sub_args)
        if out_of_range is not None:
            return f"MIDI {sub}", out_of_range
        return None
    pattern = _COMPILED.get(name)
    if pattern is None:
        return name, "is not on the allow-list of directives (see common/abc/directives.py)"
    if not pattern.fullmatch(args):
        return name, f"has arguments {args!r} it may not take"
    return None


def _scan_line(number: int, line: str, found: list[_Found]) -> bool:
    """Add the refused directives of one line to `found`; whether the line is a directive."""
    whole = _PERCENT_LINE.match(line) or _FIELD_LINE.match(line)
    if whole is not None:
        problem = directive_problem(whole.group(1))
        if problem is not None:
            found.append((number, 0, -1, problem[0], line.strip(), problem[1]))
        return True
    if line.lstrip().startswith("%"):
        return False  # a comment: no tool reads what follows a single '%'
    for match in _INLINE.finditer(line):
        problem = directive_problem(match.group(1))
        if problem is not None:
            name, why = problem
            found.append((number, match.start(), match.end(), name, match.group(0), why))
    return False


def _scan(text: str) -> list[_Found]:
    """Every refused directive as (line index, start, end, directive, text, why); start/end
    delimit an inline field or an escape within its line, or are (0, -1) for a whole line."""
    found: list[_Found] = []
    in_directive = False
    lines = text.split("\n")
    for number, line in enumerate(lines):
        for match in _ESCAPE.finditer(line):
            problem = escape_problem(match.group(0))
            if problem is not None:
                found.append((number, match.start(), match.end(), "escape", *problem))
        if _CONTINUATION.match(line):
            if in_directive:
                why = "continues a directive ('+:' lines may not extend one)"
                found.append((number, 0, -1, "+:", line.strip(), why))
            continue
        in_directive = _scan_line(number, line, found)
    found += _scan_joined(lines, {f[0] for f in found})
    return found


def _scan_joined(lines: list[str], refused: set[int]) -> list[_Found]:
    """Refused directives that appear only when lines ending in ``\\`` are joined, as abcm2ps
    joins them in ABC 2.0 files: each refuses every line of its group."""
    found: list[_Found] = []
    number = 0
    while number < len(lines):
        group = [number]
        while _JOINED.search(lines[group[-1]]) and group[-1] + 1 < len(lines):
            group.append(group[-1] + 1)
        if len(group) > 1 and not refused.intersection(group):
            joined = "".join(_JOINED.sub("", lines[n]) for n in group[:-1]) + lines[group[-1]]
            inner: list[_Found] = []
            _scan_line(group[0], joined, inner)
            if inner:
                why = f"{inner[0][5]} (once the lines ending in '\\' are joined)"
                found += [(n, 0, -1, inner[0][3], lines[n].strip(), why) for n in group]
        number = group[-1] + 1
    return found


def problems(text: str) -> list[Problem]:
    """Every directive of `text` the allow-list refuses, in order."""
    return [Problem(n + 1, name, shown, why) for n, _, _, name, shown, why in _scan(text)]


def refusal(text: str) -> str | None:
    """One message naming the first refused directive (and how many more), or None."""
    found = problems(text)
    if not found:
        return None
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return f"{found[0].message()}{more}"


def strip(text: str) -> tuple[str, Counter[str]]:
    """`text` without its refused directives and escapes, and how many of each were dropped.

    A refused ``%%`` / ``I:`` / ``+:`` line goes as a whole; a refused inline ``[I:...]`` or
    escape goes from its line, which stays. Removing one can make another (``[I[I:x]:bgcolor]``
    becomes ``[I:bgcolor]``), so this repeats until nothing is refused; each round shortens the
    text, so it ends.
    """
    counts: Counter[str] = Counter()
    while found := _scan(text):
        counts.update(name for _, _, _, name, _, _ in found)
        lines = text.split("\n")
        drop = {number for number, _, end, _, _, _ in found if end < 0}
        cut: dict[int, set[int]] = {}  # line → positions inside a refused field or escape
        for number, start, end, _, _, _ in found:
            if end >= 0 and number not in drop:
                cut.setdefault(number, set()).update(range(start, end))
        for number, positions in cut.items():
            lines[number] = "".join(c for i, c in enumerate(lines[number]) if i not in positions)
        text = "\n".join(line for n, line in enumerate(lines) if n not in drop)
    return text, counts


__all__ = ["DIRECTIVES", "MIDI_COMMANDS", "MidiArgs", "Problem", "directive_problem",
           "escape_problem", "problems", "refusal", "strip"]  # fmt: skip
