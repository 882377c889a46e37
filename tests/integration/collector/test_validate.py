"""Every shipped collector config passes ``otelcol-driftcar validate``, as shipped and as the
Kubernetes ConfigMaps and the compose file carry it, and the distribution holds exactly the
components they use plus the load-balancing exporter."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.collector import CONFIG_DIR, ROOT, collector_binary, validate

SHIPPED = sorted(p for p in CONFIG_DIR.glob("*.yaml") if p.name != "builder.yaml")
KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")


def _k8s_configs() -> list[tuple[str, str]]:
    """(name, collector config text) of every collector ConfigMap under deploy/k8s/."""
    out = []
    for path in sorted((ROOT / "deploy/k8s").glob("*/configmaps.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "ConfigMap" and "config.yaml" in doc.get("data", {}):
                out.append((f"{path.parent.name}/{doc['metadata']['name']}", doc["data"]["config.yaml"]))
    return out


def _compose_configs() -> list[tuple[str, Path]]:
    """(service, host path) of each collector config the compose file mounts."""
    compose_dir = ROOT / "deploy/compose"
    services = yaml.safe_load((compose_dir / "docker-compose.yaml").read_text())["services"]
    out = []
    for name, spec in services.items():
        if "opentelemetry-collector" not in str(spec.get("image", "")):
            continue
        for volume in spec.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.endswith(".yaml"):
                out.append((name, (compose_dir / source).resolve()))
    return out


def _assert_valid(result: subprocess.CompletedProcess, what: str) -> None:
    assert result.returncode == 0, f"{what}: {result.stdout}{result.stderr}"
    assert "deprecated" not in (result.stdout + result.stderr).lower(), f"{what} uses a deprecated name"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_validates(path):
    _assert_valid(validate(path), path.name)


@pytest.mark.parametrize("name,text", _k8s_configs(), ids=lambda v: v if isinstance(v, str) and "/" in v else "")
def test_kubernetes_configmap_validates(name, text, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    _assert_valid(validate(path), name)


def test_compose_mounts_a_config_that_validates():
    mounted = _compose_configs()
    assert mounted, "the compose file mounts no collector config"
    for service, path in mounted:
        _assert_valid(validate(path), f"compose {service}: {path.name}")


def test_validate_fails_on_a_broken_config(tmp_path):
    """The check can fail: an unknown component and a wrong OTTL path are both refused."""
    broken = yaml.safe_load((CONFIG_DIR / "direct.yaml").read_text())
    broken["processors"]["filter/drop_batches"]["logs"]["log_record"] = ['log.event_nam == "driftcar.batch"']
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = validate(path)
    assert result.returncode != 0 and "event_nam" in result.stdout + result.stderr
    broken["processors"]["routing"] = {}
    path.write_text(yaml.safe_dump(broken))
    assert validate(path).returncode != 0


def _components() -> dict[str, set[str]]:
    listed = yaml.safe_load(subprocess.run([collector_binary(), "components"], capture_output=True, text=True,
                                           timeout=30, check=True).stdout)
    return {kind: {c["name"] for c in listed.get(kind) or []} for kind in KINDS}


def test_distribution_has_what_the_configs_use_and_the_load_balancer():
    have = _components()
    used = {kind: set() for kind in KINDS}
    for path in SHIPPED:
        config = yaml.safe_load(path.read_text())
        for kind in KINDS:
            used[kind] |= {str(cid).split("/", 1)[0] for cid in config.get(kind) or {}}
    for kind in KINDS:
        assert used[kind] <= have[kind], f"{kind} missing from the distribution: {used[kind] - have[kind]}"
    assert "load_balancing" in have["exporters"]
    assert "file" in have["exporters"], "the tests' stand-in for Loki"
    # beyond what the configs use: the fleet's load balancer, and the tests' file and debug exporters
    allowed = {"exporters": {"load_balancing", "file", "debug"}}
    for kind in KINDS:
        assert have[kind] - used[kind] <= allowed.get(kind, set()), f"{kind}: the manifest names only what is used"


def test_an_unchanged_manifest_reuses_the_build():
    binary = Path(collector_binary())
    before = binary.stat().st_mtime_ns
    result = subprocess.run([str(CONFIG_DIR / "build.sh")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout and binary.stat().st_mtime_ns == before


def test_load_balancing_routes_logs_by_attributes(tmp_path):
    """What a fleet gateway config needs from the distribution: logs sharded by record attributes."""
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": {"load_balancing": {
            "routing_key": "attributes", "routing_attributes": ["model.name"],
            "protocol": {"otlp": {"tls": {"insecure": True}}},
            "resolver": {"static": {"hostnames": ["127.0.0.1:1", "127.0.0.1:2"]}}}},
        "service": {"pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["load_balancing"]}}},
    }))
    _assert_valid(validate(path), "load_balancing by attributes")
