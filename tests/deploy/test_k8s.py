"""Static checks of deploy/k8s/: well-formed objects, hardened containers, ConfigMaps that equal
their source files, and ports/endpoints that agree across the model, collector and driftcar."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
VARIANTS = ("collector-centric", "gateway")


def load_variant(variant: str) -> list[dict]:
    kustomization = yaml.safe_load((K8S / variant / "kustomization.yaml").read_text())
    docs = []
    for resource in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / variant / resource).read_text()) if d]
    return docs


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container(deployment, name):
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def env(c) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def port_of(url: str) -> int:
    return int(re.search(r":(\d+)/?$", url).group(1))


def check_workload(deployment: dict, configmaps: set[str]) -> list[str]:
    """Problems with one Deployment: probes, resources, security context, volumes."""
    problems = []
    name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"].get("labels", {})
    selector = deployment["spec"]["selector"]["matchLabels"]
    if any(labels.get(k) != v for k, v in selector.items()):
        problems.append(f"{name}: selector does not match the pod labels")
    if not (pod.get("securityContext") or {}).get("runAsNonRoot"):
        problems.append(f"{name}: pod securityContext.runAsNonRoot must be true")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for v in volumes.values():
        if "configMap" in v and v["configMap"]["name"] not in configmaps:
            problems.append(f"{name}: volume {v['name']} uses unknown ConfigMap {v['configMap']['name']}")
    for c in pod["containers"]:
        where = f"{name}/{c['name']}"
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in c:
                problems.append(f"{where}: no {probe}")
        ports = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            http = (c.get(probe) or {}).get("httpGet")
            if http and http["port"] not in ports:
                problems.append(f"{where}: {probe} uses port {http['port']!r} the container does not declare")
        resources = c.get("resources") or {}
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(part) or {}):
                problems.append(f"{where}: resources.{part} needs cpu and memory")
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem must be true")
        if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
            problems.append(f"{where}: capabilities must drop ALL")
        for mount in c.get("volumeMounts", []):
            if mount["name"] not in volumes:
                problems.append(f"{where}: mounts undefined volume {mount['name']}")
    return problems


@pytest.mark.parametrize("variant", VARIANTS)
def test_documents_are_well_formed(variant):
    docs = load_variant(variant)
    assert docs
    for d in docs:
        assert d.get("apiVersion") and d.get("kind") and d["metadata"].get("name"), d


@pytest.mark.parametrize("variant", VARIANTS)
def test_workloads_have_probes_resources_and_security_context(variant):
    docs = load_variant(variant)
    configmaps = set(by_kind(docs, "ConfigMap"))
    deployments = by_kind(docs, "Deployment")
    assert deployments
    for deployment in deployments.values():
        assert check_workload(deployment, configmaps) == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_services_select_pods_and_target_declared_ports(variant):
    docs = load_variant(variant)
    deployments = by_kind(docs, "Deployment").values()
    for service in by_kind(docs, "Service").values():
        pods = [d for d in deployments if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v
                                              for k, v in service["spec"]["selector"].items())]
        assert pods, f"service {service['metadata']['name']} selects nothing"
        declared = {p.get("name") for d in pods for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in declared


def test_configmaps_are_generated_from_the_source_files():
    result = subprocess.run([sys.executable, str(K8S / "generate.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    centric = by_kind(load_variant("collector-centric"), "ConfigMap")
    assert centric["otelcol-config"]["data"]["config.yaml"] == (ROOT / "collector-config/collector-centric.yaml").read_text()
    assert centric["driftcar-config"]["data"]["driftcar.yaml"] == (ROOT / "deploy/driftcar.yaml").read_text()
    gateway = by_kind(load_variant("gateway"), "ConfigMap")
    assert gateway["otelcol-gateway-config"]["data"]["config.yaml"] == (ROOT / "collector-config/direct.yaml").read_text()


def test_generate_check_detects_a_stale_configmap(tmp_path, monkeypatch):
    sys.path.insert(0, str(K8S))
    try:
        import generate
    finally:
        sys.path.remove(str(K8S))
    stale = tmp_path / "collector-centric"
    stale.mkdir()
    (stale / "configmaps.yaml").write_text("# edited by hand\n")
    monkeypatch.setattr(generate, "HERE", tmp_path)
    monkeypatch.setattr(generate, "TARGETS", {"collector-centric/configmaps.yaml": generate.TARGETS["collector-centric/configmaps.yaml"]})
    assert generate.main(["--check"]) == 1


def test_collector_centric_endpoints_agree():
    docs = load_variant("collector-centric")
    pod = by_kind(docs, "Deployment")["churn-model"]
    collector = yaml.safe_load(by_kind(docs, "ConfigMap")["otelcol-config"]["data"]["config.yaml"])
    driftcar = yaml.safe_load(by_kind(docs, "ConfigMap")["driftcar-config"]["data"]["driftcar.yaml"])
    model_env, driftcar_env = env(container(pod, "model")), env(container(pod, "driftcar"))
    app_port = port_of(collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    return_port = port_of(collector["receivers"]["otlp/from_driftcar"]["protocols"]["grpc"]["endpoint"])
    assert port_of(model_env["DRIFTCAR_ENDPOINT"]) == app_port, "hook -> collector"
    assert port_of(driftcar_env["OTEL_EXPORTER_OTLP_ENDPOINT"]) == return_port, "driftcar -> separate receiver"
    assert return_port != app_port
    assert collector["exporters"]["otlp_grpc/driftcar"]["endpoint"] == driftcar["grpc"], "collector -> driftcar"
    assert driftcar["grpc"].startswith("127.0.0.1:") and not driftcar.get("allow_insecure_bind"), "pod-local binds"


def test_gateway_endpoints_agree():
    docs = load_variant("gateway")
    pod = by_kind(docs, "Deployment")["churn-model"]
    service = by_kind(docs, "Service")["otelcol-gateway"]
    driftcar = yaml.safe_load(by_kind(docs, "ConfigMap")["driftcar-config"]["data"]["driftcar.yaml"])
    assert [c["name"] for c in pod["spec"]["template"]["spec"]["containers"]] == ["model", "driftcar"]
    assert env(container(pod, "model"))["DRIFTCAR_ENDPOINT"].endswith(driftcar["grpc"]), "hook -> driftcar"
    out = env(container(pod, "driftcar"))["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert out == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_driftcar_exec_probes_hit_its_http_port(variant):
    docs = load_variant(variant)
    driftcar = yaml.safe_load(by_kind(docs, "ConfigMap")["driftcar-config"]["data"]["driftcar.yaml"])
    c = container(by_kind(docs, "Deployment")["churn-model"], "driftcar")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        command = c[probe]["exec"]["command"]
        assert command[:2] == ["python", "-c"]
        assert f"http://{driftcar['http']}{path}" in command[2]
        compile(command[2], probe, "exec")


def test_checker_reports_a_container_without_probes_or_hardening():
    docs = load_variant("collector-centric")
    deployment = copy.deepcopy(by_kind(docs, "Deployment")["churn-model"])
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    del c["livenessProbe"]
    c["securityContext"]["readOnlyRootFilesystem"] = False
    del c["resources"]["limits"]
    problems = check_workload(deployment, set(by_kind(docs, "ConfigMap")))
    assert any("no livenessProbe" in p for p in problems)
    assert any("readOnlyRootFilesystem" in p for p in problems)
    assert any("resources.limits" in p for p in problems)


#: Kubernetes versions the manifests must be valid for (preStop ``sleep`` needs >= 1.30 by default)
K8S_VERSIONS = ("1.30", "1.34")


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_manifests_validate_against_the_kubernetes_schema(variant, version):
    import kubernetes_validate as kv

    for doc in load_variant(variant):
        kv.validate(doc, version, strict=True)  # strict: unknown (misspelt) fields are errors


def test_schema_validation_catches_a_misspelt_field():
    import kubernetes_validate as kv

    deployment = copy.deepcopy(by_kind(load_variant("collector-centric"), "Deployment")["churn-model"])
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    c["readinesProbe"] = c.pop("readinessProbe")
    with pytest.raises(kv.ValidationError, match="readinesProbe"):
        kv.validate(deployment, K8S_VERSIONS[-1], strict=True)
