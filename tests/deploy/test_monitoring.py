"""The monitoring component (k8s/components/monitoring) on both overlays, checked offline.

Each overlay is built with the component added (a kustomization in a temporary folder that
names the overlay and the component), and the rendered objects are held to what Prometheus and
Grafana need: every PodMonitor selects pods that have the port it scrapes, the workers are told
to serve on that port, the NetworkPolicy lets Prometheus reach it, and the dashboard is valid
JSON whose queries use only metrics that exist (worker/metrics.py's, and Flower's).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import K8S, Doc, run, tool

COMPONENT = K8S / "components" / "monitoring"
#: Flower's own metric families (flower/events.py), used by the dashboard's Flower panels.
FLOWER_METRICS = {"flower_worker_online", "flower_events", "flower_task_runtime_seconds"}


@pytest.fixture(scope="module", params=["dev", "prod"])
def docs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[Doc]:
    folder = tmp_path_factory.mktemp(f"monitoring-{request.param}")
    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # Relative: kustomize refuses absolute paths to kustomizations.
                "resources": [os.path.relpath(K8S / "overlays" / request.param, folder)],
                "components": [os.path.relpath(COMPONENT, folder)],
            }
        )
    )
    result = run([tool("kubectl"), "kustomize", str(folder)])
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _pods(docs: list[Doc]) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """(pod labels, pod spec) of every Deployment and StatefulSet."""
    return [
        (d["spec"]["template"]["metadata"]["labels"], d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
    ]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def test_every_pod_monitor_scrapes_a_named_port_of_the_pods_it_selects(docs: list[Doc]) -> None:
    monitors = [d for d in docs if d["kind"] == "PodMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {
        "tunebatch-workers", "tunebatch-flower", "tunebatch-beat",
    }  # fmt: skip
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        selected = [
            spec for labels, spec in _pods(docs) if _selects(monitor["spec"]["selector"], labels)
        ]
        assert selected, f"{monitor['metadata']['name']} selects no pod"
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert endpoint["path"] == "/metrics"
            for spec in selected:
                names = {p["name"] for c in spec["containers"] for p in c.get("ports", [])}
                assert endpoint["port"] in names, (monitor["metadata"]["name"], names)
    workers = [
        labels["app.kubernetes.io/component"]
        for labels, _ in _pods(docs)
        for m in monitors
        if m["metadata"]["name"] == "tunebatch-workers" and _selects(m["spec"]["selector"], labels)
    ]
    assert sorted(workers) == ["cpu-worker", "gpu-worker"]
    (beat,) = [m for m in monitors if m["metadata"]["name"] == "tunebatch-beat"]
    assert [labels["app.kubernetes.io/component"] for labels, _ in _pods(docs)
            if _selects(beat["spec"]["selector"], labels)] == ["beat"]  # fmt: skip


def test_workers_serve_metrics_on_the_port_they_declare(docs: list[Doc]) -> None:
    (settings,) = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("tunebatch-settings")
    ]
    port = int(settings["data"]["TUNEBATCH_METRICS_PORT"])
    for labels, spec in _pods(docs):
        if labels["app.kubernetes.io/component"] not in ("gpu-worker", "cpu-worker", "beat"):
            continue
        (container,) = spec["containers"]
        assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in container["ports"]
        sources = [e["configMapRef"]["name"] for e in container.get("envFrom", [])]
        assert settings["metadata"]["name"] in sources


def test_prometheus_may_reach_the_scraped_ports(docs: list[Doc]) -> None:
    (policy,) = [d for d in docs if d["metadata"]["name"] == "metrics-ingress-prometheus"]
    ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert ports == {9100, 5555}
    for labels, _ in _pods(docs):
        component = labels["app.kubernetes.io/component"]
        assert _selects(policy["spec"]["podSelector"], labels) == (
            component in ("gpu-worker", "cpu-worker", "beat", "flower")
        )


def test_dashboard_queries_only_metrics_that_exist(docs: list[Doc]) -> None:
    (config_map,) = [d for d in docs if d["metadata"]["name"] == "tunebatch-grafana-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["tunebatch.json"])
    assert dashboard == json.loads((COMPONENT / "dashboard.json").read_text())
    ours = _metric_names()
    assert len(ours) >= 15, ours
    used: set[str] = set()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= set(re.findall(r"\b((?:tunebatch|flower)_[a-z_]+)", target["expr"]))
    known = {_family(name) for name in used}
    assert known <= ours | FLOWER_METRICS, known - ours - FLOWER_METRICS
    assert ours <= known, f"metrics not on the dashboard: {ours - known}"


def _family(name: str) -> str:
    return re.sub(r"_(total|bucket|sum|count)$", "", name)


def _metric_names() -> set[str]:
    """The metric families worker/metrics.py and worker/beat_metrics.py define (read from their
    source)."""
    worker = Path(__file__).resolve().parents[2] / "worker"
    source = "".join((worker / name).read_text() for name in ("metrics.py", "beat_metrics.py"))
    return set(re.findall(r'^\s+"(tunebatch_[a-z_]+)",', source, flags=re.MULTILINE))


def test_beat_alerts_read_metrics_beat_serves(docs: list[Doc]) -> None:
    """Each alert rule is complete and asks only for metrics beat (or a worker) defines; the
    one that says beat stopped ticking reads its last tick against the clock."""
    (rules,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rules["apiVersion"] == "monitoring.coreos.com/v1"
    alerts = {r["alert"]: r for g in rules["spec"]["groups"] for r in g["rules"]}
    assert {"TunebatchBeatNotTicking", "TunebatchScheduleSlotsMissed"} <= set(alerts)
    ours = _metric_names()
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        used = {_family(m) for m in re.findall(r"\b(tunebatch_[a-z_]+)", rule["expr"])}
        assert used and used <= ours, (name, used - ours)
    ticking = alerts["TunebatchBeatNotTicking"]["expr"]
    assert "time() - " in ticking and "tunebatch_beat_last_tick_timestamp_seconds" in ticking
