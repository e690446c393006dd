"""Tune quality side by side: the training corpus next to generated batches, one checker for all.

Every row is measured the same way, by `common.quality.figures` with abc2midi's *full* output (run
here
without ``-silent``; any ``Error`` line makes a tune invalid) and the rhythm check:

* **valid**: abc2midi prints no ``Error`` line;
* **clean**: every bar fits the meter (`common.abc.rhythm`: pickups and their closing bars allowed);
* **a2m clean**: abc2midi prints no bar-length warning (stricter in places: it lengthens
  fermata notes, and counts pickups inside repeats differently);
* **bars ok**: share of all bars that fit (bar regularity);
* **2-part**: two parts of 8 bars (repeat written or not) or 16 bars written out;
* **near-copy**: melody similarity >= the threshold to a tune of the training corpus (for the
  corpus row: to another tune of the corpus);
* **diversity**: mean over pairs of the share of interval 5-grams the two tunes do not share;
* **music**: musicality, the mean overlap with held-out human tunes of ``--reference`` over the
  features of `common.quality.musicality` (1 = like them; ``bench/musicality.py`` shows every
  feature); **tonic end**: share of tunes whose last note is the tonic; **rep bars**: share of
  bars that repeat an earlier bar.

Rows (any number, in the order given):

    python bench/quality.py                                 # the training corpus (O'Neill's)
    python bench/quality.py --corpus oneills --corpus all   # corpora: imported name or bundled
    python bench/quality.py --batch b2026...  --batch DIR   # batches: an id or a folder of .abc
    python bench/quality.py --file tunes.abc
    python bench/quality.py --model latest --temperatures 0.8,1.0 --count 200
                                                            # generates raw (--any) and gated
                                                            # batches with the model (TensorFlow)
    python bench/quality.py --calibrate                     # the copy check's threshold, measured

Corpora and models are looked up in the configured store (``TUNEBATCH_DATA_DIR``); a bundled
collection that is not imported is read from music21 and cleaned as an import would (without
the ``--valid-only`` filter, so its valid column says how much of it abc2midi accepts).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common.abc import notation as abc_notation
from common.abc.corpus import BUNDLED, NUMBERED, bundled_files, clean_tunes, read_abc_file
from common.params import NEAR_COPY_THRESHOLD
from common.quality.figures import TuneQuality, assess_texts, key_spread, summarise
from common.quality.musicality import tune_features
from common.quality.overlap import Reference
from common.quality.reference import reference_and_human, score
from common.quality.similarity import MelodyIndex, fingerprint
from common.schemas import QualityReport

COLUMNS = ["set", "tunes", "valid", "clean", "a2m clean", "bars ok", "2-part", "near-copy",
           "diversity", "bars", "raw valid", "raw clean", "music", "tonic end", "rep bars",
           "keys"]  # fmt: skip


#: Tunes abc2midi warned about a bar's length ("Bar 5 has 7 time units while the time signature
#: has 8"), by text: the "clean" column, abc2midi's own view of rhythm, shown beside our rhythm
#: check so the two can be compared.
BAR_WARNINGS: dict[str, bool] = {}


def abc2midi_full(tune: str) -> tuple[bool, list[str]]:
    """abc2midi's verdict from its whole output: ok when no line starts with ``Error``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tune.abc"
        path.write_text(tune, encoding="utf-8")
        try:
            out = subprocess.run(
                ["abc2midi", str(path), "-o", str(Path(tmp) / "tune.mid")],
                capture_output=True, timeout=30, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return False, ["abc2midi timed out"]
    text = (out.stdout + out.stderr).decode("utf-8", errors="replace")
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    BAR_WARNINGS[tune] = "time units while the time signature" in text
    return not errors, errors


def settings() -> Any:
    from common.settings import Settings

    return Settings()


def corpus_tunes(name: str) -> list[str]:
    """Train tunes of an imported corpus, else a bundled collection cleaned as on import."""
    from common.abc.corpus import load_corpus
    from common.errors import NotFoundError
    from common.store.open import make_store

    try:
        corpus = load_corpus(make_store(settings()), name)
        return list(abc_notation.split_tunes(corpus.train_text))
    except NotFoundError:
        if name not in BUNDLED:
            raise
    texts = (read_abc_file(p) for p in bundled_files(name))
    return clean_tunes(texts, numbered=name in NUMBERED).tunes


def batch_tunes(ref: str) -> list[str]:
    """The tunes of a batch folder (``t*.abc``) or of a batch id in the store."""
    path = Path(ref)
    if not path.is_dir():
        from common.store.open import make_store

        store = make_store(settings())
        local = store.local_path(f"batches/{ref}/manifest.json")
        if local is None or not local.parent.is_dir():
            keys = [k for k in store.list(f"batches/{ref}/") if k.endswith(".abc")]
            return [store.get_bytes(k).decode("utf-8", errors="replace") for k in sorted(keys)]
        path = local.parent
    return [p.read_text(errors="replace") for p in sorted(path.glob("*.abc"))]


#: The musicality reference of every row (set by main from --reference; None = no column).
REFERENCE: list[Reference] = []


def measure(
    label: str,
    tunes: list[str],
    index: MelodyIndex | None,
    *,
    self_index: bool = False,
    manifest: QualityReport | None = None,
) -> dict[str, Any]:
    """One row: every tune assessed, summed up (see the module docstring)."""
    start = time.perf_counter()
    assessed: list[TuneQuality] = assess_texts(
        tunes, checker=abc2midi_full, index=None if self_index else index,
        workers=os.cpu_count() or 1,
    )  # fmt: skip
    if self_index:
        own = MelodyIndex([str(i) for i in range(len(tunes))], [fingerprint(t) for t in tunes])
        for i, quality in enumerate(assessed):
            assert quality.fingerprint is not None
            match = own.nearest(quality.fingerprint, exclude=i)
            quality.similarity = match.similarity if match else None
    report = summarise(assessed)
    if REFERENCE:
        report.musicality = score([tune_features(t) for t in tunes], REFERENCE[0])
    a2m_clean = sum(1 for t in tunes if not BAR_WARNINGS.get(t, True)) / max(1, len(tunes))
    if manifest is not None:  # the generator's own count of its tries
        report.tries, report.raw_valid = manifest.tries, manifest.raw_valid
        report.raw_rhythm_ok = manifest.raw_rhythm_ok
    return {
        "set": label,
        **report.model_dump(),
        "a2m_clean": round(a2m_clean, 4),
        "seconds": round(time.perf_counter() - start, 1),
    }


def model_rows(args: argparse.Namespace, index: MelodyIndex | None) -> list[dict[str, Any]]:
    """Generate raw (--any) and gated batches with the model and measure them."""
    from common.jobs.context import Context
    from common.jobs.embedded import run_batch
    from common.lstm.registry import resolve_model
    from common.schemas import BatchSpec
    from common.state.local import LocalRecords
    from common.store.open import make_store

    s = settings()
    ctx = Context(settings=s, store=make_store(s), records=LocalRecords(s.data_dir / "records"))
    rows = []
    for model in args.model:
        record = resolve_model(ctx.store, model)
        for temperature in [float(t) for t in args.temperatures.split(",")]:
            for gated in (False, True):
                spec = BatchSpec(
                    count=args.count, model_id=record.id, temperature=temperature,
                    seed=args.seed, valid_only=gated, formats=("abc",),
                    chunk_size=s.chunk_size,
                )  # fmt: skip
                manifest = run_batch(ctx, spec)
                label = (f"{record.short_id} {record.preset} T={temperature} "
                         f"{'gated' if gated else 'raw'} ({manifest.batch_id})")  # fmt: skip
                tunes = batch_tunes(manifest.batch_id)
                rows.append(measure(label, tunes, index, manifest=manifest.quality))
                print(f"measured {label}", file=sys.stderr)
    return rows


def calibrate() -> dict[str, Any]:
    """The copy check's threshold: O'Neill's second transcriptions vs distinct tunes."""
    import numpy as np

    raw: list[tuple[str, str]] = []
    for path in bundled_files("oneills"):
        for tune in abc_notation.split_tunes(read_abc_file(path)):
            tune = abc_notation.normalise_tune(tune)
            raw.append((abc_notation.header_fields(tune).get("X", ""), tune))
    prints = [fingerprint(t) for _, t in raw]
    index = MelodyIndex([x for x, _ in raw], prints)
    by_number = collections.defaultdict(list)
    for i, (number, _) in enumerate(raw):
        by_number[number].append(i)
    same, other = [], []
    start = time.perf_counter()
    for i, (number, tune) in enumerate(raw):
        if not len(prints[i]):
            continue
        shares = index.counts(prints[i]) / len(prints[i])
        key = abc_notation.tune_body_key(tune)
        same += [shares[j] for j in by_number[number]
                 if j != i and abc_notation.tune_body_key(raw[j][1]) != key]  # fmt: skip
        shares[by_number[number]] = -1
        other.append(shares.max())
    per_query_ms = 1000 * (time.perf_counter() - start) / len(raw)
    s, o = np.array(same), np.array(other)
    return {
        "tunes": len(raw),
        "second_transcriptions": len(s),
        "same_median": float(np.median(s)),
        "same_at_threshold": float(np.mean(s >= NEAR_COPY_THRESHOLD)),
        "nearest_other_median": float(np.median(o)),
        "nearest_other_p90": float(np.percentile(o, 90)),
        "other_at_threshold": float(np.mean(o >= NEAR_COPY_THRESHOLD)),
        "threshold": NEAR_COPY_THRESHOLD,
        "ms_per_query": round(per_query_ms, 3),
    }


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{100 * value:.1f}%"
    return str(value)


def musical(report: dict[str, Any] | None) -> list[str]:
    """The musicality cells of a row: overall overlap, last note on the tonic, repeated bars."""
    if not report or report.get("overall") is None:
        return ["-", "-", "-"]
    figures = report["figures"]
    return [f"{report['overall']:.2f}", fmt(figures["final_tonic"]), fmt(figures["repeated_bars"])]


def print_table(rows: list[dict[str, Any]]) -> None:
    keys = ["valid", "rhythm_ok", "a2m_clean", "bar_regularity", "two_part", "near_copy",
            "diversity"]  # fmt: skip
    cells = [COLUMNS] + [
        [r["set"], str(r["tunes"]), *(fmt(r[k]) for k in keys), f"{r['mean_bars']:.1f}",
         fmt(r["raw_valid"]), fmt(r["raw_rhythm_ok"]), *musical(r.get("musicality")),
         key_spread(r.get("keys"), most=3)]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                        enumerate(zip(row, widths, strict=True))))  # fmt: skip
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", action="append", default=[], help="Corpus row (repeatable).")
    parser.add_argument("--batch", action="append", default=[], help="Batch id or folder.")
    parser.add_argument("--file", action="append", default=[], help="An .abc file.")
    parser.add_argument("--model", action="append", default=[], help="Model to generate with.")
    parser.add_argument("--temperatures", default="0.8,1.0")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--against", default="oneills", help="Training corpus for near-copies.")
    parser.add_argument(
        "--reference",
        default=None,
        help="Corpus whose held-out tunes score musicality (default: the setting, oneills; "
        "'' for none).",
    )
    parser.add_argument("--limit", type=int, default=0, help="At most N tunes per row (0 = all).")
    parser.add_argument("--calibrate", action="store_true", help="Measure the copy threshold.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.calibrate:
        result = calibrate()
        print(json.dumps(result, indent=2))
        return 0
    if not (args.corpus or args.batch or args.file or args.model):
        args.corpus = [args.against]
    training = corpus_tunes(args.against)
    index = MelodyIndex.from_tunes(training)
    reference = settings().musicality_reference if args.reference is None else args.reference
    if reference:
        from common.store.open import make_store

        REFERENCE.append(reference_and_human(make_store(settings()), [reference])[0])

    def limited(tunes: list[str]) -> list[str]:
        return tunes[: args.limit] if args.limit else tunes

    rows = []
    for name in args.corpus:
        tunes = training if name == args.against else corpus_tunes(name)
        rows.append(measure(f"corpus {name}", limited(tunes), index, self_index=True))
    for ref in args.batch:
        rows.append(measure(f"batch {ref}", limited(batch_tunes(ref)), index))
    for path in args.file:
        tunes = list(abc_notation.split_tunes(read_abc_file(Path(path))))
        rows.append(measure(f"file {path}", limited(tunes), index))
    if args.model:
        rows.extend(model_rows(args, index))
    if args.json:
        print(json.dumps({"against": args.against, "rows": rows}, indent=2))
    else:
        print(f"near-copies against {args.against} ({len(training)} tunes), "
              f"threshold {NEAR_COPY_THRESHOLD}")  # fmt: skip
        if REFERENCE:
            human = REFERENCE[0].baselines["human"]
            held = REFERENCE[0]
            print(f"music: overlap with {held.tunes} held-out {held.name} tunes (the other "
                  f"held-out half: {human['overall']}, tonic end {fmt(human['final_tonic'])}, "
                  f"rep bars {fmt(human['repeated_bars'])})")  # fmt: skip
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
