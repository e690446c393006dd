"""docs/settings.md names every setting: a field added to `Settings` without a line there fails."""

from __future__ import annotations

import re
from pathlib import Path

from common.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    # Rows name a variable in full (`TUNEBATCH_RENDER_CPU_S`) or, after the first, by its
    # suffix (`_RENDER_MEMORY_BYTES`).
    named = set(re.findall(r"`TUNEBATCH_([A-Z0-9_]+)`", text))
    named |= set(re.findall(r"`_([A-Z0-9_]+)`", text))
    missing = sorted(
        f"TUNEBATCH_{f.upper()}" for f in Settings.model_fields if f.upper() not in named
    )
    assert not missing, f"docs/settings.md lacks {missing}"
