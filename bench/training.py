"""Training efficiency: compute needed to reach the original recipe's validation bits/char.

Trains, in one run and on the same corpus and preset size:

* ``original``  — windows of ``seq_len`` every 10 chars (each char seen ``seq_len / 10`` times an
  epoch), float32, the preset's epochs: its final validation bits/char is the **target**;
* ``disjoint``  — non-overlapping windows (each char once an epoch), float32, a quarter of the
  batch (so as many optimizer updates per char as the original's);
* ``stateful``  — truncated back-propagation through time: a quarter of the batch in parallel
  text streams, LSTM state carried from one window to the next, float32;
* ``stateful-bf16`` (with ``--bf16``) — the same with the ``mixed_bfloat16`` Keras policy.

For each variant it prints the char positions processed and the wall time until validation
bits/char first reached the target (checked after every epoch), as a fraction of the original's.
Every variant is scored by the same float32 stateless scorer (see `common.training`).

    python bench/training.py          # small preset on O'Neill's (about an hour on 2 cores)
    python bench/training.py --quick  # tiny preset on the test corpus, under a minute
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

from common.corpus import import_corpus
from common.model import get_preset
from common.schemas import TrainSpec, new_run_id
from common.storage import LocalStore
from common.training import train

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
    )


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
    args = parser.parse_args()
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
        Variant("disjoint", p.seq_len, False, "float32", budget_epochs, small_batch, lr),
        Variant("stateful", None, True, "float32", budget_epochs, small_batch, lr),
    ]
    if args.bf16:
        variants.append(
            Variant("stateful-bf16", None, True, "mixed_bfloat16", budget_epochs, small_batch, lr)
        )
    with tempfile.TemporaryDirectory(prefix="tunebatch-bench-") as tmp:
        store = LocalStore(Path(tmp))
        import_corpus(store, source, name="bench", valid_only=False)
        results: list[Result] = []
        target: float | None = None
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


if __name__ == "__main__":
    main()
