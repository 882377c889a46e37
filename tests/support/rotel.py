"""The ``rotel`` collector binary (PyPI) as a real OTLP hop in tests: gRPC + HTTP in, OTLP/gRPC out."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.waiting import free_port, port_accepts, rotel_binary, stop_process, wait_until


class Rotel:
    """Start rotel on two free loopback ports, forwarding to ``exporter_endpoint``; stop it on exit.

    Its output goes to files in ``directory`` (named by port), read back in failure messages.
    """

    def __init__(self, directory, exporter_endpoint: str, *, batch_timeout: str = "100ms",
                 logs_only: bool = False):
        self.binary = rotel_binary()
        self.grpc_port, self.http_port = free_port(), free_port()
        self.exporter_endpoint = exporter_endpoint
        self.batch_timeout = batch_timeout
        self.logs_only = logs_only
        self.dir = str(directory)
        self.proc: subprocess.Popen | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _path(self, suffix: str) -> str:
        return os.path.join(self.dir, f"rotel-{self.grpc_port}.{suffix}")

    def output(self) -> str:
        try:
            with open(self._path("out"), errors="replace") as fh:
                return fh.read()[-2000:]
        except OSError:
            return ""

    def __enter__(self) -> "Rotel":
        cmd = [self.binary, "start",
               "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
               "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
               "--exporter", "otlp", "--otlp-exporter-endpoint", self.exporter_endpoint,
               "--otlp-exporter-protocol", "grpc",
               "--batch-timeout", self.batch_timeout,
               "--pid-file", self._path("pid"), "--log-file", self._path("log")]
        if self.logs_only:
            cmd += ["--otlp-receiver-traces-disabled", "--otlp-receiver-metrics-disabled"]
        self._log = open(self._path("out"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)

        def listening() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"rotel exited with {self.proc.returncode}: {self.output()}")  # fails at once
            return port_accepts(self.grpc_port) and port_accepts(self.http_port)

        try:
            wait_until(listening, 20, what="rotel listening")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10)
        self._log.close()
