"""Shipping throughput: rows/s the hook's shipper moves to a local gRPC receiver, on one core.

Rows have 20 float64 features and a prediction. The benchmark process is pinned
to one CPU (the model's threads and the shipper's worker share it, as in a
single-core model server); the receiver is a separate process (pinned to
another CPU when there is one) that acknowledges every OTLP request.

- baseline ``encode_batch``: the wire codec alone on ready-made columns of
  10,000 rows (the per-batch floor: no conversion, no export).
- baseline direct export: columns -> ``encode_batch`` -> log record -> request
  -> one synchronous gRPC ``Export`` (gzip), 10,000 rows per request: the
  transport without the hook's buffer, conversion, retries or thread.
- shipper: pre-built ``Captured`` items of 100 rows and of 1 row, and 1-row
  items in the compact tuple form numpy calls arrive in (``offer_raw``; the
  worker rebuilds them with ``records.thaw``), offered as fast as the loop can go into a buffer
  big enough to never drop, then ``flush``: rows / (first offer -> flush
  done). This is the sustained rate the hook ships before its buffer fills
  and it starts dropping; offers faster than this only grow the buffer.
  ``dropped_rows`` is reported to show nothing was lost.
- 1-row items offered flat out into a small (4 MiB) buffer: how many rows it
  had to drop (the bound doing its job) and that every row is accounted for.

Ratios are against the baselines measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
import time

import numpy as np

N_FEATURES = 20
FLAT_BUFFER = 4 * 1024 * 1024  # small on purpose: the flat-out run must hit the bound

RECEIVER = textwrap.dedent(
    """
    import os, sys
    from concurrent import futures
    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
    cpu = int(sys.argv[1])
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
    class Logs(logs_service_pb2_grpc.LogsServiceServicer):
        def Export(self, request, context):
            return logs_service_pb2.ExportLogsServiceResponse()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    server.stop(0)
    """
)


def _cpus() -> tuple[int, int]:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    return cpus[0], (cpus[1] if len(cpus) > 1 else -1)


def _items(n_items: int, rows: int, seed: int = 0) -> list:
    from driftcar.hook.records import Captured

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_items * rows, N_FEATURES))
    y = rng.integers(0, 2, size=n_items * rows)
    now = time.time_ns()
    return [
        Captured("inference", "predict", now + i, 0.0005, rows, inputs=X[i * rows:(i + 1) * rows],
                 outputs=y[i * rows:(i + 1) * rows], size_hint=rows * N_FEATURES * 8 + rows * 8 + 200)
        for i in range(n_items)
    ]


def _raw_items(n_items: int, rows: int, seed: int = 0) -> list:
    """The compact form the capture side offers for numpy calls (``Shipper.offer_raw``; ``records.thaw``)."""
    rng = np.random.default_rng(seed)
    now = time.time_ns()
    out = []
    for i in range(n_items):
        x, y = rng.normal(size=(rows, N_FEATURES)), rng.integers(0, 2, size=rows)
        raw = ("predict", now + i, 500_000, rows, 0, None, x.tobytes(), x.dtype, x.shape, y.tobytes(), y.dtype, y.shape, None)
        out.append((raw, rows, x.nbytes + y.nbytes + 160))
    return out


def _columns(rows: int):
    from driftcar.wire import Column

    rng = np.random.default_rng(1)
    X = rng.normal(size=(rows, N_FEATURES))
    cols = [Column(f"x{j}", "feature", np.ascontiguousarray(X[:, j])) for j in range(N_FEATURES)]
    cols.append(Column("prediction", "prediction", rng.integers(0, 2, size=rows)))
    return cols


def _best(fn, repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def _encode_rate(rows: int, batches: int, repeat: int) -> float:
    from driftcar.wire import encode_batch

    cols = _columns(rows)

    def once():
        started = time.perf_counter()
        for _ in range(batches):
            encode_batch("inference", cols, rows=rows)
        return time.perf_counter() - started

    return rows * batches / _best(once, repeat)


def _direct_rate(port: int, rows: int, batches: int, repeat: int, gzip: bool = True) -> float:
    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

    from driftcar.wire import encode_batch
    from driftcar.wire.otlp import batch_log_record, export_request

    cols = _columns(rows)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = logs_service_pb2_grpc.LogsServiceStub(channel)

    def once():
        started = time.perf_counter()
        for _ in range(batches):
            body = encode_batch("inference", cols, rows=rows)
            record = batch_log_record(body, model_name="m", model_version="1", kind="inference", rows=rows)
            stub.Export(export_request([record], {"service.name": "bench"}), timeout=30,
                        compression=grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression)
        return time.perf_counter() - started

    try:
        return rows * batches / _best(once, repeat)
    finally:
        channel.close()


def _shipper_run(port: int, items: list, *, compression: str = "gzip", max_buffer_bytes: int = 1 << 30) -> dict:
    from driftcar.hook.shipping import Shipper, ShipperConfig

    shipper = Shipper(ShipperConfig("m", "1", endpoint=f"http://127.0.0.1:{port}", compression=compression,
                                    max_buffer_bytes=max_buffer_bytes, resource={"service.name": "bench"},
                                    timeout_s=30.0))
    if items and type(items[0]) is tuple:  # compact (raw, rows, nbytes) offers
        rows = sum(it[1] for it in items)
        offer_raw = shipper.offer_raw
        started = time.perf_counter()
        for raw, n, nbytes in items:
            offer_raw(raw, n, nbytes)
    else:
        rows = sum(it.rows for it in items)
        offer = shipper.offer
        started = time.perf_counter()
        for it in items:
            offer(it)
    offered = time.perf_counter()
    flushed = shipper.flush(120)
    done = time.perf_counter()
    stats = shipper.stats
    shipper.shutdown(5)
    return {
        "rows": rows,
        "rows_per_s": stats["sent_rows"] / (done - started),
        "offer_us": (offered - started) / len(items) * 1e6,
        "flushed": flushed,
        "dropped_rows": stats["dropped_rows"],
        "sent_rows": stats["sent_rows"],
        "batches": stats["sent_batches"],
        "seconds": done - started,
    }


def _convert_us(items: list, repeat: int) -> float:
    """The capture side's ``to_columns`` per item (runs on the shipper's worker)."""
    from driftcar.hook.columns import to_columns

    def once():
        started = time.perf_counter()
        to_columns(items)
        return time.perf_counter() - started

    return _best(once, repeat) / len(items) * 1e6


def _median_run(port: int, items: list, repeat: int, **kw) -> dict:
    runs = [_shipper_run(port, items, **kw) for _ in range(repeat)]
    runs.sort(key=lambda r: r["rows_per_s"])
    return runs[len(runs) // 2]


def run(quick: bool = False) -> str:
    bench_cpu, receiver_cpu = _cpus()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(receiver_cpu)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
    old_affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        port = int(receiver.stdout.readline())
        if old_affinity is not None:
            os.sched_setaffinity(0, {bench_cpu})
        repeat = 1 if quick else 3
        n100, n1 = (200, 20_000) if quick else (3_000, 50_000)
        encode = _encode_rate(10_000, 5 if quick else 20, repeat)
        direct = _direct_rate(port, 10_000, 5 if quick else 20, repeat)
        direct_plain = _direct_rate(port, 10_000, 5 if quick else 20, repeat, gzip=False)
        items100 = _items(n100, 100)
        items1 = _items(n1, 1, seed=2)
        s100 = _median_run(port, items100, repeat)
        s100_plain = _median_run(port, items100, repeat, compression="none")
        s1 = _median_run(port, items1, repeat)
        s1_raw = _median_run(port, _raw_items(n1, 1, seed=2), repeat)
        convert_us = _convert_us(items1[:10_000], repeat)
        flat = _shipper_run(port, _items(n1 * 2, 1, seed=3), max_buffer_bytes=FLAT_BUFFER)
    finally:
        if old_affinity is not None:
            os.sched_setaffinity(0, old_affinity)
        receiver.stdin.close()
        receiver.wait(10)

    def line(name, r, base, base_name):
        lost = "" if r["dropped_rows"] == 0 else f" (dropped {r['dropped_rows']:,})"
        return (f"| {name} | {r['rows']:,} | {r['rows_per_s'] / 1e3:,.0f}k | {r['offer_us']:.2f} | "
                f"{r['rows_per_s'] / base:.2f}x {base_name}{lost} |")

    out = [
        "## Shipping throughput (hook shipper -> local gRPC receiver, one core)",
        "",
        f"20 float64 features + prediction per row. Benchmark pinned to CPU {bench_cpu}, receiver in its own "
        f"process (CPU {receiver_cpu if receiver_cpu >= 0 else 'shared'}). Figures: median of {repeat} run(s); "
        "baselines: best of the same number.",
        "",
        "| path | rows | rows/s | offer µs/call | ratio |",
        "|---|---:|---:|---:|---|",
        f"| baseline: `encode_batch` only, 10k-row batches | — | {encode / 1e3:,.0f}k | — | 1.00x encode |",
        f"| baseline: direct gRPC export (encode + request + Export, gzip), 10k rows/request | — | {direct / 1e3:,.0f}k "
        f"| — | {direct / encode:.2f}x encode |",
        f"| baseline: direct gRPC export, no compression | — | {direct_plain / 1e3:,.0f}k | — | "
        f"{direct_plain / encode:.2f}x encode |",
        line("shipper, 100-row items, gzip", s100, direct, "direct gzip"),
        line("shipper, 100-row items, no compression", s100_plain, direct_plain, "direct no compression"),
        line("shipper, 1-row items, gzip", s1, direct, "direct gzip"),
        line("shipper, 1-row compact items (`offer_raw`, as numpy calls arrive), gzip", s1_raw, direct, "direct gzip"),
        "",
        f"- 100-row items: shipper reaches {s100['rows_per_s'] / direct:.0%} of the direct export and "
        f"{s100['rows_per_s'] / encode:.0%} of bare encoding; 1-row items: {s1['rows_per_s'] / 1e3:,.0f}k rows/s "
        f"= {s1['rows_per_s'] / s100['rows_per_s']:.0%} of the 100-row rate: `to_columns` costs "
        f"{convert_us:.0f} µs per 1-row item on the worker (caps 1-row items at ~{1e6 / convert_us / 1e3:,.0f}k rows/s).",
        f"- gzip (gRPC core, fixed zlib level) is the largest per-row cost for high-entropy float features: "
        f"direct export runs {direct_plain / direct:.1f}x faster without it. `DRIFTCAR_COMPRESSION=none` suits "
        "a sidecar on loopback.",
        f"- Flat-out 1-row offers into a {FLAT_BUFFER >> 20} MiB buffer ({flat['rows']:,} rows, "
        f"{flat['offer_us']:.2f} µs/offer, worker sharing the core): sent {flat['sent_rows']:,}, "
        f"dropped {flat['dropped_rows']:,} (oldest first, counted); sent + dropped = "
        f"{flat['sent_rows'] + flat['dropped_rows']:,}.",
        f"- All runs flushed: {all(r['flushed'] for r in (s100, s100_plain, s1, s1_raw))}; rows lost in the no-drop "
        f"runs: {s100['dropped_rows'] + s100_plain['dropped_rows'] + s1['dropped_rows'] + s1_raw['dropped_rows']}.",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
