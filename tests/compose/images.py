"""Run the built images the way Kubernetes does, and check what each must do (`make images`).

Every image runs as user 10001 with a read-only root filesystem, tmpfs where the k8s manifests
mount an emptyDir, no capabilities and no privilege escalation (k8s/base/*.yaml), and must:

* cpu-worker: run its entrypoint, render a tune to MIDI and WAV with the real tools (abc2midi,
  timidity) inside those limits, and have the probe command (`celery inspect ping`);
* gpu-worker: run its entrypoint, import TensorFlow, check a tune with abc2midi, have the probe;
* producer: run the CLI, and contain no TensorFlow, Keras or music21 at all.

Each container gets the settings the k8s workloads get (k8s/base/settings.env: among them
``TUNEBATCH_SANDBOX=auto``, because a container without capabilities under the runtime's default
seccomp profile cannot create the user namespace bubblewrap needs; see docs/security.md).

The probes themselves answer in `make compose-test` (the Compose healthchecks run the same
commands against the live workers). Prints each image's size.

Usage: python -m tests.compose.images [TAG]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: The settings every k8s workload reads (its ConfigMap), passed to each container as they are.
SETTINGS_ENV = Path(__file__).resolve().parents[2] / "k8s" / "base" / "settings.env"

#: k8s/base: the emptyDir mounts of each workload.
TMPFS = {
    "cpu-worker": ["/tmp", "/home/tunebatch", "/var/lib/tunebatch"],
    "gpu-worker": ["/tmp", "/home/tunebatch", "/var/lib/tunebatch"],
    "producer": ["/tmp", "/home/tunebatch"],
}

RENDER = """
from common.render.pipeline import rendered
from common.settings import Settings
tune = "X:1\\nT:Check\\nM:6/8\\nL:1/8\\nK:D\\n|:DFA dAF|GBd gdB|AFD DFA|1 d3 d3:|2 d3 d2|]\\n"
with rendered(tune, ["abc", "mid", "wav"], Settings()) as result:
    sizes = {fmt: path.stat().st_size for fmt, path in result.files.items()}
assert sizes["mid"] > 0 and sizes["wav"] > 10000, sizes
print("rendered", sizes)
"""
GPU = """
import pathlib, subprocess, tensorflow as tf
print("tensorflow", tf.__version__, "GPUs:", len(tf.config.list_physical_devices("GPU")))
pathlib.Path("/tmp/t.abc").write_text("X:1\\nT:Check\\nM:2/4\\nL:1/8\\nK:G\\nGABc|d2d2|]\\n")
subprocess.run(["abc2midi", "/tmp/t.abc", "-o", "/tmp/t.mid"], check=True, timeout=30)
assert pathlib.Path("/tmp/t.mid").stat().st_size > 0
print("abc2midi wrote a MIDI file")
"""
NO_TF = """
import importlib.util, sys
found = [m for m in ("tensorflow", "keras", "music21") if importlib.util.find_spec(m)]
assert not found, f"the producer image contains {found}"
assert importlib.util.find_spec("worker") is None, "the producer image contains worker/"
import producer.cli
print("producer image: no tensorflow, keras, music21 or worker/")
"""


def docker_run(image: str, role: str, *args: str, entrypoint: str | None = None) -> str:
    argv = [
        "docker", "run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--user", "10001:10001",
        "--env-file", str(SETTINGS_ENV),
    ]  # fmt: skip
    for path in TMPFS[role]:
        argv += ["--tmpfs", f"{path}:uid=10001,gid=10001"]
    if entrypoint:
        argv += ["--entrypoint", entrypoint]
    result = subprocess.run(
        [*argv, image, *args], capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{role}: {' '.join(args)} exited {result.returncode}\n{result.stdout[-2000:]}"
            f"\n{result.stderr[-3000:]}"
        )
    return result.stdout


def check(tag: str) -> None:
    for role in ("cpu-worker", "gpu-worker", "producer"):
        image = f"tunebatch/{role}:{tag}"
        uid = docker_run(image, role, "-u", entrypoint="id").strip()
        assert uid == "10001", f"{role} runs as {uid}"
        configured = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Config.User}}", image],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert configured == "10001:10001", f"{role}: USER {configured}"
        if role == "producer":
            docker_run(image, role, "--help")
            print(docker_run(image, role, "-c", NO_TF, entrypoint="python").strip())
        else:
            docker_run(image, role, "--help")
            docker_run(image, role, "--version", entrypoint="celery")
            code = RENDER if role == "cpu-worker" else GPU
            print(f"{role}:", docker_run(image, role, "-c", code, entrypoint="python").strip())
        size = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Size}}", image],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        print(f"{image}: {int(size) / 1e6:,.0f} MB, runs as 10001 read-only without capabilities")


if __name__ == "__main__":
    check(sys.argv[1] if len(sys.argv) > 1 else "dev")
