"""Turn one ABC tune into files: the order of the render stages, their gate, and the result.

A render is abc2midi (ABC → MIDI), then a synthesiser (MIDI → WAV: timidity with freepats by
default, or fluidsynth with a General MIDI soundfont, ``TUNEBATCH_SYNTH``), the WAV's loudness
normalised in-process (`common.render.loudness`), and optionally abcm2ps (ABC → SVG score),
rsvg-convert (SVG → PDF), oggenc (WAV → Ogg Vorbis), lame (WAV → MP3) and flac (WAV → FLAC): the
formats and the tool behind each are `common.formats`, one function per stage is
`common.render.stages`. The tune text comes from a model or from a user, so every tool is treated
as something that may misbehave on it:

* **No shell, no user text in argv.** Argument lists are fixed; the tune only ever reaches a tool
  as the file ``tune.abc`` that we wrote into a fresh private directory (`common.render.workdir`).
  Every directive must be on the allow-list of `common.abc.directives` (checked with the include /
  control-byte rules by `common.abc.notation.unsafe_reason`) before any tool sees the text, and a
  text holding more than one tune is refused, because abc2midi and abcm2ps then write one file per
  tune under names we do not choose.
* **A sandbox per run** (`common.render.tool_run`, `common.render.sandbox`): rlimits, its own
  process group, a wall-clock timeout that kills the group, a minimal environment, and bubblewrap
  isolation: no network and no filesystem beyond the tune's directory and the read-only files it
  needs.
* **abc2midi's verdict** reads its full output, exit status and MIDI file
  (`common.render.verdict`), and **the SVG is sanitised** before it is returned
  (`common.render.svg`): nothing in a stored score can run script or load a URL.
* **Success is judged by the output file**, not by the exit code (`common.render.stages`).
* **Errors are classified** so the job system does the right thing: the tool's verdict on the tune
  is a `RenderError` and a limit it ran into is a `RenderLimitError` (both permanent: retrying the
  same tune gives the same result); a tool killed by something other than our limits, or a full
  disk, is transient (`TransientError`, `StorageFullError`) and worth another attempt; a missing
  binary is a `ToolMissingError` naming the Debian package to install. The tool's own words are
  kept verbatim (trimmed) in the message and in ``detail``, so people see what abc2midi said.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.abc.notation import unsafe_reason
from common.errors import RenderError, RenderLimitError
from common.formats import (
    ABC2MIDI,
    TABLE,
    OutputFormat,
    canonical_formats,
    made_from,
    needed_for,
)
from common.params import (
    AUDIO_PROFILES,
    DEFAULT_AUDIO,
    DEFAULT_INSTRUMENT,
    AudioLevel,
    AudioProfile,
    Instrument,
)
from common.render import stages
from common.render.loudness import Normalisation
from common.render.playing import as_played
from common.render.tool_run import Completed, trim
from common.render.verdict import CheckResult, absurd_note
from common.render.workdir import make_workdir, remove_workdir, write_tune
from common.schemas import RenderInfo
from common.settings import Settings

_X_LINE = re.compile(r"^X:", re.MULTILINE)

#: The formats made from the synthesiser's WAV: their stages run after it (and its loudness).
_NEEDS_WAV = made_from("wav")


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


def _tool_warnings(run: Completed, lines: Sequence[str] | None = None) -> list[str]:
    """A tool's messages as warnings, each prefixed with the tool's name."""
    if lines is None:
        lines = [line.strip() for line in run.output.splitlines() if line.strip()]
    return [f"{run.tool}: {line}" for line in lines]


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
    workdir = make_workdir()
    try:
        write_tune(workdir, abc_text)
        result, _, _ = stages.abc2midi(workdir, settings)
        return result
    except RenderError as exc:
        return CheckResult(ok=False, errors=[str(exc)], warnings=[])
    finally:
        remove_workdir(workdir)


@contextlib.contextmanager
def rendered(
    abc_text: str,
    formats: Sequence[str],
    settings: Settings,
    audio: AudioLevel = DEFAULT_AUDIO,
    instrument: Instrument = DEFAULT_INSTRUMENT,
) -> Iterator[RenderResult]:
    """Render one tune into `formats` in a fresh private directory; remove it when done.

    A context manager because the files are big (a WAV is ~10 MB a minute) and only needed
    until the caller has uploaded them: the directory goes away on exit, error or not.

    Stages run only when a requested format needs them: abc2midi for mid and the audio
    formats; the synthesiser (``settings.synth``) and loudness normalisation for wav/ogg/mp3/flac
    (a WAV made only for an encoder is not returned, and the encoders get the normalised one),
    with the channels, rate and encoder quality of the `audio` level (`AUDIO_PROFILES`);
    abcm2ps for svg and pdf (likewise). Before synthesis, the MIDI's duration is checked against
    ``max_midi_seconds``, so an absurd tempo fails in milliseconds instead of synthesising hours
    of audio.

    Raises `RenderError` (the tune is refused, or a tool rejected it), `RenderLimitError` (a
    limit was hit), `ToolMissingError`, `StorageFullError` or `TransientError`.
    """
    wanted = canonical_formats(formats)
    abc_text = _normalise_newlines(abc_text)
    reason = _refusal(abc_text)
    if reason is not None:
        raise RenderError(reason)
    workdir = make_workdir()
    try:
        yield _render_into(
            workdir, as_played(abc_text, instrument), wanted, settings, AUDIO_PROFILES[audio]
        )
    finally:
        remove_workdir(workdir)


def _render_into(
    workdir: Path,
    abc_text: str,
    wanted: tuple[str, ...],
    settings: Settings,
    profile: AudioProfile,
) -> RenderResult:
    files: dict[str, Path] = {"abc": write_tune(workdir, abc_text)}
    result = RenderResult(files={}, warnings=[], midi_seconds=None)
    warnings, seconds = result.warnings, result.seconds
    needed = needed_for(wanted)

    if "mid" in needed:
        check, run, mid = stages.abc2midi(workdir, settings)
        seconds["abc2midi"] = run.seconds
        result.midi_seconds = check.midi_seconds
        if check.midi_seconds is not None and check.midi_seconds > settings.max_midi_seconds:
            raise RenderLimitError(
                f"the tune plays for {check.midi_seconds:.0f} s, longer than the limit of "
                f"{settings.max_midi_seconds:g} s (TUNEBATCH_MAX_MIDI_SECONDS); check its Q: "
                "tempo and repeats",
                tool=ABC2MIDI.name,
            )
        if not check.ok:
            more = f" (and {len(check.errors) - 3} more)" if len(check.errors) > 3 else ""
            raise RenderError(
                f"abc2midi rejected the tune: {'; '.join(check.errors[:3])}{more}",
                tool=ABC2MIDI.name,
                detail=trim(run.output),
            )
        warnings += _tool_warnings(run, check.warnings)
        files["mid"] = mid

    # Every conversion that needs no synthesiser first: synthesis is the dear stage, so a tune
    # the engraver refuses fails before it. Each runs in table order, after its source.
    for row in TABLE:
        if row.name in needed and row.name in stages.STAGES and row.name not in _NEEDS_WAV:
            _convert(row, files, workdir, settings, profile, result)

    if "wav" in needed:
        wav, run = stages.synthesise(workdir, files["mid"], settings, profile)
        seconds[run.tool] = run.seconds
        result.synth = run.tool
        warnings += _tool_warnings(
            run, [line for line in run.output.splitlines() if not line.startswith("Playing ")]
        )
        files["wav"] = wav
        if settings.loudness_normalise:
            started = time.monotonic()
            result.loudness = stages.normalise(wav, settings, profile.channels)
            seconds["loudness"] = time.monotonic() - started
        elif profile.channels == 1 and settings.synth == "fluidsynth":
            stages.mix_down(wav)  # fluidsynth writes stereo only
        for row in TABLE:  # the encoders get the normalised WAV
            if row.name in needed and row.name in stages.STAGES and row.name in _NEEDS_WAV:
                _convert(row, files, workdir, settings, profile, result)

    result.files = {fmt: files[fmt] for fmt in wanted}
    for fmt, path in files.items():
        if fmt not in result.files:
            path.unlink(missing_ok=True)  # free the disk now, e.g. a WAV made only for lame
    return result


def _convert(
    fmt: OutputFormat,
    files: dict[str, Path],
    workdir: Path,
    settings: Settings,
    profile: AudioProfile,
    result: RenderResult,
) -> None:
    """Run `fmt`'s stage (`stages.STAGES`) on the file of its source; keep its time and words."""
    source = files[fmt.source or "abc"]  # only abc has no source, and abc has no stage
    files[fmt.name], run = stages.STAGES[fmt.name](workdir, source, settings, profile)
    result.seconds[run.tool] = run.seconds
    result.warnings += _tool_warnings(run)


#: Page size of a printed tunebook (abcm2ps's format parameters): A4.
_BOOK_FORMAT = "%%pagewidth 21cm\n%%pageheight 29.7cm\n%%topmargin 1.2cm\n%%botmargin 1.2cm\n"


def tunebook_pdf(tunes: Sequence[str], settings: Settings) -> bytes:
    """A PDF of these tunes, A4, engraved by abcm2ps, for printing a batch or its favourites.

    Each tune passes the same refusals as a render (`_refusal`) before any tool sees the book.
    """
    if not tunes:
        raise RenderError("no tunes to print")
    for number, tune in enumerate(tunes, start=1):
        reason = _refusal(_normalise_newlines(tune))
        if reason is not None:
            raise RenderError(f"tune {number} of the book: {reason}")
    book = _BOOK_FORMAT + "\n\n".join(_normalise_newlines(t).strip() for t in tunes) + "\n"
    workdir = make_workdir()
    try:
        write_tune(workdir, book)
        pdf, _ = stages.book_pdf(workdir, settings)
        return pdf.read_bytes()
    finally:
        remove_workdir(workdir)


__all__ = ["RenderResult", "check_abc", "rendered", "tunebook_pdf"]
