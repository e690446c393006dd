"""The output formats a render can produce: their names, which file each is made from, by which
tool, and how a good file starts.

This table is the one definition of the formats: the CLI's ``--formats``, a batch's spec and a
schedule all go through `parse_formats`, and the render stages (`common.render.stages`) run only
the tools the requested formats need, in the order `common.render.pipeline` gives them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from common.errors import InvalidInputError
from common.params import FORMATS
from common.render.tool_run import Tool

ABC2MIDI = Tool("abc2midi", "abcmidi", "abc2midi")
TIMIDITY = Tool("timidity", "timidity", "timidity")
FLUIDSYNTH = Tool("fluidsynth", "fluidsynth", "fluidsynth")
ABCM2PS = Tool("abcm2ps", "abcm2ps", "abcm2ps")
# The encoders and rsvg-convert have no Settings field: they are only ever found on PATH.
RSVG = Tool("rsvg-convert", "librsvg2-bin", None)
OGGENC = Tool("oggenc", "vorbis-tools", None)
LAME = Tool("lame", "lame", None)
FLAC = Tool("flac", "flac", None)


def _is_mp3(head: bytes) -> bool:
    """An ID3 tag, or an MPEG audio frame's 11-bit sync word."""
    return head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] >= 0xE0)


@dataclass(frozen=True)
class OutputFormat:
    """One output format: the file it is made from, the tools that can make it, its magic."""

    name: str
    #: The format this one is made from; None for ``abc``, the tune text everything comes from.
    source: str | None
    #: The programs that write it; ``wav`` has two, and `Settings.synth` picks one.
    tools: tuple[Tool, ...]
    #: Whether the first bytes of a file look like this format (catches truncated or wrong output).
    looks_right: Callable[[bytes], bool]


#: Every format, in the canonical order used everywhere (CLI, manifests, a render's files).
TABLE: tuple[OutputFormat, ...] = (
    OutputFormat("abc", None, (), lambda head: True),
    OutputFormat("mid", "abc", (ABC2MIDI,), lambda head: head.startswith(b"MThd")),
    OutputFormat(
        "wav",
        "mid",
        (TIMIDITY, FLUIDSYNTH),
        lambda head: head.startswith(b"RIFF") and head[8:12] == b"WAVE",
    ),
    OutputFormat("svg", "abc", (ABCM2PS,), lambda head: b"<svg" in head),
    OutputFormat("pdf", "svg", (RSVG,), lambda head: head.startswith(b"%PDF-")),
    OutputFormat("ogg", "wav", (OGGENC,), lambda head: head.startswith(b"OggS")),
    OutputFormat("mp3", "wav", (LAME,), _is_mp3),
    OutputFormat("flac", "wav", (FLAC,), lambda head: head.startswith(b"fLaC")),
)
_BY_NAME = {fmt.name: fmt for fmt in TABLE}

if tuple(fmt.name for fmt in TABLE) != FORMATS:  # the names are common.params'; the tools, here
    raise RuntimeError("common.render.formats.TABLE must list common.params.FORMATS in order")


def made_from(source: str) -> frozenset[str]:
    """The formats whose making passes through `source`, `source` included.

    ``made_from("wav")`` is wav, ogg, mp3 and flac: asking for any of them means synthesising.
    """
    found = {source}
    for fmt in TABLE:  # TABLE lists every format after the one it is made from
        if fmt.source in found:
            found.add(fmt.name)
    return frozenset(found)


def has_magic(fmt: str, head: bytes) -> bool:
    """Whether `head`, the first bytes of a file, starts the way a `fmt` file does."""
    return _BY_NAME[fmt].looks_right(head)


def parse_formats(text: str) -> tuple[str, ...]:
    """Parse ``"mid,wav"`` (as typed on a command line) into a canonical tuple of formats.

    The result is ordered as `FORMATS` and always holds ``abc``: the tune text is the artifact
    every other format is derived from, so it is never left out.
    """
    names = [part.strip().lower() for part in text.split(",")]
    return canonical_formats([name for name in names if name])


def canonical_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """Validate `formats` and return them in `FORMATS` order, ``abc`` included, no duplicates."""
    if isinstance(formats, str):
        # A bare string is a sequence of characters; "wav" must not mean {"w", "a", "v"}.
        formats = [formats]
    wanted = {name.strip().lower() for name in formats}
    unknown = sorted(wanted - set(FORMATS))
    if unknown:
        raise InvalidInputError(
            f"unknown output format(s) {', '.join(repr(u) for u in unknown)}; "
            f"choose from {', '.join(FORMATS)}"
        )
    wanted.add("abc")
    return tuple(name for name in FORMATS if name in wanted)
