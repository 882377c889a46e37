"""Checks 1 and 7: the hook under a downstream outage, and a steady-load soak, end to end.

A scikit-learn model instrumented with ``driftcar.instrument`` predicts one row at a time
(steady traffic) and ships to a real ``driftcar sidecar`` process.

Check 1: the sidecar's port is first closed (``OUTAGE_S`` s: 4 in CI, 60 long), then a
black hole (accepts TCP, never answers) for as long, then the sidecar starts there.
Predictions never raise; the hook's buffer stays within its byte bound; no export
attempt outlives its deadline; after recovery the backlog drains, and the sidecar's
``hook_dropped_rows`` (from the counters the hook's batches carry) equals the hook's own
drop count, so sent rows = rows at the sidecar + drops, exactly. The predict p99 with the
hook during the outage is printed next to the uninstrumented p99 (a loose sanity bound
only; the figure for the 5 % claim comes from the long run / benchmarks).
Check 7: ``SOAK_S`` seconds (20 in CI, 1,800 long) of steady traffic with 1 s windows:
every row offered is accounted for (rows at the sidecar + counted drops) and the
sidecar's RSS is flat after warm-up.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from driftcar.hook.shipping import grpc_exporter
from tests.reliability.harness import MiB, RssSampler, Sidecar
from tests.reliability.sizes import size
from tests.support.waiting import free_port, wait_until
from tests.unit.shipping.helpers import BlackHole

OUTAGE_S = size("OUTAGE_S")
SOAK_S = size("SOAK_S")
BUFFER = 1 * MiB
# The export deadline. Long enough that a sidecar just started on a loaded machine answers its first
# batches within it: a batch applied but answered after the deadline is retried (DEADLINE_EXCEEDED is
# retryable in OTLP) and then counted twice, which the exact accounting below would report.
TIMEOUT_S = 2.5
pytestmark = pytest.mark.timeout(120 + 2 * OUTAGE_S + SOAK_S)


def _model():
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(500, 8))
    return LogisticRegression().fit(X, X[:, 0] + X[:, 1] > 0), X


class Traffic:
    """One predict every ``interval`` s on a thread; latencies kept; any exception fails the test."""

    def __init__(self, model, X, interval: float = 0.002):
        self.model, self.X, self.interval = model, X, interval
        self.latencies: list[float] = []
        self.errors: list[BaseException] = []
        self.rows = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        i = 0
        while not self._stop.is_set():
            x = self.X[i % len(self.X):i % len(self.X) + 1]
            started = time.perf_counter()
            try:
                self.model.predict(x)
            except BaseException as exc:  # the hook must never raise into the model
                self.errors.append(exc)
            self.latencies.append(time.perf_counter() - started)
            self.rows += 1
            i += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


def _p99(latencies) -> float:
    return float(np.percentile(np.asarray(latencies), 99))


def _baseline_p99(model, X, n: int = 3000) -> float:
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        model.predict(X[i % len(X):i % len(X) + 1])
        latencies.append(time.perf_counter() - started)
    return _p99(latencies)


def test_down_then_black_holed_then_recovered(tmp_path, monkeypatch):
    import driftcar

    attempts: list[float] = []
    real_export = grpc_exporter.GrpcExporter.export

    def timed_export(self, payload, timeout_s):
        started = time.monotonic()
        try:
            return real_export(self, payload, timeout_s)
        finally:
            attempts.append(time.monotonic() - started)

    monkeypatch.setattr(grpc_exporter.GrpcExporter, "export", timed_export)
    model, X = _model()
    baseline = _baseline_p99(model, X)
    ports = {"grpc": free_port(), "http": free_port(), "prometheus": free_port()}
    monitor = driftcar.instrument(model, name="outage", version="1", endpoint=f"http://127.0.0.1:{ports['grpc']}",
                                  spans=False, timeout_s=TIMEOUT_S, max_buffer_bytes=BUFFER, max_batch_age_s=0.1,
                                  retry_initial_backoff_s=0.1, retry_max_backoff_s=1.0)
    sidecar = Sidecar(tmp_path, "--export", "none", "--window", "1h", ports=ports)
    queued = []
    try:
        with Traffic(model, X) as traffic:
            phase_end = time.monotonic() + OUTAGE_S  # 1) nothing listens
            while time.monotonic() < phase_end:
                queued.append(monitor.stats["queued_bytes"])
                time.sleep(0.05)
            down_latencies = list(traffic.latencies)
            with BlackHole(ports["grpc"]) as hole:  # 2) accepts, never answers
                phase_end = time.monotonic() + OUTAGE_S
                while time.monotonic() < phase_end:
                    queued.append(monitor.stats["queued_bytes"])
                    time.sleep(0.05)
                reached = bool(hole.conns)
            outage_latencies = list(traffic.latencies)
            sidecar.start()  # 3) the sidecar is back
            recovered_at = time.monotonic()
            wait_until(lambda: sidecar.models().get(("outage", "1"), {}).get("rows_total", 0) > 0, 60,
                       what="rows to reach the sidecar after the outage")
            recovery_s = time.monotonic() - recovered_at
            time.sleep(0.5)
        assert not traffic.errors, traffic.errors[:3]
        assert monitor.flush(20), "the backlog did not drain after recovery"
        stats = monitor.stats
        offered = traffic.rows

        def accounted():
            model_state = sidecar.models()[("outage", "1")]
            return model_state["rows_total"] + model_state["hook_dropped_rows"] == offered and model_state

        try:
            state = wait_until(accounted, 20, what="sidecar rows + reported drops to equal the rows offered")
        except AssertionError as exc:
            model_state = sidecar.models()[("outage", "1")]
            raise AssertionError(f"{exc}: offered {offered}, sidecar rows {model_state['rows_total']}, reported drops "
                                 f"{model_state['hook_dropped_rows']}; hook {monitor.stats}") from None
    finally:
        monitor.uninstrument()
        monitor.shutdown(2)
        sidecar.kill()
    p99_outage = _p99(outage_latencies)
    print(f"\noutage {OUTAGE_S} s down + {OUTAGE_S} s black-holed: predict p99 {p99_outage * 1e6:.0f} us vs "
          f"uninstrumented {baseline * 1e6:.0f} us ({p99_outage / baseline:.2f}x); buffer max "
          f"{max(queued) / 1024:.0f} KiB of {BUFFER / 1024:.0f} KiB; dropped {stats['dropped_rows']} of {offered} rows "
          f"(sidecar reports {state['hook_dropped_rows']}); longest export attempt {max(attempts):.2f} s "
          f"(deadline {TIMEOUT_S} s); first rows at the sidecar {recovery_s:.2f} s after it started")
    assert reached, "the hook never reached the black hole"
    assert max(queued) <= BUFFER
    assert stats["dropped_rows"] > 0 and stats["queued_rows"] == 0
    assert state["hook_dropped_rows"] == stats["dropped_rows"]
    assert state["rows_total"] == stats["sent_rows"]
    assert max(attempts) <= TIMEOUT_S + 0.25
    # back in use within the channel's capped reconnect back-off (2 s) + a flush (was 57 s after 120 s outages)
    assert recovery_s < 6.0
    # sanity only (p99 is the benchmarks' business): a predict blocked on an export attempt would take
    # the attempt's second or more; a loaded machine has stalled p99 to ~6 ms with nothing blocked
    assert p99_outage < 0.1
    assert len(down_latencies) > 100


def test_soak_every_row_accounted_and_memory_flat(tmp_path):
    import driftcar

    model, X = _model()
    with Sidecar(tmp_path, "--export", "none", "--window", "1s", "--windows-kept", "3",
                 "--live-reference-rows", "500") as sidecar:
        monitor = driftcar.instrument(model, name="soak", version="1", endpoint=f"http://{sidecar.grpc_target}",
                                      spans=False, max_batch_age_s=0.2)
        try:
            with RssSampler(sidecar.proc.pid, 0.25) as rss, Traffic(model, X, interval=0.001) as traffic:
                time.sleep(SOAK_S)
            assert not traffic.errors
            assert monitor.flush(20)
            stats = monitor.stats
            wait_until(lambda: sidecar.models()[("soak", "1")]["rows_total"] + stats["dropped_rows"] == traffic.rows,
                       20, what="every offered row to be accounted for")
        finally:
            monitor.uninstrument()
            monitor.shutdown(2)
    series = np.array([r for _, r in rss.series], dtype=float)
    warm = series[len(series) // 3:]  # after warm-up (reference built, windows kept reached)
    half = len(warm) // 2
    growth = warm[half:].mean() - warm[:half].mean()
    print(f"\nsoak {SOAK_S} s: {traffic.rows} rows offered, {stats['dropped_rows']} dropped, sidecar RSS "
          f"{series.min() / MiB:.0f}-{series.max() / MiB:.0f} MiB, growth after warm-up {growth / MiB:+.1f} MiB")
    assert stats["dropped_rows"] == 0
    assert growth < 8 * MiB
