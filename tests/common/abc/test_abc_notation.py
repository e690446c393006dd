"""Pure text functions: splitting, cleaning, headers, unsafe input."""

from __future__ import annotations

import pytest

from common.abc import notation as an

FILE = """%abc-2.1
% a file header that is not a tune
%%pagewidth 21cm

X: 1
T: The First
B: "O'Neill's 1"
Z: "Transcribed by someone@example.org"
M: 6/8
L: 1/8
K:D
% a comment line
ABc def|gfe dcB  % trailing comment
X: 2
T: Second, no blank line before it
M:C
K:G
GABc dedB|
"""


def test_split_tunes_finds_each_tune_and_skips_file_header() -> None:
    tunes = list(an.split_tunes(FILE))
    assert len(tunes) == 2
    assert tunes[0].startswith("X: 1") and "pagewidth" not in tunes[0]
    assert tunes[1].startswith("X: 2")


def test_split_stops_at_blank_line_and_handles_crlf() -> None:
    text = "X:1\r\nT:a\r\nK:C\r\nCDE|\r\n\r\nstray text after the tune\r\n"
    assert list(an.split_tunes(text)) == ["X:1\nT:a\nK:C\nCDE|"]


def test_normalise_drops_bibliography_comments_and_spaces() -> None:
    tune = an.normalise_tune(next(an.split_tunes(FILE)))
    assert tune == "X:1\nT:The First\nM:6/8\nL:1/8\nK:D\nABc def|gfe dcB"


def test_header_fields_and_missing_fields() -> None:
    tune = "X:3\nT:t\nK:G\nabc|"
    assert an.header_fields(tune) == {"X": "3", "T": "t", "K": "G"}
    assert an.missing_fields(tune) == ["M"]
    assert an.missing_fields("X:1\nT:a\nM:C\nK:C\nC") == []


def test_ensure_headers_adds_number_and_title_only_when_missing() -> None:
    assert (
        an.ensure_headers("X:\nM:C\nK:C\nCDE|\n", 7, "Tune 7") == "X:7\nT:Tune 7\nM:C\nK:C\nCDE|\n"
    )
    kept = an.ensure_headers("X:99\nT:Mine\nM:C\nK:C\nC\n", 7, "Tune 7")
    assert kept == "X:7\nT:Mine\nM:C\nK:C\nC\n"


@pytest.mark.parametrize(
    "text",
    [
        "X:1\n%%abc-include /etc/passwd\nK:C\n",
        "X:1\nI:abc-include secret.abc\nK:C\n",
        "X:1\nK:C\n[I:include x]C\n",
        "X:1\n%%beginps\n/x 1 def\n%%endps\nK:C\n",
        "X:1\nK:C\nC\x00D\n",
        "X:1\nK:C\nC\x1bD\n",
    ],
)
def test_unsafe_reason_rejects_includes_postscript_and_control_bytes(text: str) -> None:
    assert an.unsafe_reason(text) is not None


def test_unsafe_reason_accepts_ordinary_tunes() -> None:
    assert an.unsafe_reason('X:1\nT:Caf\u00e9\nM:C\nK:C\n"Am"CDE|\n') is None


def test_build_primer() -> None:
    assert an.build_primer() == "X:"
    assert an.build_primer(meter="6/8", key="D") == "X:1\nM:6/8\nK:D\n"
    assert an.build_primer("X:1\nT:Mine\n", meter="6/8") == "X:1\nT:Mine\n"


def test_header_primer_keeps_style_fields() -> None:
    header = an.parse_header("X:5\nT:Jig\nR:jig\nM:6/8\nL:1/8\nK:Ador\nabc|")
    assert header.primer() == "X:1\nR:jig\nM:6/8\nL:1/8\nK:Ador\n"


def test_join_tunes_separates_with_one_blank_line() -> None:
    assert an.join_tunes(["X:1\nK:C\nC\n", "X:2\nK:D\nD"]) == "X:1\nK:C\nC\n\nX:2\nK:D\nD\n\n"
