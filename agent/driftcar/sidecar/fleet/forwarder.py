"""Pod side: ship each closed window to the fleet gateway (or a Collector in front of it).

The evaluator thread calls :meth:`Forwarder.offer` after every window close; it
encodes the records and puts them in a queue bounded by bytes (full: the new
record is dropped and counted, never blocking the tick). A daemon thread sends
them as OTLP logs in requests capped by bytes (a receiver's usual 4 MiB limit must
never refuse a whole request), with the OTLP retry rules of the hook's exporters
(retryable codes, RetryInfo / Retry-After honoured, capped exponential back-off
with jitter) until ``max_elapsed`` (default: one window) — a window older than
that is of no use to a gateway that has closed it. Outcomes are counted in
``driftcar.fleet.windows{outcome=sent|dropped}``; each kind of failure is logged once.

Transport from the ``forward`` URL: ``http(s)://host:port/v1/logs`` (a path) is
OTLP/HTTP; ``host:port``, ``http://host:port`` or ``https://host:port`` is OTLP/gRPC.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from urllib.parse import urlsplit

from driftcar.hook.shipping.retry import Backoff, export_with_retry
from driftcar.sidecar.fleet.record import ReferenceCadence, window_record
from driftcar.wire import otlp
from driftcar.wire.window import WindowError, encode_window, window_log_record

__all__ = ["Forwarder", "exporter_for"]

log = logging.getLogger("driftcar.sidecar.fleet")

MAX_REQUEST_BYTES = 4 * 1024 * 1024 - 64 * 1024  # under the usual 4 MiB receive limit, with room for framing


def exporter_for(url: str, headers: dict | None = None):
    """The hook's OTLP exporter for ``url`` (see the module docstring)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.path not in ("", "/"):
        from driftcar.hook.shipping.http_exporter import HttpExporter

        return HttpExporter(url, headers=headers)
    from driftcar.hook.shipping.grpc_exporter import GrpcExporter

    return GrpcExporter(parts.netloc, secure=parts.scheme == "https", headers=headers)


class Forwarder:
    """Bounded queue + one sender thread. ``offer`` is thread-safe and never blocks."""

    def __init__(self, url: str, replica: str, window_s: float, telemetry, *, exporter=None,
                 max_queue_bytes: int = 64 << 20, max_request_bytes: int = MAX_REQUEST_BYTES,
                 max_elapsed_s: float | None = None, backoff: Backoff | None = None, headers: dict | None = None):
        self.url, self.replica, self.window_s, self.tel = url, replica, window_s, telemetry
        self.exporter = exporter if exporter is not None else exporter_for(url, headers)
        self.max_queue_bytes = max_queue_bytes
        self.max_request_bytes = max_request_bytes
        self.max_elapsed_s = window_s if max_elapsed_s is None else max_elapsed_s
        self.backoff = backoff or Backoff(initial_s=1.0, maximum_s=min(32.0, max(1.0, window_s / 4)))
        self.cadence = ReferenceCadence(replica)
        self.counts: collections.Counter[str] = collections.Counter()
        self._queue: collections.deque[tuple[float, bytes]] = collections.deque()  # (enqueued at, LogRecord bytes)
        self._bytes = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._busy = False
        self._logged: set[str] = set()
        self._resource = {"service.name": "driftcar-sidecar", "service.instance.id": replica}
        self._thread = threading.Thread(target=self._run, name="driftcar-forward", daemon=True)

    # ------------------------------------------------------------------ producer
    def offer(self, closes) -> int:
        """Queue the records of closed windows (evaluator thread); how many were queued."""
        queued = 0
        for close in closes:
            try:
                rec = window_record(close, self.replica, self.window_s, self.cadence)
                if rec is None:
                    continue
                data = window_log_record(encode_window(rec), rec).SerializeToString()
            except (WindowError, ValueError) as exc:
                self._drop(1, "unencodable", f"a window of {close.model}@{close.version} cannot be sent: {exc}")
                continue
            with self._cond:
                if self._queue and self._bytes + len(data) > self.max_queue_bytes:
                    full = True
                else:
                    full = False
                    self._queue.append((time.monotonic(), data))
                    self._bytes += len(data)
                    self._cond.notify()
            if full:
                self._drop(1, "queue_full", f"forward queue full ({self._bytes} bytes): windows are dropped")
            else:
                queued += 1
        return queued

    def _drop(self, n: int, reason: str, message: str) -> None:
        self.counts[f"dropped_{reason}"] += n
        self.counts["dropped"] += n
        self.tel.add_fleet_windows("dropped", n)
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning("%s (further drops of this kind are only counted)", message)

    # ------------------------------------------------------------------ sender
    def start(self) -> None:
        self._thread.start()

    def _take(self) -> tuple[list[bytes], float]:
        with self._cond:
            batch, size, oldest = [], 0, None
            while self._queue and (not batch or size + len(self._queue[0][1]) <= self.max_request_bytes):
                at, data = self._queue.popleft()
                oldest = at if oldest is None else oldest
                batch.append(data)
                size += len(data)
                self._bytes -= len(data)
            self._busy = bool(batch)
            return batch, oldest or time.monotonic()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._stop.is_set(), 0.5)
                if not self._queue and self._stop.is_set():
                    return
            batch, oldest = self._take()
            if batch:
                try:
                    self._send(batch, oldest)
                finally:
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()

    def _send(self, batch: list[bytes], oldest: float) -> None:
        from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

        records = [LogRecord.FromString(data) for data in batch]
        payload = otlp.export_request(records, self._resource).SerializeToString()
        result = export_with_retry(self.exporter, payload, deadline=oldest + self.max_elapsed_s,
                                   backoff=self.backoff, stop=self._stop)
        self.counts["retries"] += result.retries
        outcome = result.outcome
        if outcome.ok:
            sent = len(records) - outcome.rejected
            self.counts["sent"] += sent
            self.tel.add_fleet_windows("sent", sent)
            if outcome.rejected:
                self._drop(outcome.rejected, "rejected", f"the gateway refused windows: {outcome.detail}")
        else:
            kind = "permanent" if not outcome.retryable else "gave_up"
            self._drop(len(records), kind, f"forwarding to {self.url} failed ({outcome.error}: {outcome.detail})")

    def flush(self, timeout: float) -> bool:
        """Wait until the queue is sent (or dropped); False at the timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def stop(self, timeout: float = 5.0) -> bool:
        """Send what is queued within ``timeout``, then stop (retries are cut short at the deadline)."""
        flushed = self.flush(timeout)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self.exporter.abort()
        self._thread.join(max(0.1, timeout))
        self.exporter.close()
        return flushed

    def status(self) -> dict:
        with self._cond:
            return {"role": "pod", "forward": self.url, "replica": self.replica, "queued": len(self._queue),
                    "queued_bytes": self._bytes, "counts": dict(self.counts)}
