"""Render speed: our sandboxed `common.render.pipeline` against calling the same tools directly.

Prints, in one run and on one machine, over ~20 real tunes from O'Neill's Music of Ireland
(music21's bundled copy, split and normalised as a corpus import does, the first ones abc2midi
accepts):

* the per-tune wall time of each stage (abc2midi, timidity or fluidsynth, loudness, abcm2ps,
  rsvg-convert, oggenc, lame, flac), as our render measures it and as a bare
  ``subprocess.run`` of the same argument list takes on the same files, side by side;
* each stage and the whole render a third way: ours without the bubblewrap jail
  (``TUNEBATCH_SANDBOX=rlimits``), so the cost of the isolation (`common.render.sandbox`:
  namespaces,
  read-only binds, a private /tmp, per tool run) shows on its own line, in ms per tool run and as
  a share of the render, next to the rest of our overhead; and abc2midi's check alone
  (`check_abc`, run once per generated tune) both ways;
* the whole render per tune both ways, and our overhead: the sandbox (rlimits, bwrap, a new
  session, pidfd wait, output checks, MIDI duration parse, SVG sanitising, temp directory) over
  the bare calls. Loudness normalisation is a feature, not overhead, so this comparison runs
  with it off and its own cost is shown as its own line. The three ways alternate tune by
  tune, and each figure is the median of ``--rounds`` rounds, so drift on a shared machine
  hits them alike;
* throughput with N renders in parallel (N = CPU count by default, as a CPU worker runs N
  processes), next to one at a time, and the CPU utilisation of the parallel run: CPU seconds
  used by the renders and their tools (getrusage of the worker and its children) ÷ wall ÷
  cores. "A CPU worker keeps every core busy" means this is close to 100 %.

* the audio levels side by side (``--audio``, `common.params.AudioLevel`): CPU seconds and bytes
  per tune for the default formats and with ogg, for each synthesiser, against ``hifi`` with
  timidity, the settings every batch had before levels existed; and each render's loudness, by
  our BS.1770 meter and by ffmpeg's ``ebur128`` filter (a meter we did not write) where ffmpeg is
  installed. CPU seconds are this process's and its tools' (getrusage), so loudness and Python's
  share count too; the levels alternate tune by tune. This table renders without the jail: a
  tool inside bwrap's pid namespace is reaped by bwrap's init, not by us, so getrusage never
  sees its CPU time. The jail's cost is per tool run, the same runs at every level, and the
  first table below shows it.

    python bench/render.py                        # 20 tunes, every format, timidity
    python bench/render.py --synth fluidsynth
    python bench/render.py --quick                # 6 tunes, 1 round: a smoke run
    python bench/render.py --levels-only --tunes 12   # the audio levels table alone
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from common.abc.corpus import bundled_files
from common.abc.notation import normalise_tune, split_tunes, unsafe_reason
from common.params import DEFAULT_AUDIO, DEFAULT_FORMATS, FORMATS, AudioLevel
from common.render.loudness import measure_wav, normalise_wav
from common.render.pipeline import check_abc, rendered
from common.render.sandbox import require
from common.render.versions import tool_versions
from common.settings import Settings

TARGET_OVERHEAD = 0.10
TARGET_UTILISATION = 0.90
_OPTIONAL = {"pdf": "rsvg-convert", "flac": "flac"}


# --------------------------------------------------------------------------------------------
# Tunes
# --------------------------------------------------------------------------------------------


def oneills_tunes(count: int, settings: Settings) -> list[str]:
    """The first `count` O'Neill's tunes that abc2midi accepts and that play under 3 minutes."""
    tunes: list[str] = []
    for path in bundled_files("oneills"):
        for raw in split_tunes(path.read_text(encoding="utf-8", errors="replace")):
            tune = normalise_tune(raw) + "\n"
            if unsafe_reason(tune) is None and check_abc(tune, settings).ok:
                tunes.append(tune)
                if len(tunes) == count:
                    return tunes
    return tunes


# --------------------------------------------------------------------------------------------
# The direct baseline: the same argument lists, bare subprocess.run
# --------------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


def direct_commands(settings: Settings, formats: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(stage, argv) in render.py's order with render.py's arguments, for `formats`."""
    audio = any(f in formats for f in ("wav", "ogg", "mp3", "flac"))
    steps: list[tuple[str, list[str]]] = []
    if audio or "mid" in formats:
        steps.append(("abc2midi", [settings.abc2midi, *_words("tune.abc -o tune.mid")]))
    if "svg" in formats or "pdf" in formats:
        args = _words("-S -q -k 1024 -g -O tune.svg tune.abc")
        steps.append(("abcm2ps", [settings.abcm2ps, *args]))
        if "pdf" in formats:
            steps.append(("rsvg-convert", _words("rsvg-convert -f pdf -o tune.pdf tune001.svg")))
    if not audio:
        return steps
    if settings.synth == "fluidsynth":
        args = _words("-n -i -q -F tune.wav -T wav -O s16 -r 44100")
        synth = [settings.fluidsynth, *args, str(settings.soundfont), "tune.mid"]
    else:
        args = _words("-id --quiet=1 -Ow -o tune.wav tune.mid")
        synth = [settings.timidity, "-c", str(settings.timidity_config), *args]
    steps.append((settings.synth, synth))
    encoders = {
        "ogg": ("oggenc", "oggenc -Q -o tune.ogg tune.wav"),
        "mp3": ("lame", "lame --quiet tune.wav tune.mp3"),
        "flac": ("flac", "flac --silent --force -o tune.flac tune.wav"),
    }
    steps += [(tool, _words(line)) for fmt, (tool, line) in encoders.items() if fmt in formats]
    return steps


def render_direct(
    tune: str, commands: list[tuple[str, list[str]]], env: dict[str, str]
) -> tuple[float, dict[str, float]]:
    """One tune the plain way: temp dir, write, subprocess.run each tool, remove. (total, stages)"""
    started = time.perf_counter()
    stages: dict[str, float] = {}
    workdir = Path(tempfile.mkdtemp(prefix="bench-direct-"))
    try:
        (workdir / "tune.abc").write_text(tune)
        for stage, argv in commands:
            t = time.perf_counter()
            quiet = subprocess.DEVNULL
            subprocess.run(argv, cwd=workdir, env=env, stdin=quiet, stdout=quiet, stderr=quiet)
            stages[stage] = time.perf_counter() - t
    finally:
        shutil.rmtree(workdir)
    return time.perf_counter() - started, stages


def render_ours(
    tune: str, formats: Sequence[str], settings: Settings
) -> tuple[float, dict[str, float]]:
    """One tune through `common.render.pipeline.rendered`. (total, stages as render measured
    them)"""
    started = time.perf_counter()
    with rendered(tune, formats, settings) as result:
        stages = dict(result.seconds)
    return time.perf_counter() - started, stages


# --------------------------------------------------------------------------------------------
# Parallel throughput
# --------------------------------------------------------------------------------------------


def _render_task(args: tuple[str, tuple[str, ...], Settings]) -> tuple[float, float]:
    """Render one tune in a pool process; return (wall, CPU of this process and its tools)."""
    tune, formats, settings = args

    def cpu() -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    before, started = cpu(), time.perf_counter()
    with rendered(tune, formats, settings):
        pass
    return time.perf_counter() - started, cpu() - before


def _machine_ticks() -> tuple[int, int] | None:
    """(busy, total) CPU ticks of the whole machine from /proc/stat; None off Linux.

    Shown beside our own CPU time because on a shared machine other processes take cores too:
    "ours 65 %, machine 100 %" means the cores were busy, just not all with us.
    """
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _warm(_: int) -> int:
    return os.getpid()


def throughput(
    tunes: list[str], formats: tuple[str, ...], settings: Settings, workers: int, repeat: int
) -> tuple[float, float, float]:
    """(tunes per second, our CPU busy, whole machine's CPU busy), the latter two as fractions of
    all cores, with `workers` processes rendering at once."""
    jobs = [(tune, formats, settings) for tune in tunes] * repeat
    cores = os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_warm, range(workers * 4)))  # processes started and imported up front
        ticks = _machine_ticks()
        started = time.perf_counter()
        results = list(pool.map(_render_task, jobs))
        wall = time.perf_counter() - started
        after = _machine_ticks()
    cpu = sum(c for _, c in results)
    machine = math.nan
    if ticks is not None and after is not None and after[1] > ticks[1]:
        machine = (after[0] - ticks[0]) / (after[1] - ticks[1])
    return len(jobs) / wall, cpu / wall / cores, machine


# --------------------------------------------------------------------------------------------
# Audio levels against today's settings
# --------------------------------------------------------------------------------------------

#: The settings every batch rendered with before audio levels: the baseline of the table.
BASELINE = ("timidity", AudioLevel.HIFI)
_ENCODER_TOOLS = {"mp3": "lame", "flac": "flac"}
_EBUR128 = re.compile(r"I:\s+(-?[\d.]+|-inf) LUFS.*?Peak:\s+(-?[\d.]+|-inf) dBFS", re.DOTALL)


def _cpu_seconds() -> float:
    """CPU seconds of this process and every child it waited for."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def ebur128(path: Path) -> tuple[float, float] | None:
    """(integrated LUFS, sample peak dBFS) of an audio file by ffmpeg's ebur128 filter, mono as
    dual mono (as `common.render.loudness` measures it)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None
    argv = [
        ffmpeg,
        "-nostats",
        "-hide_banner",
        "-i",
        str(path),
        "-af",
        "ebur128=peak=sample:dualmono=true",
    ]
    done = subprocess.run([*argv, "-f", "null", "-"], capture_output=True, text=True, check=False)
    found = _EBUR128.search(done.stderr[done.stderr.rfind("Summary:") :])
    return (float(found.group(1)), float(found.group(2))) if found else None


def compare_levels(
    tunes: list[str], synths: Sequence[str], rounds: int, settings: Settings
) -> None:
    """Print CPU seconds and bytes per tune for each level and synth, against `BASELINE`, then
    what each format costs at each level with timidity.

    Unjailed (see the module's docstring): getrusage cannot see a jailed tool's CPU time.
    """
    settings = settings.model_copy(update={"sandbox": "rlimits"})
    configs = [(synth, level) for synth in synths for level in AudioLevel]
    if BASELINE not in configs:
        configs.insert(0, BASELINE)
    configs.sort(key=lambda c: c != BASELINE)
    default, with_ogg = tuple(DEFAULT_FORMATS), (*DEFAULT_FORMATS, "ogg")
    jobs = [(synth, level, formats) for synth, level in configs for formats in (default, with_ogg)]
    # What each format adds, with timidity: its render against the one without it.
    extra = [f for f in ("mp3", "flac") if shutil.which(_ENCODER_TOOLS[f])]
    jobs += [("timidity", level, ("abc", "mid")) for level in AudioLevel]
    jobs += [("timidity", level, (*default, fmt)) for level in AudioLevel for fmt in extra]
    scores = [("abc", "svg")] + ([("abc", "svg", "pdf")] if shutil.which("rsvg-convert") else [])
    jobs += [("timidity", DEFAULT_AUDIO, formats) for formats in scores]
    cpu: dict[tuple[str, AudioLevel, tuple[str, ...]], list[float]] = {}
    size: dict[tuple[str, AudioLevel, str], list[int]] = {}
    levels: dict[tuple[str, AudioLevel], list[tuple[float, float, float, float, float]]] = {}
    for synth in dict.fromkeys(synth for synth, _ in configs):  # its files into the page cache
        with rendered(tunes[0], with_ogg, settings.model_copy(update={"synth": synth})):
            pass
    for round_no in range(rounds):
        for tune in tunes:
            for synth, level, formats in jobs:
                conf = settings.model_copy(update={"synth": synth})
                started = _cpu_seconds()
                with rendered(tune, formats, conf, level) as result:
                    cpu.setdefault((synth, level, formats), []).append(_cpu_seconds() - started)
                    for fmt, path in result.files.items():
                        size.setdefault((synth, level, fmt), []).append(path.stat().st_size)
                    if formats == with_ogg and round_no == 0:
                        ours = measure_wav(result.files["wav"])
                        theirs = ebur128(result.files["wav"]) or (math.nan, math.nan)
                        ogg = ebur128(result.files["ogg"]) or (math.nan, math.nan)
                        levels.setdefault((synth, level), []).append(
                            (ours.integrated_lufs, ours.peak_dbfs, *theirs, ogg[0])
                        )

    def ms(synth: str, level: AudioLevel, formats: tuple[str, ...]) -> float:
        return 1000 * statistics.mean(cpu[(synth, level, formats)])

    def kb(synth: str, level: AudioLevel, formats: Sequence[str]) -> float:
        return sum(statistics.mean(size[(synth, level, f)]) for f in formats) / 1000

    print(
        f"audio levels: {len(tunes)} tunes x {rounds} rounds, CPU = this process and its tools "
        f"(getrusage, tools unjailed), mean per tune; baseline = {BASELINE[1]} with "
        f"{BASELINE[0]} (the settings before levels)"
    )
    print(
        f"{'formats':16s} {'synth':10s} {'level':8s} {'CPU ms':>8s} {'x fewer':>8s} "
        f"{'kB/tune':>8s} {'x smaller':>9s}"
    )
    for formats in (default, with_ogg):
        base_ms, base_kb = ms(*BASELINE, formats), kb(*BASELINE, formats)
        for synth, level in configs:
            mean_ms, mean_kb = ms(synth, level, formats), kb(synth, level, formats)
            print(
                f"{','.join(formats):16s} {synth:10s} {level:8s} {mean_ms:8.1f} "
                f"{base_ms / mean_ms:7.2f}x {mean_kb:8.1f} {base_kb / mean_kb:8.2f}x"
            )
    print()
    print(
        "what each format adds, timidity: CPU ms per tune (= CPU-s per 1,000 tunes) over the "
        "render without it; kB per tune (= MB per 1,000 tunes)"
    )
    print(f"{'format':8s}" + "".join(f" {level + ' ms':>13s} {'kB':>7s}" for level in AudioLevel))
    without = {"mid": ("abc",), "wav": ("abc", "mid"), "svg": ("abc",), "pdf": ("abc", "svg")}
    for fmt in ("abc", "mid", "wav", "ogg", *extra, *(s[-1] for s in scores)):
        cells = ""
        for level in AudioLevel:
            with_it = with_ogg if fmt in ("abc", "ogg") else (*default, fmt)
            if fmt in ("mid", "wav"):
                with_it = (*without[fmt], fmt)
            if fmt in ("svg", "pdf"):
                with_it, level = (*without[fmt], fmt), DEFAULT_AUDIO  # no audio: one level
            before = without.get(fmt, default)
            added = 0.0 if fmt == "abc" else ms("timidity", level, with_it)
            if fmt not in ("abc", "mid", "svg"):
                added -= ms("timidity", level, before)
            cells += f" {added:13.1f} {kb('timidity', level, [fmt]):7.1f}"
        print(f"{fmt:8s}{cells}")
    print()
    print(
        f"{'loudness of the WAV':30s} {'ours LUFS':>15s} {'ours peak':>10s} {'ffmpeg LUFS':>15s} "
        f"{'ffmpeg peak':>12s} {'ogg LUFS':>15s}"
    )
    for (synth, level), found in levels.items():
        lufs, peak, their_lufs, their_peak, ogg_lufs = zip(*found, strict=True)
        print(
            f"{synth + ' ' + level:30s} {min(lufs):7.2f}..{max(lufs):6.2f} {max(peak):10.2f} "
            f"{min(their_lufs):7.2f}..{max(their_lufs):6.2f} {max(their_peak):12.2f} "
            f"{min(ogg_lufs):7.2f}..{max(ogg_lufs):6.2f}"
        )
    print(
        "(range over the tunes; the target is -16 LUFS integrated with sample peaks <= -1 dBFS; "
        "a tune whose peak reaches the ceiling first stays below -16; ogg decoded by ffmpeg)"
    )
    print()


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name as lscpu shows it ("" off Linux)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    found = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    return found.group(1).strip() if found else ""


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tunes", type=int, default=20, help="O'Neill's tunes to render")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are printed")
    parser.add_argument("--synth", choices=["timidity", "fluidsynth"], default="timidity")
    parser.add_argument("--formats", default="", help="default: every format installed")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true", help="6 tunes, 1 round")
    parser.add_argument("--no-parallel", action="store_true", help="skip the throughput table")
    parser.add_argument(
        "--level-synths", default="timidity,fluidsynth", help="synths of the audio levels table"
    )
    parser.add_argument("--no-levels", action="store_true", help="skip the audio levels table")
    parser.add_argument(
        "--levels-only", action="store_true", help="print the audio levels table alone"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.tunes, args.rounds = 6, 1

    settings = Settings(synth=args.synth, sandbox="bwrap")
    require(settings)  # the comparison needs a working bwrap: say so rather than measure nothing
    raw = settings.model_copy(update={"loudness_normalise": False})
    unjailed = raw.model_copy(update={"sandbox": "rlimits"})
    available = [f for f in FORMATS if f not in _OPTIONAL or shutil.which(_OPTIONAL[f])]
    formats = tuple(args.formats.split(",")) if args.formats else tuple(available)
    tunes = oneills_tunes(args.tunes, settings)
    commands = direct_commands(settings, formats)
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": tempfile.gettempdir(),
        "LANG": "C",
        "SDL_AUDIODRIVER": "dummy",
    }

    versions = tool_versions(settings)
    print(
        f"machine   {cpu_model()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}"
    )
    print(
        "tools     "
        + ", ".join(f"{k} {v}" for k, v in versions.items() if k not in ("synth", "loudness"))
    )
    print(f"synth     {versions['synth']}; loudness {versions['loudness']}")
    print(
        f"tunes     {len(tunes)} from O'Neill's; formats {','.join(formats)}; "
        f"{args.rounds} rounds, medians"
    )
    print()

    if not args.no_levels:
        synths = [s for s in args.level_synths.split(",") if s]
        compare_levels(tunes, synths, args.rounds, settings)
        if args.levels_only:
            return 0

    # Warm both paths once (page cache, tool_versions, the K-filter cache) before measuring.
    render_ours(tunes[0], formats, settings)
    render_direct(tunes[0], commands, env)

    ours_total: list[list[float]] = [[] for _ in tunes]
    free_total: list[list[float]] = [[] for _ in tunes]
    free_stage: dict[str, list[float]] = {}
    checks: dict[str, list[float]] = {"bwrap": [], "rlimits": []}
    direct_total: list[list[float]] = [[] for _ in tunes]
    ours_stage: dict[str, list[float]] = {}
    direct_stage: dict[str, list[float]] = {}
    loudness: list[float] = []
    wav_seconds: list[float] = []
    levels: list[tuple[float, float, float]] = []  # (LUFS before, LUFS after, peak after)
    for _ in range(args.rounds):
        for i, tune in enumerate(tunes):
            total, stages = render_ours(tune, formats, raw)
            ours_total[i].append(total)
            for stage, secs in stages.items():
                ours_stage.setdefault(stage, []).append(secs)
            total, stages = render_ours(tune, formats, unjailed)
            free_total[i].append(total)
            for stage, secs in stages.items():
                free_stage.setdefault(stage, []).append(secs)
            total, stages = render_direct(tune, commands, env)
            direct_total[i].append(total)
            for stage, secs in stages.items():
                direct_stage.setdefault(stage, []).append(secs)
            for mode, conf in (("bwrap", raw), ("rlimits", unjailed)):
                started = time.perf_counter()
                check_abc(tune, conf)
                checks[mode].append(time.perf_counter() - started)
    # Loudness on its own: measure + rewrite each tune's WAV, as render does after synthesis.
    for tune in tunes:
        with rendered(tune, ["wav"], raw) as result:
            wav = result.files["wav"]
            started = time.perf_counter()
            done = normalise_wav(
                wav,
                wav.with_name("n.wav"),
                settings.loudness_target_lufs,
                settings.loudness_peak_dbfs,
            )
            loudness.append(time.perf_counter() - started)
            wav_seconds.append(done.before.seconds)
            levels.append((done.before.integrated_lufs, done.after_lufs, done.after_peak_dbfs))

    n_runs = args.rounds * len(tunes)
    print(
        f"{'stage (ms per tune)':22s} {'ours':>9s} {'no jail':>9s} {'direct':>9s} "
        f"{'overhead':>9s} {'jail ms':>8s} {'jail %':>7s}"
    )
    jail_runs: list[float] = []
    for stage, _ in commands:
        ours = sum(ours_stage.get(stage, [0.0])) / n_runs
        free = sum(free_stage.get(stage, [0.0])) / n_runs
        direct = sum(direct_stage.get(stage, [0.0])) / n_runs
        jail_runs.append(ours - free)
        print(
            f"{stage:22s} {_ms(ours)} {_ms(free)} {_ms(direct)} "
            f"{100 * (ours / direct - 1):8.1f}% {1000 * (ours - free):8.1f} "
            f"{100 * (ours / free - 1):6.1f}%"
        )
    check_jail = statistics.median(checks["bwrap"])
    check_free = statistics.median(checks["rlimits"])
    print(
        f"{'check_abc (abc2midi)':22s} {_ms(check_jail)} {_ms(check_free)} {'-':>9s} {'-':>9s} "
        f"{1000 * (check_jail - check_free):8.1f} {100 * (check_jail / check_free - 1):6.1f}%"
    )
    mean_loud = statistics.mean(loudness)
    per_minute = 60 * mean_loud / statistics.mean(wav_seconds)
    print(
        f"{'loudness (in-process)':22s} {_ms(mean_loud)} {'-':>9s} {'-':>9s}   "
        f"({1000 * per_minute:.0f} ms per minute of audio; not in the overhead below)"
    )
    before, after, peaks = zip(*levels, strict=True)
    limited = sum(1 for lufs in after if lufs < settings.loudness_target_lufs - 0.05)
    print(
        f"{'  levels':22s} {min(before):.1f}..{max(before):.1f} LUFS as synthesised -> "
        f"{min(after):.1f}..{max(after):.1f} LUFS (peaks <= {max(peaks):.1f} dBFS); "
        f"{limited} of {len(levels)} held below the target by the peak ceiling"
    )
    ours_med = sum(statistics.median(t) for t in ours_total) / len(tunes)
    direct_med = sum(statistics.median(t) for t in direct_total) / len(tunes)
    overhead = ours_med / direct_med - 1
    verdict = "met" if overhead <= TARGET_OVERHEAD else "MISSED"
    print(
        f"{'whole render':22s} {_ms(ours_med)} {_ms(direct_med)} {100 * overhead:8.1f}%   "
        f"(target <= {100 * TARGET_OVERHEAD:.0f}%: {verdict})"
    )
    free_med = sum(statistics.median(t) for t in free_total) / len(tunes)
    jail_share = ours_med / free_med - 1
    print(
        f"{'  of which the jail':22s} {_ms(ours_med - free_med)} ms per tune over "
        f"{len(commands)} tool runs ({1000 * statistics.mean(jail_runs):.1f} ms per run): "
        f"{100 * jail_share:.1f}% of the unjailed render"
    )
    print(f"{'  with loudness':22s} {_ms(ours_med + mean_loud)}")
    print()

    if args.no_parallel:
        return 0
    counts = sorted({1, args.workers, 2 * args.workers})
    print(
        f"{'parallel renders':22s} {'tunes/s':>9s} {'speedup':>9s} {'CPU: ours':>10s} "
        f"{'machine':>8s}"
    )
    first = 0.0
    for workers in counts:
        rate, util, machine = throughput(tunes, formats, settings, workers, 2 if workers > 1 else 1)
        first = first or rate
        note = ""
        if workers == args.workers:
            verdict = "met" if util >= TARGET_UTILISATION else "MISSED"
            if util < TARGET_UTILISATION and machine - util > 0.10:
                # The cores were busy, partly with other processes: our renders could not have
                # had more of them, so this run cannot tell how busy they would keep idle cores.
                verdict = f"cores saturated, {100 * (machine - util):.0f}% by other processes"
            note = f"   <- one per CPU (target >= {100 * TARGET_UTILISATION:.0f}%: {verdict})"
        print(
            f"{f'{workers} worker process(es)':22s} {rate:9.2f} {rate / first:8.2f}x "
            f"{100 * util:9.0f}% {100 * machine:7.0f}%{note}"
        )
    print(
        f"(all formats with loudness; {len(tunes)} tunes per worker count, twice when parallel; "
        "CPU ours = CPU seconds of the renders and their tools / wall / cores; machine = every "
        "process, from /proc/stat)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
