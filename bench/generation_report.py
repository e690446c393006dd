"""The figures of `bench/generation.py`: the report's rows, its targets and its table."""

from __future__ import annotations

import argparse
import os
import platform
from dataclasses import asdict
from typing import Any

import keras
import tensorflow as tf

from bench.generation_baselines import Flops, Matmul, PredictLoop, rate
from bench.generation_sampler import SamplerResult
from common.abc.vocab import Vocab

TARGET_RATIO = 2_000.0
TARGET_MATMUL_SHARE = 0.85
TARGET_BF16_SPEEDUP = 3.0
TARGET_MIN_BATCH = 1024
TARGET_TRACKER_SHARE = 0.85

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
