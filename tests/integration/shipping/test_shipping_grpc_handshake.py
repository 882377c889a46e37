"""Before it opens a channel the gRPC exporter has the endpoint answer an HTTP/2 handshake
(``GrpcExporter.ready``): a gRPC server passes, a black hole times out with the worker blocked in
the kernel (no channel, no gRPC thread, no 200 ms GIL wake-ups), a refused port and an OTLP/HTTP
port fail at once with a clear reason, and a shutdown ends a handshake in flight. Real servers on
127.0.0.1."""

from __future__ import annotations

import threading

import pytest

from driftcar.hook.shipping.grpc_exporter import GrpcExporter
from tests.support.otlp import GrpcOtlpReceiver, HttpOtlpReceiver
from tests.support.waiting import free_port, wait_until
from tests.unit.shipping.helpers import BlackHole

pytestmark = pytest.mark.timeout(60)


def _target(endpoint: str) -> str:
    return endpoint.split("://", 1)[1]


def test_a_grpc_server_answers_the_handshake_and_no_channel_is_opened_for_it():
    with GrpcOtlpReceiver() as rx:
        exporter = GrpcExporter(_target(rx.endpoint))
        try:
            assert exporter.ready(5.0) is None
            assert exporter._channel is None  # the export opens it
        finally:
            exporter.close()


def test_a_black_hole_times_out_in_one_wait_and_opens_no_channel():
    with BlackHole() as hole:
        exporter = GrpcExporter(f"127.0.0.1:{hole.port}")
        try:
            threads = threading.active_count()
            outcome = exporter.ready(0.3)
            assert outcome is not None and outcome.retryable and outcome.error == "grpc handshake timeout", outcome
            assert exporter._channel is None and threading.active_count() == threads
            assert len(hole.conns) == 1
        finally:
            exporter.close()


def test_a_refused_port_fails_at_once():
    exporter = GrpcExporter(f"127.0.0.1:{free_port()}")
    try:
        outcome = exporter.ready(30.0)
        assert outcome is not None and outcome.retryable and outcome.error == "grpc connect ConnectionRefusedError", outcome
    finally:
        exporter.close()


def test_an_otlp_http_port_given_to_grpc_is_named_in_the_failure():
    with HttpOtlpReceiver() as rx:
        exporter = GrpcExporter(_target(rx.endpoint))
        try:
            outcome = exporter.ready(30.0)  # the HTTP/1.1 server answers the preface with an error at once
            assert outcome is not None and outcome.retryable and outcome.error == "grpc endpoint not HTTP/2", outcome
            assert "OTLP/HTTP port" in outcome.detail, outcome
        finally:
            exporter.close()


def test_abort_ends_a_handshake_in_flight():
    with BlackHole() as hole:
        exporter = GrpcExporter(f"127.0.0.1:{hole.port}")
        outcomes = []
        waiter = threading.Thread(target=lambda: outcomes.append(exporter.ready(30.0)), daemon=True)
        waiter.start()
        try:
            wait_until(lambda: exporter._probe is not None, timeout=10, what="the handshake to wait")
            exporter.abort()
            waiter.join(5)  # the handshake had 30 s left
            assert not waiter.is_alive()
            assert outcomes[0] is not None and not outcomes[0].retryable, outcomes
            assert "cancelled" in outcomes[0].error, outcomes
        finally:
            exporter.close()
            waiter.join(10)


def test_a_proxy_in_the_environment_skips_the_handshake(monkeypatch):
    monkeypatch.setenv("grpc_proxy", "http://127.0.0.1:9")
    exporter = GrpcExporter(f"127.0.0.1:{free_port()}")
    try:
        assert exporter.ready(1.0) is None  # a direct connect would say nothing about the proxy's route
    finally:
        exporter.close()
