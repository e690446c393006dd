"""Settings: read from TUNEBATCH_*, checked, and each field is one that something reads."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.settings import Settings


def test_log_level_is_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().log_level == "INFO"
    monkeypatch.setenv("TUNEBATCH_LOG_LEVEL", "debug")
    assert Settings().log_level == "DEBUG"
    monkeypatch.setenv("TUNEBATCH_LOG_LEVEL", "LOUD")
    with pytest.raises(ValidationError, match="log_level"):
        Settings()


def test_per_batch_parameters_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # The sampler's length and the tries per tune are options of each batch (BatchSpec), not of
    # the installation: a setting for them would be one nobody reads.
    monkeypatch.setenv("TUNEBATCH_MAX_CHARS", "99")
    settings = Settings()
    assert "max_chars" not in Settings.model_fields and "max_tries" not in Settings.model_fields
    assert not hasattr(settings, "max_chars")
