"""Which number format the matmuls run in, chosen per hardware by a rule we measured.

The LSTM step is one big matmul per character. On this project's reference CPU (x86 with AMX),
TensorFlow's oneDNN runs a 1,024×2,048 · 2,048×8,192 matmul about 4-5× faster in bfloat16 than in
float32, and GPUs have the same split with tensor cores. Weights and matmul inputs can be bf16
while the LSTM state, the gate arithmetic and the softmax stay float32, which keeps the model's
bits/char within a hundredth of float32's (see tests). The rule for ``auto``:

* a GPU that TensorFlow sees: ``bfloat16`` on compute capability ≥ 8.0 (Ampere, Hopper),
  else ``mixed_float16``;
* a CPU that reports ``amx_bf16`` or ``avx512_bf16``: ``bfloat16``;
* anything else: ``float32`` (bf16 without hardware support is emulated and slower).

Tunes sampled in different precisions from the same seed may differ: the probabilities differ
in the third decimal, and a sample near a boundary flips.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Literal

from common.errors import InvalidInputError

log = logging.getLogger(__name__)

Precision = Literal["float32", "bfloat16", "mixed_float16"]
CHOICES: tuple[str, ...] = ("auto", "float32", "bfloat16", "mixed_float16")
#: Keras dtype policies for training: the variables stay float32, the layers compute in 16 bits.
TrainingPolicy = Literal["float32", "mixed_bfloat16", "mixed_float16"]
#: ``auto`` trains in bf16 on a CPU with bf16 instructions from this many LSTM units up.
TRAIN_BF16_MIN_UNITS_ON_CPU = 1024


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        flags = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


@functools.cache
def _gpu_capability() -> tuple[int, int] | None:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    cap = details.get("compute_capability")
    return (int(cap[0]), int(cap[1])) if cap else (0, 0)


def resolve(requested: str) -> Precision:
    """The precision to use for `requested` on this machine; logs why when it falls back."""
    if requested not in CHOICES:
        raise InvalidInputError(f"unknown precision {requested!r}; choose one of {CHOICES}")
    gpu = _gpu_capability()
    if requested == "auto":
        if gpu is not None:
            return "bfloat16" if gpu >= (8, 0) else "mixed_float16"
        return "bfloat16" if cpu_has_bf16() else "float32"
    if requested == "bfloat16" and gpu is None and not cpu_has_bf16():
        log.warning(
            "bfloat16 requested but this CPU has no bf16 instructions (amx_bf16/avx512_bf16): "
            "falling back to float32, which is faster here"
        )
        return "float32"
    if requested == "mixed_float16" and gpu is None:
        log.warning("mixed_float16 needs a GPU; falling back to float32 on this CPU")
        return "float32"
    return requested  # type: ignore[return-value]


def training_policy(requested: str, units: int) -> TrainingPolicy:
    """The Keras dtype policy to train a model of `units` LSTM units with for `requested` (a
    `CHOICES` value, or the Keras name ``mixed_bfloat16``) on this machine; resolved where the
    training runs, not where it is submitted.

    ``auto``: a GPU trains with mixed precision (``mixed_bfloat16`` on compute capability ≥ 8.0,
    else ``mixed_float16``). A CPU with bf16 instructions trains in bf16 from
    `TRAIN_BF16_MIN_UNITS_ON_CPU` units up, else in float32. Measured with
    ``bench/training.py --throughput`` on this project's 2-core AMX CPU (optimizer steps alone):
    the ``seed`` preset (2,048 units) trains 1.11x faster in ``mixed_bfloat16`` at its batch of
    32 and 1.59x at the original's 128; the ``small`` preset (512 units) 0.98x at 32 and 1.13x at
    128 (its matmuls are too small for AMX to pay for the casts).
    """
    if requested == "mixed_bfloat16":
        requested = "bfloat16"
    if requested == "auto":
        gpu = _gpu_capability()
        if gpu is not None:
            return "mixed_bfloat16" if gpu >= (8, 0) else "mixed_float16"
        big = units >= TRAIN_BF16_MIN_UNITS_ON_CPU
        return "mixed_bfloat16" if big and cpu_has_bf16() else "float32"
    policies: dict[str, TrainingPolicy] = {
        "float32": "float32", "bfloat16": "mixed_bfloat16", "mixed_float16": "mixed_float16",
    }  # fmt: skip
    return policies[resolve(requested)]
