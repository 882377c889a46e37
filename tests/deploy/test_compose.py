"""Static checks of deploy/compose/: every service the stack needs, files that exist, addresses that
agree with collector-config/local.yaml, a driftcar environment the sidecar accepts, and Grafana
data sources matching the dashboard (the images cannot be pulled here, so nothing is started)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.waiting import require_binary

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
REQUIRED = {"model", "driftcar", "otelcol", "prometheus", "grafana", "loki", "tempo"}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((COMPOSE_DIR / "docker-compose.yaml").read_text())


def local_collector() -> dict:
    return yaml.safe_load((ROOT / "collector-config" / "local.yaml").read_text())


def host_port(url: str) -> tuple[str, int]:
    match = re.match(r"^(?:\w+://)?([^:/]+):(\d+)", url)
    return match.group(1), int(match.group(2))


def test_the_stack_has_every_service(compose):
    assert REQUIRED <= set(compose["services"])


def test_mounted_files_and_build_contexts_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} missing"
        build = service.get("build")
        if build:
            context = COMPOSE_DIR / build["context"]
            assert (context / build.get("dockerfile", "Dockerfile")).exists(), name
        for dep in service.get("depends_on", []):
            assert dep in compose["services"], f"{name} depends on unknown {dep}"


def test_addresses_agree_with_the_collector_config(compose):
    collector = local_collector()
    services = compose["services"]
    env = {name: s.get("environment", {}) for name, s in services.items()}
    # collector -> driftcar: the exporter targets the driftcar service on its gRPC port
    host, port = host_port(collector["exporters"]["otlp_grpc/driftcar"]["endpoint"])
    assert host == "driftcar" and port == host_port(env["driftcar"]["DRIFTCAR_GRPC"])[1]
    # driftcar -> collector: on the separate return receiver, not the app's
    host, port = host_port(env["driftcar"]["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert host == "otelcol"
    assert port == host_port(collector["receivers"]["otlp/from_driftcar"]["protocols"]["grpc"]["endpoint"])[1]
    # the app and its hook -> the collector's app receiver
    app_port = host_port(collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])[1]
    for key in ("DRIFTCAR_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        assert host_port(env["model"][key]) == ("otelcol", app_port)
    # backends named in the collector config are compose services
    for exporter in ("prometheus_remote_write", "otlp_http/loki", "otlp_grpc/traces"):
        assert host_port(collector["exporters"][exporter]["endpoint"])[0] in services
    assert "--web.enable-remote-write-receiver" in services["prometheus"]["command"]


def test_driftcar_environment_is_accepted_only_with_the_explicit_insecure_bind(compose):
    import driftcar.sidecar.config as config_mod

    env = {k: str(v) for k, v in compose["services"]["driftcar"]["environment"].items() if k.startswith("DRIFTCAR_")}
    config = config_mod.load_config(None, env=env)
    assert config.grpc.host == "0.0.0.0" and config.allow_insecure_bind
    without = {k: v for k, v in env.items() if k != "DRIFTCAR_ALLOW_INSECURE_BIND"}
    with pytest.raises(config_mod.ConfigError, match="allow_insecure_bind"):
        config_mod.load_config(None, env=without)


def test_grafana_datasources_match_the_dashboard():
    provisioned = yaml.safe_load((COMPOSE_DIR / "grafana/provisioning/datasources/datasources.yaml").read_text())
    uids = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    dashboard = json.loads((ROOT / "deploy/grafana/driftcar.json").read_text())
    used = {(t["datasource"]["uid"], t["datasource"]["type"]) for p in dashboard["panels"] for t in p.get("targets", [])}
    for uid, kind in used:
        assert uids.get(uid) == kind, f"dashboard uses {kind} data source {uid!r}, not provisioned"
    derived = [f for d in provisioned["datasources"] for f in (d.get("jsonData") or {}).get("derivedFields", [])]
    assert derived and all(f["datasourceUid"] in uids for f in derived), "log lines link to traces"


def test_loadgen_module_exists(compose):
    entry = compose["services"]["loadgen"]["entrypoint"]
    module = entry[entry.index("-m") + 1]
    assert (ROOT / (module.replace(".", "/") + ".py")).exists()


def test_promtool_accepts_the_prometheus_config(tmp_path):
    promtool = require_binary("promtool")
    text = (COMPOSE_DIR / "prometheus.yml").read_text()
    text = text.replace("/etc/prometheus/alerts.yaml", str(ROOT / "deploy/prometheus/alerts.yaml"))
    (tmp_path / "prometheus.yml").write_text(text)
    result = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
