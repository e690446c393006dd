"""Batched, stateful generation: B tunes advance one character per step in one compiled call.

The original recipe re-ran the whole network over a 100-char window for every character of a
single tune. Here the LSTM state is carried instead, so a step costs one ``h @ R`` matmul per
slot, and B slots share that matmul. Several steps run inside one ``tf.function`` loop, with
sampling, stop detection and slot refill in the graph, so Python only looks in every
``steps_per_call`` steps.

Determinism is per tune, not per batch: the random numbers of a tune come from a counter-based
hash of (batch seed, tune index, attempt, position), not from a shared generator. The same model,
seed and parameters therefore give the same tunes whatever the batch size, the chunking or the
worker that ran them — which is what makes a re-run generation job idempotent.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from common.abc.notation import DEFAULT_PRIMER
from common.abc.vocab import Vocab
from common.errors import CancelledError, InvalidInputError
from common.lstm.bar_tracker import FIELDS as TRACKER_FIELDS
from common.lstm.bar_tracker import BarTracker
from common.lstm.network import EMBEDDING_LAYER, HEAD_LAYER, LSTM_LAYER, architecture
from common.lstm.precision import Precision

log = logging.getLogger(__name__)


_GOLDEN = 0x9E3779B9
_M1 = 0x7FEB352D
_M2 = 0x846CA68B
_VMUL = 0x85EBCA6B
_VADD = 0xC2B2AE35


@dataclass(frozen=True)
class SamplingParams:
    """What shapes a tune besides the model: all of it is recorded with every tune."""

    temperature: float = 1.0
    top_k: int = 0
    max_chars: int = 1500
    seed: int = 0
    #: Mask every step with the per-slot bar tracker (`common.lstm.bar_tracker`): bars never
    #: overflow and end only when full (or as a pickup).
    bar_tracker: bool = True

    def __post_init__(self) -> None:
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise InvalidInputError(f"temperature must be ≥ 0, got {self.temperature}")
        if self.top_k < 0:
            raise InvalidInputError(f"top-k must be ≥ 0 (0 = off), got {self.top_k}")
        if self.max_chars < 2:
            raise InvalidInputError(f"max-chars must be ≥ 2, got {self.max_chars}")


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


def tune_seed(seed: int, index: int, attempt: int) -> int:
    """32-bit stream key of one try of one tune; stable across versions and machines."""
    digest = hashlib.sha256(f"tunebatch:{seed}:{index}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _mix32(x: tf.Tensor) -> tf.Tensor:
    """lowbias32 integer hash on uint32 (wrapping arithmetic)."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(_M1, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, tf.uint32)))
    x = x * tf.constant(_M2, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def _np_mix32(x: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(_M1)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(_M2)
    return x ^ (x >> np.uint32(16))


def _lstm_gates(
    z: tf.Tensor, c: tf.Tensor, *, compute: tf.DType
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The LSTM cell's arithmetic after its matmul, for the 16-bit step: z is [4, B, U] in
    `compute`, gate-major (i, f, o, g); returns the new c and h (float32) and h in `compute`
    for the next matmuls. Compiled by XLA into one pass over z and c: as separate TensorFlow ops
    (cast, 3 sigmoids, 2 tanh, 3 multiplies, an add, a cast) the passes over [B, U] tensors cost
    a third of the bf16 step at B = 1,024 with the seed preset; fused, about a tenth."""
    z = tf.cast(z, tf.float32)
    i, f, o = tf.sigmoid(z[0]), tf.sigmoid(z[1]), tf.sigmoid(z[2])
    c = f * c + i * tf.tanh(z[3])
    h = o * tf.tanh(c)
    return c, h, tf.cast(h, compute)


def uniforms_np(
    seeds: npt.NDArray[np.uint32], pos: npt.NDArray[np.int32], vocab_size: int
) -> npt.NDArray[np.float32]:
    """Reference (NumPy) of the in-graph uniforms, for tests: shape [B, V] in (0, 1)."""
    with np.errstate(over="ignore"):
        k1 = _np_mix32(seeds + np.uint32(_GOLDEN) * (pos.astype(np.uint32) + np.uint32(1)))
        v = np.arange(vocab_size, dtype=np.uint32) * np.uint32(_VMUL) + np.uint32(_VADD)
        bits = _np_mix32(k1[:, None] ^ v[None, :])
    return (((bits >> np.uint32(8)).astype(np.float32)) + np.float32(0.5)) / np.float32(1 << 24)


def _uniforms(seeds: tf.Tensor, pos: tf.Tensor, vocab_size: int) -> tf.Tensor:
    k1 = _mix32(seeds + tf.constant(_GOLDEN, tf.uint32) * (tf.cast(pos, tf.uint32) + 1))
    v = tf.constant(np.arange(vocab_size, dtype=np.uint32)) * tf.constant(
        _VMUL, tf.uint32
    ) + tf.constant(_VADD, tf.uint32)
    bits = _mix32(tf.bitwise.bitwise_xor(k1[:, None], v[None, :]))
    return (tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), tf.float32) + 0.5) / (
        1 << 24
    )


def choose(
    logits: tf.Tensor, seeds: tf.Tensor, pos: tf.Tensor, temperature: tf.Tensor, top_k: tf.Tensor
) -> tf.Tensor:
    """Sample one id per row: Gumbel-max over ``logits / T`` restricted to the top k.

    Gumbel-max with hashed uniforms is exactly sampling from softmax(logits / T), and needs no
    random state. T = 0 is argmax.
    """
    vocab_size = logits.shape[-1]
    greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
    safe_t = tf.maximum(temperature, 1e-6)
    scaled = logits / safe_t

    def keep_top_k() -> tf.Tensor:
        kth = tf.math.top_k(scaled, k=tf.minimum(top_k, vocab_size)).values[:, -1:]
        return tf.where(scaled < kth, tf.constant(-np.inf, scaled.dtype), scaled)

    # top_k sorts every row: only pay for it when asked.
    scaled = tf.cond(top_k > 0, keep_top_k, lambda: scaled)
    u = _uniforms(seeds, pos, vocab_size)
    gumbel = -tf.math.log(-tf.math.log(u))
    sampled = tf.argmax(scaled + gumbel, axis=-1, output_type=tf.int32)
    return tf.where(temperature > 0, sampled, greedy)


class Sampler:
    """Single-step generator sharing the trained model's weights.

    The input half of the LSTM's first matmul is folded into the embedding (E·K + b is a V×4U
    table) because the input is always one character: in float32 the step is one gather from
    that table, one U×4U matmul and the small output projection.

    With ``precision="bfloat16"`` (or ``mixed_float16``) the matmul is 4-5x faster, and the
    float32 passes over the [B, 4U] gate tensor (gather, cast, add, split) become the step's
    largest cost. So the low-precision step feeds [h, one-hot(x)] through one batched matmul
    against the [4, U+V, U] stack of the recurrent kernel and the table, gate-major (i, f, o, g):
    the table rows cost V/U (5 % for the seed preset) more matmul work but no pass of their own,
    and the gates come out as four contiguous [B, U] blocks. The cell's arithmetic on them is
    one XLA-compiled function (`_lstm_gates`): one pass instead of a dozen. Gates, the cell state
    and the logits stay float32 (see `precision`).
    """

    def __init__(
        self,
        model: keras.Model,
        vocab: Vocab,
        *,
        batch_size: int = 256,
        steps_per_call: int = 32,
        jit_compile: bool = False,
        precision: Precision = "float32",
    ) -> None:
        vocab_size, _, units = architecture(model)
        if vocab_size != len(vocab):
            raise InvalidInputError(
                f"model has {vocab_size} output characters but the vocabulary has {len(vocab)}; "
                "the model and vocabulary come from different corpora"
            )
        if batch_size < 1 or steps_per_call < 1:
            raise InvalidInputError("batch size and steps per call must be ≥ 1")
        self.vocab = vocab
        self.units = units
        self.batch_size = batch_size
        self.steps_per_call = steps_per_call
        emb = model.get_layer(EMBEDDING_LAYER)
        cell = model.get_layer(LSTM_LAYER).cell
        head = model.get_layer(HEAD_LAYER)
        # E·K + b: the embedding, the LSTM's input matmul and its bias as one V×4U lookup table.
        self._emb_kernel = tf.matmul(
            tf.convert_to_tensor(emb.embeddings, tf.float32),
            tf.convert_to_tensor(cell.kernel, tf.float32),
        ) + tf.convert_to_tensor(cell.bias, tf.float32)
        if precision not in ("float32", "bfloat16", "mixed_float16"):
            raise InvalidInputError(f"unknown precision {precision!r}")
        self.precision = precision
        self._compute = {"float32": tf.float32, "bfloat16": tf.bfloat16}.get(precision, tf.float16)
        recurrent = tf.convert_to_tensor(cell.recurrent_kernel, tf.float32)
        if precision == "float32":
            self._recurrent = recurrent
        else:
            # [4, U+V, U]: per gate (i, f, o, g), the recurrent kernel over the table's columns.
            stacked = tf.concat([recurrent, self._emb_kernel], 0)
            gates = tf.split(stacked, 4, axis=1)  # Keras' order: i, f, g, o
            self._gate_kernels = tf.cast(
                tf.stack([gates[0], gates[1], gates[3], gates[2]]), self._compute
            )
            self._gates = tf.function(
                functools.partial(_lstm_gates, compute=self._compute), jit_compile=True
            )
        self._head_w = tf.cast(tf.convert_to_tensor(head.kernel), self._compute)
        self._head_b = tf.convert_to_tensor(head.bias, tf.float32)
        self._newline = vocab.chars.index("\n") if "\n" in vocab else -1
        self._x_char = vocab.chars.index("X") if "X" in vocab else -1
        self.tracker = BarTracker(vocab.chars)
        i32, u32, f32 = tf.int32, tf.uint32, tf.float32
        spec = tf.TensorSpec
        self._score = tf.function(self._score_impl, reduce_retracing=True)
        signature = [
            spec([None, units], f32),  # h
            spec([None, units], f32),  # c
            spec([None], i32),  # x: char fed next
            spec([None], i32),  # pos: chars of the tune so far
            spec([None], i32),  # job: request id, -1 idle
            spec([None], u32),  # seed of the job
            spec([None], i32),  # primer row of the job
            spec([None, TRACKER_FIELDS], i32),  # bar tracker state
            spec([None], i32),  # queue: request ids
            spec([None], u32),  # queue: seeds
            spec([None], i32),  # queue: primer rows
            spec([None, None], i32),  # primer table
            spec([None], i32),  # primer lengths
            spec([], f32),  # temperature
            spec([], i32),  # top_k
            spec([], i32),  # max_chars
        ]
        self._block = tf.function(
            functools.partial(self._run_block, tracked=False),
            jit_compile=jit_compile,
            reduce_retracing=True,
            input_signature=signature,
        )
        # The tracker runs as NumPy inside the graph (one call per step for all slots), which
        # XLA cannot compile: this block is never jit-compiled.
        self._tracked_block = tf.function(
            functools.partial(self._run_block, tracked=True),
            reduce_retracing=True,
            input_signature=signature,
        )

    # -- the compiled part -------------------------------------------------------------------
    def _step(
        self, x: tf.Tensor, h: tf.Tensor, c: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        if self.precision == "float32":
            z = tf.gather(self._emb_kernel, x) + tf.matmul(h, self._recurrent)
            zi, zf, zg, zo = tf.split(z, 4, axis=1)
            i, f, o, g = tf.sigmoid(zi), tf.sigmoid(zf), tf.sigmoid(zo), tf.tanh(zg)
            c = f * c + i * g
            h = o * tf.tanh(c)
            hc = h
        else:
            vocab_size = self._emb_kernel.shape[0]
            hx = tf.concat(
                [tf.cast(h, self._compute), tf.one_hot(x, vocab_size, dtype=self._compute)], 1
            )
            c, h, hc = self._gates(tf.matmul(hx[tf.newaxis], self._gate_kernels), c)
        logits = tf.cast(tf.matmul(hc, self._head_w), tf.float32) + self._head_b
        return logits, h, c

    def _run_block(
        self,
        h: tf.Tensor,
        c: tf.Tensor,
        x: tf.Tensor,
        pos: tf.Tensor,
        job: tf.Tensor,
        seed: tf.Tensor,
        prow: tf.Tensor,
        track: tf.Tensor,
        q_job: tf.Tensor,
        q_seed: tf.Tensor,
        q_prow: tf.Tensor,
        primers: tf.Tensor,
        primer_len: tf.Tensor,
        temperature: tf.Tensor,
        top_k: tf.Tensor,
        max_chars: tf.Tensor,
        *,
        tracked: bool,
    ) -> tuple[tf.Tensor, ...]:
        steps = self.steps_per_call
        vocab_size = len(self.vocab)
        taken = tf.constant(0, tf.int32)
        out_tok = tf.TensorArray(tf.int32, size=steps)
        out_job = tf.TensorArray(tf.int32, size=steps)
        out_done = tf.TensorArray(tf.bool, size=steps)
        newline = tf.constant(self._newline, tf.int32)
        x_char = tf.constant(self._x_char, tf.int32)
        queue = (q_job, q_seed, q_prow)
        # Idle slots pick up queued requests before the first step.
        slots, taken = self._refill((h, c, x, pos, job, seed, prow), queue, primers, taken)
        for t in tf.range(steps):
            h, c, x, pos, job, seed, prow = slots
            active = job >= 0
            logits, h, c = self._step(tf.maximum(x, 0), h, c)
            if tracked:
                # Feed each slot's last char to its tracker (a slot at pos 1 starts a new tune)
                # and keep only the chars its bar allows next.
                track, allowed = tf.numpy_function(
                    self.tracker.step,
                    [track, tf.maximum(x, 0), tf.equal(pos, 1)],
                    [tf.int32, tf.bool],
                    name="bar_tracker",
                )
                track.set_shape([None, TRACKER_FIELDS])
                allowed.set_shape([None, vocab_size])
                logits = tf.where(allowed, logits, tf.constant(-np.inf, tf.float32))
            plen = tf.gather(primer_len, tf.maximum(prow, 0))
            forced = pos < plen
            primer_char = tf.gather_nd(
                primers,
                tf.stack([tf.maximum(prow, 0), tf.minimum(pos, tf.shape(primers)[1] - 1)], 1),
            )
            sampled = choose(logits, seed, pos, temperature, top_k)
            nxt = tf.where(forced, primer_char, sampled)
            pos = pos + 1
            at_end = tf.logical_and(
                tf.equal(x, newline), tf.logical_or(tf.equal(nxt, newline), tf.equal(nxt, x_char))
            )
            done = tf.logical_and(
                active,
                tf.logical_or(tf.logical_and(tf.logical_not(forced), at_end), pos >= max_chars),
            )
            out_tok = out_tok.write(t, tf.where(active, nxt, -1))
            out_job = out_job.write(t, job)
            out_done = out_done.write(t, done)
            x = tf.where(active, nxt, x)
            job = tf.where(done, -1, job)
            slots, taken = self._refill((h, c, x, pos, job, seed, prow), queue, primers, taken)
        return (
            *slots, track,
            out_tok.stack(), out_job.stack(), out_done.stack(), taken,
        )  # fmt: skip

    def nats_per_char(self, segments: npt.NDArray[np.int32]) -> float:
        """Mean cross-entropy of the step function, teacher-forced over [B, T] id segments.

        Each row starts from a zero state, as a sampled tune does; this scores exactly what
        generation computes, in this sampler's precision (the Keras model scores float32).
        """
        if segments.ndim != 2 or segments.shape[1] < 2:
            raise InvalidInputError("segments must be [rows, ≥ 2 chars]")
        ids = tf.constant(segments, tf.int32)
        return float(self._score(ids))  # compiled in __init__

    def _score_impl(self, ids: tf.Tensor) -> tf.Tensor:
        rows, length = tf.shape(ids)[0], tf.shape(ids)[1]
        h = tf.zeros([rows, self.units])
        c = tf.zeros([rows, self.units])
        total = tf.constant(0.0)
        for t in tf.range(length - 1):
            logits, h, c = self._step(ids[:, t], h, c)
            nll = tf.nn.sparse_softmax_cross_entropy_with_logits(ids[:, t + 1], logits)
            total += tf.reduce_sum(nll)
        return total / tf.cast(rows * (length - 1), tf.float32)

    @staticmethod
    def _refill(
        slots: tuple[tf.Tensor, ...],
        queue: tuple[tf.Tensor, tf.Tensor, tf.Tensor],
        primers: tf.Tensor,
        taken: tf.Tensor,
    ) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
        """Give each free slot the next queued request, in slot order; reset its state."""
        h, c, x, pos, job, seed, prow = slots
        q_job, q_seed, q_prow = queue
        queue_len = tf.shape(q_job)[0]
        free = job < 0
        rank = tf.cumsum(tf.cast(free, tf.int32)) - 1
        take = taken + rank
        gets = tf.logical_and(free, take < queue_len)
        # Clamp so the gather is in range even for an empty queue; `gets` masks the result.
        padded = tf.maximum(queue_len, 1)
        idx = tf.clip_by_value(take, 0, padded - 1)
        q_job = tf.pad(q_job, [[0, padded - queue_len]], constant_values=-1)
        q_seed = tf.pad(q_seed, [[0, padded - queue_len]])
        q_prow = tf.pad(q_prow, [[0, padded - queue_len]])
        job = tf.where(gets, tf.gather(q_job, idx), job)
        seed = tf.where(gets, tf.gather(q_seed, idx), seed)
        prow = tf.where(gets, tf.gather(q_prow, idx), prow)
        first = tf.gather_nd(primers, tf.stack([tf.maximum(prow, 0), tf.zeros_like(prow)], 1))
        x = tf.where(gets, first, x)
        pos = tf.where(gets, tf.ones_like(pos), pos)
        keep = tf.logical_not(gets)[:, None]
        h = tf.where(keep, h, tf.zeros_like(h))
        c = tf.where(keep, c, tf.zeros_like(c))
        taken = taken + tf.reduce_sum(tf.cast(gets, tf.int32))
        return (h, c, x, pos, job, seed, prow), taken

    # -- the Python driver -------------------------------------------------------------------
    def start(
        self,
        params: SamplingParams,
        *,
        should_stop: Callable[[], bool] | None = None,
    ) -> SamplingRun:
        return SamplingRun(self, params, should_stop=should_stop)


class SamplingRun:
    """One generation run: submit requests, iterate finished tunes, submit retries as you go.

    Tunes come out in the order they finish, not in index order; each carries its index.
    """

    def __init__(
        self,
        sampler: Sampler,
        params: SamplingParams,
        *,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        if params.max_chars > 1_000_000:
            raise InvalidInputError("max-chars above 1,000,000 is not a tune")
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
            block = self._s._tracked_block if p.bar_tracker else self._s._block
            out = block(
                *self._state,
                tf.constant(q_job, tf.int32),
                tf.constant(q_seed, tf.uint32),
                tf.constant(q_prow, tf.int32),
                primers,
                lengths,
                tf.constant(p.temperature, tf.float32),
                tf.constant(p.top_k, tf.int32),
                tf.constant(p.max_chars, tf.int32),
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
    sampler: Sampler,
    params: SamplingParams,
    requests: list[TuneRequest],
) -> list[SampledTune]:
    """All requested tunes, in index order (no validity retries; see the batches module)."""
    run = sampler.start(params)
    for request in requests:
        run.submit(request)
    return sorted(run, key=lambda t: (t.index, t.attempt))


def predict_loop_sample(
    model: keras.Model, vocab: Vocab, n_chars: int, *, window: int = 100, seed: int = 0
) -> str:
    """The original recipe's generator: ``model.predict`` over a 100-char window per character.

    Kept only as the benchmark's baseline; it is thousands of times slower than `Sampler`.
    """
    rng = np.random.default_rng(seed)
    ids = list(vocab.encode(DEFAULT_PRIMER))
    for _ in range(n_chars):
        probs = model.predict(np.asarray([ids[-window:]], np.int32), verbose=0)[0, -1]
        probs = np.asarray(probs, np.float64)
        probs /= probs.sum()
        ids.append(int(np.argmax(rng.multinomial(1, probs))))
    return vocab.decode(ids)
