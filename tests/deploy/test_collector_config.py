"""Static checks of collector-config/*.yaml for otelcol-contrib users (see otelcol_check.py).

Each file is checked the way the collector would reject it at start-up, plus driftcar's rules:
the split's filters send exactly the records the hook sends to the sidecar, and driftcar's output
cannot loop back. The second half proves the checker can fail. The same files run in driftcar's
own distribution in tests/integration/collector/.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from driftcar.wire.otlp import EVENT_NAME
from tests.deploy.otelcol_check import (
    OTELCOL_CONTRIB_VERSION,
    check,
    ottl_condition,
    return_receivers,
    sidecar_exporters,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "collector-config"
# fleet.yaml carries window records, not application logs: tests/deploy/test_fleet_config.py;
# builder.yaml is the distribution's manifest
FILES = sorted(p for p in CONFIG_DIR.glob("*.yaml") if p.name not in ("fleet.yaml", "builder.yaml"))


def load(name: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / name).read_text())


def test_the_three_wirings_exist():
    assert {p.name for p in FILES} >= {"collector-centric.yaml", "direct.yaml", "local.yaml"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_config_is_valid(path):
    config = yaml.safe_load(path.read_text())
    assert check(config, event_name=EVENT_NAME) == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_documented_at_the_top(path):
    head = path.read_text().splitlines()[:5]
    assert head[0].startswith("# driftcar"), "each config starts with a comment saying what it is"
    assert OTELCOL_CONTRIB_VERSION in path.read_text(), "each config names the otelcol-contrib version it targets"


@pytest.mark.parametrize("name", ["collector-centric.yaml", "local.yaml"])
def test_collector_centric_shapes_route_to_the_sidecar_and_take_its_output_back(name):
    config = load(name)
    assert sidecar_exporters(config) == {"otlp_grpc/driftcar"}
    assert return_receivers(config) == {"otlp/from_driftcar"}
    # the return receiver is not the app's receiver: a separate port
    ports = {r: spec["protocols"]["grpc"]["endpoint"].rsplit(":", 1)[1] for r, spec in config["receivers"].items()}
    assert ports["otlp/from_driftcar"] != ports["otlp"]
    backends = {e.split("/")[0] for e in config["exporters"]}
    assert {"prometheus_remote_write", "otlp_http", "otlp_grpc"} <= backends
    assert config["exporters"]["otlp_http/loki"]["endpoint"].rstrip("}").endswith("/otlp")


def test_gateway_never_sends_to_a_sidecar_and_drops_stray_batches():
    config = load("direct.yaml")
    assert sidecar_exporters(config) == set()
    conditions = config["processors"]["filter/drop_batches"]["logs"]["log_record"]
    from driftcar.wire.otlp import batch_log_record

    record = batch_log_record(b"\x80", model_name="m", model_version="1", kind="inference", rows=0)
    assert any(ottl_condition(c)(record) for c in conditions)


def test_ottl_subset_evaluator():
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

    pred = ottl_condition('log.event_name == "a.b" or attributes["event.name"] == "a.b"')
    assert pred(LogRecord(event_name="a.b"))
    assert pred(LogRecord(attributes=[KeyValue(key="event.name", value=AnyValue(string_value="a.b"))]))
    assert not pred(LogRecord(event_name="a.c"))
    negated = ottl_condition('not (log.event_name == "a.b")')
    assert negated(LogRecord(event_name="a.c")) and not negated(LogRecord(event_name="a.b"))
    with pytest.raises(ValueError):
        ottl_condition('IsMatch(body, ".*")')


# --- the checker can fail ------------------------------------------------------------------------


@pytest.fixture
def centric():
    return copy.deepcopy(load("collector-centric.yaml"))


def rename(config: dict, kind: str, old: str, new: str) -> None:
    config[kind][new] = config[kind].pop(old)
    for spec in config["service"]["pipelines"].values():
        for key in ("receivers", "processors", "exporters"):
            spec[key] = [new if c == old else c for c in spec.get(key) or []]


def test_misspelt_component_type_is_reported(centric):
    rename(centric, "processors", "memory_limiter", "memory_limitter")
    problems = check(centric, event_name=EVENT_NAME)
    assert any("'memory_limitter' is not an otelcol-contrib" in p for p in problems), problems


def test_deprecated_component_name_is_reported(centric):
    rename(centric, "processors", "k8s_attributes", "k8sattributes")
    problems = check(centric, event_name=EVENT_NAME)
    assert any("'k8sattributes' is a deprecated name, use 'k8s_attributes'" in p for p in problems), problems


def test_misspelt_reference_in_a_pipeline_is_reported(centric):
    centric["service"]["pipelines"]["traces"]["exporters"] = ["otlp_grpc/trace"]
    problems = check(centric, event_name=EVENT_NAME)
    assert any("exporter 'otlp_grpc/trace' is not defined" in p for p in problems), problems
    assert any("exporters.otlp_grpc/traces: defined but not used" in p for p in problems), problems


def test_pipeline_without_exporters_is_reported(centric):
    centric["service"]["pipelines"]["traces"]["exporters"] = []
    assert any("has no exporters" in p for p in check(centric))


def test_connector_between_wrong_signals_is_reported(centric):
    centric["connectors"] = {"forward": None}
    centric["service"]["pipelines"]["logs/app"]["exporters"].append("forward")
    centric["service"]["pipelines"]["metrics/extra"] = {"receivers": ["forward"], "exporters": ["prometheus_remote_write"]}
    problems = check(centric)
    assert any("cannot connect a logs pipeline" in p for p in problems), problems


def test_loop_back_into_the_sidecar_is_reported(centric):
    # driftcar's output fed into the split's batch pipeline: could reach the sidecar again
    centric["service"]["pipelines"]["logs/driftcar"]["receivers"].append("otlp/from_driftcar")
    problems = check(centric, event_name=EVENT_NAME)
    assert any(p.startswith("loop:") for p in problems), problems


def test_wrong_event_name_in_the_split_is_reported(centric):
    centric["processors"]["filter/only_batches"]["logs"]["log_record"] = ['not (log.event_name == "driftcar.batches")']
    problems = check(centric, event_name=EVENT_NAME)
    assert any("no logs pipeline sends event_name='driftcar.batch'" in p for p in problems), problems


def test_split_without_the_drop_filter_is_reported(centric):
    # batches would also reach Loki as raw msgpack
    centric["service"]["pipelines"]["logs/app"]["processors"].remove("filter/drop_batches")
    problems = check(centric, event_name=EVENT_NAME)
    assert any("'driftcar.batch' records also reach ['otlp_http/loki']" in p for p in problems), problems


def test_app_records_reaching_the_sidecar_are_reported(centric):
    centric["service"]["pipelines"]["logs/driftcar"]["processors"].remove("filter/only_batches")
    problems = check(centric, event_name=EVENT_NAME)
    assert any("records other than 'driftcar.batch' reach the sidecar" in p for p in problems), problems


def test_a_routing_connector_split_is_still_understood(centric):
    # otelcol-contrib users on releases with the routing connector may split that way instead
    pipes = centric["service"]["pipelines"]
    centric["connectors"] = {"routing": {"default_pipelines": ["logs/app"], "table": [
        {"context": "log", "condition": 'log.event_name == "driftcar.batch"', "pipelines": ["logs/driftcar"]}]}}
    pipes["logs/in"] = {"receivers": ["otlp"], "processors": ["memory_limiter"], "exporters": ["routing"]}
    for name, flt in (("logs/driftcar", "filter/only_batches"), ("logs/app", "filter/drop_batches")):
        pipes[name]["receivers"] = ["routing"]
        pipes[name]["processors"] = [pipes[name]["processors"][-1]]
        del centric["processors"][flt]
    assert check(centric, event_name=EVENT_NAME) == []


def test_memory_limiter_not_first_is_reported(centric):
    centric["service"]["pipelines"]["traces"]["processors"] = ["batch", "memory_limiter"]
    problems = check(centric)
    assert any("memory_limiter must be the first" in p for p in problems), problems


def test_missing_retry_settings_are_reported(centric):
    del centric["exporters"]["otlp_grpc/driftcar"]["retry_on_failure"]
    assert any("otlp_grpc/driftcar: retry_on_failure" in p for p in check(centric))


def test_malformed_env_substitution_is_reported(centric):
    centric["exporters"]["otlp_grpc/traces"]["endpoint"] = "${TRACES}"
    assert any("malformed substitution" in p for p in check(centric))


def test_routing_with_an_unknown_key_is_reported(centric):
    centric["connectors"] = {"routing": {"routes": [], "default_pipelines": ["logs/app"]}}
    centric["service"]["pipelines"]["logs/in"] = {"receivers": ["otlp"], "processors": ["memory_limiter"],
                                                  "exporters": ["routing"]}
    centric["service"]["pipelines"]["logs/app"]["receivers"] = ["routing"]
    problems = check(centric, event_name=EVENT_NAME)
    assert any("unknown key 'routes'" in p for p in problems), problems
    assert any("empty routing table" in p for p in problems), problems


def test_load_balancing_exporter_needs_a_resolver_not_an_endpoint(centric):
    centric["exporters"]["load_balancing"] = {
        "routing_key": "attributes", "routing_attributes": ["model.name"],
        "protocol": {"otlp": {"tls": {"insecure": True}}},
        "resolver": {"static": {"hostnames": ["gateway-0:4317"]}},
        "sending_queue": {"enabled": True}, "retry_on_failure": {"enabled": True}}
    centric["service"]["pipelines"]["logs/app"]["exporters"].append("load_balancing")
    assert not [p for p in check(centric) if "load_balancing" in p]
    del centric["exporters"]["load_balancing"]["resolver"]
    assert any("exactly one resolver" in p for p in check(centric))
