"""Offline checks of docker/compose.yaml: valid Compose, and the whole system in it.

No Docker engine runs where the tests run, so the file is checked statically: parsed with PyYAML
(anchors and merge keys resolved, as Compose does), validated against the Compose Specification's
JSON schema (vendored in check-jsonschema), then held to what docs/deploy.md promises.
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.deploy.manifests import COMPOSE_FILE, DOCKER, load_yaml

REQUIRED_SERVICES = {
    "redis",
    "minio",
    "createbuckets",
    "gpu-worker",
    "gpu-worker-cpu",
    "cpu-worker",
    "beat",
    "flower",
}
#: Services that run once and exit, or only on `docker compose run`: no healthcheck needed.
ONE_SHOT = {"createbuckets", "producer"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(
        files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(compose)
    ]
    assert not errors, "\n".join(errors)
    broken = {**compose, "services": {**compose["services"], "redis": {"imagee": "redis"}}}
    assert list(validator.iter_errors(broken)), "the schema must reject an unknown key"


def test_the_whole_system_is_there(services: dict[str, Any]) -> None:
    assert set(services) >= REQUIRED_SERVICES, sorted(REQUIRED_SERVICES - set(services))


def test_named_volumes_hold_the_state(compose: dict[str, Any], services: dict[str, Any]) -> None:
    volumes = set(compose["volumes"])
    assert {"redis-data", "minio-data", "worker-cache"} <= volumes
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert "minio-data:/data" in services["minio"]["volumes"]
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            assert source in volumes, f"{name}: {mount} is not a named volume"


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name}: healthcheck without {key}"


def test_redis_keeps_an_append_only_file_behind_a_password(services: dict[str, Any]) -> None:
    redis = services["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    password = command[command.index("--requirepass") + 1]
    assert re.fullmatch(r"\$\{REDIS_PASSWORD:\?[^}]*\}", password), password
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    # The healthcheck authenticates through REDISCLI_AUTH, from the same variable.
    assert redis["environment"]["REDISCLI_AUTH"] == password
    # Every client's broker URL carries that password.
    for name in ("gpu-worker", "cpu-worker", "beat", "flower"):
        url = services[name]["environment"]["CELERY_BROKER_URL"]
        assert url.startswith("redis://:${REDIS_PASSWORD:?") and url.endswith("@redis:6379/0")


def test_gpu_worker_reserves_a_gpu_and_has_a_cpu_fallback(services: dict[str, Any]) -> None:
    gpu = services["gpu-worker"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    fallback = services["gpu-worker-cpu"]
    assert fallback["profiles"] == ["cpu-fallback"]
    assert "deploy" not in fallback
    # Same queue, same node naming, on the cpu-worker image (TensorFlow on the CPU).
    assert fallback["command"] == gpu["command"]
    assert fallback["command"][0] == "gpu"
    assert fallback["image"] == services["cpu-worker"]["image"]


def test_workers_ping_their_own_node_name(services: dict[str, Any]) -> None:
    for name in ("gpu-worker", "gpu-worker-cpu", "cpu-worker"):
        service = services[name]
        command = service["command"]
        role = command[0]
        assert command[command.index("--name") + 1] == f"{role}@%h"
        test = " ".join(service["healthcheck"]["test"])
        # $$ is Compose's escape for a literal $: the shell in the container expands $HOSTNAME.
        assert f'celery inspect ping --destination "{role}@$$HOSTNAME"' in test, test
        assert "CELERY_BROKER_URL" in service["environment"]


def test_start_order_waits_for_redis_and_the_bucket(services: dict[str, Any]) -> None:
    assert services["createbuckets"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for name in ("gpu-worker", "gpu-worker-cpu", "cpu-worker"):
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["createbuckets"]["condition"] == "service_completed_successfully"
    assert services["createbuckets"]["restart"] == "no"


def test_beat_runs_redbeat_once(services: dict[str, Any]) -> None:
    beat = services["beat"]
    # The image's entrypoint `worker`: `worker beat` runs redbeat (worker.beat:Scheduler) with
    # the loop interval and lock timeout of the settings; no --max-interval to get wrong.
    assert "entrypoint" not in beat and beat["command"][0] == "beat", beat
    assert not any(str(part).startswith("--max-interval") for part in beat["command"])
    assert "deploy" not in beat or beat["deploy"].get("replicas", 1) == 1


def test_images_are_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image}"
    assert services["minio"]["image"].startswith("minio/minio:RELEASE.")
    assert services["createbuckets"]["image"].startswith("minio/mc:RELEASE.")
    assert re.fullmatch(r"mher/flower:\d+\.\d+\.\d+", services["flower"]["image"])


def test_our_containers_are_hardened(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if "build" not in service:
            continue
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_every_variable_is_documented_in_the_env_example() -> None:
    """Each ${VAR} the compose file reads is named in docker/.env.example."""
    text = COMPOSE_FILE.read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))
    example = (DOCKER / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    assert used <= documented, sorted(used - documented)
    assert "COMPOSE_PROFILES" in documented


def _program(folder: Path, name: str, script: str) -> None:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def test_the_compose_runner_takes_v2_where_the_plugin_runs_else_v1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make compose-test` on a host with Compose v2 only, v1 only (Debian bookworm: docker.io
    without the plugin, which answers `docker compose` with an error), both, or neither. The
    programs here answer `version` the way each kind does."""
    from tests.compose.run import compose_command

    docker_v2 = (
        'if [ "$1" = compose ] && [ "$2" = version ]; then echo "v2.29.7"; exit 0; fi\nexit 1'
    )
    docker_without_plugin = "echo \"docker: 'compose' is not a docker command.\" >&2; exit 1"
    compose_v1 = (
        'if [ "$1" = version ]; then echo "docker-compose version 1.29.2"; exit 0; fi\nexit 1'
    )
    v2, v1, both, neither = (tmp_path / n for n in ("v2", "v1", "both", "neither"))
    _program(v2, "docker", docker_v2)
    _program(v1, "docker", docker_without_plugin)
    _program(v1, "docker-compose", compose_v1)
    _program(both, "docker", docker_v2)
    _program(both, "docker-compose", compose_v1)
    _program(neither, "docker", docker_without_plugin)
    for folder, expected in ((v2, ["docker", "compose"]), (v1, ["docker-compose"]),
                             (both, ["docker", "compose"])):  # fmt: skip
        monkeypatch.setenv("PATH", str(folder))
        assert compose_command() == expected, folder.name
    monkeypatch.setenv("PATH", str(neither))
    with pytest.raises(RuntimeError, match="apt-get install docker-compose"):
        compose_command()
