"""driftcar's collector distribution (build/otelcol-driftcar) as a real hop in tests.

A shipped config runs unchanged; a second ``--config`` file (the Collector merges them, maps key by
key, lists replaced whole) moves every listener to a free loopback port and points the exporters at
the test's own backends. The binary comes from ``make collector``; without it a test skips, or
fails when ``DRIFTCAR_REQUIRE_ALL=1`` (CI).
"""

from __future__ import annotations

import os
import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.waiting import free_port, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "build" / "otelcol-driftcar"
CONFIG_DIR = ROOT / "collector-config"
#: k8s_attributes outside a cluster: no API client, records pass through unchanged
K8S_OFFLINE = {"auth_type": "none", "passthrough": True}


def collector_binary() -> str:
    """Path of build/otelcol-driftcar, building it with ``make collector`` when missing."""
    if not os.access(BINARY, os.X_OK):
        try:
            built = subprocess.run(["make", "-s", "collector"], cwd=ROOT, capture_output=True, text=True,
                                   timeout=1500)
        except (OSError, subprocess.TimeoutExpired) as exc:
            built = subprocess.CompletedProcess([], 1, "", repr(exc))
        if built.returncode != 0 or not os.access(BINARY, os.X_OK):
            message = ("build/otelcol-driftcar is missing and `make collector` did not build it: "
                       f"{(built.stdout + built.stderr)[-1500:]}")
            if os.environ.get("DRIFTCAR_REQUIRE_ALL") == "1":
                pytest.fail(message)
            pytest.skip(message)
    return str(BINARY)


def merge(base: dict, overlay: dict) -> dict:
    """The Collector's merge of two config sources: maps key by key, anything else replaced."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class Collector:
    """Run otelcol-driftcar with ``config`` (a path) plus ``overlay`` (a dict written as a second
    config file) until the context exits. ``health_port`` and ``metrics_port`` are always free
    ports: the health_check extension and the collector's own Prometheus metrics."""

    def __init__(self, directory, config: Path | str, overlay: dict | None = None, name: str = "otelcol"):
        self.binary = collector_binary()
        self.dir = Path(directory)
        self.config = Path(config)
        self.name = name
        self.health_port, self.metrics_port = free_port(), free_port()
        self.overlay = merge({
            "extensions": {"health_check": {"endpoint": f"127.0.0.1:{self.health_port}"}},
            "service": {"telemetry": {
                "logs": {"level": "info"},
                "metrics": {"level": "detailed", "readers": [{"pull": {"exporter": {"prometheus": {
                    "host": "127.0.0.1", "port": self.metrics_port}}}}]},
            }},
        }, overlay or {})
        self.overlay_path = self.dir / f"{name}-overlay.yaml"
        self.overlay_path.write_text(yaml.safe_dump(self.overlay, sort_keys=False))
        self.log_path = self.dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def command(self, *extra: str) -> list[str]:
        return [self.binary, "--config", str(self.config), "--config", str(self.overlay_path), *extra]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def start(self, timeout: float = 30.0) -> "Collector":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")})

        def healthy() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/", timeout=1) as resp:
                return resp.status == 200

        try:
            wait_until(healthy, timeout, interval=0.1, what=f"{self.name} health_check ({self.log_path})")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (the collector drains its queues), SIGKILL past ``timeout``; the exit code."""
        return stop_process(self.proc, timeout) if self.proc is not None else None

    def metrics(self) -> dict[str, float]:
        """The collector's own metrics: ``name{labels}`` -> value (summed over identical keys)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match:
                key = match.group(1) + _labels(match.group(2) or "")
                out[key] = out.get(key, 0.0) + float(match.group(3))
        return out

    def metric(self, name: str, **labels: str) -> float:
        """Sum of one collector metric over series whose labels include ``labels`` (0 when none)."""
        want = [f'{k}="{v}"' for k, v in labels.items()]
        return sum(v for k, v in self.metrics().items()
                   if k.split("{", 1)[0] == name and all(w in k for w in want))

    def __enter__(self) -> "Collector":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def _labels(raw: str) -> str:
    """Labels minus the collector's own identity labels, in a stable order."""
    pairs = re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', raw)
    kept = sorted((k, v) for k, v in pairs if not k.startswith(("service_", "otel_scope_")))
    return "{" + ",".join(f'{k}="{v}"' for k, v in kept) + "}" if kept else ""


def validate(config: Path | str, *overlays: Path | str) -> subprocess.CompletedProcess:
    """``otelcol-driftcar validate`` on a config (plus overlay files)."""
    args = [collector_binary(), "validate", "--config", str(config)]
    for extra in overlays:
        args += ["--config", str(extra)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")})
