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

from common.errors import InvalidInputError
from common.params import Precision, SamplerPrecision, TrainingPolicy

log = logging.getLogger(__name__)

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


def resolve(requested: str) -> SamplerPrecision:
    """The precision to sample in for `requested` (a `Precision` value) on this machine; logs
    why when it falls back."""
    try:
        wanted = Precision(requested)
    except ValueError:
        raise InvalidInputError(
            f"unknown precision {requested!r}; choose one of {', '.join(Precision)}"
        ) from None
    gpu = _gpu_capability()
    if wanted == Precision.AUTO:
        if gpu is not None:
            return "bfloat16" if gpu >= (8, 0) else "mixed_float16"
        return "bfloat16" if cpu_has_bf16() else "float32"
    if wanted == Precision.BFLOAT16:
        if gpu is None and not cpu_has_bf16():
            log.warning(
                "bfloat16 requested but this CPU has no bf16 instructions (amx_bf16/avx512_bf16): "
                "falling back to float32, which is faster here"
            )
            return "float32"
        return "bfloat16"
    if wanted == Precision.MIXED_FLOAT16:
        if gpu is None:
            log.warning("mixed_float16 needs a GPU; falling back to float32 on this CPU")
            return "float32"
        return "mixed_float16"
    return "float32"


#: The training policy of each sampler precision: the variables stay float32.
_POLICIES: dict[SamplerPrecision, TrainingPolicy] = {
    "float32": "float32", "bfloat16": "mixed_bfloat16", "mixed_float16": "mixed_float16",
}  # fmt: skip


def training_policy(requested: str, units: int) -> TrainingPolicy:
    """The Keras dtype policy to train a model of `units` LSTM units with for `requested` (a
    `Precision` value, or the Keras name ``mixed_bfloat16`` a model record keeps) on this
    machine; resolved where the training runs, not where it is submitted.

    ``auto``: a GPU trains with mixed precision (``mixed_bfloat16`` on compute capability ≥ 8.0,
    else ``mixed_float16``). A CPU with bf16 instructions trains in bf16 from
    `TRAIN_BF16_MIN_UNITS_ON_CPU` units up, else in float32. Measured with
    ``bench/training.py --throughput`` on this project's 2-core AMX CPU (optimizer steps alone):
    the ``seed`` preset (2,048 units) trains 1.11x faster in ``mixed_bfloat16`` at its batch of
    32 and 1.59x at the original's 128; the ``small`` preset (512 units) 0.98x at 32 and 1.13x at
    128 (its matmuls are too small for AMX to pay for the casts).
    """
    if requested == "mixed_bfloat16":
        requested = Precision.BFLOAT16
    if requested == Precision.AUTO:
        gpu = _gpu_capability()
        if gpu is not None:
            return "mixed_bfloat16" if gpu >= (8, 0) else "mixed_float16"
        big = units >= TRAIN_BF16_MIN_UNITS_ON_CPU
        return "mixed_bfloat16" if big and cpu_has_bf16() else "float32"
    return _POLICIES[resolve(requested)]
