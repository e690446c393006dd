"""TensorFlow's start-up lines kept off the user's terminal unless they ask for them.

Loading TensorFlow prints half a dozen lines to the process' stderr — oneDNN's notice, "could
not find cuda drivers", the CPU feature guard, and on first use ``E0000 … failed call to
cuInit: UNKNOWN ERROR (303)`` on every machine without a GPU — that read as failures to a
newcomer and bury the progress bar. ``TF_CPP_MIN_LOG_LEVEL=3`` silences what goes through
TensorFlow's logger (the cuInit line), but the first lines are written by C++ static
initialisers *before* absl's logging exists, straight to file descriptor 2, where no variable
reaches them. So the import itself runs with fd 2 pointed at a temporary file, and afterwards
every line that is not known start-up noise is written back: a real error during the import
still reaches the terminal, just after the import rather than during it.

Nothing here imports TensorFlow: `quiet_startup` installs an import hook that does its work
the first time anything (Keras included) imports it, so the producer's commands that never
load TensorFlow pay nothing.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType

#: Lines TensorFlow's import writes that say nothing a user can act on.
STARTUP_NOISE = re.compile(
    r"^(?:"
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:. ]+\s+\d+ \S+:\d+\] .*"  # glog INFO lines (oneDNN, cuda stub, CPU guard)
    r"|To enable the following instructions: .*"  # the CPU guard's second line
    r"|E\d{4} [\d:. ]+\s+\d+ cuda_\w+\.cc:\d+\] failed call to cuInit: .*"
    r")$"
)


def is_startup_noise(line: str) -> bool:
    return STARTUP_NOISE.match(line.rstrip("\r\n")) is not None


@contextlib.contextmanager
def filtered_stderr(keep: Callable[[str], bool]) -> Iterator[None]:
    """Run the body with fd 2 captured, then write back the lines `keep` accepts.

    A file rather than a pipe: nothing can block on a full pipe, and a C++ thread that still
    holds the descriptor after the body ends writes into the file, not into a closed pipe."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                if keep(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with filtered_stderr(lambda line: not is_startup_noise(line)):
            self._inner.exec_module(module)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level ``tensorflow`` package, once."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # let the real finders answer, and only once
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_startup(show: bool = False) -> None:
    """Keep TensorFlow's start-up lines off stderr, unless `show` (``--verbose``, a DEBUG log
    level). Call before anything imports TensorFlow; a variable the user set wins."""
    if show:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietFinder())
