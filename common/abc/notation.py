"""ABC notation as text: split a file into tunes, clean them, check headers, reject unsafe input.

Pure string functions, no tools. The model learns exactly what `normalise_tune` returns, so the
cleaning rules here decide what the generated tunes look like: informational fields (book,
discography, notes, transcriber e-mails...) and comments are dropped, header fields are written
without the space after the colon, and trailing whitespace is removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from common.abc import directives as abc_directives

#: Header fields that carry bibliography rather than music; dropped so the model spends its
#: capacity on tunes. B book, D discography, F file URL, H history, N notes, S source,
#: Z transcriber.
DROPPED_FIELDS = frozenset("BDFHNSZ")

#: What a sampled tune starts with when the user gives no primer.
DEFAULT_PRIMER = "X:"

#: Fields a playable tune needs; X and T are added when missing, M and K cannot be guessed.
REQUIRED_FIELDS = ("X", "T", "M", "K")

#: An information field on a line of its own: ``K:D`` (name, value as written). The one
#: definition every ABC module matches header lines with.
FIELD_LINE = re.compile(r"^([A-Za-z]):(.*)$")
_TUNE_START = re.compile(r"^X:", re.MULTILINE)

#: Directives that make abc2midi or abcm2ps read other files (measured: abc2midi honours
#: %%abc-include and reads any path it names, even /dev/zero). Matched case-insensitively anywhere
#: in the text, including inside I: fields and inline [I:...] fields.
_UNSAFE = re.compile(
    r"(abc-include|%%\s*include|\bI:\s*include|\[I:\s*include|%%\s*(?:abc-)?(?:format|fmt)\b"
    r"|%%\s*(?:ps|svg|beginps|beginsvg|EPS|glyph|deco)\b)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Header:
    """The musical header fields of one tune, as written (empty when absent)."""

    number: str
    title: str
    meter: str
    length: str
    key: str
    rhythm: str

    def primer(self) -> str:
        """The start of a tune in this tune's style, to prime the sampler with.

        Keeps meter, unit length, rhythm and key; the title and number are the sampler's own.
        """
        lines = ["X:1"]
        if self.rhythm:
            lines.append(f"R:{self.rhythm}")
        if self.meter:
            lines.append(f"M:{self.meter}")
        if self.length:
            lines.append(f"L:{self.length}")
        if self.key:
            lines.append(f"K:{self.key}")
        return "\n".join(lines) + "\n"


def unsafe_reason(text: str) -> str | None:
    """Say why `text` must not reach an ABC tool, or None when it may.

    Every directive must be on the allow-list (`common.abc.directives`); the include /
    PostScript / SVG / format spellings are also refused wherever they appear (in a title, a
    lyric), and control characters other than newline and tab have no place in ABC.
    """
    match = _UNSAFE.search(text)
    if match:
        return f"forbidden directive {match.group(0)!r}"
    refused = abc_directives.refusal(text)
    if refused is not None:
        return refused
    bad = next((c for c in text if not (c.isprintable() or c in "\n\t")), None)
    if bad is not None:
        return f"non-printable character U+{ord(bad):04X}"
    return None


def split_tunes(text: str) -> Iterator[str]:
    """Yield each tune of an ABC file: from an ``X:`` line to a blank line or the next ``X:``.

    Text before the first ``X:`` (the file header) is not a tune and is skipped.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    starts = [m.start() for m in _TUNE_START.finditer(text)]
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        block = text[start:end]
        blank = re.search(r"\n[ \t]*\n", block)
        if blank:
            block = block[: blank.start()]
        block = block.strip("\n")
        if block:
            yield block


def normalise_tune(tune: str) -> str:
    """Return the tune as the model should see it (see the module docstring for the rules)."""
    out: list[str] = []
    in_header = True
    for raw in tune.replace("\t", " ").split("\n"):
        line = raw.rstrip()
        if not line:
            continue
        stripped = line.lstrip()
        if stripped.startswith("%"):
            continue  # comments and %% directives
        match = FIELD_LINE.match(line)
        if match and (in_header or match.group(1) in "TMLKPQRWw"):
            field, value = match.group(1), match.group(2).strip()
            if field in DROPPED_FIELDS:
                continue
            if field == "K":
                in_header = False
            out.append(f"{field}:{value}")
            continue
        if in_header and out:
            in_header = False  # a music line before K: ends the header all the same
        out.append(line.split(" %", 1)[0].rstrip() if " %" in line else line)
    return "\n".join(line for line in out if line)


def header_fields(tune: str) -> dict[str, str]:
    """First value of each header field up to and including ``K:``."""
    fields: dict[str, str] = {}
    for line in tune.split("\n"):
        match = FIELD_LINE.match(line)
        if not match:
            if fields:
                break
            continue
        fields.setdefault(match.group(1), match.group(2).strip())
        if match.group(1) == "K":
            break
    return fields


def parse_header(tune: str) -> Header:
    f = header_fields(tune)
    return Header(
        number=f.get("X", ""),
        title=f.get("T", ""),
        meter=f.get("M", ""),
        length=f.get("L", ""),
        key=f.get("K", ""),
        rhythm=f.get("R", ""),
    )


def missing_fields(tune: str) -> list[str]:
    """Required header fields absent from the tune, in canonical order."""
    fields = header_fields(tune)
    return [name for name in REQUIRED_FIELDS if not fields.get(name)]


def ensure_headers(tune: str, number: int, title: str) -> str:
    """Give the tune an ``X:`` number and a ``T:`` title when it lacks them.

    A sampled tune starts with whatever the model wrote; abc2midi needs ``X:`` first, and people
    need a title to tell tunes apart. Existing fields are kept; ``X:`` is always rewritten to
    `number` so each tune file holds exactly one, predictable, tune.
    """
    lines = [line for line in tune.split("\n") if line.strip()]
    if lines and lines[0].startswith("X:"):
        lines = lines[1:]
    fields = header_fields("\n".join(lines))
    head = [f"X:{number}"]
    if not fields.get("T"):
        head.append(f"T:{title}")
    return "\n".join(head + lines) + "\n"


def join_tunes(tunes: Iterable[str]) -> str:
    """A corpus text: tunes separated by one blank line, ending with one.

    The blank line is also what the sampler stops at, so the model learns where tunes end.
    """
    return "".join(t.rstrip("\n") + "\n\n" for t in tunes)


def tune_body_key(tune: str) -> str:
    """De-duplication key: the tune without its ``X:`` line.

    Collections number tunes per file, so the same tune appears under different numbers.
    """
    return "\n".join(line for line in tune.split("\n") if not line.startswith("X:"))


def build_primer(
    primer: str | None = None, meter: str | None = None, key: str | None = None
) -> str:
    """The text every tune of a batch starts with.

    An explicit primer wins; otherwise ``X:1`` plus the requested meter and key, which are the
    header fields the model sees before the music (the title is the model's own idea).
    """
    if primer:
        return primer
    if not meter and not key:
        return DEFAULT_PRIMER
    lines = ["X:1"]
    if meter:
        lines.append(f"M:{meter}")
    if key:
        lines.append(f"K:{key}")
    return "\n".join(lines) + "\n"
