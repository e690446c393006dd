"""Adversarial random walks through a bar tracker, shared by the tests of its rules."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.lstm.bar_tracker import BarTracker
from tests.common.lstm.test_bar_tracker import CHARS, adversarial_pick


def walk(
    tracker: BarTracker,
    seed: int,
    headers: Sequence[str],
    favour: Sequence[set[str]],
    *,
    rows: int,
    steps: int,
    longest: int = 1200,
    seeds: bool = False,
) -> list[str]:
    """Each row writes one of `headers`, then picks among the allowed chars (leaning on each
    `favour` class in turn) until its tune ends or reaches `longest` chars, then starts again.
    Asserts the mask is never empty; returns the tunes that ended while still tracked.
    `seeds`: give each tune a random stream seed (draws a repeat plan where the tracker has
    plans)."""
    rng = np.random.default_rng(seed)
    texts = [headers[r % len(headers)] for r in range(rows)]
    state = tracker.initial_state(rows)
    fresh = np.ones(rows, bool)
    mask = np.ones((rows, len(CHARS)), bool)
    pos = np.zeros(rows, int)
    current = ["" for _ in range(rows)]
    untracked = np.zeros(rows, bool)
    done: list[str] = []
    for step in range(steps):
        choice = np.empty(rows, int)
        for r in range(rows):
            if pos[r] < len(texts[r]):
                choice[r] = CHARS.index(texts[r][pos[r]])
            else:
                choice[r] = adversarial_pick(mask[r], rng, favour, step, r)
        row_seeds = np.arange(rows) + step if seeds else None
        state, mask = tracker.step(state, choice, fresh, seeds=row_seeds)
        fresh[:] = False
        for r in range(rows):
            current[r] += CHARS[choice[r]]
            pos[r] += 1
            ended = current[r].endswith("\n\n") or (pos[r] > 2 and current[r].endswith("\nX"))
            untracked[r] |= not ended and tracker.mode_name(state[r]) == "FREE"
            if ended or len(current[r]) > longest:
                if ended and not untracked[r]:
                    done.append(current[r].rstrip("X").rstrip("\n"))
                current[r], pos[r], untracked[r] = "", 0, False
                texts[r] = headers[int(rng.integers(len(headers)))]
                fresh[r] = True
        assert mask.any(axis=1).all()
    return done
