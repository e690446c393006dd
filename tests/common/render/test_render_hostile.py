"""Hostile input for the render sandbox: a shipped corpus of attacks, and a fuzz test.

This test process plays the render worker. For every file of tests/data/hostile/ (see its
make_corpus.py) and every fuzzed tune, whatever the tools do, we assert:

* **a clear outcome**: a render whose files are what they claim to be, or a `RenderError` (a
  refusal, the tool's own words, or a named limit) — never a transient error, a missing tool or
  an unexpected exception, which would make the job system retry a tune that can never work;
* **no run beyond its limit**: every tool run ends within ``render_timeout_s`` plus a second of
  slack, measured from render's own log, and the whole case within its stages' budget;
* **no escape**: renders run with a fresh ``TMPDIR`` and working directory, and afterwards the
  test's whole directory tree (temp root, working directory, the folder of a planted secret) is
  exactly as before — every tune's temp directory gone, nothing written anywhere else;
* **no leak**: the planted secret file's content never appears in any output file, result,
  warning, error message, error detail or log line, although several files name it in include,
  PostScript, SVG and format directives;
* **the worker lives on**: no child process outlives a render, and a good tune still renders.

The fuzz test runs ``TUNEBATCH_FUZZ_EXAMPLES`` examples (default 300, about 10 s); set
it to 10000 for the full run, and ``TUNEBATCH_FUZZ_REPORT=path.json`` to keep its figures.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import RenderError
from common.params import FORMATS
from common.render.pipeline import check_abc, rendered
from common.settings import Settings

HOSTILE = Path(__file__).resolve().parents[2] / "data" / "hostile"
CASES = sorted(p.name for p in HOSTILE.glob("*.abc"))

#: The planted secret: a valid tune, so that a tool that did include it would copy its title
#: into the MIDI (track name), the SVG and the PDF, where this test would find it.
SECRET_MARK = "SECRET-7f3a9c1e-do-not-leak"
SECRET_TUNE = f"X:99\nT:{SECRET_MARK}\nM:4/4\nL:1/8\nK:C\nCDEF GABc|\n"

#: Limits for these tests: the defaults, except a shorter wall and CPU time (a hang shows sooner)
#: and a shorter longest tune (rendering 10 minutes of audio would only make the suite slow).
LIMITS = Settings(
    abc2midi="abc2midi",
    timidity="timidity",
    abcm2ps="abcm2ps",
    timidity_config=Path("/etc/timidity/freepats.cfg"),
    synth="timidity",
    render_timeout_s=10.0,
    render_cpu_s=10,
    render_memory_bytes=1 << 30,
    render_max_output_bytes=64 << 20,
    max_midi_seconds=120.0,
    loudness_normalise=True,
)
#: A tool run may end this much after its timeout (the kill, the reaping, the log).
SLACK_S = 1.0
#: Our own work per render besides the tools (MIDI parsing, loudness, file checks).
OWN_WORK_S = 5.0

#: Formats whose tool is optional on a machine.
_OPTIONAL = {"pdf": "rsvg-convert", "flac": "flac"}
_AVAILABLE = [f for f in FORMATS if f not in _OPTIONAL or shutil.which(_OPTIONAL[f])]
#: Two renders per case, so a tune abc2midi rejects still reaches abcm2ps (and the other way).
AUDIO = [f for f in _AVAILABLE if f in ("abc", "mid", "wav", "ogg", "mp3", "flac")]
SCORE = [f for f in _AVAILABLE if f in ("abc", "svg", "pdf")]
FUZZ_FORMATS = ["abc", "mid"]

_FINISHED = re.compile(r"^(\S+) finished: status \S+, ([0-9.]+)s wall")
_REFUSALS = ("refused before any tool", "the tune is empty", "render one tune per file")
#: Files that must be refused before any tool runs.
MUST_REFUSE = {
    "beginps.abc",
    "beginsvg.abc",
    "binary.abc",
    "empty.abc",
    "eps-file.abc",
    "format-file.abc",
    "include-abc.abc",
    "include-field.abc",
    "include-inline.abc",
    "include-mixed-case.abc",
    "include-plain.abc",
    "include-spaces.abc",
    "many-tunes.abc",
    "nul-in-tune.abc",
    "postscript-ps.abc",
    "rtl-override.abc",
    "whitespace.abc",
    # Directives off the allow-list, in every spelling.
    "bgcolor-script.abc",
    "field-format-before-x.abc",
    "field-format-body.abc",
    "field-format-dev-zero.abc",
    "field-format-header.abc",
    "field-format-inline.abc",
    "field-format-upper.abc",
    "long-notes.abc",
    "midi-continued.abc",
    "midi-ptstress-field.abc",
    "midi-ptstress-inline.abc",
    "midi-ptstress.abc",
    "musicfont-url.abc",
    "prefix-abcm2ps-format.abc",
    "prefix-field-beginsvg.abc",
    "prefix-ss-pref-format.abc",
    "titlefont-script.abc",
    "vocalfont-inline.abc",
    # Escapes abcm2ps decodes to ASCII, in every position, and a field split by a continuation.
    "escape-octal-percent.abc",
    "escape-octal-field.abc",
    "escape-inline-bracket.abc",
    "escape-inline-letter.abc",
    "escape-inline-colon.abc",
    "escape-in-argument.abc",
    "escape-unicode-beginsvg.abc",
    "escape-unicode-upper.abc",
    "escape-new-tune.abc",
    "escape-nul.abc",
    "continuation-inline.abc",
    # %%MIDI numbers out of abc2midi's ranges (some crash it).
    "midi-channel-huge.abc",
    "midi-drum-zero.abc",
    "midi-gracedivider-zero.abc",
    "midi-directives.abc",
    "midi-drone.abc",
}
#: Files a tool sees, and what the outcome must say (the check, the audio, the score render).
EXPECTED = {
    # abcm2ps cuts the title inside a character: the SVG does not parse and is not returned.
    "combining-title.abc": (None, None, "not well-formed"),
    # abc2midi runs away on these repeats (exit 1, "eputc"): invalid, never synthesised.
    "many-repeats.abc": ("runaway", "runaway", None),
    "double-repeats.abc": ("runaway", "runaway", None),
}


class ToolLog(logging.Handler):
    """Collects the render package's log lines: tool starts, and each run's wall time."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def runs(self) -> list[tuple[str, float]]:
        found = (_FINISHED.match(line) for line in self.lines)
        return [(m.group(1), float(m.group(2))) for m in found if m]

    def started(self) -> int:
        return sum(1 for line in self.lines if line.startswith("started "))


@dataclass
class Sandbox:
    """The directories a render could touch, the planted secret, and render's log."""

    base: Path
    temp_root: Path
    cwd: Path
    secret: Path
    log: ToolLog
    children: set[int] = field(default_factory=set)

    def listing(self) -> dict[str, tuple[int, int]]:
        """Every path under the test's directory with size and mtime: any write shows here."""
        out = {}
        for path in sorted(self.base.rglob("*")):
            info = path.lstat()
            # The temp root's own mtime moves as tune directories come and go; that is its job.
            stamp = (0, 0) if path == self.temp_root else (info.st_size, info.st_mtime_ns)
            out[str(path.relative_to(self.base))] = stamp
        return out

    def plant(self, text: str) -> str:
        return text.replace("@SECRET@", str(self.secret))


def _children() -> set[int]:
    """Pids of this process's live (not zombie) children."""
    me = str(os.getpid())
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] not in ("Z", "X"):
            pids.add(int(stat.parent.name))
    return pids


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """A fresh TMPDIR and working directory, a planted secret beside them, render's log."""
    temp_root, cwd, secret_dir = tmp_path / "tmp", tmp_path / "cwd", tmp_path / "private"
    for folder in (temp_root, cwd, secret_dir):
        folder.mkdir()
    secret = secret_dir / "secret.abc"
    secret.write_text(SECRET_TUNE)
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))
    monkeypatch.setenv("TMPDIR", str(temp_root))
    monkeypatch.chdir(cwd)
    log = ToolLog()
    logger = logging.getLogger("common")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(log)
    try:
        yield Sandbox(tmp_path, temp_root, cwd, secret, log, _children())
    finally:
        logger.removeHandler(log)
        logger.setLevel(old_level)


@dataclass
class Outcome:
    """What one call did: its error (None for success), wall time, and every text it produced."""

    error: Exception | None
    seconds: float
    texts: list[str]
    blobs: list[bytes]


def _render(text: str, formats: list[str], limits: Settings) -> Outcome:
    started = time.monotonic()
    texts: list[str] = []
    blobs: list[bytes] = []
    try:
        with rendered(text, formats, limits) as result:
            for fmt, path in result.files.items():
                data = path.read_bytes()
                assert len(data) <= limits.render_max_output_bytes, fmt
                assert _magic_ok(fmt, data), f"{fmt} file does not look like one"
                blobs.append(data)
            texts += result.warnings
    except RenderError as exc:
        texts += [str(exc), exc.detail]
        return Outcome(exc, time.monotonic() - started, texts, blobs)
    return Outcome(None, time.monotonic() - started, texts, blobs)


def _magic_ok(fmt: str, data: bytes) -> bool:
    magic = {
        "mid": data.startswith(b"MThd"),
        "wav": data.startswith(b"RIFF") and data[8:12] == b"WAVE",
        "ogg": data.startswith(b"OggS"),
        "mp3": data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF),
        "flac": data.startswith(b"fLaC"),
        "svg": b"<svg" in data[:4096],
        "pdf": data.startswith(b"%PDF-"),
    }
    return magic.get(fmt, True)


def _check(text: str, limits: Settings) -> Outcome:
    started = time.monotonic()
    result = check_abc(text, limits)  # never raises for a bad tune: an answer per tune
    texts = [*result.errors, *result.warnings]
    error = None if result.ok else RenderError("; ".join(result.errors[:3]))
    return Outcome(error, time.monotonic() - started, texts, [])


def _assert_contained(
    box: Sandbox, before: dict[str, tuple[int, int]], outcomes: list[Outcome], limits: Settings
) -> None:
    """The assertions shared by the corpus and the fuzz test (see the module docstring)."""
    # No run beyond its limit.
    for tool, seconds in box.log.runs():
        assert seconds <= limits.render_timeout_s + SLACK_S, f"{tool} ran {seconds:.1f} s"
    runs = len(box.log.runs())
    budget = runs * (limits.render_timeout_s + SLACK_S) + len(outcomes) * OWN_WORK_S
    assert sum(o.seconds for o in outcomes) <= budget
    # No escape: every temp directory removed, nothing written anywhere else.
    assert list(box.temp_root.iterdir()) == []
    assert box.listing() == before
    # No leak.
    mark = SECRET_MARK.encode()
    for outcome in outcomes:
        assert not any(SECRET_MARK in t for t in outcome.texts)
        assert not any(mark in blob for blob in outcome.blobs)
        # No stored score can run script (common.render.svg, behind the allow-list).
        assert not any(b"<script" in blob.lower() for blob in outcome.blobs)
    assert not any(SECRET_MARK in line for line in box.log.lines)
    # The worker lives on, and no tool outlived its render.
    assert _children() <= box.children


@pytest.mark.parametrize("name", CASES)
def test_hostile_file(name: str, sandbox: Sandbox) -> None:
    raw = (HOSTILE / name).read_bytes()
    # The worker reads tune.abc as UTF-8; undecodable bytes become U+FFFD rather than a crash.
    text = sandbox.plant(raw.decode("utf-8", errors="replace"))
    before = sandbox.listing()

    outcomes = [_check(text, LIMITS), _render(text, AUDIO, LIMITS), _render(text, SCORE, LIMITS)]

    _assert_contained(sandbox, before, outcomes, LIMITS)
    for outcome in outcomes:
        if outcome.error is not None:
            message = str(outcome.error)
            assert message.strip(), "an error must say what happened"
            tool = getattr(outcome.error, "tool", "")
            assert tool or any(r in message for r in _REFUSALS) or outcome is outcomes[0]
    for outcome, expected in zip(outcomes, EXPECTED.get(name, (None,) * 3), strict=True):
        if expected is not None:
            assert outcome.error is not None and expected in str(outcome.error), outcome.error
    if name in MUST_REFUSE:
        assert sandbox.log.started() == 0, "a refused text reached a tool"
        for outcome in outcomes:
            assert outcome.error is not None
            assert any(r in str(outcome.error) for r in _REFUSALS)


def test_the_corpus_is_what_make_corpus_writes() -> None:
    """The shipped files are exactly the generator's output (and so documented by it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_corpus", HOSTILE / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected: dict[str, bytes] = module.corpus()
    assert sorted(expected) == CASES
    for name, data in expected.items():
        assert (HOSTILE / name).read_bytes() == data, name


def test_worker_still_renders_after_the_corpus(sandbox: Sandbox) -> None:
    good = "X:1\nT:Still alive\nM:4/4\nL:1/8\nK:D\n|:dAFA dAFA|BGEG BGEG:|\n"
    outcome = _render(good, AUDIO, LIMITS)
    assert outcome.error is None
    assert list(sandbox.temp_root.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Fuzzing: ABC-shaped text, not just random bytes
# --------------------------------------------------------------------------------------------

_NOTE = st.builds(
    lambda acc, pitch, octave, length: acc + pitch + octave + length,
    st.sampled_from(["", "", "", "^", "_", "=", "^^", "__"]),
    st.sampled_from(list("abcdefgABCDEFGzxZ")),
    st.sampled_from(["", "", "'", ",", "''", ",,", "'''''''"]),
    st.sampled_from(["", "", "2", "/2", "3/2", "/", "//", "4", "16", "0", "3/0", "999", "/999"]),
)
_SYMBOLS = st.sampled_from(
    [
        "|", "|", "||", "|]", "[|", "|:", ":|", "::", ":|:", "[1", "[2", "|1", ":|2", "[1,3",
        "(3", "(5:4:5", "(9", "(2", "(", ")", "-", ">", "<", ">>", "{g}", "{/a}", "{", "}",
        "[", "]", "[ceg]", "[CEG]2", "!trill!", "!fermata!", "!p!", "!ff!", "!crescendo(!",
        "~", ".", "H", "T", "u", "v", "\"Am\"", "\"^text\"", "\"_below\"", "[M:3/4]",
        "[K:G]", "[L:1/16]", "[Q:1/4=40]", "[V:2]", "[P:A]", "\\", " ", " ", "  ", "\n",
        "\n", "y", "%comment", "`", "$", "*", "#", "@", "&", "+", "+ceg+",
    ]
)  # fmt: skip
_LINES = st.sampled_from(
    [
        "V:1", "V:2 clef=bass", "V:99", "w:la la la", "w:*|*|", "W:words", "P:A", "P:ABAB",
        "%%MIDI program 1", "%%MIDI program 200", "%%MIDI transpose -12", "%%MIDI gchordoff",
        "%%MIDI chordprog 20", "%%MIDI drum dddd 36 38 42 46", "%%MIDI drumon", "%%MIDI beat 1",
        "%%MIDI droneon", "%%MIDI ratio 3 1", "%%staffsep 9999", "%%scale 100", "%%score (1 2)",
        "I:linebreak $", "m:~n2 = (3o/n/m/", "U:T = !trill!", "T:second title", "K:none",
        "M:none", "L:1/0", "Q:0",
    ]
)  # fmt: skip
#: Lines the refusal must stop before any tool sees them.
UNSAFE_LINES = [
        "%%abc-include @SECRET@", "[I:abc-include @SECRET@]", "I:abc-include @SECRET@",
        "%%beginps", "%%EPS @SECRET@", "%%format @SECRET@", "%%beginsvg", "%%ps 0 0 moveto",
        # The I: field and inline spellings, and prefix changes.
        "I:format @SECRET@", "[I:format @SECRET@]", " I:Format @SECRET@", "[I: format /dev/zero]",
        "%%abcm2ps #\n%#format @SECRET@", "%%ss-pref #\n%#format @SECRET@",
        "I:ss-pref $\n%$beginsvg\n<script>alert(1)</script>\n%$endsvg",
        "%%MIDI ptstress @SECRET@", "I:MIDI ptstress @SECRET@", "[I:MIDI ptstress @SECRET@]",
        "%%MIDI program 1\n+:ptstress @SECRET@", 'I:bgcolor red"/><script>alert(1)</script>',
        'I:titlefont x"/><script>alert(1)</script><g', "%%musicfont url(http://x.invalid/f)",
        # %%MIDI numbers abc2midi crashes on.
        "%%MIDI program 5000 1", "%%MIDI drum d0 36 100", "[I:MIDI gracedivider 0]",
]  # fmt: skip
#: Directives and fields to spell with escapes (see `_escaped`): each must be refused, whichever
#: of its characters are escaped.
ESCAPABLE = [
    "%%bgcolor red", "I:bgcolor red", "[I:bgcolor red]", "%%beginsvg", "[I:format @SECRET@]",
    "I:abc-include @SECRET@", "X:2", "%%MIDI program 1",
]  # fmt: skip
#: An escape abcm2ps decodes to ASCII (\001-\005 are the accidental signs, not ASCII).
ASCII_ESCAPE = re.compile(r"\\(?:(?!00[1-5])[0-1][0-7]{2}|u00[0-7][0-9A-Fa-f])")


@st.composite
def _escaped(draw: st.DrawFn) -> str:
    """A line of `ESCAPABLE` with some of its characters (a structural one at least) written as
    abcm2ps escapes: octal ``\\ooo`` or ``\\uXXXX`` with upper- or lower-case hex digits."""
    line = draw(st.sampled_from(ESCAPABLE))
    # At least one of the characters that make it a field or directive ('%', 'I', ':', '[',
    # 'X'): escaping only a letter of its name would leave a name the allow-list refuses anyway.
    structural = [i for i, c in enumerate(line) if c in "%I:[X"]
    chosen = draw(st.sets(st.integers(0, len(line) - 1))) | {draw(st.sampled_from(structural))}
    out = []
    for i, char in enumerate(line):
        if i not in chosen:
            out.append(char)
            continue
        form = draw(st.sampled_from(["octal", "lower", "upper"]))
        code = ord(char)
        out.append(f"\\{code:03o}" if form == "octal" else
                   f"\\u{code:04x}" if form == "lower" else f"\\u{code:04X}")  # fmt: skip
    return "".join(out)


_UNSAFE_LINES = st.one_of(st.sampled_from(UNSAFE_LINES), _escaped())
#: Keys, modes and clef/transpose/octave modifiers, some absurd.
_KEYS = [
    "D", "G", "Amix", "Edor", "C", "Bb", "F#m", "none", "HP", "Hp", "Xyz", "D clef=bass",
    "G transpose=100", "C octave=20", "", "^f_b",
]  # fmt: skip
_HEADER_VALUES = {
    "T": st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=20),
    "M": st.sampled_from(
        ["4/4", "3/4", "6/8", "C", "C|", "2/2", "9/8", "0/0", "99/1", "1/999", ""]
    ),
    "L": st.sampled_from(["1/8", "1/4", "1/16", "1/1", "1/0", "0/8", "3/7", "1/1024", ""]),
    "Q": st.sampled_from(["1/4=120", "1/4=1", "1/4=100000", "3/8=60", "120", "1/1024=1", "x"]),
    "R": st.sampled_from(["reel", "jig", ""]),
    "K": st.sampled_from(_KEYS),
}


#: Text noise a person could type: what str.isprintable() accepts (no control, format or
#: separator characters beyond the plain space).
_PRINTABLE_NOISE = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Cf", "Zs", "Zl", "Zp", "Co", "Cn")), max_size=8
)
#: Raw noise: any code point or byte, most of which the refusal catches.
_RAW_NOISE = st.one_of(
    st.text(max_size=8), st.binary(max_size=8).map(lambda b: b.decode("latin-1"))
)


#: True about once in 30 draws. (Not ``integers(0, 29) == 0``: hypothesis favours the ends of a
#: range, which made a third of all examples unsafe.)
_ONE_IN_30 = st.sampled_from([False] * 15 + [True] + [False] * 14)


@st.composite
def abc_tunes(draw: st.DrawFn) -> str:
    """A tune-shaped text: mostly-valid headers, then a body in one of three styles.

    Clean (notes and bar lines: tunes that convert, so the MIDI writer and our MIDI parser get
    work), messy (every ABC symbol, directive lines, printable noise) or raw (control characters
    and bytes too). Unsafe lines and raw noise are rare, so most examples reach abc2midi.
    """
    lines = [] if draw(st.integers(0, 19)) == 0 else [f"X:{draw(st.integers(0, 99999))}"]
    for name in draw(st.permutations(list(_HEADER_VALUES))):
        if draw(st.integers(0, 4)):
            lines.append(f"{name}:{draw(_HEADER_VALUES[name])}")
    style = draw(st.sampled_from(["clean", "clean", "messy", "messy", "messy", "raw"]))
    tokens = {
        "clean": st.one_of(_NOTE, st.sampled_from(["|", " ", "|:", ":|", "\n"])),
        "messy": st.one_of(
            _NOTE, _NOTE, _SYMBOLS, _LINES.map(lambda line: f"\n{line}\n"), _PRINTABLE_NOISE
        ),
        "raw": st.one_of(_NOTE, _SYMBOLS, _PRINTABLE_NOISE, _RAW_NOISE),
    }[style]
    body = draw(st.lists(tokens, max_size=300))
    if draw(_ONE_IN_30):
        body.insert(draw(st.integers(0, len(body))), f"\n{draw(_UNSAFE_LINES)}\n")
    lines.append("".join(body))
    text = "\n".join(lines)
    repeat = draw(st.sampled_from([1, 1, 1, 1, 2, 10, 100]))
    return text + ("\n" + lines[-1]) * (repeat - 1) + "\n"


@dataclass
class FuzzStats:
    """Figures of a fuzz run, written to TUNEBATCH_FUZZ_REPORT when it is set."""

    examples: int = 0
    hangs: int = 0
    escapes: int = 0
    worker_deaths: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    slowest_s: float = 0.0
    tool_runs: int = 0
    unsafe: int = 0


FUZZ_EXAMPLES = int(os.environ.get("TUNEBATCH_FUZZ_EXAMPLES", "300"))


def _outcome_name(outcome: Outcome) -> str:
    if outcome.error is None:
        return "ok"
    message = str(outcome.error)
    if any(r in message for r in _REFUSALS) or "forbidden" in message:
        return "refused"
    return f"{type(outcome.error).__name__}({getattr(outcome.error, 'tool', '') or '-'})"


def _fuzz_body(box: Sandbox, stats: FuzzStats) -> Callable[[str], None]:
    def run(text: str) -> None:
        text = box.plant(text)
        box.log.lines.clear()
        before = box.listing()
        outcomes = [_check(text, LIMITS), _render(text, FUZZ_FORMATS, LIMITS)]
        stats.examples += 1
        stats.tool_runs += len(box.log.runs())
        stats.slowest_s = max(stats.slowest_s, *(o.seconds for o in outcomes))
        stats.outcomes[_outcome_name(outcomes[1])] += 1
        if any(box.plant(line) in text for line in UNSAFE_LINES) or ASCII_ESCAPE.search(text):
            stats.unsafe += 1
            # Refused before any tool, by both entry points, whatever else the text holds.
            assert [_outcome_name(o) for o in outcomes] == ["refused", "refused"], outcomes
            assert box.log.started() == 0
        # Count before asserting, so a report shows every kind of failure the run met.
        if any(s > LIMITS.render_timeout_s + SLACK_S for _, s in box.log.runs()):
            stats.hangs += 1
        if list(box.temp_root.iterdir()) or box.listing() != before:
            stats.escapes += 1
        if not _children() <= box.children:
            stats.worker_deaths += 1
        _assert_contained(box, before, outcomes, LIMITS)

    return run


def test_fuzz_render_entry_points(sandbox: Sandbox) -> None:
    stats = FuzzStats()
    body = _fuzz_body(sandbox, stats)

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=FUZZ_EXAMPLES <= 1000,  # the suite's run is reproducible; the full run explores
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(abc_tunes())
    def fuzz(text: str) -> None:
        body(text)

    started = time.monotonic()
    fuzz()
    report = {
        "examples": stats.examples,
        "hangs": stats.hangs,
        "escapes": stats.escapes,
        "worker_deaths": stats.worker_deaths,
        "tool_runs": stats.tool_runs,
        "unsafe_examples_refused": stats.unsafe,
        "slowest_call_s": round(stats.slowest_s, 3),
        "wall_s": round(time.monotonic() - started, 1),
        "render_outcomes": dict(stats.outcomes.most_common()),
    }
    if os.environ.get("TUNEBATCH_FUZZ_REPORT"):
        Path(os.environ["TUNEBATCH_FUZZ_REPORT"]).write_text(json.dumps(report, indent=2) + "\n")
    assert stats.examples >= min(FUZZ_EXAMPLES, 50)
    assert (stats.hangs, stats.escapes, stats.worker_deaths) == (0, 0, 0)
    # The run reached the tools, not only the refusal: ABC-shaped text is the point.
    assert stats.tool_runs > stats.examples
