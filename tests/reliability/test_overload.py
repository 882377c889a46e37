"""Check 3: twice the sustainable ingest rate, then back to normal.

The sidecar runs with a small ingest queue (20,000 rows / 64 MiB). A first phase measures
the sustainable rate R (rows/s accepted while senders keep the queue full); then senders
offer 2R for ``OVERLOAD_S`` seconds (6 s in CI, 300 s with DRIFTCAR_LONG=1) over gRPC and
HTTP. Every refusal must be UNAVAILABLE + RetryInfo / 503 + Retry-After and counted in
``driftcar.receiver.batches{outcome="throttled"}``; RSS stays under the start RSS plus the
queue's byte bound (the one memory limit the sidecar is configured with); after the load
drops, a request is accepted again within 2 s.
"""

from __future__ import annotations

import collections
import threading
import time

import pytest

from tests.reliability.harness import MiB, RawGrpc, RssSampler, Sidecar, http_post, metric_sum
from tests.reliability.sizes import size
from tests.support.waiting import wait_until
from tests.unit.sidecar.batches import inference_body, numeric_frame, record, request

OVERLOAD_S = size("OVERLOAD_S")
QUEUE_ROWS = 20_000
QUEUE_BYTES = 64 * MiB
ROWS = 500
pytestmark = pytest.mark.timeout(60 + OVERLOAD_S * 2)


class Senders:
    """``threads`` senders (gRPC, plus one over HTTP) offering ``rate`` batches/s in total (None: flat out)."""

    def __init__(self, sidecar: Sidecar, rate: float | None, threads: int = 3):
        self.sidecar = sidecar
        self.rate = rate
        self.threads = threads
        self.payload = request(record(inference_body(numeric_frame(ROWS, 5)))).SerializeToString()
        self.replies: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def _run(self, index: int):
        client = None if index == 0 else RawGrpc(self.sidecar.grpc_target)
        interval = None if self.rate is None else self.threads / self.rate
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                if client is None:
                    reply = http_post(self.sidecar.ports["http"], self.payload)
                    reply.code = {"200": "OK", "503": "UNAVAILABLE"}.get(reply.code, reply.code)
                    reply.message = "http"
                else:
                    reply = client.send(self.payload, timeout=10)
                with self._lock:
                    self.replies.append(reply)
                if interval is not None:
                    next_at += interval
                    self._stop.wait(max(0.0, next_at - time.monotonic()))
        finally:
            if client is not None:
                client.close()

    def run_for(self, seconds: float) -> "Senders":
        threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)]
        for t in threads:
            t.start()
        self._stop.wait(seconds)
        self._stop.set()
        for t in threads:
            t.join(15)
        return self

    def accepted_rows(self) -> int:
        return ROWS * sum(1 for r in self.replies if r.code == "OK")


def test_twice_the_sustainable_rate(tmp_path):
    with Sidecar(tmp_path, "--export", "none", "--window", "1h", "--queue-max-rows", str(QUEUE_ROWS),
                 "--queue-max-bytes", str(QUEUE_BYTES), "--retry-after", "1s") as sidecar:
        start_rss = sidecar.rss()
        calibration_s = 3.0
        calibration = Senders(sidecar, None).run_for(calibration_s)
        sustainable = calibration.accepted_rows() / calibration_s
        offered = 2 * sustainable / ROWS  # batches/s
        with RssSampler(sidecar.proc.pid, 0.05) as rss:
            load = Senders(sidecar, offered).run_for(OVERLOAD_S)
        # full service again within 2 s once the load drops
        client = RawGrpc(sidecar.grpc_target)
        dropped_at = time.monotonic()
        reply = wait_until(lambda: (r := client.send(load.payload, timeout=5)).code == "OK" and r, 10,
                           what="the sidecar to accept again after the overload")
        recovered = time.monotonic() - dropped_at
        client.close()
        codes = collections.Counter((r.code, r.message == "http") for r in load.replies)
        refused = [r for r in load.replies if r.code != "OK"]
        samples = sidecar.metrics()
    throttled = metric_sum(samples, "driftcar_receiver_batches_total", outcome="throttled")
    accepted_rate = load.accepted_rows() / OVERLOAD_S
    print(f"\noverload: sustainable {sustainable:,.0f} rows/s, offered {offered * ROWS:,.0f} rows/s for {OVERLOAD_S} s, "
          f"accepted {accepted_rate:,.0f} rows/s, refused {len(refused)} of {len(load.replies)} requests; RSS max "
          f"{rss.max / MiB:.0f} MiB (start {start_rss / MiB:.0f} MiB, bound {(start_rss + QUEUE_BYTES) / MiB:.0f} MiB); "
          f"accepting again {recovered:.2f} s after the load dropped; codes {dict(codes)}")
    assert refused, "2x the sustainable rate was never refused: the calibration did not load the queue"
    assert {r.code for r in refused} == {"UNAVAILABLE"}, codes
    for r in refused:
        assert r.retry_after is not None and float(r.retry_after) >= 1.0, r  # RetryInfo / Retry-After
    calibration_refused = sum(1 for r in calibration.replies if r.code != "OK")
    assert throttled == len(refused) + calibration_refused  # every refusal counted, each once
    assert rss.max < start_rss + QUEUE_BYTES
    assert reply.code == "OK" and recovered < 2.0
