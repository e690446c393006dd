"""Accuracy of the low-precision sampler: a trained model's validation bits/char per precision.

Scores the validation text of the model's corpus with the sampler's own step function
(`Sampler.nats_per_char`, zero state per row as a sampled tune starts), so the figure is what
generation computes, not what the Keras model computes. The stated tolerance is 0.01 bits/char.

    python bench/precision.py --data-dir artifacts            # the latest model (after make demo)
    python bench/precision.py --data-dir artifacts --model 0fe3 --rows 512 --length 200
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.abc.corpus import load_corpus
from common.lstm.network import load_registered
from common.lstm.sampler import Sampler
from common.store.local import LocalStore

TOLERANCE_BITS = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("artifacts"))
    parser.add_argument("--model", default="latest", help="model id, prefix or 'latest'")
    parser.add_argument("--rows", type=int, default=256, help="validation segments scored")
    parser.add_argument("--length", type=int, default=200, help="chars per segment")
    parser.add_argument("--precision", default="float32,bfloat16,mixed_float16")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    store = LocalStore(args.data_dir)
    with tempfile.TemporaryDirectory() as cache:
        record, model, vocab = load_registered(store, args.model, Path(cache))
    text = load_corpus(store, record.corpus).valid_text
    ids = np.asarray([i for i in vocab.encode(text) if i >= 0], np.int32)
    usable = min(args.rows, len(ids) // args.length) * args.length
    segments = ids[:usable].reshape(-1, args.length)
    rows: list[dict[str, float | str]] = []
    for name in args.precision.split(","):
        sampler = Sampler(model, vocab, batch_size=len(segments), precision=name)
        start = time.perf_counter()
        bits = sampler.nats_per_char(segments) / math.log(2)
        rows.append({"precision": name, "bits_per_char": bits,
                     "seconds": time.perf_counter() - start})  # fmt: skip
    base = float(rows[0]["bits_per_char"])
    for row in rows:
        row["delta"] = float(row["bits_per_char"]) - base
    summary = {"model": record.id, "preset": record.preset, "corpus": record.corpus,
               "segments": f"{len(segments)} x {args.length}", "rows": rows}  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    where = f"the validation text of {record.corpus}: {summary['segments']} chars"
    print(f"model {record.id[:12]} ({record.preset}) on {where}, scored by the sampler's step")
    print(f"{'precision':<15}{'bits/char':>11}{'Δ vs ' + str(rows[0]['precision']):>16}{'s':>7}")
    for row in rows:
        print(f"{row['precision']!s:<15}{row['bits_per_char']:>11.5f}{row['delta']:>+16.5f}"
              f"{row['seconds']:>7.1f}")  # fmt: skip
    worst = max(abs(float(r["delta"])) for r in rows)
    verdict = "met" if worst <= TOLERANCE_BITS else "NOT met"
    print(f"target: |Δ| ≤ {TOLERANCE_BITS} bits/char — {verdict} (worst {worst:.5f})")


if __name__ == "__main__":
    main()
