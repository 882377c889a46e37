"""Helpers of the reliability suite: the sidecar as a real process, its memory, metrics and API.

Builders of valid batches come from ``tests/unit/sidecar/batches.py`` and the test OTLP
receivers from ``tests/support``; this module only adds what the fault checks need:
a sidecar started by its CLI (optionally with a loop-lag probe), RSS sampling with psutil,
raw gRPC / HTTP senders that report the status instead of raising, and readers of the
sidecar's ``/metrics`` and ``/v1/models``.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import grpc
import psutil

from tests.support.waiting import free_port, wait_until
from tests.unit.telemetry import promparse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probed_sidecar.py")
EXPORT_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def child_env(**extra: str) -> dict[str, str]:
    """Environment of a child process: none of this process's ``DRIFTCAR_*`` / ``OTEL_*``, driftcar importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTCAR_", "OTEL_"))}
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "agent"), ROOT])
    env.update(extra)
    return env


class Sidecar:
    """``driftcar sidecar`` as a child process on free loopback ports.

    ``probe=True`` starts it through :mod:`probed_sidecar` (same CLI, plus a loop-lag probe).
    The log (stdout+stderr) is kept in ``log_path``. Always killed on exit of the ``with``.
    """

    def __init__(self, tmp_path, *args: str, env: dict | None = None, probe: bool = False,
                 ports: dict | None = None, tag: str = "sidecar"):
        self.ports = ports or {"grpc": free_port(), "http": free_port(), "prometheus": free_port()}
        self.args = list(args)
        self.env = child_env(**(env or {}))
        self.dir = str(tmp_path)
        self.tag = tag
        self.log_path = os.path.join(self.dir, f"{tag}.log")
        self.probe_path = os.path.join(self.dir, f"{tag}.probe.json") if probe else None
        self.proc: subprocess.Popen | None = None
        self._log = None
        self.start_s: float | None = None  # seconds from spawn to /readyz of the last start

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    def command(self) -> list[str]:
        head = [sys.executable, PROBE, self.probe_path] if self.probe_path else [sys.executable, "-m", "driftcar.cli"]
        ports = []
        for key in ("grpc", "http", "prometheus"):
            value = self.ports.get(key)
            ports += [f"--{key}", "off" if value is None else f"127.0.0.1:{value}"]
        return [*head, "sidecar", *ports, *self.args]

    def spawn(self) -> subprocess.Popen:
        # a second spawn would orphan the running process (nothing would kill it)
        assert self.proc is None or self.proc.poll() is not None, "this Sidecar's process is still running"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.dir)
        return self.proc

    def start(self, ready_timeout: float = 30.0) -> "Sidecar":
        started = time.monotonic()
        self.spawn()
        try:
            wait_until(self._ready_or_exited, ready_timeout, interval=0.02, what=f"sidecar /readyz ({self.log_path})")
        except AssertionError:
            self.kill()
            raise AssertionError(f"sidecar did not become ready:\n{self.log()}") from None
        if self.proc.poll() is not None:  # wait_until retries on errors, so an early exit ends the wait instead
            code = self.proc.returncode
            self.kill()
            raise AssertionError(f"sidecar exited with {code}:\n{self.log()}")
        self.start_s = time.monotonic() - started
        return self

    def _ready_or_exited(self) -> bool:
        return self.proc.poll() is not None or self._ready()

    def _ready(self) -> bool:
        """``/readyz`` answers 200 (subclasses probe differently, e.g. over TLS)."""
        try:
            return http_get(f"{self.http}/readyz")[0] == 200
        except OSError:
            return False

    def log(self, tail: int = 8000) -> str:
        with open(self.log_path, "rb") as fh:
            return fh.read().decode(errors="replace")[-tail:]

    def rss(self) -> int:
        """The sidecar's RSS with its child processes' (the gRPC front receives and inflates gRPC)."""
        return tree_rss(psutil.Process(self.proc.pid))

    def probe(self) -> dict:
        """The loop-lag probe's figures as last written (the probe rewrites its file every 0.2 s)."""
        with open(self.probe_path) as fh:
            return json.load(fh)

    def fresh_probe(self) -> dict:
        """The probe's figures written after this call, so they cover everything sent before it."""
        seen = self.probe()["samples"]  # at most 0.2 s old; 25 more 10 ms ticks end after this call
        return wait_until(lambda: (p := self.probe())["samples"] > seen + 25 and p, 10, what="a fresh loop probe")

    def terminate(self, timeout: float = 30.0) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds to exit). Kills and fails after ``timeout``."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"sidecar did not exit within {timeout}s of SIGTERM:\n{self.log()}") from None
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "Sidecar":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()

    # -------------------------------------------------------------- reads
    def models(self, headers: dict | None = None) -> dict[tuple[str, str], dict]:
        status, body = http_get(f"{self.http}/v1/models", headers)
        assert status == 200, (status, body)
        data = json.loads(body)
        items = data["models"] if isinstance(data, dict) else data
        return {(m["name"], m["version"]): m for m in items}

    def metrics(self, headers: dict | None = None) -> list[tuple[str, dict, float]]:
        status, body = http_get(f"http://127.0.0.1:{self.ports['prometheus']}/metrics", headers)
        assert status == 200, (status, body[:200])
        return promparse.parse(body.decode())[2]


def http_get(url: str, headers: dict | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def metric_sum(samples, name: str, **labels) -> float:
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == w for k, w in labels.items()))


# ------------------------------------------------------------------ senders that report, never raise


@dataclass
class Reply:
    """One answer: ``code`` is a gRPC code name or an HTTP status (as str); ``error`` a transport failure."""

    code: str
    message: str = ""
    retry_after: str | None = None  # RetryInfo seconds (gRPC) / Retry-After header (HTTP)
    body: bytes = b""
    error: str | None = None
    seconds: float = 0.0


class RawGrpc:
    """Sends pre-serialized bytes to ``LogsService/Export`` (so malformed protobuf reaches the server)."""

    def __init__(self, target: str, credentials: grpc.ChannelCredentials | None = None, options=()):
        opts = [("grpc.max_send_message_length", -1), *options]
        self.channel = (grpc.secure_channel(target, credentials, options=opts) if credentials
                        else grpc.insecure_channel(target, options=opts))
        self.call = self.channel.unary_unary(EXPORT_METHOD, request_serializer=None, response_deserializer=None)

    def send(self, data: bytes, timeout: float = 10.0, metadata=(), compression=None) -> Reply:
        from driftcar.hook.shipping.grpc_exporter import retry_delay_from_metadata

        started = time.monotonic()
        try:
            body = self.call(data, timeout=timeout, metadata=metadata, compression=compression)
            return Reply("OK", body=body, seconds=time.monotonic() - started)
        except grpc.RpcError as exc:
            delay = retry_delay_from_metadata(exc.trailing_metadata())
            return Reply(exc.code().name, exc.details() or "", None if delay is None else str(delay),
                         seconds=time.monotonic() - started)

    def close(self) -> None:
        self.channel.close()


def http_post(port: int, body: bytes, content_type: str = "application/x-protobuf", headers: dict | None = None,
              path: str = "/v1/logs", timeout: float = 10.0, context=None, host: str = "127.0.0.1") -> Reply:
    """One POST on a fresh connection; a reset or timeout is reported in ``error``, never raised."""
    started = time.monotonic()
    conn = (http.client.HTTPSConnection(host, port, timeout=timeout, context=context) if context
            else http.client.HTTPConnection(host, port, timeout=timeout))
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type, "Connection": "close",
                                                      **(headers or {})})
        resp = conn.getresponse()
        data = resp.read()
        return Reply(str(resp.status), retry_after=resp.getheader("Retry-After"), body=data,
                     seconds=time.monotonic() - started)
    except (OSError, http.client.HTTPException) as exc:
        return Reply("", error=f"{type(exc).__name__}: {exc}", seconds=time.monotonic() - started)
    finally:
        conn.close()


def status_message(reply: Reply, as_json: bool = False) -> str:
    """The reason in an OTLP/HTTP error body (``google.rpc.Status``), or the gRPC details."""
    if not reply.code.isdigit():
        return reply.message
    from google.protobuf import json_format
    from google.rpc import status_pb2

    try:
        if as_json:
            return json_format.Parse(reply.body, status_pb2.Status(), ignore_unknown_fields=True).message
        return status_pb2.Status.FromString(reply.body).message
    except Exception:
        return ""


def tree_rss(process: psutil.Process) -> int:
    """RSS of a process and its children (the sidecar's gRPC front process, a decode process)."""
    total = process.memory_info().rss
    for child in process.children():
        try:
            total += child.memory_info().rss
        except psutil.Error:  # exited meanwhile
            pass
    return total


class RssSampler:
    """Samples a process's RSS, its children's included, every ``interval`` s in a thread; ``max`` and
    ``series`` after stop."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.series: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            try:
                self.series.append((time.monotonic() - start, tree_rss(self.process)))
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    @property
    def max(self) -> int:
        return max((r for _, r in self.series), default=0)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


MiB = 1024 * 1024
