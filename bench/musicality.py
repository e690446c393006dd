"""Musicality side by side: sets of tunes against held-out human tunes, with peers and controls.

Every column is scored by `common.quality.musicality` against one reference: half of the
validation tunes of the reference corpora (never trained on). The columns:

* each ``--abc FILE`` (a set of tunes: a batch's tunes joined, a sample file);
* **folk-rnn**: folk-rnn's 2015 samples (``../shared/peers/folkrnn_samples.abc``), the peer;
* **human**: the other half of the validation tunes: what a human tune scores (not 1.0: these
  are other tunes than the reference's);
* **bar-shuffled**: the human half with every bar swapped for a random bar of another tune
  (same meter, bar length and third, moved to the tune's tonic): human bars, no tunes;
* **random walk**: the human half's rhythms and forms with a random walk on the key's scale as
  the notes.

A measure worth using scores both controls clearly below the human column.

    python bench/musicality.py --data-dir /tmp/measure-data --reference oneills \\
        --abc batch1.abc --abc batch2.abc

One imported reference corpus is the stored reference manifests use (built on first use, see
`common.quality.reference`); a corpus that is not imported into ``--data-dir`` (or several) is
read from music21's bundled collection and split as an import would split it (the same tunes
land in validation; abc2midi's ``--valid-only`` filter is not applied, so there are a few more).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from common.abc import notation as abc_notation
from common.abc.corpus import read_abc_file
from common.quality.controls import bar_shuffled, random_walks
from common.quality.musicality import TuneFeatures, features, piece_of
from common.quality.overlap import Comparison, compare, overlap_table
from common.quality.reference import reference_and_human
from common.settings import Settings
from common.store.open import make_store

PEERS = Path(__file__).resolve().parents[1].parent / "shared" / "peers" / "folkrnn_samples.abc"


def file_tunes(path: Path) -> list[str]:
    """The tunes of an .abc file, or of every .abc file in a folder (a batch's ``t*.abc``)."""
    files = sorted(path.glob("*.abc")) if path.is_dir() else [path]
    return [t for f in files for t in abc_notation.split_tunes(read_abc_file(f))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--abc", action="append", default=[], help="An .abc file or a folder of them: a column."
    )
    parser.add_argument("--data-dir", help="TUNEBATCH_DATA_DIR holding the imported corpora.")
    parser.add_argument(
        "--reference", action="append", default=[], help="Reference corpus (default oneills)."
    )
    parser.add_argument("--peers", default=str(PEERS), help="folk-rnn's samples ('' = none).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the two controls.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.data_dir:  # before the first Settings() reads it
        os.environ["TUNEBATCH_DATA_DIR"] = args.data_dir
    names = args.reference or ["oneills"]
    start = time.perf_counter()
    reference, human_tunes = reference_and_human(make_store(Settings()), names)
    human_pieces = [piece_of(t) for t in human_tunes]
    sets: dict[str, list[TuneFeatures]] = {}
    for path in args.abc:
        sets[Path(path).name] = [features(piece_of(t)) for t in file_tunes(Path(path))]
    if args.peers and Path(args.peers).is_file():
        sets["folk-rnn"] = [features(piece_of(t)) for t in file_tunes(Path(args.peers))]
    sets["human"] = [features(p) for p in human_pieces]
    sets["bar-shuffled"] = [features(p) for p in bar_shuffled(human_pieces, args.seed)]
    sets["random walk"] = [features(p) for p in random_walks(human_pieces, args.seed)]
    comparisons: dict[str, Comparison] = {k: compare(v, reference) for k, v in sets.items()}
    seconds = time.perf_counter() - start
    if args.json:
        payload: dict[str, Any] = {
            "reference": reference.name,
            "reference_tunes": reference.tunes,
            "sets": {k: asdict(c) for k, c in comparisons.items()},
            "seconds": round(seconds, 1),
        }
        print(json.dumps(payload, indent=2, default=str))
        return 0
    print(
        f"reference: {reference.tunes} validation tunes of {reference.name} "
        f"(the other {len(human_tunes)} are the human column); {seconds:.1f} s"
    )
    rows = overlap_table(comparisons)
    header = ["", *comparisons]
    widths = [max(len(r[0]) for r in rows)] + [
        max(len(h), *(len(r[1][i]) for r in rows)) for i, h in enumerate(header[1:])
    ]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in
                    enumerate(zip(header, widths, strict=True))))  # fmt: skip
    print("  ".join("-" * w for w in widths))
    for label, cells in rows:
        print(label.ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells, widths[1:], strict=True)),
              sep="  ")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
