"""The options several commands share are declared once (`producer.options`): the same flags,
help text and default wherever they appear, and the defaults are the params models'."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from common.params import TuneOptions
from producer.cli import app

#: Each shared option and the commands that take it.
SHARED: dict[str, list[tuple[str, ...]]] = {
    "temperature": [("submit-batch",), ("schedule", "add")],
    "top_k": [("submit-batch",), ("schedule", "add")],
    "seed": [("submit-batch",), ("schedule", "add")],
    "wait": [("submit-batch",), ("train",)],
    "formats": [("submit-batch",), ("schedule", "add")],
    "audio": [("submit-batch",), ("schedule", "add")],
    "instrument": [("submit-batch",), ("schedule", "add")],
    "valid_only": [("submit-batch",), ("schedule", "add")],
    "max_tries": [("submit-batch",), ("schedule", "add")],
    "max_chars": [("submit-batch",), ("schedule", "add")],
    "form": [("submit-batch",), ("schedule", "add")],
}


def _option(path: tuple[str, ...], name: str) -> Any:
    """The click option `name` of the command at `path` (typer's own copy of click's classes,
    hence no isinstance)."""
    command: Any = typer.main.get_command(app)
    for part in path:
        command = command.commands[part]
    found = [p for p in command.params if p.name == name and hasattr(p, "secondary_opts")]
    assert len(found) == 1, (path, name)
    return found[0]


@pytest.mark.parametrize("name", sorted(SHARED))
def test_a_shared_option_has_one_flag_and_one_help_text(name: str) -> None:
    options = [_option(path, name) for path in SHARED[name]]
    assert len({(tuple(o.opts), tuple(o.secondary_opts)) for o in options}) == 1
    assert len({o.help for o in options}) == 1 and options[0].help


@pytest.mark.parametrize("name", ["valid_only", "max_tries"])
def test_the_gate_defaults_are_the_params_models(name: str) -> None:
    for path in SHARED[name]:
        assert _option(path, name).default == TuneOptions.model_fields[name].default
