"""Check 9: one request limit on both transports, applied after decompression.

The sidecar runs with its default ``max_request_bytes`` (32 MiB). Requests of exactly
limit-1 and limit bytes are accepted, limit+1 refused (RESOURCE_EXHAUSTED / 413), plain
and gzip-compressed, on gRPC, HTTP protobuf and HTTP JSON. A 1 MiB gzip body that
inflates to 1 GiB (HTTP), and a gRPC message that grpc's gzip shrinks to ~130 KiB but
inflates to 128 MiB, are refused with the sidecar's RSS growing less than limit + 10 %.
(The existing receiver test covers the same on an in-process HTTP receiver with a
small limit: tests/integration/sidecar/test_sidecar_receivers.py.)
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import zlib

import grpc
import pytest
from google.protobuf import json_format

from driftcar.sidecar.config import SidecarConfig
from tests.reliability.harness import MiB, RawGrpc, RssSampler, Sidecar, http_post
from tests.support.waiting import wait_until
from tests.unit.sidecar.batches import inference_body, numeric_frame, record, request

pytestmark = pytest.mark.timeout(120)
LIMIT = SidecarConfig().max_request_bytes
BODY = inference_body(numeric_frame(10))


@functools.lru_cache(maxsize=3)
def proto_of_size(n: int) -> bytes:
    """A valid request of exactly ``n`` serialized bytes (padding in a resource attribute)."""
    def build(pad: int, extra: int) -> bytes:
        resource = {"service.name": "s" * (1 + extra), "pad": "p" * pad}
        return request(record(BODY), resource=resource).SerializeToString()

    for extra in range(4):  # nested length prefixes grow in steps: a second knob fills the gaps
        pad = max(0, n - len(build(0, extra)))
        for _ in range(6):  # converges in a step or two: the size is the pad plus slowly growing prefixes
            data = build(pad, extra)
            if len(data) == n:
                return data
            pad += n - len(data)
            if pad < 0:
                break
    raise AssertionError(f"no request of exactly {n} bytes")


@functools.lru_cache(maxsize=3)
def json_of_size(n: int) -> bytes:
    doc = json_format.MessageToDict(request(record(BODY), resource={"service.name": "s", "pad": ""}))
    attrs = doc["resourceLogs"][0]["resource"]["attributes"]
    base = len(json.dumps(doc, separators=(",", ":")).encode())
    attrs[-1]["value"]["stringValue"] = "p" * (n - base)
    data = json.dumps(doc, separators=(",", ":")).encode()
    assert len(data) == n
    return data


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    with Sidecar(tmp_path_factory.mktemp("limits"), "--export", "none", "--window", "1h", probe=True) as process:
        yield process


CASES = [(-1, "accepted"), (0, "accepted"), (1, "refused")]


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_grpc_limit(sidecar, compressed):
    client = RawGrpc(sidecar.grpc_target)
    try:
        for delta, expected in CASES:
            reply = client.send(proto_of_size(LIMIT + delta), timeout=30,
                                compression=grpc.Compression.Gzip if compressed else None)
            assert reply.code == ("OK" if expected == "accepted" else "RESOURCE_EXHAUSTED"), (delta, reply)
    finally:
        client.close()


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_http_limit(sidecar, encoding, compressed):
    for delta, expected in CASES:
        data = proto_of_size(LIMIT + delta) if encoding == "protobuf" else json_of_size(LIMIT + delta)
        headers = {}
        if compressed:
            data, headers = gzip.compress(data, 1), {"Content-Encoding": "gzip"}
        reply = http_post(sidecar.ports["http"], data, f"application/{'x-protobuf' if encoding == 'protobuf' else 'json'}",
                          headers, timeout=30)
        assert reply.code == ("200" if expected == "accepted" else "413"), (delta, reply.code, reply.error, reply.body[:200])


def gzip_bomb(inflated: int) -> bytes:
    """gzip of ``inflated`` zero bytes, compressed chunk by chunk (never held inflated)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(MiB)
    parts = [compressor.compress(chunk) for _ in range(inflated // MiB)]
    parts.append(compressor.flush())
    return b"".join(parts)


def test_http_gzip_bomb_is_refused_with_bounded_memory(sidecar):
    bomb = gzip_bomb(1024 * MiB)
    assert len(bomb) <= 1.1 * MiB  # ~1 MiB on the wire
    before = sidecar.rss()
    with RssSampler(sidecar.proc.pid, interval=0.01) as rss:
        reply = http_post(sidecar.ports["http"], bomb, headers={"Content-Encoding": "gzip"}, timeout=60)
    assert reply.code == "413", (reply.code, reply.error)
    growth = rss.max - before
    print(f"\nHTTP 1 GiB gzip bomb: refused in {reply.seconds:.2f} s, RSS growth {growth / MiB:.1f} MiB "
          f"(limit {LIMIT / MiB:.0f} MiB)")
    assert growth < LIMIT * 1.1


def test_grpc_compressed_bomb_is_refused_with_bounded_memory(sidecar):
    message = bytes(128 * MiB)  # grpc compresses it on the wire; the sidecar must not inflate it all
    client = RawGrpc(sidecar.grpc_target)
    before = sidecar.rss()
    try:
        with RssSampler(sidecar.proc.pid, interval=0.01) as rss:
            reply = client.send(message, timeout=60, compression=grpc.Compression.Gzip)
    finally:
        client.close()
    del message
    assert reply.code == "RESOURCE_EXHAUSTED", reply
    growth = rss.max - before
    print(f"\ngRPC 128 MiB gzip message: refused in {reply.seconds:.2f} s, RSS growth {growth / MiB:.1f} MiB")
    assert growth < LIMIT * 1.1


def test_the_largest_valid_requests_do_not_stall_the_loop(tmp_path):
    """Requests at the limit are inflated in 1 MiB steps and parsed/validated off the event loop.

    What remains on the loop's thread at the limit is grpcio's receipt of a 32 MiB message
    (grpc.aio runs it there), and most of that is the kernel's: ~40 of ~50 ms here are page
    faults of the message's fresh pages, whose cost is the machine's (a new virtual machine
    faulting never-touched memory took ~240 ms once in CI). So the loop's own work (user
    mode) is held to 100 ms and the whole, kernel included, to 500 ms. OTLP/JSON with a
    multi-megabyte string also holds the GIL in protobuf's JSON parser (reported as ``own
    stall``, see README). Fuzz-sized inputs stay under 100 ms (test_fuzz.py).

    A sidecar of its own: the probe's maxima then cover these requests alone, not the refused
    ones and the bombs the module's other tests sent before (the check holds by itself, ``-k``,
    and whatever the order).
    """
    with Sidecar(tmp_path, "--export", "none", "--window", "1h", probe=True) as process:
        wait_until(lambda: os.path.exists(process.probe_path), 10, what="the loop probe's first figures")
        client = RawGrpc(process.grpc_target)
        try:
            for compression in (None, grpc.Compression.Gzip):
                assert client.send(proto_of_size(LIMIT), timeout=30, compression=compression).code == "OK"
        finally:
            client.close()
        for data, content_type in ((proto_of_size(LIMIT), "application/x-protobuf"),
                                   (json_of_size(LIMIT), "application/json")):
            assert http_post(process.ports["http"], data, content_type, timeout=30).code == "200"
            assert http_post(process.ports["http"], gzip.compress(data, 1), content_type, {"Content-Encoding": "gzip"},
                             timeout=30).code == "200"
        probe = process.fresh_probe()
    print(f"\nlimit-sized requests: loop max busy {probe['max_busy_s'] * 1000:.0f} ms "
          f"({probe['busiest_sys_s'] * 1000:.0f} ms of it in the kernel; the largest user-mode tick "
          f"{probe['max_busy_user_s'] * 1000:.0f} ms), own stall {probe['max_own_stall_s'] * 1000:.0f} ms, "
          f"max wall lag {probe['max_lag_s'] * 1000:.0f} ms")
    assert probe["max_busy_user_s"] < 0.1, probe
    assert probe["max_busy_s"] < 0.5, probe


def _multi_mb_json(records: int, rows: int = 1_000) -> bytes:
    """An OTLP/JSON request of ``records`` real batches (20 numeric + 5 str columns each)."""
    import numpy as np

    from driftcar.wire import Column, encode_batch

    rng = np.random.default_rng(5)
    cols = [Column(f"n{i}", "feature", rng.normal(size=rows)) for i in range(20)]
    cols += [Column(f"c{i}", "feature", [f"v{v}" for v in rng.integers(0, 8, rows)]) for i in range(5)]
    body = encode_batch("inference", cols)
    return json.dumps(json_format.MessageToDict(request(*[record(body) for _ in range(records)]))).encode()


def test_multi_megabyte_json_requests_never_stall_the_loop(tmp_path):
    """Several OTLP/JSON requests of ~7 MB each, 4 at once: parsed and decoded in the decode
    process, so the loop's own work never takes > 50 ms between two probe ticks, and the whole
    process (any thread holding the GIL) never stalls it > 100 ms.

    *Own stall* also counts a lag while another thread of the sidecar merely ran on the other
    core (the loop's thread waiting for a CPU on a shared machine), hence its wider bound;
    parsing on a thread, as before the decode process, gave ~165 ms here.
    """
    import concurrent.futures

    data = _multi_mb_json(30)
    assert len(data) > 5 * MiB
    with Sidecar(tmp_path, "--export", "none", "--window", "1h", probe=True) as process:
        wait_until(lambda: os.path.exists(process.probe_path), 10, what="the loop probe's first figures")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda _: http_post(process.ports["http"], data, "application/json", timeout=60),
                                    range(8)))
        assert [r.code for r in replies] == ["200"] * 8, [r.error or r.body[:200] for r in replies]
        wait_until(lambda: process.models().get(("m", "1"), {}).get("rows_total") == 8 * 30 * 1_000, 60,
                   what="every row of the JSON requests applied")
        probe = process.fresh_probe()
    print(f"\n8 x {len(data) / MiB:.1f} MiB OTLP/JSON, 4 at once: loop max busy {probe['max_busy_s'] * 1000:.0f} ms, "
          f"own stall {probe['max_own_stall_s'] * 1000:.0f} ms, max wall lag {probe['max_lag_s'] * 1000:.0f} ms "
          f"over {probe['samples']} probes")
    assert probe["max_busy_s"] < 0.05, probe
    assert probe["max_own_stall_s"] < 0.1, probe
