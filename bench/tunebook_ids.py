"""`producer tunebook --ids`: parsing and de-duplicating a long ids file, old and new.

The old `parse_ids` kept ids in a list and tested ``word not in ids`` for each (quadratic: the
issue measured 58 s for 100,000 ids); the new one keeps them in a dict, in one pass. Both run
here on the same text (each id twice, as an export merged with itself), and must agree.

    python bench/tunebook_ids.py              # 100,000 ids (the old way takes about a minute)
    python bench/tunebook_ids.py --ids 20000
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.schemas import tune_index
from producer.tunebook import parse_ids


def old_parse_ids(text: str) -> list[str]:
    """The baseline: `producer.tunebook.parse_ids` as it was (a list and ``in``)."""
    ids: list[str] = []
    for line in text.splitlines():
        for word in re.split(r"[\s,]+", line.split("#", 1)[0]):
            if word:
                tune_index(word)
                if word not in ids:
                    ids.append(word)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=100_000, help="distinct ids (each given twice)")
    args = parser.parse_args()
    text = "".join(f"t{i:06d}\n" for i in range(args.ids)) * 2
    started = time.perf_counter()
    new = parse_ids(text)
    new_s = time.perf_counter() - started
    started = time.perf_counter()
    old = old_parse_ids(text)
    old_s = time.perf_counter() - started
    assert new == old
    print(f"{args.ids:,} ids, each twice ({len(text):,} bytes)")
    print(f"{'':12}{'seconds':>10}")
    print(f"{'old (list)':12}{old_s:>10.3f}")
    print(f"{'new (dict)':12}{new_s:>10.3f}")
    print(f"speed-up: {old_s / new_s:,.0f}x")


if __name__ == "__main__":
    main()
