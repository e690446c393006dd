"""Training efficiency: compute needed to reach the original recipe's validation bits/char.

Trains, in one run and on the same corpus and preset size:

* ``original``  — windows of ``seq_len`` every 10 chars (each char seen ``seq_len / 10`` times an
  epoch), float32, the preset's epochs: its final validation bits/char is the **target**;
* ``sampled``   — windows every 10 chars as the original, but each epoch a fresh random tenth of
  them (each char about once an epoch, in every alignment), float32, a quarter of the batch;
* ``disjoint``  — non-overlapping windows (each char once an epoch), float32, a quarter of the
  batch (so as many optimizer updates per char as the original's);
* ``stateful``  — truncated back-propagation through time: a quarter of the batch in parallel
  text streams, LSTM state carried from one window to the next, float32;
* ``stateful-bf16`` (with ``--bf16``) — the same with the ``mixed_bfloat16`` Keras policy.

For each variant it prints the char positions processed and the wall time until validation
bits/char first reached the target (checked after every epoch), as a fraction of the original's.
Every variant is scored by the same float32 stateless scorer (see `common.lstm.training`).

    python bench/training.py          # small preset on O'Neill's (about an hour on 2 cores)
    python bench/training.py --quick  # tiny preset on the test corpus, under a minute
    python bench/training.py --throughput --preset seed   # chars/s per recipe x precision

``--whole-tunes`` is the comparison on the score the sampler lives by: the preset's own recipe
(non-overlapping windows of 100 chars, each from a zero state) against training on whole tunes
(``train_on=tunes``, tunes of similar length batched, padding masked) and on tune streams
(``train_on=streams``: truncated BPTT, state carried within a tune, zeroed at each tune start),
the same number of epochs
each (each sees every char once an epoch, so equal epochs are equal char positions), on the corpus
as ``producer corpus import --valid-only`` imports it, every variant scored by whole-tune
bits/char (each validation tune from a zero state at ``X:``, state carried to its end) and by
zero-state windowed bits/char:

    python bench/training.py --whole-tunes --epochs 4          # small preset, O'Neill's
    python bench/training.py --whole-tunes --quick             # tiny preset, test corpus
    python bench/training.py --whole-tunes --epochs 7 --transpose-copies 1 --only windows
                                           # key augmentation against windows trained as long

``--throughput`` trains nothing to the end: it times a few dozen optimizer steps of each recipe
(original windows at batch 128; the presets' non-overlapping windows and stateful TBPTT, both at
batch 32) in float32 and in each 16-bit
policy this machine runs, and prints char positions per second, side by side. It is what the
training-precision rule in `common.lstm.precision` is read from, on a CPU and on a GPU alike.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.abc.corpus import import_corpus, load_corpus
from common.lstm.network import build_model
from common.lstm.training import train
from common.lstm.windows import stream_dataset, window_dataset
from common.params import TrainOn
from common.presets import get_preset
from common.schemas import TrainSpec, new_run_id
from common.store.local import LocalStore

TEST_CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "tiny_corpus.abc"


@dataclass
class Variant:
    name: str
    window_step: int | None
    stateful: bool
    precision: str
    epochs: int
    batch_size: int | None = None
    learning_rate: float | None = None
    fraction: float | None = None
    train_on: TrainOn | None = None
    transpose_copies: int | None = None


@dataclass
class Result:
    variant: str
    epochs_run: int
    final_bits_per_char: float
    reached_at_epoch: int | None
    chars_to_target: int | None
    seconds_to_target: float | None
    chars_total: int
    seconds_total: float
    window_bits_per_char: float = math.nan


def run_variant(store: LocalStore, corpus: str, preset: str, v: Variant, target: float | None,
                max_chars: int | None) -> Result:  # fmt: skip
    spec = TrainSpec(
        corpus=corpus,
        preset=preset,
        epochs=v.epochs,
        window_step=v.window_step,
        stateful=v.stateful,
        precision=v.precision,  # type: ignore[arg-type]
        batch_size=v.batch_size,
        learning_rate=v.learning_rate,
        window_fraction=v.fraction,
        train_on=v.train_on,
        transpose_copies=v.transpose_copies,
        max_train_chars=max_chars,
    )
    record = train(store, spec, new_run_id())
    per_epoch = record.chars_processed // max(record.epochs, 1)
    chars = seconds = 0.0
    reached: tuple[int, int, float] | None = None
    for h in record.history:
        chars += per_epoch
        seconds += h.get("seconds", 0.0)
        if target is not None and reached is None and h["val_loss"] / math.log(2) <= target:
            reached = (int(h["epoch"]), int(chars), seconds)
    return Result(
        variant=v.name,
        epochs_run=record.epochs,
        final_bits_per_char=record.valid_bits_per_char or math.nan,
        reached_at_epoch=reached[0] if reached else None,
        chars_to_target=reached[1] if reached else None,
        seconds_to_target=reached[2] if reached else None,
        chars_total=int(chars),
        seconds_total=seconds,
        window_bits_per_char=record.valid_window_bits_per_char or math.nan,
    )


def throughput(store: LocalStore, corpus: str, preset: str, steps: int,
               policies: list[str]) -> list[dict[str, object]]:  # fmt: skip
    """Char positions per second of `steps` optimizer steps (after 3 untimed) per recipe."""
    import time

    import keras

    p = get_preset(preset)
    data = load_corpus(store, corpus)
    ids = data.vocab.encode(data.train_text)
    rows: list[dict[str, object]] = []
    # (name, batch, window step, stateful): the original recipe, the presets' 1-pass recipe
    # and stateful TBPTT at the same batch.
    recipes = (("original", 128, max(1, p.seq_len // 10), False),
               ("one-pass", 32, p.seq_len, False), ("stateful", 32, p.seq_len, True))  # fmt: skip
    for recipe, batch, step, stateful in recipes:
        for policy in policies:
            keras.utils.set_random_seed(0)
            model = build_model(
                len(data.vocab), p.embedding_dim, p.units,
                dtype_policy=None if policy == "float32" else policy,
                stateful_batch=batch if stateful else None,
            )  # fmt: skip
            model.compile(optimizer=keras.optimizers.Adam(1e-3),
                          loss=keras.losses.SparseCategoricalCrossentropy())  # fmt: skip
            if stateful:
                ds, _ = stream_dataset(ids, p.seq_len, batch)
            else:
                ds = window_dataset(ids, p.seq_len, step, batch, shuffle_seed=0)
            # Batches made before the clock starts: the optimizer steps alone are timed (timing
            # `fit` measured the input pipeline's start-up too, the same for every precision).
            batches = list(ds.repeat().take(steps + 3).as_numpy_iterator())
            for x, y in batches[:3]:
                model.train_on_batch(x, y)
            start = time.perf_counter()
            for x, y in batches[3:]:
                model.train_on_batch(x, y)
            seconds = time.perf_counter() - start
            chars = steps * batch * p.seq_len
            rows.append({"recipe": recipe, "batch": batch, "precision": policy, "steps": steps,
                         "seconds": seconds, "chars_per_s": chars / seconds})  # fmt: skip
            print(f"  {recipe} {policy}: {chars / seconds:,.0f} chars/s", file=sys.stderr)
    for row in rows:
        base = next(r for r in rows if r["recipe"] == row["recipe"] and r["precision"] == "float32")
        row["x_float32"] = float(row["chars_per_s"]) / float(base["chars_per_s"])  # type: ignore[arg-type]
    return rows


def original_from(store: LocalStore, corpus: str, preset: str, v: Variant, target: float,
                  seconds: float | None) -> Result:  # fmt: skip
    """The original's row from an earlier run's figures (--target, --original-seconds): its
    char positions follow from the corpus and the recipe."""
    from common.lstm.windows import window_starts

    p = get_preset(preset)
    data = load_corpus(store, corpus)
    ids = data.vocab.encode(data.train_text)
    chars = len(window_starts(len(ids), p.seq_len, v.window_step or 1)) * p.seq_len * v.epochs
    secs = seconds or math.nan
    return Result("original", v.epochs, target, v.epochs, chars, secs, chars, secs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny preset on the test corpus")
    parser.add_argument("--corpus", default="oneills")
    parser.add_argument("--preset", default="small")
    parser.add_argument(
        "--budget", type=float, default=0.24, help="compute cap per variant, x the original's"
    )
    parser.add_argument("--bf16", action="store_true", help="add a mixed_bfloat16 variant")
    parser.add_argument(
        "--learning-rate", type=float, default=None,
        help="Adam rate of the 1-pass variants (default 2x the original's)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", help="comma list of variants to run (besides the original)")
    parser.add_argument(
        "--target",
        type=float,
        default=None,
        help="the original's final bits/char from an earlier run: skip it",
    )
    parser.add_argument(
        "--original-seconds",
        type=float,
        default=None,
        help="with --target: the original's training seconds from that run",
    )
    parser.add_argument(
        "--throughput",
        action="store_true",
        help="time optimizer steps per recipe x precision instead",
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps (--throughput)")
    parser.add_argument(
        "--whole-tunes", action="store_true", help="windows vs whole tunes on the whole-tune score"
    )
    parser.add_argument("--epochs", type=int, default=4, help="epochs per variant (--whole-tunes)")
    parser.add_argument(
        "--tune-batch", type=int, default=None, help="tunes per step (--whole-tunes; preset's)"
    )
    parser.add_argument(
        "--transpose-copies", type=int, default=0,
        help="--whole-tunes: add windows with N transposed copies of each tune, and plain "
        "windows for (N+1)x the epochs (equal char positions)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.whole_tunes:
        run_whole_tunes(args)
        return
    if args.throughput:
        run_throughput(args)
        return
    source, preset = (str(TEST_CORPUS), "tiny") if args.quick else (args.corpus, args.preset)
    p = get_preset(preset)
    # The original recipe whatever the preset's own training settings: windows every 10 chars,
    # Adam at Keras' default 1e-3, batch 128, 5 epochs (3 in --quick).
    orig_step = max(1, p.seq_len // 10)
    orig_epochs = 5 if not args.quick else 3
    orig_batch, orig_lr = (128, 1e-3) if not args.quick else (32, 1e-2)
    overlap = p.seq_len // orig_step  # times each char is seen per original epoch
    budget_epochs = max(1, round(orig_epochs * overlap * args.budget))
    # Seeing each char once instead of `overlap` times leaves fewer optimizer updates per
    # epoch; a quarter of the batch gives them back at the same compute.
    small_batch = max(4, orig_batch // 4)
    lr = args.learning_rate or 2 * orig_lr
    variants = [
        Variant("original", orig_step, False, "float32", orig_epochs, orig_batch, orig_lr),
        Variant(
            "sampled", orig_step, False, "float32", budget_epochs, small_batch, lr, 1 / overlap
        ),
        Variant("disjoint", p.seq_len, False, "float32", budget_epochs, small_batch, lr),
        Variant("stateful", None, True, "float32", budget_epochs, small_batch, lr),
    ]
    if args.bf16:
        variants.append(
            Variant("stateful-bf16", None, True, "mixed_bfloat16", budget_epochs, small_batch, lr)
        )
    if args.only:
        keep = set(args.only.split(","))
        variants = [v for v in variants if v.name in keep or v.name == "original"]
    with tempfile.TemporaryDirectory(prefix="tunebatch-bench-") as tmp:
        store = LocalStore(Path(tmp))
        import_corpus(store, source, name="bench", valid_only=False)
        results: list[Result] = []
        target: float | None = args.target
        if target is not None:  # the original was measured before: its figures, not a rerun
            results.append(original_from(store, "bench", preset, variants[0], target,
                                         args.original_seconds))  # fmt: skip
            variants = variants[1:]
        for v in variants:
            print(f"training {v.name} ({v.epochs} epochs)...", file=sys.stderr, flush=True)
            r = run_variant(store, "bench", preset, v, target, None)
            if v.name == "original":
                target = r.final_bits_per_char
                r.reached_at_epoch, r.chars_to_target = r.epochs_run, r.chars_total
                r.seconds_to_target = r.seconds_total
            results.append(r)
    if args.json:
        print(json.dumps({"preset": preset, "target_bits_per_char": target,
                          "results": [asdict(r) for r in results]}, indent=2))  # fmt: skip
        return
    base = results[0]
    print(f"preset {preset}, corpus {source}; target = original recipe's final validation "
          f"{target:.3f} bits/char after {base.epochs_run} epochs")  # fmt: skip
    head = f"{'chars to target':>17}{'x original':>12}{'seconds':>10}{'x original':>12}"
    print(f"{'variant':<15}{'epochs':>7}{'final bpc':>11}{'reached at':>12}{head}")
    for r in results:
        if r.chars_to_target is None or base.chars_to_target is None:
            reach = f"{'not reached':>12}{'-':>17}{'-':>12}{'-':>10}{'-':>12}"
        else:
            frac_c = r.chars_to_target / base.chars_to_target
            frac_s = (r.seconds_to_target or 0) / (base.seconds_to_target or 1)
            when = f"epoch {r.reached_at_epoch}"
            reach = (
                f"{when:>12}{r.chars_to_target:>17,}{frac_c:>12.3f}"
                f"{r.seconds_to_target or 0:>10.0f}{frac_s:>12.3f}"
            )
        print(f"{r.variant:<15}{r.epochs_run:>7}{r.final_bits_per_char:>11.3f}{reach}")
    print("target: the same validation bits/char in <= 0.2x the original recipe's compute")


def run_whole_tunes(args: argparse.Namespace) -> None:
    from common.render import pipeline as render
    from common.settings import Settings

    source, preset = (str(TEST_CORPUS), "tiny") if args.quick else (args.corpus, args.preset)
    epochs = 2 if args.quick else args.epochs
    variants = [
        Variant("windows", get_preset(preset).seq_len, False, "float32", epochs,
                train_on=TrainOn.WINDOWS),
        Variant("tunes", None, False, "float32", epochs, batch_size=args.tune_batch,
                train_on=TrainOn.TUNES),
        Variant("streams", None, False, "float32", epochs, train_on=TrainOn.STREAMS),
    ]  # fmt: skip
    if args.only:
        variants = [v for v in variants if v.name in args.only.split(",")]
    if args.transpose_copies:
        # Key augmentation against the same windows trained as long: each tune in N other keys
        # for `epochs` epochs, and the plain windows for (N + 1) x `epochs`, equal char positions.
        n = args.transpose_copies
        step = get_preset(preset).seq_len
        variants += [
            Variant(f"keys+{n}", step, False, "float32", epochs, train_on=TrainOn.WINDOWS,
                    transpose_copies=n),
            Variant(f"windows x{n + 1}", step, False, "float32", epochs * (n + 1),
                    train_on=TrainOn.WINDOWS),
        ]  # fmt: skip
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="tunebatch-bench-") as tmp:
        store = LocalStore(Path(tmp))
        settings = Settings(data_dir=Path(tmp))
        import_corpus(store, source, name="bench", valid_only=True,
                      is_valid=lambda tune: render.check_abc(tune, settings).ok)  # fmt: skip
        for v in variants:
            print(f"training {v.name} ({v.epochs} epochs)...", file=sys.stderr, flush=True)
            results.append(run_variant(store, "bench", preset, v, None, None))
    if args.json:
        print(json.dumps({"preset": preset, "corpus": source,
                          "results": [asdict(r) for r in results]}, indent=2))  # fmt: skip
        return
    print(f"preset {preset}, corpus {source} (--valid-only), float32, {os.cpu_count()} CPUs; "
          "validation bits/char over whole tunes (zero state at X:, state carried) and over "
          "zero-state 100-char windows")  # fmt: skip
    print(f"{'variant':<10}{'epochs':>7}{'char positions':>16}{'whole-tune bpc':>16}"
          f"{'windowed bpc':>14}{'seconds':>9}")  # fmt: skip
    for r in results:
        print(f"{r.variant:<10}{r.epochs_run:>7}{r.chars_total:>16,}{r.final_bits_per_char:>16.3f}"
              f"{r.window_bits_per_char:>14.3f}{r.seconds_total:>9.0f}")  # fmt: skip


def run_throughput(args: argparse.Namespace) -> None:
    from common.lstm.precision import _gpu_capability

    source, preset = (str(TEST_CORPUS), "tiny") if args.quick else (args.corpus, args.preset)
    policies = ["float32", "mixed_bfloat16"]
    if _gpu_capability() is not None:
        policies.append("mixed_float16")
    with tempfile.TemporaryDirectory(prefix="tunebatch-bench-") as tmp:
        store = LocalStore(Path(tmp))
        import_corpus(store, source, name="bench", valid_only=False)
        rows = throughput(store, "bench", preset, args.steps, policies)
    device = "GPU" if _gpu_capability() is not None else f"CPU ({os.cpu_count()} cores)"
    if args.json:
        print(json.dumps({"preset": preset, "device": device, "rows": rows}, indent=2))
        return
    print(f"training throughput, preset {preset}, {device}, {args.steps} timed steps each")
    print(f"{'recipe':<10}{'batch':>6}{'precision':>16}{'chars/s':>12}{'x float32':>11}")
    for r in rows:
        print(f"{r['recipe']!s:<10}{r['batch']!s:>6}{r['precision']!s:>16}"
              f"{r['chars_per_s']:>12,.0f}{r['x_float32']:>11.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
