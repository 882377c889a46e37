"""Check 2 for the hook's exporter: the OTLP specification's retry table, every cell, one table.

The sidecar's exporters have the same matrix in
tests/integration/telemetry/test_retry_conformance.py; the hook's scripted-server tests
(tests/integration/shipping/test_shipping_retries.py) check delays, back-off and partial
success on a subset. Here every gRPC status (with and without RetryInfo) and the HTTP
statuses 400/401/403/404/408/413/429/500/502/503/504 (no header, Retry-After seconds,
Retry-After HTTP-date) answer the hook's first export; the second succeeds. The expected
table is written from the specification (https://opentelemetry.io/docs/specs/otlp/#failures
and #failures-1), not imported from the code under test.
"""

from __future__ import annotations

import time
from email.utils import formatdate

import grpc
import numpy as np
import pytest

from driftcar.hook.shipping import Shipper, ShipperConfig
from tests.support.otlp import OK, Answer, GrpcOtlpReceiver, HttpOtlpReceiver
from tests.unit.shipping.helpers import item, to_parts

pytestmark = pytest.mark.timeout(30)
SPEC_GRPC_RETRYABLE = {"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"}
SPEC_HTTP_RETRYABLE = {429, 502, 503, 504}
HEADERS = {
    "no-header": lambda: None,
    "retry-after-seconds": lambda: {"Retry-After": "0"},
    "retry-after-http-date": lambda: {"Retry-After": formatdate(time.time() - 5, usegmt=True)},  # already due
}
TABLE = [("grpc", code.name, hint) for code in grpc.StatusCode if code != grpc.StatusCode.OK
         for hint in ("no-retryinfo", "retryinfo")]
TABLE += [("http/protobuf", status, header) for status in (400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504)
          for header in HEADERS]


def spec_says_retry(protocol: str, status, hint: str) -> bool:
    if protocol == "grpc":
        return status in SPEC_GRPC_RETRYABLE or (status == "RESOURCE_EXHAUSTED" and hint == "retryinfo")
    return status in SPEC_HTTP_RETRYABLE


@pytest.mark.parametrize("protocol,status,hint", TABLE, ids=[f"{p.split('/')[0]}-{s}-{h}" for p, s, h in TABLE])
def test_hook_exporter_follows_the_spec_table(protocol, status, hint):
    if protocol == "grpc":
        answer = Answer(grpc_code=grpc.StatusCode[status], message="scripted",
                        retry_after_s=0.05 if hint == "retryinfo" else None)
        receiver = GrpcOtlpReceiver(respond=lambda kind, req, n: answer if n == 1 else OK)
    else:
        answer = Answer(http_status=status, message="scripted", headers=HEADERS[hint]())
        receiver = HttpOtlpReceiver(respond=lambda kind, req, n: answer if n == 1 else OK)
    with receiver as rx:
        shipper = Shipper(ShipperConfig("m", "1", endpoint=rx.endpoint, protocol=protocol, timeout_s=8.0,
                                        max_batch_age_s=60.0, retry_initial_backoff_s=0.05), convert=to_parts)
        shipper.offer(item(np.ones((4, 3))))
        assert shipper.flush(10)
        shipper.shutdown(2)
        attempts = len(rx.attempts)
    stats = shipper.stats
    if spec_says_retry(protocol, status, hint):
        assert attempts == 2 and stats["retries"] == 1 and stats["sent_rows"] == 4, (attempts, stats)
    else:
        assert attempts == 1 and stats["retries"] == 0, (attempts, stats)
        assert stats["failed_exports"] == 1 and stats["dropped_rows"] == 4  # final: counted, not retried
