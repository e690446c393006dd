"""The directives a tune may hold: an allow-list, with the arguments each one may take.

ABC has three spellings of a directive, and the tools honour all three: a ``%%name args`` line,
an ``I:name args`` field line (abcm2ps treats it exactly as ``%%``) and an inline ``[I:name args]``
field. Many directives make a tool read a file (``format``, ``abc-include``, ``EPS``,
``%%MIDI ptstress``), run PostScript or insert raw SVG (``beginps``, ``beginsvg``, ``ps``,
``svg``), or write their value unescaped into the SVG (``bgcolor``, every ``*font``,
``musicfont url(...)``); and ``%%abcm2ps`` / ``%%ss-pref`` change the prefix abcm2ps recognises,
so a later ``%#format`` escapes any rule written for ``%%``. A deny-list of spellings always
misses one, so the rule is an **allow-list**:

* every ``%%`` line, every ``I:`` line and every inline ``[I:...]`` must name a directive
  below, with arguments that match its pattern in full; anything else is refused (render,
  check, primers, what the sampler writes) or stripped and counted (corpus import);
* names are compared case-insensitively (so ``%%FORMAT`` is not a way round), leading
  whitespace is ignored, and a ``+:`` line continuing a directive is refused with it;
* no kept directive names a file, takes free text, or reaches the SVG as anything but a number.

What is kept, and why:

* ``%%MIDI`` (abc2midi: how a tune sounds; the project's audio is made from these), with
  only these sub-commands: ``program [channel] N``, ``chordprog N``, ``bassprog N``,
  ``chordvol N``, ``bassvol N``, ``channel N``, ``transpose N``, ``rtranspose N``,
  ``gchord <f b c z g-j G-J digits>``, ``gchordon``/``gchordoff``, ``beat a b c d``,
  ``beatmod N``, ``beatstring <f m p>``, ``drum <d z digits> N...``, ``drumon``/``drumoff``,
  ``drumbars N``, ``drone N...``, ``droneon``/``droneoff``, ``ratio N N``, ``grace N/N``,
  ``gracedivider N``, ``control N N``, ``barlines``/``nobarlines``. All numbers: up to 6
  digits, so abc2midi's own range checks see them. Not ``ptstress`` (reads a file), nor the
  rest of abc2midi's list (none is used by the corpora we ship).
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

#: MIDI sub-command → pattern of its arguments (the whole rest of the line, spaces collapsed).
MIDI_COMMANDS: dict[str, str] = {
    "program": rf"(?:{_UNSIGNED} )?{_UNSIGNED}",
    "chordprog": _UNSIGNED,
    "bassprog": _UNSIGNED,
    "chordvol": _UNSIGNED,
    "bassvol": _UNSIGNED,
    "channel": _UNSIGNED,
    "transpose": _NUM,
    "rtranspose": _NUM,
    "gchord": r"[fbczghijGHIJ0-9]{1,64}",
    "gchordon": "",
    "gchordoff": "",
    "beat": rf"{_UNSIGNED}(?: {_UNSIGNED}){{3}}",
    "beatmod": _NUM,
    "beatstring": r"[fmp]{1,64}",
    "drum": rf"[dz0-9]{{1,64}}(?: {_UNSIGNED}){{0,64}}",
    "drumon": "",
    "drumoff": "",
    "drumbars": _UNSIGNED,
    "drone": rf"{_UNSIGNED}(?: {_UNSIGNED}){{0,4}}",
    "droneon": "",
    "droneoff": "",
    "ratio": rf"{_UNSIGNED} {_UNSIGNED}",
    "grace": rf"{_UNSIGNED}/{_UNSIGNED}",
    "gracedivider": _UNSIGNED,
    "control": rf"{_UNSIGNED} {_UNSIGNED}",
    "barlines": "",
    "nobarlines": "",
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
_MIDI_COMPILED = {name: re.compile(pattern) for name, pattern in MIDI_COMMANDS.items()}

_PERCENT_LINE = re.compile(r"^\s*%%(.*)$")
_FIELD_LINE = re.compile(r"^\s*I\s*:(.*)$")
_CONTINUATION = re.compile(r"^\s*\+\s*:")
_INLINE = re.compile(r"\[\s*I\s*:([^\]\n]*)\]?")


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
        return None
    pattern = _COMPILED.get(name)
    if pattern is None:
        return name, "is not on the allow-list of directives (see common/abc/directives.py)"
    if not pattern.fullmatch(args):
        return name, f"has arguments {args!r} it may not take"
    return None


def _scan(text: str) -> list[tuple[int, int, int, str, str, str]]:
    """Every refused directive as (line index, start, end, directive, text, why); start/end
    delimit an inline field within its line, or are (0, -1) for a whole line."""
    found: list[tuple[int, int, int, str, str, str]] = []
    in_directive = False
    for number, line in enumerate(text.split("\n")):
        whole = _PERCENT_LINE.match(line) or _FIELD_LINE.match(line)
        if whole is not None:
            problem = directive_problem(whole.group(1))
            if problem is not None:
                found.append((number, 0, -1, problem[0], line.strip(), problem[1]))
            in_directive = True
            continue
        if _CONTINUATION.match(line):
            if in_directive:
                why = "continues a directive ('+:' lines may not extend one)"
                found.append((number, 0, -1, "+:", line.strip(), why))
            continue
        in_directive = False
        if line.lstrip().startswith("%"):
            continue  # a comment: no tool reads what follows a single '%'
        for match in _INLINE.finditer(line):
            problem = directive_problem(match.group(1))
            if problem is not None:
                found.append(
                    (number, match.start(), match.end(), problem[0], match.group(0), problem[1])
                )
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
    """`text` without its refused directives, and how many of each were dropped.

    A refused ``%%`` / ``I:`` / ``+:`` line goes as a whole; a refused inline ``[I:...]`` goes
    from its line, which stays.
    """
    found = _scan(text)
    if not found:
        return text, Counter()
    counts: Counter[str] = Counter(name for _, _, _, name, _, _ in found)
    lines = text.split("\n")
    drop: set[int] = set()
    for number, start, end, _, _, _ in sorted(found, key=lambda f: (f[0], -f[1])):
        if end < 0:
            drop.add(number)
        elif number not in drop:
            lines[number] = lines[number][:start] + lines[number][end:]
    kept = [line for n, line in enumerate(lines) if n not in drop]
    return "\n".join(kept), counts


__all__ = ["DIRECTIVES", "MIDI_COMMANDS", "Problem", "directive_problem", "problems", "refusal",
           "strip"]  # fmt: skip
