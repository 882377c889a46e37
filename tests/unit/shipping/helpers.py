"""Shared helpers for the shipping tests: captured items with 2-D numpy inputs, fakes, a black hole.

``to_parts`` is the capture side's real ``to_columns`` (the shipper's default
converter), named here so tests say which conversion they use; ``Part`` is a
plain stand-in for ``BatchPart`` in unit tests of the splitting logic.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import numpy as np

from driftcar.hook.columns import to_columns as to_parts  # noqa: F401  (re-exported for the tests)
from driftcar.hook.records import Captured
from driftcar.wire import decode_batch
from driftcar.wire.otlp import iter_batch_records


@dataclass
class Part:
    kind: str
    rows: int
    columns: list
    calls: dict


def item(X: np.ndarray, y: np.ndarray | None = None, *, kind: str = "inference", trace_id: str | None = None,
         error_type: str | None = None, size_hint: int = 0) -> Captured:
    X = np.asarray(X, dtype=np.float64)
    return Captured(
        kind=kind, method="predict", start_ns=time.time_ns(), duration_s=0.001, rows=len(X),
        error_type=error_type, trace_id=trace_id, inputs=X, outputs=y, size_hint=size_hint,
    )


def decoded_batches(requests) -> list:
    """(BatchRecord, Batch) for every driftcar.batch record of a list of export requests, in order."""
    return [(r, decode_batch(r.body)) for req in list(requests) for r in iter_batch_records(req) if r is not None]


def features(batches, n_features: int) -> np.ndarray:
    """Stack the x0..x{n-1} columns of decoded batches, in arrival order."""
    blocks = [np.column_stack([b.columns[f"x{j}"] for j in range(n_features)]) for _, b in batches if b.rows]
    return np.vstack(blocks) if blocks else np.empty((0, n_features))


class FakeExporter:
    """In-memory exporter: records payloads and answers scripted outcomes (default: success).

    ``block`` (an Event) makes every export wait on it, like a black hole; ``abort`` releases it.
    """

    def __init__(self, answers=None, block=None):
        import threading

        from driftcar.hook.shipping.retry import Outcome

        self.answers = list(answers or [])
        self.default = Outcome.success()
        self.payloads: list[bytes] = []
        self.attempts: list[float] = []
        self.block = block
        self.aborted = threading.Event()
        self.closed = False

    def export(self, payload: bytes, timeout_s: float):
        from driftcar.hook.shipping.retry import Outcome

        self.attempts.append(time.monotonic())
        if self.block is not None:
            self.aborted.wait(timeout_s)
            return Outcome.retry("blocked", detail="fake black hole")
        answer = self.answers.pop(0) if self.answers else self.default
        if answer.ok:
            self.payloads.append(payload)
        return answer

    def abort(self) -> None:
        self.aborted.set()

    def close(self) -> None:
        self.closed = True

    def requests(self):
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        return [ExportLogsServiceRequest.FromString(p) for p in list(self.payloads)]


class BlackHole:
    """Accepts TCP connections on 127.0.0.1 and never reads or answers."""

    def __init__(self, port: int = 0):  # 0: any free port; a fixed one takes over a server's address
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
            except OSError:
                continue

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        for conn in self.conns:
            conn.close()
        self.sock.close()


class Counting:
    """The real converter, counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, items):
        self.calls += 1
        return to_parts(items)
