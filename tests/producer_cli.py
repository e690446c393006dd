"""The producer CLI run in-process through Typer's CliRunner, configured like a user's shell."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import pytest
from typer.testing import CliRunner

from producer import cli

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``producer ARGS``."""
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


@contextlib.contextmanager
def producer_settings(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> Iterator[None]:
    """Set the TUNEBATCH_* variables of `env`; the CLI reads its settings afresh inside."""
    for key, value in env.items():
        if key.startswith("TUNEBATCH_"):
            monkeypatch.setenv(key, value)
    cli.settings.cache_clear()
    try:
        yield
    finally:
        cli.settings.cache_clear()
