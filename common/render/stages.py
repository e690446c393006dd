"""One function per render stage: each runs one tool on a file in the tune's directory and checks
the file it wrote.

A stage is given the tune's private directory (`common.render.workdir`) and returns the path of
the file it made with the tool's `Completed` run (its output and wall time), or raises the error
that classifies what went wrong (see `common.render.pipeline`). Argument lists are fixed here;
which stages run, and in what order, is `common.render.pipeline`'s decision.

**Success is judged by the output file**, not by the exit code: abc2midi exits 0 after printing
``Error in line-char ...`` and abcm2ps exits 1 after writing a perfectly good SVG. A file must
exist, be non-empty, start with its format's magic bytes (`common.formats`) and stay within
the output-size limit.
"""

from __future__ import annotations

import contextlib
import logging
import re
import wave
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from common.errors import RenderError, RenderLimitError, ToolMissingError
from common.formats import (
    ABC2MIDI,
    ABCM2PS,
    FLAC,
    FLUIDSYNTH,
    LAME,
    OGGENC,
    RSVG,
    TIMIDITY,
    Tool,
    has_magic,
)
from common.params import AudioProfile
from common.render.loudness import Normalisation, normalise_wav, write_wav_scaled
from common.render.sandbox import jail_for
from common.render.svg import sanitise_svg
from common.render.tool_run import (
    NO_SPACE,
    Completed,
    Limits,
    one_line,
    raise_if_disk_full,
    resolve,
    run_tool,
    storage_guard,
    trim,
)
from common.render.verdict import CheckResult, judge
from common.render.workdir import TUNE_FILE
from common.settings import Settings

logger = logging.getLogger(__name__)

#: A RIFF/WAVE header alone is 44 bytes: timidity writes exactly that for input it cannot play.
_WAV_HEADER_BYTES = 44
#: abcm2ps's output buffer in KiB (``-k``): its default overflows on tunes of ~50 dense lines
#: with ``-g`` (measured with abcm2ps 8.14.14), well within what corpora and the sampler produce.
_ABCM2PS_BUFFER_KIB = "1024"

_OUT_OF_MEMORY = re.compile(
    r"cannot allocate memory|out of memory|failed to map segment|memory exhausted|bad_alloc",
    re.IGNORECASE,
)


def require_output(
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
    if size >= min_bytes and has_magic(fmt, head):
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


def abc2midi(workdir: Path, settings: Settings) -> tuple[CheckResult, Completed, Path]:
    """Run abc2midi on tune.abc → tune.mid and judge it (`common.render.verdict.judge`).

    No ``-silent``: it hides some of abc2midi's ``Error`` lines, and every one of them counts.
    ``-o`` names the one output file.
    """
    exe = resolve(ABC2MIDI, settings.abc2midi)
    mid = workdir / "tune.mid"
    run = run_tool(
        ABC2MIDI,
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
    if data is None or not has_magic("mid", data[:4]):
        raise_if_disk_full(ABC2MIDI.name, workdir, run.output)
    return judge(run.returncode, run.output, data, settings.max_midi_seconds), run, mid


def timidity(
    workdir: Path, mid: Path, settings: Settings, profile: AudioProfile
) -> tuple[Path, Completed]:
    """Synthesise tune.mid → tune.wav with the configured soundfont, at the profile's rate.

    ``-c`` names the soundfont config explicitly (timidity also reads its compiled-in default
    /etc/timidity/timidity.cfg first; ``-c`` overrides every instrument it defines). ``-id``
    forces the plain interface whatever terminal is around; ``--quiet=1`` keeps only the
    "Playing" line and real complaints such as "Not a MIDI file!". ``-Ow`` writes 16-bit WAV,
    ``-OwM`` mono: timidity mixes to mono itself, a third of its stereo CPU time (its reverb
    and chorus run per channel). ``-s 44100`` is its default rate, so hifi is the old render.
    """
    exe = resolve(TIMIDITY, settings.timidity)
    config = settings.timidity_config.absolute()
    if not config.is_file():
        raise ToolMissingError(
            f"timidity's soundfont config {config} does not exist; install the Debian package "
            "'freepats' or set TUNEBATCH_TIMIDITY_CONFIG to a timidity .cfg file"
        )
    wav = workdir / "tune.wav"
    limits = Limits.from_settings(settings)
    output = "-Ow" if profile.channels == 2 else "-OwM"
    args = ["-c", str(config), "-id", "--quiet=1", output, "-s", str(profile.sample_rate)]
    args += ["-o", wav.name, mid.name]
    run = run_tool(TIMIDITY, exe, args, workdir, limits, jail_for(settings, exe, config))
    require_output(wav, "wav", run, workdir, limits, min_bytes=_WAV_HEADER_BYTES + 1)
    return wav, run


def fluidsynth(
    workdir: Path, mid: Path, settings: Settings, profile: AudioProfile
) -> tuple[Path, Completed]:
    """Synthesise tune.mid → tune.wav with fluidsynth and the configured SoundFont.

    ``-n -i`` start no MIDI input driver and no interactive shell, ``-F`` renders straight to the
    file as fast as the CPU allows (no audio device is opened), and ``-T wav -O s16 -r RATE``
    give a 16-bit WAV at the profile's rate. fluidsynth always writes stereo: a mono profile's
    WAV is mixed down by `normalise`. ``-q`` drops the banner. ``synth.dynamic-sample-loading``
    loads only the samples the tune plays instead of the whole SoundFont (~150 MB for
    FluidR3_GM) every run: the same bytes out, half the CPU time (docs/rendering.md).
    """
    exe = resolve(FLUIDSYNTH, settings.fluidsynth)
    soundfont = settings.soundfont.absolute()
    if not soundfont.is_file():
        raise ToolMissingError(
            f"the SoundFont {soundfont} does not exist; install the Debian package "
            "'fluid-soundfont-gm' or set TUNEBATCH_SOUNDFONT to a .sf2 file"
        )
    wav = workdir / "tune.wav"
    limits = Limits.from_settings(settings)
    args = ["-n", "-i", "-q", "-o", "synth.dynamic-sample-loading=1", "-F", wav.name]
    args += ["-T", "wav", "-O", "s16", "-r", str(profile.sample_rate)]
    jail = jail_for(settings, exe, soundfont)
    run = run_tool(FLUIDSYNTH, exe, [*args, str(soundfont), mid.name], workdir, limits, jail)
    require_output(wav, "wav", run, workdir, limits, min_bytes=_WAV_HEADER_BYTES + 1)
    return wav, run


def synthesise(
    workdir: Path, mid: Path, settings: Settings, profile: AudioProfile
) -> tuple[Path, Completed]:
    """MIDI → WAV with the synthesiser `settings.synth` names."""
    if settings.synth == "fluidsynth":
        return fluidsynth(workdir, mid, settings, profile)
    return timidity(workdir, mid, settings, profile)


@contextlib.contextmanager
def _rewriting(wav: Path, doing: str) -> Iterator[Path]:
    """A path beside tune.wav for its new version, renamed over it once complete, so a failure
    never leaves a half-written file; a WAV we cannot read is the tune's render failing."""
    out = wav.with_name("tune.new.wav")
    try:
        with storage_guard(doing):
            yield out
            out.replace(wav)
    except (ValueError, EOFError, wave.Error) as exc:
        raise RenderError(
            f"the synthesiser's WAV could not be read while {doing} ({exc})", tool="loudness"
        ) from exc


def mix_down(wav: Path) -> None:
    """Turn a stereo tune.wav into mono in place, without a gain (loudness normalisation off)."""
    with _rewriting(wav, "mixing the WAV down to mono") as out:
        write_wav_scaled(wav, out, channels=1)


def normalise(wav: Path, settings: Settings, channels: int) -> Normalisation:
    """Bring tune.wav to the loudness target in place (see `common.render.loudness`), mixed
    down to mono on the way when `channels` is 1 and the synthesiser wrote stereo.

    In-process rather than a tool: it is our own bounded numpy code reading a file our own
    synthesiser wrote, in fixed-size chunks, so it needs no sandbox.
    """
    target, ceiling = settings.loudness_target_lufs, settings.loudness_peak_dbfs
    with _rewriting(wav, "normalising the WAV's loudness") as out:
        return normalise_wav(wav, out, target, ceiling, channels=channels)


def abcm2ps(workdir: Path, settings: Settings) -> tuple[Path, Completed]:
    """Engrave tune.abc → tune.svg.

    ``-g`` writes one SVG per tune and names it ``<stem>NNN.svg`` (tune001.svg for ``-O tune.svg``),
    so the file is found by pattern and renamed. ``-S`` is abcm2ps's secure mode (no PostScript
    or file access from the tune), on top of `unsafe_reason`. abcm2ps exits 1 on any complaint
    even when the score is fine, so its messages become warnings and the file decides. The SVG
    is then sanitised in place (`common.render.svg`); one that is not well-formed is refused.
    """
    exe = resolve(ABCM2PS, settings.abcm2ps)
    limits = Limits.from_settings(settings)
    args = ["-S", "-q", "-k", _ABCM2PS_BUFFER_KIB, "-g", "-O", "tune.svg", TUNE_FILE]
    run = run_tool(ABCM2PS, exe, args, workdir, limits, jail_for(settings, exe))
    target = workdir / "tune.svg"
    written = sorted(p for p in workdir.glob("tune*.svg") if p != target)
    if written and not target.exists():
        with storage_guard("renaming the SVG"):
            written[0].rename(target)
        for extra in written[1:]:
            extra.unlink()
    require_output(target, "svg", run, workdir, limits)
    with storage_guard("sanitising the SVG"):
        clean = sanitise_svg(target.read_bytes())
        target.write_bytes(clean.data)
    if clean.removed:
        removed = ", ".join(f"{n} {what}" for what, n in sorted(clean.removed.items()))
        logger.warning("removed from the SVG score: %s", removed)
    return target, run


def _convert(
    tool: Tool, args: Sequence[str], fmt: str, workdir: Path, settings: Settings
) -> tuple[Path, Completed]:
    """Run a converter found on PATH that writes ``tune.<fmt>`` from a file in `workdir`."""
    exe = resolve(tool, tool.name)
    limits = Limits.from_settings(settings)
    run = run_tool(tool, exe, args, workdir, limits, jail_for(settings, exe))
    return require_output(workdir / f"tune.{fmt}", fmt, run, workdir, limits), run


def pdf(workdir: Path, svg: Path, settings: Settings) -> tuple[Path, Completed]:
    """Convert the score tune.svg → tune.pdf with rsvg-convert (librsvg, memory-safe Rust).

    Chosen over abcm2ps → PostScript → ghostscript's ps2pdf: one 6 MB package instead of a
    PostScript interpreter (13 packages, and a history of -dSAFER escapes) fed text derived from
    untrusted input. The page is the SVG's size — the music, cropped — as abcm2ps ``-g`` draws
    it. librsvg only loads images from the SVG's own directory, which holds nothing but ours.
    """
    return _convert(RSVG, ["-f", "pdf", "-o", "tune.pdf", svg.name], "pdf", workdir, settings)


def book_pdf(workdir: Path, settings: Settings) -> tuple[Path, list[Completed]]:
    """Engrave the tunebook tune.abc → tune.pdf: abcm2ps ``-v`` lays it out in pages (one SVG
    a page, tunes kept whole where they fit), each page is sanitised like a tune's SVG, and
    rsvg-convert joins the pages into one PDF."""
    exe = resolve(ABCM2PS, settings.abcm2ps)
    limits = Limits.from_settings(settings)
    args = ["-S", "-q", "-k", _ABCM2PS_BUFFER_KIB, "-v", "-O", "page.svg", TUNE_FILE]
    engraved = run_tool(ABCM2PS, exe, args, workdir, limits, jail_for(settings, exe))
    pages = sorted(workdir.glob("page*.svg"))
    if not pages:
        require_output(workdir / "page001.svg", "svg", engraved, workdir, limits)
    for page in pages:
        with storage_guard("sanitising the SVG"):
            page.write_bytes(sanitise_svg(page.read_bytes()).data)
    names = [page.name for page in pages]
    pdf, joined = _convert(RSVG, ["-f", "pdf", "-o", "tune.pdf", *names], "pdf", workdir, settings)
    return pdf, [engraved, joined]


def engrave(
    workdir: Path, abc: Path, settings: Settings, profile: AudioProfile
) -> tuple[Path, Completed]:
    """The score, as `STAGES` calls it: `abcm2ps` on tune.abc."""
    return abcm2ps(workdir, settings)


def score_pdf(
    workdir: Path, svg: Path, settings: Settings, profile: AudioProfile
) -> tuple[Path, Completed]:
    """The score's PDF, as `STAGES` calls it: `pdf` on tune.svg."""
    return pdf(workdir, svg, settings)


# The encoders take the normalised WAV's channels and rate as they are (lame picks its MPEG-2
# layer III for 16 and 24 kHz); only oggenc has a quality per audio level.


def ogg(
    workdir: Path, wav: Path, settings: Settings, profile: AudioProfile
) -> tuple[Path, Completed]:
    """tune.wav → tune.ogg (Ogg Vorbis) at the level's quality."""
    args = ["-Q", "-q", str(profile.ogg_quality), "-o", "tune.ogg", wav.name]
    return _convert(OGGENC, args, "ogg", workdir, settings)


def mp3(
    workdir: Path, wav: Path, settings: Settings, profile: AudioProfile
) -> tuple[Path, Completed]:
    """tune.wav → tune.mp3 with lame's defaults."""
    return _convert(LAME, ["--quiet", wav.name, "tune.mp3"], "mp3", workdir, settings)


def flac(
    workdir: Path, wav: Path, settings: Settings, profile: AudioProfile
) -> tuple[Path, Completed]:
    """tune.wav → tune.flac, lossless."""
    args = ["--silent", "--force", "-o", "tune.flac", wav.name]
    return _convert(FLAC, args, "flac", workdir, settings)


#: A stage that makes one format from the file of the format it is made from (the table's
#: ``source``), in the tune's directory: (directory, source file, settings, audio level) →
#: (the file it wrote, the tool's run).
Stage = Callable[[Path, Path, Settings, AudioProfile], tuple[Path, Completed]]

#: The stage of every format made by converting another format's file. ``mid`` and ``wav`` are
#: not here: they are the pipeline's gates (abc2midi's verdict; synthesis and loudness), run by
#: `common.render.pipeline` itself; ``abc`` is the tune text. A test checks the table and this
#: mapping cover the same formats.
STAGES: dict[str, Stage] = {"svg": engrave, "pdf": score_pdf, "ogg": ogg, "mp3": mp3, "flac": flac}
