"""Run one external tool on untrusted input: resource limits, a wall-clock timeout, one log.

`run_tool` is the only way tunebatch starts a render tool (`common.render.stages` decides which
tool and which arguments; `common.render.sandbox` decides what the tool can see). Every run gets:

* **rlimits** on CPU seconds, address space, file size and core dumps, in place before the
  tool's first instruction (prlimit(1) where it exists, else a preexec_fn);
* **its own session / process group**, stdin closed, a minimal environment (``HOME`` and
  ``TMPDIR`` point into the tune's directory);
* **a wall-clock timeout** that kills the whole process group;
* **the isolation** of `common.render.sandbox` (bwrap: no filesystem beyond the tune's directory and
  the read-only files the tool needs, no network), wrapped around the tool's argv;
* **a classified end**: our limit (`RenderLimitError`), the tool's own crash (`RenderError`),
  someone else's kill (`TransientError`), a full disk (`StorageFullError`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from common.errors import (
    ConfigError,
    RenderError,
    RenderLimitError,
    StorageFullError,
    ToolMissingError,
    TransientError,
)
from common.files import is_disk_full
from common.formats import Tool
from common.render.sandbox import Jail
from common.settings import Settings

logger = logging.getLogger(__name__)

#: How much of a tool's combined stdout/stderr we read back; the rest is summarised.
_LOG_READ_BYTES = 256 * 1024
#: Of which the last bytes of the output, when it is longer.
_LOG_TAIL_BYTES = 16 * 1024
#: Longest tool output kept in an error's ``detail``, and in its one-line message.
_DETAIL_CHARS = 4000
_MESSAGE_CHARS = 600
#: Less free space than this after a tool failed means the failure was most likely the disk.
_DISK_FULL_BYTES = 1 << 20

NO_SPACE = re.compile(r"no space left on device|disk quota exceeded", re.IGNORECASE)

#: Signals with which a program dies of its own bug (or of a failed allocation under our
#: address-space limit). Feeding it the same tune again gives the same crash: permanent.
CRASH_SIGNALS = frozenset(
    {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT, signal.SIGSYS}
)


def resolve(tool: Tool, configured: str) -> str:
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
class Limits:
    """Resource limits of one tool run (see `_sandbox_preexec`)."""

    timeout_s: float
    cpu_s: int
    memory_bytes: int
    max_output_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            timeout_s=settings.render_timeout_s,
            cpu_s=settings.render_cpu_s,
            memory_bytes=settings.render_memory_bytes,
            max_output_bytes=settings.render_max_output_bytes,
        )


#: Limits for `tool_versions` probes, which have no Settings to hand (they are cached per path).
PROBE_LIMITS = Limits(timeout_s=10.0, cpu_s=10, memory_bytes=1 << 30, max_output_bytes=1 << 20)


def _rlimit_pairs(limits: Limits) -> tuple[tuple[int, int, int], ...]:
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
def prlimit_path() -> str | None:
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
    prlimit = prlimit_path()
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
class Completed:
    """A tool run that ended on its own (a limit or a signal raises instead)."""

    tool: str
    returncode: int
    output: str
    seconds: float


def trim(text: str, limit: int = _DETAIL_CHARS) -> str:
    """Tool output cut to `limit` characters, saying how much was left out."""
    text = text.strip()
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... {len(text) - limit} more characters]"


def one_line(text: str, limit: int = _MESSAGE_CHARS) -> str:
    """Tool output as one line for an error message (the full text is in ``detail``)."""
    flat = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@contextlib.contextmanager
def storage_guard(what: str) -> Iterator[None]:
    """Turn a full disk or quota on our own file operations into a transient `StorageFullError`."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise StorageFullError(
                f"no space left while {what} ({exc}); free space in the temp directory "
                f"({tempfile.gettempdir()}) and retry"
            ) from exc
        raise


def raise_if_disk_full(tool: str, workdir: Path, output: str) -> None:
    """After a tool failed: blame the disk, transiently, when the disk is the likely cause.

    A tool cannot hand us its errno, so look at what it said and at what space is left.
    """
    try:
        stat = os.statvfs(workdir)
        free = stat.f_bavail * stat.f_frsize
    except OSError:
        free = _DISK_FULL_BYTES
    if NO_SPACE.search(output) or free < _DISK_FULL_BYTES:
        raise StorageFullError(
            f"{tool} failed with {free} bytes free in {workdir.parent}; free space and retry"
            + (f" (it said: {one_line(output)})" if output.strip() else ""),
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
        kill_group(pid)
    _, status, usage = os.wait4(pid, 0)
    return status, usage, timed_out


def kill_group(pgid: int) -> None:
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


def run_tool(
    tool: Tool, exe: str, args: Sequence[str], workdir: Path, limits: Limits, jail: Jail
) -> Completed:
    """Run one tool in `jail` and return what it printed; raise on limits and signals.

    The order is ``prlimit ... -- bwrap ... -- tool args``: the limits hold for the jail and so
    for the tool inside it, and killing the process group kills bwrap, whose
    ``--die-with-parent`` takes the tool (and its whole pid namespace) with it.

    stdout and stderr go to one file inside `workdir` (not a pipe: a tool printing thousands of
    error lines must not block on a full pipe, and the file is capped by RLIMIT_FSIZE like any
    other output), deleted once read. A named file rather than an anonymous O_TMPFILE one: on
    overlayfs (containers) a directory that has held an O_TMPFILE takes ~1 ms longer to remove,
    a fifth of a whole abc2midi check.
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
    command, preexec = _limited(jail.wrap([exe, *args], workdir), _rlimit_pairs(limits))
    started = time.monotonic()
    log_path = workdir / f".{tool.name}.log"
    with storage_guard(f"running {tool.name}"), _log_file(log_path) as log:
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
            if is_disk_full(exc):
                raise StorageFullError(f"no space left to start {tool.name} ({exc})") from exc
            raise TransientError(f"could not start {tool.name} ({exc}); retry later") from exc
        logger.debug("started %s (pid %d) in %s", " ".join(command), proc.pid, workdir)
        try:
            status, usage, timed_out = _wait(proc.pid, limits.timeout_s)
        except BaseException:
            # Interrupted (KeyboardInterrupt, a Celery soft time limit): never leave it running.
            kill_group(proc.pid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not reap it again
        # Anything the tool left behind in its group (none of ours forks, but a wrapper might).
        kill_group(proc.pid)
        seconds = time.monotonic() - started
        log.seek(0)
        raw = log.read(_LOG_READ_BYTES + 1)
        if len(raw) > _LOG_READ_BYTES:
            # Keep the end too: a tool's last words (abc2midi's "eputc: ... runaway") decide.
            log.seek(-_LOG_TAIL_BYTES, os.SEEK_END)
            raw = raw[: _LOG_READ_BYTES - _LOG_TAIL_BYTES] + b"\n[... output truncated]\n"
            raw += log.read(_LOG_TAIL_BYTES)
    output = raw.decode("utf-8", errors="replace")
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
    jailed_signal = jail.exit_signal(proc.returncode)
    if jailed_signal is not None:
        _raise_for_signal(tool, jailed_signal, timed_out, cpu, output, limits)
    return Completed(tool.name, proc.returncode, output, seconds)


def _raise_for_signal(
    tool: Tool, signum: int, timed_out: bool, cpu_s: float, output: str, limits: Limits
) -> None:
    """Classify a tool's death by signal: our limit (permanent), a crash, or outside (transient)."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    said = f"; it said: {one_line(output)}" if output.strip() else ""
    detail = trim(output)
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
    if signum in CRASH_SIGNALS:
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
