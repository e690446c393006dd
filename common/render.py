"""Turn one ABC tune into files: the only place in tunebatch that runs external programs.

A render is abc2midi (ABC → MIDI), then a synthesiser (MIDI → WAV: timidity with freepats by
default, or fluidsynth with a General MIDI soundfont, ``TUNEBATCH_SYNTH``), the WAV's loudness
normalised in-process (`common.loudness`), and optionally abcm2ps (ABC → SVG score), rsvg-convert
(SVG → PDF), oggenc (WAV → Ogg Vorbis), lame (WAV → MP3) and flac (WAV → FLAC). The tune text
comes from a model or from a user, so every tool is treated as something that may misbehave on it:

* **No shell, no user text in argv.** Argument lists are fixed; the tune only ever reaches a tool
  as the file ``tune.abc`` that we wrote into a fresh private directory. Text that would make a
  tool read other files (include / PostScript / format directives) is refused before any tool
  sees it (`common.abc_notation.unsafe_reason`), and so is a text holding more than one tune,
  because abc2midi and abcm2ps then write one file per tune under names we do not choose.
* **A sandbox per run.** Each tool runs in the tune's directory, with a minimal environment
  (``HOME`` and ``TMPDIR`` point into that directory, so no dotfile of the worker's user is read
  and no stray temp file outlives the render), stdin closed, in its own session / process group,
  and with CPU, address-space, file-size and core-dump rlimits set before ``exec``.
  A wall-clock timeout kills the whole process group.
* **Success is judged by the output file**, not by the exit code: abc2midi exits 0 after printing
  ``Error in line-char ...`` and abcm2ps exits 1 after writing a perfectly good SVG. A file must
  exist, be non-empty and start with its format's magic bytes.
* **Errors are classified** so the job system does the right thing: the tool's verdict on the tune
  is a `RenderError` and a limit it ran into is a `RenderLimitError` (both permanent: retrying the
  same tune gives the same result); a tool killed by something other than our limits, or a full
  disk, is transient (`TransientError`, `StorageFullError`) and worth another attempt; a missing
  binary is a `ToolMissingError` naming the Debian package to install. The tool's own words are
  kept verbatim (trimmed) in the message and in ``detail``, so people see what abc2midi said.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from common.abc_notation import unsafe_reason
from common.errors import (
    ConfigError,
    InvalidInputError,
    RenderError,
    RenderLimitError,
    StorageFullError,
    ToolMissingError,
    TransientError,
)
from common.loudness import Normalisation, normalise_wav
from common.schemas import RenderInfo
from common.settings import Settings

logger = logging.getLogger(__name__)

#: Every format a render can produce, in the canonical order used everywhere (CLI, manifests).
FORMATS: tuple[str, ...] = ("abc", "mid", "wav", "svg", "pdf", "ogg", "mp3", "flac")
#: What a batch renders when the user names nothing: the tune, something to play, something to hear.
DEFAULT_FORMATS: tuple[str, ...] = ("abc", "mid", "wav")

#: Name of the tune inside its private directory; tools only ever see this fixed name.
TUNE_FILE = "tune.abc"

_NEEDS_MIDI = frozenset({"mid", "wav", "ogg", "mp3", "flac"})
_NEEDS_WAV = frozenset({"wav", "ogg", "mp3", "flac"})
_NEEDS_SVG = frozenset({"svg", "pdf"})

#: A RIFF/WAVE header alone is 44 bytes: timidity writes exactly that for input it cannot play.
_WAV_HEADER_BYTES = 44
#: How much of a tool's combined stdout/stderr we read back; the rest is summarised.
_LOG_READ_BYTES = 256 * 1024
#: Longest tool output kept in an error's ``detail``, and in its one-line message.
_DETAIL_CHARS = 4000
_MESSAGE_CHARS = 600
#: Less free space than this after a tool failed means the failure was most likely the disk.
_DISK_FULL_BYTES = 1 << 20
#: abcm2ps's output buffer in KiB (``-k``): its default overflows on tunes of ~50 dense lines
#: with ``-g`` (measured with abcm2ps 8.14.14), well within what corpora and the sampler produce.
_ABCM2PS_BUFFER_KIB = "1024"

_X_LINE = re.compile(r"^X:", re.MULTILINE)
_ERROR_LINE = re.compile(r"^\s*(error|failed)\b", re.IGNORECASE)
_WARNING_LINE = re.compile(r"^\s*warning\b", re.IGNORECASE)
_OUT_OF_MEMORY = re.compile(
    r"cannot allocate memory|out of memory|failed to map segment|memory exhausted|bad_alloc",
    re.IGNORECASE,
)
_NO_SPACE = re.compile(r"no space left on device|disk quota exceeded", re.IGNORECASE)

#: Signals with which a program dies of its own bug (or of a failed allocation under our
#: address-space limit). Feeding it the same tune again gives the same crash: permanent.
_CRASH_SIGNALS = frozenset(
    {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT, signal.SIGSYS}
)


# --------------------------------------------------------------------------------------------
# Public results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """abc2midi's verdict on one tune.

    ``ok`` means abc2midi produced a MIDI file *and* printed no error line: abc2midi writes a
    file even for badly broken tunes, so the file alone proves nothing.
    """

    ok: bool
    errors: list[str]
    warnings: list[str]


@dataclass
class RenderResult:
    """The files of one rendered tune, valid only inside the `rendered` context."""

    files: dict[str, Path]
    warnings: list[str]
    midi_seconds: float | None
    #: Wall seconds per stage ("abc2midi", "timidity", ...), for logs and benchmarks.
    seconds: dict[str, float] = field(default_factory=dict)
    #: The synthesiser that made the WAV ("timidity" or "fluidsynth"); None when no audio.
    synth: str | None = None
    #: The WAV's loudness before and the gain applied; None when no audio or not normalised.
    loudness: Normalisation | None = None

    def info(self) -> RenderInfo:
        """What a tune record keeps of this render (`TuneRecord.render`), JSON-safe.

        Silence has a loudness of -inf, which JSON cannot hold: it is recorded as unknown.
        """
        measured = self.loudness.before.integrated_lufs if self.loudness else None
        return RenderInfo(
            synth=self.synth,
            midi_seconds=self.midi_seconds,
            loudness_lufs=measured if measured is not None and math.isfinite(measured) else None,
            gain_db=self.loudness.gain_db if self.loudness else None,
            seconds={stage: round(secs, 4) for stage, secs in self.seconds.items()},
        )


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------


def parse_formats(text: str) -> tuple[str, ...]:
    """Parse ``"mid,wav"`` (as typed on a command line) into a canonical tuple of formats.

    The result is ordered as `FORMATS` and always holds ``abc``: the tune text is the artifact
    every other format is derived from, so it is never left out.
    """
    names = [part.strip().lower() for part in text.split(",")]
    return _canonical_formats([name for name in names if name])


def _canonical_formats(formats: Sequence[str]) -> tuple[str, ...]:
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


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tool:
    """An external program: the name people know, its Debian package, its Settings field."""

    name: str
    package: str
    setting: str | None


_ABC2MIDI = _Tool("abc2midi", "abcmidi", "abc2midi")
_TIMIDITY = _Tool("timidity", "timidity", "timidity")
_ABCM2PS = _Tool("abcm2ps", "abcm2ps", "abcm2ps")
_FLUIDSYNTH = _Tool("fluidsynth", "fluidsynth", "fluidsynth")
# The encoders have no Settings field: they are only ever found on PATH.
_OGGENC = _Tool("oggenc", "vorbis-tools", None)
_LAME = _Tool("lame", "lame", None)
_FLAC = _Tool("flac", "flac", None)
_RSVG = _Tool("rsvg-convert", "librsvg2-bin", None)


def _resolve(tool: _Tool, configured: str) -> str:
    """Absolute path of the tool's binary, or a `ToolMissingError` that says how to get it.

    Resolved here, in the parent, rather than left to ``exec``: the child's PATH is the same,
    but an absolute argv[0] makes logs unambiguous and a missing tool a clear error up front.
    """
    found = shutil.which(configured)
    if found is None:
        how = f"install the Debian package '{tool.package}'"
        if tool.setting is not None:
            how += f" or set TUNEBATCH_{tool.setting.upper()} to its path"
        raise ToolMissingError(f"{tool.name} not found (looked for {configured!r}); {how}")
    return str(Path(found).absolute())


@dataclass(frozen=True)
class _Limits:
    """Resource limits of one tool run (see `_sandbox_preexec`)."""

    timeout_s: float
    cpu_s: int
    memory_bytes: int
    max_output_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> _Limits:
        return cls(
            timeout_s=settings.render_timeout_s,
            cpu_s=settings.render_cpu_s,
            memory_bytes=settings.render_memory_bytes,
            max_output_bytes=settings.render_max_output_bytes,
        )


#: Limits for `tool_versions` probes, which have no Settings to hand (they are cached per path).
_PROBE_LIMITS = _Limits(timeout_s=10.0, cpu_s=10, memory_bytes=1 << 30, max_output_bytes=1 << 20)


def _rlimit_pairs(limits: _Limits) -> tuple[tuple[int, int, int], ...]:
    """(resource, soft, hard) triples, clamped to what this process may grant.

    Computed in the parent so the child does nothing but call setrlimit. Raising a limit above
    the inherited hard limit fails with EPERM, and an exception in preexec_fn aborts the spawn,
    so each value is clamped to the current hard limit. A value <= 0 means "no limit".
    RLIMIT_NPROC is deliberately not set: it counts every process of the user across the
    machine (all workers share one uid) and root ignores it anyway.
    """

    def clamp(res: int, soft: int, hard: int) -> tuple[int, int, int]:
        _, current_hard = resource.getrlimit(res)
        if current_hard != resource.RLIM_INFINITY:
            soft = current_hard if soft == resource.RLIM_INFINITY else min(soft, current_hard)
            hard = current_hard if hard == resource.RLIM_INFINITY else min(hard, current_hard)
        return res, soft, hard

    def limit(value: int) -> int:
        return value if value > 0 else resource.RLIM_INFINITY

    # RLIMIT_CPU: at the soft limit the kernel sends SIGXCPU, at the hard limit SIGKILL; one
    # second between them lets a tool die of the recognisable signal first.
    return (
        clamp(resource.RLIMIT_CPU, limit(limits.cpu_s), limit(limits.cpu_s + 1)),
        clamp(resource.RLIMIT_AS, limit(limits.memory_bytes), limit(limits.memory_bytes)),
        clamp(
            resource.RLIMIT_FSIZE, limit(limits.max_output_bytes), limit(limits.max_output_bytes)
        ),
        clamp(resource.RLIMIT_CORE, 0, 0),
    )


_PRLIMIT_NAMES = {
    resource.RLIMIT_CPU: "cpu",
    resource.RLIMIT_AS: "as",
    resource.RLIMIT_FSIZE: "fsize",
    resource.RLIMIT_CORE: "core",
}


@functools.cache
def _prlimit() -> str | None:
    """util-linux's prlimit(1), which every Debian system has; None elsewhere (macOS)."""
    found = shutil.which("prlimit")
    return str(Path(found).absolute()) if found and sys.platform.startswith("linux") else None


def _limited(
    argv: list[str], pairs: tuple[tuple[int, int, int], ...]
) -> tuple[list[str], Callable[[], None] | None]:
    """The argv and preexec_fn that start `argv` under the rlimits `pairs`.

    Preferred: ``prlimit --cpu=S:H ... -- tool args``, which sets the limits on itself and execs
    the tool (same pid, same process group, limits in place before the tool's first
    instruction), so Popen needs no preexec_fn. That matters for speed: with a preexec_fn,
    CPython must fork() the whole worker instead of vfork()ing, and fork() copies the page
    tables of a process that may hold TensorFlow and a model — measured 18 ms per spawn with
    ~1 GB resident, against 2 ms with vfork, and check_abc spawns once per generated tune.
    Without prlimit, `_sandbox_preexec` sets the same limits between fork and exec.
    """
    prlimit = _prlimit()
    if prlimit is None:
        return argv, _sandbox_preexec(pairs)

    def value(limit: int) -> str:
        return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)

    options = [f"--{_PRLIMIT_NAMES[res]}={value(soft)}:{value(hard)}" for res, soft, hard in pairs]
    return [prlimit, *options, "--", *argv], None


def _sandbox_preexec(pairs: tuple[tuple[int, int, int], ...]) -> Callable[[], None]:
    """The function run in the child between fork and exec: apply the rlimits (used only where
    prlimit(1) is missing, see `_limited`).

    Why preexec_fn: limits must be in place *before* the tool's first instruction (set after the
    spawn with prlimit(2), a tool could write a huge file or allocate in the gap), and Popen has
    no rlimit parameter. preexec_fn is documented as unsafe with threads because the child may
    deadlock on a lock another thread held at fork time; this function only loops over
    precomputed integers calling setrlimit — no imports, logging, or allocation-heavy work — which
    keeps that window as small as Python allows. The session is made by ``start_new_session``.
    """

    def apply() -> None:
        for res, soft, hard in pairs:
            resource.setrlimit(res, (soft, hard))

    return apply


@dataclass(frozen=True)
class _Completed:
    """A tool run that ended on its own (a limit or a signal raises instead)."""

    tool: str
    returncode: int
    output: str
    seconds: float


def _trim(text: str, limit: int = _DETAIL_CHARS) -> str:
    """Tool output cut to `limit` characters, saying how much was left out."""
    text = text.strip()
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... {len(text) - limit} more characters]"


def _one_line(text: str, limit: int = _MESSAGE_CHARS) -> str:
    """Tool output as one line for an error message (the full text is in ``detail``)."""
    flat = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@contextlib.contextmanager
def _storage_guard(what: str) -> Iterator[None]:
    """Turn a full disk or quota on our own file operations into a transient `StorageFullError`."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFullError(
                f"no space left while {what} ({exc}); free space in the temp directory "
                f"({tempfile.gettempdir()}) and retry"
            ) from exc
        raise


def _raise_if_disk_full(tool: str, workdir: Path, output: str) -> None:
    """After a tool failed: blame the disk, transiently, when the disk is the likely cause.

    A tool cannot hand us its errno, so look at what it said and at what space is left.
    """
    try:
        stat = os.statvfs(workdir)
        free = stat.f_bavail * stat.f_frsize
    except OSError:
        free = _DISK_FULL_BYTES
    if _NO_SPACE.search(output) or free < _DISK_FULL_BYTES:
        raise StorageFullError(
            f"{tool} failed with {free} bytes free in {workdir.parent}; free space and retry"
            + (f" (it said: {_one_line(output)})" if output.strip() else ""),
        )


def _wait(pid: int, timeout_s: float) -> tuple[int, resource.struct_rusage, bool]:
    """Wait for `pid` at most `timeout_s`; on timeout kill its process group. Reaps the child.

    Returns (wait status, resource usage, timed_out). wait4 gives the child's CPU time, which
    tells a SIGKILL from our RLIMIT_CPU hard limit apart from someone else's SIGKILL. The wait is
    on a pidfd (no polling latency: abc2midi takes a millisecond) with a polling fallback.
    """
    timed_out = False
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            timed_out = not poller.poll(max(1, int(timeout_s * 1000)))
        finally:
            os.close(pidfd)
    else:
        deadline = time.monotonic() + timeout_s
        delay = 0.001
        while True:
            reaped, status, usage = os.wait4(pid, os.WNOHANG)
            if reaped:
                return status, usage, False
            if time.monotonic() >= deadline:
                timed_out = True
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    if timed_out:
        _kill_group(pid)
    _, status, usage = os.wait4(pid, 0)
    return status, usage, timed_out


def _kill_group(pgid: int) -> None:
    """SIGKILL every process left in the tool's process group (the group may already be gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@contextlib.contextmanager
def _log_file(path: Path) -> Iterator[BinaryIO]:
    """A fresh file for a tool's output, removed afterwards whatever happens."""
    try:
        with path.open("w+b") as handle:
            yield handle
    finally:
        path.unlink(missing_ok=True)


def _run(tool: _Tool, exe: str, args: Sequence[str], workdir: Path, limits: _Limits) -> _Completed:
    """Run one tool in the sandbox and return what it printed; raise on limits and signals.

    stdout and stderr go to one file inside `workdir` (not a pipe: a tool printing thousands of
    error lines must not block on a full pipe, and the file is capped by RLIMIT_FSIZE like any
    other output), deleted once read. A named file rather than an anonymous O_TMPFILE one: on
    overlayfs (containers) a directory that held an O_TMPFILE takes ~1 ms longer to remove,
    which was a fifth of a whole abc2midi check.
    """
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C",
        # No tool of ours plays sound. Without this, SDL (linked by fluidsynth) probes PulseAudio
        # at start-up, which sizes a 64 MB shared-memory file and dies of RLIMIT_FSIZE (SIGXFSZ)
        # under a small limit, or talks to a sound server where one happens to run.
        "SDL_AUDIODRIVER": "dummy",
    }
    argv = [exe, *args]
    command, preexec = _limited(argv, _rlimit_pairs(limits))
    started = time.monotonic()
    log_path = workdir / f".{tool.name}.log"
    with _storage_guard(f"running {tool.name}"), _log_file(log_path) as log:
        try:
            proc = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,
                close_fds=True,
            )
        except (FileNotFoundError, PermissionError) as exc:
            raise ToolMissingError(
                f"{tool.name} at {exe} could not be started ({exc}); "
                f"reinstall the Debian package '{tool.package}'"
            ) from exc
        except subprocess.SubprocessError as exc:
            raise ConfigError(
                f"could not apply resource limits to {tool.name} ({exc}); check the "
                "TUNEBATCH_RENDER_* settings against this machine's limits (ulimit -a)"
            ) from exc
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFullError(f"no space left to start {tool.name} ({exc})") from exc
            raise TransientError(f"could not start {tool.name} ({exc}); retry later") from exc
        logger.debug("started %s (pid %d) in %s", " ".join(command), proc.pid, workdir)
        try:
            status, usage, timed_out = _wait(proc.pid, limits.timeout_s)
        except BaseException:
            # Interrupted (KeyboardInterrupt, a Celery soft time limit): never leave it running.
            _kill_group(proc.pid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not reap it again
        # Anything the tool left behind in its group (none of ours forks, but a wrapper might).
        _kill_group(proc.pid)
        seconds = time.monotonic() - started
        log.seek(0)
        raw = log.read(_LOG_READ_BYTES + 1)
    output = raw[:_LOG_READ_BYTES].decode("utf-8", errors="replace")
    if len(raw) > _LOG_READ_BYTES:
        output += "\n[... output truncated]"
    cpu = usage.ru_utime + usage.ru_stime
    logger.debug(
        "%s finished: status %s, %.3fs wall, %.3fs cpu",
        tool.name,
        proc.returncode,
        seconds,
        cpu,
    )
    if os.WIFSIGNALED(status):
        _raise_for_signal(tool, os.WTERMSIG(status), timed_out, cpu, output, limits)
    return _Completed(tool.name, proc.returncode, output, seconds)


def _raise_for_signal(
    tool: _Tool, signum: int, timed_out: bool, cpu_s: float, output: str, limits: _Limits
) -> None:
    """Classify a tool's death by signal: our limit (permanent), a crash, or outside (transient)."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    said = f"; it said: {_one_line(output)}" if output.strip() else ""
    detail = _trim(output)
    if timed_out:
        raise RenderLimitError(
            f"{tool.name} ran longer than {limits.timeout_s:g} s on this tune and was stopped "
            f"(TUNEBATCH_RENDER_TIMEOUT_S){said}",
            tool=tool.name,
            detail=detail,
        )
    if signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu_s >= limits.cpu_s):
        raise RenderLimitError(
            f"{tool.name} used more than {limits.cpu_s} s of CPU on this tune and was stopped "
            f"(TUNEBATCH_RENDER_CPU_S){said}",
            tool=tool.name,
            detail=detail,
        )
    if signum == signal.SIGXFSZ:
        raise RenderLimitError(
            f"{tool.name} tried to write a file larger than {limits.max_output_bytes} bytes "
            f"and was stopped (TUNEBATCH_RENDER_MAX_OUTPUT_BYTES){said}",
            tool=tool.name,
            detail=detail,
        )
    if signum in _CRASH_SIGNALS:
        raise RenderError(
            f"{tool.name} crashed ({name}) on this tune (a bug of the tool, or the "
            f"{limits.memory_bytes}-byte memory limit, TUNEBATCH_RENDER_MEMORY_BYTES){said}",
            tool=tool.name,
            detail=detail,
        )
    raise TransientError(
        f"{tool.name} was killed by {name}, not by a render limit (the machine or container "
        f"out of memory, or an operator); retry{said}"
    )


# --------------------------------------------------------------------------------------------
# The work directory and the tune file
# --------------------------------------------------------------------------------------------


def _refusal(abc_text: str) -> str | None:
    """Why `abc_text` must not reach any tool, or None. Checked before a directory exists."""
    if not abc_text.strip():
        return "the tune is empty; nothing to render"
    reason = unsafe_reason(abc_text)
    if reason is not None:
        return f"refused before any tool saw it: {reason}; remove it and submit again"
    count = len(_X_LINE.findall(abc_text))
    if count > 1:
        return (
            f"the text holds {count} tunes (X: lines); render one tune per file "
            "(split it with common.abc_notation.split_tunes)"
        )
    return None


def _normalise_newlines(abc_text: str) -> str:
    """CRLF/CR → LF, so a file saved on Windows is not refused for its carriage returns."""
    return abc_text.replace("\r\n", "\n").replace("\r", "\n")


def _make_workdir() -> Path:
    with _storage_guard("creating a render directory"):
        return Path(tempfile.mkdtemp(prefix="tunebatch-render-"))


def _remove_workdir(workdir: Path) -> None:
    """Remove a render directory; a failure is logged, never raised over the real outcome."""
    try:
        shutil.rmtree(workdir)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("could not remove render directory %s: %s", workdir, exc)


def _write_tune(workdir: Path, abc_text: str) -> Path:
    path = workdir / TUNE_FILE
    text = abc_text if abc_text.endswith("\n") else abc_text + "\n"
    with _storage_guard(f"writing {path}"):
        path.write_bytes(text.encode("utf-8"))
    return path


def _has_magic(fmt: str, head: bytes) -> bool:
    """Whether the first bytes of a file look like `fmt` (catches truncated / wrong output)."""
    if fmt == "mid":
        return head.startswith(b"MThd")
    if fmt == "wav":
        return head.startswith(b"RIFF") and head[8:12] == b"WAVE"
    if fmt == "ogg":
        return head.startswith(b"OggS")
    if fmt == "mp3":
        return head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] >= 0xE0)
    if fmt == "flac":
        return head.startswith(b"fLaC")
    if fmt == "pdf":
        return head.startswith(b"%PDF-")
    if fmt == "svg":
        return b"<svg" in head
    return True


def _require_output(
    path: Path, fmt: str, run: _Completed, workdir: Path, limits: _Limits, min_bytes: int = 1
) -> Path:
    """Check a tool's output file: present, big enough, right magic, within the size limit."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(4096)
    except FileNotFoundError:
        size, head = 0, b""
    if size > limits.max_output_bytes:
        raise RenderLimitError(
            f"{run.tool} wrote a {size}-byte {fmt} file, more than the limit of "
            f"{limits.max_output_bytes} bytes (TUNEBATCH_RENDER_MAX_OUTPUT_BYTES)",
            tool=run.tool,
            detail=_trim(run.output),
        )
    if size >= min_bytes and _has_magic(fmt, head):
        if _NO_SPACE.search(run.output):
            _raise_if_disk_full(run.tool, workdir, run.output)
        return path
    _raise_if_disk_full(run.tool, workdir, run.output)
    problem = "no" if size == 0 else f"an unusable {size}-byte"
    said = f": {_one_line(run.output)}" if run.output.strip() else " and printed nothing"
    if _OUT_OF_MEMORY.search(run.output):
        # A loader or malloc failure: under RLIMIT_AS that is our limit, not the tune's syntax.
        raise RenderLimitError(
            f"{run.tool} ran out of memory under the {limits.memory_bytes}-byte limit "
            f"(TUNEBATCH_RENDER_MEMORY_BYTES) and wrote {problem} {fmt} file{said}",
            tool=run.tool,
            detail=_trim(run.output),
        )
    raise RenderError(
        f"{run.tool} wrote {problem} {fmt} file (exit status {run.returncode}){said}",
        tool=run.tool,
        detail=_trim(run.output),
    )


# --------------------------------------------------------------------------------------------
# The stages
# --------------------------------------------------------------------------------------------


def _split_abc2midi_output(output: str) -> tuple[list[str], list[str]]:
    errors = [line.strip() for line in output.splitlines() if _ERROR_LINE.match(line)]
    warnings = [line.strip() for line in output.splitlines() if _WARNING_LINE.match(line)]
    return errors, warnings


def _abc2midi(workdir: Path, settings: Settings) -> tuple[CheckResult, _Completed, Path]:
    """Run abc2midi on tune.abc → tune.mid and judge it (see `CheckResult`).

    ``-silent`` drops the banner and "writing MIDI file" chatter but keeps every ``Error in
    line-char`` and ``Warning in line-char`` line; ``-o`` names the one output file.
    """
    exe = _resolve(_ABC2MIDI, settings.abc2midi)
    mid = workdir / "tune.mid"
    run = _run(
        _ABC2MIDI,
        exe,
        [TUNE_FILE, "-o", mid.name, "-silent"],
        workdir,
        _Limits.from_settings(settings),
    )
    errors, warnings = _split_abc2midi_output(run.output)
    try:
        with mid.open("rb") as handle:
            produced = _has_magic("mid", handle.read(4))
    except FileNotFoundError:
        produced = False
    if not produced:
        _raise_if_disk_full(_ABC2MIDI.name, workdir, run.output)
        if not errors:
            errors = [
                "abc2midi wrote no MIDI file"
                + (f": {_one_line(run.output)}" if run.output.strip() else "")
            ]
    return CheckResult(ok=produced and not errors, errors=errors, warnings=warnings), run, mid


def _timidity(workdir: Path, mid: Path, settings: Settings) -> tuple[Path, _Completed]:
    """Synthesise tune.mid → tune.wav with the configured soundfont.

    ``-c`` names the soundfont config explicitly (timidity also reads its compiled-in default
    /etc/timidity/timidity.cfg first; ``-c`` overrides every instrument it defines). ``-id``
    forces the plain interface whatever terminal is around; ``--quiet=1`` keeps only the
    "Playing" line and real complaints such as "Not a MIDI file!".
    """
    exe = _resolve(_TIMIDITY, settings.timidity)
    config = settings.timidity_config.absolute()
    if not config.is_file():
        raise ToolMissingError(
            f"timidity's soundfont config {config} does not exist; install the Debian package "
            "'freepats' or set TUNEBATCH_TIMIDITY_CONFIG to a timidity .cfg file"
        )
    wav = workdir / "tune.wav"
    limits = _Limits.from_settings(settings)
    args = ["-c", str(config), "-id", "--quiet=1", "-Ow", "-o", wav.name, mid.name]
    run = _run(_TIMIDITY, exe, args, workdir, limits)
    _require_output(wav, "wav", run, workdir, limits, min_bytes=_WAV_HEADER_BYTES + 1)
    return wav, run


def _fluidsynth(workdir: Path, mid: Path, settings: Settings) -> tuple[Path, _Completed]:
    """Synthesise tune.mid → tune.wav with fluidsynth and the configured SoundFont.

    ``-n -i`` start no MIDI input driver and no interactive shell, ``-F`` renders straight to the
    file as fast as the CPU allows (no audio device is opened), and ``-T wav -O s16 -r 44100``
    give the same 16-bit stereo 44.1 kHz WAV as timidity. ``-q`` drops the banner. fluidsynth
    loads the whole SoundFont (~150 MB for FluidR3_GM) per run, which fits the default 1 GiB
    address-space limit with room to spare.
    """
    exe = _resolve(_FLUIDSYNTH, settings.fluidsynth)
    soundfont = settings.soundfont.absolute()
    if not soundfont.is_file():
        raise ToolMissingError(
            f"the SoundFont {soundfont} does not exist; install the Debian package "
            "'fluid-soundfont-gm' or set TUNEBATCH_SOUNDFONT to a .sf2 file"
        )
    wav = workdir / "tune.wav"
    limits = _Limits.from_settings(settings)
    args = ["-n", "-i", "-q", "-F", wav.name, "-T", "wav", "-O", "s16", "-r", "44100"]
    run = _run(_FLUIDSYNTH, exe, [*args, str(soundfont), mid.name], workdir, limits)
    _require_output(wav, "wav", run, workdir, limits, min_bytes=_WAV_HEADER_BYTES + 1)
    return wav, run


def _synthesise(workdir: Path, mid: Path, settings: Settings) -> tuple[Path, _Completed]:
    """MIDI → WAV with the synthesiser `settings.synth` names."""
    if settings.synth == "fluidsynth":
        return _fluidsynth(workdir, mid, settings)
    return _timidity(workdir, mid, settings)


def _normalise(wav: Path, settings: Settings) -> Normalisation:
    """Bring tune.wav to the loudness target in place (see `common.loudness`).

    In-process rather than a tool: it is our own bounded numpy code reading a file our own
    synthesiser wrote, in fixed-size chunks, so it needs no sandbox. The normalised copy is
    written beside the WAV and renamed over it, so a failure never leaves a half-scaled file.
    """
    out = wav.with_name("tune.normalised.wav")
    try:
        with _storage_guard("normalising the WAV's loudness"):
            result = normalise_wav(
                wav, out, settings.loudness_target_lufs, settings.loudness_peak_dbfs
            )
            out.replace(wav)
    except (ValueError, EOFError, wave.Error) as exc:
        raise RenderError(
            f"the synthesiser's WAV could not be read for loudness normalisation ({exc})",
            tool="loudness",
        ) from exc
    return result


def _abcm2ps(workdir: Path, settings: Settings) -> tuple[Path, _Completed]:
    """Engrave tune.abc → tune.svg.

    ``-g`` writes one SVG per tune and names it ``<stem>NNN.svg`` (tune001.svg for ``-O tune.svg``),
    so the file is found by pattern and renamed. ``-S`` is abcm2ps's secure mode (no PostScript
    or file access from the tune), on top of `unsafe_reason`. abcm2ps exits 1 on any complaint
    even when the score is fine, so its messages become warnings and the file decides.
    """
    exe = _resolve(_ABCM2PS, settings.abcm2ps)
    limits = _Limits.from_settings(settings)
    args = ["-S", "-q", "-k", _ABCM2PS_BUFFER_KIB, "-g", "-O", "tune.svg", TUNE_FILE]
    run = _run(_ABCM2PS, exe, args, workdir, limits)
    target = workdir / "tune.svg"
    written = sorted(p for p in workdir.glob("tune*.svg") if p != target)
    if written and not target.exists():
        with _storage_guard("renaming the SVG"):
            written[0].rename(target)
        for extra in written[1:]:
            extra.unlink()
    return _require_output(target, "svg", run, workdir, limits), run


def _encode(
    tool: _Tool, args: Sequence[str], out: Path, fmt: str, workdir: Path, settings: Settings
) -> tuple[Path, _Completed]:
    """Run an encoder (oggenc, lame) that turns tune.wav into `out`."""
    exe = _resolve(tool, tool.name)
    limits = _Limits.from_settings(settings)
    run = _run(tool, exe, args, workdir, limits)
    return _require_output(out, fmt, run, workdir, limits), run


def _pdf(workdir: Path, svg: Path, settings: Settings) -> tuple[Path, _Completed]:
    """Convert the score tune.svg → tune.pdf with rsvg-convert (librsvg, memory-safe Rust).

    Chosen over abcm2ps → PostScript → ghostscript's ps2pdf: one 6 MB package instead of a
    PostScript interpreter (13 packages, and a history of -dSAFER escapes) fed text derived from
    untrusted input. The page is the SVG's size — the music, cropped — as abcm2ps ``-g`` draws
    it. librsvg only loads images from the SVG's own directory, which holds nothing but ours.
    """
    return _encode(
        _RSVG, ["-f", "pdf", "-o", "tune.pdf", svg.name], workdir / "tune.pdf", "pdf", workdir,
        settings,
    )  # fmt: skip


def _tool_warnings(run: _Completed, lines: Sequence[str] | None = None) -> list[str]:
    """A tool's messages as warnings, each prefixed with the tool's name."""
    if lines is None:
        lines = [line.strip() for line in run.output.splitlines() if line.strip()]
    return [f"{run.tool}: {line}" for line in lines]


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def check_abc(abc_text: str, settings: Settings) -> CheckResult:
    """Ask abc2midi whether one tune is valid, without synthesising anything.

    Used on every generated tune and for ``corpus --valid-only``, so it runs abc2midi only
    (a few milliseconds). Anything that makes the tune unrenderable is a not-ok result rather
    than an exception — refused text, a crash, a limit — so a caller checking 256 tunes gets 256
    answers. Problems of the machine rather than the tune still raise: `ToolMissingError`,
    `StorageFullError`, `TransientError`.
    """
    abc_text = _normalise_newlines(abc_text)
    reason = _refusal(abc_text)
    if reason is not None:
        return CheckResult(ok=False, errors=[reason], warnings=[])
    workdir = _make_workdir()
    try:
        _write_tune(workdir, abc_text)
        result, _, _ = _abc2midi(workdir, settings)
        return result
    except RenderError as exc:
        return CheckResult(ok=False, errors=[str(exc)], warnings=[])
    finally:
        _remove_workdir(workdir)


@contextlib.contextmanager
def rendered(abc_text: str, formats: Sequence[str], settings: Settings) -> Iterator[RenderResult]:
    """Render one tune into `formats` in a fresh private directory; remove it when done.

    A context manager because the files are big (a WAV is ~10 MB a minute) and only needed
    until the caller has uploaded them: the directory goes away on exit, error or not.

    Stages run only when a requested format needs them: abc2midi for mid and the audio
    formats; the synthesiser (``settings.synth``) and loudness normalisation for wav/ogg/mp3/flac
    (a WAV made only for an encoder is not returned, and the encoders get the normalised one);
    abcm2ps for svg and pdf (likewise). Before synthesis, the MIDI's duration is checked against
    ``max_midi_seconds``, so an absurd tempo fails in milliseconds instead of synthesising hours
    of audio.

    Raises `RenderError` (the tune is refused, or a tool rejected it), `RenderLimitError` (a
    limit was hit), `ToolMissingError`, `StorageFullError` or `TransientError`.
    """
    wanted = _canonical_formats(formats)
    abc_text = _normalise_newlines(abc_text)
    reason = _refusal(abc_text)
    if reason is not None:
        raise RenderError(reason)
    workdir = _make_workdir()
    try:
        yield _render_into(workdir, abc_text, wanted, settings)
    finally:
        _remove_workdir(workdir)


def _render_into(
    workdir: Path, abc_text: str, wanted: tuple[str, ...], settings: Settings
) -> RenderResult:
    files: dict[str, Path] = {"abc": _write_tune(workdir, abc_text)}
    result = RenderResult(files={}, warnings=[], midi_seconds=None)
    warnings, seconds = result.warnings, result.seconds

    if _NEEDS_MIDI.intersection(wanted):
        check, run, mid = _abc2midi(workdir, settings)
        seconds["abc2midi"] = run.seconds
        if not check.ok:
            more = f" (and {len(check.errors) - 3} more)" if len(check.errors) > 3 else ""
            raise RenderError(
                f"abc2midi rejected the tune: {'; '.join(check.errors[:3])}{more}",
                tool=_ABC2MIDI.name,
                detail=_trim(run.output),
            )
        warnings += _tool_warnings(run, check.warnings)
        result.midi_seconds = midi_duration_seconds(mid.read_bytes())
        files["mid"] = mid
        if _NEEDS_WAV.intersection(wanted) and result.midi_seconds > settings.max_midi_seconds:
            raise RenderLimitError(
                f"the tune plays for {result.midi_seconds:.0f} s, longer than the limit of "
                f"{settings.max_midi_seconds:g} s (TUNEBATCH_MAX_MIDI_SECONDS); check its Q: "
                "tempo and repeats",
                tool=settings.synth,
            )

    if _NEEDS_SVG.intersection(wanted):
        files["svg"], run = _abcm2ps(workdir, settings)
        seconds["abcm2ps"] = run.seconds
        warnings += _tool_warnings(run)
        if "pdf" in wanted:
            files["pdf"], run = _pdf(workdir, files["svg"], settings)
            seconds["rsvg-convert"] = run.seconds
            warnings += _tool_warnings(run)

    if _NEEDS_WAV.intersection(wanted):
        wav, run = _synthesise(workdir, files["mid"], settings)
        seconds[run.tool] = run.seconds
        result.synth = run.tool
        warnings += _tool_warnings(
            run, [line for line in run.output.splitlines() if not line.startswith("Playing ")]
        )
        files["wav"] = wav
        if settings.loudness_normalise:
            started = time.monotonic()
            result.loudness = _normalise(wav, settings)
            seconds["loudness"] = time.monotonic() - started
        encoders = (
            ("ogg", _OGGENC, ["-Q", "-o", "tune.ogg", wav.name]),
            ("mp3", _LAME, ["--quiet", wav.name, "tune.mp3"]),
            ("flac", _FLAC, ["--silent", "--force", "-o", "tune.flac", wav.name]),
        )
        for fmt, tool, args in encoders:
            if fmt in wanted:
                files[fmt], run = _encode(
                    tool, args, workdir / f"tune.{fmt}", fmt, workdir, settings
                )
                seconds[tool.name] = run.seconds
                warnings += _tool_warnings(run)

    result.files = {fmt: files[fmt] for fmt in wanted}
    for fmt, path in files.items():
        if fmt not in result.files:
            path.unlink(missing_ok=True)  # free the disk now, e.g. a WAV made only for lame
    return result


# --------------------------------------------------------------------------------------------
# Versions (provenance)
# --------------------------------------------------------------------------------------------

_VERSION_PROBES: tuple[tuple[_Tool, tuple[str, ...], re.Pattern[str]], ...] = (
    (_ABC2MIDI, ("-ver",), re.compile(r"^\s*(\S.*?)\s+abc2midi\s*$", re.MULTILINE)),
    (_TIMIDITY, ("--version",), re.compile(r"version\s+(\S+)")),
    (_ABCM2PS, ("-V",), re.compile(r"abcm2ps-(\S+)")),
    (_OGGENC, ("--version",), re.compile(r"vorbis-tools\s+(\S+)")),
    (_LAME, ("--version",), re.compile(r"version\s+(\S+)")),
    (_FLUIDSYNTH, ("--version",), re.compile(r"version\s+(\S+)")),
    (_FLAC, ("--version",), re.compile(r"flac\s+(\S+)")),
    (_RSVG, ("--version",), re.compile(r"version\s+(\S+)")),
)


def tool_versions(settings: Settings) -> dict[str, str]:
    """Versions of the render tools that are installed, for every manifest's provenance.

    A tool that is missing is left out rather than failing: a producer records what exists.
    Cached per process on the configured paths, since a version does not change under a
    running worker and asking costs a process start per tool. Two entries describe how audio
    is made rather than a tool's version, because they change the sound as much as a version
    does: ``synth`` (the synthesiser and its soundfont) and ``loudness`` (the target, or "off").
    """
    versions = dict(
        _tool_versions(settings.abc2midi, settings.timidity, settings.abcm2ps, settings.fluidsynth)
    )
    soundfont = settings.timidity_config if settings.synth == "timidity" else settings.soundfont
    versions["synth"] = f"{settings.synth} with {soundfont}"
    versions["loudness"] = (
        f"{settings.loudness_target_lufs:g} LUFS integrated (ITU-R BS.1770-4), sample peak "
        f"at most {settings.loudness_peak_dbfs:g} dBFS"
        if settings.loudness_normalise
        else "off (as synthesised)"
    )
    return versions


@functools.cache
def _tool_versions(
    abc2midi: str, timidity: str, abcm2ps: str, fluidsynth: str
) -> tuple[tuple[str, str], ...]:
    configured = {
        "abc2midi": abc2midi, "timidity": timidity, "abcm2ps": abcm2ps, "fluidsynth": fluidsynth,
    }  # fmt: skip
    versions: list[tuple[str, str]] = []
    workdir = _make_workdir()
    try:
        for tool, args, pattern in _VERSION_PROBES:
            try:
                exe = _resolve(tool, configured.get(tool.name, tool.name))
                run = _run(tool, exe, args, workdir, _PROBE_LIMITS)
            except (ToolMissingError, RenderError, TransientError) as exc:
                logger.info("no version for %s: %s", tool.name, exc)
                continue
            match = pattern.search(run.output)
            first = next((ln.strip() for ln in run.output.splitlines() if ln.strip()), "")
            version = match.group(1) if match else first[:80]
            if version:
                versions.append((tool.name, version))
    finally:
        _remove_workdir(workdir)
    return tuple(versions)


# --------------------------------------------------------------------------------------------
# MIDI duration
# --------------------------------------------------------------------------------------------

_DEFAULT_TEMPO_US = 500_000  # 120 quarter notes a minute, the SMF default


def _malformed(what: str, pos: int) -> RenderError:
    return RenderError(f"malformed MIDI file: {what} at byte {pos}", tool="midi")


def _u32(data: bytes, pos: int) -> int:
    if pos + 4 > len(data):
        raise _malformed("truncated chunk header", pos)
    return int.from_bytes(data[pos : pos + 4], "big")


def _vlq(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a variable-length quantity (at most 4 bytes); return (value, next position)."""
    value = 0
    for i in range(4):
        if pos + i >= end:
            raise _malformed("truncated variable-length number", pos)
        byte = data[pos + i]
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos + i + 1
    raise _malformed("variable-length number longer than 4 bytes", pos)


def _scan_track(data: bytes, pos: int, end: int) -> tuple[list[tuple[int, int]], int]:
    """Walk one MTrk chunk: its tempo changes as (tick, µs per quarter) and its length in ticks.

    Follows running status (also across meta events, as real files need) and skips sysex.
    A track without End of Track ends at its chunk's end.
    """
    tick = 0
    running: int | None = None
    tempos: list[tuple[int, int]] = []
    while pos < end:
        delta, pos = _vlq(data, pos, end)
        tick += delta
        if pos >= end:
            raise _malformed("event missing after delta time", pos)
        status = data[pos]
        if status == 0xFF:
            if pos + 1 >= end:
                raise _malformed("truncated meta event", pos)
            meta_type = data[pos + 1]
            length, body = _vlq(data, pos + 2, end)
            if body + length > end:
                raise _malformed("meta event runs past its track", pos)
            if meta_type == 0x51:
                if length != 3:
                    raise _malformed(f"tempo event of {length} bytes, not 3", pos)
                tempos.append((tick, int.from_bytes(data[body : body + 3], "big")))
            pos = body + length
            if meta_type == 0x2F:
                return tempos, tick
        elif status in (0xF0, 0xF7):
            length, body = _vlq(data, pos + 1, end)
            pos = body + length
            if pos > end:
                raise _malformed("sysex event runs past its track", body)
        elif status >= 0xF0:
            raise _malformed(f"unexpected status byte 0x{status:02X}", pos)
        else:
            if status >= 0x80:
                running = status
                pos += 1
            elif running is None:
                raise _malformed("data byte without a status byte", pos)
            pos += 1 if running & 0xF0 in (0xC0, 0xD0) else 2
            if pos > end:
                raise _malformed("channel event runs past its track", pos)
    return tempos, tick


def _ticks_to_seconds(end_tick: int, tempos: Sequence[tuple[int, int]], per_quarter: int) -> float:
    seconds = 0.0
    last_tick, tempo = 0, _DEFAULT_TEMPO_US
    for tick, new_tempo in tempos:
        if tick >= end_tick:
            break
        seconds += (tick - last_tick) * tempo / (per_quarter * 1e6)
        last_tick, tempo = tick, new_tempo
    return seconds + (end_tick - last_tick) * tempo / (per_quarter * 1e6)


def midi_duration_seconds(data: bytes) -> float:
    """Playing time of a Standard MIDI File, in seconds, from its bytes alone.

    Used to refuse absurd tunes before timidity spends minutes synthesising them, so it must
    not trust the file: every length is bounds-checked and malformed data raises `RenderError`.
    Format 0/1: tempo changes (FF 51) from every track form one tempo map, and the file lasts
    until its longest track ends. Format 2: tracks are independent songs played one after
    another, each with its own tempo map. SMPTE divisions (frames × ticks per second) ignore
    tempo events, as the standard says.
    """
    if not data.startswith(b"MThd"):
        raise _malformed("no MThd header", 0)
    header_len = _u32(data, 4)
    if header_len < 6 or 8 + header_len > len(data):
        raise _malformed(f"header chunk of {header_len} bytes", 4)
    fmt = int.from_bytes(data[8:10], "big")
    declared = int.from_bytes(data[10:12], "big")
    division = int.from_bytes(data[12:14], "big")

    tracks: list[tuple[list[tuple[int, int]], int]] = []
    pos = 8 + header_len
    while pos + 8 <= len(data) and len(tracks) < declared:
        chunk_type = data[pos : pos + 4]
        length = _u32(data, pos + 4)
        body, end = pos + 8, pos + 8 + length
        if end > len(data):
            raise _malformed(f"{chunk_type!r} chunk of {length} bytes runs past the file", pos)
        if chunk_type == b"MTrk":
            tracks.append(_scan_track(data, body, end))
        pos = end  # unknown chunk types are skipped, as the standard asks
    if len(tracks) < declared:
        raise _malformed(f"header declares {declared} tracks but {len(tracks)} found", pos)

    if division & 0x8000:
        frames = 256 - (division >> 8)
        per_frame = division & 0xFF
        if frames not in (24, 25, 29, 30) or per_frame == 0:
            raise _malformed(f"SMPTE division {frames} fps x {per_frame}", 12)
        fps = 30000 / 1001 if frames == 29 else float(frames)
        ticks = sum(t for _, t in tracks) if fmt == 2 else max((t for _, t in tracks), default=0)
        return ticks / (fps * per_frame)
    if division == 0:
        raise _malformed("zero ticks per quarter note", 12)
    if fmt == 2:
        return sum(_ticks_to_seconds(end, tempos, division) for tempos, end in tracks)
    merged = sorted((event for tempos, _ in tracks for event in tempos), key=lambda e: e[0])
    end_tick = max((end for _, end in tracks), default=0)
    return _ticks_to_seconds(end_tick, merged, division)


__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "TUNE_FILE",
    "CheckResult",
    "RenderResult",
    "check_abc",
    "midi_duration_seconds",
    "parse_formats",
    "rendered",
    "tool_versions",
]
