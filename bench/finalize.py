"""The quality report of a finished batch: from the tune records vs. re-checking every tune.

Builds a batch of N stored tunes (the test corpus's tunes, repeated) on local disk with the
figures generation records, then times `common.jobs.finalize.batch_quality` against the same
report computed by reading and assessing every tune (8 threads), and checks the two are equal.
A third row adds the musicality figures against O'Neill's held-out tunes (imported from music21
into the same store; the reference is built once before the timing, as a store keeps it).

    python bench/finalize.py            # 1,000 tunes
    python bench/finalize.py --tunes 5000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.abc.corpus import import_corpus
from common.abc.notation import split_tunes
from common.jobs import finalize
from common.jobs.batches import tune_key
from common.quality.figures import TuneQuality, assess_tune, summarise
from common.quality.reference import load_reference
from common.schemas import QualityReport, TuneRecord, TuneStatus, new_batch_id, tune_id
from common.store.local import LocalStore

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "tiny_corpus.abc"


def make_batch(store: LocalStore, batch_id: str, count: int) -> list[TuneRecord]:
    texts = list(split_tunes(CORPUS.read_text(encoding="utf-8")))
    tunes = []
    for i in range(count):
        text = texts[i % len(texts)]
        q = assess_tune(text)
        store.put_bytes(tune_key(batch_id, tune_id(i), "abc"), text.encode())
        tunes.append(
            TuneRecord(
                batch_id=batch_id, tune_id=tune_id(i), index=i, status=TuneStatus.DONE, tries=1,
                tries_valid=1, tries_rhythm_ok=int(q.rhythm_ok), valid=True, similarity=0.1,
                chars=q.chars, rhythm_checked=q.rhythm_checked, rhythm_ok=q.rhythm_ok,
                bars=q.bars, wrong_bars=q.wrong_bars, two_part=q.two_part,
                melody_grams=len(q.fingerprint) if q.fingerprint is not None else 0, key=q.key,
            )
        )  # fmt: skip
    return tunes


def reassess(store: LocalStore, batch_id: str, tunes: list[TuneRecord]) -> QualityReport:
    """The baseline: every stored tune read and assessed again."""
    made = [t for t in tunes if t.tries and store.exists(tune_key(batch_id, t.tune_id, "abc"))]

    def assess(t: TuneRecord) -> TuneQuality:
        text = store.get_bytes(tune_key(batch_id, t.tune_id, "abc")).decode(errors="replace")
        q = assess_tune(text)
        q.valid, q.similarity, q.nearest_tune = t.valid, t.similarity, t.nearest_tune
        return q

    with ThreadPoolExecutor(max_workers=8) as pool:
        qualities = list(pool.map(assess, made))
    return summarise(
        qualities,
        threshold=0.5,
        tries=sum(t.tries for t in made),
        tries_valid=sum(t.tries_valid for t in made),
        tries_rhythm_ok=sum(t.tries_rhythm_ok for t in made),
    )


def best_of(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunes", type=int, default=1000, help="Tunes in the batch.")
    parser.add_argument("--runs", type=int, default=3, help="Timed runs each (best is shown).")
    args = parser.parse_args()
    store = LocalStore(Path(tempfile.mkdtemp(prefix="bench-finalize-")))
    batch_id = new_batch_id()
    tunes = make_batch(store, batch_id, args.tunes)
    baseline = best_of(args.runs, lambda: reassess(store, batch_id, tunes))
    recorded = best_of(args.runs, lambda: finalize.batch_quality(store, batch_id, tunes, 0.5))
    same = reassess(store, batch_id, tunes) == finalize.batch_quality(store, batch_id, tunes, 0.5)
    import_corpus(store, "oneills")
    load_reference(store, "oneills")
    musical = best_of(
        args.runs,
        lambda: finalize.batch_quality(store, batch_id, tunes, 0.5, reference="oneills"),
    )
    print(f"quality report of {args.tunes} tunes (best of {args.runs})")
    print(f"  re-assess every tune (baseline)  {baseline:7.2f} s")
    print(f"  from the tune records            {recorded:7.2f} s  ({baseline / recorded:.1f}x)")
    print(f"  ... and musicality               {musical:7.2f} s  ({baseline / musical:.1f}x)")
    print(f"  same report: {same}")


if __name__ == "__main__":
    main()
