"""The sampler measured as `bench/generation.py` runs it: steady state, call by call, with the
baselines run between calls off the clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

import keras

from common.abc.vocab import Vocab
from common.errors import CancelledError
from common.lstm.music_rules import DEFAULT_RULES, MusicRules
from common.lstm.sampler import Sampler
from common.lstm.sampling import SamplingRun, TuneRequest
from common.params import SamplerPrecision, SamplingParams


@dataclass
class SamplerResult:
    batch: int
    steps_per_call: int
    jit: bool
    calls: int
    requests: int
    precision: str = "float32"
    bar_tracker: bool = False
    warmup_seconds: float = 0.0
    steps: int = 0
    chars: int = 0
    seconds: float = 0.0
    graph_seconds: float = 0.0
    call_seconds: list[float] = field(default_factory=list)
    call_chars: list[int] = field(default_factory=list)
    tunes: int = 0
    loop_char_seconds: list[float] = field(default_factory=list)
    queue_ran_dry: bool = False
    queue_shrank: bool = True
    load: float = 0.0
    error: str | None = None

    @property
    def chars_per_s(self) -> float:
        return self.chars / self.seconds if self.seconds > 0 else 0.0

    @property
    def best_chars_per_s(self) -> float:
        rates = [n / t for n, t in zip(self.call_chars, self.call_seconds, strict=True) if t > 0]
        return max(rates, default=0.0)


@dataclass(frozen=True)
class _Mark:
    ended: float  # the previous iteration ended
    resumed: float  # the next iteration starts (after the baselines ran)
    chars: int
    graph_seconds: float
    finished: int


class _Meter:
    """Marks each boundary between compiled calls of a `SamplingRun`, and runs the baselines there.

    `SamplingRun` calls ``should_stop`` once per iteration, after the previous call's tunes have
    been collected and handed out and before the next call is prepared: from one mark to the
    next is one whole iteration. Between measured calls `between` runs off the clock — the
    reference matmul and one char of the predict loop — so that they share the machine with the
    same neighbours as the calls they are compared with: on a shared machine that matters more
    than anything else. After the warm-up call and ``calls`` measured calls it stops the run.
    """

    def __init__(self, calls: int, between: Callable[[], None]) -> None:
        self.total_calls = 1 + calls
        self.marks: list[_Mark] = []
        self.run: SamplingRun | None = None
        self.finished = 0
        self._between = between

    def should_stop(self) -> bool:
        assert self.run is not None
        ended = time.perf_counter()
        if self.marks:  # not before the warm-up call: that one is not compared
            self._between()
        run = self.run
        mark = _Mark(ended, time.perf_counter(), run.chars, run.seconds, self.finished)
        self.marks.append(mark)
        return len(self.marks) > self.total_calls

    @property
    def measuring(self) -> bool:
        """True while a measured (not warm-up) call's tunes are handed out."""
        return len(self.marks) >= 2


def requests_needed(batch: int, steps_per_call: int, calls: int, *, full_queue: bool) -> int:
    """Enough queued tunes that no slot goes idle during the measured calls.

    Tunes here average ~400 chars; assume 100 to stay clear of an empty queue. With
    `full_queue`, also keep B × steps-per-call tunes queued (the most one call is handed), so
    every call gets a queue of the same length.
    """
    slot_steps = (1 + calls) * steps_per_call * batch
    consumed = batch + math.ceil(slot_steps / 100) + 8
    if full_queue:
        return consumed + batch * steps_per_call
    return max(3 * batch, consumed)


def measure_sampler(
    model: keras.Model,
    vocab: Vocab,
    *,
    batch: int,
    steps_per_call: int,
    jit: bool,
    calls: int,
    max_chars: int,
    seed: int,
    between: Callable[[], None],
    full_queue: bool = False,
    precision: SamplerPrecision = "float32",
    bar_tracker: bool = False,
    music: MusicRules | None = DEFAULT_RULES,
) -> SamplerResult:
    requests = requests_needed(batch, steps_per_call, calls, full_queue=full_queue)
    result = SamplerResult(batch, steps_per_call, jit, calls, requests, precision, bar_tracker)
    sampler = Sampler(
        model,
        vocab,
        batch_size=batch,
        steps_per_call=steps_per_call,
        jit_compile=jit,
        precision=precision,
        music=music,
    )
    meter = _Meter(calls, between)
    run = sampler.start(
        SamplingParams(
            temperature=1.0, top_k=0, max_chars=max_chars, seed=seed, bar_tracker=bar_tracker
        ),
        should_stop=meter.should_stop,
    )
    meter.run = run
    for index in range(requests):
        run.submit(TuneRequest(index))
    try:
        for _tune in run:
            meter.finished += 1
            result.tunes += int(meter.measuring)
    except CancelledError:
        pass
    if len(meter.marks) != meter.total_calls + 1:
        raise RuntimeError(f"the run ended after {len(meter.marks) - 1} calls, expected more")
    marks = meter.marks
    result.warmup_seconds = marks[1].ended - marks[0].resumed
    result.call_seconds = [b.ended - a.resumed for a, b in pairwise(marks[1:])]
    result.call_chars = [b.chars - a.chars for a, b in pairwise(marks[1:])]
    result.seconds = sum(result.call_seconds)
    result.chars = sum(result.call_chars)
    result.graph_seconds = marks[-1].graph_seconds - marks[1].graph_seconds
    result.steps = calls * steps_per_call
    finished = marks[-1].finished
    # Still queued at the end ⇔ queued all along (the queue only shrinks) ⇔ no slot went idle.
    result.queue_ran_dry = requests - finished <= batch
    result.queue_shrank = requests - finished - batch < batch * steps_per_call
    return result
