"""https:// endpoints: both transports verify the receiver against DRIFTCAR_CA_FILE / ca_file."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import numpy as np
import pytest

from driftcar.hook.shipping import Shipper, ShipperConfig
from tests.support.otlp import GrpcOtlpReceiver, HttpOtlpReceiver
from tests.support.waiting import require_binary
from tests.unit.shipping.helpers import decoded_batches, item, to_parts


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl CLI)."""
    require_binary("openssl")
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(
        [shutil.which("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )
    return key, cert


def _receiver(protocol, key, cert):
    if protocol == "grpc":
        return GrpcOtlpReceiver(tls=(key.read_bytes(), cert.read_bytes()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return HttpOtlpReceiver(ssl_context=context)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_tls_endpoint_is_verified_with_the_configured_roots(protocol, certificate):
    key, cert = certificate
    with _receiver(protocol, key, cert) as rx:
        assert rx.endpoint.startswith("https://")
        trusted = Shipper(ShipperConfig.from_env("m", env={"DRIFTCAR_CA_FILE": str(cert)}, endpoint=rx.endpoint,
                                                 protocol=protocol), convert=to_parts)
        untrusted = Shipper(ShipperConfig("m", endpoint=rx.endpoint, protocol=protocol, timeout_s=1.0,
                                          retry_initial_backoff_s=0.1), convert=to_parts)
        try:
            trusted.offer(item(np.ones((3, 2))))
            assert trusted.flush(10)
            untrusted.offer(item(np.ones((4, 2))))
            assert untrusted.flush(10)
        finally:
            trusted.shutdown(5)
            untrusted.shutdown(5)
        assert [b.rows for _, b in decoded_batches(rx.logs)] == [3]  # only the verified client got through
    assert trusted.stats["sent_rows"] == 3
    assert untrusted.stats["sent_rows"] == 0 and untrusted.stats["failed_exports"] == 1


def test_a_missing_ca_file_is_a_config_error():
    with pytest.raises(ValueError, match="ca_file"):
        ShipperConfig("m", ca_file="/nonexistent/ca.pem")
