"""The producer stands on `common` alone: it imports nothing from `worker` (the producer image
ships no worker code), and its commands never ask which mode they run in (`producer.backend`
decides that once)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCER = ROOT / "producer"


def _modules() -> list[str]:
    return sorted(
        f"producer.{path.stem}" for path in PRODUCER.glob("*.py") if path.stem != "__init__"
    )


def test_importing_every_producer_module_loads_no_worker_module() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "import producer.cli\n"
        "producer.cli.app(['--help'], standalone_mode=False)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'worker')\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120,
                   capture_output=True)  # fmt: skip


def _imports(path: Path) -> list[str]:
    """Every module an ``import`` or ``from ... import`` in `path` names, at any depth."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_no_producer_source_imports_worker() -> None:
    found = {
        path.name: name
        for path in PRODUCER.glob("*.py")
        for name in _imports(path)
        if name == "worker" or name.startswith("worker.")
    }
    assert not found, found


def test_commands_never_branch_on_the_mode() -> None:
    """Only `producer.backend` (and the settings) may look at ``distributed``."""
    branching = []
    for path in PRODUCER.glob("*.py"):
        if path.name == "backend.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = (
                node.attr
                if isinstance(node, ast.Attribute)
                else node.id
                if isinstance(node, ast.Name)
                else None
            )
            if name == "distributed":
                branching.append(f"{path.name}:{getattr(node, 'lineno', 0)}")
    assert not branching, branching


def test_embedded_commands_load_no_broker_client(tmp_path: Path) -> None:
    """Without TUNEBATCH_BROKER_URL nothing talks to Redis or Celery, so nothing imports them
    (they cost every command ~0.3 s); the bucket's boto3 likewise stays out without a bucket."""
    code = (
        "import sys, producer.cli\n"
        "for argv in (['list'], ['corpus', 'list'], ['model', 'list'], ['--help']):\n"
        "    producer.cli.app(argv, standalone_mode=False)\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'celery', 'kombu', 'redis', 'boto3', 'botocore', 'tensorflow', 'keras'})\n"
        "assert not loaded, loaded\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEBATCH_")}
    env["TUNEBATCH_DATA_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, timeout=120,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_command_turns_errors_into_one_line() -> None:
    """Commands are registered one way (each `*_cli` module's ``register``) and every one is
    wrapped by `options.handles_errors`, so a user's mistake is never a traceback."""
    import typer

    from producer.cli import app

    def callbacks(group: typer.Typer, path: str) -> list[tuple[str, object]]:
        found: list[tuple[str, object]] = []
        for command in group.registered_commands:
            name = command.name or getattr(command.callback, "__name__", "?")
            found.append((f"{path} {name}", command.callback))
        for sub in group.registered_groups:
            assert sub.typer_instance is not None
            found += callbacks(sub.typer_instance, f"{path} {sub.name}")
        return found

    found = callbacks(app, "producer")
    assert len(found) > 20
    bare = [name for name, fn in found if not getattr(fn, "handles_errors", False)]
    assert not bare, bare
