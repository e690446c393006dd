"""The format table (common/formats.py): what each format is made from, by which tool, and
that the stages, the content types and the version probes cover exactly what it names, with no
second copy of it anywhere."""

from __future__ import annotations

import mimetypes
import re
import shutil
from pathlib import Path

import pytest

from common import files
from common.formats import (
    PAGE_AUDIO,
    TABLE,
    TOOLS,
    OutputFormat,
    canonical_formats,
    has_magic,
    made_from,
    needed_for,
    parse_formats,
)
from common.params import DEFAULT_FORMATS, FORMATS
from common.render import stages
from common.render.versions import tool_versions
from common.settings import Settings

#: The first bytes each tool really writes (abc2midi, timidity, abcm2ps, rsvg-convert, oggenc,
#: lame with and without an ID3 tag, flac).
GOOD_HEADS = {
    "mid": [b"MThd\x00\x00\x00\x06"],
    "wav": [b"RIFF\x24\x08\x00\x00WAVEfmt "],
    "svg": [b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"'],
    "pdf": [b"%PDF-1.5\n"],
    "ogg": [b"OggS\x00\x02"],
    "mp3": [b"ID3\x04\x00", b"\xff\xfb\x90\x64"],
    "flac": [b"fLaC\x00\x00\x00\x22"],
}


def test_every_format_is_made_from_one_listed_before_it() -> None:
    seen: set[str] = set()
    for fmt in TABLE:
        assert fmt.source is None or fmt.source in seen, f"{fmt.name} before its source"
        seen.add(fmt.name)
    assert FORMATS == ("abc", "mid", "wav", "svg", "pdf", "ogg", "mp3", "flac")
    assert set(DEFAULT_FORMATS) <= set(FORMATS)
    assert parse_formats(",".join(DEFAULT_FORMATS)) == DEFAULT_FORMATS


def test_which_formats_need_which_stage() -> None:
    assert made_from("mid") == {"mid", "wav", "ogg", "mp3", "flac"}
    assert made_from("wav") == {"wav", "ogg", "mp3", "flac"}
    assert made_from("svg") == {"svg", "pdf"}
    assert made_from("pdf") == {"pdf"}
    assert made_from("abc") == set(FORMATS)


def test_every_format_has_one_stage_or_is_a_gate() -> None:
    """A new format is a row plus its stage: the pipeline runs no format it has no stage for."""
    gates = {"mid", "wav"}  # abc2midi's verdict and the synthesiser: run by the pipeline itself
    assert set(stages.STAGES) == set(FORMATS) - gates - {"abc"}
    for fmt in TABLE:
        assert (fmt.source is None) == (fmt.name == "abc") == (fmt.tools == ())


@pytest.mark.parametrize("fmt", TABLE, ids=lambda f: f.name)
def test_every_format_has_a_suffix_and_a_content_type_the_system_agrees_with(
    fmt: OutputFormat,
) -> None:
    assert fmt.suffix == f".{fmt.name}" and fmt.suffix.isascii() and fmt.name.isalnum()
    assert files.content_type(f"batches/b/t000001{fmt.suffix}") == fmt.content_type
    assert files.content_type(f"t1{fmt.suffix.upper()}") == fmt.content_type
    # The system's table may say audio/x-wav or audio/sp-midi, but never another kind of file.
    guessed, _ = mimetypes.guess_type(f"x{fmt.suffix}", strict=False)
    if guessed is not None:
        assert guessed.split("/")[0] == fmt.content_type.split("/")[0], guessed
    assert (fmt.page_audio is not None) <= fmt.content_type.startswith("audio/")


def test_the_page_plays_the_smallest_audio_first() -> None:
    assert [fmt.name for fmt in PAGE_AUDIO] == ["ogg", "mp3", "wav", "flac"]
    assert len({fmt.page_audio for fmt in PAGE_AUDIO}) == len(PAGE_AUDIO)


def test_needed_for_walks_back_to_the_tune_text() -> None:
    assert needed_for(["pdf"]) == {"abc", "svg", "pdf"}
    assert needed_for(["mp3"]) == {"abc", "mid", "wav", "mp3"}
    assert needed_for(["abc"]) == {"abc"}


def test_every_tool_is_named_once_and_says_how_to_ask_its_version() -> None:
    assert len({tool.name for tool in TOOLS}) == len(TOOLS)
    assert {tool.name for fmt in TABLE for tool in fmt.tools} == {tool.name for tool in TOOLS}
    assert all(tool.version_args and tool.version_pattern.groups >= 1 for tool in TOOLS)


def test_every_tool_is_installed_by_make_and_the_cpu_worker_image() -> None:
    """A format's new tool is one package line in the Makefile and the Dockerfile: both are
    checked against the table, so neither can be forgotten."""
    root = Path(__file__).resolve().parents[2]
    makefile = (root / "Makefile").read_text(encoding="utf-8")
    packages = re.search(r"^RENDER_PACKAGES := (.*)$", makefile, re.MULTILINE)
    assert packages is not None
    dockerfile = (root / "docker" / "cpu-worker.Dockerfile").read_text(encoding="utf-8")
    for tool in TOOLS:
        assert tool.package in packages.group(1).split(), tool
        assert re.search(rf"^\s*{re.escape(tool.package)}=", dockerfile, re.MULTILINE), tool


@pytest.mark.parametrize("text", ["mp3, WAV,mid", ["mp3", "WAV", "mid"], ("mid", "mp3", "wav")])
def test_the_formats_type_is_canonical_from_a_command_line_or_a_record(
    text: str | list[str],
) -> None:
    assert canonical_formats(text) == ("abc", "mid", "wav", "mp3")


#: Where a format's name, suffix or content type written out would be a second copy of the table.
_OWN_TABLES = re.compile(
    r"audio/(ogg|mpeg|wav|flac|midi)|image/svg\+xml|application/pdf|text/vnd\.abc"
    r"|[\[{(]\s*[\"']ogg[\"']\s*[,:]"
)


def test_no_other_module_keeps_its_own_formats_table() -> None:
    """The content types and the lists of audio formats live in the table only; a module that
    spells them again would go stale when a format is added (the page's script included: it
    reads them from the JSON the gallery writes)."""
    root = Path(__file__).resolve().parents[2]
    sources = [
        *(root / "common").rglob("*.py"),
        *(root / "producer").rglob("*.py"),
        *(root / "worker").rglob("*.py"),
        root / "producer" / "gallery_assets" / "gallery.js",
    ]
    table = root / "common" / "formats.py"
    copies = [
        f"{path.relative_to(root)}:{number}: {line.strip()}"
        for path in sources
        if path != table
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if _OWN_TABLES.search(line)
    ]
    assert copies == []


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "abc"])
def test_magic_tells_a_real_header_from_a_wrong_one(fmt: str) -> None:
    for head in GOOD_HEADS[fmt]:
        assert has_magic(fmt, head), head
    assert not has_magic(fmt, b"")
    # Another format's file, or a tool's error text, is never taken for this one.
    for other, heads in GOOD_HEADS.items():
        if other != fmt:
            assert not any(has_magic(fmt, head) for head in heads), other
    assert not has_magic(fmt, b"Error in line-char 3-4: Bad note\n")


def test_every_installed_tool_in_the_table_reports_a_version() -> None:
    versions = tool_versions(Settings())
    installed = {
        tool.name for fmt in TABLE for tool in fmt.tools if shutil.which(tool.name) is not None
    }
    assert installed, "no render tool installed: the render suite cannot run here"
    assert installed <= set(versions), sorted(installed - set(versions))
