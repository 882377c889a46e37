"""Check 3: twice the sustainable ingest rate, then back to normal.

The sidecar runs with a small ingest queue (20,000 rows / 64 MiB). A first phase measures
the sustainable rate R from the sidecar's own counters: senders go flat out until the sidecar
reports a full queue (its ``throttled`` count grows), then R is the rows it accepted while the
queue stayed full (accepted = drained then). Then senders offer 2R over gRPC and HTTP for at
least ``OVERLOAD_S`` seconds (6 s in CI, 300 s with DRIFTCAR_LONG=1) and until the sidecar
has refused a few batches, so a slow or busy machine only takes longer, never passes or fails
by its speed. Every refusal must be UNAVAILABLE + RetryInfo / 503 + Retry-After and counted
in ``driftcar.receiver.batches{outcome="throttled"}``; RSS stays under the start RSS plus
the queue's byte bound (the memory limit the sidecar is configured with) plus what its own bounds
let it hold beside the queue (requests in flight, the worker's coalesced batch); after the
load drops, a request is accepted again within 2 s.

Twelve senders keep requests in flight (a request that finds the queue full first waits up to
``ADMIT_WAIT_S`` for room, at most ``MAX_ADMIT_WAITERS`` at once, so a few synchronous senders
would only be slowed down). Batches are
wide (40 features): sketching them costs the sidecar far more than sending the
pre-serialised bytes costs the senders, so the senders can outpace it on any machine.
"""

from __future__ import annotations

import collections
import threading
import time

import pytest

from driftcar.sidecar.coalesce import MAX_ROWS
from tests.reliability.harness import MiB, RawGrpc, RssSampler, Sidecar, http_post, metric_sum
from tests.reliability.sizes import size
from tests.support.waiting import wait_until
from tests.unit.sidecar.batches import inference_body, numeric_frame, record, request

OVERLOAD_S = size("OVERLOAD_S")
QUEUE_ROWS = 20_000
QUEUE_BYTES = 64 * MiB
ROWS = 500
FEATURES = 40
#: refusals the overload phase must see before it ends (counted by the sidecar)
MIN_REFUSALS = 10
#: accepted batches measured while the queue is full (2x the queue's rows: the rate is not the queue's fill)
CALIBRATION_BATCHES = 2 * QUEUE_ROWS // ROWS
DEADLINE_S = 120
#: requests in flight at once: a request that finds the queue full waits up to ADMIT_WAIT_S for
#: room before it is refused (at most MAX_ADMIT_WAITERS at once), so a few synchronous senders are
#: slowed, not refused; overload needs more requests in flight than may wait
SENDERS = 12
#: memory the sidecar holds beside its queue, by its own bounds: the requests in flight (each
#: sender's, received and decoded) and the worker's coalesced batch (coalesce.MAX_ROWS rows) with
#: its binning temporaries (about three float64-sized arrays per value)
IN_FLIGHT_BYTES = SENDERS * 2 * ROWS * FEATURES * 8 + MAX_ROWS * FEATURES * 8 * 3
pytestmark = pytest.mark.timeout(3 * DEADLINE_S + OVERLOAD_S * 2)


class Senders:
    """``threads`` senders (gRPC, plus one over HTTP) offering ``rate`` batches/s in total (None: flat out)."""

    def __init__(self, sidecar: Sidecar, rate: float | None, threads: int = SENDERS):
        self.sidecar = sidecar
        self.rate = rate
        self.threads = threads
        self.payload = request(record(inference_body(numeric_frame(ROWS, FEATURES)))).SerializeToString()
        self.replies: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.seconds = 0.0

    def _run(self, index: int):
        client = None if index == 0 else RawGrpc(self.sidecar.grpc_target)
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
                if self.rate is not None:  # read each time: the overload phase may raise it
                    next_at = max(next_at + self.threads / self.rate, time.monotonic() - 1.0)
                    self._stop.wait(max(0.0, next_at - time.monotonic()))
        finally:
            if client is not None:
                client.close()

    def start(self) -> "Senders":
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> "Senders":
        self._stop.set()
        for t in self._threads:
            t.join(15)
        self.seconds = time.monotonic() - self._started
        return self

    def accepted_rows(self) -> int:
        return ROWS * sum(1 for r in self.replies if r.code == "OK")


def batches(sidecar: Sidecar) -> tuple[float, float]:
    """(accepted, throttled) batches as the sidecar itself counts them."""
    samples = sidecar.metrics()
    return (metric_sum(samples, "driftcar_receiver_batches_total", outcome="accepted"),
            metric_sum(samples, "driftcar_receiver_batches_total", outcome="throttled"))


def calibrate(sidecar: Sidecar) -> tuple[Senders, float]:
    """Flat-out senders until the sidecar says its queue is full, then its drain rate (rows/s) from
    the batches it accepted while refusing others (the queue full throughout).

    A window in which the sidecar refused nothing (it drained as fast as the senders sent for a
    moment: their threads share the machine with it) measures the senders, not the drain, so it is
    measured again, until a window holds refusals or the deadline passes."""
    senders = Senders(sidecar, None).start()
    deadline = time.monotonic() + DEADLINE_S
    try:
        wait_until(lambda: batches(sidecar)[1] > 0, DEADLINE_S, interval=0.1,
                   what="the sidecar to report a full queue under flat-out senders")
        while True:
            accepted0, throttled0 = batches(sidecar)
            started = time.monotonic()
            wait_until(lambda: batches(sidecar)[0] >= accepted0 + CALIBRATION_BATCHES,
                       max(deadline - time.monotonic(), 1.0), interval=0.1,
                       what=f"{CALIBRATION_BATCHES} batches accepted while the queue is full")
            accepted1, throttled1 = batches(sidecar)
            seconds = time.monotonic() - started
            if throttled1 > throttled0:
                break
            assert time.monotonic() < deadline, "the queue did not stay full while the drain rate was measured"
    finally:
        senders.stop()
    return senders, (accepted1 - accepted0) * ROWS / seconds


def overload(sidecar: Sidecar, load: Senders, throttled_before: float) -> None:
    """Keep the load on for ``OVERLOAD_S`` and until the sidecar refused ``MIN_REFUSALS`` batches.

    The drain rate measured under flat-out senders is a floor: paced senders leave the sidecar more
    CPU, so it may drain 2x that. Each further ``OVERLOAD_S`` without refusals raises the offer by half.
    """
    deadline = time.monotonic() + DEADLINE_S
    while True:
        time.sleep(OVERLOAD_S)  # a load duration, not a wait for a condition
        if batches(sidecar)[1] >= throttled_before + MIN_REFUSALS:
            return
        assert time.monotonic() < deadline, (
            f"the sidecar refused fewer than {MIN_REFUSALS} batches offered {load.rate * ROWS:,.0f} rows/s")
        load.rate *= 1.5


def test_twice_the_sustainable_rate(tmp_path):
    with Sidecar(tmp_path, "--export", "none", "--window", "1h", "--queue-max-rows", str(QUEUE_ROWS),
                 "--queue-max-bytes", str(QUEUE_BYTES), "--retry-after", "1s") as sidecar:
        start_rss = sidecar.rss()
        calibration, sustainable = calibrate(sidecar)
        offered = 2 * sustainable / ROWS  # batches/s
        throttled_before = batches(sidecar)[1]
        with RssSampler(sidecar.proc.pid, 0.05) as rss:
            load = Senders(sidecar, offered).start()
            try:
                overload(sidecar, load, throttled_before)
            finally:
                load.stop()
        # full service again within 2 s once the load drops
        client = RawGrpc(sidecar.grpc_target)
        dropped_at = time.monotonic()
        probes: list = []  # refused probes are throttled batches too
        reply = wait_until(lambda: (r := client.send(load.payload, timeout=5)).code == "OK" and r
                           or probes.append(r), 10, what="the sidecar to accept again after the overload")
        recovered = time.monotonic() - dropped_at
        client.close()
        codes = collections.Counter((r.code, r.message == "http") for r in load.replies)
        refused = [r for r in load.replies if r.code != "OK"]
        samples = sidecar.metrics()
    throttled = metric_sum(samples, "driftcar_receiver_batches_total", outcome="throttled")
    accepted_rate = load.accepted_rows() / load.seconds
    print(f"\noverload: sustainable {sustainable:,.0f} rows/s, offered {offered * ROWS:,.0f} rows/s "
          f"(finally {load.rate * ROWS:,.0f}) for {load.seconds:.1f} s, "
          f"accepted {accepted_rate:,.0f} rows/s, refused {len(refused)} of {len(load.replies)} requests; RSS max "
          f"{rss.max / MiB:.0f} MiB (start {start_rss / MiB:.0f} MiB, bound {(start_rss + QUEUE_BYTES + IN_FLIGHT_BYTES) / MiB:.0f} MiB); "
          f"accepting again {recovered:.2f} s after the load dropped; codes {dict(codes)}")
    assert refused, "2x the sustainable rate was never refused: the calibration did not load the queue"
    assert {r.code for r in refused} == {"UNAVAILABLE"}, codes
    for r in refused:
        assert r.retry_after is not None and float(r.retry_after) >= 1.0, r  # RetryInfo / Retry-After
    calibration_refused = sum(1 for r in calibration.replies if r.code != "OK")
    probes_refused = sum(1 for r in probes if r.code == "UNAVAILABLE")
    assert throttled == len(refused) + calibration_refused + probes_refused  # every refusal counted, each once
    assert rss.max < start_rss + QUEUE_BYTES + IN_FLIGHT_BYTES
    # room for one batch frees once one batch drains: 2 s, or longer on a machine too slow to drain it in that
    assert reply.code == "OK" and recovered < max(2.0, 10 * ROWS / sustainable), (recovered, sustainable)
