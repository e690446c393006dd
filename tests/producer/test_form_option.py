"""``--form/--no-form`` on the commands that take sampling options, with the default of
`common.params` (the rule itself: tests/common/lstm/test_bar_form.py)."""

from __future__ import annotations

import re

import pytest

from common.params import DEFAULT_FORM, SamplingOptions
from tests.producer_cli import run


@pytest.mark.parametrize("command", [["submit-batch"], ["schedule", "add"]])
def test_form_is_an_option_of_every_command_that_samples(command: list[str]) -> None:
    code, out, err = run(*command, "--help")
    assert code == 0, err
    text = re.sub(r"\x1b\[[0-9;]*m", "", out)  # rich may colour the help
    assert "--form" in text and "--no-form" in text
    assert SamplingOptions().form is DEFAULT_FORM is True
