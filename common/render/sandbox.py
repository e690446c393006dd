"""What a render tool can see: the tune's directory, the read-only files it needs, nothing else.

abc2midi and abcm2ps are C programs that crash on some inputs (measured: segfaults on nested
repeats, on ``I:format /dev/zero``), and every tune they read comes from a model or a user. So
besides the rlimits of `common.render.tool_run`, each tool runs inside bubblewrap (Debian's
``bubblewrap``, the sandbox Flatpak uses):

* ``--unshare-all``: new user, mount, pid, ipc, uts, cgroup and **network** namespaces, so no
  network at all (only a private loopback) and no view of other processes;
* ``--die-with-parent --new-session``: the tool dies with us and cannot reach our terminal;
* ``--cap-drop ALL``: no capabilities inside, even when the worker runs as root;
* a root filesystem made of **read-only** binds of ``/usr`` (programs, shared libraries,
  freepats, fonts), the few ``/etc`` entries the tools read (the dynamic loader's cache,
  timidity's and fontconfig's configuration, Debian's alternatives links), the configured
  soundfont / timidity config / tool binary when they live elsewhere, a fresh ``/proc``,
  a minimal ``/dev`` and an empty ``/tmp``; and the tune's own directory, **read-write**, at
  the same path (so argv and messages are unchanged). Nothing of ``/home``, ``/root``,
  ``/work``, the worker's data directory, other tunes' directories or secrets is visible.

``TUNEBATCH_SANDBOX`` chooses the mode:

* ``bwrap`` (the default): always isolate. Where bwrap is missing or cannot create namespaces
  (containers often forbid user namespaces), every render fails with a `ToolMissingError`
  naming the fix, and a worker refuses to start (`require`): a security setting must not
  degrade silently.
* ``auto``: isolate where bwrap works here, otherwise run with rlimits only and log a warning
  once. An operator's explicit choice for machines where isolation is best-effort.
* ``rlimits``: rlimits, process group and timeout only (the tools see the worker's filesystem).

bwrap turns a tool's death by signal N into exit status 128 + N; `Jail.exit_signal` turns it
back, so a crash inside the sandbox is classified exactly like one outside.
"""

from __future__ import annotations

import functools
import logging
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from common.errors import ToolMissingError
from common.settings import Settings

logger = logging.getLogger(__name__)

#: Top-level directories that are symlinks into /usr on merged-/usr systems (Debian 12+), or
#: real directories elsewhere; mirrored as they are on the host.
_ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Read-only paths every tool may need; missing ones are skipped.
_SYSTEM_READ_ONLY = (
    "/usr",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",  # e.g. /usr/share/sounds/sf2/default-GM.sf2 -> /etc/alternatives/...
    "/etc/timidity",  # timidity reads /etc/timidity/timidity.cfg before our -c config
    "/etc/fonts",  # fontconfig, for rsvg-convert's text
    "/var/cache/fontconfig",
)
#: bwrap exits with 128 + N when the sandboxed program died of signal N.
_SIGNAL_EXIT_BASE = 128


@dataclass(frozen=True)
class Jail:
    """How one tool run is isolated: bwrap (its path) and extra read-only paths, or rlimits only."""

    bwrap: str | None
    read_only: tuple[str, ...] = ()

    @property
    def mode(self) -> str:
        return "bwrap" if self.bwrap else "rlimits"

    def wrap(self, argv: list[str], workdir: Path) -> list[str]:
        """`argv` as run inside the jail, with `workdir` its only writable directory."""
        if self.bwrap is None:
            return argv
        return [*_bwrap_prefix(self.bwrap, workdir, self.read_only), *argv]

    def exit_signal(self, returncode: int) -> int | None:
        """The signal a jailed tool died of, read from bwrap's exit status; None if it exited."""
        if self.bwrap is None or returncode <= _SIGNAL_EXIT_BASE:
            return None
        number = returncode - _SIGNAL_EXIT_BASE
        return number if number in signal.valid_signals() else None


#: For runs that never see a tune (version probes): rlimits only, nothing to isolate from.
UNJAILED = Jail(bwrap=None)


def _bwrap_prefix(bwrap: str, workdir: Path, extra: Iterable[str]) -> list[str]:
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    for link in _ROOT_LINKS:
        if Path(link).is_symlink():
            args += ["--symlink", str(Path(link).readlink()), link]
        elif Path(link).is_dir():
            args += ["--ro-bind", link, link]
    # An empty, private /tmp inside the jail (not the host's); binds below may sit on top of it.
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108
    for system in _SYSTEM_READ_ONLY:
        args += ["--ro-bind-try", system, system]
    for path in extra:
        args += ["--ro-bind", path, path]
    work = str(workdir)
    args += ["--bind", work, work, "--chdir", work, "--"]
    return args


def _outside_system(path: Path) -> str | None:
    """`path`, resolved, when the system binds do not already show it; None otherwise."""
    real = path.resolve()
    if any(real.is_relative_to(base) for base in ("/usr", "/etc/timidity", "/etc/alternatives")):
        return None
    return str(real) if real.exists() else None


@functools.cache
def _probe(bwrap: str) -> str | None:
    """None when bwrap can build our sandbox on this machine, else what went wrong."""
    true = shutil.which("true") or "/usr/bin/true"
    with tempfile.TemporaryDirectory(prefix="tunebatch-sandbox-probe-") as tmp:
        argv = [*_bwrap_prefix(bwrap, Path(tmp), ()), true]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            return str(exc)
    if done.returncode == 0:
        return None
    return (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"


def _bwrap_problem(settings: Settings) -> tuple[str | None, str | None]:
    """(bwrap's path, None) when it works here, else (None, the reason)."""
    found = shutil.which(settings.bwrap)
    if found is None:
        return None, f"bwrap not found (looked for {settings.bwrap!r})"
    problem = _probe(str(Path(found).absolute()))
    if problem is not None:
        return None, f"bwrap cannot create its sandbox here: {problem}"
    return str(Path(found).absolute()), None


@functools.cache
def _warn_unisolated(reason: str) -> None:
    logger.warning(
        "TUNEBATCH_SANDBOX=auto: %s; render tools run WITHOUT filesystem or network isolation "
        "(rlimits only)",
        reason,
    )


def _fix(reason: str) -> str:
    return (
        f"{reason}. The render tools run inside bubblewrap by default (TUNEBATCH_SANDBOX=bwrap): "
        "install the Debian package 'bubblewrap' and allow unprivileged user namespaces "
        "(sysctl kernel.unprivileged_userns_clone=1; in Docker, a seccomp profile that permits "
        "clone with CLONE_NEWUSER), or set TUNEBATCH_SANDBOX=auto (isolate where possible) or "
        "TUNEBATCH_SANDBOX=rlimits (no isolation) to accept the risk"
    )


def require(settings: Settings) -> str:
    """The sandbox mode tools will run in ("bwrap" or "rlimits"); called at worker start.

    Raises `ToolMissingError` when ``TUNEBATCH_SANDBOX=bwrap`` and bwrap cannot run here, so a
    worker that would render without isolation never starts by accident.
    """
    if settings.sandbox == "rlimits":
        logger.warning("TUNEBATCH_SANDBOX=rlimits: render tools run without isolation")
        return "rlimits"
    path, reason = _bwrap_problem(settings)
    if path is not None:
        return "bwrap"
    assert reason is not None
    if settings.sandbox == "bwrap":
        raise ToolMissingError(_fix(reason))
    _warn_unisolated(reason)
    return "rlimits"


def jail_for(settings: Settings, *needed: Path | str) -> Jail:
    """The jail for one tool run: `needed` are the files it reads besides the tune's directory
    (its binary, a soundfont, a config); those under the system binds are not bound twice."""
    if settings.sandbox == "rlimits":
        return UNJAILED
    path, reason = _bwrap_problem(settings)
    if path is None:
        assert reason is not None
        if settings.sandbox == "bwrap":
            raise ToolMissingError(_fix(reason))
        _warn_unisolated(reason)
        return UNJAILED
    extra = (_outside_system(Path(p)) for p in needed)
    return Jail(bwrap=path, read_only=tuple(dict.fromkeys(p for p in extra if p)))


__all__ = ["UNJAILED", "Jail", "jail_for", "require"]
