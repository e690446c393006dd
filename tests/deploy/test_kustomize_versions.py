"""Both overlays build, to the same objects, with the oldest supported kustomize and the newest.

kubectl 1.30 (kustomize v5.0) is the oldest kubectl docs/deploy.md supports; the dev extra's
kubectl (1.37, kustomize v5.8) is the newest. Kustomize has changed behaviour between them
before: v5.0 (kubectl 1.30) rejected, and v5.5 (kubectl 1.32) crashed on, a patch file holding
several ``$patch: delete`` documents, which newer releases accept; testing one version hid that.
"""

from __future__ import annotations

import pytest
import yaml

from tests.deploy import old_kubectl
from tests.deploy.manifests import run, tool

OVERLAYS = ("dev", "prod")


@pytest.fixture(scope="module")
def kubectl_1_30() -> str:
    path = old_kubectl.fetch()
    result = run([str(path), "version", "--client"])
    assert old_kubectl.VERSION in result.stdout, result.stdout + result.stderr
    return str(path)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_alike_with_kubectl_1_30_and_the_newest(
    overlay: str, kubectl_1_30: str
) -> None:
    built = {}
    for kubectl in (kubectl_1_30, tool("kubectl")):
        result = run([kubectl, "kustomize", f"k8s/overlays/{overlay}"])
        assert result.returncode == 0, f"{kubectl} kustomize {overlay}:\n{result.stderr[-2000:]}"
        built[kubectl] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    old, new = built.values()
    assert old == new
    assert len(new) > 10
