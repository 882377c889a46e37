"""Access control on a running sidecar: TLS with client certificates on both receivers and
the API, bearer token on the API, refusing insecure binds, tokens never in logs."""

from __future__ import annotations

import logging
import ssl
import subprocess
import urllib.error
import urllib.request

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

from driftcar.sidecar.service import run_in_thread

from tests.integration.sidecar.sidecar_helpers import config, get_json
from tests.support.waiting import require_binary, wait_until
from tests.unit.sidecar.batches import inference_body, numeric_frame, record, request


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate (openssl CLI)."""
    openssl = require_binary("openssl")
    d = tmp_path_factory.mktemp("pki")

    def run(*args):
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=driftcar-test-ca")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=driftcar-{name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext")
    return d


def test_tls_with_client_certificates_on_both_receivers(pki):
    handle = run_in_thread(config(**{"tls.cert": str(pki / "server.pem"), "tls.key": str(pki / "server.key"),
                                     "tls.client_ca": str(pki / "ca.pem")}))
    try:
        ca = (pki / "ca.pem").read_bytes()
        key, cert = (pki / "client.key").read_bytes(), (pki / "client.pem").read_bytes()
        body = request(record(inference_body(numeric_frame(10, 2))))
        target = f"127.0.0.1:{handle.service.grpc_port}"
        with grpc.secure_channel(target, grpc.ssl_channel_credentials(ca, key, cert)) as channel:
            logs_service_pb2_grpc.LogsServiceStub(channel).Export(body, timeout=10)
        with grpc.secure_channel(target, grpc.ssl_channel_credentials(ca)) as channel:  # no client cert
            with pytest.raises(grpc.RpcError) as info:
                logs_service_pb2_grpc.LogsServiceStub(channel).Export(body, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        url = f"https://127.0.0.1:{handle.service.http_port}/v1/logs"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        ctx.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
        req = urllib.request.Request(url, data=body.SerializeToString(), method="POST",
                                     headers={"Content-Type": "application/x-protobuf"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            assert resp.status == 200
        bare = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(req, context=bare, timeout=10)
        wait_until(lambda: ("m", "1") in handle.service.store.models
                   and handle.service.store.models[("m", "1")].rows_total == 20, 10, what="both requests applied")
    finally:
        handle.stop()


def test_token_guards_api_and_metrics_but_not_probes_and_never_logs(tmp_path, caplog):
    token = "tok-" + "x9" * 16
    path = tmp_path / "token"
    path.write_text(token + "\n")
    caplog.set_level(logging.DEBUG, logger="driftcar")
    handle = run_in_thread(config(token_file=str(path)))
    try:
        http = handle.http_endpoint
        assert get_json(f"{http}/healthz")[0] == 200 and get_json(f"{http}/readyz")[0] == 200
        assert get_json(f"{http}/v1/models")[0] == 401
        assert get_json(f"{http}/v1/models", {"Authorization": "Bearer wrong"})[0] == 401
        assert get_json(f"{http}/v1/models", {"Authorization": f"Bearer {token}"})[0] == 200
        metrics = f"http://127.0.0.1:{handle.service.prometheus_port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(metrics, timeout=10)
        assert info.value.code == 401
        with grpc.insecure_channel(f"127.0.0.1:{handle.service.grpc_port}") as channel:
            stub = logs_service_pb2_grpc.LogsServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.Export(request(record(b"\x00secret-payload", rows=1)), timeout=10,
                            metadata=(("authorization", "Bearer nope"),))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as info:  # authorised, but the body is garbage
                stub.Export(request(record(b"\x00secret-payload", rows=1)), timeout=10,
                            metadata=(("authorization", f"Bearer {token}"),))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        handle.stop()
    assert token not in caplog.text and "secret-payload" not in caplog.text
    assert "TokenAuth(enabled=True)" == repr(handle.service.auth)


def test_non_loopback_bind_needs_explicit_flag_and_warns(caplog):
    from driftcar.sidecar.config import ConfigError

    with pytest.raises(ConfigError, match="allow-insecure-bind"):
        config(http="0.0.0.0:0")
    caplog.set_level(logging.WARNING, logger="driftcar")
    handle = run_in_thread(config(http="0.0.0.0:0", allow_insecure_bind=True))
    try:
        assert "without TLS or a bearer token" in caplog.text
    finally:
        handle.stop()
