"""Ways to split the sidecar's gRPC ingest over processes, measured with driftcar's own code.

Each cut runs as real processes on 127.0.0.1 and is driven by the same client; what is measured is
CPU seconds per 1,000 rows in every process (the client's too: it shares the cores), which a shared
machine disturbs far less than rows/s, and the rows/s until every accepted row is counted.

- ``reuseport``: N processes, each a :class:`~driftcar.sidecar.receiver_grpc.GrpcReceiver` on the
  same port (SO_REUSEPORT) with its own ``Ingestor`` + ``IngestQueue`` + ``IngestWorker``; ``full``
  applies to a ``StateStore`` (what one sidecar does today), ``sketch`` only updates the open
  ``WindowSketch`` (the least a worker could do if it handed window sketches to a main process).
  The kernel spreads *connections*, not requests: the client opens several channels.
- ``pipe``: one process receives (gRPC, raw bytes) and hands each request's bytes round-robin to
  N children over pipes; each child parses + decodes (``decode_pool.decode_inline``), answers (as
  the sidecar answers once a request is queued) and updates its own window sketch in coalesced
  runs, as ``IngestWorker`` does. Works with one connection; with N = 1 it is the cut "a front
  process for gRPC, the rest of the sidecar behind it".

Run through ``python benchmarks/bench_sidecar.py --ingest-workers [--quick]``.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import mmap
import multiprocessing
import os
import resource
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
F_SETPIPE_SZ = 1031  # Linux; a whole request fits the pipe, so the receiving loop rarely blocks


class Counter:
    """Rows applied by one process, in an 8-byte shared file (read by the client while it runs)."""

    def __init__(self, path: str, create: bool = False):
        if create:
            with open(path, "wb") as fh:
                fh.write(b"\0" * 8)
        with open(path, "r+b") as fh:
            self._map = mmap.mmap(fh.fileno(), 8)
        self.path = path

    def add(self, rows: int) -> None:
        struct.pack_into("q", self._map, 0, self.value + rows)

    @property
    def value(self) -> int:
        return struct.unpack_from("q", self._map, 0)[0]


def _sketch_apply(profile, counter: Counter):
    window = profile.new_window()

    from driftcar.sidecar.state import sketch_column

    def apply(item) -> None:
        batch = item.batch
        window.update({n: sketch_column(batch.columns[n]) for n in batch.names("feature")})
        counter.add(batch.rows)
    return apply


def _full_apply(profile, counter: Counter):
    from driftcar.sidecar.config import load_config
    from driftcar.sidecar.state import StateStore
    from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig

    config = load_config(env={}, flags={"live_reference_rows": "0"})
    store = StateStore(config.store_config(), Telemetry(TelemetryConfig(export="none")))
    store.get_or_create("bench", "1").set_profile(profile, "file")

    def apply(item) -> None:
        store.apply(item)
        counter.add(item.batch.rows)
    return apply, store.admit


def serve_reuseport(port: int, ref: str, counter_path: str, mode: str) -> None:
    """One ingest process of the ``reuseport`` cut; prints ``ready``, stops at the end of stdin."""
    from driftcar.sidecar.config import Endpoint
    from driftcar.sidecar.ingest import IngestQueue, Ingestor, IngestWorker
    from driftcar.sidecar.receiver_grpc import GrpcReceiver
    from driftcar.sidecar.security import TokenAuth
    from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig
    from driftcar.stats import Profile
    from driftcar.wire import DEFAULT_LIMITS

    profile, counter = Profile.load(ref), Counter(counter_path)
    apply, admit = _full_apply(profile, counter) if mode == "full" else (_sketch_apply(profile, counter), None)
    tel = Telemetry(TelemetryConfig(export="none"))
    queue = IngestQueue(1_000_000, 256 * 2**20)
    worker = IngestWorker(queue, apply, tel)
    worker.start()

    async def main() -> None:
        receiver = GrpcReceiver(Endpoint("127.0.0.1", port), Ingestor(queue, tel, DEFAULT_LIMITS, admit=admit),
                                TokenAuth(None), max_request_bytes=32 * 2**20, reuse_port=True)
        await receiver.start()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await receiver.stop(0)

    asyncio.run(main())
    worker.stop()


def _pipe_child(requests, answers, ref: str, counter_path: str) -> None:
    """Answer each request once decoded (as the sidecar answers once queued), then apply what has
    gathered in runs of up to 16 (coalesced), or sooner when no request arrives for 2 ms."""
    from driftcar.sidecar.coalesce import coalesce
    from driftcar.sidecar.decode_pool import decode_inline
    from driftcar.sidecar.ingest import keep_heap
    from driftcar.stats import Profile
    from driftcar.wire import DEFAULT_LIMITS

    keep_heap()  # as the sidecar's ingest worker does
    counter = Counter(counter_path)
    apply = _sketch_apply(Profile.load(ref), counter)
    pending: list = []
    while True:
        if pending and (len(pending) >= 16 or not requests.poll(0.002)):
            for merged, _ in coalesce(pending):
                apply(merged)
            pending = []
            continue
        try:
            data = requests.recv_bytes()
        except EOFError:
            return
        decoded = decode_inline(data, False, DEFAULT_LIMITS)
        answers.send_bytes(b"%d" % len(decoded.items))
        pending.extend(decoded.items)


def serve_pipe(port: int, ref: str, counter_paths: list[str]) -> None:
    """The receiving process of the ``pipe`` cut (one child per counter); as :func:`serve_reuseport`."""
    import grpc
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    ctx = multiprocessing.get_context("spawn")
    links = []
    for path in counter_paths:
        child_in, to_child = ctx.Pipe(duplex=False)
        from_child, child_out = ctx.Pipe(duplex=False)
        fcntl.fcntl(to_child.fileno(), F_SETPIPE_SZ, 1 << 20)
        ctx.Process(target=_pipe_child, args=(child_in, child_out, ref, path), daemon=True).start()
        links.append((to_child, from_child, collections.deque()))
    turn = [0]

    async def export(data: bytes, context) -> ExportLogsServiceResponse:
        to_child, _, waiting = links[turn[0] % len(links)]
        turn[0] += 1
        answer = asyncio.get_running_loop().create_future()
        waiting.append(answer)
        to_child.send_bytes(data)
        await answer
        return ExportLogsServiceResponse()

    def answered(link) -> None:
        _, from_child, waiting = link
        while from_child.poll(0):
            from_child.recv_bytes()
            waiting.popleft().set_result(None)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for link in links:
            loop.add_reader(link[1].fileno(), answered, link)
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 2**20), ("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.logs.v1.LogsService", {"Export": grpc.unary_unary_rpc_method_handler(
                export, request_deserializer=None, response_serializer=ExportLogsServiceResponse.SerializeToString)}),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        await server.stop(0)

    asyncio.run(main())


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _send(stubs: list, requests: list, inflight: int) -> int:
    """Every request, ``inflight`` at a time, spread over ``stubs`` in turn; refusals retried. Returns refusals."""
    pending, waiting, refusals, turn = collections.deque(), collections.deque(requests), 0, 0
    while waiting or pending:
        while waiting and len(pending) < inflight:
            request = waiting.popleft()
            pending.append((request, stubs[turn % len(stubs)].Export.future(request, timeout=30)))
            turn += 1
        request, future = pending.popleft()
        if refused(future):
            refusals += 1
            waiting.appendleft(request)
    return refusals


def refused(future) -> bool:
    """Wait for one export; True when the sidecar refused it (UNAVAILABLE: send it again, after a
    short pause), any other error raised."""
    import grpc

    try:
        future.result()
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        time.sleep(0.01)
        return True
    return False


def _start(cut: str, procs: int, port: int, ref: str, tmp: str) -> tuple[list, list[Counter]]:
    counters = [Counter(os.path.join(tmp, f"rows-{port}-{k}"), create=True) for k in range(procs)]
    me = os.path.abspath(__file__)
    if cut == "pipe":
        commands = [[sys.executable, me, "pipe", str(port), ref, *(c.path for c in counters)]]
    else:
        commands = [[sys.executable, me, "reuseport", str(port), ref, c.path, cut.split("-")[1]] for c in counters]
    started = []
    for command in commands:
        started.append(subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        if started[-1].stdout.readline().strip() != "ready":
            raise RuntimeError(f"{cut} process did not start")
    return started, counters


def measure(cut: str, procs: int, channels: int, requests: list, rows_per_request: int, ref: str, tmp: str,
            rounds: int = 3) -> dict:
    """Send ``requests`` 8 in flight, ``rounds`` times: rows/s until every row is applied, CPU ms per
    1,000 rows of each sidecar-side process and of this (client) process, each process's share of rows."""
    import grpc
    import psutil
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

    from tests.support.waiting import free_port, stop_process

    port = free_port()
    started, counters = _start(cut, procs, port, ref, tmp)
    channels_ = [grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
                 for _ in range(channels)]  # own subchannel pool: one TCP connection per channel
    try:
        stubs = [logs_service_pb2_grpc.LogsServiceStub(c) for c in channels_]
        server_side = [psutil.Process(p.pid) for p in started]
        server_side += [c for p in server_side for c in p.children() if "spawn_main" in " ".join(c.cmdline())]
        return _rounds(stubs, requests, rows_per_request, server_side, counters, rounds)
    finally:
        for channel in channels_:
            channel.close()
        for proc in started:
            proc.stdin.close()
            stop_process(proc, 10)


def _rounds(stubs, requests, rows_per_request, server_side, counters, rounds) -> dict:
    """Rows/s: the best round; CPU: the round that used the least in total (the least disturbed)."""
    _send(stubs, requests[:40], 8)  # warm-up
    _wait(counters, 40 * rows_per_request)
    rows = rows_per_request * len(requests)
    per_k = 1000.0 / rows * 1000  # CPU s per round -> ms per 1,000 rows
    best_rate, least = 0.0, None
    for _ in range(rounds):
        cpu0, own0, rows0 = [sum(p.cpu_times()[:2]) for p in server_side], _own_cpu(), [c.value for c in counters]
        start = time.perf_counter()
        refusals = _send(stubs, requests, 8)
        _wait(counters, sum(rows0) + rows)
        best_rate = max(best_rate, rows / (time.perf_counter() - start))
        got = {"refusals": refusals, "client": (_own_cpu() - own0) * per_k,
               "cpu": [(sum(p.cpu_times()[:2]) - c) * per_k for p, c in zip(server_side, cpu0)],
               "share": [(c.value - r) / rows for c, r in zip(counters, rows0)]}
        if least is None or sum(got["cpu"]) + got["client"] < sum(least["cpu"]) + least["client"]:
            least = got
    return {**least, "rate": best_rate}


def _wait(counters: list[Counter], target: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(c.value for c in counters) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sum(c.value for c in counters)} of {target} rows applied")
        time.sleep(0.002)


if __name__ == "__main__":
    sys.path[:0] = [os.path.dirname(HERE), os.path.join(os.path.dirname(HERE), "agent")]
    if sys.argv[1] == "pipe":
        serve_pipe(int(sys.argv[2]), sys.argv[3], sys.argv[4:])
    else:
        serve_reuseport(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
