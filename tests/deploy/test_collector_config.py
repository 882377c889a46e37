"""Static checks of collector-config/*.yaml against otelcol-contrib (see otelcol_check.py).

The official collector cannot be installed here, so each file is checked the way the
collector would reject it at start-up, plus driftcar's rules: the routing condition
selects exactly the records the hook sends, and driftcar's output cannot loop back.
The second half proves the checker can fail.
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
# fleet.yaml targets v0.160.0 (load_balancing by attributes): tests/deploy/test_fleet_config.py
FILES = sorted(p for p in CONFIG_DIR.glob("*.yaml") if p.name != "fleet.yaml")


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
    assert sidecar_exporters(config) == {"otlp/driftcar"}
    assert return_receivers(config) == {"otlp/from_driftcar"}
    # the return receiver is not the app's receiver: a separate port
    ports = {r: spec["protocols"]["grpc"]["endpoint"].rsplit(":", 1)[1] for r, spec in config["receivers"].items()}
    assert ports["otlp/from_driftcar"] != ports["otlp"]
    backends = {e.split("/")[0] for e in config["exporters"]}
    assert {"prometheusremotewrite", "otlphttp", "otlp"} <= backends
    assert config["exporters"]["otlphttp/loki"]["endpoint"].rstrip("}").endswith("/otlp")


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

    pred = ottl_condition('event_name == "a.b" or attributes["event.name"] == "a.b"')
    assert pred(LogRecord(event_name="a.b"))
    assert pred(LogRecord(attributes=[KeyValue(key="event.name", value=AnyValue(string_value="a.b"))]))
    assert not pred(LogRecord(event_name="a.c"))
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


def test_misspelt_reference_in_a_pipeline_is_reported(centric):
    centric["service"]["pipelines"]["traces"]["exporters"] = ["otlp/trace"]
    problems = check(centric, event_name=EVENT_NAME)
    assert any("exporter 'otlp/trace' is not defined" in p for p in problems), problems
    assert any("exporters.otlp/traces: defined but not used" in p for p in problems), problems


def test_pipeline_without_exporters_is_reported(centric):
    centric["service"]["pipelines"]["traces"]["exporters"] = []
    assert any("has no exporters" in p for p in check(centric))


def test_connector_between_wrong_signals_is_reported(centric):
    centric["service"]["pipelines"]["metrics/extra"] = {"receivers": ["routing"], "exporters": ["prometheusremotewrite"]}
    centric["connectors"]["routing"]["table"][0]["pipelines"].append("metrics/extra")
    problems = check(centric)
    assert any("cannot connect a logs pipeline" in p for p in problems), problems


def test_loop_back_into_the_sidecar_is_reported(centric):
    # driftcar's output fed into the routed logs pipeline: could reach the sidecar again
    centric["service"]["pipelines"]["logs/in"]["receivers"].append("otlp/from_driftcar")
    problems = check(centric, event_name=EVENT_NAME)
    assert any(p.startswith("loop:") for p in problems), problems


def test_wrong_event_name_in_the_route_is_reported(centric):
    centric["connectors"]["routing"]["table"][0]["condition"] = 'event_name == "driftcar.batches"'
    problems = check(centric, event_name=EVENT_NAME)
    assert any("no log route sends event_name='driftcar.batch'" in p for p in problems), problems


def test_memory_limiter_not_first_is_reported(centric):
    centric["service"]["pipelines"]["traces"]["processors"] = ["batch", "memory_limiter"]
    problems = check(centric)
    assert any("memory_limiter must be the first" in p for p in problems), problems


def test_missing_retry_settings_are_reported(centric):
    del centric["exporters"]["otlp/driftcar"]["retry_on_failure"]
    assert any("otlp/driftcar: retry_on_failure" in p for p in check(centric))


def test_malformed_env_substitution_is_reported(centric):
    centric["exporters"]["otlp/traces"]["endpoint"] = "${TRACES}"
    assert any("malformed substitution" in p for p in check(centric))


def test_routing_with_an_unknown_key_is_reported(centric):
    centric["connectors"]["routing"]["routes"] = centric["connectors"]["routing"].pop("table")
    problems = check(centric, event_name=EVENT_NAME)
    assert any("unknown key 'routes'" in p for p in problems), problems
    assert any("empty routing table" in p for p in problems), problems
