"""Against scripted OTLP servers: retry exactly on the spec's retryable answers, honour the hints."""

from __future__ import annotations

import email.utils
import math
import time

import grpc
import numpy as np
import pytest

from driftcar.hook.shipping import Shipper, ShipperConfig
from tests.support.otlp import Answer, GrpcOtlpReceiver, HttpOtlpReceiver
from tests.unit.shipping.helpers import item, to_parts

# a short first backoff: a retry that should not happen would be made before flush() returns
CONFIG = dict(timeout_s=8.0, max_batch_age_s=60.0, retry_initial_backoff_s=0.05)


def _ship_once(rx, protocol: str) -> Shipper:
    shipper = Shipper(ShipperConfig("m", "1", endpoint=rx.endpoint, protocol=protocol, **CONFIG), convert=to_parts)
    shipper.offer(item(np.ones((4, 3))))
    assert shipper.flush(10)
    return shipper


@pytest.mark.timeout(20)
@pytest.mark.parametrize("code", ["INVALID_ARGUMENT", "PERMISSION_DENIED", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED",
                                  "INTERNAL", "UNIMPLEMENTED"])
def test_grpc_non_retryable_codes_are_not_retried(code):
    answer = Answer(grpc_code=grpc.StatusCode[code], message="scripted")  # RESOURCE_EXHAUSTED without RetryInfo
    with GrpcOtlpReceiver(respond=lambda kind, req, n: answer) as rx:
        shipper = _ship_once(rx, "grpc")
        shipper.shutdown(2)
        assert len(rx.attempts) == 1
    stats = shipper.stats
    assert stats["failed_exports"] == 1 and stats["retries"] == 0 and stats["dropped_rows"] == 4


@pytest.mark.timeout(20)
@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 500])
def test_http_non_retryable_statuses_are_not_retried(status):
    with HttpOtlpReceiver(respond=lambda kind, req, n: Answer(http_status=status, message="scripted")) as rx:
        shipper = _ship_once(rx, "http/protobuf")
        shipper.shutdown(2)
        assert len(rx.attempts) == 1
    assert shipper.stats["failed_exports"] == 1 and shipper.stats["retries"] == 0


def _gap_after_hint(rx, protocol: str) -> float:
    shipper = _ship_once(rx, protocol)
    shipper.shutdown(2)
    assert len(rx.attempts) == 2 and len(rx.logs) == 1  # retried once, then delivered
    assert shipper.stats["retries"] == 1 and shipper.stats["sent_rows"] == 4
    return rx.attempts[1][0] - rx.attempts[0][0]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("code", ["UNAVAILABLE", "RESOURCE_EXHAUSTED"])
def test_grpc_retry_info_delay_is_honoured(code):
    hint = 1.5
    first = Answer(grpc_code=grpc.StatusCode[code], retry_after_s=hint, message="busy")
    with GrpcOtlpReceiver(respond=lambda kind, req, n: first if n == 1 else Answer()) as rx:
        gap = _gap_after_hint(rx, "grpc")
    assert hint * 0.8 <= gap <= hint * 1.2


@pytest.mark.timeout(20)
def test_http_503_retry_after_seconds_is_honoured():
    hint = 2.0
    first = Answer(http_status=503, retry_after_s=hint, message="busy")
    with HttpOtlpReceiver(respond=lambda kind, req, n: first if n == 1 else Answer()) as rx:
        gap = _gap_after_hint(rx, "http/protobuf")
    assert hint * 0.8 <= gap <= hint * 1.2


@pytest.mark.timeout(20)
def test_http_429_retry_after_date_is_honoured():
    answered = {}

    def respond(kind, req, n):
        if n > 1:
            return Answer()
        when = math.floor(time.time()) + 3  # HTTP-dates have whole seconds: the wait is in (2, 3] s
        answered["hint"] = when - time.time()
        return Answer(http_status=429, headers={"Retry-After": email.utils.formatdate(when, usegmt=True)})

    with HttpOtlpReceiver(respond=respond) as rx:
        gap = _gap_after_hint(rx, "http/protobuf")
    assert answered["hint"] * 0.8 <= gap <= answered["hint"] * 1.2


@pytest.mark.timeout(20)
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_retryable_answers_are_retried_with_backoff_until_delivered(protocol):
    if protocol == "grpc":
        fail, cls = Answer(grpc_code=grpc.StatusCode.UNAVAILABLE), GrpcOtlpReceiver
    else:
        fail, cls = Answer(http_status=502), HttpOtlpReceiver
    with cls(respond=lambda kind, req, n: fail if n <= 3 else Answer()) as rx:
        shipper = _ship_once(rx, protocol)
        shipper.shutdown(2)
        times = [t for t, _ in rx.attempts]
    assert len(times) == 4 and shipper.stats["retries"] == 3 and shipper.stats["sent_rows"] == 4
    gaps = np.diff(times)
    # 0.05, 0.1, 0.2 s, each within +-20% jitter (plus scheduling slack)
    for gap, base in zip(gaps, (0.05, 0.1, 0.2)):
        assert base * 0.8 <= gap <= base * 1.2 + 0.05


@pytest.mark.timeout(20)
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_partial_success_is_recorded_and_not_retried(protocol):
    answer = Answer(rejected_log_records=1, message="one record refused")
    cls = GrpcOtlpReceiver if protocol == "grpc" else HttpOtlpReceiver
    with cls(respond=lambda kind, req, n: answer) as rx:
        shipper = _ship_once(rx, protocol)
        shipper.shutdown(2)
        assert len(rx.attempts) == 1
    assert shipper.stats["rejected_records"] == 1 and shipper.stats["failed_exports"] == 0
