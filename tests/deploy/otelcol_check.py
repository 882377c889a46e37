"""Structural checker for OpenTelemetry Collector configuration files.

The configs in ``collector-config/`` run in driftcar's own distribution in the test suite
(tests/integration/collector/); this checker covers users on the upstream otelcol-contrib
image, and driftcar's own rules a collector cannot know: the split sends exactly the hook's
batch records to the sidecar, no loop back into the sidecar, memory_limiter first, explicit
queues and retries.

``check(config) -> list[str]`` returns every problem found (empty = fine); it
never raises on a malformed config, so a test can assert on the messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from driftcar.sidecar.config import SidecarConfig

#: The release the component list below comes from: otelcol-contrib's (for users on the upstream
#: image) and driftcar's own distribution's (collector-config/builder.yaml), both at v0.160.0.
OTELCOL_CONTRIB_VERSION = "v0.160.0"

#: Component type names otelcol-contrib v0.160.0 ships (a subset: the commonly used ones per kind;
#: type names, not Go module names, e.g. memorylimiterprocessor -> ``memory_limiter``).
COMPONENT_TYPES: dict[str, frozenset[str]] = {
    "receivers": frozenset(
        """otlp nop prometheus hostmetrics kubeletstats k8s_cluster k8sobjects k8s_events filelog jaeger
        zipkin statsd syslog journald httpcheck docker_stats fluentforward otlpjsonfile tcplog udplog kafka
        receiver_creator redis postgresql mysql prometheus_simple""".split()
    ),
    "processors": frozenset(
        """batch memory_limiter attributes cumulativetodelta deltatocumulative deltatorate filter groupbyattrs
        groupbytrace interval k8s_attributes logdedup metricsgeneration metricstransform probabilistic_sampler
        redaction remotetap resource_detection resource schema span tail_sampling transform""".split()
    ),
    "exporters": frozenset(
        """debug nop otlp_grpc otlp_http file kafka load_balancing prometheus prometheus_remote_write zipkin
        elasticsearch clickhouse datadog awsxray googlecloud splunk_hec syslog""".split()
    ),
    "connectors": frozenset(
        """forward count exceptions failover roundrobin routing servicegraph spanmetrics sum
        signaltometrics otlpjson datadog grafanacloud""".split()
    ),
    "extensions": frozenset(
        """zpages health_check pprof file_storage basicauth bearertokenauth headers_setter oauth2client
        oidc k8s_observer docker_observer host_observer""".split()
    ),
}

#: Names renamed by v0.160.0: the old ones still load, with a deprecation warning, and are reported.
DEPRECATED_TYPES = {
    "otlp": "otlp_grpc",  # as an exporter; `otlp` stays the receiver's name
    "otlphttp": "otlp_http",
    "loadbalancing": "load_balancing",
    "prometheusremotewrite": "prometheus_remote_write",
    "k8sattributes": "k8s_attributes",
    "resourcedetection": "resource_detection",
}

SIGNALS = ("traces", "metrics", "logs")
_SAME = "same"
#: connector type -> allowed (exporter-pipeline signal, receiver-pipeline signal) pairs
CONNECTOR_SIGNALS: dict[str, Any] = {
    "forward": _SAME,
    "routing": _SAME,
    "roundrobin": _SAME,
    "failover": _SAME,
    "count": {(s, "metrics") for s in SIGNALS},
    "sum": {(s, "metrics") for s in SIGNALS},
    "signaltometrics": {(s, "metrics") for s in SIGNALS},
    "spanmetrics": {("traces", "metrics")},
    "servicegraph": {("traces", "metrics")},
    "exceptions": {("traces", "metrics"), ("traces", "logs")},
    "otlpjson": {("logs", s) for s in SIGNALS},
    "datadog": {("traces", "metrics"), ("traces", "traces")},
    "grafanacloud": {("traces", "metrics")},
}

#: exporters that send over the network and must say how they queue and retry
_NETWORK_EXPORTERS = {"otlp_grpc", "otlp_http", "prometheus_remote_write", "load_balancing", "zipkin", "kafka"}
#: ports the driftcar sidecar receives batches on (its defaults: OTLP/gRPC, OTLP/HTTP)
SIDECAR_PORTS = (SidecarConfig().grpc.port, SidecarConfig().http.port)
#: naming convention: receivers carrying driftcar's own output back end in this suffix
RETURN_RECEIVER_SUFFIX = "from_driftcar"

_TOP_LEVEL = {"receivers", "processors", "exporters", "connectors", "extensions", "service"}
_ENV_REF = re.compile(r"\$\{([^}]*)\}")
_ENV_OK = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?$")


def component_type(component_id: str) -> str:
    return str(component_id).split("/", 1)[0]


def pipeline_signal(pipeline_id: str) -> str:
    return str(pipeline_id).split("/", 1)[0]


@dataclass
class Graph:
    """Pipelines linked through connectors: which pipeline feeds which."""

    pipelines: dict[str, dict]
    connectors: dict[str, Any]

    def downstream(self, pipeline_id: str) -> set[str]:
        out = set()
        for exporter in self.pipelines[pipeline_id].get("exporters") or []:
            if exporter in self.connectors:
                out |= {p for p, spec in self.pipelines.items() if exporter in (spec.get("receivers") or [])}
        return out

    def reachable(self, start: set[str]) -> set[str]:
        seen, todo = set(), list(start)
        while todo:
            p = todo.pop()
            if p in seen:
                continue
            seen.add(p)
            todo.extend(self.downstream(p))
        return seen

    def has_cycle(self) -> bool:
        return any(p in self.reachable(self.downstream(p)) for p in self.pipelines)


def _endpoint_port(spec: Any) -> int | None:
    if not isinstance(spec, dict):
        return None
    endpoint = str(spec.get("endpoint", ""))
    match = re.search(r":(\d+)(/|$)", endpoint)
    return int(match.group(1)) if match else None


def sidecar_exporters(config: dict) -> set[str]:
    """Exporters that deliver to a driftcar sidecar (by its receiver ports)."""
    return {
        name
        for name, spec in (config.get("exporters") or {}).items()
        if component_type(name) in ("otlp_grpc", "otlp_http") and _endpoint_port(spec) in SIDECAR_PORTS
    }


def return_receivers(config: dict) -> set[str]:
    return {name for name in (config.get("receivers") or {}) if str(name).endswith(RETURN_RECEIVER_SUFFIX)}


# --- a tiny evaluator for the OTTL condition subset the split's filters use ------------------------

_TERM = re.compile(r'^\s*(?:log\.)?(event_name|attributes\["([^"\\]+)"\])\s*(==|!=)\s*"([^"\\]*)"\s*$')
_NOT = re.compile(r"^\s*not\s*\((.*)\)\s*$", re.S)


def ottl_condition(condition: str) -> Callable[[Any], bool]:
    """Compile ``[not (]path == "literal" or ...[)]`` (paths: [log.]event_name, [log.]attributes["k"])
    into a predicate over an OTLP ``LogRecord`` protobuf. Raises ValueError on anything else."""
    negated = _NOT.match(condition)
    if negated:
        inner = ottl_condition(negated.group(1))
        return lambda record: not inner(record)
    terms = []
    for raw in re.split(r"\s+or\s+", condition.strip()):
        match = _TERM.match(raw)
        if not match:
            raise ValueError(f"unsupported OTTL term {raw!r} (checker understands [not (] [log.]event_name / "
                             "[log.]attributes[...] ==/!= literal joined by 'or' [)])")
        path, key, op, literal = match.groups()
        terms.append((key, op, literal))

    def predicate(record) -> bool:
        for key, op, literal in terms:
            if key is None:
                value = record.event_name
            else:
                value = next((kv.value.string_value for kv in record.attributes if kv.key == key), None)
            if (value == literal) == (op == "=="):
                return True
        return False

    return predicate


# --- the checks -------------------------------------------------------------------------------------


def check(config: Any, *, event_name: str | None = None) -> list[str]:
    """Every problem in one otelcol config (parsed YAML). ``event_name``: the hook's batch event
    name; when given, a ``routing`` connector must send exactly those records to the sidecar."""
    if not isinstance(config, dict):
        return ["config is not a mapping"]
    problems: list[str] = []
    for key in config:
        if key not in _TOP_LEVEL:
            problems.append(f"unknown top-level key {key!r}")
    _check_env_refs(config, "", problems)

    kinds = ("receivers", "processors", "exporters", "connectors", "extensions")
    defined: dict[str, dict] = {}
    for kind in kinds:
        section = config.get(kind) or {}
        if not isinstance(section, dict):
            problems.append(f"{kind}: not a mapping")
            section = {}
        defined[kind] = section
        for cid in section:
            old = component_type(cid)
            if old in DEPRECATED_TYPES and not (kind == "receivers" and old == "otlp"):
                problems.append(f"{kind}.{cid}: {old!r} is a deprecated name, use {DEPRECATED_TYPES[old]!r}")
            elif component_type(cid) not in COMPONENT_TYPES[kind]:
                problems.append(
                    f"{kind}.{cid}: type {component_type(cid)!r} is not an otelcol-contrib "
                    f"{OTELCOL_CONTRIB_VERSION} {kind[:-1]}"
                )

    service = config.get("service") or {}
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        problems.append("service.pipelines: none defined")
    for ext in service.get("extensions") or []:
        if ext not in defined["extensions"]:
            problems.append(f"service.extensions: {ext!r} is not defined under extensions")
    for ext in defined["extensions"]:
        if ext not in (service.get("extensions") or []):
            problems.append(f"extensions.{ext}: defined but not enabled in service.extensions")

    used = {k: set() for k in kinds}
    for pid, spec in pipelines.items():
        spec = spec or {}
        if pipeline_signal(pid) not in SIGNALS:
            problems.append(f"pipeline {pid}: unknown signal {pipeline_signal(pid)!r}")
        if not spec.get("receivers"):
            problems.append(f"pipeline {pid}: has no receivers")
        if not spec.get("exporters"):
            problems.append(f"pipeline {pid}: has no exporters")
        # a connector may stand in a pipeline's receivers or exporters, never its processors
        for kind in ("receivers", "processors", "exporters"):
            for cid in spec.get(kind) or []:
                if cid in defined[kind]:
                    used[kind].add(cid)
                elif kind != "processors" and cid in defined["connectors"]:
                    used["connectors"].add(cid)
                else:
                    problems.append(f"pipeline {pid}: {kind[:-1]} {cid!r} is not defined")
        _check_processor_order(pid, spec, defined, problems)
    for kind in ("receivers", "processors", "exporters", "connectors"):
        for cid in defined[kind]:
            if cid not in used[kind]:
                problems.append(f"{kind}.{cid}: defined but not used in any pipeline")

    _check_connectors(pipelines, defined["connectors"], problems)
    _check_exporters(defined["exporters"], problems)

    graph = Graph({p: s or {} for p, s in pipelines.items()}, defined["connectors"])
    if graph.has_cycle():
        problems.append("pipelines form a cycle through connectors")
    _check_no_loop(config, graph, problems)
    if event_name is not None:
        _check_routing(config, graph, event_name, problems)
    return problems


def _check_env_refs(node: Any, path: str, problems: list[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _check_env_refs(v, f"{path}.{k}" if path else str(k), problems)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_env_refs(v, f"{path}[{i}]", problems)
    elif isinstance(node, str):
        for ref in _ENV_REF.findall(node):
            if not _ENV_OK.match(ref):
                problems.append(f"{path}: malformed substitution ${{{ref}}} (use ${{env:NAME}} or ${{env:NAME:-default}})")


def _check_processor_order(pid: str, spec: dict, defined: dict, problems: list[str]) -> None:
    processors = spec.get("processors") or []
    fed_by_receiver = any(r in defined["receivers"] for r in spec.get("receivers") or [])
    if fed_by_receiver and (not processors or component_type(processors[0]) != "memory_limiter"):
        problems.append(f"pipeline {pid}: memory_limiter must be the first processor")
    exports_out = spec.get("exporters") and all(e in defined["exporters"] for e in spec.get("exporters") or [])
    if exports_out and (not processors or component_type(processors[-1]) != "batch"):
        problems.append(f"pipeline {pid}: batch must be the last processor before its exporters")


def _check_connectors(pipelines: dict, connectors: dict, problems: list[str]) -> None:
    for cid, cfg in connectors.items():
        as_exporter = {p for p, s in pipelines.items() if cid in ((s or {}).get("exporters") or [])}
        as_receiver = {p for p, s in pipelines.items() if cid in ((s or {}).get("receivers") or [])}
        if not as_exporter:
            problems.append(f"connectors.{cid}: never used as an exporter")
        if not as_receiver:
            problems.append(f"connectors.{cid}: never used as a receiver")
        allowed = CONNECTOR_SIGNALS.get(component_type(cid))
        for pe in as_exporter:
            for pr in as_receiver:
                pair = (pipeline_signal(pe), pipeline_signal(pr))
                ok = pair[0] == pair[1] if allowed == _SAME else (allowed is not None and pair in allowed)
                if not ok:
                    problems.append(f"connectors.{cid}: cannot connect a {pair[0]} pipeline ({pe}) to a {pair[1]} pipeline ({pr})")
        if component_type(cid) == "routing":
            cfg = cfg or {}
            # connector/routingconnector/config.go (v0.136.0): table, default_pipelines, error_mode;
            # match_once was removed in v0.120.0 (there is no ``routes`` key)
            for key in set(cfg) - {"table", "default_pipelines", "error_mode"}:
                problems.append(f"connectors.{cid}: unknown key {key!r} (routing takes table, default_pipelines, error_mode)")
            table = cfg.get("table") or []
            if not table:
                problems.append(f"connectors.{cid}: empty routing table")
            targets = set(cfg.get("default_pipelines") or [])
            for i, route in enumerate(table):
                if bool(route.get("condition")) == bool(route.get("statement")):
                    problems.append(f"connectors.{cid}.table[{i}]: exactly one of condition/statement is required")
                if route.get("context", "resource") not in ("resource", "span", "metric", "datapoint", "log", "request"):
                    problems.append(f"connectors.{cid}.table[{i}]: unknown context {route.get('context')!r}")
                if not route.get("pipelines"):
                    problems.append(f"connectors.{cid}.table[{i}]: no pipelines")
                targets |= set(route.get("pipelines") or [])
            for p in targets - as_receiver:
                problems.append(f"connectors.{cid}: routes to {p!r}, which does not list {cid} as a receiver")
            for p in as_receiver - targets:
                problems.append(f"connectors.{cid}: pipeline {p!r} receives from it but no route leads there")


def _check_exporters(exporters: dict, problems: list[str]) -> None:
    for eid, cfg in exporters.items():
        etype = component_type(eid)
        if etype not in _NETWORK_EXPORTERS:
            continue
        cfg = cfg or {}
        if etype == "load_balancing":
            if not isinstance(cfg.get("resolver"), dict) or len(cfg["resolver"]) != 1:
                problems.append(f"exporters.{eid}: exactly one resolver (static, dns, k8s, aws_cloud_map)")
        elif not cfg.get("endpoint"):
            problems.append(f"exporters.{eid}: no endpoint")
        queue_key = "remote_write_queue" if etype == "prometheus_remote_write" else "sending_queue"
        if not isinstance(cfg.get(queue_key), dict):
            problems.append(f"exporters.{eid}: {queue_key} must be configured explicitly")
        if not isinstance(cfg.get("retry_on_failure"), dict):
            problems.append(f"exporters.{eid}: retry_on_failure must be configured explicitly")


def _check_no_loop(config: dict, graph: Graph, problems: list[str]) -> None:
    """Nothing that enters through a return receiver may reach an exporter bound for the sidecar."""
    to_sidecar = sidecar_exporters(config)
    for receiver in return_receivers(config):
        start = {p for p, s in graph.pipelines.items() if receiver in (s.get("receivers") or [])}
        for p in graph.reachable(start):
            hits = to_sidecar & set(graph.pipelines[p].get("exporters") or [])
            if hits:
                problems.append(f"loop: driftcar output entering at {receiver} reaches {sorted(hits)} via pipeline {p}")


def _drops(processor_id: str, cfg: Any, record) -> bool:
    """True when a filter processor drops this log record (any of its log_record conditions holds)."""
    if component_type(processor_id) != "filter":
        return False
    conditions = (((cfg or {}).get("logs") or {}).get("log_record")) or []
    return any(ottl_condition(c)(record) for c in conditions)


def _routed(cfg: dict, record) -> set[str]:
    """The pipelines a routing connector sends this log record to."""
    targets: set[str] = set()
    for route in cfg.get("table") or []:
        if route.get("context") == "log" and route.get("condition") and ottl_condition(route["condition"])(record):
            targets |= set(route.get("pipelines") or [])
    return targets or set(cfg.get("default_pipelines") or [])


def delivered(config: dict, graph: Graph, record) -> set[str]:
    """The exporters one log record sent to the application's receivers ends up at."""
    processors = config.get("processors") or {}
    connectors = config.get("connectors") or {}
    app_receivers = set(config.get("receivers") or {}) - return_receivers(config)
    todo = [p for p, s in graph.pipelines.items()
            if pipeline_signal(p) == "logs" and app_receivers & set(s.get("receivers") or [])]
    seen, reached = set(), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        spec = graph.pipelines[pid]
        if any(_drops(p, processors.get(p), record) for p in spec.get("processors") or []):
            continue
        for exporter in spec.get("exporters") or []:
            if exporter not in connectors:
                reached.add(exporter)
            elif component_type(exporter) == "routing":
                todo.extend(_routed(connectors[exporter] or {}, record))
            else:
                todo.extend(p for p, s in graph.pipelines.items() if exporter in (s.get("receivers") or []))
    return reached


def _check_routing(config: dict, graph: Graph, event_name: str, problems: list[str]) -> None:
    """The hook's batch records reach the sidecar and nothing else; every other record reaches a
    backend and never the sidecar (a filter split, or a routing connector for older releases)."""
    from driftcar.wire.otlp import batch_log_record
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

    batch = batch_log_record(b"\x80", model_name="m", model_version="1", kind="inference", rows=0)
    if batch.event_name != event_name:
        problems.append(f"the hook's record says event_name={batch.event_name!r}, expected {event_name!r}")
    other = LogRecord(event_name="app.log")
    try:
        batch_to, other_to = delivered(config, graph, batch), delivered(config, graph, other)
    except ValueError as exc:
        problems.append(f"log filter or route: {exc}")
        return
    to_sidecar = sidecar_exporters(config)
    if to_sidecar and not batch_to & to_sidecar:
        problems.append(f"no logs pipeline sends event_name={event_name!r} records to the sidecar {sorted(to_sidecar)}")
    if batch_to - to_sidecar:
        problems.append(f"event_name={event_name!r} records also reach {sorted(batch_to - to_sidecar)}")
    if other_to & to_sidecar:
        problems.append(f"records other than {event_name!r} reach the sidecar via {sorted(other_to & to_sidecar)}")
    has_logs = any(pipeline_signal(p) == "logs" for p in graph.pipelines)
    if has_logs and not other_to - to_sidecar:
        problems.append("the application's own log records reach no backend")
