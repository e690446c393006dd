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


# -- what the tools decode: escapes and joined lines ---------------------------------------------


def _octal(text: str) -> str:
    return "".join(f"\\{ord(c):03o}" for c in text)


def _unicode(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


#: Escaped spellings of directives and fields, in every position abcm2ps decodes them: the whole
#: line, the start of a field, an inline field's bracket, letter, colon, name or arguments.
ESCAPED = [
    _octal("%%") + "bgcolor red",
    _unicode("%%") + "beginsvg",
    _octal("I") + ":bgcolor red",
    _unicode("I:") + "titlefont x",
    "dAFA " + _octal("[") + "I:bgcolor red] dAFA|",
    "dAFA [" + _octal("I") + ":bgcolor red] dAFA|",
    "dAFA [I" + _octal(":") + "bgcolor red] dAFA|",
    "dAFA \\u005B\\u0049:bgcolor red] dAFA|",  # upper-case hex digits
    "dAFA [I:" + _octal("bgcolor") + " red] dAFA|",
    "dAFA [I:bgcolor" + _octal(" ") + "red] dAFA|",
    "%%MIDI program " + _octal("1"),
    _octal("X") + ":2",
    "T:" + _octal("%%") + "beginsvg",
    "w:" + _octal("[I:format /etc/passwd]"),
    "dAFA \\000 dAFA|",
]


@pytest.mark.parametrize("line", ESCAPED)
def test_escapes_that_spell_ascii_are_refused_wherever_they_are(line: str) -> None:
    text = HEAD + line + "\ndAFA dAFA|\n"
    found = abc_directives.problems(text)
    assert found and found[0].line == 6, found
    assert unsafe_reason(text) is not None
    stripped, counts = abc_directives.strip(text)
    assert counts["escape"] >= 1
    assert abc_directives.problems(stripped) == []


@pytest.mark.parametrize(
    "line",
    ["T:Caf\\'e \\u00e9t\\'e", "T:\\341 la carte \\ae \\o", "\"^\\001\"dAFA dAFA|", "T:\\u2603",
     "T:a \\\\ b", "T:\\ud83c\\udfb5"],
)  # fmt: skip
def test_escapes_that_spell_letters_beyond_ascii_are_kept(line: str) -> None:
    """Accents, latin bytes, the accidental signs and non-ASCII code points: common in titles,
    and none of them can start a field or a directive."""
    assert abc_directives.problems(HEAD + line + "\ndAFA dAFA|\n") == []


def test_the_refusal_names_the_escape_and_what_it_decodes_to() -> None:
    reason = abc_directives.refusal(HEAD + "\\045\\045bgcolor red\n")
    assert reason is not None
    assert "'\\\\045'" in reason and "'%'" in reason and "line 6" in reason


@pytest.mark.parametrize(
    "lines",
    [["dAFA [I\\", ":bgcolor red] dAFA|"], ["dAFA [\\", "I:bgcolor red]|"],
     ["dAFA [I:bgco\\  ", "lor red]|"], ["[I\\", ":MIDI\\", " ptstress /etc/passwd]"]],
)  # fmt: skip
def test_a_field_split_by_a_continuation_is_read_joined(lines: list[str]) -> None:
    """abcm2ps joins a line ending in a backslash to the next (ABC 2.0), before parsing."""
    text = "%abc-2.0\n" + HEAD + "\n".join(lines) + "\ndAFA dAFA|\n"
    found = abc_directives.problems(text)
    assert found, text
    stripped, _ = abc_directives.strip(text)
    assert abc_directives.problems(stripped) == []
    assert "bgcolor" not in stripped and "ptstress" not in stripped


def test_a_harmless_continuation_is_kept() -> None:
    text = HEAD + "dAFA dAFA|\\\n[I:MIDI program 1] dAFA|\n"
    assert abc_directives.problems(text) == []


def test_strip_repeats_until_nothing_is_refused() -> None:
    """Removing an inline field or an escape can make another one; strip removes that too."""
    for line in ["dA [I[I:x]:bgcolor red] FA|", "dA \\1\\06001 FA|", "dA [I:x\\045] FA|"]:
        stripped, _ = abc_directives.strip(HEAD + line + "\n")
        assert abc_directives.problems(stripped) == [], stripped


# -- %%MIDI numbers: abc2midi's ranges ----------------------------------------------------------

MIDI_KEPT = [
    "program 16 127", "program 1 0", "program 127", "channel 16", "chordvol 127", "bassprog 0",
    "transpose -36", "rtranspose 36", "beat 127 0 64 1", "beatmod -127", "drum d2zd 35 38 110 90",
    "drumbars 64", "drone 70 45 33 80 80", "ratio 3 1", "grace 1/3", "gracedivider 2",
    "control 7 127", "gchord f2c2z9",
]  # fmt: skip
MIDI_REFUSED = [
    "program 5000 1", "program 0 1", "program 17 1", "program 1 128", "program 128",
    "channel 0", "channel 17", "chordprog 999999", "bassvol 128", "transpose 37",
    "rtranspose -999999", "beat 128 0 0 1", "beat 100 90 80 0", "beatmod 128",
    "drum d0 36 100", "drum z0", "drum d 999999 999999", "drum d 36 100 100", "drumbars 0",
    "drone 999 45 33 80 80", "ratio 0 0", "ratio 100 1", "grace 0/0", "grace 5/1", "grace 1/65",
    "gracedivider 0", "gracedivider 1", "control 999 999", "control 7 128", "gchord f0",
]  # fmt: skip


@pytest.mark.parametrize("args", MIDI_KEPT)
def test_midi_numbers_within_abc2midi_ranges_are_kept(args: str) -> None:
    for spelling in (f"%%MIDI {args}", f"I:MIDI {args}", f"dAFA [I:MIDI {args}]|"):
        assert abc_directives.problems(HEAD + spelling + "\n") == [], spelling


@pytest.mark.parametrize("args", MIDI_REFUSED)
def test_midi_numbers_out_of_range_are_refused(args: str) -> None:
    sub = args.split()[0]
    for spelling in (f"%%MIDI {args}", f"I:MIDI {args}", f"dAFA [I:MIDI {args}]|"):
        found = abc_directives.problems(HEAD + spelling + "\n")
        assert [p.directive for p in found] == [f"MIDI {sub}"], spelling
