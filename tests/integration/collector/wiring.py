"""Shared wiring for the live tests through driftcar's collector distribution: a real Prometheus
with its remote-write receiver on, the shipped configs with their listeners and backends moved to
free loopback ports, a file exporter standing in for Loki and Tempo."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.integration.sidecar.sidecar_helpers import SidecarProcess
from tests.support.collector import CONFIG_DIR, K8S_OFFLINE
from tests.support.waiting import free_port, require_binary, stop_process, wait_until


class Prometheus:
    """Debian's prometheus on a free port, tmp storage, remote-write receiver on, no scrapes."""

    def __init__(self, directory: Path):
        self.binary = require_binary("prometheus")
        self.dir = directory
        self.port = free_port()
        (directory / "prometheus.yml").write_text("global: {evaluation_interval: 1s}\n")
        self.log_path = directory / "prometheus.log"

    @property
    def write_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/write"

    def __enter__(self) -> "Prometheus":
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-remote-write-receiver"],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "wb"))

        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as resp:
                return resp.status == 200

        wait_until(ready, 30, interval=0.1, what="prometheus ready")
        return self

    def __exit__(self, *exc) -> None:
        stop_process(self.proc, 10)

    def query(self, promql: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)["data"]["result"]


def file_exporter(path: Path) -> dict:
    return {"path": str(path), "format": "json", "flush_interval": "100ms"}


def records(path: Path, signal: str = "logs") -> list[dict]:
    """Every log record (or span) the file exporter wrote, each with its resource attributes."""
    key, scope_key, item_key = {"logs": ("resourceLogs", "scopeLogs", "logRecords"),
                                "traces": ("resourceSpans", "scopeSpans", "spans")}[signal]
    out = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        for resource in json.loads(line).get(key, []):
            for scope in resource.get(scope_key, []):
                out.extend(scope.get(item_key, []))
    return out


def centric_overlay(tmp: Path, *, sidecar_grpc: int, prometheus_write: str) -> tuple[dict, dict]:
    """collector-config/collector-centric.yaml on free ports; returns (overlay, ports)."""
    ports = {"grpc": free_port(), "http": free_port(), "return": free_port()}
    overlay = {
        "receivers": {
            "otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{ports['grpc']}"},
                                   "http": {"endpoint": f"127.0.0.1:{ports['http']}"}}},
            "otlp/from_driftcar": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{ports['return']}"}}},
        },
        "processors": {"k8s_attributes": K8S_OFFLINE},
        "exporters": {
            "otlp_grpc/driftcar": {"endpoint": f"127.0.0.1:{sidecar_grpc}"},
            "prometheus_remote_write": {"endpoint": prometheus_write},
            "file/loki": file_exporter(tmp / "loki.jsonl"),
            "file/tempo": file_exporter(tmp / "tempo.jsonl"),
        },
        "service": {"pipelines": {
            "traces": {"exporters": ["file/tempo"]},
            "logs/app": {"exporters": ["file/loki"]},
            "logs/driftcar_out": {"exporters": ["file/loki"]},
        }},
    }
    return overlay, ports


CENTRIC = CONFIG_DIR / "collector-centric.yaml"
DIRECT = CONFIG_DIR / "direct.yaml"


def sidecar_metric(sidecar: SidecarProcess, name: str, **labels: str) -> float:
    """Sum of one metric on the sidecar's own /metrics endpoint (0 when absent)."""
    with urllib.request.urlopen(sidecar.metrics_url, timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " ") \
                and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def send_app_record(port: int) -> None:
    """One ordinary (non-batch) log record straight to an OTLP/gRPC port."""
    import grpc
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        LogsServiceStub(channel).Export(ExportLogsServiceRequest(resource_logs=[ResourceLogs(
            scope_logs=[ScopeLogs(log_records=[LogRecord(event_name="app.request")])])]), timeout=10)
