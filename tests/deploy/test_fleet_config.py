"""collector-config/fleet.yaml and deploy/k8s/fleet/: the shard key, the filter, the manifests.

The Collector itself runs fleet.yaml in tests/integration/fleet/test_fleet_collector.py; here the
structure is checked so a change that breaks sharding fails fast, and the Kubernetes objects are
validated against the API schema like the other variants (tests/deploy/test_k8s.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from driftcar.wire.otlp import ATTR_MODEL_NAME
from driftcar.wire.window import EVENT_NAME
from tests.deploy.test_k8s import K8S_VERSIONS, by_kind, check_workload, container, env, load_variant

ROOT = Path(__file__).resolve().parents[2]
FLEET = yaml.safe_load((ROOT / "collector-config" / "fleet.yaml").read_text())


def test_windows_are_routed_by_model_name_only():
    lb = FLEET["exporters"]["load_balancing"]
    assert lb["routing_key"] == "attributes" and lb["routing_attributes"] == [ATTR_MODEL_NAME]
    # queue and retries on the exporter itself, where drops are counted and retries re-hash
    assert lb["sending_queue"]["enabled"] and lb["retry_on_failure"]["enabled"]
    assert not lb["protocol"]["otlp"]["sending_queue"]["enabled"]
    assert not lb["protocol"]["otlp"]["retry_on_failure"]["enabled"]
    (pipeline,) = FLEET["service"]["pipelines"].values()
    assert pipeline["exporters"] == ["load_balancing"] and pipeline["processors"][0] == "memory_limiter"
    condition = FLEET["processors"]["filter/only_windows"]["logs"]["log_record"]
    assert condition == [f'not (log.event_name == "{EVENT_NAME}")']


def test_the_k8s_resolver_watches_the_headless_gateway_service():
    docs = load_variant("fleet")
    service = by_kind(docs, "Service")["driftcar-gateway"]
    assert service["spec"]["clusterIP"] == "None"
    collector = by_kind(docs, "Deployment")["otelcol-fleet"]
    config = yaml.safe_load(by_kind(docs, "ConfigMap")["otelcol-fleet-config"]["data"]["config.yaml"])
    assert config == FLEET, "the ConfigMap is collector-config/fleet.yaml (deploy/k8s/generate.py)"
    k8s = config["exporters"]["load_balancing"]["resolver"]["k8s"]
    assert env(container(collector, "otelcol"))["DRIFTCAR_GATEWAY_SERVICE"] == "driftcar-gateway.ml"
    assert "${env:DRIFTCAR_GATEWAY_SERVICE" in k8s["service"]
    assert k8s["ports"] == [service["spec"]["ports"][0]["port"]]
    rules = by_kind(docs, "Role")["driftcar-otelcol-fleet"]["rules"]
    assert {"endpointslices"} <= {r for rule in rules for r in rule["resources"]}


def test_pods_forward_to_the_fleet_collector_and_gateways_take_the_role():
    docs = load_variant("fleet")
    pod_env = env(container(by_kind(docs, "Deployment")["churn-model"], "driftcar"))
    collector_service = by_kind(docs, "Service")["otelcol-fleet"]
    assert pod_env["DRIFTCAR_FORWARD"] == f"otelcol-fleet:{collector_service['spec']['ports'][0]['port']}"
    gateway_env = env(container(by_kind(docs, "Deployment")["driftcar-gateway"], "driftcar"))
    assert gateway_env["DRIFTCAR_ROLE"] == "gateway" and gateway_env["DRIFTCAR_GRPC"].endswith(":14317")
    policy = by_kind(docs, "NetworkPolicy")["driftcar-gateway"]
    assert policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "otelcol-fleet"}


def test_workloads_are_hardened():
    docs = load_variant("fleet")
    configmaps = set(by_kind(docs, "ConfigMap"))
    for deployment in by_kind(docs, "Deployment").values():
        assert check_workload(deployment, configmaps) == []


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schema(version):
    import kubernetes_validate as kv

    for doc in load_variant("fleet"):
        kv.validate(doc, version, strict=True)


def test_the_collector_accepts_fleet_yaml():
    from tests.support.collector import validate

    result = validate(ROOT / "collector-config" / "fleet.yaml")
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_collector_refuses_attribute_routing_without_attributes(tmp_path):
    from tests.support.collector import validate

    broken = yaml.safe_load((ROOT / "collector-config" / "fleet.yaml").read_text())
    del broken["exporters"]["load_balancing"]["routing_attributes"]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = validate(path)
    assert result.returncode != 0 and "routing_attributes" in result.stderr + result.stdout
