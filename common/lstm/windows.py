"""Text cut into windows of ``seq_len`` chars: the training datasets and the windowed score.

The original recipe cut a window of ``seq_len`` (100) chars every ``window_step`` (10) chars, so
each epoch pushes every character through the network ``seq_len / window_step`` times; the step
is a recipe option. Stateful training cuts the text into parallel streams instead, whose windows
follow each other batch to batch (truncated back-propagation through time). The whole-tune
counterparts are in `common.lstm.wholetune`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from common.abc.vocab import Vocab
from common.errors import InvalidInputError

LN2 = math.log(2.0)


def window_starts(n_chars: int, seq_len: int, step: int) -> npt.NDArray[np.int64]:
    """Start offsets of every (input, target) window of ``seq_len + 1`` chars."""
    if step < 1:
        raise InvalidInputError(f"window step must be ≥ 1, got {step}")
    last = n_chars - seq_len - 1
    if last < 0:
        return np.zeros(0, np.int64)
    return np.arange(0, last + 1, step, dtype=np.int64)


def sampled_windows(windows: int, fraction: float) -> int:
    """How many of `windows` one epoch trains on with `fraction`."""
    return max(1, math.ceil(windows * fraction))


def window_dataset(
    ids: npt.NDArray[np.int32],
    seq_len: int,
    step: int,
    batch_size: int,
    *,
    shuffle_seed: int | None = None,
    fraction: float = 1.0,
) -> tf.data.Dataset:
    """Batches of (x, y) windows, y = x shifted by one char; shuffled when a seed is given.

    `fraction` < 1 takes a fresh random subset of the windows each epoch (needs a seed): the
    alignments of overlapping windows at the compute of non-overlapping ones.
    """
    starts = window_starts(len(ids), seq_len, step)
    if starts.size == 0:
        raise InvalidInputError(
            f"text of {len(ids)} chars is shorter than one window of {seq_len + 1} chars"
        )
    table = tf.constant(ids, tf.int32)
    offsets = tf.range(seq_len + 1, dtype=tf.int64)
    ds = tf.data.Dataset.from_tensor_slices(starts)
    if shuffle_seed is not None:
        ds = ds.shuffle(len(starts), seed=shuffle_seed, reshuffle_each_iteration=True)
    if fraction < 1.0:
        if shuffle_seed is None:
            raise InvalidInputError("a window fraction below 1 needs a shuffle seed")
        ds = ds.take(sampled_windows(len(starts), fraction))
    ds = ds.batch(batch_size)

    def cut(s: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        w = tf.gather(table, s[:, None] + offsets[None, :])
        return w[:, :-1], w[:, 1:]

    return ds.map(cut, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def stream_dataset(
    ids: npt.NDArray[np.int32], seq_len: int, batch_size: int
) -> tuple[tf.data.Dataset, int]:
    """Batches for truncated back-propagation through time, and the number of windows.

    The text is cut into `batch_size` contiguous streams; batch k holds window k of every
    stream, so row r of one batch continues row r of the previous one and a stateful LSTM can
    carry its state across them. Each char is seen once per epoch, with all of its left context.
    """
    per_stream = (len(ids) - 1) // batch_size
    n = per_stream // seq_len
    if n < 1:
        raise InvalidInputError(
            f"text of {len(ids)} chars is too short for {batch_size} streams of {seq_len} chars"
        )
    used = batch_size * per_stream
    x = ids[:used].reshape(batch_size, per_stream)[:, : n * seq_len]
    y = ids[1 : used + 1].reshape(batch_size, per_stream)[:, : n * seq_len]
    xs = x.reshape(batch_size, n, seq_len).transpose(1, 0, 2)
    ys = y.reshape(batch_size, n, seq_len).transpose(1, 0, 2)
    return tf.data.Dataset.from_tensor_slices((xs, ys)).prefetch(tf.data.AUTOTUNE), n * batch_size


@dataclass(frozen=True)
class Evaluation:
    bits_per_char: float
    chars: int
    unknown_chars: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "bits_per_char": self.bits_per_char,
            "chars": self.chars,
            "unknown_chars": self.unknown_chars,
        }


def evaluate_ids(
    model: keras.Model, ids: npt.NDArray[np.int32], seq_len: int, batch_size: int = 64
) -> float:
    """Mean cross-entropy in nats per predicted char over non-overlapping windows."""
    ds = window_dataset(ids, seq_len, seq_len, batch_size)
    total, count = 0.0, 0
    for x, y in ds:
        probs = model(x, training=False)
        nll = keras.losses.sparse_categorical_crossentropy(y, probs)
        total += float(tf.reduce_sum(nll))
        count += int(tf.size(nll))
    return total / max(count, 1)


def evaluate_text(model: keras.Model, vocab: Vocab, text: str, seq_len: int = 100) -> Evaluation:
    """Bits/char of `model` on any text; characters outside the vocabulary are counted, skipped."""
    ids, unknown = vocab.encode_lenient(text)
    seq_len = min(seq_len, max(1, len(ids) - 1))
    if len(ids) < 2:
        raise InvalidInputError(
            f"text has {len(ids)} characters the model knows ({unknown} unknown); nothing to score"
        )
    nats = evaluate_ids(model, ids, seq_len)
    return Evaluation(bits_per_char=nats / LN2, chars=len(ids), unknown_chars=unknown)
