"""The retry loop and the OTLP status classification of both transports."""

import random
import threading

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from driftcar.hook.shipping.grpc_exporter import GrpcExporter, retry_delay_from_metadata
from driftcar.hook.shipping.retry import Backoff, Outcome, export_with_retry


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class ScriptedExporter:
    """Answers in order; waits are simulated on the fake clock through a stop event."""

    def __init__(self, answers, clock):
        self.answers = list(answers)
        self.clock = clock
        self.calls = 0

    def export(self, payload, timeout_s):
        self.calls += 1
        return self.answers.pop(0)

    def abort(self):
        pass

    def close(self):
        pass


class ClockStop(threading.Event):
    """A stop event whose wait advances the fake clock instead of sleeping; records each wait."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock
        self.waits = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        self.clock.now += timeout
        return self.is_set()


def run(answers, *, deadline_in=60.0, backoff=None):
    clock = FakeClock()
    stop = ClockStop(clock)
    exporter = ScriptedExporter(answers, clock)
    result = export_with_retry(exporter, b"x", deadline=clock() + deadline_in,
                               backoff=backoff or Backoff(1.0, 8.0, 0.0), stop=stop, clock=clock)
    return result, exporter, stop


def test_retryable_failures_are_retried_with_exponential_backoff_until_success():
    result, exporter, stop = run([Outcome.retry("grpc UNAVAILABLE")] * 5 + [Outcome.success()])
    assert result.outcome.ok and result.retries == 5 and exporter.calls == 6
    assert stop.waits == [1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped at 8


def test_permanent_failure_is_not_retried():
    result, exporter, stop = run([Outcome.permanent("grpc INVALID_ARGUMENT"), Outcome.success()])
    assert not result.outcome.ok and exporter.calls == 1 and stop.waits == []


def test_server_hint_replaces_the_backoff():
    result, _, stop = run([Outcome.retry("http 503", retry_after_s=3.5), Outcome.success()])
    assert result.outcome.ok and stop.waits == [3.5]


def test_never_waits_past_the_deadline():
    result, exporter, stop = run([Outcome.retry("x")] * 100, deadline_in=10.0)
    assert not result.outcome.ok
    assert sum(stop.waits) <= 10.0 and stop.waits == [1.0, 2.0, 4.0]  # next (8 s) would end past it
    result, exporter, stop = run([Outcome.retry("x", retry_after_s=30.0)], deadline_in=10.0)
    assert not result.outcome.ok and stop.waits == [] and exporter.calls == 1


def test_stop_interrupts_the_wait():
    clock = FakeClock()
    stop = ClockStop(clock)
    stop.set()
    exporter = ScriptedExporter([Outcome.retry("x"), Outcome.success()], clock)
    result = export_with_retry(exporter, b"", deadline=clock() + 60, backoff=Backoff(), stop=stop, clock=clock)
    assert not result.outcome.ok and exporter.calls == 1


def test_jitter_stays_within_its_band():
    backoff = Backoff(1.0, 32.0, 0.2, rng=random.Random(3))
    delays = [backoff.delay(2) for _ in range(2_000)]
    assert 3.2 <= min(delays) < 3.3 and 4.7 < max(delays) <= 4.8  # 4 s +-20%, both ends reached
    assert len(set(delays)) > 1_900


def _rpc_error(code, retry_delay=None):
    details = []
    if retry_delay is not None:
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=int(retry_delay),
                                                                                  nanos=int(retry_delay % 1 * 1e9))))
        details.append(packed)
    trailer = (("grpc-status-details-bin", status_pb2.Status(code=code.value[0], details=details).SerializeToString()),)

    class Err(grpc.RpcError):
        def code(self):
            return code

        def details(self):
            return "scripted"

        def trailing_metadata(self):
            return trailer

    return Err()


RETRYABLE = ["CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"]


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_grpc_codes_follow_the_otlp_spec(code):
    if code == grpc.StatusCode.OK:
        return
    plain = GrpcExporter._classify(_rpc_error(code))
    hinted = GrpcExporter._classify(_rpc_error(code, retry_delay=2.25))
    assert plain.retryable == (code.name in RETRYABLE)
    # RESOURCE_EXHAUSTED becomes retryable only with RetryInfo
    assert hinted.retryable == (code.name in RETRYABLE or code.name == "RESOURCE_EXHAUSTED")
    if hinted.retryable:
        assert hinted.retry_after_s == pytest.approx(2.25)


def test_garbled_or_missing_status_details_give_no_hint():
    assert retry_delay_from_metadata((("grpc-status-details-bin", b"\xff\xff"),)) is None
    assert retry_delay_from_metadata(()) is None
    assert retry_delay_from_metadata(None) is None
