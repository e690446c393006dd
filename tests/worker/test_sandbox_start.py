"""A worker that cannot isolate its render tools refuses to start, unless the operator chose so."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from common.errors import ToolMissingError
from tests import servers as srv

ROOT = Path(__file__).resolve().parents[2]


def _start_worker(tmp_path: Path, sandbox: str) -> subprocess.CompletedProcess[str]:
    broken = tmp_path / "bwrap"
    broken.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
    )
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)),
        "TUNEBATCH_BROKER_URL": f"redis://127.0.0.1:{srv.free_port()}/0",  # nobody there
        "TUNEBATCH_DATA_DIR": str(tmp_path),
        "TUNEBATCH_STARTUP_WAIT_S": "0",
        "TUNEBATCH_SANDBOX": sandbox,
        "TUNEBATCH_BWRAP": str(broken),
    }
    return subprocess.run([sys.executable, "-m", "worker.cli", "cpu"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_worker_refuses_to_start_without_its_jail(tmp_path: Path) -> None:
    proc = _start_worker(tmp_path, "bwrap")
    assert proc.returncode == ToolMissingError.exit_code, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: bwrap cannot create its sandbox here"), last
    assert "TUNEBATCH_SANDBOX=auto" in last and "Traceback" not in proc.stderr
    assert "cannot reach Redis" not in proc.stderr  # the sandbox is checked first


def test_auto_starts_with_a_warning_where_bwrap_cannot_run(tmp_path: Path) -> None:
    proc = _start_worker(tmp_path, "auto")
    # It gets past the sandbox check, warns, and then stops at the missing Redis.
    assert "WITHOUT filesystem or network isolation" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot reach Redis")
