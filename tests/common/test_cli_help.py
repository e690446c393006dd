"""Every command's ``--help`` of both CLIs, as a user reads it (common.cli_help)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from producer.cli import app as producer_app
from worker.cli import app as worker_app


def command_paths(app: typer.Typer) -> Iterator[list[str]]:
    """The argument lists that reach every command and group of `app`, the app itself first."""
    root = typer.main.get_command(app)

    def walk(command: object, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    yield from walk(root, [])


@pytest.mark.parametrize(
    ("name", "app"),
    [("producer", producer_app), ("worker", worker_app)],
    ids=["producer", "worker"],
)
def test_help_spells_flags_and_arguments_one_way(name: str, app: typer.Typer) -> None:
    paths = list(command_paths(app))
    assert len(paths) > (20 if name == "producer" else 3)
    for path in paths:
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0, (path, result.output)
        text = result.output
        where = " ".join([name, *path])
        # A flag takes no value: no type after it (Typer 0.29 wrote "--any <bool>").
        assert "<bool>" not in text, f"{where} --help:\n{text}"
        usage = next(line for line in text.splitlines() if "Usage:" in line).strip()
        # Arguments as BATCH (required) and [TUNE] (optional), never {batch}.
        assert "{" not in usage, usage
        for arg in re.findall(r"\[?([A-Za-z_]+)\]?(?:\.\.\.)?", usage.split("[OPTIONS]", 1)[-1]):
            if arg not in ("COMMAND", "ARGS"):
                assert arg.isupper(), f"{where}: {usage}"


def test_a_flag_still_shows_its_default_and_options_their_type() -> None:
    result = CliRunner().invoke(producer_app, ["submit-batch", "--help"], env={"COLUMNS": "100"})
    assert "<int range>" in result.output  # an option with a value keeps its type
    assert "--valid-only" in result.output and "--any" in result.output
