"""Raw validity of sampled tunes: abc2midi's full verdict, with and without the bar tracker.

Samples N tunes from a registered model (no gate, no retries: what the sampler writes), runs the
real ``abc2midi tune.abc -o tune.mid`` on each WITHOUT ``-silent`` (which hides some ``Error``
lines) and prints, per tracker setting:

* valid: no ``Error`` line; clean: valid and no bar-length warning (abc2midi's "time units");
  truncated: the tune hit --max-chars before its end (the sampler cuts it), and the valid share
  of the others;
* bars of the meter's length, and two-part form (two sections of 8 bars, or 16 written out),
  by the independent count of `common.abc.rhythm`;
* each abc2midi error and warning kind with its count (line numbers and note names stripped).

Same model, seed and temperature give the same tunes, so runs before and after a change to the
tracker compare tune for tune.

    TUNEBATCH_DATA_DIR=/tmp/trk-data python bench/tune_validity.py --count 200
    python bench/tune_validity.py --data-dir /tmp/trk-data --bar-tracker on --dump /tmp/tunes
    python bench/tune_validity.py --data-dir /tmp/trk-data --bar-tracker on --form both
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.abc.rhythm import check_rhythm
from common.lstm.network import load_registered
from common.lstm.sampler import Sampler
from common.lstm.sampling import TuneRequest, generate
from common.params import SamplingParams
from common.settings import Settings
from common.store.open import make_store


@dataclass
class Verdict:
    errors: list[str]
    warnings: list[str]

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def clean(self) -> bool:
        return self.valid and not any("time units" in w for w in self.warnings)


@dataclass
class Summary:
    tracker: bool
    form: bool
    tunes: int
    truncated: int
    valid: int
    valid_finished: int  # valid among the tunes that ended before max-chars
    clean: int
    bars: int
    right_bars: int
    chars: int
    seconds: float
    two_part: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)


def abc2midi(tune: str, workdir: Path) -> Verdict:
    """abc2midi's Error and Warning lines for one tune (its full output, not -silent)."""
    source = workdir / "tune.abc"
    source.write_text(tune if tune.endswith("\n") else tune + "\n")
    out = subprocess.run(
        ["abc2midi", str(source), "-o", str(workdir / "tune.mid")],
        capture_output=True, text=True, errors="replace", timeout=60, check=False,
    )  # fmt: skip
    lines = (out.stdout + out.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    if out.returncode != 0 and not errors:
        errors = [f"Error exit status {out.returncode}"]
    return Verdict(errors, [line for line in lines if line.startswith("Warning")])


def kind(line: str) -> str:
    """A message without its position and the note, field or number it names."""
    text = re.sub(r"^(Error|Warning) in line-char \d+-\d+ : ", r"\1: ", line)
    text = re.sub(r"Bar \d+ has \d+ units instead of \d+", "Bar N has X units instead of Y", text)
    text = re.sub(r"\d+(/\d+)?", "N", text)
    return re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)[:90]


def measure(
    sampler: Sampler,
    params: SamplingParams,
    count: int,
    primer: str,
    workdir: Path,
    dump: Path | None,
) -> Summary:
    start = time.perf_counter()
    tunes = generate(sampler, params, [TuneRequest(i, 0, primer) for i in range(count)])
    seconds = time.perf_counter() - start
    s = Summary(params.bar_tracker, params.form, len(tunes), 0, 0, 0, 0, 0, 0, 0, seconds)
    errors: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    for tune in tunes:
        s.truncated += tune.truncated
        s.chars += len(tune.text)
        verdict = abc2midi(tune.text, workdir)
        s.valid += verdict.valid
        s.valid_finished += verdict.valid and not tune.truncated
        s.clean += verdict.clean
        rhythm = check_rhythm(tune.text)
        s.bars += rhythm.bars
        s.right_bars += rhythm.regular_bars
        s.two_part += rhythm.two_part
        errors.update({kind(e) for e in verdict.errors})  # tunes with each kind
        warnings.update({kind(w) for w in verdict.warnings})
        if dump is not None:
            name = f"{label(params.bar_tracker, params.form)}-{tune.index:04d}"
            (dump / f"{name}.abc").write_text(tune.text)
            lines = (["truncated"] if tune.truncated else []) + verdict.errors + verdict.warnings
            (dump / f"{name}.txt").write_text("\n".join(lines) + "\n")
    s.errors = dict(errors.most_common())
    s.warnings = dict(warnings.most_common())
    return s


def label(tracker: bool, form: bool) -> str:
    return ("on" if tracker else "off") + ("+form" if form else "")


def pct(a: int, b: int) -> str:
    return f"{a / b:6.1%}" if b else "    -"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", type=Path, help="TUNEBATCH_DATA_DIR (default: the setting)")
    ap.add_argument("--model", default="latest")
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--max-chars", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--primer", default="X:")
    ap.add_argument("--bar-tracker", choices=("off", "on", "both"), default="both")
    ap.add_argument(
        "--form", choices=("off", "on", "both"), default="off", help="two-part form (tracker on)"
    )
    ap.add_argument("--dump", type=Path, help="write each tune and its messages here")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.data_dir:
        os.environ["TUNEBATCH_DATA_DIR"] = str(args.data_dir)
    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _, model, vocab = load_registered(make_store(settings), args.model, work / "cache")
        sampler = Sampler(model, vocab, batch_size=min(args.batch, args.count))
        if args.dump:
            args.dump.mkdir(parents=True, exist_ok=True)
        results = []
        choice = {"off": [False], "on": [True], "both": [False, True]}
        configs = [
            (tracked, form)
            for tracked in choice[args.bar_tracker]
            for form in choice[args.form]
            if tracked or not form
        ]
        for tracked, form in configs:
            params = SamplingParams(
                temperature=args.temperature,
                max_chars=args.max_chars,
                seed=args.seed,
                bar_tracker=tracked,
                form=form,
            )
            results.append(measure(sampler, params, args.count, args.primer, work, args.dump))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return 0
    print(f"{args.count} tunes, model {args.model}, T = {args.temperature}, seed {args.seed}")
    print("tracker  valid   clean   bars ok  two-part  truncated  valid if ended  chars/tune  s")
    for r in results:
        ended = pct(r.valid_finished, r.tunes - r.truncated)
        print(
            f"{label(r.tracker, r.form):7}  {pct(r.valid, r.tunes)}  {pct(r.clean, r.tunes)}"
            f"  {pct(r.right_bars, r.bars)}   {pct(r.two_part, r.tunes)}"
            f"   {r.truncated:5}      {ended}"
            f"    {r.chars / r.tunes:7.0f}  {r.seconds:5.0f}"
        )
    for r in results:
        print(f"\ntracker {label(r.tracker, r.form)}: tunes with each abc2midi message")
        for text, n in list(r.errors.items()) + list(r.warnings.items())[:8]:
            print(f"  {n:4}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
