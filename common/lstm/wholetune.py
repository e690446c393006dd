"""Whole tunes as the unit of scoring and training: each tune from ``X:`` to the blank line that
ends it, from a zero LSTM state, with the state carried over the whole tune.

That is how the sampler uses the model (it starts every tune from a zero state at ``X`` and runs
until the blank line), so it is the score a model is judged by. Tunes of different lengths share a
batch by padding: they are sorted by length so a batch holds tunes of similar length (little
padding), and a mask keeps the padding out of every sum. Padding only ever follows a tune's last
char, and the LSTM runs left to right, so it cannot change the predictions of the real chars.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from common.abc import notation as abc_notation
from common.abc.corpus import clean_tunes
from common.abc.vocab import Vocab
from common.errors import InvalidInputError

LN2 = math.log(2.0)

#: A tune ends with a blank line: the sampler stops at it, so predicting it is part of the tune.
TUNE_END = "\n\n"

#: Batch lengths are rounded up to a multiple of this, so a compiled step sees few shapes.
PAD_MULTIPLE = 32

#: Char positions (rows x padded length) per scoring batch: bounded memory at any tune length.
SCORE_BATCH_CHARS = 65_536


def corpus_tunes(text: str) -> list[str]:
    """The tunes of a corpus text (tunes joined by one blank line), each with its blank line."""
    return [t.strip("\n") + TUNE_END for t in text.split(TUNE_END) if t.strip()]


def file_tunes(text: str, *, raw: bool = False) -> tuple[list[str], int]:
    """(tunes, tunes found) of an ABC file, cleaned as a corpus import cleans them (normalised,
    without comments, duplicates or tunes lacking M:/K:) unless `raw`, which keeps each tune's
    text as the file has it (from ``X:`` to the blank line)."""
    if raw:
        tunes = list(abc_notation.split_tunes(text))
        return [t + TUNE_END for t in tunes], len(tunes)
    cleaned = clean_tunes([text])
    return [t.strip("\n") + TUNE_END for t in cleaned.tunes], cleaned.found


def encode_tunes(
    tunes: Sequence[str], vocab: Vocab, *, lenient: bool = False
) -> tuple[list[npt.NDArray[np.int32]], int]:
    """Ids of each tune and the number of chars outside the vocabulary (skipped when `lenient`;
    otherwise an unknown char is an error)."""
    out: list[npt.NDArray[np.int32]] = []
    unknown = 0
    for tune in tunes:
        if lenient:
            ids, bad = vocab.encode_lenient(tune)
            unknown += bad
        else:
            ids = vocab.encode(tune)
        out.append(np.asarray(ids, np.int32))
    return out, unknown


def _padded_length(n: int) -> int:
    return max(PAD_MULTIPLE, -(-n // PAD_MULTIPLE) * PAD_MULTIPLE)


def pad_batch(
    tunes: Sequence[npt.NDArray[np.int32]],
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """(inputs, targets, mask) of a batch of tunes: targets are the inputs shifted by one char;
    the mask is 1 where a target is a real char of the tune and 0 on the padding after it."""
    width = _padded_length(max(len(t) for t in tunes) - 1)
    x = np.zeros((len(tunes), width), np.int32)
    y = np.zeros((len(tunes), width), np.int32)
    mask = np.zeros((len(tunes), width), np.float32)
    for row, ids in enumerate(tunes):
        n = len(ids) - 1
        x[row, :n] = ids[:-1]
        y[row, :n] = ids[1:]
        mask[row, :n] = 1.0
    return x, y, mask


def length_batches(
    lengths: Sequence[int],
    *,
    rows: int | None = None,
    max_chars: int | None = None,
    rng: np.random.Generator | None = None,
) -> list[npt.NDArray[np.int64]]:
    """Indices of the tunes of each batch, tunes of similar length together.

    Either `rows` tunes per batch, or as many as fit `max_chars` padded char positions. With `rng`,
    tunes of nearly equal length trade places and the batch order is shuffled, so each epoch
    sees different batches (with still little padding).
    """
    if rows is None and max_chars is None:
        raise InvalidInputError("length_batches needs rows or max_chars")
    keys = np.asarray(lengths, np.float64)
    if rng is not None:
        keys = keys * rng.uniform(0.95, 1.05, size=len(keys))
    order = np.argsort(keys, kind="stable")
    batches: list[npt.NDArray[np.int64]] = []
    start = 0
    while start < len(order):
        end = start + 1
        widest = lengths[int(order[start])]
        while end < len(order) and (rows is None or end - start < rows):
            wider = max(widest, lengths[int(order[end])])
            if max_chars is not None and (end + 1 - start) * _padded_length(wider) > max_chars:
                break
            widest, end = wider, end + 1
        batches.append(order[start:end].astype(np.int64))
        start = end
    if rng is not None:
        rng.shuffle(batches)
    return batches


@dataclass(frozen=True)
class TuneScore:
    """Whole-tune cross-entropy: `nats` summed over `chars` predicted chars of `tunes` tunes."""

    nats: float
    chars: int
    tunes: int

    @property
    def nats_per_char(self) -> float:
        return self.nats / max(self.chars, 1)

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char / LN2


class TuneScorer:
    """Scores whole tunes with one compiled function for the life of the model.

    The validator scores a copy of the training model after every epoch; a compiled function
    made afresh each time is traced again each time (TensorFlow warns of it), so the validator
    keeps one scorer and loads each epoch's weights into its model.
    """

    def __init__(self, model: keras.Model) -> None:
        def nats(x: tf.Tensor, y: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
            probs = model(x, training=False)
            nll = keras.losses.sparse_categorical_crossentropy(y, probs)
            return tf.reduce_sum(tf.cast(nll, tf.float64) * tf.cast(mask, tf.float64))

        matrix = tf.TensorSpec([None, None], tf.int32)
        self._batch_nats = tf.function(
            nats,
            input_signature=[matrix, matrix, tf.TensorSpec([None, None], tf.float32)],
            reduce_retracing=True,
        )

    def __call__(
        self, tunes: Sequence[npt.NDArray[np.int32]], *, max_chars: int = SCORE_BATCH_CHARS
    ) -> TuneScore:
        """Sum of -log p(char) over every char after the first of every tune, each tune run
        from a zero state to its end."""
        usable = [t for t in tunes if len(t) >= 2]
        if not usable:
            raise InvalidInputError("no tune of at least 2 known chars to score")
        total, chars = 0.0, 0
        for idx in length_batches([len(t) for t in usable], max_chars=max_chars):
            x, y, mask = pad_batch([usable[int(i)] for i in idx])
            total += float(self._batch_nats(x, y, mask))
            chars += int(mask.sum())
        return TuneScore(nats=total, chars=chars, tunes=len(usable))


def score_tunes(
    model: keras.Model,
    tunes: Sequence[npt.NDArray[np.int32]],
    *,
    max_chars: int = SCORE_BATCH_CHARS,
) -> TuneScore:
    """`TuneScorer` once: `model` must be stateless (`build_model` without a batch)."""
    return TuneScorer(model)(tunes, max_chars=max_chars)


def tune_batches(
    tunes: Sequence[npt.NDArray[np.int32]], batch_size: int, seed: int
) -> tuple[tf.data.Dataset, int, int]:
    """(dataset, batches per epoch, char positions per epoch) for training on whole tunes.

    Each element is (inputs, targets, weights): `batch_size` tunes of similar length, padded.
    The weights are the mask scaled so that Keras' mean over all positions of a batch (padding
    included) equals the mean over its real chars. Batches are reshuffled every epoch, seeded.
    """
    usable = [t for t in tunes if len(t) >= 2]
    if not usable:
        raise InvalidInputError("no tune of at least 2 chars to train on")
    lengths = [len(t) for t in usable]
    n_batches = len(length_batches(lengths, rows=batch_size))
    epoch = [0]

    def generate() -> Iterator[
        tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float32]]
    ]:
        rng = np.random.default_rng([seed, epoch[0]])
        epoch[0] += 1
        for idx in length_batches(lengths, rows=batch_size, rng=rng):
            x, y, mask = pad_batch([usable[int(i)] for i in idx])
            yield x, y, mask * np.float32(mask.size / mask.sum())

    spec = (
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None, None], tf.float32),
    )
    ds = tf.data.Dataset.from_generator(generate, output_signature=spec)
    # Keras needs the length to run an epoch per pass of the generator.
    ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches))
    chars = sum(n - 1 for n in lengths)
    return ds.prefetch(2), n_batches, chars


@dataclass(frozen=True)
class TuneStreams:
    """Whole tunes for truncated back-propagation through time with the state reset per tune.

    `dataset` yields (inputs, targets, weights) of [streams, seq_len]; batch k holds window k of
    every stream. `resets[k, r]` is True where window k of stream r starts a tune: its LSTM state
    must be zeroed before that batch (`StreamResetter`), so each tune runs from a zero state with
    its state carried window to window up to its end, as the sampler runs it.
    """

    dataset: tf.data.Dataset
    steps: int
    chars: int
    padded_chars: int
    resets: npt.NDArray[np.bool_]


def tune_streams(
    tunes: Sequence[npt.NDArray[np.int32]], seq_len: int, streams: int, seed: int
) -> TuneStreams:
    """Lay the tunes (in a seeded random order) end to end in `streams` parallel streams, each
    tune padded to whole windows of `seq_len` so that it starts at a window boundary; a tune
    goes to the stream that is shortest so far, and the streams are padded to equal length with
    empty windows. Padding has weight 0; the weights of each batch average over its real chars."""
    usable = [t for t in tunes if len(t) >= 2]
    if not usable or streams < 1 or seq_len < 1:
        raise InvalidInputError(
            f"need tunes of at least 2 chars, streams ≥ 1 and seq_len ≥ 1 "
            f"(got {len(usable)} tunes, {streams} streams, seq_len {seq_len})"
        )
    order = np.random.default_rng(seed).permutation(len(usable))
    lanes: list[list[int]] = [[] for _ in range(streams)]
    windows = np.zeros(streams, np.int64)
    for i in order:
        lane = int(np.argmin(windows))
        lanes[lane].append(int(i))
        windows[lane] += -(-(len(usable[int(i)]) - 1) // seq_len)
    steps = int(windows.max())
    x = np.zeros((streams, steps * seq_len), np.int32)
    y = np.zeros_like(x)
    mask = np.zeros(x.shape, np.float32)
    resets = np.zeros((steps, streams), np.bool_)
    for lane, members in enumerate(lanes):
        pos = 0
        for i in members:
            ids = usable[i]
            n = len(ids) - 1
            x[lane, pos : pos + n] = ids[:-1]
            y[lane, pos : pos + n] = ids[1:]
            mask[lane, pos : pos + n] = 1.0
            resets[pos // seq_len, lane] = True
            pos += -(-n // seq_len) * seq_len
    resets[0, :] = True  # an empty stream starts from zero too

    def windows_of(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return a.reshape(streams, steps, seq_len).transpose(1, 0, 2)

    xs, ys, ms = windows_of(x), windows_of(y), windows_of(mask)
    real = ms.sum(axis=(1, 2), keepdims=True)
    weights = np.where(real > 0, ms * (streams * seq_len) / np.maximum(real, 1), 0.0)
    ds = tf.data.Dataset.from_tensor_slices((xs, ys, weights.astype(np.float32)))
    return TuneStreams(
        dataset=ds.prefetch(tf.data.AUTOTUNE),
        steps=steps,
        chars=int(mask.sum()),
        padded_chars=int(mask.size),
        resets=resets,
    )


class StreamResetter(keras.callbacks.Callback):  # type: ignore[misc]  # Keras is untyped
    """Zeroes the LSTM state of the streams whose next window starts a tune, before each batch."""

    def __init__(self, layer: str, resets: npt.NDArray[np.bool_]) -> None:
        super().__init__()
        self.layer = layer
        self.keep = (~resets).astype(np.float32)

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        keep = self.keep[batch][:, None]
        for state in self.model.get_layer(self.layer).states:
            state.assign(state * keras.ops.cast(keep, state.dtype))
