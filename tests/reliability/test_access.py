"""Check 11: who may talk to the sidecar, and what its logs never contain.

Real ``driftcar sidecar`` processes: loopback binds by default, a non-loopback bind
without TLS or token refused unless ``--allow-insecure-bind`` (with a warning), bearer
tokens from a file and from ``DRIFTCAR_TOKEN`` (UNAUTHENTICATED / 401 without the right
one, compared with ``hmac.compare_digest``), TLS with client certificates on both
receivers (a throwaway CA made with ``cryptography``), and a debug-level log that never
shows a token or payload content. The container's non-root user is checked statically in
tests/deploy/test_dockerfile.py::test_runs_as_non_root. In-process receiver token tests:
tests/integration/sidecar/test_sidecar_receivers.py::test_token_required_on_both_transports.
"""

from __future__ import annotations

import logging
import ssl
import subprocess
import sys

import grpc
import pytest

from driftcar.sidecar import security
from driftcar.sidecar.config import ConfigError, load_config
from tests.reliability.certs import make_pki
from tests.reliability.harness import RawGrpc, Sidecar, child_env, http_get, http_post
from tests.unit.sidecar.batches import numeric_frame, record, request

pytestmark = pytest.mark.timeout(90)
TOKEN = "tok-3f9a1c77e2b84d10a5c6-SECRET"
WRONG = "tok-0000-WRONG-SECRET-guess"
MARKER = "PAYLOADMARKER7f3c"  # in feature names, string cells and resource attributes


def payload(model: str = "m") -> bytes:
    from driftcar.wire import Column, encode_batch

    body = encode_batch("inference", [Column(f"{MARKER}_x", "feature", numeric_frame(3)["x0"]),
                                      Column("city", "feature", [f"{MARKER}-cell"] * 3)])
    return request(record(body, model=model), resource={"service.name": "s", "secret.attr": MARKER}).SerializeToString()


def test_receivers_bind_loopback_by_default():
    config = load_config(env={})
    for endpoint in (config.grpc, config.http, config.prometheus):
        assert endpoint.is_loopback and endpoint.host == "127.0.0.1"


def test_non_loopback_bind_without_tls_or_token_is_refused(tmp_path):
    done = subprocess.run([sys.executable, "-m", "driftcar.cli", "sidecar", "--grpc", "0.0.0.0:0", "--http",
                           "127.0.0.1:0", "--prometheus", "off", "--export", "none"],
                          capture_output=True, text=True, timeout=30, env=child_env())
    assert done.returncode == 2, done
    assert "--allow-insecure-bind" in done.stderr and "0.0.0.0" in done.stderr
    # the explicit flag, or a token, makes it a valid configuration
    flags = {"grpc": "0.0.0.0:0", "prometheus": "off"}
    with pytest.raises(ConfigError):
        load_config(env={}, flags=flags)
    assert load_config(env={}, flags={**flags, "allow_insecure_bind": True}).insecure_binds(env={})
    assert load_config(env={"DRIFTCAR_TOKEN": TOKEN}, flags=flags)


def test_allowed_insecure_bind_logs_a_warning(monkeypatch, caplog):
    """The warning itself, without opening a non-loopback socket in a test (binds stay on 127.0.0.1)."""
    from driftcar.sidecar.config import SidecarConfig
    from driftcar.sidecar.service import run_in_thread
    from tests.integration.sidecar.sidecar_helpers import config

    monkeypatch.setattr(SidecarConfig, "insecure_binds", lambda self, env=None: ["grpc=0.0.0.0:14317"])
    with caplog.at_level(logging.WARNING, logger="driftcar.sidecar"):
        handle = run_in_thread(config(allow_insecure_bind=True))
        handle.stop()
    assert any("without TLS or a bearer token" in r.getMessage() and "0.0.0.0" in r.getMessage()
               for r in caplog.records)


def test_token_is_compared_in_constant_time(monkeypatch):
    calls = []
    real = security.hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    auth = security.TokenAuth(TOKEN)
    assert auth.check(f"Bearer {TOKEN}") and not auth.check(f"Bearer {WRONG}") and not auth.check(None)
    assert len(calls) == 2 and TOKEN not in repr(auth)


def _check_token_enforced(sidecar: Sidecar) -> None:
    client = RawGrpc(sidecar.grpc_target)
    try:
        for metadata, expected in (((), "UNAUTHENTICATED"), ((("authorization", f"Bearer {WRONG}"),), "UNAUTHENTICATED"),
                                   ((("authorization", TOKEN),), "UNAUTHENTICATED"),
                                   ((("authorization", f"Bearer {TOKEN}"),), "OK")):
            assert client.send(payload(), metadata=metadata).code == expected, metadata
    finally:
        client.close()
    for headers, expected in (({}, "401"), ({"Authorization": f"Bearer {WRONG}"}, "401"),
                              ({"Authorization": f"Basic {TOKEN}"}, "401"),
                              ({"Authorization": f"Bearer {TOKEN}"}, "200")):
        reply = http_post(sidecar.ports["http"], payload(), headers=headers)
        assert reply.code == expected, (headers, reply)
        if expected == "401":
            assert TOKEN.encode() not in reply.body
    assert http_get(f"{sidecar.http}/v1/models")[0] == 401
    assert http_get(f"{sidecar.http}/v1/models", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert http_get(f"http://127.0.0.1:{sidecar.ports['prometheus']}/metrics")[0] == 401
    assert http_get(f"{sidecar.http}/healthz")[0] == 200  # probes stay open


def test_bearer_token_from_a_file_and_logs_never_show_tokens_or_payloads(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with Sidecar(tmp_path, "--export", "console", "--window", "1h", "--token-file", str(token_file),
                 "--log-level", "debug", "--export-interval", "1s") as sidecar:
        _check_token_enforced(sidecar)
        client = RawGrpc(sidecar.grpc_target)
        auth = (("authorization", f"Bearer {TOKEN}"),)
        try:  # bad requests that carry the marker too: their refusals are logged/counted, never echoed
            client.send(payload()[:-7], metadata=auth)
            client.send(payload(model=MARKER * 20), metadata=auth)
            client.send(b"\x0a\x05" + MARKER.encode(), metadata=auth)
        finally:
            client.close()
        http_post(sidecar.ports["http"], b'{"resourceLogs": "' + MARKER.encode() + b'"}', "application/json",
                  {"Authorization": f"Bearer {TOKEN}"})
        code, _ = sidecar.terminate()
        assert code == 0
    log = open(sidecar.log_path, encoding="utf-8", errors="replace").read()
    assert "DEBUG" in log or "INFO" in log  # the log was captured at all
    for secret in (TOKEN, WRONG, "tok-"):
        assert secret not in log, f"{secret!r} appears in the sidecar log"
    # console export prints metrics (feature names are data-derived attributes, by design);
    # the log lines themselves (logger records) must not carry payload content
    log_lines = [line for line in log.splitlines() if " driftcar" in line and ("INFO" in line or "WARNING" in line
                                                                              or "DEBUG" in line or "ERROR" in line)]
    assert log_lines
    assert not [line for line in log_lines if MARKER in line], [line for line in log_lines if MARKER in line][:3]


def test_bearer_token_from_the_environment(tmp_path):
    with Sidecar(tmp_path, "--export", "none", "--window", "1h", env={"DRIFTCAR_TOKEN": TOKEN}) as sidecar:
        _check_token_enforced(sidecar)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


def _client_context(pki, cert: str | None, key: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca)
    if cert:
        context.load_cert_chain(cert, key)
    return context


def test_tls_with_client_certificates_on_both_receivers(tmp_path, pki):
    with _TlsSidecar(tmp_path, pki) as sidecar:
        good = grpc.ssl_channel_credentials(pki.read("ca"), pki.read("client_key"), pki.read("client_cert"))
        rogue = grpc.ssl_channel_credentials(pki.read("ca"), pki.read("rogue_key"), pki.read("rogue_cert"))
        none = grpc.ssl_channel_credentials(pki.read("ca"))
        results = {}
        for name, creds in (("good", good), ("rogue", rogue), ("none", none)):
            client = RawGrpc(sidecar.grpc_target, creds)
            results[name] = client.send(payload(), timeout=10).code
            client.close()
        plain = RawGrpc(sidecar.grpc_target)
        results["plaintext"] = plain.send(payload(), timeout=5).code
        plain.close()
        assert results == {"good": "OK", "rogue": "UNAVAILABLE", "none": "UNAVAILABLE", "plaintext": "UNAVAILABLE"}
        port = sidecar.ports["http"]
        assert http_post(port, payload(), context=_client_context(pki, pki.client_cert, pki.client_key)).code == "200"
        for cert, key in ((None, None), (pki.rogue_cert, pki.rogue_key)):
            reply = http_post(port, payload(), context=_client_context(pki, cert, key))
            assert reply.error and not reply.code, reply  # the handshake (TLS 1.3: the first read) fails
        assert http_post(port, payload()).error or http_post(port, payload()).code == "400"  # plain HTTP to TLS


class _TlsSidecar(Sidecar):
    """A TLS sidecar: readiness is probed over HTTPS with the client certificate."""

    def __init__(self, tmp_path, pki):
        super().__init__(tmp_path, "--export", "none", "--window", "1h", "--tls-cert", pki.server_cert,
                         "--tls-key", pki.server_key, "--tls-client-ca", pki.ca, tag="tls-sidecar")
        self.pki = pki

    def _ready(self) -> bool:
        import urllib.request

        context = _client_context(self.pki, self.pki.client_cert, self.pki.client_key)
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{self.ports['http']}/readyz", timeout=2,
                                        context=context) as resp:
                return resp.status == 200
        except OSError:
            return False
