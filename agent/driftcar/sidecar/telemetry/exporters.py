"""OTLP exporters for the sidecar's metrics and events: the SDK's, with the retry table of the OTLP spec.

The SDK exporters read every standard variable (``OTEL_EXPORTER_OTLP_[METRICS_|LOGS_]ENDPOINT``,
``_HEADERS``, ``_TIMEOUT``, ``_INSECURE``, ``_COMPRESSION``, ``_CERTIFICATE`` ...), so we build on
them. Where they deviate from the OTLP specification we fix it here:

* gRPC: the SDK retries ``RESOURCE_EXHAUSTED`` always, and reads the server's ``RetryInfo`` only
  from a ``google.rpc.retryinfo-bin`` trailer, while servers (the Collector, driftcar's own
  receiver) put it in the standard ``grpc-status-details-bin`` status details. The spec: retry
  CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS; retry
  RESOURCE_EXHAUSTED only when the status carries RetryInfo; honour RetryInfo's delay; never
  retry anything else. :class:`GrpcMetricExporter` / :class:`GrpcLogExporter` replace the retry
  loop accordingly (same deadline: ``OTEL_EXPORTER_OTLP_TIMEOUT``, interruptible by shutdown).
* HTTP: the SDK's table already matches the spec (429/502/503/504 retried, ``Retry-After``
  seconds or HTTP-date honoured, everything else final), so it is used unchanged.
* Both: ``OTEL_EXPORTER_OTLP_[SIGNAL_]TIMEOUT`` is milliseconds per the spec; the SDK reads seconds
  (see :func:`resolve_timeout_s`); the factories in ``telemetry.py`` pass the spec's value.
* Both: the SDK ignores partial-success responses. Those are final (never retried, as the spec
  says) and their rejected counts are recorded in :class:`ExportStats` and logged once.

Blocking: ``export`` blocks its caller (the telemetry export thread) up to the export timeout.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Sequence

import grpc
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as _SdkGrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as _SdkGrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as _SdkHttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as _SdkHttpMetricExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExportResult

from driftcar.sidecar.telemetry.otlp import count_points
from driftcar.wire.retry import DEFAULT_MAX_BACKOFF_S, Backoff, Outcome, RetryState, retry
from driftcar.wire.otlp_status import (  # noqa: F401  (re-exported: the spec table)
    RETRYABLE_GRPC_CODES,
    RETRYABLE_HTTP_STATUSES,
    grpc_is_retryable,
    retry_delay_from_metadata,
)

__all__ = [
    "GRPC",
    "HTTP_PROTOBUF",
    "RETRYABLE_GRPC_CODES",
    "RETRYABLE_HTTP_STATUSES",
    "ExportStats",
    "GrpcMetricExporter",
    "GrpcLogExporter",
    "HttpMetricExporter",
    "HttpLogExporter",
    "ConsoleMetricExporter",
    "ConsoleLogExporter",
    "resolve_protocol",
    "resolve_timeout_s",
    "grpc_retry_delay",
    "grpc_is_retryable",
]

logger = logging.getLogger(__name__)

GRPC = "grpc"
HTTP_PROTOBUF = "http/protobuf"

MAX_ATTEMPTS = 6


def resolve_protocol(signal: str, explicit: str | None = None) -> str:
    """``grpc`` or ``http/protobuf`` from the argument, ``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL``,
    ``OTEL_EXPORTER_OTLP_PROTOCOL``, else ``grpc``; ``ValueError`` for anything else."""
    value = (
        explicit
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or GRPC
    ).strip().lower()
    if value not in (GRPC, HTTP_PROTOBUF):
        raise ValueError(f"unsupported OTLP protocol {value!r} for {signal}: use 'grpc' or 'http/protobuf'")
    return value


DEFAULT_TIMEOUT_S = 10.0


def resolve_timeout_s(signal: str) -> float:
    """Export deadline from ``OTEL_EXPORTER_OTLP_<SIGNAL>_TIMEOUT`` / ``OTEL_EXPORTER_OTLP_TIMEOUT``.

    The OTLP exporter spec gives these in **milliseconds** (default 10000); the Python SDK reads
    seconds, so a spec-conformant ``10000`` would mean almost three hours there. driftcar follows
    the spec and passes the SDK an explicit timeout. A value under 100 ms is accepted but logged,
    since it most likely was meant in seconds. ``ValueError`` for a non-number.
    """
    for var in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        raw = os.environ.get(var)
        if raw is None or not raw.strip():
            continue
        try:
            millis = float(raw)
        except ValueError:
            raise ValueError(f"{var}: {raw!r} is not a number of milliseconds") from None
        if not millis > 0 or millis != millis or millis == float("inf"):
            raise ValueError(f"{var}: must be a positive number of milliseconds, got {raw!r}")
        if millis < 100:
            logger.warning("%s=%s is read as milliseconds (OTLP spec); did you mean seconds?", var, raw)
        return millis / 1000.0
    return DEFAULT_TIMEOUT_S


@dataclass
class _SignalStats:
    exports: int = 0
    failures: int = 0
    retries: int = 0
    rejected: int = 0  # data points / log records rejected in partial-success responses
    last_error: str = ""
    last_partial_message: str = ""


@dataclass
class ExportStats:
    """What the exporters did, per signal (``metrics`` / ``logs``). Thread-safe."""

    _by_signal: dict = field(default_factory=lambda: {"metrics": _SignalStats(), "logs": _SignalStats()})
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _warned: set = field(default_factory=set)

    def record(self, signal: str, *, ok: bool, retries: int = 0, rejected: int = 0, error: str = "",
               partial_message: str = "") -> None:
        failure_kind = (signal, error.split(":", 1)[0]) if not ok else None
        with self._lock:
            s = self._by_signal[signal]
            s.exports += 1
            s.retries += retries
            if not ok:
                s.failures += 1
                s.last_error = error
                first_failure = failure_kind not in self._warned
                self._warned.add(failure_kind)
            else:
                first_failure = False
            if rejected or partial_message:
                s.rejected += rejected
                s.last_partial_message = partial_message
                first_partial = (signal, "partial") not in self._warned
                self._warned.add((signal, "partial"))
            else:
                first_partial = False
        # each kind of problem is logged once at WARNING (then DEBUG); the counts are in the stats
        if not ok:
            (logger.warning if first_failure else logger.debug)(
                "OTLP %s export failed: %s (further failures of this kind are logged at DEBUG)", signal, error)
        if rejected or partial_message:
            (logger.warning if first_partial else logger.debug)(
                "OTLP %s export partially rejected (%d): %s", signal, rejected, partial_message)

    def as_dict(self) -> dict:
        with self._lock:
            return {name: dict(vars(s)) for name, s in self._by_signal.items()}


def grpc_retry_delay(error: grpc.RpcError) -> float | None:
    """The server's RetryInfo delay (seconds) from the status details, or None."""
    try:
        metadata = error.trailing_metadata() or ()
    except Exception:  # connection-level errors may carry no metadata
        return None
    return retry_delay_from_metadata(metadata)


class _SpecRetryGrpc:
    """Replaces the SDK's gRPC retry loop with driftcar's, which follows the OTLP spec (see module docstring)."""

    _signal = "metrics"
    initial_backoff_s = 1.0

    def _init_driftcar(self, stats: ExportStats | None, initial_backoff_s: float | None) -> None:
        self.stats = stats or ExportStats()
        if initial_backoff_s is not None:
            self.initial_backoff_s = initial_backoff_s

    def _export(self, data):
        """One export through driftcar's retry loop (``driftcar.wire.retry``, shared with the hook)."""
        if self._shutdown:
            return self._result.FAILURE
        request = self._translate_data(data)
        answers: list = []  # the response of the successful attempt
        failed_codes: list = []  # gRPC codes of failed attempts, for the first-attempt reconnect

        def attempt(remaining_s: float) -> Outcome:
            try:
                response, _ = self._client.Export.with_call(request, metadata=self._headers,
                                                            timeout=max(remaining_s, 0.001))
            except grpc.RpcError as error:
                code, delay = error.code(), grpc_retry_delay(error)
                if code == grpc.StatusCode.UNAVAILABLE and not failed_codes:
                    self._reconnect()
                failed_codes.append(code)
                detail = f"{code.name}: {error.details()} (endpoint {self._endpoint})"
                if grpc_is_retryable(code, delay) and not self._shutdown:
                    return Outcome.retry(code.name, retry_after_s=delay, detail=detail)
                return Outcome.permanent(code.name, detail=detail)
            answers.append(response)
            return Outcome.success()

        state = RetryState(Backoff(self.initial_backoff_s, DEFAULT_MAX_BACKOFF_S, jitter=0.2))
        result = retry(attempt, deadline=time.monotonic() + self._timeout, state=state,
                       stop=self._shutdown_in_progress, max_attempts=MAX_ATTEMPTS)
        if not result.outcome.ok:
            stopped = result.outcome.retryable and self._shutdown_in_progress.is_set()
            message = "SHUTDOWN: abandoned while retrying" if stopped else (result.outcome.detail or result.outcome.error)
            self.stats.record(self._signal, ok=False, retries=result.retries, error=message)
            return self._result.FAILURE
        partial = answers[-1].partial_success
        rejected = partial.rejected_data_points if self._signal == "metrics" else partial.rejected_log_records
        self.stats.record(self._signal, ok=True, retries=result.retries, rejected=rejected,
                          partial_message=partial.error_message)
        return self._result.SUCCESS

    def _reconnect(self) -> None:
        """Like the SDK: a fresh channel after UNAVAILABLE forces a new connection attempt."""
        try:
            if self._channel is not None:
                self._channel.close()
        except Exception:
            pass
        self._initialize_channel_and_stub()


class GrpcMetricExporter(_SpecRetryGrpc, _SdkGrpcMetricExporter):
    """OTLP/gRPC metrics; ``export`` takes a hand-built protobuf ``MetricsData``."""

    _signal = "metrics"

    def __init__(self, *args, stats: ExportStats | None = None, initial_backoff_s: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_driftcar(stats, initial_backoff_s)

    def _translate_data(self, data):
        if isinstance(data, metrics_pb2.MetricsData):
            return ExportMetricsServiceRequest(resource_metrics=data.resource_metrics)
        return super()._translate_data(data)

    def _count_data(self, data) -> int:
        if isinstance(data, metrics_pb2.MetricsData):
            return count_points(data)
        return super()._count_data(data)

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        return self._export(metrics_data)


class GrpcLogExporter(_SpecRetryGrpc, _SdkGrpcLogExporter):
    """OTLP/gRPC logs for the SDK's BatchLogRecordProcessor."""

    _signal = "logs"

    def __init__(self, *args, stats: ExportStats | None = None, initial_backoff_s: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_driftcar(stats, initial_backoff_s)

    def export(self, batch) -> LogRecordExportResult:
        # the SDK's export() calls its own mixin's _export explicitly; route it through ours
        return self._export(batch)


class _PartialSuccessTransport:
    """Wraps the SDK's HTTP transport to read partial-success bodies of 2xx answers."""

    def __init__(self, inner, response_cls, on_partial):
        self._inner = inner
        self._response_cls = response_cls
        self._on_partial = on_partial

    def request(self, method, url, **kwargs):
        result = self._inner.request(method, url, **kwargs)
        if result.status_code is not None and 200 <= result.status_code < 300:
            try:
                content = result.content()
                if content:
                    self._on_partial(self._response_cls.FromString(content).partial_success)
            except Exception:  # an unparsable success body is still a success
                pass
        return result

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _HttpStats:
    _signal = "metrics"

    def _init_driftcar(self, stats: ExportStats | None, response_cls) -> None:
        self.stats = stats or ExportStats()
        self._partial = threading.local()
        client = self._client  # the SDK's HTTP client; its retry table matches the spec
        client._transport = _PartialSuccessTransport(client._transport, response_cls, self._remember_partial)

    def _remember_partial(self, partial) -> None:
        self._partial.value = partial

    def _record(self, ok: bool) -> None:
        partial = getattr(self._partial, "value", None)
        self._partial.value = None
        rejected, message = 0, ""
        if partial is not None:
            rejected = partial.rejected_data_points if self._signal == "metrics" else partial.rejected_log_records
            message = partial.error_message
        self.stats.record(self._signal, ok=ok, rejected=rejected, partial_message=message,
                          error="" if ok else "HTTP: export failed (status in the SDK's log)")


class HttpMetricExporter(_HttpStats, _SdkHttpMetricExporter):
    """OTLP/HTTP (protobuf) metrics; ``export`` takes a hand-built protobuf ``MetricsData``."""

    _signal = "metrics"

    def __init__(self, *args, stats: ExportStats | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_driftcar(stats, ExportMetricsServiceResponse)

    def export(self, metrics_data, timeout_millis: float | None = 10_000, **kwargs) -> MetricExportResult:
        if not isinstance(metrics_data, metrics_pb2.MetricsData):
            return super().export(metrics_data, timeout_millis, **kwargs)
        if self._shutdown:
            return MetricExportResult.FAILURE
        result = self._export_batch(ExportMetricsServiceRequest(resource_metrics=metrics_data.resource_metrics))
        self._record(result == MetricExportResult.SUCCESS)
        return result


class HttpLogExporter(_HttpStats, _SdkHttpLogExporter):
    """OTLP/HTTP (protobuf) logs for the SDK's BatchLogRecordProcessor."""

    _signal = "logs"

    def __init__(self, *args, stats: ExportStats | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_driftcar(stats, ExportLogsServiceResponse)

    def export(self, batch):
        result = super().export(batch)
        self._record(result == LogRecordExportResult.SUCCESS)
        return result


class ConsoleMetricExporter:
    """``--export console``: one readable JSON line per metric (OTLP JSON mapping) on ``stream``."""

    def __init__(self, stream: IO[str] | None = None):
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()

    def export(self, metrics_data: metrics_pb2.MetricsData, timeout_millis: float = 10_000, **kwargs):
        lines = []
        for rm in metrics_data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    lines.append(json.dumps(json_format.MessageToDict(metric), sort_keys=True))
        with self._lock:
            for line in lines:
                self._stream.write(line + "\n")
            self._stream.flush()
        return MetricExportResult.SUCCESS

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


class ConsoleLogExporter(LogRecordExporter):
    """``--export console``: one JSON line per event on ``stream``."""

    def __init__(self, stream: IO[str] | None = None):
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()

    def export(self, batch: Sequence) -> LogRecordExportResult:
        with self._lock:
            for readable in batch:
                record = readable.log_record
                self._stream.write(json.dumps({
                    "event_name": record.event_name,
                    "severity": record.severity_text,
                    "time_unix_nano": record.timestamp,
                    "body": record.body,
                    "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in (record.attributes or {}).items()},
                }, sort_keys=True, default=str) + "\n")
            self._stream.flush()
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        pass
