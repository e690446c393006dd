"""The render tools' jail (common/render/sandbox.py) with the real bubblewrap, and its modes.

Each test runs a stand-in "tool" (a shell or python3 one-liner from /usr/bin) through
`common.render.tool_run.run_tool`, exactly as render runs abc2midi, and looks at what it could do.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import RenderError, ToolMissingError
from common.formats import Tool
from common.render import sandbox
from common.render.pipeline import check_abc, rendered
from common.render.sandbox import UNJAILED, jail_for, require
from common.render.tool_run import Completed, Limits, run_tool
from common.settings import Settings

SH = Tool("sh", "dash", None)
LIMITS = Limits(timeout_s=10.0, cpu_s=10, memory_bytes=1 << 30, max_output_bytes=1 << 20)
TUNE = "X:1\nT:Jailed\nM:4/4\nL:1/8\nK:D\n|:dAFA dAFA|BGEG BGEG:|\n"


def _bwrap_works() -> bool:
    try:
        return require(Settings(sandbox="bwrap")) == "bwrap"
    except ToolMissingError:
        return False


needs_bwrap = pytest.mark.skipif(not _bwrap_works(), reason="bubblewrap cannot run here")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def secret(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "private" / "secret.txt"
    path.parent.mkdir()
    path.write_text(f"token-{uuid.uuid4()}\n")
    yield path


def _sh(script: str, workdir: Path, mode: str = "bwrap") -> Completed:
    exe = shutil.which("sh")
    assert exe is not None
    jail = jail_for(Settings(sandbox=mode), exe)  # type: ignore[arg-type]
    return run_tool(SH, exe, ["-c", script], workdir, LIMITS, jail)


@needs_bwrap
def test_the_tool_sees_only_its_directory_and_system_files(workdir: Path, secret: Path) -> None:
    (workdir / "tune.abc").write_text(TUNE)
    run = _sh(
        f"cat tune.abc; cat {secret}; ls /; ls /tmp; ls {Path.home()}; ls /work; "
        "cat /etc/passwd; echo made > out.txt",
        workdir,
    )
    assert "T:Jailed" in run.output  # its own directory, read-write
    assert (workdir / "out.txt").read_text() == "made\n"
    assert secret.read_text().strip() not in run.output
    assert "No such file" in run.output
    root = set(_sh("ls /", workdir).output.split())
    assert {"usr", "proc", "dev", "tmp"} <= root
    assert not {"home", "root", "work", "srv", "mnt", "opt"} & root
    assert _sh("ls /var", workdir).output.split() == ["cache"]  # fontconfig's, read-only


@needs_bwrap
def test_the_system_is_read_only(workdir: Path) -> None:
    run = _sh("touch /usr/owned 2>&1; touch /tmp/x && echo tmp-ok", workdir)
    assert "Read-only file system" in run.output
    assert "tmp-ok" in run.output  # a private tmpfs, gone with the jail
    assert not Path("/usr/owned").exists()


@needs_bwrap
def test_no_network(workdir: Path) -> None:
    python = shutil.which("python3", path="/usr/bin")
    if python is None:
        pytest.skip("no /usr/bin/python3 to play a tool that connects")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        probe = (
            f"import socket\ntry:\n socket.create_connection(('127.0.0.1', {port}), 2)\n"
            " print('CONNECTED')\nexcept OSError as e:\n print('refused', e)\n"
        )
        jail = jail_for(Settings(sandbox="bwrap"), python)
        run = run_tool(Tool("python3", "python3", None), python, ["-c", probe], workdir, LIMITS,
                       jail)  # fmt: skip
    assert "CONNECTED" not in run.output and "refused" in run.output
    devices = _sh("cat /proc/net/dev", workdir).output
    assert "lo:" in devices and "eth" not in devices


@needs_bwrap
def test_a_crash_inside_the_jail_is_a_crash(workdir: Path) -> None:
    with pytest.raises(RenderError, match="crashed \\(SIGSEGV\\)"):
        _sh("kill -SEGV $$", workdir)


@needs_bwrap
def test_nothing_outlives_the_jail(workdir: Path) -> None:
    marker = str(3000 + os.getpid() % 1000)
    _sh(f"sleep {marker} & echo started", workdir)
    time.sleep(0.2)
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    assert left.stdout.strip() == ""


@needs_bwrap
def test_a_timeout_kills_the_jail_and_its_tool(workdir: Path) -> None:
    exe = shutil.which("sh")
    assert exe is not None
    marker = str(4000 + os.getpid() % 1000)
    quick = Limits(timeout_s=0.3, cpu_s=10, memory_bytes=1 << 30, max_output_bytes=1 << 20)
    started = time.monotonic()
    with pytest.raises(RenderError, match=r"longer than 0\.3 s"):
        run_tool(SH, exe, ["-c", f"sleep {marker}"], workdir, quick,
                 jail_for(Settings(sandbox="bwrap"), exe))  # fmt: skip
    assert time.monotonic() - started < 3
    time.sleep(0.2)
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    assert left.stdout.strip() == ""


def test_rlimits_mode_does_not_isolate(workdir: Path, secret: Path) -> None:
    """The explicit opt-out: limits only; the tool reads what the worker can read."""
    assert jail_for(Settings(sandbox="rlimits")) is UNJAILED
    assert secret.read_text().strip() in _sh(f"cat {secret}", workdir, "rlimits").output


def _broken_bwrap(tmp_path: Path) -> str:
    """A 'bwrap' that cannot create namespaces, as in a container that forbids them."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return str(fake)


def test_bwrap_mode_fails_loudly_where_bwrap_cannot_run(tmp_path: Path) -> None:
    for bwrap in (_broken_bwrap(tmp_path), str(tmp_path / "no-such-bwrap")):
        settings = Settings(sandbox="bwrap", bwrap=bwrap)
        with pytest.raises(ToolMissingError, match="TUNEBATCH_SANDBOX=rlimits"):
            require(settings)
        with pytest.raises(ToolMissingError, match="bubblewrap"):
            check_abc(TUNE, settings)


def test_auto_mode_falls_back_to_rlimits_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(sandbox="auto", bwrap=_broken_bwrap(tmp_path))
    sandbox._warn_unisolated.cache_clear()
    with caplog.at_level(logging.WARNING, logger="common.render.sandbox"):
        assert require(settings) == "rlimits"
        assert check_abc(TUNE, settings).ok
    assert "WITHOUT filesystem or network isolation" in caplog.text
    assert "No permissions to create new namespace" in caplog.text


@needs_bwrap
def test_auto_mode_isolates_where_bwrap_runs() -> None:
    assert require(Settings(sandbox="auto")) == "bwrap"
    assert jail_for(Settings(sandbox="auto")).mode == "bwrap"


@needs_bwrap
@pytest.mark.parametrize("synth", ["timidity", "fluidsynth"])
def test_every_tool_renders_inside_the_jail(synth: str) -> None:
    if synth == "fluidsynth" and not Path("/usr/share/sounds/sf2/FluidR3_GM.sf2").exists():
        pytest.skip("no GM soundfont")
    settings = Settings(sandbox="bwrap", synth=synth)  # type: ignore[arg-type]
    formats = ["abc", "mid", "wav", "svg", "ogg", "mp3"]
    formats += [f for f, tool in (("pdf", "rsvg-convert"), ("flac", "flac")) if shutil.which(tool)]
    with rendered(TUNE, formats, settings) as result:
        assert sorted(result.files) == sorted(formats)
        assert all(path.stat().st_size > 0 for path in result.files.values())


def test_exit_status_of_a_jailed_signal_maps_back() -> None:
    jail = sandbox.Jail(bwrap="/usr/bin/bwrap")
    assert jail.exit_signal(128 + signal.SIGSEGV) == signal.SIGSEGV
    assert jail.exit_signal(1) is None
    assert UNJAILED.exit_signal(139) is None
