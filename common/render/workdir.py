"""The private directory a render works in, and the one file name a tool sees the tune under.

Every render and every version probe gets a fresh directory from `tempfile.mkdtemp` (mode 0700),
and it is removed afterwards whatever happened. Tools never see the tune's text on their command
line, only the fixed name `TUNE_FILE` inside that directory.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from common.render.tool_run import storage_guard

logger = logging.getLogger(__name__)

#: Name of the tune inside its private directory; tools only ever see this fixed name.
TUNE_FILE = "tune.abc"


def make_workdir() -> Path:
    """A fresh private render directory; a full disk is a `StorageFullError`."""
    with storage_guard("creating a render directory"):
        return Path(tempfile.mkdtemp(prefix="tunebatch-render-"))


def remove_workdir(workdir: Path) -> None:
    """Remove a render directory; a failure is logged, never raised over the real outcome."""
    try:
        shutil.rmtree(workdir)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("could not remove render directory %s: %s", workdir, exc)


def write_tune(workdir: Path, abc_text: str) -> Path:
    """Write `abc_text` as `TUNE_FILE` in `workdir`, ending in a newline as the tools expect."""
    path = workdir / TUNE_FILE
    text = abc_text if abc_text.endswith("\n") else abc_text + "\n"
    with storage_guard(f"writing {path}"):
        path.write_bytes(text.encode("utf-8"))
    return path
