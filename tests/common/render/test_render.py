"""Tests of the render package (`common.render.pipeline` and its stages) against the real tools:
abc2midi, timidity, abcm2ps, oggenc, lame, and fluidsynth, flac, rsvg-convert where installed.

Nothing here mocks a tool: the point of the render package is how it drives real programs. The
only stand-ins are tiny shell scripts, used where the property under test is our process
management (a whole process group dies) or our reading of a failure (killed from outside, disk
full) that no real tool can be made to produce on demand. Hostile inputs and the fuzz test are in
test_render_hostile.py."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import pytest

from common.errors import (
    InvalidInputError,
    PermanentError,
    RenderError,
    RenderLimitError,
    StorageFullError,
    ToolMissingError,
    TransientError,
)
from common.formats import parse_formats
from common.params import AUDIO_PROFILES, DEFAULT_FORMATS, FORMATS, AudioLevel
from common.render import stages, tool_run
from common.render.loudness import measure_wav
from common.render.midi import midi_duration_seconds
from common.render.pipeline import check_abc, rendered
from common.render.versions import tool_versions
from common.schemas import RenderInfo, TuneRecord
from common.settings import Settings

GOOD = """X:1
T:The Test Reel
M:4/4
L:1/8
Q:1/4={tempo}
K:D
|:dAFA dAFA|BGEG BGEG|dAFA dAFA|BGEF D2D2:|
|:fdad fdad|gece gece|fdad fdad|gecA d2d2:|
"""
#: 16 bars of 4/4 = 64 quarter notes: 32 s at 120 bpm.
GOOD_TUNE = GOOD.format(tempo=120)
#: The same tune at 8 bpm plays 480 s: under the default 600 s limit, seconds of timidity work.
LONG_TUNE = GOOD.format(tempo=8)

BROKEN_TUNE = """X:1
T:Broken
M:4/4
L:1/8
K:D
|:dAFA dA(FA|BGEG BG]EG|dA&FA d#AFA|BGEF D2D2:|
"""


@pytest.fixture
def settings() -> Settings:
    """Default settings, with every render field named so the environment cannot change them."""
    return Settings(
        abc2midi="abc2midi",
        timidity="timidity",
        abcm2ps="abcm2ps",
        timidity_config=Path("/etc/timidity/freepats.cfg"),
        render_timeout_s=60.0,
        render_cpu_s=60,
        render_memory_bytes=1 << 30,
        render_max_output_bytes=128 << 20,
        max_midi_seconds=600.0,
        synth="timidity",
        fluidsynth="fluidsynth",
        soundfont=Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
        loudness_normalise=True,
        loudness_target_lufs=-16.0,
        loudness_peak_dbfs=-1.0,
    )


#: Formats whose tool is optional on a machine (Debian packages flac, librsvg2-bin).
OPTIONAL_TOOLS = {"pdf": "rsvg-convert", "flac": "flac"}
#: Every format this machine can make.
AVAILABLE_FORMATS = tuple(
    fmt for fmt in FORMATS if fmt not in OPTIONAL_TOOLS or shutil.which(OPTIONAL_TOOLS[fmt])
)
needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None
    or not Path("/usr/share/sounds/sf2/FluidR3_GM.sf2").is_file(),
    reason="fluidsynth and fluid-soundfont-gm are not installed",
)


@pytest.fixture
def tmp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make render's temp directories appear under a directory the test can inspect."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _process_dead(pid: int, within_s: float = 2.0) -> bool:
    """Whether `pid` is gone, or a zombie waiting for a reaper (PID 1 here may not reap).

    SIGKILL is delivered asynchronously, so a process killed a moment ago gets a short while.
    """
    deadline = time.monotonic() + within_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def _started_pids(caplog: pytest.LogCaptureFixture, tool: str) -> list[int]:
    """Pids of the tool's runs, from render's debug log ("started ... (pid N) in ...")."""
    pids = []
    for record in caplog.records:
        message = record.getMessage()
        match = re.search(r"\(pid (\d+)\)", message)
        exe = message.split(" (pid ", 1)[0].rsplit(" -- ", 1)[-1].split(" ", 1)[0]
        if (
            record.name == "common.render.tool_run"
            and message.startswith("started")
            and tool in exe
        ):
            assert match is not None
            pids.append(int(match.group(1)))
    return pids


def _forking_tool(tmp_path: Path, exit_at_once: bool) -> tuple[Path, Path]:
    """A script standing in for timidity that leaves a grandchild (sleep) in its process group."""
    pid_file = tmp_path / "grandchild.pid"
    script = tmp_path / "forking-tool"
    script.write_text(
        "#!/bin/sh\n"
        "sleep 30 &\n"
        f"echo $! > {pid_file}\n" + ("exit 0\n" if exit_at_once else "wait\n")
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, pid_file


# --- formats --------------------------------------------------------------------------------


def test_parse_formats_is_canonical_and_always_has_abc() -> None:
    assert parse_formats("mp3, WAV,mid") == ("abc", "mid", "wav", "mp3")
    assert parse_formats("abc,mid,wav") == DEFAULT_FORMATS
    assert parse_formats("wav,wav") == ("abc", "wav")
    assert parse_formats("") == ("abc",)
    assert parse_formats(",".join(reversed(FORMATS))) == FORMATS


def test_parse_formats_rejects_unknown_and_lists_known() -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_formats("mid,aiff")
    message = str(info.value)
    assert "'aiff'" in message
    assert all(name in message for name in FORMATS)


def test_rendered_rejects_unknown_format(settings: Settings) -> None:
    with pytest.raises(InvalidInputError), rendered(GOOD_TUNE, ["midi"], settings):
        pass


# --- a good tune ----------------------------------------------------------------------------


def test_good_tune_renders_every_format(settings: Settings, tmp_root: Path) -> None:
    with rendered(GOOD_TUNE, AVAILABLE_FORMATS, settings) as result:
        assert list(result.files) == list(AVAILABLE_FORMATS)
        data = {fmt: path.read_bytes() for fmt, path in result.files.items()}
        workdir = result.files["abc"].parent
        assert all(path.parent == workdir for path in result.files.values())
        assert workdir.parent == tmp_root
        names = {path.name for path in result.files.values()}
        assert {f"tune.{fmt}" for fmt in AVAILABLE_FORMATS} == names

    assert data["abc"].decode() == GOOD_TUNE
    assert data["mid"].startswith(b"MThd")
    assert data["wav"].startswith(b"RIFF") and data["wav"][8:12] == b"WAVE"
    # 16-bit mono 24 kHz (the standard level): about 32 s of audio plus timidity's release.
    assert 30 * 24000 * 2 < len(data["wav"]) < 40 * 24000 * 2
    assert b"<svg" in data["svg"] and b"Test Reel" in data["svg"]
    assert data["ogg"].startswith(b"OggS")
    assert data["mp3"].startswith(b"ID3") or (data["mp3"][0] == 0xFF and data["mp3"][1] >= 0xE0)
    assert len(data["ogg"]) > 10_000 and len(data["mp3"]) > 10_000
    if "flac" in data:
        assert data["flac"].startswith(b"fLaC") and len(data["flac"]) > 100_000
    if "pdf" in data:
        assert data["pdf"].startswith(b"%PDF-") and data["pdf"].rstrip().endswith(b"%%EOF")
    assert result.midi_seconds is not None and 31.5 < result.midi_seconds < 33
    tools = {"flac": "flac", "pdf": "rsvg-convert"}
    assert set(result.seconds) == {"abc2midi", "abcm2ps", "timidity", "loudness", "oggenc"} | {
        "lame"
    } | {tools[fmt] for fmt in tools if fmt in AVAILABLE_FORMATS}
    assert result.synth == "timidity"
    assert not workdir.exists()
    assert list(tmp_root.iterdir()) == []


def test_wav_made_for_an_encoder_is_not_returned(settings: Settings) -> None:
    with rendered(GOOD_TUNE, ["ogg"], settings) as result:
        assert set(result.files) == {"abc", "ogg"}
        workdir = result.files["abc"].parent
        assert not (workdir / "tune.wav").exists()
        assert result.files["ogg"].read_bytes().startswith(b"OggS")


def test_abc_only_runs_no_tool(settings: Settings) -> None:
    no_tools = settings.model_copy(update={"abc2midi": "/nonexistent/abc2midi"})
    with rendered(GOOD_TUNE, ["abc"], no_tools) as result:
        assert set(result.files) == {"abc"}
        assert result.midi_seconds is None


def test_crlf_text_is_accepted(settings: Settings) -> None:
    with rendered(GOOD_TUNE.replace("\n", "\r\n"), ["mid"], settings) as result:
        assert b"\r" not in result.files["abc"].read_bytes()
        assert result.files["mid"].read_bytes().startswith(b"MThd")


# --- check_abc -------------------------------------------------------------------------------


def test_check_abc_accepts_good_tune(settings: Settings) -> None:
    result = check_abc(GOOD_TUNE, settings)
    assert result.ok
    assert result.errors == []


def test_check_abc_reports_abc2midis_own_error_lines(settings: Settings) -> None:
    result = check_abc(BROKEN_TUNE, settings)
    assert not result.ok
    assert "Error in line-char 6-31 : Unrecognized character: #" in result.errors
    assert all(line.startswith("Error") for line in result.errors)
    assert any(line.startswith("Warning in line-char") for line in result.warnings)


def test_check_abc_answers_refused_text_without_raising(settings: Settings) -> None:
    result = check_abc("X:1\nT:a\nK:C\nabc|\n\nX:2\nT:b\nK:C\ncde|\n", settings)
    assert not result.ok
    assert "one tune per file" in result.errors[0]
    assert not check_abc("", settings).ok


def test_broken_tune_fails_render_with_the_tools_words(settings: Settings) -> None:
    with pytest.raises(RenderError) as info, rendered(BROKEN_TUNE, DEFAULT_FORMATS, settings):
        pass
    assert not isinstance(info.value, RenderLimitError)
    assert info.value.tool == "abc2midi"
    assert "Error in line-char 6-31 : Unrecognized character: #" in str(info.value)
    assert "Error in line-char 6-31 : Unrecognized character: #" in info.value.detail


# --- refused input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "directive",
    ["%%abc-include {path}", "I:abc-include {path}", "[I:abc-include {path}]", "%%include {path}"],
)
def test_include_of_a_secret_is_refused(
    directive: str, settings: Settings, tmp_path: Path, tmp_root: Path
) -> None:
    secret = b"SECRET-7f3a9c-do-not-leak"
    secret_file = tmp_path / "secret.abc"
    secret_file.write_bytes(b"X:9\nT:" + secret + b"\nK:C\nabc|\n")
    tune = GOOD_TUNE.replace("K:D\n", "K:D\n" + directive.format(path=secret_file) + "\n")

    with pytest.raises(RenderError) as info, rendered(tune, FORMATS, settings):
        pytest.fail("an include directive reached the tools")
    assert "refused" in str(info.value)
    assert secret.decode() not in str(info.value) + info.value.detail
    check = check_abc(tune, settings)
    assert not check.ok
    assert secret.decode() not in " ".join(check.errors + check.warnings)
    # Refused before a directory was even made: no file anywhere can hold the secret.
    assert list(tmp_root.rglob("*")) == []


def test_two_tunes_are_refused(settings: Settings) -> None:
    two = GOOD_TUNE + "\n" + GOOD_TUNE.replace("X:1", "X:2")
    with pytest.raises(RenderError, match="one tune per file"), rendered(two, ["mid"], settings):
        pass


@pytest.mark.parametrize("text", ["", "  \n\n\t"])
def test_empty_text_is_refused(text: str, settings: Settings) -> None:
    with pytest.raises(RenderError, match="empty"), rendered(text, ["mid"], settings):
        pass


# --- limits ----------------------------------------------------------------------------------


def test_absurd_tempo_is_refused_before_timidity(settings: Settings) -> None:
    # 64 quarter notes at 4 bpm: 960 s. (Not 1 bpm: abc2midi writes 60,000,000 µs per quarter
    # into the 24-bit tempo field, which wraps to 9.67 s, so Q:1/4=1 plays "only" 619 s.)
    absurd = GOOD.format(tempo=4)
    # A timidity that does not exist proves it never ran: reaching it would be ToolMissingError.
    no_timidity = settings.model_copy(update={"timidity": "/nonexistent/timidity"})
    started = time.monotonic()
    with pytest.raises(RenderLimitError) as info, rendered(absurd, ["wav"], no_timidity):
        pass
    assert time.monotonic() - started < 2
    assert "961 s" in str(info.value) and "600 s" in str(info.value)


def test_timeout_kills_the_tool(
    settings: Settings, caplog: pytest.LogCaptureFixture, tmp_root: Path
) -> None:
    caplog.set_level(logging.DEBUG, logger="common.render.tool_run")
    fast = settings.model_copy(update={"render_timeout_s": 0.2})
    started = time.monotonic()
    with (
        pytest.raises(RenderLimitError, match=r"longer than 0\.2 s"),
        rendered(LONG_TUNE, ["wav"], fast, AudioLevel.HIFI),
    ):
        pass
    assert time.monotonic() - started < 2
    pids = _started_pids(caplog, "timidity")
    assert len(pids) == 1
    assert _group_gone(pids[0])
    assert list(tmp_root.iterdir()) == []


def test_timeout_kills_the_whole_process_group(settings: Settings, tmp_path: Path) -> None:
    script, pid_file = _forking_tool(tmp_path, exit_at_once=False)
    # The process group is the rlimits layer's guarantee (bwrap adds a pid namespace on top, see
    # test_sandbox.py), and the script reports its grandchild's pid through a file outside.
    fake = settings.model_copy(
        update={"timidity": str(script), "render_timeout_s": 0.5, "sandbox": "rlimits"}
    )
    with pytest.raises(RenderLimitError, match="longer than"), rendered(GOOD_TUNE, ["wav"], fake):
        pass
    grandchild = int(pid_file.read_text())
    assert _process_dead(grandchild)


def test_stray_children_are_killed_after_a_normal_exit(settings: Settings, tmp_path: Path) -> None:
    script, pid_file = _forking_tool(tmp_path, exit_at_once=True)
    fake = settings.model_copy(update={"timidity": str(script), "sandbox": "rlimits"})
    with pytest.raises(RenderError, match="wrote no wav file"), rendered(GOOD_TUNE, ["wav"], fake):
        pass
    assert _process_dead(int(pid_file.read_text()))


def test_cpu_limit(settings: Settings) -> None:
    # At hifi: a long tune at standard level takes timidity under a second of CPU.
    one_second = settings.model_copy(update={"render_cpu_s": 1})
    with (
        pytest.raises(RenderLimitError, match="CPU") as info,
        rendered(LONG_TUNE, ["wav"], one_second, AudioLevel.HIFI),
    ):
        pass
    assert info.value.tool == "timidity"


def test_output_size_limit(settings: Settings) -> None:
    small = settings.model_copy(update={"render_max_output_bytes": 200_000})
    with (
        pytest.raises(RenderLimitError, match="larger than 200000 bytes"),
        rendered(GOOD_TUNE, ["wav"], small),
    ):
        pass


def test_memory_limit(settings: Settings) -> None:
    tiny = settings.model_copy(update={"render_memory_bytes": 16 << 20})
    with pytest.raises(RenderError) as info, rendered(GOOD_TUNE, ["wav"], tiny):
        pass
    # How a program fails under RLIMIT_AS depends on where it first allocates (here: the
    # dynamic loader mapping a library), so only the kind of failure is pinned down.
    assert info.value.tool == "timidity"
    assert str(16 << 20) in str(info.value) or "memory" in str(info.value)


def test_wait_without_pidfd(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The polling fallback (no pidfd_open: old kernels, macOS) also reaps and kills."""
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    assert check_abc(GOOD_TUNE, settings).ok
    script, pid_file = _forking_tool(tmp_path, exit_at_once=False)
    fake = settings.model_copy(
        update={"timidity": str(script), "render_timeout_s": 0.3, "sandbox": "rlimits"}
    )
    with pytest.raises(RenderLimitError, match="longer than"), rendered(GOOD_TUNE, ["wav"], fake):
        pass
    assert _process_dead(int(pid_file.read_text()))


# --- the temp directory ----------------------------------------------------------------------


def test_temp_dir_removed_when_the_caller_fails(settings: Settings, tmp_root: Path) -> None:
    with pytest.raises(KeyError), rendered(GOOD_TUNE, ["mid"], settings) as result:
        assert result.files["mid"].exists()
        raise KeyError("caller failed")
    assert list(tmp_root.iterdir()) == []


def test_temp_dir_removed_when_a_tool_fails(settings: Settings, tmp_root: Path) -> None:
    with pytest.raises(RenderError), rendered(BROKEN_TUNE, ["mid"], settings):
        pass
    assert list(tmp_root.iterdir()) == []
    check_abc(BROKEN_TUNE, settings)
    assert list(tmp_root.iterdir()) == []


# --- missing tools ---------------------------------------------------------------------------


def test_missing_tool_names_the_package(settings: Settings) -> None:
    missing = settings.model_copy(update={"abc2midi": "/nonexistent/abc2midi"})
    with pytest.raises(ToolMissingError, match="abcmidi"):
        check_abc(GOOD_TUNE, missing)


def test_missing_soundfont_config_names_the_package(settings: Settings, tmp_path: Path) -> None:
    missing = settings.model_copy(update={"timidity_config": tmp_path / "none.cfg"})
    with pytest.raises(ToolMissingError, match="freepats"), rendered(GOOD_TUNE, ["wav"], missing):
        pass


def test_full_disk_on_our_own_writes_is_transient(tmp_path: Path) -> None:
    with pytest.raises(StorageFullError), tool_run.storage_guard("writing a test file"):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(PermissionError), tool_run.storage_guard("writing a test file"):
        raise PermissionError(errno.EACCES, "denied")


# --- versions --------------------------------------------------------------------------------


def test_tool_versions(settings: Settings) -> None:
    versions = tool_versions(settings)
    assert re.fullmatch(r"\d+\.\d+.*", versions["abc2midi"])
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", versions["timidity"])
    assert "abcm2ps" in versions
    versions["abc2midi"] = "tampered"
    assert tool_versions(settings)["abc2midi"] != "tampered"  # callers get a copy of the cache


# --- midi_duration_seconds ----------------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack(">I", len(body)) + body


def _smf(fmt: int, division: int, *tracks: bytes) -> bytes:
    header = _chunk(b"MThd", struct.pack(">HHH", fmt, len(tracks), division))
    return header + b"".join(_chunk(b"MTrk", t) for t in tracks)


def _tempo(us: int) -> bytes:
    return b"\xff\x51\x03" + us.to_bytes(3, "big")


END = b"\x00\xff\x2f\x00"


def test_midi_duration_default_tempo() -> None:
    # One note of 960 ticks at 480 per quarter and the default 120 bpm: 1 s.
    track = b"\x00\x90\x3c\x40" + b"\x87\x40\x80\x3c\x00" + END
    assert midi_duration_seconds(_smf(0, 480, track)) == pytest.approx(1.0)


def test_midi_duration_tempo_change_mid_file_in_another_track() -> None:
    # Track 0: tempo 0.5 s per quarter, then 0.25 s per quarter from tick 960, ends at 960.
    conductor = b"\x00" + _tempo(500_000) + b"\x87\x40" + _tempo(250_000) + END
    # Track 1: notes with running status, lasting to tick 2400 (0x92 0x60 = 2400 as a VLQ).
    notes = b"\x00\x90\x3c\x40" + b"\x92\x60\x3c\x00" + END
    # 960 ticks at 0.5 s + 1440 ticks at 0.25 s per 480 ticks = 1.0 + 0.75 s.
    assert midi_duration_seconds(_smf(1, 480, conductor, notes)) == pytest.approx(1.75)
    # A tempo change in the last track applies to every track.
    late = b"\x00\x90\x3c\x40" + b"\x87\x40" + _tempo(1_000_000) + b"\x87\x40\x80\x3c\x00" + END
    assert midi_duration_seconds(_smf(1, 480, END, late)) == pytest.approx(1.0 + 2.0)


def test_midi_duration_format_2_plays_tracks_in_turn() -> None:
    one_second = b"\x00" + _tempo(500_000) + b"\x87\x40\xff\x2f\x00"
    assert midi_duration_seconds(_smf(2, 480, one_second, one_second)) == pytest.approx(2.0)


def test_midi_duration_smpte_division_and_alien_chunks() -> None:
    division = ((256 - 25) << 8) | 40  # 25 frames/s x 40 ticks/frame = 1000 ticks/s
    track = b"\x87\x68\xff\x2f\x00"  # 1000 ticks
    data = _smf(0, division, track)
    alien = _chunk(b"XYZW", b"ignored")
    data = data[:14] + alien + data[14:]
    assert midi_duration_seconds(data) == pytest.approx(1.0)


def test_midi_duration_of_abc2midis_file(settings: Settings) -> None:
    with rendered(GOOD_TUNE, ["mid"], settings) as result:
        seconds = midi_duration_seconds(result.files["mid"].read_bytes())
    assert seconds == result.midi_seconds
    assert 31.5 < seconds < 33


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "no MThd"),
        (b"RIFF\x00\x00\x00\x04WAVE", "no MThd"),
        (b"MThd\x00\x00\x00\x06\x00\x00", "header chunk"),
        (_smf(0, 480, END)[:-2], "runs past the file"),
        (_smf(0, 0, END), "zero ticks"),
        (_smf(0, 480, b"\x00\x3c\x40" + END), "data byte without a status"),
        (_smf(0, 480, b"\xff\xff\xff\xff\xff\x90\x3c\x40" + END), "longer than 4 bytes"),
        (_smf(0, 480, b"\x00\xff\x51\x02\x07\xa1" + END), "tempo event of 2 bytes"),
        (_smf(0, 480, b"\x00\x90\x3c"), "runs past its track"),
        (
            _chunk(b"MThd", struct.pack(">HHH", 1, 2, 480)) + _chunk(b"MTrk", END),
            "declares 2 tracks but 1 found",
        ),
        (_smf(0, ((256 - 23) << 8) | 40, END), "SMPTE"),
    ],
)
def test_midi_duration_rejects_malformed_data(data: bytes, why: str) -> None:
    with pytest.raises(RenderError, match=why):
        midi_duration_seconds(data)


# --- synthesisers and loudness ------------------------------------------------------------------


def test_wav_is_normalised_to_the_target_or_the_peak_ceiling(settings: Settings) -> None:
    with rendered(GOOD_TUNE, ["wav"], settings) as result:
        measured = measure_wav(result.files["wav"])
    norm = result.loudness
    assert norm is not None
    # The synth's raw level is far below the target (that is why we normalise).
    assert norm.before.integrated_lufs < -20 and norm.gain_db > 3
    # One gain: the target is met unless the peak ceiling stopped it first.
    on_target = abs(measured.integrated_lufs - settings.loudness_target_lufs) < 0.05
    at_ceiling = abs(measured.peak_dbfs - settings.loudness_peak_dbfs) < 0.05
    assert on_target or at_ceiling
    assert measured.peak_dbfs <= settings.loudness_peak_dbfs + 0.01
    assert measured.integrated_lufs == pytest.approx(norm.after_lufs, abs=0.05)


def test_loudness_normalisation_can_be_turned_off(settings: Settings) -> None:
    raw = settings.model_copy(update={"loudness_normalise": False})
    with rendered(GOOD_TUNE, ["wav"], raw) as result:
        measured = measure_wav(result.files["wav"])
    assert result.loudness is None and "loudness" not in result.seconds
    assert measured.peak_dbfs < -10  # timidity's own, quiet level


def test_encoders_get_the_normalised_wav(settings: Settings, tmp_path: Path) -> None:
    """FLAC is lossless, so decoding it shows exactly which WAV the encoders were given."""
    if shutil.which("flac") is None:
        pytest.skip("flac is not installed")
    with rendered(GOOD_TUNE, ["wav", "flac"], settings) as result:
        wav = measure_wav(result.files["wav"])
        decoded = tmp_path / "decoded.wav"
        subprocess.run(
            ["flac", "--silent", "-d", "-o", str(decoded), str(result.files["flac"])], check=True
        )
    assert measure_wav(decoded) == wav
    assert result.loudness is not None and result.loudness.gain_db > 3


def _vorbis_channels_and_rate(ogg: bytes) -> tuple[int, int]:
    """From an Ogg Vorbis file's identification header: 0x01 "vorbis", version, channels, rate."""
    at = ogg.index(b"\x01vorbis") + 7
    channels, rate = struct.unpack_from("<xxxxBI", ogg, at)
    return channels, rate


@pytest.mark.parametrize(
    "synth",
    ["timidity", pytest.param("fluidsynth", marks=needs_fluidsynth)],
)
@pytest.mark.parametrize("level", list(AudioLevel))
def test_an_audio_level_sets_channels_rate_and_loudness(
    settings: Settings, level: AudioLevel, synth: str
) -> None:
    """Every level reaches the loudness target in WAV and Ogg alike; fluidsynth, which only writes
    stereo, gets its mono mixed down while normalised."""
    profile = AUDIO_PROFILES[level]
    conf = settings.model_copy(update={"synth": synth})
    with rendered(GOOD_TUNE, ["wav", "ogg"], conf, level) as result:
        with wave.open(str(result.files["wav"])) as wav:
            params = wav.getparams()
        measured = measure_wav(result.files["wav"])
        ogg = _vorbis_channels_and_rate(result.files["ogg"].read_bytes())
    assert (params.nchannels, params.framerate, params.sampwidth) == (
        profile.channels, profile.sample_rate, 2,
    )  # fmt: skip
    assert ogg == (profile.channels, profile.sample_rate)
    assert 30 < params.nframes / params.framerate < 40  # the whole tune, at any rate
    assert measured.peak_dbfs <= settings.loudness_peak_dbfs + 0.01
    on_target = abs(measured.integrated_lufs - settings.loudness_target_lufs) < 0.05
    assert on_target or abs(measured.peak_dbfs - settings.loudness_peak_dbfs) < 0.05


@needs_fluidsynth
def test_fluidsynth_is_mixed_down_to_mono_without_normalisation(settings: Settings) -> None:
    raw = settings.model_copy(update={"synth": "fluidsynth", "loudness_normalise": False})
    with rendered(GOOD_TUNE, ["wav"], raw) as result:
        with wave.open(str(result.files["wav"])) as wav:
            assert (wav.getnchannels(), wav.getframerate()) == (1, 24000)
        assert measure_wav(result.files["wav"]).peak_dbfs < -10  # no gain: fluidsynth's own level
    assert result.loudness is None


def test_standard_is_the_default_and_smaller_than_hifi(settings: Settings) -> None:
    with rendered(GOOD_TUNE, ["wav"], settings) as standard:
        default_size = standard.files["wav"].stat().st_size
    with rendered(GOOD_TUNE, ["wav"], settings, AudioLevel.HIFI) as hifi:
        hifi_size = hifi.files["wav"].stat().st_size
    # Mono at 24 kHz against stereo at 44.1 kHz: 24 / (2 * 44.1) of the bytes.
    assert default_size / hifi_size == pytest.approx(24 / 88.2, rel=0.01)


@needs_fluidsynth
def test_fluidsynth_renders_with_the_gm_soundfont(settings: Settings) -> None:
    fluid = settings.model_copy(update={"synth": "fluidsynth"})
    with rendered(GOOD_TUNE, ["wav", "ogg"], fluid, AudioLevel.HIFI) as result:
        wav = result.files["wav"].read_bytes()
        assert wav.startswith(b"RIFF") and result.files["ogg"].read_bytes().startswith(b"OggS")
        measured = measure_wav(result.files["wav"])
    assert result.synth == "fluidsynth" and "fluidsynth" in result.seconds
    assert "timidity" not in result.seconds
    assert 30 * 44100 * 4 < len(wav) < 40 * 44100 * 4
    assert result.loudness is not None and result.loudness.before.peak_dbfs < -15
    assert measured.peak_dbfs <= -0.99


@needs_fluidsynth
def test_fluidsynth_works_under_a_small_file_size_limit(settings: Settings) -> None:
    """fluidsynth links SDL, which probes PulseAudio and sizes a 64 MB shared-memory file at
    start-up unless told there is no sound device (``SDL_AUDIODRIVER=dummy``): under
    RLIMIT_FSIZE that file would be a SIGXFSZ."""
    small = settings.model_copy(update={"synth": "fluidsynth", "render_max_output_bytes": 16 << 20})
    with rendered(GOOD_TUNE, ["wav"], small, AudioLevel.HIFI) as result:
        assert result.files["wav"].stat().st_size > 5_000_000
    assert "fluidsynth" in tool_versions(small)


def test_missing_soundfont_names_its_package(settings: Settings, tmp_path: Path) -> None:
    fluid = settings.model_copy(update={"synth": "fluidsynth", "soundfont": tmp_path / "x.sf2"})
    if shutil.which("fluidsynth") is None:
        with (
            pytest.raises(ToolMissingError, match="fluidsynth"),
            rendered(GOOD_TUNE, ["wav"], fluid),
        ):
            pass
        return
    with (
        pytest.raises(ToolMissingError, match="fluid-soundfont-gm"),
        rendered(GOOD_TUNE, ["wav"], fluid),
    ):
        pass


def test_svg_made_only_for_the_pdf_is_not_returned(settings: Settings) -> None:
    if shutil.which("rsvg-convert") is None:
        pytest.skip("rsvg-convert (librsvg2-bin) is not installed")
    with rendered(GOOD_TUNE, ["pdf"], settings) as result:
        assert set(result.files) == {"abc", "pdf"}
        assert not (result.files["abc"].parent / "tune.svg").exists()
        assert result.files["pdf"].read_bytes().startswith(b"%PDF-")
    assert set(result.seconds) == {"abcm2ps", "rsvg-convert"}


def test_tool_versions_describe_synth_and_loudness(settings: Settings) -> None:
    versions = tool_versions(settings)
    assert versions["synth"] == "timidity with /etc/timidity/freepats.cfg"
    assert versions["loudness"].startswith("-16 LUFS")
    fluid = settings.model_copy(update={"synth": "fluidsynth", "loudness_normalise": False})
    versions = tool_versions(fluid)
    assert versions["synth"].startswith("fluidsynth with ") and versions["loudness"].startswith(
        "off"
    )
    for tool in ("flac", "fluidsynth", "rsvg-convert"):
        if shutil.which(tool):
            assert re.fullmatch(r"\d+\.\d+(\.\d+)?", versions[tool]), tool


# --- how failures are classified -----------------------------------------------------------------


def _fake_tool(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake-timidity"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_a_bad_tune_is_permanent_and_keeps_the_tools_words(settings: Settings) -> None:
    with pytest.raises(RenderError) as info, rendered(BROKEN_TUNE, ["wav"], settings):
        pass
    assert isinstance(info.value, PermanentError)
    assert not isinstance(info.value, TransientError)
    assert "Unrecognized character: #" in str(info.value)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
def test_a_tool_killed_from_outside_is_transient(
    signum: int, settings: Settings, tmp_path: Path, tmp_root: Path
) -> None:
    """A signal that is not one of our limits (an operator, the OOM killer) says nothing about
    the tune: the job is worth retrying, and the worker (this process) lives on."""
    fake = _fake_tool(tmp_path, f"kill -{signal.Signals(signum).name[3:]} $$\nsleep 5")
    killed = settings.model_copy(update={"timidity": str(fake)})
    # A test run started in the background (`cmd &`) inherits SIGINT ignored, and so would the
    # fake tool: give this process a handler, which exec resets to the default in the child.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with (
            pytest.raises(TransientError, match=signal.Signals(signum).name) as info,
            rendered(GOOD_TUNE, ["wav"], killed),
        ):
            pass
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not isinstance(info.value, PermanentError)
    assert list(tmp_root.iterdir()) == []


def test_a_tool_that_finds_the_disk_full_is_transient(settings: Settings, tmp_path: Path) -> None:
    fake = _fake_tool(tmp_path, "echo 'tune.wav: No space left on device' >&2\nexit 1")
    full = settings.model_copy(update={"timidity": str(fake)})
    with pytest.raises(StorageFullError, match="No space left"), rendered(GOOD_TUNE, ["wav"], full):
        pass


def test_our_own_write_on_a_full_disk_is_transient(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(stages, "normalise_wav", no_space)
    with (
        pytest.raises(StorageFullError, match="normalising"),
        rendered(GOOD_TUNE, ["wav"], settings),
    ):
        pass


def test_render_info_for_the_tune_record(settings: Settings) -> None:
    with rendered(GOOD_TUNE, ["wav"], settings) as result:
        info = result.info()
    assert info.synth == "timidity"
    assert info.loudness_lufs is not None and info.loudness_lufs < -20
    assert info.gain_db is not None and info.gain_db > 3
    assert set(info.seconds) == {"abc2midi", "timidity", "loudness"}
    assert (
        TuneRecord.model_validate_json(
            TuneRecord(
                batch_id="b20261125-093500-0a1b2c", tune_id="t000000", index=0, render=info
            ).model_dump_json()
        ).render
        == info
    )
    with rendered(GOOD_TUNE, ["abc"], settings) as result:
        assert result.info() == RenderInfo()


def test_limits_hold_without_prlimit(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where prlimit(1) is missing the limits are set by a preexec_fn instead: same results."""
    monkeypatch.setattr(tool_run, "prlimit_path", lambda: None)
    assert check_abc(GOOD_TUNE, settings).ok
    one_second = settings.model_copy(update={"render_cpu_s": 1})
    with (
        pytest.raises(RenderLimitError, match="CPU"),
        rendered(LONG_TUNE, ["wav"], one_second, AudioLevel.HIFI),
    ):
        pass
    small = settings.model_copy(update={"render_max_output_bytes": 200_000})
    with (
        pytest.raises(RenderLimitError, match="larger than 200000"),
        rendered(GOOD_TUNE, ["wav"], small),
    ):
        pass


def test_tools_run_under_prlimit_when_it_exists(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    if tool_run.prlimit_path() is None:
        pytest.skip("prlimit (util-linux) is not installed")
    caplog.set_level(logging.DEBUG, logger="common.render.tool_run")
    assert check_abc(GOOD_TUNE, settings).ok
    started = [r.getMessage() for r in caplog.records if r.getMessage().startswith("started")]
    assert len(started) == 1
    assert "prlimit --cpu=60:61 --as=1073741824:1073741824" in started[0]
    assert "-- /usr/bin/abc2midi tune.abc" in started[0]
