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

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import get_args

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.lstm.tf_logs import quiet_startup  # noqa: E402

quiet_startup()  # before TensorFlow loads: its start-up lines would bury the table

from bench.generation_baselines import (  # noqa: E402
    Flops,
    Matmul,
    PredictLoop,
    make_model,
    make_vocab,
    matmul_dtype,
)
from bench.generation_report import build_report, print_report  # noqa: E402
from bench.generation_sampler import SamplerResult, measure_sampler  # noqa: E402
from common.abc.notation import split_tunes  # noqa: E402
from common.lstm.music_rules import DEFAULT_RULES, learn_music_rules  # noqa: E402
from common.params import SamplerPrecision  # noqa: E402
from common.presets import PRESETS  # noqa: E402

MEASURED_STEPS = 320  # per config, unless --calls says otherwise


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


if __name__ == "__main__":
    sys.exit(main())
