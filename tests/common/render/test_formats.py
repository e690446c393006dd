"""The format table (common/render/formats.py): what each format is made from, by which tool, and
that the stages and the version probes cover exactly the tools it names."""

from __future__ import annotations

import shutil

import pytest

from common.params import AUDIO_PROFILES, DEFAULT_FORMATS, FORMATS, AudioLevel
from common.render import stages
from common.render.formats import (
    TABLE,
    has_magic,
    made_from,
    parse_formats,
)
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


def test_the_encoders_are_the_formats_made_from_the_wav() -> None:
    from_wav = {fmt.name for fmt in TABLE if fmt.source == "wav"}
    assert set(stages.ENCODERS) == from_wav
    for name, tool in stages.ENCODERS.items():
        assert (tool,) == next(fmt.tools for fmt in TABLE if fmt.name == name)
        for profile in AUDIO_PROFILES.values():
            args = stages.encoder_args(name, profile)
            assert "tune.wav" in args and f"tune.{name}" in args
    with pytest.raises(ValueError, match="not an encoded audio format"):
        stages.encoder_args("wav", AUDIO_PROFILES[AudioLevel.HIFI])


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
