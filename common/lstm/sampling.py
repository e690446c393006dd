"""A sampling run: tune requests in, finished tunes out, retries submitted as you go.

The compiled steps are `common.lstm.sampler.Sampler`'s; this is the Python side around them: it
queues requests with their primers and random stream keys, grows and shrinks the batch to the
work, and cuts each slot's chars into tunes where they end.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from common.abc.notation import DEFAULT_PRIMER
from common.abc.vocab import Vocab
from common.errors import CancelledError, InvalidInputError
from common.lstm.bar_tracker import FIELDS as TRACKER_FIELDS
from common.lstm.randomness import tune_seed
from common.params import SamplingParams


class BlockSampler(Protocol):
    """What a run needs of `common.lstm.sampler.Sampler`: its sizes and one compiled call. A
    protocol, so that this module does not import the sampler that starts its runs."""

    vocab: Vocab
    units: int
    batch_size: int
    steps_per_call: int

    def compiled_block(
        self, *args: tf.Tensor, tracked: bool, form: bool = False
    ) -> tuple[tf.Tensor, ...]: ...


@dataclass(frozen=True)
class TuneRequest:
    """One tune to write: its index in the batch, which try this is, and how it starts."""

    index: int
    attempt: int = 0
    primer: str = DEFAULT_PRIMER


@dataclass(frozen=True)
class SampledTune:
    index: int
    attempt: int
    text: str
    truncated: bool


class SamplingRun:
    """One generation run: submit requests, iterate finished tunes, submit retries as you go.

    Tunes come out in the order they finish, not in index order; each carries its index.
    """

    def __init__(
        self,
        sampler: BlockSampler,
        params: SamplingParams,
        *,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self._s = sampler
        self.params = params
        self._should_stop = should_stop
        self._pending: deque[int] = deque()
        self._requests: dict[int, TuneRequest] = {}
        self._seeds: dict[int, int] = {}
        self._rows: dict[int, int] = {}
        self._buffers: dict[int, list[npt.NDArray[np.int32]]] = {}
        self._primer_rows: dict[str, int] = {}
        self._primer_ids: list[npt.NDArray[np.int32]] = []
        self._next_id = 0
        self.steps = 0
        self.chars = 0
        self.seconds = 0.0
        self._state: list[Any] | None = None
        self._batch = sampler.batch_size
        self._chars = np.asarray(sampler.vocab.chars)

    def submit(self, request: TuneRequest) -> None:
        if not request.primer:
            raise InvalidInputError("a primer must have at least one character (e.g. 'X:')")
        if request.primer not in self._primer_rows:
            ids = self._s.vocab.encode(request.primer)
            if len(ids) >= self.params.max_chars:
                raise InvalidInputError(
                    f"primer of {len(ids)} chars does not fit max-chars {self.params.max_chars}"
                )
            self._primer_rows[request.primer] = len(self._primer_ids)
            self._primer_ids.append(ids)
        rid = self._next_id
        self._next_id += 1
        self._requests[rid] = request
        self._seeds[rid] = tune_seed(self.params.seed, request.index, request.attempt)
        self._rows[rid] = self._primer_rows[request.primer]
        self._buffers[rid] = []
        self._pending.append(rid)

    def _initial_state(self, batch: int) -> list[Any]:
        zeros = tf.zeros([batch, self._s.units], tf.float32)
        minus = tf.fill([batch], -1)
        return [
            zeros, zeros, tf.zeros([batch], tf.int32), tf.zeros([batch], tf.int32), minus,
            tf.zeros([batch], tf.uint32), minus, tf.zeros([batch, TRACKER_FIELDS], tf.int32),
        ]  # fmt: skip

    def _primer_table(self) -> tuple[tf.Tensor, tf.Tensor]:
        width = max(len(p) for p in self._primer_ids)
        table = np.zeros((len(self._primer_ids), width), np.int32)
        for row, ids in enumerate(self._primer_ids):
            table[row, : len(ids)] = ids
        lengths = np.asarray([len(p) for p in self._primer_ids], np.int32)
        return tf.constant(table), tf.constant(lengths)

    def __iter__(self) -> Iterator[SampledTune]:
        return self._run()

    def _run(self) -> Iterator[SampledTune]:
        p = self.params
        if self._state is None:
            self._batch = max(1, min(self._s.batch_size, len(self._pending) or 1))
            self._state = self._initial_state(self._batch)
        while True:
            active = int(tf.reduce_sum(tf.cast(self._state[4] >= 0, tf.int32)))
            if not self._pending and active == 0:
                return
            if self._should_stop is not None and self._should_stop():
                raise CancelledError("generation cancelled")
            self._resize(active)
            queue = list(itertools.islice(self._pending, self._batch * self._s.steps_per_call))
            q_job = np.asarray(queue, np.int32)
            q_seed = np.asarray([self._seeds[r] for r in queue], np.uint32)
            q_prow = np.asarray([self._rows[r] for r in queue], np.int32)
            primers, lengths = self._primer_table()
            started = time.perf_counter()
            out = self._s.compiled_block(
                *self._state,
                tf.constant(q_job, tf.int32),
                tf.constant(q_seed, tf.uint32),
                tf.constant(q_prow, tf.int32),
                primers,
                lengths,
                tf.constant(p.temperature, tf.float32),
                tf.constant(p.top_k, tf.int32),
                tf.constant(p.max_chars, tf.int32),
                tracked=p.bar_tracker,
                form=p.form,
            )
            self._state = list(out[:8])
            tok, job, done = out[8].numpy(), out[9].numpy(), out[10].numpy()
            taken = int(out[11])
            self.seconds += time.perf_counter() - started
            self.steps += self._s.steps_per_call
            for _ in range(taken):
                self._pending.popleft()
            yield from self._collect(tok, job, done)

    def _resize(self, active: int) -> None:
        """Fit the batch to the work: drop idle slots once nothing is queued (the tail of a run
        then costs less per step), add slots back when retries are queued again."""
        assert self._state is not None
        if not self._pending and 0 < active <= self._batch // 2:
            keep = tf.where(self._state[4] >= 0)[:, 0]
            self._state = [tf.gather(t, keep) for t in self._state]
            self._batch = active
        elif self._pending and self._batch < self._s.batch_size:
            grow = min(self._s.batch_size, active + len(self._pending)) - self._batch
            if grow > 0:
                extra = self._initial_state(grow)
                self._state = [
                    tf.concat([t, e], 0) for t, e in zip(self._state, extra, strict=True)
                ]
                self._batch += grow

    def _collect(
        self, tok: npt.NDArray[np.int32], job: npt.NDArray[np.int32], done: npt.NDArray[np.bool_]
    ) -> Iterator[SampledTune]:
        valid = tok >= 0
        self.chars += int(valid.sum())
        # Column-major: within one slot, tokens are in time order; a job lives in one slot.
        tok_t, job_t, valid_t = tok.T.ravel(), job.T.ravel(), valid.T.ravel()
        tok_t, job_t = tok_t[valid_t], job_t[valid_t]
        if job_t.size:
            order = np.argsort(job_t, kind="stable")
            job_s, tok_s = job_t[order], tok_t[order]
            cuts = np.flatnonzero(np.diff(job_s)) + 1
            starts = np.concatenate([[0], cuts])
            for start, ids in zip(starts, np.split(tok_s, cuts), strict=True):
                self._buffers[int(job_s[start])].append(ids)
        finished = job.T[done.T]
        for rid in finished.tolist():
            yield self._finish(int(rid))

    def _finish(self, rid: int) -> SampledTune:
        request = self._requests.pop(rid)
        del self._seeds[rid], self._rows[rid]
        parts = self._buffers.pop(rid)
        ids = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        text = request.primer[0] + "".join(self._chars[ids].tolist())
        truncated = True
        if text.endswith("\n\n"):
            text, truncated = text.rstrip("\n"), False
        elif text.endswith("\nX") and len(text) > len(request.primer):
            text, truncated = text[:-2], False
        return SampledTune(request.index, request.attempt, text.rstrip() + "\n", truncated)


def generate(
    sampler: BlockSampler,
    params: SamplingParams,
    requests: list[TuneRequest],
) -> list[SampledTune]:
    """All requested tunes, in index order (no validity retries; see the batches module)."""
    run = SamplingRun(sampler, params)
    for request in requests:
        run.submit(request)
    return sorted(run, key=lambda t: (t.index, t.attempt))
