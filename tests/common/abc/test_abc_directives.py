"""The directive allow-list: what it keeps, what it refuses in any spelling, what import strips."""

from __future__ import annotations

from collections import Counter

import pytest

from common.abc import directives as abc_directives
from common.abc.corpus import BUNDLED, bundled_files, read_abc_file
from common.abc.notation import split_tunes, unsafe_reason

HEAD = "X:1\nT:t\nM:4/4\nL:1/8\nK:D\n"

KEPT = [
    "%%MIDI program 1",
    "%%MIDI program 2 73",
    "%%midi gchord fzczfzcz",
    "I:MIDI transpose -12",
    "%%MIDI drum dzddz 36 38 38 36",
    "%%MIDI beat 105 95 80 1",
    "%%MIDI chordprog 20",
    "%%MIDI drone 70 45 33 80 80",
    "%%MIDI droneon",
    "%%scale 0.65",
    "%%staffsep 70pt",
    "%%indent 600",
    "%%slurgraces 1",
    "I:linebreak $",
    "%%score (1 2)",
]

#: Every class of the issue, in its spellings: (line, the directive the message must name).
REFUSED = [
    ("I:format /etc/passwd", "format"),
    ("%%format /etc/passwd", "format"),
    ("%%FORMAT /etc/passwd", "format"),
    ("   %%format /etc/passwd", "format"),
    ("I : format /etc/passwd", "format"),
    ("%%abcm2ps #", "abcm2ps"),
    ("%%ss-pref #", "ss-pref"),
    ("I:ss-pref #", "ss-pref"),
    ('I:bgcolor red"/><script>alert(1)</script><rect fill="red', "bgcolor"),
    ("%%bgcolor red", "bgcolor"),
    ('I:titlefont Times"/><script>alert(1)</script>', "titlefont"),
    ("%%vocalfont Helvetica 12", "vocalfont"),
    ("%%musicfont url(http://example.invalid/f.woff) Bravura", "musicfont"),
    ("%%beginsvg", "beginsvg"),
    ("%%beginps", "beginps"),
    ("%%EPS /etc/passwd", "eps"),
    ("%%abc-include /etc/passwd", "abc-include"),
    ("%%MIDI ptstress /etc/passwd", "MIDI ptstress"),
    ("I:MIDI ptstress /etc/passwd", "MIDI ptstress"),
    ("%%MIDI program 1 /etc/passwd", "MIDI program"),
    ("%%MIDI gchord fzcz /etc/passwd", "MIDI gchord"),
    ("%%scale 1; rm -rf", "scale"),
    ("%% D ^F G A B c d", "d"),
    ("%%", "(empty)"),
]


@pytest.mark.parametrize("line", KEPT)
def test_supported_directives_are_kept(line: str) -> None:
    assert abc_directives.problems(HEAD + line + "\ndAFA dAFA|\n") == []
    assert unsafe_reason(HEAD + line + "\ndAFA dAFA|\n") is None


@pytest.mark.parametrize(("line", "name"), REFUSED)
def test_every_spelling_of_a_dangerous_directive_is_refused(line: str, name: str) -> None:
    text = HEAD + line + "\ndAFA dAFA|\n"
    found = abc_directives.problems(text)
    assert [p.directive for p in found] == [name]
    assert found[0].line == 6
    reason = unsafe_reason(text)
    assert (reason is not None and repr(name) in reason) or "forbidden directive" in (reason or "")


@pytest.mark.parametrize(("line", "name"), REFUSED[:-2])
def test_inline_fields_are_checked_too(line: str, name: str) -> None:
    body = line.strip().removeprefix("%%").removeprefix("I:").removeprefix("I : ")
    text = HEAD + f"dAFA [I:{body}] dAFA|\n"
    assert [p.directive for p in abc_directives.problems(text)] == [name]


def test_an_unclosed_inline_field_is_checked_to_the_end_of_its_line() -> None:
    assert abc_directives.problems(HEAD + "dAFA [I:format /etc/passwd\n")[0].directive == "format"


def test_a_continuation_cannot_extend_a_directive() -> None:
    found = abc_directives.problems(HEAD + "%%MIDI program 1\n+:ptstress /etc/passwd\n")
    assert [p.directive for p in found] == ["+:"]
    assert abc_directives.problems(HEAD + "w:la la\n+:la la\n") == []


def test_the_message_names_the_directive_its_line_and_the_allow_list() -> None:
    reason = abc_directives.refusal(HEAD + "I:format /etc/passwd\n%%bgcolor red\n")
    assert reason is not None
    assert "line 6" in reason and "'format'" in reason and "(and 1 more)" in reason
    assert "allow-list" in reason


def test_comments_are_not_directives() -> None:
    assert abc_directives.problems(HEAD + "% format /etc/passwd\ndAFA|  % I:format x\n") == []


def test_strip_drops_lines_and_inline_fields_and_counts_them() -> None:
    text = HEAD + "I:format /x\n%%MIDI program 1\n%%MIDI ptstress /x\ndA [I:bgcolor red] FA|\n"
    stripped, counts = abc_directives.strip(text)
    assert counts == Counter({"format": 1, "MIDI ptstress": 1, "bgcolor": 1})
    assert stripped == HEAD + "%%MIDI program 1\ndA  FA|\n"
    assert abc_directives.problems(stripped) == []


#: What the allow-list strips from music21's ABC collections: nothing but Aird's repeat notes
#: written as I: fields ("I: :: ::") and its scale lines written as "%% D ^F G A" comments.
EXPECTED_STRIPPED: dict[str, dict[str, int]] = {
    "oneills": {},
    "ryans": {},
    "essen": {},
    "nottingham": {},
    "miscfolk": {},
    "airds": {
        "::": 847, "||": 172, ":|": 67, "(1)": 15, "d": 12, "|:": 6, "s": 5, "g": 4, "^f": 2,
        "e": 2, ":": 2, "bfly": 1, "h||": 1, "::s.": 1, "||s": 1, ":||": 1, "s::": 1,
    },
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_the_allow_list_covers_the_corpora_we_ship(name: str) -> None:
    try:
        files = bundled_files(name)
    except Exception as exc:  # music21 missing: nothing shipped to check
        pytest.skip(str(exc))
    stripped: Counter[str] = Counter()
    for path in files:
        for tune in split_tunes(read_abc_file(path)):
            stripped.update(abc_directives.strip(tune)[1])
    assert dict(stripped) == EXPECTED_STRIPPED[name]


def test_a_sampled_tune_with_a_refused_directive_is_invalid() -> None:
    """What the sampler writes passes the same rule: the gate marks it invalid (and resamples
    it with --valid-only) and render refuses it, naming the directive."""
    from common.jobs.generate import check_tune
    from common.settings import Settings

    quality = check_tune(HEAD + "I:bgcolor red\ndAFA dAFA|\n", Settings())
    assert quality.valid is False
    assert any("'bgcolor'" in reason for reason in quality.reasons), quality.reasons
