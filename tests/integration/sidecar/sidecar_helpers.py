"""Shared helpers for sidecar integration tests: in-thread sidecars, HTTP JSON, gRPC senders."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

from driftcar.sidecar.config import load_config


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
