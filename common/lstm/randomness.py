"""Random numbers without random state: the draws of a tune depend only on where they are.

Each try of each tune has a 32-bit stream key (`tune_seed`, from the batch seed, the tune's index
and the try); the uniform for a vocabulary entry at a position is a hash of (key, position,
entry). Sampling is Gumbel-max over those uniforms (`choose`), which is exactly sampling from
softmax(logits / T). So the same model, seed and parameters give the same tunes whatever the batch
size, the chunking or the worker that ran them.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt
import tensorflow as tf

_GOLDEN = 0x9E3779B9
_M1 = 0x7FEB352D
_M2 = 0x846CA68B
_VMUL = 0x85EBCA6B
_VADD = 0xC2B2AE35


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


def uniforms_np(
    seeds: npt.NDArray[np.uint32], pos: npt.NDArray[np.int32], vocab_size: int
) -> npt.NDArray[np.float32]:
    """Reference (NumPy) of the in-graph uniforms, for tests: shape [B, V] in (0, 1)."""
    with np.errstate(over="ignore"):
        k1 = _np_mix32(seeds + np.uint32(_GOLDEN) * (pos.astype(np.uint32) + np.uint32(1)))
        v = np.arange(vocab_size, dtype=np.uint32) * np.uint32(_VMUL) + np.uint32(_VADD)
        bits = _np_mix32(k1[:, None] ^ v[None, :])
    return (((bits >> np.uint32(8)).astype(np.float32)) + np.float32(0.5)) / np.float32(1 << 24)


def uniforms(seeds: tf.Tensor, pos: tf.Tensor, vocab_size: int) -> tf.Tensor:
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
    u = uniforms(seeds, pos, vocab_size)
    gumbel = -tf.math.log(-tf.math.log(u))
    sampled = tf.argmax(scaled + gumbel, axis=-1, output_type=tf.int32)
    return tf.where(temperature > 0, sampled, greedy)
