"""Turn one ABC tune into files: the only module that decides which external programs run.

A render is abc2midi (ABC → MIDI), then a synthesiser (MIDI → WAV: timidity with freepats by
default, or fluidsynth with a General MIDI soundfont, ``TUNEBATCH_SYNTH``), the WAV's loudness
normalised in-process (`common.render.loudness`), and optionally abcm2ps (ABC → SVG score),
rsvg-convert
(SVG → PDF), oggenc (WAV → Ogg Vorbis), lame (WAV → MP3) and flac (WAV → FLAC). The tune text
comes from a model or from a user, so every tool is treated as something that may misbehave on it:

* **No shell, no user text in argv.** Argument lists are fixed; the tune only ever reaches a tool
  as the file ``tune.abc`` that we wrote into a fresh private directory. Every directive must
  be on the allow-list of `common.abc.directives` (checked with the include / control-byte
  rules by `common.abc.notation.unsafe_reason`) before any tool sees the text, and a text
  holding more than one tune is refused, because abc2midi and abcm2ps then write one file per
  tune under names we do not choose.
* **A sandbox per run** (`common.render.tool_run`, `common.render.sandbox`): rlimits, its own
process group,
  a wall-clock timeout that kills the group, a minimal environment, and bubblewrap isolation:
  no network and no filesystem beyond the tune's directory and the read-only files it needs.
* **abc2midi's verdict** reads its full output, exit status and MIDI file
  (`common.render.verdict`), and **the SVG is sanitised** before it is returned
  (`common.render.svg`): nothing in a stored score can run script or load a URL.
* **Success is judged by the output file**, not by the exit code: abc2midi exits 0 after printing
  ``Error in line-char ...`` and abcm2ps exits 1 after writing a perfectly good SVG. A file must
  exist, be non-empty and start with its format's magic bytes.
* **Errors are classified** so the job system does the right thing: the tool's verdict on the tune
  is a `RenderError` and a limit it ran into is a `RenderLimitError` (both permanent: retrying the
  same tune gives the same result); a tool killed by something other than our limits, or a full
  disk, is transient (`TransientError`, `StorageFullError`) and worth another attempt; a missing
  binary is a `ToolMissingError` naming the Debian package to install. The tool's own words are
  kept verbatim (trimmed) in the message and in ``detail``, so people see what abc2midi said.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
import shutil
import tempfile
import time
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.abc.notation import unsafe_reason
from common.errors import (
    InvalidInputError,
    RenderError,
    RenderLimitError,
    ToolMissingError,
    TransientError,
)
from common.params import FORMATS
from common.render.loudness import Normalisation, normalise_wav
from common.render.midi import midi_duration_seconds
from common.render.sandbox import UNJAILED, jail_for
from common.render.svg import sanitise_svg
from common.render.tool_run import (
    NO_SPACE,
    PROBE_LIMITS,
    Completed,
    Limits,
    Tool,
    one_line,
    raise_if_disk_full,
    resolve,
    run_tool,
    storage_guard,
    trim,
)
from common.render.verdict import CheckResult, absurd_note, judge
from common.schemas import RenderInfo
from common.settings import Settings

logger = logging.getLogger(__name__)

#: Name of the tune inside its private directory; tools only ever see this fixed name.
TUNE_FILE = "tune.abc"

_NEEDS_MIDI = frozenset({"mid", "wav", "ogg", "mp3", "flac"})
_NEEDS_WAV = frozenset({"wav", "ogg", "mp3", "flac"})
_NEEDS_SVG = frozenset({"svg", "pdf"})

#: A RIFF/WAVE header alone is 44 bytes: timidity writes exactly that for input it cannot play.
_WAV_HEADER_BYTES = 44
#: abcm2ps's output buffer in KiB (``-k``): its default overflows on tunes of ~50 dense lines
#: with ``-g`` (measured with abcm2ps 8.14.14), well within what corpora and the sampler produce.
_ABCM2PS_BUFFER_KIB = "1024"

_X_LINE = re.compile(r"^X:", re.MULTILINE)
_OUT_OF_MEMORY = re.compile(
    r"cannot allocate memory|out of memory|failed to map segment|memory exhausted|bad_alloc",
    re.IGNORECASE,
)


# --------------------------------------------------------------------------------------------
# Public results
# --------------------------------------------------------------------------------------------


@dataclass
class RenderResult:
    """The files of one rendered tune, valid only inside the `rendered` context."""

    files: dict[str, Path]
    warnings: list[str]
    midi_seconds: float | None
    #: Wall seconds per stage ("abc2midi", "timidity", ...), for logs and benchmarks.
    seconds: dict[str, float] = field(default_factory=dict)
    #: The synthesiser that made the WAV ("timidity" or "fluidsynth"); None when no audio.
    synth: str | None = None
    #: The WAV's loudness before and the gain applied; None when no audio or not normalised.
    loudness: Normalisation | None = None

    def info(self) -> RenderInfo:
        """What a tune record keeps of this render (`TuneRecord.render`), JSON-safe.

        Silence has a loudness of -inf, which JSON cannot hold: it is recorded as unknown.
        """
        measured = self.loudness.before.integrated_lufs if self.loudness else None
        return RenderInfo(
            synth=self.synth,
            midi_seconds=self.midi_seconds,
            loudness_lufs=measured if measured is not None and math.isfinite(measured) else None,
            gain_db=self.loudness.gain_db if self.loudness else None,
            seconds={stage: round(secs, 4) for stage, secs in self.seconds.items()},
        )


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------


def parse_formats(text: str) -> tuple[str, ...]:
    """Parse ``"mid,wav"`` (as typed on a command line) into a canonical tuple of formats.

    The result is ordered as `FORMATS` and always holds ``abc``: the tune text is the artifact
    every other format is derived from, so it is never left out.
    """
    names = [part.strip().lower() for part in text.split(",")]
    return _canonical_formats([name for name in names if name])


def _canonical_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """Validate `formats` and return them in `FORMATS` order, ``abc`` included, no duplicates."""
    if isinstance(formats, str):
        # A bare string is a sequence of characters; "wav" must not mean {"w", "a", "v"}.
        formats = [formats]
    wanted = {name.strip().lower() for name in formats}
    unknown = sorted(wanted - set(FORMATS))
    if unknown:
        raise InvalidInputError(
            f"unknown output format(s) {', '.join(repr(u) for u in unknown)}; "
            f"choose from {', '.join(FORMATS)}"
        )
    wanted.add("abc")
    return tuple(name for name in FORMATS if name in wanted)


_ABC2MIDI = Tool("abc2midi", "abcmidi", "abc2midi")
_TIMIDITY = Tool("timidity", "timidity", "timidity")
_ABCM2PS = Tool("abcm2ps", "abcm2ps", "abcm2ps")
_FLUIDSYNTH = Tool("fluidsynth", "fluidsynth", "fluidsynth")
# The encoders have no Settings field: they are only ever found on PATH.
_OGGENC = Tool("oggenc", "vorbis-tools", None)
_LAME = Tool("lame", "lame", None)
_FLAC = Tool("flac", "flac", None)
_RSVG = Tool("rsvg-convert", "librsvg2-bin", None)


# --------------------------------------------------------------------------------------------
# The work directory and the tune file
# --------------------------------------------------------------------------------------------


def _refusal(abc_text: str) -> str | None:
    """Why `abc_text` must not reach any tool, or None. Checked before a directory exists."""
    if not abc_text.strip():
        return "the tune is empty; nothing to render"
    reason = unsafe_reason(abc_text)
    if reason is not None:
        return f"refused before any tool saw it: {reason}; remove it and submit again"
    count = len(_X_LINE.findall(abc_text))
    if count > 1:
        return (
            f"the text holds {count} tunes (X: lines); render one tune per file "
            "(split it with common.abc.notation.split_tunes)"
        )
    note = absurd_note(abc_text)
    if note is not None:
        return f"refused before any tool saw it: {note}"
    return None


def _normalise_newlines(abc_text: str) -> str:
    """CRLF/CR → LF, so a file saved on Windows is not refused for its carriage returns."""
    return abc_text.replace("\r\n", "\n").replace("\r", "\n")


def _make_workdir() -> Path:
    with storage_guard("creating a render directory"):
        return Path(tempfile.mkdtemp(prefix="tunebatch-render-"))


def _remove_workdir(workdir: Path) -> None:
    """Remove a render directory; a failure is logged, never raised over the real outcome."""
    try:
        shutil.rmtree(workdir)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("could not remove render directory %s: %s", workdir, exc)


def _write_tune(workdir: Path, abc_text: str) -> Path:
    path = workdir / TUNE_FILE
    text = abc_text if abc_text.endswith("\n") else abc_text + "\n"
    with storage_guard(f"writing {path}"):
        path.write_bytes(text.encode("utf-8"))
    return path


def _has_magic(fmt: str, head: bytes) -> bool:
    """Whether the first bytes of a file look like `fmt` (catches truncated / wrong output)."""
    if fmt == "mid":
        return head.startswith(b"MThd")
    if fmt == "wav":
        return head.startswith(b"RIFF") and head[8:12] == b"WAVE"
    if fmt == "ogg":
        return head.startswith(b"OggS")
    if fmt == "mp3":
        return head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] >= 0xE0)
    if fmt == "flac":
        return head.startswith(b"fLaC")
    if fmt == "pdf":
        return head.startswith(b"%PDF-")
    if fmt == "svg":
        return b"<svg" in head
    return True


def _require_output(
    path: Path, fmt: str, run: Completed, workdir: Path, limits: Limits, min_bytes: int = 1
) -> Path:
    """Check a tool's output file: present, big enough, right magic, within the size limit."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(4096)
    except FileNotFoundError:
        size, head = 0, b""
    if size > limits.max_output_bytes:
        raise RenderLimitError(
            f"{run.tool} wrote a {size}-byte {fmt} file, more than the limit of "
            f"{limits.max_output_bytes} bytes (TUNEBATCH_RENDER_MAX_OUTPUT_BYTES)",
            tool=run.tool,
            detail=trim(run.output),
        )
    if size >= min_bytes and _has_magic(fmt, head):
        if NO_SPACE.search(run.output):
            raise_if_disk_full(run.tool, workdir, run.output)
        return path
    raise_if_disk_full(run.tool, workdir, run.output)
    problem = "no" if size == 0 else f"an unusable {size}-byte"
    said = f": {one_line(run.output)}" if run.output.strip() else " and printed nothing"
    if _OUT_OF_MEMORY.search(run.output):
        # A loader or malloc failure: under RLIMIT_AS that is our limit, not the tune's syntax.
        raise RenderLimitError(
            f"{run.tool} ran out of memory under the {limits.memory_bytes}-byte limit "
            f"(TUNEBATCH_RENDER_MEMORY_BYTES) and wrote {problem} {fmt} file{said}",
            tool=run.tool,
            detail=trim(run.output),
        )
    raise RenderError(
        f"{run.tool} wrote {problem} {fmt} file (exit status {run.returncode}){said}",
        tool=run.tool,
        detail=trim(run.output),
    )


# --------------------------------------------------------------------------------------------
# The stages
# --------------------------------------------------------------------------------------------


def _abc2midi(workdir: Path, settings: Settings) -> tuple[CheckResult, Completed, Path]:
    """Run abc2midi on tune.abc → tune.mid and judge it (`common.render.verdict.judge`).

    No ``-silent``: it hides some of abc2midi's ``Error`` lines, and every one of them counts.
    ``-o`` names the one output file.
    """
    exe = resolve(_ABC2MIDI, settings.abc2midi)
    mid = workdir / "tune.mid"
    run = run_tool(
        _ABC2MIDI,
        exe,
        [TUNE_FILE, "-o", mid.name],
        workdir,
        Limits.from_settings(settings),
        jail_for(settings, exe),
    )
    try:
        with storage_guard("reading the MIDI file"):
            data: bytes | None = mid.read_bytes()
    except FileNotFoundError:
        data = None
    if data is None or not _has_magic("mid", data[:4]):
        raise_if_disk_full(_ABC2MIDI.name, workdir, run.output)
    return judge(run.returncode, run.output, data, settings.max_midi_seconds), run, mid


def _timidity(workdir: Path, mid: Path, settings: Settings) -> tuple[Path, Completed]:
    """Synthesise tune.mid → tune.wav with the configured soundfont.

    ``-c`` names the soundfont config explicitly (timidity also reads its compiled-in default
    /etc/timidity/timidity.cfg first; ``-c`` overrides every instrument it defines). ``-id``
    forces the plain interface whatever terminal is around; ``--quiet=1`` keeps only the
    "Playing" line and real complaints such as "Not a MIDI file!".
    """
    exe = resolve(_TIMIDITY, settings.timidity)
    config = settings.timidity_config.absolute()
    if not config.is_file():
        raise ToolMissingError(
            f"timidity's soundfont config {config} does not exist; install the Debian package "
            "'freepats' or set TUNEBATCH_TIMIDITY_CONFIG to a timidity .cfg file"
        )
    wav = workdir / "tune.wav"
    limits = Limits.from_settings(settings)
    args = ["-c", str(config), "-id", "--quiet=1", "-Ow", "-o", wav.name, mid.name]
    run = run_tool(_TIMIDITY, exe, args, workdir, limits, jail_for(settings, exe, config))
    _require_output(wav, "wav", run, workdir, limits, min_bytes=_WAV_HEADER_BYTES + 1)
    return wav, run


def _fluidsynth(workdir: Path, mid: Path, settings: Settings) -> tuple[Path, Completed]:
    """Synthesise tune.mid → tune.wav with fluidsynth and the configured SoundFont.

    ``-n -i`` start no MIDI input driver and no interactive shell, ``-F`` renders straight to the
    file as fast as the CPU allows (no audio device is opened), and ``-T wav -O s16 -r 44100``
    give the same 16-bit stereo 44.1 kHz WAV as timidity. ``-q`` drops the banner. fluidsynth
    loads the whole SoundFont (~150 MB for FluidR3_GM) per run, which fits the default 1 GiB
    address-space limit with room to spare.
    """
    exe = resolve(_FLUIDSYNTH, settings.fluidsynth)
    soundfont = settings.soundfont.absolute()
    if not soundfont.is_file():
        raise ToolMissingError(
            f"the SoundFont {soundfont} does not exist; install the Debian package "
            "'fluid-soundfont-gm' or set TUNEBATCH_SOUNDFONT to a .sf2 file"
        )
    wav = workdir / "tune.wav"
    limits = Limits.from_settings(settings)
    args = ["-n", "-i", "-q", "-F", wav.name, "-T", "wav", "-O", "s16", "-r", "44100"]
    jail = jail_for(settings, exe, soundfont)
    run = run_tool(_FLUIDSYNTH, exe, [*args, str(soundfont), mid.name], workdir, limits, jail)
    _require_output(wav, "wav", run, workdir, limits, min_bytes=_WAV_HEADER_BYTES + 1)
    return wav, run


def _synthesise(workdir: Path, mid: Path, settings: Settings) -> tuple[Path, Completed]:
    """MIDI → WAV with the synthesiser `settings.synth` names."""
    if settings.synth == "fluidsynth":
        return _fluidsynth(workdir, mid, settings)
    return _timidity(workdir, mid, settings)


def _normalise(wav: Path, settings: Settings) -> Normalisation:
    """Bring tune.wav to the loudness target in place (see `common.render.loudness`).

    In-process rather than a tool: it is our own bounded numpy code reading a file our own
    synthesiser wrote, in fixed-size chunks, so it needs no sandbox. The normalised copy is
    written beside the WAV and renamed over it, so a failure never leaves a half-scaled file.
    """
    out = wav.with_name("tune.normalised.wav")
    try:
        with storage_guard("normalising the WAV's loudness"):
            result = normalise_wav(
                wav, out, settings.loudness_target_lufs, settings.loudness_peak_dbfs
            )
            out.replace(wav)
    except (ValueError, EOFError, wave.Error) as exc:
        raise RenderError(
            f"the synthesiser's WAV could not be read for loudness normalisation ({exc})",
            tool="loudness",
        ) from exc
    return result


def _abcm2ps(workdir: Path, settings: Settings) -> tuple[Path, Completed]:
    """Engrave tune.abc → tune.svg.

    ``-g`` writes one SVG per tune and names it ``<stem>NNN.svg`` (tune001.svg for ``-O tune.svg``),
    so the file is found by pattern and renamed. ``-S`` is abcm2ps's secure mode (no PostScript
    or file access from the tune), on top of `unsafe_reason`. abcm2ps exits 1 on any complaint
    even when the score is fine, so its messages become warnings and the file decides. The SVG
    is then sanitised in place (`common.render.svg`); one that is not well-formed is refused.
    """
    exe = resolve(_ABCM2PS, settings.abcm2ps)
    limits = Limits.from_settings(settings)
    args = ["-S", "-q", "-k", _ABCM2PS_BUFFER_KIB, "-g", "-O", "tune.svg", TUNE_FILE]
    run = run_tool(_ABCM2PS, exe, args, workdir, limits, jail_for(settings, exe))
    target = workdir / "tune.svg"
    written = sorted(p for p in workdir.glob("tune*.svg") if p != target)
    if written and not target.exists():
        with storage_guard("renaming the SVG"):
            written[0].rename(target)
        for extra in written[1:]:
            extra.unlink()
    _require_output(target, "svg", run, workdir, limits)
    with storage_guard("sanitising the SVG"):
        clean = sanitise_svg(target.read_bytes())
        target.write_bytes(clean.data)
    if clean.removed:
        removed = ", ".join(f"{n} {what}" for what, n in sorted(clean.removed.items()))
        logger.warning("removed from the SVG score: %s", removed)
    return target, run


def _encode(
    tool: Tool, args: Sequence[str], out: Path, fmt: str, workdir: Path, settings: Settings
) -> tuple[Path, Completed]:
    """Run an encoder (oggenc, lame) that turns tune.wav into `out`."""
    exe = resolve(tool, tool.name)
    limits = Limits.from_settings(settings)
    run = run_tool(tool, exe, args, workdir, limits, jail_for(settings, exe))
    return _require_output(out, fmt, run, workdir, limits), run


def _pdf(workdir: Path, svg: Path, settings: Settings) -> tuple[Path, Completed]:
    """Convert the score tune.svg → tune.pdf with rsvg-convert (librsvg, memory-safe Rust).

    Chosen over abcm2ps → PostScript → ghostscript's ps2pdf: one 6 MB package instead of a
    PostScript interpreter (13 packages, and a history of -dSAFER escapes) fed text derived from
    untrusted input. The page is the SVG's size — the music, cropped — as abcm2ps ``-g`` draws
    it. librsvg only loads images from the SVG's own directory, which holds nothing but ours.
    """
    return _encode(
        _RSVG, ["-f", "pdf", "-o", "tune.pdf", svg.name], workdir / "tune.pdf", "pdf", workdir,
        settings,
    )  # fmt: skip


def _tool_warnings(run: Completed, lines: Sequence[str] | None = None) -> list[str]:
    """A tool's messages as warnings, each prefixed with the tool's name."""
    if lines is None:
        lines = [line.strip() for line in run.output.splitlines() if line.strip()]
    return [f"{run.tool}: {line}" for line in lines]


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def check_abc(abc_text: str, settings: Settings) -> CheckResult:
    """Ask abc2midi whether one tune is valid, without synthesising anything.

    Used on every generated tune and for ``corpus --valid-only``, so it runs abc2midi only
    (a few milliseconds). Anything that makes the tune unrenderable is a not-ok result rather
    than an exception — refused text, a crash, a limit — so a caller checking 256 tunes gets 256
    answers. Problems of the machine rather than the tune still raise: `ToolMissingError`,
    `StorageFullError`, `TransientError`.
    """
    abc_text = _normalise_newlines(abc_text)
    reason = _refusal(abc_text)
    if reason is not None:
        return CheckResult(ok=False, errors=[reason], warnings=[])
    workdir = _make_workdir()
    try:
        _write_tune(workdir, abc_text)
        result, _, _ = _abc2midi(workdir, settings)
        return result
    except RenderError as exc:
        return CheckResult(ok=False, errors=[str(exc)], warnings=[])
    finally:
        _remove_workdir(workdir)


@contextlib.contextmanager
def rendered(abc_text: str, formats: Sequence[str], settings: Settings) -> Iterator[RenderResult]:
    """Render one tune into `formats` in a fresh private directory; remove it when done.

    A context manager because the files are big (a WAV is ~10 MB a minute) and only needed
    until the caller has uploaded them: the directory goes away on exit, error or not.

    Stages run only when a requested format needs them: abc2midi for mid and the audio
    formats; the synthesiser (``settings.synth``) and loudness normalisation for wav/ogg/mp3/flac
    (a WAV made only for an encoder is not returned, and the encoders get the normalised one);
    abcm2ps for svg and pdf (likewise). Before synthesis, the MIDI's duration is checked against
    ``max_midi_seconds``, so an absurd tempo fails in milliseconds instead of synthesising hours
    of audio.

    Raises `RenderError` (the tune is refused, or a tool rejected it), `RenderLimitError` (a
    limit was hit), `ToolMissingError`, `StorageFullError` or `TransientError`.
    """
    wanted = _canonical_formats(formats)
    abc_text = _normalise_newlines(abc_text)
    reason = _refusal(abc_text)
    if reason is not None:
        raise RenderError(reason)
    workdir = _make_workdir()
    try:
        yield _render_into(workdir, abc_text, wanted, settings)
    finally:
        _remove_workdir(workdir)


def _render_into(
    workdir: Path, abc_text: str, wanted: tuple[str, ...], settings: Settings
) -> RenderResult:
    files: dict[str, Path] = {"abc": _write_tune(workdir, abc_text)}
    result = RenderResult(files={}, warnings=[], midi_seconds=None)
    warnings, seconds = result.warnings, result.seconds

    if _NEEDS_MIDI.intersection(wanted):
        check, run, mid = _abc2midi(workdir, settings)
        seconds["abc2midi"] = run.seconds
        result.midi_seconds = check.midi_seconds
        if check.midi_seconds is not None and check.midi_seconds > settings.max_midi_seconds:
            raise RenderLimitError(
                f"the tune plays for {check.midi_seconds:.0f} s, longer than the limit of "
                f"{settings.max_midi_seconds:g} s (TUNEBATCH_MAX_MIDI_SECONDS); check its Q: "
                "tempo and repeats",
                tool=_ABC2MIDI.name,
            )
        if not check.ok:
            more = f" (and {len(check.errors) - 3} more)" if len(check.errors) > 3 else ""
            raise RenderError(
                f"abc2midi rejected the tune: {'; '.join(check.errors[:3])}{more}",
                tool=_ABC2MIDI.name,
                detail=trim(run.output),
            )
        warnings += _tool_warnings(run, check.warnings)
        files["mid"] = mid

    if _NEEDS_SVG.intersection(wanted):
        files["svg"], run = _abcm2ps(workdir, settings)
        seconds["abcm2ps"] = run.seconds
        warnings += _tool_warnings(run)
        if "pdf" in wanted:
            files["pdf"], run = _pdf(workdir, files["svg"], settings)
            seconds["rsvg-convert"] = run.seconds
            warnings += _tool_warnings(run)

    if _NEEDS_WAV.intersection(wanted):
        wav, run = _synthesise(workdir, files["mid"], settings)
        seconds[run.tool] = run.seconds
        result.synth = run.tool
        warnings += _tool_warnings(
            run, [line for line in run.output.splitlines() if not line.startswith("Playing ")]
        )
        files["wav"] = wav
        if settings.loudness_normalise:
            started = time.monotonic()
            result.loudness = _normalise(wav, settings)
            seconds["loudness"] = time.monotonic() - started
        encoders = (
            ("ogg", _OGGENC, ["-Q", "-o", "tune.ogg", wav.name]),
            ("mp3", _LAME, ["--quiet", wav.name, "tune.mp3"]),
            ("flac", _FLAC, ["--silent", "--force", "-o", "tune.flac", wav.name]),
        )
        for fmt, tool, args in encoders:
            if fmt in wanted:
                files[fmt], run = _encode(
                    tool, args, workdir / f"tune.{fmt}", fmt, workdir, settings
                )
                seconds[tool.name] = run.seconds
                warnings += _tool_warnings(run)

    result.files = {fmt: files[fmt] for fmt in wanted}
    for fmt, path in files.items():
        if fmt not in result.files:
            path.unlink(missing_ok=True)  # free the disk now, e.g. a WAV made only for lame
    return result


# --------------------------------------------------------------------------------------------
# Versions (provenance)
# --------------------------------------------------------------------------------------------

_VERSION_PROBES: tuple[tuple[Tool, tuple[str, ...], re.Pattern[str]], ...] = (
    (_ABC2MIDI, ("-ver",), re.compile(r"^\s*(\S.*?)\s+abc2midi\s*$", re.MULTILINE)),
    (_TIMIDITY, ("--version",), re.compile(r"version\s+(\S+)")),
    (_ABCM2PS, ("-V",), re.compile(r"abcm2ps-(\S+)")),
    (_OGGENC, ("--version",), re.compile(r"vorbis-tools\s+(\S+)")),
    (_LAME, ("--version",), re.compile(r"version\s+(\S+)")),
    (_FLUIDSYNTH, ("--version",), re.compile(r"version\s+(\S+)")),
    (_FLAC, ("--version",), re.compile(r"flac\s+(\S+)")),
    (_RSVG, ("--version",), re.compile(r"version\s+(\S+)")),
)


def tool_versions(settings: Settings) -> dict[str, str]:
    """Versions of the render tools that are installed, for every manifest's provenance.

    A tool that is missing is left out rather than failing: a producer records what exists.
    Cached per process on the configured paths, since a version does not change under a
    running worker and asking costs a process start per tool. Two entries describe how audio
    is made rather than a tool's version, because they change the sound as much as a version
    does: ``synth`` (the synthesiser and its soundfont) and ``loudness`` (the target, or "off").
    """
    versions = dict(
        _tool_versions(settings.abc2midi, settings.timidity, settings.abcm2ps, settings.fluidsynth)
    )
    soundfont = settings.timidity_config if settings.synth == "timidity" else settings.soundfont
    versions["synth"] = f"{settings.synth} with {soundfont}"
    versions["loudness"] = (
        f"{settings.loudness_target_lufs:g} LUFS integrated (ITU-R BS.1770-4), sample peak "
        f"at most {settings.loudness_peak_dbfs:g} dBFS"
        if settings.loudness_normalise
        else "off (as synthesised)"
    )
    return versions


@functools.cache
def _tool_versions(
    abc2midi: str, timidity: str, abcm2ps: str, fluidsynth: str
) -> tuple[tuple[str, str], ...]:
    configured = {
        "abc2midi": abc2midi, "timidity": timidity, "abcm2ps": abcm2ps, "fluidsynth": fluidsynth,
    }  # fmt: skip
    versions: list[tuple[str, str]] = []
    workdir = _make_workdir()
    try:
        for tool, args, pattern in _VERSION_PROBES:
            try:
                exe = resolve(tool, configured.get(tool.name, tool.name))
                run = run_tool(tool, exe, args, workdir, PROBE_LIMITS, UNJAILED)
            except (ToolMissingError, RenderError, TransientError) as exc:
                logger.info("no version for %s: %s", tool.name, exc)
                continue
            match = pattern.search(run.output)
            first = next((ln.strip() for ln in run.output.splitlines() if ln.strip()), "")
            version = match.group(1) if match else first[:80]
            if version:
                versions.append((tool.name, version))
    finally:
        _remove_workdir(workdir)
    return tuple(versions)


__all__ = [
    "TUNE_FILE",
    "CheckResult",
    "RenderResult",
    "check_abc",
    "midi_duration_seconds",
    "parse_formats",
    "rendered",
    "tool_versions",
]
