"""Which render tools are installed, at which versions: the provenance every manifest records.

Each tool is asked for its version once per process (a process start per tool), outside the jail
and under `PROBE_LIMITS`, since the arguments are fixed and no tune is involved.
"""

from __future__ import annotations

import functools
import logging
import re

from common.errors import RenderError, ToolMissingError, TransientError
from common.render import formats
from common.render.sandbox import UNJAILED
from common.render.tool_run import PROBE_LIMITS, Tool, resolve, run_tool
from common.render.workdir import make_workdir, remove_workdir
from common.settings import Settings

logger = logging.getLogger(__name__)

#: Each tool, the arguments that make it print its version, and where the version is in that.
_VERSION_PROBES: tuple[tuple[Tool, tuple[str, ...], re.Pattern[str]], ...] = (
    (formats.ABC2MIDI, ("-ver",), re.compile(r"^\s*(\S.*?)\s+abc2midi\s*$", re.MULTILINE)),
    (formats.TIMIDITY, ("--version",), re.compile(r"version\s+(\S+)")),
    (formats.ABCM2PS, ("-V",), re.compile(r"abcm2ps-(\S+)")),
    (formats.OGGENC, ("--version",), re.compile(r"vorbis-tools\s+(\S+)")),
    (formats.LAME, ("--version",), re.compile(r"version\s+(\S+)")),
    (formats.FLUIDSYNTH, ("--version",), re.compile(r"version\s+(\S+)")),
    (formats.FLAC, ("--version",), re.compile(r"flac\s+(\S+)")),
    (formats.RSVG, ("--version",), re.compile(r"version\s+(\S+)")),
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
        f"{settings.loudness_target_lufs:g} LUFS integrated (ITU-R BS.1770-4, mono as dual "
        f"mono), sample peak at most {settings.loudness_peak_dbfs:g} dBFS"
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
    workdir = make_workdir()
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
        remove_workdir(workdir)
    return tuple(versions)
