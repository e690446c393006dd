"""Batched, stateful generation: B tunes advance one character per step in one compiled call.

The original recipe re-ran the whole network over a 100-char window for every character of a
single tune. Here the LSTM state is carried instead, so a step costs one ``h @ R`` matmul per
slot, and B slots share that matmul. Several steps run inside one ``tf.function`` loop, with
sampling, stop detection and slot refill in the graph, so Python only looks in every
``steps_per_call`` steps.

Determinism is per tune, not per batch: the random numbers of a tune come from a counter-based
hash (`common.lstm.randomness`), so a re-run generation job writes the same tunes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import get_args

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from common.abc.vocab import Vocab
from common.errors import InvalidInputError
from common.lstm.bar_tracker import FIELDS as TRACKER_FIELDS
from common.lstm.bar_tracker import BarTracker
from common.lstm.music_rules import DEFAULT_RULES, MusicRules
from common.lstm.network import EMBEDDING_LAYER, HEAD_LAYER, LSTM_LAYER, architecture
from common.lstm.randomness import choose
from common.lstm.sampling import SamplingRun
from common.params import SamplerPrecision, SamplingParams

log = logging.getLogger(__name__)


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
        precision: SamplerPrecision = "float32",
        music: MusicRules | None = DEFAULT_RULES,
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
        if precision not in get_args(SamplerPrecision):
            raise InvalidInputError(
                f"unknown sampler precision {precision!r}; choose one of "
                f"{get_args(SamplerPrecision)} (resolve 'auto' first: common.lstm.precision)"
            )
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
        # `music`: the corpus's shortest notes, register and cadences (None: bars and form only)
        self.music = music
        self.tracker = BarTracker(vocab.chars, music=music)
        self.form_tracker = BarTracker(vocab.chars, form=True, music=music)  # also two-part form
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
        self._form_block = tf.function(
            functools.partial(self._run_block, tracked=True, form=True),
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
        form: bool = False,
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
                # and keep only the chars its bar allows next (winding down near max_chars).
                track, allowed = tf.numpy_function(
                    (self.form_tracker if form else self.tracker).step,
                    [track, tf.maximum(x, 0), tf.equal(pos, 1), max_chars - pos, max_chars, seed],
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

    def compiled_block(
        self, *args: tf.Tensor, tracked: bool, form: bool = False
    ) -> tuple[tf.Tensor, ...]:
        """One compiled call: `steps_per_call` steps of every slot, refilled from the queue
        (the arguments and results of `_run_block`); `tracked` masks with the bar tracker,
        `form` (with `tracked`) also with its two-part form rule."""
        block = (self._form_block if form else self._tracked_block) if tracked else self._block
        return tuple(block(*args))

    # -- the Python driver -------------------------------------------------------------------
    def start(
        self,
        params: SamplingParams,
        *,
        should_stop: Callable[[], bool] | None = None,
    ) -> SamplingRun:
        return SamplingRun(self, params, should_stop=should_stop)
