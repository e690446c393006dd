"""Which render tools are installed, at which versions: the provenance every manifest records.

The tools are those of the formats table (`common.formats.TOOLS`), each asked the way its
`Tool` says, once per process (a process start per tool), outside the jail and under
`PROBE_LIMITS`, since the arguments are fixed and no tune is involved.
"""

from __future__ import annotations

import functools
import logging

from common import formats
from common.errors import RenderError, ToolMissingError, TransientError
from common.render.sandbox import UNJAILED
from common.render.tool_run import PROBE_LIMITS, resolve, run_tool
from common.render.workdir import make_workdir, remove_workdir
from common.settings import Settings

logger = logging.getLogger(__name__)


def tool_versions(settings: Settings) -> dict[str, str]:
    """Versions of the render tools that are installed, for every manifest's provenance.

    A tool that is missing is left out rather than failing: a producer records what exists.
    Cached per process on the configured paths, since a version does not change under a
    running worker and asking costs a process start per tool. Two entries describe how audio
    is made rather than a tool's version, because they change the sound as much as a version
    does: ``synth`` (the synthesiser and its soundfont) and ``loudness`` (the target, or "off").
    """
    configured = tuple(
        (tool.name, str(getattr(settings, tool.setting)) if tool.setting else tool.name)
        for tool in formats.TOOLS
    )
    versions = dict(_tool_versions(configured))
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
def _tool_versions(configured: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """(tool, version) of each installed tool of `configured`: (tool name, path or name)."""
    paths = dict(configured)
    versions: list[tuple[str, str]] = []
    workdir = make_workdir()
    try:
        for tool in formats.TOOLS:
            try:
                exe = resolve(tool, paths[tool.name])
                run = run_tool(tool, exe, tool.version_args, workdir, PROBE_LIMITS, UNJAILED)
            except (ToolMissingError, RenderError, TransientError) as exc:
                logger.info("no version for %s: %s", tool.name, exc)
                continue
            match = tool.version_pattern.search(run.output)
            first = next((ln.strip() for ln in run.output.splitlines() if ln.strip()), "")
            version = match.group(1) if match else first[:80]
            if version:
                versions.append((tool.name, version))
    finally:
        remove_workdir(workdir)
    return tuple(versions)
