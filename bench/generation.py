"""Generation speed: the original per-char ``model.predict`` loop against our batched `Sampler`.

Prints, in one run and on one machine:

* chars/s of the original recipe's generator — ``model.predict`` over a 100-char window for every
  character of one tune — timed char by char once the window is full;
* chars/s of `Sampler` at each batch size B in steady state: 3×B (or more) tunes are queued so
  that finished slots are refilled, one warm-up call (tracing included) is discarded, and chars
  are counted over a fixed number of compiled calls. The whole `SamplingRun` iteration is timed
  — the compiled block (step, sampling, stop detection, slot refill) plus the Python side
  (queue, seeds, collecting and finishing tunes) — not just the step;
* the ratio of each to the predict loop;
* the step's achieved GFLOP/s (FLOPs it actually does per char: h·R and the output head; the
  input projection is a gather from the folded E·K table), the "model-equivalent" GFLOP/s of the
  original Embedding→LSTM step ((embedding + units)×4·units input matmul), and a plain
  ``tf.matmul`` of the step's main shape (B×units · units×4·units), with the step's share of it.

The machine this runs on is shared and noisy, so the baselines are interleaved with what they
are compared with: between two measured sampler calls (off their clock) the reference matmul
runs for ~0.1 s and the predict loop writes one char. Each row's ratio and matmul share come
from its own stretch of time.

The model has random weights (the seed preset by default) over a vocabulary of the 95 printable
ASCII characters and newline, like a real ABC corpus. The head's newline bias is raised so that
lines and tune ends come at the rate of real ABC (a newline every ~20 chars; tunes of ~400 chars),
so slots finish at different times and refill as they do with a trained model.

    python bench/generation.py                       # seed preset, B = 1, 64, 256, 1024
    python bench/generation.py --quick               # small preset, < 1 minute (CI smoke)
    python bench/generation.py --batches 1024 --steps-per-call 16,32,64 --jit both

Each config is measured without and then with the bar tracker (`common.lstm.bar_tracker`, one NumPy
call per step for all slots), in adjacent rows; "× off" is the tracker row's chars/s over the
row without it, and the target is ≥ 85 % at B ≥ 1,024 (--bar-tracker off|on to measure one).
"""

from __future__ import annotations

import os

# TensorFlow's C++ start-up chatter would bury the table; set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import math
import platform
import string
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, get_args

import keras
import numpy as np
import tensorflow as tf

from common.abc.notation import split_tunes
from common.abc.vocab import Vocab
from common.errors import CancelledError
from common.lstm.music_rules import DEFAULT_RULES, MusicRules, learn_music_rules
from common.lstm.network import HEAD_LAYER, build_model
from common.lstm.sampler import Sampler
from common.lstm.sampling import SamplingRun, TuneRequest
from common.params import SamplerPrecision, SamplingParams
from common.presets import PRESETS

TARGET_RATIO = 2_000.0
TARGET_MATMUL_SHARE = 0.85
TARGET_BF16_SPEEDUP = 3.0
TARGET_MIN_BATCH = 1024
TARGET_TRACKER_SHARE = 0.85
MEASURED_STEPS = 320  # per config, unless --calls says otherwise

# The context the predict loop starts from: a full window of real ABC (a traditional jig).
CONTEXT = (
    "X:1\nT:The Kesh\nR:jig\nM:6/8\nL:1/8\nK:G\n"
    "|:GAG GAB|ABA ABd|edd gdd|edB dBA|GAG GAB|ABA ABd|edd gdB|AGF G3:|\n"
    "|:BAB dBd|ege dBA|BAB dBG|ABA AGA|BAB dBd|ege dBd|gfg aga|bgf g3:|\n"
)
# Newline share of the head's output: real ABC has a line of ~20-70 chars, and a tune ends at a
# blank line, so P(stop) per char ≈ p·(p + P(X)) ≈ 1/400 for p ≈ 0.045.
NEWLINE_SHARE = 0.045

LEGEND = """\
bars     the bar tracker masks each step (on) or not (off); × off: chars/s over the off row
prec     sampler precision (f32, bf16: 16-bit matmul inputs, float32 state); × f32: chars/s over
         the float32 row of the same B; matmul and %mm use a matmul in the same dtype
steps    steps per compiled call          calls, chars, s  measured calls, chars written, seconds
chars/s  chars / s of whole SamplingRun iterations (best: the fastest call)
loop     chars/s of the predict loop, timed between this row's calls (off their clock)
× loop   chars/s / loop
GFLOP/s  chars/s × step FLOPs            mod-eq  chars/s × model-equivalent FLOPs
matmul   plain tf.matmul [B, units]·[units, 4·units], timed between this row's calls (off
         their clock): mean GFLOP/s (best: the fastest rep)
%mm      GFLOP/s / matmul (best: best call / best rep)
graph    share of the time inside the compiled call (the rest is Python: queue, seeds, tunes)
tunes    tunes finished (and slots refilled) during the measured calls
queue    the queue handed to each call: shrank from call to call (as in a real batch) or fixed
         (--full-queue; XLA compiles once per queue length)
load     1-min load average after the row (2 = both cores busy)"""


@dataclass(frozen=True)
class Flops:
    """FLOPs per generated char (multiply-add = 2); gate element-wise ops are not counted."""

    vocab: int
    embedding: int
    units: int

    @property
    def recurrent(self) -> int:
        return 2 * self.units * 4 * self.units

    @property
    def head(self) -> int:
        return 2 * self.units * self.vocab

    @property
    def step(self) -> int:
        """What the sampler's step does: gather(E·K) + h·R + head."""
        return self.recurrent + self.head

    @property
    def model_equivalent(self) -> int:
        """The original Embedding→LSTM step: [x_emb, h]·[K; R] with (E + U)×4U, + head."""
        return 2 * (self.embedding + self.units) * 4 * self.units + self.head

    def main_matmul(self, batch: int) -> int:
        return batch * self.recurrent


class PredictLoop:
    """The original recipe's generator, timed char by char with a full window: predict over the
    last `window` chars, renormalise, draw; one ``model.predict`` per character.

    It starts from `window` chars of real ABC, so every char costs the recipe's steady state
    (from a short primer the first chars would run over shorter, faster windows).
    """

    def __init__(self, model: keras.Model, vocab: Vocab, *, window: int, seed: int) -> None:
        self.window = window
        self._model = model
        self._rng = np.random.default_rng(seed)
        context = (CONTEXT * (window // len(CONTEXT) + 1))[-window:]
        self._ids = list(vocab.encode(context))
        self.char_seconds: list[float] = []
        self._one_char()  # traces the predict function

    def _one_char(self) -> None:
        window = np.asarray([self._ids[-self.window :]], np.int32)
        probs = self._model.predict(window, verbose=0)[0, -1]
        probs = np.asarray(probs, np.float64)
        probs /= probs.sum()
        self._ids.append(int(np.argmax(self._rng.multinomial(1, probs))))

    def measure(self, chars: int) -> None:
        for _ in range(chars):
            started = time.perf_counter()
            self._one_char()
            self.char_seconds.append(time.perf_counter() - started)

    @property
    def chars_per_s(self) -> float:
        return rate(self.char_seconds)

    @property
    def best_chars_per_s(self) -> float:
        return 1 / min(self.char_seconds)


def matmul_dtype(precision: str) -> str:
    """The dtype the sampler's h·R runs in under `precision` (see common.lstm.sampler)."""
    return {"float32": "float32", "bfloat16": "bfloat16"}.get(precision, "float16")


def rate(char_seconds: list[float]) -> float:
    """Chars/s of a list of per-char times."""
    return len(char_seconds) / sum(char_seconds)


class Matmul:
    """A plain ``tf.matmul`` [batch, units] · [units, 4·units] in the sampler's matmul dtype,
    timed rep by rep."""

    def __init__(self, batch: int, units: int, flops: Flops, dtype: str = "float32") -> None:
        self.flops = flops.main_matmul(batch)
        self.dtype = dtype
        self._a = tf.cast(tf.random.normal([batch, units], seed=1), dtype)
        self._w = tf.cast(tf.random.normal([units, 4 * units], seed=2), dtype)
        tf.matmul(self._a, self._w)  # warm-up (thread pools, oneDNN primitives)
        self.rep_seconds: list[float] = []

    def measure(self, min_seconds: float, min_reps: int = 2) -> None:
        done = 0
        spent = 0.0
        while done < min_reps or spent < min_seconds:
            started = time.perf_counter()
            tf.matmul(self._a, self._w)  # eager CPU ops are synchronous
            elapsed = time.perf_counter() - started
            self.rep_seconds.append(elapsed)
            done += 1
            spent += elapsed

    @property
    def mean_gflops(self) -> float:
        return len(self.rep_seconds) * self.flops / sum(self.rep_seconds) / 1e9

    @property
    def best_gflops(self) -> float:
        return self.flops / min(self.rep_seconds) / 1e9


@dataclass
class SamplerResult:
    batch: int
    steps_per_call: int
    jit: bool
    calls: int
    requests: int
    precision: str = "float32"
    bar_tracker: bool = False
    warmup_seconds: float = 0.0
    steps: int = 0
    chars: int = 0
    seconds: float = 0.0
    graph_seconds: float = 0.0
    call_seconds: list[float] = field(default_factory=list)
    call_chars: list[int] = field(default_factory=list)
    tunes: int = 0
    loop_char_seconds: list[float] = field(default_factory=list)
    queue_ran_dry: bool = False
    queue_shrank: bool = True
    load: float = 0.0
    error: str | None = None

    @property
    def chars_per_s(self) -> float:
        return self.chars / self.seconds if self.seconds > 0 else 0.0

    @property
    def best_chars_per_s(self) -> float:
        rates = [n / t for n, t in zip(self.call_chars, self.call_seconds, strict=True) if t > 0]
        return max(rates, default=0.0)


@dataclass(frozen=True)
class _Mark:
    ended: float  # the previous iteration ended
    resumed: float  # the next iteration starts (after the baselines ran)
    chars: int
    graph_seconds: float
    finished: int


class _Meter:
    """Marks each boundary between compiled calls of a `SamplingRun`, and runs the baselines there.

    `SamplingRun` calls ``should_stop`` once per iteration, after the previous call's tunes have
    been collected and handed out and before the next call is prepared: from one mark to the
    next is one whole iteration. Between measured calls `between` runs off the clock — the
    reference matmul and one char of the predict loop — so that they share the machine with the
    same neighbours as the calls they are compared with: on a shared machine that matters more
    than anything else. After the warm-up call and ``calls`` measured calls it stops the run.
    """

    def __init__(self, calls: int, between: Callable[[], None]) -> None:
        self.total_calls = 1 + calls
        self.marks: list[_Mark] = []
        self.run: SamplingRun | None = None
        self.finished = 0
        self._between = between

    def should_stop(self) -> bool:
        assert self.run is not None
        ended = time.perf_counter()
        if self.marks:  # not before the warm-up call: that one is not compared
            self._between()
        run = self.run
        mark = _Mark(ended, time.perf_counter(), run.chars, run.seconds, self.finished)
        self.marks.append(mark)
        return len(self.marks) > self.total_calls

    @property
    def measuring(self) -> bool:
        """True while a measured (not warm-up) call's tunes are handed out."""
        return len(self.marks) >= 2


def make_vocab() -> Vocab:
    chars = "\n" + "".join(c for c in string.printable if c.isprintable())
    return Vocab(tuple(sorted(chars)))


def make_model(vocab: Vocab, embedding: int, units: int, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = build_model(len(vocab), embedding, units)
    head = model.get_layer(HEAD_LAYER)
    bias = np.zeros(len(vocab), np.float32)
    others = len(vocab) - 1
    bias[vocab.id_of("\n")] = math.log(others * NEWLINE_SHARE / (1 - NEWLINE_SHARE))
    head.bias.assign(bias)
    return model


def requests_needed(batch: int, steps_per_call: int, calls: int, *, full_queue: bool) -> int:
    """Enough queued tunes that no slot goes idle during the measured calls.

    Tunes here average ~400 chars; assume 100 to stay clear of an empty queue. With
    `full_queue`, also keep B × steps-per-call tunes queued (the most one call is handed), so
    every call gets a queue of the same length.
    """
    slot_steps = (1 + calls) * steps_per_call * batch
    consumed = batch + math.ceil(slot_steps / 100) + 8
    if full_queue:
        return consumed + batch * steps_per_call
    return max(3 * batch, consumed)


def measure_sampler(
    model: keras.Model,
    vocab: Vocab,
    *,
    batch: int,
    steps_per_call: int,
    jit: bool,
    calls: int,
    max_chars: int,
    seed: int,
    between: Callable[[], None],
    full_queue: bool = False,
    precision: SamplerPrecision = "float32",
    bar_tracker: bool = False,
    music: MusicRules | None = DEFAULT_RULES,
) -> SamplerResult:
    requests = requests_needed(batch, steps_per_call, calls, full_queue=full_queue)
    result = SamplerResult(batch, steps_per_call, jit, calls, requests, precision, bar_tracker)
    sampler = Sampler(
        model,
        vocab,
        batch_size=batch,
        steps_per_call=steps_per_call,
        jit_compile=jit,
        precision=precision,
        music=music,
    )
    meter = _Meter(calls, between)
    run = sampler.start(
        SamplingParams(
            temperature=1.0, top_k=0, max_chars=max_chars, seed=seed, bar_tracker=bar_tracker
        ),
        should_stop=meter.should_stop,
    )
    meter.run = run
    for index in range(requests):
        run.submit(TuneRequest(index))
    try:
        for _tune in run:
            meter.finished += 1
            result.tunes += int(meter.measuring)
    except CancelledError:
        pass
    if len(meter.marks) != meter.total_calls + 1:
        raise RuntimeError(f"the run ended after {len(meter.marks) - 1} calls, expected more")
    marks = meter.marks
    result.warmup_seconds = marks[1].ended - marks[0].resumed
    result.call_seconds = [b.ended - a.resumed for a, b in pairwise(marks[1:])]
    result.call_chars = [b.chars - a.chars for a, b in pairwise(marks[1:])]
    result.seconds = sum(result.call_seconds)
    result.chars = sum(result.call_chars)
    result.graph_seconds = marks[-1].graph_seconds - marks[1].graph_seconds
    result.steps = calls * steps_per_call
    finished = marks[-1].finished
    # Still queued at the end ⇔ queued all along (the queue only shrinks) ⇔ no slot went idle.
    result.queue_ran_dry = requests - finished <= batch
    result.queue_shrank = requests - finished - batch < batch * steps_per_call
    return result


def parse_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_precisions(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in get_args(SamplerPrecision)]
    if bad or not values:
        raise argparse.ArgumentTypeError(
            f"precisions are {', '.join(get_args(SamplerPrecision))}: {text}"
        )
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Chars/s of the original predict loop vs the batched Sampler, side by side."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small preset, 2 measured calls of 8 steps, 3 predict chars: < 1 minute (CI smoke)",
    )
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), help="default: seed (small if --quick)"
    )
    parser.add_argument(
        "--batches", type=parse_ints, default=[1, 64, 256, 1024], help="default: 1,64,256,1024"
    )
    parser.add_argument(
        "--steps-per-call",
        type=parse_ints,
        help="steps per compiled call; a comma list measures each (default: 32, 8 if --quick)",
    )
    parser.add_argument(
        "--jit",
        nargs="?",
        const="on",
        default="off",
        choices=["off", "on", "both"],
        help="XLA-compile the block: --jit (on), --jit both (measure with and without)",
    )
    parser.add_argument(
        "--calls",
        type=int,
        help=f"measured calls per config (default: enough for ~{MEASURED_STEPS} steps, ≥ 2)",
    )
    parser.add_argument("--max-chars", type=int, default=1500, help="per tune (default 1500)")
    parser.add_argument(
        "--predict-chars",
        type=int,
        help="predict-loop chars timed before the sampler (default 5, quick 3)",
    )
    parser.add_argument("--window", type=int, default=100, help="predict loop window (100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--full-queue",
        action="store_true",
        help="queue ≥ B × steps-per-call tunes so each call gets a queue of the same length "
        "(XLA compiles once per shape; by default the queue shrinks as tunes start)",
    )
    parser.add_argument(
        "--precision",
        type=parse_precisions,
        default=["float32", "bfloat16"],
        help="sampler precisions to measure, comma list (default float32,bfloat16)",
    )
    parser.add_argument(
        "--bar-tracker",
        choices=["off", "on", "both"],
        default="both",
        help="sample without and/or with the bar tracker (default both, in adjacent rows)",
    )
    parser.add_argument(
        "--music-rules",
        type=Path,
        help="a corpus's train.txt: the tracker's music rules and repeat plans learned from it "
        "(default: O'Neill's limits without plans, so no bar is copied)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead")
    args = parser.parse_args(argv)
    args.preset = args.preset or ("small" if args.quick else "seed")
    args.steps_per_call = args.steps_per_call or ([8] if args.quick else [32])
    args.predict_chars = args.predict_chars or (3 if args.quick else 5)
    if args.calls is not None and args.calls < 1:
        parser.error("--calls must be ≥ 1")
    if args.predict_chars < 1 or args.window < 1 or args.max_chars < 2:
        parser.error("--predict-chars and --window must be ≥ 1, --max-chars ≥ 2")
    return args


def calls_for(args: argparse.Namespace, steps_per_call: int) -> int:
    """Measured calls: as asked, else 2 (quick) or enough for ~MEASURED_STEPS steps."""
    if args.calls is not None:
        return int(args.calls)
    if args.quick:
        return 2
    return max(2, round(MEASURED_STEPS / steps_per_call))


def progress(message: str) -> None:
    print(f"… {message}", file=sys.stderr, flush=True)


def load() -> float:
    return os.getloadavg()[0]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preset = PRESETS[args.preset]
    vocab = make_vocab()
    flops = Flops(len(vocab), preset.embedding_dim, preset.units)
    matmul_seconds = 0.02 if args.quick else 0.1  # per gap between two calls
    jits = {"off": [False], "on": [True], "both": [False, True]}[args.jit]
    load_start = load()
    started = time.perf_counter()

    music = DEFAULT_RULES
    if args.music_rules is not None:
        progress(f"learning the music rules and repeat plans of {args.music_rules}")
        tunes = list(split_tunes(args.music_rules.read_text(encoding="utf-8")))
        music = learn_music_rules(tunes)
        progress(f"  {len(music.plans)} plans")
    progress(f"building the {preset.name} model (random weights), vocab {len(vocab)}")
    model = make_model(vocab, preset.embedding_dim, preset.units, args.seed)
    progress(f"original predict loop: {args.predict_chars} chars, window {args.window}")
    loop = PredictLoop(model, vocab, window=args.window, seed=args.seed)
    loop.measure(args.predict_chars)
    progress(f"  {loop.chars_per_s:.2f} chars/s")

    rows: list[tuple[SamplerResult, Matmul]] = []
    trackers = {"off": [False], "on": [True], "both": [False, True]}[args.bar_tracker]
    configs = [
        (batch, spc, jit, prec, tracked)
        for batch in args.batches
        for spc in args.steps_per_call
        for jit in jits
        for prec in args.precision
        for tracked in trackers
    ]
    for batch, spc, jit, prec, tracked in configs:
        calls = calls_for(args, spc)
        label = (
            f"B={batch} steps/call={spc} xla={'on' if jit and not tracked else 'off'} {prec} "
            f"bar tracker {'on' if tracked else 'off'}"
        )
        progress(f"{label}: {calls} calls + warm-up; matmul and predict loop between")
        mm = Matmul(batch, preset.units, flops, matmul_dtype(prec))
        first_char = len(loop.char_seconds)

        def between(mm: Matmul = mm) -> None:
            mm.measure(matmul_seconds)
            loop.measure(1)

        try:
            res = measure_sampler(
                model,
                vocab,
                batch=batch,
                steps_per_call=spc,
                jit=jit,
                calls=calls,
                max_chars=args.max_chars,
                seed=args.seed,
                between=between,
                full_queue=args.full_queue,
                precision=prec,
                bar_tracker=tracked,
                music=music,
            )
        except Exception as exc:  # a failed variant (e.g. XLA) is a result, not a crash
            res = SamplerResult(batch, spc, jit, calls, 0, prec, tracked)
            res.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
        if not mm.rep_seconds:
            mm.measure(matmul_seconds)
        res.loop_char_seconds = loop.char_seconds[first_char:]
        res.load = load()
        rows.append((res, mm))
        progress(f"  {res.chars_per_s:,.0f} chars/s" if not res.error else res.error)

    report = build_report(args, preset.name, vocab, flops, loop, rows)
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    report["machine"]["load_start"] = load_start
    report["machine"]["load_end"] = load()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, flops, loop)
    return 0


def build_report(
    args: argparse.Namespace,
    preset: str,
    vocab: Vocab,
    flops: Flops,
    loop: PredictLoop,
    rows: list[tuple[SamplerResult, Matmul]],
) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for r, mm in rows:
        row = asdict(r)
        cps, best = r.chars_per_s, r.best_chars_per_s
        row.update(
            chars_per_s=cps,
            best_call_chars_per_s=best,
            loop_chars_per_s=rate(r.loop_char_seconds or loop.char_seconds),
            ratio_to_loop=cps / rate(r.loop_char_seconds or loop.char_seconds),
            graph_share=r.graph_seconds / r.seconds if r.seconds else 0.0,
            step_gflops=cps * flops.step / 1e9,
            best_step_gflops=best * flops.step / 1e9,
            model_equivalent_gflops=cps * flops.model_equivalent / 1e9,
            matmul_gflops=mm.mean_gflops,
            matmul_best_gflops=mm.best_gflops,
            matmul_rep_seconds=mm.rep_seconds,
            matmul_share=cps * flops.step / 1e9 / mm.mean_gflops,
            best_matmul_share=best * flops.step / 1e9 / mm.best_gflops,
        )
        out.append(row)
    ok = [row for row in out if not row["error"]]
    # Same batch, steps, XLA and tracker in float32: the baseline of the precision column.
    f32 = {
        (row["batch"], row["steps_per_call"], row["jit"], row["bar_tracker"]): row["chars_per_s"]
        for row in ok
        if row["precision"] == "float32"
    }
    # Same config without the tracker: the baseline of the tracker column.
    untracked = {
        (row["batch"], row["steps_per_call"], row["jit"], row["precision"]): row["chars_per_s"]
        for row in ok
        if not row["bar_tracker"]
    }
    for row in out:
        base = f32.get((row["batch"], row["steps_per_call"], row["jit"], row["bar_tracker"]))
        row["ratio_to_float32"] = row["chars_per_s"] / base if base and not row["error"] else None
        off = untracked.get((row["batch"], row["steps_per_call"], row["jit"], row["precision"]))
        row["ratio_to_untracked"] = (
            row["chars_per_s"] / off if off and row["bar_tracker"] and not row["error"] else None
        )
    tracked = [
        row
        for row in ok
        if row["batch"] >= TARGET_MIN_BATCH and row["ratio_to_untracked"] is not None
    ]
    tracked_worst = min(tracked, key=lambda row: row["ratio_to_untracked"], default=None)
    ok = [row for row in ok if not row["bar_tracker"]]  # the other targets are without it
    best_row = max(ok, key=lambda row: row["ratio_to_loop"], default=None)
    big = [row for row in ok if row["batch"] >= TARGET_MIN_BATCH and row["precision"] == "float32"]
    big_best = max(big, key=lambda row: row["matmul_share"], default=None)
    bf16 = [
        row
        for row in ok
        if row["batch"] >= TARGET_MIN_BATCH
        and row["precision"] == "bfloat16"
        and row["ratio_to_float32"] is not None
    ]
    bf16_best = max(bf16, key=lambda row: row["ratio_to_float32"], default=None)
    return {
        "preset": preset,
        "units": flops.units,
        "embedding_dim": flops.embedding,
        "vocab_size": len(vocab),
        "max_chars": args.max_chars,
        "settings": dict(vars(args)),
        "machine": {
            "cpus": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            "processor": platform.processor() or platform.machine(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "devices": [d.name for d in tf.config.list_logical_devices()],
        },
        "flops_per_char": {
            "recurrent": flops.recurrent,
            "head": flops.head,
            "step": flops.step,
            "model_equivalent": flops.model_equivalent,
        },
        "predict_loop": {
            "window": loop.window,
            "char_seconds": loop.char_seconds,
            "chars_per_s": loop.chars_per_s,
            "best_chars_per_s": loop.best_chars_per_s,
        },
        "sampler": out,
        "targets": {
            "ratio": {
                "target": TARGET_RATIO,
                "batch": best_row["batch"] if best_row else None,
                "value": best_row["ratio_to_loop"] if best_row else None,
                "met": bool(best_row and best_row["ratio_to_loop"] >= TARGET_RATIO),
            },
            "matmul_share": {
                "target": TARGET_MATMUL_SHARE,
                "min_batch": TARGET_MIN_BATCH,
                "batch": big_best["batch"] if big_best else None,
                "value": big_best["matmul_share"] if big_best else None,
                "best_vs_best": big_best["best_matmul_share"] if big_best else None,
                "met": bool(big_best and big_best["matmul_share"] >= TARGET_MATMUL_SHARE),
            },
            "bf16_speedup": {
                "target": TARGET_BF16_SPEEDUP,
                "min_batch": TARGET_MIN_BATCH,
                "batch": bf16_best["batch"] if bf16_best else None,
                "value": bf16_best["ratio_to_float32"] if bf16_best else None,
                "met": bool(bf16_best and bf16_best["ratio_to_float32"] >= TARGET_BF16_SPEEDUP),
            },
            "bar_tracker": {
                "target": TARGET_TRACKER_SHARE,
                "min_batch": TARGET_MIN_BATCH,
                "batch": tracked_worst["batch"] if tracked_worst else None,
                "precision": tracked_worst["precision"] if tracked_worst else None,
                "value": tracked_worst["ratio_to_untracked"] if tracked_worst else None,
                "met": bool(
                    tracked_worst and tracked_worst["ratio_to_untracked"] >= TARGET_TRACKER_SHARE
                ),
            },
        },
    }


def print_report(report: dict[str, Any], flops: Flops, loop: PredictLoop) -> None:
    m = report["machine"]
    print(
        f"tunebatch generation benchmark — preset {report['preset']} (embedding "
        f"{flops.embedding}, units {flops.units}, vocab {flops.vocab}), random weights"
    )
    print(
        f"machine: {m['cpus_usable']}/{m['cpus']} CPUs, {m['processor']}, TF {m['tensorflow']}, "
        f"Keras {m['keras']}, {', '.join(m['devices'])}; 1-min load {m['load_start']:.1f} → "
        f"{m['load_end']:.1f}; whole run {report['seconds_total']:.0f} s"
    )
    print(
        f"FLOPs per char: step {flops.step / 1e6:.2f} M (h·R {flops.recurrent / 1e6:.2f} M + "
        f"head {flops.head / 1e6:.2f} M; E·K is a gather) · model-equivalent "
        f"{flops.model_equivalent / 1e6:.2f} M ((E+U)×4U input matmul + head)"
    )
    print(
        f"sampler: T=1, top-k off, max {report['max_chars']} chars; tunes end at a blank line "
        "(~1 char in 400, as in real ABC), so slots finish and refill from the first step; "
        "the whole SamplingRun iteration is timed, 1 warm-up call (tracing) discarded"
    )
    print()
    print(
        f"original predict loop (window {loop.window}; {len(loop.char_seconds)} chars after 1 "
        f"warm-up: {report['settings']['predict_chars']} first, then 1 between sampler calls): "
        f"{loop.chars_per_s:.2f} chars/s ({1 / loop.chars_per_s:.3f} s/char), best char "
        f"{loop.best_chars_per_s:.2f} chars/s"
    )
    print()
    head = (
        f"{'B':>5} {'steps':>5} {'xla':>3} {'prec':>4} {'× f32':>5} {'bars':>4} {'× off':>5} "
        f"{'calls':>5} {'chars':>8} "
        f"{'s':>6} "
        f"{'chars/s':>8} {'best':>6} {'loop':>5} {'× loop':>7} "
        f"{'GFLOP/s':>7} {'best':>5} {'mod-eq':>6} {'matmul':>6} {'best':>5} "
        f"{'%mm':>4} {'best':>4} {'graph':>5} {'tunes':>5} {'queue':>6} {'load':>4}"
    )
    print(head)
    print("-" * len(head))
    for row in report["sampler"]:
        xla = "on" if row["jit"] else "off"
        prec = {"float32": "f32", "bfloat16": "bf16", "mixed_float16": "f16"}[row["precision"]]
        xla = "off" if row["bar_tracker"] else xla  # the tracked block is never compiled
        vs = f"{row['ratio_to_float32']:>4.2f}×" if row["ratio_to_float32"] else f"{'-':>5}"
        off = row["ratio_to_untracked"]
        vs_off = f"{off:>5.0%}" if off else f"{'-':>5}"
        bars = "on" if row["bar_tracker"] else "off"
        lead = (
            f"{row['batch']:>5} {row['steps_per_call']:>5} {xla:>3} {prec:>4} {vs} {bars:>4} "
            f"{vs_off} {row['calls']:>5}"
        )
        if row["error"]:
            print(f"{lead}  failed: {row['error']}")
            continue
        dry = "  (queue ran dry: slots idle)" if row["queue_ran_dry"] else ""
        queue = "shrank" if row["queue_shrank"] else "fixed"
        print(
            f"{lead} {row['chars']:>8,} {row['seconds']:>6.1f} "
            f"{row['chars_per_s']:>8,.0f} {row['best_call_chars_per_s']:>6,.0f} "
            f"{row['loop_chars_per_s']:>5.2f} {row['ratio_to_loop']:>6,.0f}× "
            f"{row['step_gflops']:>7.1f} {row['best_step_gflops']:>5.0f} "
            f"{row['model_equivalent_gflops']:>6.1f} "
            f"{row['matmul_gflops']:>6.1f} {row['matmul_best_gflops']:>5.0f} "
            f"{row['matmul_share']:>4.0%} {row['best_matmul_share']:>4.0%} "
            f"{row['graph_share']:>5.0%} {row['tunes']:>5} {queue:>6} {row['load']:>4.1f}{dry}"
        )
    print()
    print(LEGEND)
    print()
    t = report["targets"]
    ratio, share = t["ratio"], t["matmul_share"]
    print("targets:")
    bars = t["bar_tracker"]
    if bars["value"] is None:
        print(
            f"  bar tracker ≥ {TARGET_TRACKER_SHARE:.0%} of the chars/s without it at "
            f"B ≥ {TARGET_MIN_BATCH}: not measured"
        )
    else:
        print(
            f"  bar tracker ≥ {TARGET_TRACKER_SHARE:.0%} of the chars/s without it at "
            f"B ≥ {TARGET_MIN_BATCH}: worst {bars['value']:.0%} (B={bars['batch']}, "
            f"{bars['precision']}) — {'met' if bars['met'] else 'NOT met'}"
        )
    if ratio["value"] is None:
        print(f"  ≥ {TARGET_RATIO:,.0f}× the predict loop at the best batch: no result")
    else:
        print(
            f"  ≥ {TARGET_RATIO:,.0f}× the predict loop at the best batch: "
            f"{ratio['value']:,.0f}× at B={ratio['batch']} — {'met' if ratio['met'] else 'NOT met'}"
        )
    speed = t["bf16_speedup"]
    if speed["value"] is None:
        print(
            f"  bf16 ≥ {TARGET_BF16_SPEEDUP:.0f}× float32 at B ≥ {TARGET_MIN_BATCH}: not measured"
        )
    else:
        print(
            f"  bf16 ≥ {TARGET_BF16_SPEEDUP:.0f}× float32 chars/s at B ≥ {TARGET_MIN_BATCH}: "
            f"{speed['value']:.2f}× at B={speed['batch']} — {'met' if speed['met'] else 'NOT met'}"
        )
    if share["value"] is None:
        print(
            f"  step at B ≥ {TARGET_MIN_BATCH} at ≥ {TARGET_MATMUL_SHARE:.0%} of the matmul: "
            f"not measured (no batch ≥ {TARGET_MIN_BATCH})"
        )
    else:
        print(
            f"  float32 step at B ≥ {TARGET_MIN_BATCH} at ≥ {TARGET_MATMUL_SHARE:.0%} of the "
            "matmul: "
            f"{share['value']:.0%} at B={share['batch']} (best call vs best rep "
            f"{share['best_vs_best']:.0%}) — {'met' if share['met'] else 'NOT met'}"
        )


if __name__ == "__main__":
    sys.exit(main())
