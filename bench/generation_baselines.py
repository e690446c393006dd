"""What `bench/generation.py` compares the sampler with: the original recipe's per-char
``model.predict`` loop, a plain matmul of the step's main shape, and the FLOPs they do; and the
random-weight model both run.
"""

from __future__ import annotations

import math
import string
import time
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from common.abc.vocab import Vocab
from common.lstm.network import HEAD_LAYER, build_model

# The context the predict loop starts from: a full window of real ABC (a traditional jig).
CONTEXT = (
    "X:1\nT:The Kesh\nR:jig\nM:6/8\nL:1/8\nK:G\n"
    "|:GAG GAB|ABA ABd|edd gdd|edB dBA|GAG GAB|ABA ABd|edd gdB|AGF G3:|\n"
    "|:BAB dBd|ege dBA|BAB dBG|ABA AGA|BAB dBd|ege dBd|gfg aga|bgf g3:|\n"
)
# Newline share of the head's output: real ABC has a line of ~20-70 chars, and a tune ends at a
# blank line, so P(stop) per char ≈ p·(p + P(X)) ≈ 1/400 for p ≈ 0.045.
NEWLINE_SHARE = 0.045


@dataclass(frozen=True)
class Flops:
    """FLOPs per generated char (multiply-add = 2); gate element-wise ops are not counted."""

    vocab: int
    embedding: int
    units: int

    @property
    def recurrent(self) -> int:
        return 2 * self.units * 4 * self.units

    @property
    def head(self) -> int:
        return 2 * self.units * self.vocab

    @property
    def step(self) -> int:
        """What the sampler's step does: gather(E·K) + h·R + head."""
        return self.recurrent + self.head

    @property
    def model_equivalent(self) -> int:
        """The original Embedding→LSTM step: [x_emb, h]·[K; R] with (E + U)×4U, + head."""
        return 2 * (self.embedding + self.units) * 4 * self.units + self.head

    def main_matmul(self, batch: int) -> int:
        return batch * self.recurrent


class PredictLoop:
    """The original recipe's generator, timed char by char with a full window: predict over the
    last `window` chars, renormalise, draw; one ``model.predict`` per character.

    It starts from `window` chars of real ABC, so every char costs the recipe's steady state
    (from a short primer the first chars would run over shorter, faster windows).
    """

    def __init__(self, model: keras.Model, vocab: Vocab, *, window: int, seed: int) -> None:
        self.window = window
        self._model = model
        self._rng = np.random.default_rng(seed)
        context = (CONTEXT * (window // len(CONTEXT) + 1))[-window:]
        self._ids = list(vocab.encode(context))
        self.char_seconds: list[float] = []
        self._one_char()  # traces the predict function

    def _one_char(self) -> None:
        window = np.asarray([self._ids[-self.window :]], np.int32)
        probs = self._model.predict(window, verbose=0)[0, -1]
        probs = np.asarray(probs, np.float64)
        probs /= probs.sum()
        self._ids.append(int(np.argmax(self._rng.multinomial(1, probs))))

    def measure(self, chars: int) -> None:
        for _ in range(chars):
            started = time.perf_counter()
            self._one_char()
            self.char_seconds.append(time.perf_counter() - started)

    @property
    def chars_per_s(self) -> float:
        return rate(self.char_seconds)

    @property
    def best_chars_per_s(self) -> float:
        return 1 / min(self.char_seconds)


def matmul_dtype(precision: str) -> str:
    """The dtype the sampler's h·R runs in under `precision` (see common.lstm.sampler)."""
    return {"float32": "float32", "bfloat16": "bfloat16"}.get(precision, "float16")


def rate(char_seconds: list[float]) -> float:
    """Chars/s of a list of per-char times."""
    return len(char_seconds) / sum(char_seconds)


class Matmul:
    """A plain ``tf.matmul`` [batch, units] · [units, 4·units] in the sampler's matmul dtype,
    timed rep by rep."""

    def __init__(self, batch: int, units: int, flops: Flops, dtype: str = "float32") -> None:
        self.flops = flops.main_matmul(batch)
        self.dtype = dtype
        self._a = tf.cast(tf.random.normal([batch, units], seed=1), dtype)
        self._w = tf.cast(tf.random.normal([units, 4 * units], seed=2), dtype)
        tf.matmul(self._a, self._w)  # warm-up (thread pools, oneDNN primitives)
        self.rep_seconds: list[float] = []

    def measure(self, min_seconds: float, min_reps: int = 2) -> None:
        done = 0
        spent = 0.0
        while done < min_reps or spent < min_seconds:
            started = time.perf_counter()
            tf.matmul(self._a, self._w)  # eager CPU ops are synchronous
            elapsed = time.perf_counter() - started
            self.rep_seconds.append(elapsed)
            done += 1
            spent += elapsed

    @property
    def mean_gflops(self) -> float:
        return len(self.rep_seconds) * self.flops / sum(self.rep_seconds) / 1e9

    @property
    def best_gflops(self) -> float:
        return self.flops / min(self.rep_seconds) / 1e9


def make_vocab() -> Vocab:
    chars = "\n" + "".join(c for c in string.printable if c.isprintable())
    return Vocab(tuple(sorted(chars)))


def make_model(vocab: Vocab, embedding: int, units: int, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = build_model(len(vocab), embedding, units)
    head = model.get_layer(HEAD_LAYER)
    bias = np.zeros(len(vocab), np.float32)
    others = len(vocab) - 1
    bias[vocab.id_of("\n")] = math.log(others * NEWLINE_SHARE / (1 - NEWLINE_SHARE))
    head.bias.assign(bias)
    return model
