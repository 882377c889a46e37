"""Shared helpers for sidecar integration tests: in-thread sidecars, HTTP JSON, gRPC senders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

from driftcar.sidecar.config import load_config
from tests.support.waiting import free_port, wait_until


def config(**flags):
    base = {"grpc": "127.0.0.1:0", "http": "127.0.0.1:0", "prometheus": "127.0.0.1:0", "export": "none",
            "window": "1h", "live_reference_rows": "0", "shutdown_timeout": "10s"}
    base.update({k: v for k, v in flags.items()})
    return load_config(env={}, flags=base)


def get_json(url: str, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


class GrpcSender:
    def __init__(self, port: int):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = logs_service_pb2_grpc.LogsServiceStub(self.channel)

    def send(self, req, timeout=10.0, metadata=()):
        return self.stub.Export(req, timeout=timeout, metadata=metadata)

    def close(self):
        self.channel.close()


# --------------------------------------------------------------------------- subprocesses


class SidecarProcess:
    """``driftcar sidecar`` started by its CLI as a child process on free loopback ports.

    Always stopped by the test (SIGTERM, then SIGKILL after a deadline); its stderr log
    is kept in ``log_path`` and shown when a wait fails.
    """

    def __init__(self, tmp_path, *args: str, env: dict | None = None, ports: dict | None = None):
        self._own_ports = ports is None  # chosen here: may be chosen again (see start)
        self.ports = ports or self._free_ports()
        self.args = list(args)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTCAR_", "OTEL_"))}
        self.env.update(env or {})
        self.log_path = os.path.join(str(tmp_path), f"sidecar-{len(os.listdir(str(tmp_path)))}.log")
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def _free_ports() -> dict:
        return {"grpc": free_port(), "http": free_port(), "prometheus": free_port()}

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['prometheus']}/metrics"

    def start(self, ready_timeout: float = 30.0, attempts: int = 3) -> "SidecarProcess":
        """Start and wait for /readyz. A port found free may be taken by another process (an outgoing
        connection's ephemeral port) before the sidecar binds it: with ports chosen here, a start
        refused with "address already in use" is tried again on new ports, ``attempts`` times at most."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start(ready_timeout)
            except AssertionError as exc:
                if not (self._own_ports and "address already in use" in str(exc) and attempt < attempts):
                    raise
                self.ports = self._free_ports()

    def _start(self, ready_timeout: float) -> "SidecarProcess":
        cmd = [sys.executable, "-m", "driftcar.cli", "sidecar",
               "--grpc", f"127.0.0.1:{self.ports['grpc']}", "--http", f"127.0.0.1:{self.ports['http']}",
               "--prometheus", f"127.0.0.1:{self.ports['prometheus']}", *self.args]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        try:
            wait_until(self._ready_or_exited, ready_timeout, interval=0.05,
                       what=f"sidecar /readyz ({self.log_path})")
        except AssertionError:
            self.kill()
            raise AssertionError(f"sidecar did not become ready:\n{self.log()}") from None
        if self.proc.poll() is not None:  # wait_until retries on errors, so an early exit ends the wait instead
            self.kill()
            raise AssertionError(f"sidecar exited with {self.proc.returncode}:\n{self.log()}")
        return self

    def _ready_or_exited(self) -> bool:
        if self.proc.poll() is not None:
            return True
        try:
            return get_json(f"{self.http}/readyz")[0] == 200
        except OSError:
            return False

    def log(self) -> str:
        with open(self.log_path, "rb") as fh:
            return fh.read().decode(errors="replace")[-8000:]

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the exit code (SIGKILL and fail after ``timeout``)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"sidecar did not exit within {timeout}s of SIGTERM:\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.kill()




def metric_points(receiver) -> list[tuple[str, str, dict, object]]:
    """Every data point the receiver got, in arrival order: (name, unit, attributes, point)."""
    from driftcar.wire.otlp import attributes_to_dict

    out = []
    for req in list(receiver.metrics):
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    which = metric.WhichOneof("data")
                    for point in getattr(metric, which).data_points:
                        out.append((metric.name, metric.unit, attributes_to_dict(point.attributes), point))
    return out


def latest(points, name: str) -> dict[tuple, object]:
    """Last point per attribute set of metric ``name``."""
    out = {}
    for metric, _, attrs, point in points:
        if metric == name:
            out[tuple(sorted(attrs.items()))] = point
    return out


def value(point) -> float:
    return point.as_double if point.WhichOneof("value") == "as_double" else point.as_int


@pytest.fixture
def sidecar():
    """Start in-process sidecars (``run_in_thread``) with ``config(**flags)``; all stopped at the end."""
    from driftcar.sidecar.service import run_in_thread

    handles = []

    def start(**flags):
        handle = run_in_thread(config(**flags))
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()
