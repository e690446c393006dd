"""bf16 sampling: honoured, close to float32, and falling back where the hardware lacks it."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest

from common.abc.corpus import load_corpus
from common.errors import InvalidInputError
from common.lstm import precision
from common.lstm.network import load_registered
from common.lstm.sampler import Sampler
from common.lstm.sampling import TuneRequest, generate
from common.params import SamplingParams
from tests.model_fixtures import TinyEnv


def segments(text: str, vocab: object, rows: int, length: int) -> np.ndarray:
    ids = vocab.encode(text)  # type: ignore[attr-defined]
    usable = (len(ids) // length) * length
    return np.asarray(ids[:usable]).reshape(-1, length)[:rows]


def test_bf16_probabilities_stay_close_to_float32(tiny_env: TinyEnv, tmp_path: Path) -> None:
    _, model, vocab = load_registered(tiny_env.store, tiny_env.model.id, tmp_path)
    text = load_corpus(tiny_env.store, "tiny").train_text
    segs = segments(text, vocab, rows=32, length=120)
    f32 = Sampler(model, vocab, precision="float32")
    bf16 = Sampler(model, vocab, precision="bfloat16")
    a, b = f32.nats_per_char(segs), bf16.nats_per_char(segs)
    # Stated tolerance: bits/char within 0.01 of float32's.
    assert abs(a - b) / math.log(2) < 0.01
    # And the float32 step scores what the Keras model scores on the same rows.
    probs = model.predict(segs[:, :-1], verbose=0)
    keras_nats = -np.mean(np.log(np.take_along_axis(probs, segs[:, 1:, None], -1)))
    assert abs(keras_nats - a) < 1e-3


def test_bf16_sampler_generates_and_is_deterministic(tiny_env: TinyEnv, tmp_path: Path) -> None:
    _, model, vocab = load_registered(tiny_env.store, tiny_env.model.id, tmp_path)
    params = SamplingParams(seed=2, max_chars=200)
    reqs = [TuneRequest(i) for i in range(4)]
    one = generate(Sampler(model, vocab, batch_size=4, precision="bfloat16"), params, reqs)
    two = generate(Sampler(model, vocab, batch_size=4, precision="bfloat16"), params, reqs)
    assert [t.text for t in one] == [t.text for t in two]
    assert all(t.text.startswith("X:") for t in one)


def test_resolve_rule_and_fallback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(precision, "_gpu_capability", lambda: None)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert precision.resolve("auto") == "float32"
    with caplog.at_level(logging.WARNING):
        assert precision.resolve("bfloat16") == "float32"
    assert "falling back to float32" in caplog.text
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert precision.resolve("auto") == "bfloat16"
    monkeypatch.setattr(precision, "_gpu_capability", lambda: (9, 0))
    assert precision.resolve("auto") == "bfloat16"
    monkeypatch.setattr(precision, "_gpu_capability", lambda: (7, 5))
    assert precision.resolve("auto") == "mixed_float16"
    with pytest.raises(InvalidInputError):
        precision.resolve("int4")


def test_cpu_flag_detection(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("flags\t: fpu sse avx512f avx512_bf16\n")
    assert precision.cpu_has_bf16(info)
    info.write_text("flags\t: fpu sse avx2\n")
    assert not precision.cpu_has_bf16(info)
    assert not precision.cpu_has_bf16(tmp_path / "missing")


def test_training_policy_rule_and_fallback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(precision, "_gpu_capability", lambda: (9, 0))
    assert precision.training_policy("auto", 64) == "mixed_bfloat16"
    monkeypatch.setattr(precision, "_gpu_capability", lambda: (7, 5))
    assert precision.training_policy("auto", 2048) == "mixed_float16"
    monkeypatch.setattr(precision, "_gpu_capability", lambda: None)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert precision.training_policy("auto", 2048) == "mixed_bfloat16"  # seed: bf16 pays
    assert precision.training_policy("auto", 512) == "float32"  # small: it does not
    assert precision.training_policy("bfloat16", 512) == "mixed_bfloat16"  # asked for
    assert precision.training_policy("mixed_bfloat16", 64) == "mixed_bfloat16"  # Keras' name
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert precision.training_policy("auto", 2048) == "float32"
    with caplog.at_level(logging.WARNING):
        assert precision.training_policy("bfloat16", 2048) == "float32"
        assert precision.training_policy("mixed_float16", 2048) == "float32"
    assert "falling back to float32" in caplog.text
