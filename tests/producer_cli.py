"""The producer CLI run in-process through Typer's CliRunner, configured like a user's shell."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.store.base import ArtifactStore
from producer import cli, options

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
    options.settings.cache_clear()
    try:
        yield
    finally:
        options.settings.cache_clear()


@contextlib.contextmanager
def embedded_data_dir(
    data: Path, monkeypatch: pytest.MonkeyPatch, models_from: ArtifactStore | None = None
) -> Iterator[Path]:
    """Embedded mode (no broker, no bucket) on the fresh data dir `data`, with a copy of the
    models in `models_from` when given, so a test can change its models freely."""
    if models_from is not None:
        for key in models_from.list("models/"):
            target = data / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(models_from.get_bytes(key))
    monkeypatch.setenv("TUNEBATCH_DATA_DIR", str(data))
    monkeypatch.delenv("TUNEBATCH_BROKER_URL", raising=False)
    monkeypatch.delenv("TUNEBATCH_S3_BUCKET", raising=False)
    options.settings.cache_clear()
    try:
        yield data
    finally:
        options.settings.cache_clear()
