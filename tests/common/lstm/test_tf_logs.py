"""TensorFlow's start-up lines kept off stderr unless asked (common.lstm.tf_logs)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common.lstm.tf_logs import filtered_stderr, is_startup_noise

# What TensorFlow 2.21 printed on this project's CPU machines, word for word.
NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796577688.775938    6561 port.cc:153] oneDNN custom operations are on. You may "
    "see slightly different numerical results due to floating-point round-off errors.",
    "I0000 00:00:1796577688.776316    6561 cudart_stub.cc:31] Could not find cuda drivers on your "
    "machine, GPU will not be used.",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1796577691.696634    6561 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
]


@pytest.mark.parametrize("line", NOISE)
def test_start_up_lines_are_noise(line: str) -> None:
    assert is_startup_noise(line + "\n")


@pytest.mark.parametrize(
    "line",
    [
        "E0000 00:00:1796577691.696634    6561 bfc_allocator.cc:485] Allocator ran out of memory",
        "W0000 00:00:1796577691.696634    6561 op_kernel.cc:1840] OP_REQUIRES failed",
        "Traceback (most recent call last):",
        "error: no model is registered",
        "epoch 1/5",
    ],
)
def test_everything_else_is_kept(line: str) -> None:
    assert not is_startup_noise(line)


def test_filtered_stderr_writes_back_what_it_keeps(capfd: pytest.CaptureFixture[str]) -> None:
    with filtered_stderr(lambda line: not is_startup_noise(line)):
        os.write(2, (NOISE[0] + "\nthe real error\n" + NOISE[2] + "\n").encode())
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "the real error\nafter\n"


def _import_tensorflow(show: bool) -> str:
    code = (
        "from common.lstm.tf_logs import quiet_startup\n"
        f"quiet_startup(show={show})\n"
        "import keras, tensorflow as tf\n"
        "print(int(tf.constant(1) + 1))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0 and done.stdout == "2\n", done.stderr
    return done.stderr


def test_tensorflow_starts_silently_unless_asked() -> None:
    """The same import prints its start-up lines with show=True, so the quiet run had some to
    hide (a TensorFlow that prints none would make the quiet assertion empty)."""
    loud = _import_tensorflow(show=True)
    assert any(is_startup_noise(line) for line in loud.splitlines()), loud
    assert _import_tensorflow(show=False) == ""
