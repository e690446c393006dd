"""The output formats: the one table of what each is called, which file it is made from, by which
tool, how a good file starts and which content type it is served as.

Every other place reads this table rather than keeping a list of its own: the CLI's ``--formats``
and the specs (the validated `Formats` type, re-exported by `common.params`), the render
pipeline (which stages a request needs), the content types of the bucket's objects
(`common.files.content_type`), the tool versions a manifest records (`common.render.versions`)
and the gallery (which audio a page plays, and its ``<source type>``). So a new format is one row
here plus the stage that makes it (`common.render.stages.STAGES`); a test checks that every
format has both, and that no other module names the content types again.

A leaf module (nothing of tunebatch but `common.errors`), so that `common.files` and
`common.params`, which nearly everything imports, can read it without a cycle.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import BeforeValidator

from common.errors import InvalidInputError


@dataclass(frozen=True)
class Tool:
    """An external program: the name people know, its Debian package, its Settings field, and
    how to ask it for its version (every manifest records the versions: `common.render.versions`).
    """

    name: str
    package: str
    setting: str | None
    #: The arguments that make it print its version, and a pattern whose group 1 is the version
    #: (without a match the first line printed is recorded).
    version_args: tuple[str, ...] = ("--version",)
    version_pattern: re.Pattern[str] = re.compile(r"version\s+(\S+)")


ABC2MIDI = Tool(
    "abc2midi",
    "abcmidi",
    "abc2midi",
    ("-ver",),
    re.compile(r"^\s*(\S.*?)\s+abc2midi\s*$", re.MULTILINE),
)
TIMIDITY = Tool("timidity", "timidity", "timidity")
FLUIDSYNTH = Tool("fluidsynth", "fluidsynth", "fluidsynth")
ABCM2PS = Tool("abcm2ps", "abcm2ps", "abcm2ps", ("-V",), re.compile(r"abcm2ps-(\S+)"))
# The encoders and rsvg-convert have no Settings field: they are only ever found on PATH.
RSVG = Tool("rsvg-convert", "librsvg2-bin", None)
OGGENC = Tool("oggenc", "vorbis-tools", None, version_pattern=re.compile(r"vorbis-tools\s+(\S+)"))
LAME = Tool("lame", "lame", None)
FLAC = Tool("flac", "flac", None, version_pattern=re.compile(r"flac\s+(\S+)"))


def _is_mp3(head: bytes) -> bool:
    """An ID3 tag, or an MPEG audio frame's 11-bit sync word."""
    return head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] >= 0xE0)


@dataclass(frozen=True)
class OutputFormat:
    """One output format: the file it is made from, the tools that can make it, its magic, and
    how it is served."""

    name: str
    #: The format this one is made from; None for ``abc``, the tune text everything comes from.
    source: str | None
    #: The programs that write it; ``wav`` has two, and `Settings.synth` picks one.
    tools: tuple[Tool, ...]
    #: Whether the first bytes of a file look like this format (catches truncated or wrong output).
    looks_right: Callable[[bytes], bool]
    #: The HTTP content type of its files: what the bucket serves and a page's player is told.
    content_type: str
    #: Its rank among the audio a web page plays (1 first: the smallest file that every
    #: browser plays); None for a format a page's ``<audio>`` does not play (MIDI included).
    page_audio: int | None = None

    @property
    def suffix(self) -> str:
        """The file suffix: a format's name is its files' extension (``t000001.ogg``), which
        storage keys, fetched folders and content types all rely on."""
        return f".{self.name}"


#: Every format, in the canonical order used everywhere (CLI, manifests, a render's files).
#: Each is listed after the one it is made from.
TABLE: tuple[OutputFormat, ...] = (
    OutputFormat("abc", None, (), lambda head: True, "text/vnd.abc; charset=utf-8"),
    OutputFormat("mid", "abc", (ABC2MIDI,), lambda head: head.startswith(b"MThd"), "audio/midi"),
    OutputFormat(
        "wav",
        "mid",
        (TIMIDITY, FLUIDSYNTH),
        lambda head: head.startswith(b"RIFF") and head[8:12] == b"WAVE",
        "audio/wav",
        page_audio=3,
    ),
    OutputFormat("svg", "abc", (ABCM2PS,), lambda head: b"<svg" in head, "image/svg+xml"),
    OutputFormat("pdf", "svg", (RSVG,), lambda head: head.startswith(b"%PDF-"), "application/pdf"),
    OutputFormat(
        "ogg", "wav", (OGGENC,), lambda head: head.startswith(b"OggS"), "audio/ogg", page_audio=1
    ),
    OutputFormat("mp3", "wav", (LAME,), _is_mp3, "audio/mpeg", page_audio=2),
    OutputFormat(
        "flac", "wav", (FLAC,), lambda head: head.startswith(b"fLaC"), "audio/flac", page_audio=4
    ),
)
BY_NAME: dict[str, OutputFormat] = {fmt.name: fmt for fmt in TABLE}

#: Every output format's name, in the order a tune's files are listed.
FORMATS: tuple[str, ...] = tuple(fmt.name for fmt in TABLE)
#: What a batch renders when nobody says otherwise.
DEFAULT_FORMATS: tuple[str, ...] = ("abc", "mid", "wav")
#: The formats a web page's ``<audio>`` plays, in the order it offers them (the browser plays
#: the first it can): ogg, mp3, wav, flac.
PAGE_AUDIO: tuple[OutputFormat, ...] = tuple(
    sorted((fmt for fmt in TABLE if fmt.page_audio is not None), key=lambda f: f.page_audio or 0)
)
#: Every tool some format needs, once each, in table order: what a manifest records versions of.
TOOLS: tuple[Tool, ...] = tuple(dict.fromkeys(tool for fmt in TABLE for tool in fmt.tools))


def made_from(source: str) -> frozenset[str]:
    """The formats whose making passes through `source`, `source` included.

    ``made_from("wav")`` is wav, ogg, mp3 and flac: asking for any of them means synthesising.
    """
    found = {source}
    for fmt in TABLE:  # TABLE lists every format after the one it is made from
        if fmt.source in found:
            found.add(fmt.name)
    return frozenset(found)


def needed_for(wanted: Sequence[str]) -> frozenset[str]:
    """`wanted` and every format its files are made through: ``pdf`` needs ``svg``, ``ogg``
    needs ``wav`` and ``mid``; ``abc`` is always there."""
    needed = set(wanted)
    for fmt in reversed(TABLE):  # a source is listed before what is made from it
        if fmt.name in needed and fmt.source is not None:
            needed.add(fmt.source)
    return frozenset(needed)


def has_magic(fmt: str, head: bytes) -> bool:
    """Whether `head`, the first bytes of a file, starts the way a `fmt` file does."""
    return BY_NAME[fmt].looks_right(head)


def canonical_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """Validate `formats` and return them in `FORMATS` order, ``abc`` included, no duplicates.

    A string is a comma list as typed on a command line (``"mp3, WAV,mid"``); a sequence is
    what a stored spec holds. ``abc`` is always included: the tune text is the artifact every
    other format is derived from, so it is never left out.
    """
    names = formats.split(",") if isinstance(formats, str) else formats
    wanted = {name.strip().lower() for name in names if name.strip()}
    unknown = sorted(wanted - set(FORMATS))
    if unknown:
        raise InvalidInputError(
            f"unknown output format(s) {', '.join(repr(u) for u in unknown)}; "
            f"choose from {', '.join(FORMATS)}"
        )
    wanted.add("abc")
    return tuple(name for name in FORMATS if name in wanted)


def parse_formats(text: str) -> tuple[str, ...]:
    """Parse ``"mid,wav"`` (as typed on a command line) into a canonical tuple of formats."""
    return canonical_formats(text)


def _validated(value: object) -> object:
    """`canonical_formats` for a spec field: a list or a comma string; anything else is left
    for pydantic to refuse with its own message."""
    if isinstance(value, str | list | tuple):
        return canonical_formats(value)
    return value


#: A spec's formats: known names, in `FORMATS` order, ``abc`` included. Stored as a JSON list,
#: as specs always were, so old records and manifests load unchanged.
Formats = Annotated[tuple[str, ...], BeforeValidator(_validated)]
