"""Sidecar benchmarks: ingest throughput over gRPC loopback vs the statistics engine alone,
and resident memory with many models/features/windows plus its growth at steady load.

Run: ``python benchmarks/run.py [--quick] sidecar``; the ingest section alone:
``python benchmarks/bench_sidecar.py --ingest [--quick]``; the ways to spread ingest over processes:
``python benchmarks/bench_sidecar.py --ingest-workers [--quick]`` (:mod:`_ingest_cuts`); the gRPC receive
floor under server options: ``--grpc-floor-options [--quick]``; the gRPC front process and the sidecar's
side of its link without applying: ``--front-link [--quick]``; CPU per request of each in-process stage of
that path (least of many passes): ``--stage-cpu [--quick]``. The ingest section runs both receiver
paths (``grpc_front`` off and on) in turns, at 1,000-row batches and at the hook's default batch size.
Every figure comes from a real ``driftcar sidecar`` process started by its CLI on 127.0.0.1; the baseline
(``WindowSketch.update`` on the same decoded batches, in this process) is measured
in the same run, so the ratio is the cost of the service around the engine.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, os.path.join(ROOT, "agent")):
    if path not in sys.path:
        sys.path.insert(0, path)

from tests.support.waiting import free_port, stop_process, wait_until  # noqa: E402

NUMERIC, CATEGORICAL, ROWS = 20, 5, 1_000
CATS = np.array([f"c{i}" for i in range(8)], dtype=object)


def _columns(rows: int, seed: int, numeric: int = NUMERIC, categorical: int = CATEGORICAL) -> dict:
    rng = np.random.default_rng(seed)
    cols: dict = {f"n{i}": rng.normal(0.0, 1.0, rows) for i in range(numeric)}
    for i in range(categorical):
        cols[f"c{i}"] = list(rng.choice(CATS, rows))
    return cols


def _request(cols: dict, model: str, kind: str = "inference", calls: bool = True):
    from driftcar.wire import Column, encode_batch
    from driftcar.wire import otlp

    rows = len(next(iter(cols.values())))
    call_table = None
    if calls:
        call_table = {"method": ["predict"], "duration_s": np.array([0.001]), "rows": np.array([rows]),
                      "captured": np.array([rows]), "error_type": [None]}
    body = encode_batch(kind, [Column(n, "feature", v) for n, v in cols.items()], calls=call_table,
                        hook={"instance": "bench", "dropped_rows": 0})
    record = otlp.batch_log_record(body, model_name=model, model_version="1", kind=kind, rows=rows)
    return otlp.export_request([record], {"service.name": "bench"})


class _Sidecar:
    def __init__(self, tmp: str, *args: str):
        self.grpc, self.http = free_port(), free_port()
        self.log = open(os.path.join(tmp, f"sidecar-{self.grpc}.log"), "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTCAR_", "OTEL_"))}
        env["PYTHONPATH"] = os.path.join(ROOT, "agent")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "driftcar.cli", "sidecar", "--grpc", f"127.0.0.1:{self.grpc}",
             "--http", f"127.0.0.1:{self.http}", "--prometheus", "off", "--export", "none",
             "--log-level", "warning", *args], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_until(self._ready_or_exited, 60, interval=0.05, what="sidecar /readyz")
        except AssertionError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise RuntimeError(f"sidecar exited with {self.proc.returncode}")

    def _ready_or_exited(self) -> bool:
        if self.proc.poll() is not None:
            return True
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/readyz", timeout=1):
            return True

    def models(self) -> list[dict]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/v1/models", timeout=10) as resp:
            return json.loads(resp.read())["models"]

    def rss(self) -> int:
        """The sidecar's resident memory with its child processes' (the gRPC front, a decode process)."""
        import psutil

        proc = psutil.Process(self.proc.pid)
        return sum(p.memory_info().rss for p in (proc, *proc.children()))

    def stop(self) -> None:
        stop_process(self.proc, 30)
        self.log.close()


# --------------------------------------------------------------------------- throughput


def _engine_rate(prof, batches: list[dict], repeat: int) -> float:
    """Rows/s of WindowSketch.update alone on the same (decoded) batches."""
    best = 0.0
    for _ in range(repeat):
        window = prof.new_window()
        start = time.perf_counter()
        for cols in batches:
            window.update(cols)
        best = max(best, sum(_rows(b) for b in batches) / (time.perf_counter() - start))
    return best


def _rows(cols: dict) -> int:
    return len(next(iter(cols.values())))


def _histogram_rate(prof, batches: list[dict], repeat: int) -> float:
    """Rows/s of ``np.histogram`` on the numeric columns alone (the target's yardstick): on the
    profile's own fine edges and on as many uniform bins; the faster of the two counts."""
    layout = prof.layout
    edges = {n: layout.fine_edges[r] for r, n in enumerate(layout.num_names) if n in batches[0]}
    fine = layout.F
    best, cpu = 0.0, float("inf")
    for _ in range(repeat):
        for bins in (edges, None):
            start, start_cpu = time.perf_counter(), time.thread_time()
            for cols in batches:
                for name in edges:
                    np.histogram(cols[name], bins=fine if bins is None else bins[name])
            best = max(best, sum(_rows(b) for b in batches) / (time.perf_counter() - start))
            cpu = min(cpu, (time.thread_time() - start_cpu) / sum(_rows(b) for b in batches) * ROWS)
    return best, cpu  # rows/s, CPU s per 1,000 rows


def _send_all(stub, requests: list, inflight: int, rate: float | None = None) -> tuple[int, int, float]:
    """Send every request (retrying refusals after their hint); returns (sent, refusals, seconds)."""
    from _ingest_cuts import refused

    refusals = 0
    pending: list = []
    start = time.perf_counter()
    queue = list(requests)
    sent = 0
    while queue or pending:
        while queue and len(pending) < inflight:
            if rate is not None:  # paced: request i leaves at i / rate
                wait = start + sent / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            req = queue.pop(0)
            pending.append((req, stub.Export.future(req, timeout=30)))
            sent += 1
        req, future = pending.pop(0)
        if refused(future):
            refusals += 1
            queue.insert(0, req)
            sent -= 1
    return sent, refusals, time.perf_counter() - start


def _wait_rows(sidecar: _Sidecar, model: str, rows: int, timeout: float = 120.0) -> float:
    wait_until(lambda: any(m["name"] == model and m["rows_total"] >= rows for m in sidecar.models()),
               timeout, what=f"sidecar to apply {rows} rows of {model}")
    return time.perf_counter()


def _in_process_rate(prof, requests: list, repeat: int) -> float:
    """Rows/s of the sidecar's own path without the network: protobuf parse, validate+decode
    (Ingestor), apply to the state (StateStore.apply), with the real telemetry (export none)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from driftcar.sidecar.config import load_config
    from driftcar.sidecar.ingest import IngestQueue, Ingestor
    from driftcar.sidecar.state import StateStore
    from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig
    from driftcar.wire import DEFAULT_LIMITS

    raw = [r.SerializeToString() for r in requests]
    best = 0.0
    for _ in range(repeat):
        tel = Telemetry(TelemetryConfig(export="none"))
        store = StateStore(load_config(env={}, flags={"live_reference_rows": "0"}).store_config(), tel)
        store.get_or_create("bench", "1").set_profile(prof, "file")
        queue = IngestQueue(10**9, 10**12)
        ingestor = Ingestor(queue, tel, DEFAULT_LIMITS)
        start = time.perf_counter()
        for data in raw:
            ingestor.ingest(ExportLogsServiceRequest.FromString(data))
            item = queue.get(0)
            store.apply(item)
            queue.done(item)
        best = max(best, len(raw) * ROWS / (time.perf_counter() - start))
    return best


def _process_rounds(sidecars: dict, requests: list, rows: int, rounds: int) -> dict:
    """Per sidecar (label -> _Sidecar), best of ``rounds`` end-to-end runs with 8 requests in flight, the
    sidecars taking turns in every round, then one run of a synchronous client each: rows/s until every
    accepted row is applied, CPU per thread and in its child processes (the gRPC front), refusals."""
    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

    runs = {}
    for label, sidecar in sidecars.items():
        channel = grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc}")
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        _send_all(stub, requests[:20], inflight=4)  # warm-up
        _wait_rows(sidecar, "bench", 20 * rows)
        runs[label] = {"channel": channel, "stub": stub, "applied": 20 * rows, "served": 0.0, "refusals": 0,
                       "cpu": [], "threads": [], "child_cpu": 0.0, "sync": 0.0, "sync_refusals": 0}
    for kind in ["served"] * rounds + ["sync"]:
        for label, sidecar in sidecars.items():
            _one_round(sidecar, runs[label], requests, rows, kind)
    for out in runs.values():
        out.pop("channel").close()
        out.pop("stub")
    return runs


def _one_round(sidecar: "_Sidecar", out: dict, requests: list, rows: int, kind: str) -> None:
    import psutil

    proc = psutil.Process(sidecar.proc.pid)

    def children_cpu() -> float:
        return sum(sum(c.cpu_times()[:2]) for c in proc.children())

    before, before_children, start = _thread_times(proc), children_cpu(), time.perf_counter()
    _, refused, _ = _send_all(out["stub"], requests, inflight=1 if kind == "sync" else 8)
    out["applied"] += len(requests) * rows
    rate = len(requests) * rows / (_wait_rows(sidecar, "bench", out["applied"]) - start)
    out["sync_refusals" if kind == "sync" else "refusals"] += refused
    out[kind] = max(out[kind], rate)
    if kind == "served":  # CPU: least of the rounds, per process (a shared machine only ever adds to it)
        after, child = _thread_times(proc), children_cpu() - before_children
        spent = sorted(([a - b for a, b in zip(after[t], before.get(t, (0.0, 0.0, 0)))] for t in after),
                       key=lambda x: -(x[0] + x[1]))
        if not out["cpu"] or sum(u + s for u, s, _ in spent) < sum(out["cpu"]):
            out["cpu"] = [user + sys for user, sys, _ in spent]
            out["threads"] = spent[:2]  # (user s, system s, minor page faults) of the two busiest
        out["child_cpu"] = min(out["child_cpu"], child) if out["child_cpu"] else child


def _thread_times(proc) -> dict:
    """thread id -> (user s, system s, minor page faults; the last 0 where /proc cannot tell)."""
    out = {}
    for t in proc.threads():
        try:
            with open(f"/proc/{proc.pid}/task/{t.id}/stat") as fh:
                faults = int(fh.read().rsplit(")", 1)[1].split()[7])
        except (OSError, IndexError, ValueError):
            faults = 0
        out[t.id] = (t.user_time, t.system_time, faults)
    return out


def _stage_cpu(prof, requests: list) -> tuple[float, float]:
    """CPU seconds per request of the two stages the sidecar runs, in this process: parse + decode
    (``Ingestor.prepare``, the event loop's share) and apply (runs of up to 16 queued batches
    concatenated and applied to the state, the ingest worker's share)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from driftcar.sidecar.coalesce import coalesce
    from driftcar.sidecar.config import load_config
    from driftcar.sidecar.ingest import TAKE_AT_ONCE, Decoded, IngestQueue, Ingestor
    from driftcar.sidecar.state import StateStore
    from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig
    from driftcar.wire import DEFAULT_LIMITS

    raw = [r.SerializeToString() for r in requests]
    tel = Telemetry(TelemetryConfig(export="none"))
    store = StateStore(load_config(env={}, flags={"live_reference_rows": "0"}).store_config(), tel)
    store.get_or_create("bench", "1").set_profile(prof, "file")
    ingestor = Ingestor(IngestQueue(10**9, 10**12), tel, DEFAULT_LIMITS)
    start = time.thread_time()
    prepared = [ingestor.prepare(ExportLogsServiceRequest.FromString(data)) for data in raw]
    decode = (time.thread_time() - start) / len(raw)
    items = [item for p in prepared for item in p.items]
    try:  # the gRPC front's hand-over: encoded on one side, decoded on the other
        from driftcar.sidecar import handover as codec

        def hand_over(decoded):
            return codec.decode(codec.encode(decoded))
    except ImportError:  # (an older tree, measured for comparison: a plain pickle)
        def hand_over(decoded):
            return pickle.loads(pickle.dumps(decoded, protocol=pickle.HIGHEST_PROTOCOL))
    start = time.thread_time()
    for p in prepared:
        hand_over(Decoded(items=p.items))
    handover = (time.thread_time() - start) / len(raw)
    start = time.thread_time()
    for i in range(0, len(items), TAKE_AT_ONCE):
        for merged, _ in coalesce(items[i:i + TAKE_AT_ONCE]):
            store.apply(merged)
    return decode, (time.thread_time() - start) / len(raw), handover


#: server variants of the receive floor (``--grpc-floor-options``): name -> (grpc.aio?, extra server options)
FLOOR_VARIANTS = {
    "aio (the receiver's)": (True, []),
    "aio, no BDP probe, 16 MiB frames + window": (True, [("grpc.http2.bdp_probe", 0),
                                                         ("grpc.http2.max_frame_size", 16 * 2**20),
                                                         ("grpc.http2.lookahead_bytes", 16 * 2**20)]),
    "aio, optimization_target=throughput": (True, [("grpc.optimization_target", "throughput")]),
    "sync grpc.server, 4 threads": (False, []),
}


def _grpc_floor_server(variant: str = "aio (the receiver's)") -> None:
    """``--grpc-floor [VARIANT]``: a gRPC server taking LogsService/Export as raw bytes, as the sidecar's
    receiver does, and doing nothing with them; prints its port, stops at end of stdin."""
    import asyncio
    import concurrent.futures

    import grpc
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    use_aio, extra = FLOOR_VARIANTS[variant]
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024), *extra]

    def handlers(export):
        return (grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.logs.v1.LogsService", {"Export": grpc.unary_unary_rpc_method_handler(
                export, request_deserializer=None, response_serializer=ExportLogsServiceResponse.SerializeToString)}),)

    if not use_aio:
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(4), options=options)
        server.add_generic_rpc_handlers(handlers(lambda data, context: ExportLogsServiceResponse()))
        print(server.add_insecure_port("127.0.0.1:0"), flush=True)
        server.start()
        sys.stdin.read()
        server.stop(0)
        return

    async def export(data: bytes, context) -> ExportLogsServiceResponse:
        return ExportLogsServiceResponse()

    async def main() -> None:
        server = grpc.aio.server(options=options)
        server.add_generic_rpc_handlers(handlers(export))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop(0)

    asyncio.run(main())


def _grpc_floor_cpu(requests: list, rounds: int = 3, variants: tuple = ("aio (the receiver's)",)) -> dict | float:
    """CPU seconds per request of a gRPC server that only receives the same requests (8 in flight):
    what any Python gRPC receiver pays before driftcar does anything, least of ``rounds``. With several
    ``variants`` (:data:`FLOOR_VARIANTS`), all run at once and are measured in turn, round after round."""
    import grpc
    import psutil
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

    procs, stubs, channels = {}, {}, []
    try:
        for variant in variants:
            procs[variant] = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--grpc-floor", variant],
                                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            channels.append(grpc.insecure_channel(f"127.0.0.1:{int(procs[variant].stdout.readline())}"))
            stubs[variant] = logs_service_pb2_grpc.LogsServiceStub(channels[-1])
            _send_all(stubs[variant], requests[:20], inflight=4)
        best = {v: float("inf") for v in variants}
        for _ in range(rounds):
            for variant in variants:
                server = psutil.Process(procs[variant].pid)
                before = sum(server.cpu_times()[:2])
                _send_all(stubs[variant], requests, inflight=8)
                best[variant] = min(best[variant], (sum(server.cpu_times()[:2]) - before) / len(requests))
    finally:
        for channel in channels:
            channel.close()
        for proc in procs.values():
            proc.stdin.close()
            stop_process(proc, 10)
    return best if len(variants) > 1 else best[variants[0]]


def bench_grpc_floor_options(quick: bool) -> list[str]:
    """The receive floor under server options (``--grpc-floor-options``): CPU per 1,000-row request."""
    _, _, requests, _ = _workload(200 if quick else 600, os.path.join(tempfile.mkdtemp(), "floor.profile"))
    got = _grpc_floor_cpu(requests, rounds=3 if quick else 7, variants=tuple(FLOOR_VARIANTS))
    base = got["aio (the receiver's)"]
    return ["### gRPC receive floor by server variant (CPU ms per 1,000-row request, 8 in flight)", "",
            "| server | CPU ms | vs the receiver's |", "|---|---:|---:|",
            *(f"| {v} | {c * 1000:.3f} | {c / base:.2f} |" for v, c in got.items()), "",
            "Least of the rounds; the variants run side by side and are measured in turn in every round.", ""]


def _decode_us(cols: dict) -> dict:
    from driftcar.wire import decode_batch

    out = {}
    for label, part in (("all", cols), ("numeric", {k: v for k, v in cols.items() if k.startswith("n")})):
        body = _request(part, "bench").resource_logs[0].scope_logs[0].log_records[0].body.bytes_value
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(50):
                decode_batch(body)
            best = min(best, (time.perf_counter() - start) / 50 * 1e6)
        out[label] = best
    return out


def _baselines(prof, decoded: list[dict], requests: list) -> tuple[float, float, float, float]:
    """np.histogram rows/s and CPU s per batch, engine rows/s, in-process path rows/s."""
    hist = engine = in_process = 0.0
    hist_cpu = float("inf")
    for _ in range(5):  # interleaved, best of 5 each: the machine is shared, load drifts
        rate, cpu = _histogram_rate(prof, decoded * 5, repeat=1)
        hist, hist_cpu = max(hist, rate), min(hist_cpu, cpu)
        engine = max(engine, _engine_rate(prof, decoded * 5, repeat=1))
        in_process = max(in_process, _in_process_rate(prof, requests[:100], repeat=1))
    return hist, hist_cpu, engine, in_process


def _workload(n_batches: int, ref_path: str, rows: int = ROWS):
    """The reference (saved to ``ref_path``), ``n_batches`` requests cycling 20 distinct batches, and
    those batches decoded from the wire (what the baselines see: exactly what the sidecar decodes)."""
    from driftcar.stats import profile
    from driftcar.wire import decode_batch

    prof = profile(_columns(20_000, seed=1))
    prof.save(ref_path)
    distinct = [_columns(rows, seed=10 + i) for i in range(20 if rows <= ROWS else 4)]
    requests = [_request(distinct[i % len(distinct)], "bench") for i in range(n_batches)]
    decoded = []
    for req in requests[: len(distinct)]:
        batch = decode_batch(req.resource_logs[0].scope_logs[0].log_records[0].body.bytes_value)
        decoded.append({n: batch.columns[n] for n in batch.names("feature")})
    return prof, ref_path, requests, decoded


def _split(threads: list, n: int) -> str:
    return " and ".join(f"{u / n * 1000:.2f} / {s / n * 1000:.2f} ms, {f / n:,.0f} page faults" for u, s, f in threads)


def _as_the_sidecar() -> None:
    """The sidecar's malloc settings in this process, so that the in-process stages run as they run there."""
    try:
        from driftcar.sidecar.ingest import keep_heap
    except ImportError:  # (an older tree, measured for comparison)
        return
    keep_heap()


#: the receiver's two paths, measured side by side (``grpc_front``): label -> option value
PATHS = {"one process": "off", "gRPC front process": "on"}


def _served(tmp: str, ref_path: str, requests: list, rows: int, rounds: int) -> dict:
    """Both receiver paths (:data:`PATHS`), each a real ``driftcar sidecar``, measured in turns."""
    sidecars: dict = {}
    try:
        for label, front in PATHS.items():
            sidecars[label] = _Sidecar(tmp, "--window", "1m", "--reference", ref_path, "--grpc-front", front)
        return _process_rounds(sidecars, requests, rows, rounds=rounds)
    finally:
        for sidecar in sidecars.values():
            sidecar.stop()


def _path_lines(got: dict, n_batches: int, rows: int, hist: float, hist_cpu: float, engine: float):
    """(table rows, CPU lines) of each path: rows/s and the prediction 'the busier process bounds the rate'."""
    table, cpu_lines = [], []
    per_k = 1e6 / (n_batches * rows)  # CPU s of one round -> ms per 1,000 rows
    for label, g in got.items():
        table += [f"| `driftcar sidecar`, {label}, over gRPC loopback ({n_batches} requests, 8 in flight) | "
                  f"{g['served']:,.0f} | {g['served'] / hist:.2f} | {g['served'] / engine:.2f} |",
                  f"| the same, one synchronous client | {g['sync']:,.0f} | {g['sync'] / hist:.2f} | "
                  f"{g['sync'] / engine:.2f} |"]
        total, child = sum(g["cpu"]) * per_k, g["child_cpu"] * per_k
        busiest = " and ".join(f"{c * per_k:.2f}" for c in g["cpu"][:2])
        cpu_lines.append(
            f"- {label}: sidecar process {total:.2f} ms ({busiest} ms in its two busiest threads, user / system "
            f"{_split(g['threads'], n_batches * rows / ROWS)}), child processes {child:.2f} ms: the busier bounds "
            f"the rate, **{hist_cpu * 1000 / max(total, child):.2f} x np.histogram**. Refusals (UNAVAILABLE + "
            f"RetryInfo): {g['refusals']} with 8 in flight, {g['sync_refusals']} for the synchronous client.")
    return table, cpu_lines


def bench_throughput(quick: bool, tmp: str) -> list[str]:
    _as_the_sidecar()
    n_batches = 300 if quick else 2_000
    prof, ref_path, requests, decoded = _workload(n_batches, os.path.join(tmp, "bench.profile"))
    hist, hist_cpu, engine, in_process = _baselines(prof, decoded, requests)
    stages = min((_stage_cpu(prof, requests[:160]) for _ in range(3)), key=lambda s: sum(s[:2]))
    floor_ms = _grpc_floor_cpu(requests) * 1000
    got = _served(tmp, ref_path, requests, ROWS, rounds=3)
    rate, cpu = _histogram_rate(prof, decoded * 5, repeat=2)  # and once more after, same reason
    hist, hist_cpu = max(hist, rate), min(hist_cpu, cpu)
    table, cpu_lines = _path_lines(got, n_batches, ROWS, hist, hist_cpu, engine)
    decode_us = _decode_us(_columns(ROWS, seed=10))  # the first of the distinct batches
    return [
        "### Ingest throughput (20 numeric + 5 categorical features, 1,000-row batches)",
        "",
        "| measure | rows/s | ratio to np.histogram | ratio to engine |",
        "|---|---:|---:|---:|",
        f"| `np.histogram` on the 20 numeric columns alone | {hist:,.0f} | 1.00 | {hist / engine:.2f} |",
        f"| statistics engine alone (`WindowSketch.update`, all 25 columns, decoded) | {engine:,.0f} | "
        f"{engine / hist:.2f} | 1.00 |",
        f"| sidecar path in-process (parse + validate/decode + apply to state, no network) | {in_process:,.0f} | "
        f"{in_process / hist:.2f} | {in_process / engine:.2f} |",
        *table,
        "",
        f"Process figures count rows *applied to the state* (from the first request until the queue has drained), "
        f"best of 3 rounds, the two paths (`grpc_front` off / on) taking turns in every round; the load client "
        f"runs on the same 2-core machine.",
        "",
        f"CPU per 1,000-row request (less sensitive to a shared machine than rows/s; least of the rounds for each "
        f"process), `np.histogram` "
        f"{hist_cpu * 1000:.2f} ms:",
        *cpu_lines,
        "",
        f"`driftcar.wire.decode_batch` takes {decode_us['all']:.0f} µs per request, "
        f"{decode_us['all'] - decode_us['numeric']:.0f} µs of it for the 5 str columns.",
        "",
        f"Where a request's CPU goes (ms per 1,000-row request; parse + decode and apply measured in this process, "
        f"least of 3): a gRPC server that only receives the same requests (no driftcar code) {floor_ms:.2f}; parse + "
        f"validate/decode {stages[0] * 1000:.2f}; apply to the state (up to 16 queued batches concatenated, as the "
        f"ingest worker does) {stages[1] * 1000:.2f}; sum {floor_ms + sum(stages[:2]) * 1000:.2f} against "
        f"`np.histogram`'s {hist_cpu * 1000:.2f} (**{hist_cpu * 1000 / (floor_ms + sum(stages[:2]) * 1000):.2f} x** "
        f"if one core ran it all). The gRPC front's hand-over of a decoded request (encode + decode, `handover.py`) "
        f"{stages[2] * 1000:.2f}.",
        "",
        *_throughput_big(quick, tmp, prof),
    ]


def _throughput_big(quick: bool, tmp: str, prof) -> list[str]:
    """The same at the hook's default batch size (``DRIFTCAR_MAX_BATCH_ROWS``): what a busy hook sends."""
    from driftcar.hook.shipping.config import ShipperConfig

    rows = ShipperConfig(model_name="bench").max_batch_rows
    n_batches = 30 if quick else 200
    _, ref_path, requests, decoded = _workload(n_batches, os.path.join(tmp, "big.profile"), rows=rows)
    hist, hist_cpu = 0.0, float("inf")
    engine = 0.0
    for _ in range(3):
        rate, cpu = _histogram_rate(prof, decoded * 5, repeat=1)
        hist, hist_cpu = max(hist, rate), min(hist_cpu, cpu)
        engine = max(engine, _engine_rate(prof, decoded * 5, repeat=1))
    got = _served(tmp, ref_path, requests, rows, rounds=3)
    rate, cpu = _histogram_rate(prof, decoded * 5, repeat=2)
    hist, hist_cpu = max(hist, rate), min(hist_cpu, cpu)
    table, cpu_lines = _path_lines(got, n_batches, rows, hist, hist_cpu, engine)
    return [
        f"### Ingest throughput at the hook's default batch size ({rows:,}-row batches, same features)",
        "",
        "| measure | rows/s | ratio to np.histogram | ratio to engine |",
        "|---|---:|---:|---:|",
        f"| `np.histogram` on the 20 numeric columns alone (the same {rows:,}-row batches) | {hist:,.0f} | 1.00 | "
        f"{hist / engine:.2f} |",
        f"| statistics engine alone (`WindowSketch.update`, decoded) | {engine:,.0f} | {engine / hist:.2f} | 1.00 |",
        *table,
        "",
        f"CPU per 1,000 rows, `np.histogram` {hist_cpu * 1000:.2f} ms:",
        *cpu_lines,
        "",
    ]


# --------------------------------------------------------------------------- memory


def _prefilled_state(state_dir: str, prof, models: int, windows: int, window_s: float) -> None:
    """A checkpoint holding ``models`` x ``windows`` closed windows (200 rows each), so the
    sidecar starts with full state instead of the benchmark waiting 60 windows."""
    from driftcar.sidecar.checkpoint import Checkpointer
    from driftcar.sidecar.config import load_config
    from driftcar.sidecar.state import ClosedWindow, StateStore
    from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig

    config = load_config(env={}, flags={"live_reference_rows": "0", "windows_kept": str(windows)})
    store = StateStore(config.store_config(), Telemetry(TelemetryConfig(export="none")))
    samples = [_columns(200, seed=500 + i, numeric=90, categorical=10) for i in range(8)]
    now = time.time_ns()
    for m in range(models):
        state = store.get_or_create(f"model{m}", "1")
        state.set_profile(prof, "batch")
        for w in range(windows):
            sketch = prof.new_window()
            sketch.update(samples[(m + w) % len(samples)])
            start = now - int((windows - w) * window_s * 1e9)
            state.series.keep_closed(ClosedWindow(start, start + int(window_s * 1e9), 200, sketch, profile=prof))
        state.compact_closed()
    Checkpointer(state_dir, store).save()


def bench_memory(quick: bool, tmp: str) -> list[str]:
    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

    from driftcar.stats import profile

    models, features, windows = 10, 100, 60
    window_s = 2.0
    steady_s = 60 if quick else 600
    prof = profile(_columns(5_000, seed=3, numeric=features - 10, categorical=10))
    idle = _Sidecar(tmp, "--window", f"{window_s:g}s")
    try:
        idle_rss = idle.rss()
    finally:
        idle.stop()
    state_dir = os.path.join(tmp, "state")
    _prefilled_state(state_dir, prof, models, windows, window_s)
    checkpoint_mib = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(state_dir) for f in fs) / 2**20
    payloads = [[_request(_columns(200, seed=1000 * m + i, numeric=features - 10, categorical=10), f"model{m}")
                 for i in range(4)] for m in range(models)]
    sidecar = _Sidecar(tmp, "--window", f"{window_s:g}s", "--state-dir", state_dir, "--windows-kept", str(windows),
                       "--live-reference-rows", "0")
    samples: list[tuple[float, int]] = []
    refusals = 0
    try:
        restored = sidecar.models()
        assert len(restored) == models and min(m["closed_windows"] for m in restored) == windows, restored
        full_rss = sidecar.rss()
        channel = grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc}")
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < steady_s:  # steady load: 200 rows per model per window
            tick = time.monotonic()
            for m in range(models):
                try:
                    stub.Export(payloads[m][i % 4], timeout=30)
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    refusals += 1
            i += 1
            samples.append((time.monotonic() - start, sidecar.rss()))
            time.sleep(max(0.0, window_s - (time.monotonic() - tick)))
        after = sidecar.models()
        channel.close()
    finally:
        sidecar.stop()
    warm = [r for t, r in samples if t <= max(steady_s * 0.2, 10)]
    end = [r for t, r in samples if t >= steady_s * 0.8]
    warm_rss, end_rss = float(np.median(warm)), float(np.median(end))
    growth = (end_rss - warm_rss) / warm_rss
    mib = 1024 * 1024
    times = np.array([t for t, _ in samples])
    trajectory = ", ".join(
        f"{int(q * 100)}%: {samples[int(np.argmin(np.abs(times - q * steady_s)))][1] / mib:.0f}"
        for q in (0.0, 0.25, 0.5, 0.75, 1.0))
    return [
        f"### Memory: {models} models x {features} features x {windows} closed windows",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| RSS of an idle sidecar (no state) | {idle_rss / mib:.1f} MiB |",
        f"| checkpoint holding that state | {checkpoint_mib:.1f} MiB |",
        f"| RSS after restoring it (every model holds {windows} windows) | {full_rss / mib:.1f} MiB |",
        f"| RSS median, first {max(steady_s * 0.2, 10):.0f} s of the steady run | {warm_rss / mib:.1f} MiB |",
        f"| RSS median, last 20% of the steady run | {end_rss / mib:.1f} MiB |",
        f"| growth over {steady_s / 60:.0f} min at steady load | {growth * 100:+.1f}% |",
        f"| RSS through the run (MiB) | {trajectory} |",
        "",
        f"Window {window_s:g} s, 200 rows per model per window ({models * 200 / window_s:,.0f} rows/s of "
        f"{features}-feature rows); closed windows are capped (`--windows-kept {windows}`) and kept "
        f"zlib-compressed, so memory must stay flat once full. Refusals: {refusals}. Rows applied during "
        f"the run: {sum(m['rows_total'] for m in after) - sum(m['rows_total'] for m in restored):,}.",
        "",
    ]


def _window_cpu(prof, batches: list[dict], per_window: int, dense: bool) -> float:
    """CPU seconds to sketch ``batches`` into windows of ``per_window`` batches, each window's grid
    read at its close as the evaluator reads it; ``dense``: the grid made up front (binned per batch)."""
    start = time.process_time()
    for k in range(0, len(batches), per_window):
        w = prof.new_window()
        if dense:
            w.num_counts  # noqa: B018 -- a read makes the grid: every batch is binned as it comes
        for batch in batches[k:k + per_window]:
            w.update(batch)
        w.num_counts  # noqa: B018 -- the close reads the grid
    return time.process_time() - start


def bench_open_window_cpu(quick: bool) -> list[str]:
    """CPU per 1,000 rows with the open window's values kept until the close, against the grid made up
    front (binning each batch as it comes), interleaved, least of N rounds."""
    from driftcar.stats import profile

    wide = profile(_columns(2_000, seed=41, numeric=500, categorical=0), multivariate=False)
    narrow = profile(_columns(5_000, seed=42, numeric=20, categorical=5), multivariate=False)
    cases = [("1,000-row batches, 20 numeric + 5 str, 16 per window", narrow,
              [_columns(1_000, seed=50 + i, numeric=20, categorical=5) for i in range(32)], 16),
             ("20-row batches, 500 numeric, 1 per window", wide,
              [_columns(20, seed=90 + i, numeric=500, categorical=0) for i in range(20)], 1),
             ("1-row batches, 500 numeric, 20 per window", wide,
              [_columns(1, seed=130 + i, numeric=500, categorical=0) for i in range(40)], 20)]
    lines = ["### Open window: CPU per 1,000 rows, values kept until the close vs the grid made up front", "",
             "| batches | grid up front (ms) | values kept (ms) | ratio |", "|---|---:|---:|---:|"]
    for label, prof, batches, per_window in cases:
        best = {True: np.inf, False: np.inf}
        for _ in range(3 if quick else 7):
            for dense in (True, False):
                best[dense] = min(best[dense], _window_cpu(prof, batches, per_window, dense))
        per = 1e6 / sum(len(next(iter(b.values()))) for b in batches)
        lines.append(f"| {label} | {best[True] * per:.2f} | {best[False] * per:.2f} | "
                     f"{best[False] / best[True]:.2f} |")
    return lines + ["", "`time.process_time`, least of the rounds, the two ways alternating. The grid up front is "
                    "how every window worked before (and how one works once its values would outgrow the grid).", ""]


def bench_feature_memory(quick: bool) -> list[str]:
    """Memory per feature of one model's state with 60 kept windows, by part (tracemalloc)."""
    from tests.reliability.feature_memory import KIB, measure

    features = 500 if quick else 5_000
    lines = [f"### Memory per feature: one model, {features:,} features, 60 closed windows (tracemalloc)", "",
             "| values | rows per window | profile + layout | open window | 60 closed windows + cumulative | total | "
             "compressed window |", "|---|---:|---:|---:|---:|---:|---:|"]
    for values, rows in [("normal", 20), ("normal", 50), ("normal", 200), ("normal", 1_000), ("2 decimals", 50),
                         ("integers", 50)]:
        got = measure(features, rows_per_window=rows, values=values)
        lines.append(f"| {values} | {rows:,} | {got['profile'] / KIB:.1f} KiB | {got['open'] / KIB:.1f} KiB "
                     f"| {got['closed'] / KIB:.1f} KiB | **{got['total'] / KIB:.1f} KiB** | {got['blob']:.0f} B |")
    lines += ["", "Values: `normal` full-precision floats (every mantissa bit random: the hardest case for packed "
              "sums), `2 decimals` / `integers` rounded N(50, 10). Goal: <= 20 KiB per feature with 60 windows. "
              "What each part holds, at 400 fine bins: profile + layout = the reference's fine edges and per-bin "
              "sums (float64, 3.2 KB each: profile bytes are written from them) and counts (narrowest signed "
              "type, 0.4 KB as int8), held once by the layout and viewed by the profile's features, + its PCA + "
              "Python objects; open window = its values not yet binned (8 bytes each + ~128 per batch: the grid, "
              "4.8 KB of int32 counts and float64 sums, is made when the values would take more or at the "
              "close: the 1,000-row case); lookup-binner tables (3.2-26 KB a feature) for the first "
              "512 KiB of them per profile (`_binning.TABLE_BUDGET`: ~0.1 KiB a feature here, counted in "
              "closed, where windows are binned), and past it only for batches of 384+ values "
              "(`_binning.LOOKUP_WIDE`: the 1,000-row case, counted in open); closed = 60 windows packed with each fine bin's mean in 3 bits "
              "(`WindowSketch.pack(exact=False, bits=3)`: counts and atoms exact, each mean within 1/14 of its "
              "bin's width; ~1 B per non-empty bin with its gap and count) + the cumulative sketch, exact "
              "counts and each feature's sum (`pack(exact=False, bits=0, totals=True)`, ~0.3-0.5 KB: no fine "
              "means; before: packed exactly, ~2.5 KB). Before these: 8-bit means (~1.5 B per non-empty bin), "
              "an exact cumulative and a table per feature gave 12.7 / 15.9 / 31.0 KiB at 20 / 50 / 200 rows. "
              "Run alone: `python benchmarks/bench_sidecar.py --feature-memory [--quick]`.", ""]
    return lines


# --------------------------------------------------------------------------- ingest over processes


def _cut_row(label: str, got: dict, hist_ms: float, hist_rate: float) -> str:
    """One measured cut: what 2 free cores would give is bounded by the total CPU over 2 and by the
    busiest single process (one GIL each)."""
    cpu = got["cpu"]
    total = sum(cpu) + got["client"]
    bound = max(total / 2, *cpu, got["client"])
    return (f"| {label} | {' / '.join(f'{c:.2f}' for c in cpu)} | {got['client']:.2f} | {total:.2f} | "
            f"{' / '.join(f'{s:.2f}' for s in got['share'])} | **{hist_ms / bound:.2f}** | {got['rate']:,.0f} | "
            f"{got['rate'] / hist_rate:.2f} | {got['refusals']} |")


def bench_ingest_workers(quick: bool, tmp: str, workers: int = 2) -> list[str]:
    """The ways to use both cores for gRPC ingest (:mod:`_ingest_cuts`), against ``np.histogram``."""
    import _ingest_cuts as cuts

    _as_the_sidecar()
    n_batches = 300 if quick else 1_000
    prof, ref, requests, decoded = _workload(n_batches, os.path.join(tmp, "cuts.profile"))
    hist_rate, hist_cpu = _histogram_rate(prof, decoded * 5, repeat=3)
    floor_ms = _grpc_floor_cpu(requests) * 1000
    stages = min((_stage_cpu(prof, requests[:160]) for _ in range(3)), key=lambda s: sum(s[:2]))
    variants = [("one process, full apply (today's path), 1 connection", "reuseport-full", 1, 1),
                (f"reuseport: {workers} processes, full apply each, 2 connections", "reuseport-full", workers, 2),
                (f"reuseport: {workers} processes, full apply each, 8 connections", "reuseport-full", workers, 8),
                (f"reuseport: {workers} processes, window sketch only, 8 connections", "reuseport-sketch", workers, 8),
                ("pipe: 1 receiving process + 1 child (decode + sketch), 1 connection", "pipe", 1, 1),
                (f"pipe: 1 receiving process + {workers} children (decode + sketch), 1 connection", "pipe", workers, 1)]
    rows = []
    for label, cut, procs, channels in variants:
        got = cuts.measure(cut, procs, channels, requests, ROWS, ref, tmp, rounds=3 if quick else 5)
        rate, cpu = _histogram_rate(prof, decoded * 5, repeat=1)  # again between cuts: the load drifts
        hist_rate, hist_cpu = max(hist_rate, rate), min(hist_cpu, cpu)
        rows.append((label, got))
    hist_ms = hist_cpu * 1000
    return [
        f"### Ingest over processes (20 numeric + 5 str features, 1,000-row batches, {n_batches} requests, "
        f"8 in flight)",
        "",
        f"`np.histogram` on the 20 numeric columns: {hist_ms:.2f} ms CPU per 1,000 rows ({hist_rate:,.0f} rows/s). "
        f"The stages alone, in one process (ms per 1,000 rows): a gRPC server that only receives {floor_ms:.2f}, "
        f"parse + validate/decode {stages[0] * 1000:.2f}, apply to the state (16 batches coalesced) "
        f"{stages[1] * 1000:.2f}.",
        "",
        "| cut | CPU ms / 1,000 rows, per sidecar-side process | client | total | rows share | predicted on 2 "
        "cores, x np.histogram | measured rows/s | measured x np.histogram | refusals |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(_cut_row(label, got, hist_ms, hist_rate) for label, got in rows),
        "",
        "Predicted = np.histogram's CPU per 1,000 rows / max(total CPU / 2, the busiest process): what 2 free "
        "cores give when nothing else runs, the client included (it shares them). CPU columns: the round that "
        "used the least CPU in total (the least disturbed); rows/s: the best round, counting rows applied, not "
        "acknowledged. Rows share: the kernel spreads connections (not requests) over SO_REUSEPORT processes.",
        "",
    ]


# --------------------------------------------------------------------------- the gRPC front's link alone


async def _front_link_cpu(requests: list, rounds: int) -> tuple[float, float]:
    """(front process, this loop's thread) CPU s per request, least of ``rounds``: a real front process
    (``FrontLink``) and a real ``Ingestor`` here, queued items dropped by a thread instead of applied."""
    import asyncio
    import threading

    import grpc
    import psutil
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

    from driftcar.sidecar.config import Endpoint, load_config
    from driftcar.sidecar.front_link import FrontLink
    from driftcar.sidecar.ingest import IngestQueue, Ingestor
    from driftcar.sidecar.security import TokenAuth
    from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig
    from driftcar.wire import DEFAULT_LIMITS

    queue = IngestQueue(10**9, 10**12)
    stop = threading.Event()

    def drop() -> None:
        while not stop.is_set():
            for item in queue.get_many(16, timeout=0.2):
                queue.done(item)

    threading.Thread(target=drop, daemon=True).start()
    link = FrontLink(Endpoint("127.0.0.1", 0), Ingestor(queue, Telemetry(TelemetryConfig(export="none")),
                                                         DEFAULT_LIMITS),
                     {"auth": TokenAuth(None), "tls": load_config(env={}, flags={}).tls, "limits": DEFAULT_LIMITS, "max_request_bytes": 64 * 2**20,
                      "log_level": "warning", "grace_s": 1.0})
    await link.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{link.port}")
    try:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        await asyncio.to_thread(_send_all, stub, requests[:40], 8)
        front, here = float("inf"), float("inf")
        for _ in range(rounds):
            proc = psutil.Process(link.proc.pid)
            before, start = sum(proc.cpu_times()[:2]), time.thread_time()
            await asyncio.to_thread(_send_all, stub, requests, 8)
            front = min(front, (sum(proc.cpu_times()[:2]) - before) / len(requests))
            here = min(here, (time.thread_time() - start) / len(requests))
    finally:
        channel.close()
        await link.stop(1.0)
        stop.set()
    return front, here


def bench_front_link(quick: bool) -> list[str]:
    """``--front-link``: the gRPC front and the sidecar's handling of its frames, without applying."""
    import asyncio

    _as_the_sidecar()
    _, _, requests, _ = _workload(300 if quick else 1_000, os.path.join(tempfile.mkdtemp(), "link.profile"))
    front, here = asyncio.run(_front_link_cpu(requests, rounds=3 if quick else 7))
    return ["### The gRPC front's link (CPU ms per 1,000-row request, 8 in flight, nothing applied)", "",
            f"- front process (receive, parse + decode, hand-over encode): {front * 1000:.3f}",
            f"- the sidecar's event loop (frames, hand-over decode, Ingestor, answers): {here * 1000:.3f}", "",
            "Least of the rounds. Run it from two trees in turn to compare link designs on a shared machine.", ""]


def _least_cpu(fn, reps: int) -> float:
    """Least ``time.thread_time`` of ``reps`` calls of ``fn`` (a collection first: no GC pause inside)."""
    import gc

    best = float("inf")
    for _ in range(reps):
        gc.collect()
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best


def bench_stage_cpu(quick: bool) -> list[str]:
    """``--stage-cpu``: CPU µs per 1,000-row request of each in-process stage of the gRPC front path,
    least of many passes (a CPU-time microbenchmark, no network: fit for a shared machine)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from driftcar.sidecar import handover
    from driftcar.sidecar.coalesce import coalesce
    from driftcar.sidecar.config import load_config
    from driftcar.sidecar.ingest import TAKE_AT_ONCE, IngestQueue, Ingestor, decode_request
    from driftcar.sidecar.state import StateStore
    from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig
    from driftcar.wire import DEFAULT_LIMITS

    _as_the_sidecar()
    n, reps = (48, 10) if quick else (96, 30)
    prof, _, requests, _ = _workload(n, os.path.join(tempfile.mkdtemp(), "stages.profile"))
    raw = [r.SerializeToString() for r in requests]
    parsed = [ExportLogsServiceRequest.FromString(d) for d in raw]
    payloads = [bytes(handover.encode(decode_request(p, DEFAULT_LIMITS))) for p in parsed]
    tel = Telemetry(TelemetryConfig(export="none"))
    queue = IngestQueue(10**9, 10**12)
    ingestor = Ingestor(queue, tel, DEFAULT_LIMITS)

    def receive() -> None:  # the sidecar's loop: hand-over read, model cap, queue, counts
        for payload in payloads:
            ingestor.commit(ingestor.prepare_decoded(handover.decode(payload)))
        for item in queue.get_many(10**6, 0):
            queue.done(item)
        ingestor.recent = type(ingestor.recent)()  # (the same batches again next pass: not duplicates)

    store = StateStore(load_config(env={}, flags={"live_reference_rows": "0"}).store_config(), tel)
    store.get_or_create("bench", "1").set_profile(prof, "file")
    taken = iter([[i for p in payloads for i in handover.decode(p).items] for _ in range(reps)])

    def apply() -> None:  # the ingest worker: runs of up to 16 queued batches concatenated and applied
        items = next(taken)
        for i in range(0, len(items), TAKE_AT_ONCE):
            for merged, _ in coalesce(items[i:i + TAKE_AT_ONCE]):
                store.apply(merged)

    decoded = [decode_request(p, DEFAULT_LIMITS) for p in parsed]
    stages = {"front: parse (protobuf)": lambda: [ExportLogsServiceRequest.FromString(d) for d in raw],
              "front: decode (records + batch bodies)": lambda: [decode_request(p, DEFAULT_LIMITS) for p in parsed],
              "front: hand-over encode": lambda: [handover.encode(d) for d in decoded],
              "sidecar loop: hand-over decode": lambda: [handover.decode(p) for p in payloads],
              "sidecar loop: hand-over decode + prepare + commit": receive,
              "sidecar worker: apply (coalesce 16 + state)": apply}
    lines = ["### CPU per 1,000-row request by stage (µs, least of the passes, `time.thread_time`)", "",
             "| stage | µs |", "|---|---:|"]
    lines += [f"| {name} | {_least_cpu(fn, reps) / n * 1e6:.1f} |" for name, fn in stages.items()]
    return lines + ["", f"{n} requests of 20 numeric + 5 str columns a pass, {reps} passes.", ""]


def run(quick: bool) -> str:
    with tempfile.TemporaryDirectory(prefix="driftcar-bench-") as tmp:
        lines = ["## sidecar", ""]
        lines += bench_throughput(quick, tmp)
        lines += bench_memory(quick, tmp)
        lines += bench_feature_memory(quick)
        lines += bench_open_window_cpu(quick)
    return "\n".join(lines)


if __name__ == "__main__":
    if "--grpc-floor" in sys.argv:
        _grpc_floor_server(*sys.argv[sys.argv.index("--grpc-floor") + 1:][:1])
    elif "--grpc-floor-options" in sys.argv:  # the receive floor under server options (not in run())
        print("\n".join(bench_grpc_floor_options(quick="--quick" in sys.argv)))
    elif "--stage-cpu" in sys.argv:  # CPU per request of each in-process stage (not in run())
        print("\n".join(bench_stage_cpu(quick="--quick" in sys.argv)))
    elif "--front-link" in sys.argv:  # the gRPC front and the sidecar's side of its link alone (not in run())
        print("\n".join(bench_front_link(quick="--quick" in sys.argv)))
    elif "--ingest-workers" in sys.argv:  # the ways to use both cores for ingest, measured (not in run())
        sys.path.insert(0, HERE)
        with tempfile.TemporaryDirectory(prefix="driftcar-bench-") as tmp:
            print("\n".join(bench_ingest_workers(quick="--quick" in sys.argv, tmp=tmp)))
    elif "--ingest" in sys.argv:  # the ingest throughput section alone
        with tempfile.TemporaryDirectory(prefix="driftcar-bench-") as tmp:
            print("\n".join(bench_throughput(quick="--quick" in sys.argv, tmp=tmp)))
    elif "--feature-memory" in sys.argv:  # the tracemalloc section alone: no sidecar process, load-independent
        print("\n".join(bench_feature_memory(quick="--quick" in sys.argv) + bench_open_window_cpu("--quick" in sys.argv)))
    else:
        print(run(quick="--quick" in sys.argv))
