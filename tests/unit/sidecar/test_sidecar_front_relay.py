"""The gRPC front's side of the link (:class:`driftcar.sidecar.front.SyncRelay`): a frame goes out whole
however the socket takes it, each handler thread gets its own answer, a closed link fails every wait.

The sidecar's end is played by this test over a real Unix socket pair."""

from __future__ import annotations

import concurrent.futures
import os
import pickle
import socket
import threading

import numpy as np
import pytest

from driftcar.sidecar import handover
from driftcar.sidecar.errors import Overloaded, ShuttingDown, TooLarge
from driftcar.sidecar.front import ANSWER, DECODED, HEADER, REFUSED, SyncRelay, _send, error_tuple
from driftcar.sidecar.ingest import IngestResult
from driftcar.wire import DEFAULT_LIMITS

from tests.unit.sidecar.batches import inference_body, record, request


def _read(sock: socket.socket) -> tuple[int, int, bytes]:
    length, rid, kind = HEADER.unpack(sock.recv(HEADER.size, socket.MSG_WAITALL))
    return rid, kind, sock.recv(length, socket.MSG_WAITALL) if length else b""


def _answer(sock: socket.socket, rid: int, value) -> None:
    payload = pickle.dumps(value)
    sock.sendall(HEADER.pack(len(payload), rid, ANSWER) + payload)


@pytest.fixture
def link():
    front, sidecar = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sidecar.settimeout(10)
    relay = SyncRelay(front, DEFAULT_LIMITS)
    reader = threading.Thread(target=relay.answers, daemon=True)
    reader.start()
    yield relay, sidecar
    sidecar.close()
    reader.join(5)
    front.close()


def test_send_resumes_partial_sends():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # every sendmsg takes only part
    b.settimeout(10)  # (a lost piece would leave the read waiting)
    pieces = [os.urandom(n) for n in (1, 70_000, 3, 250_000, 0, 12)]
    with a, b, concurrent.futures.ThreadPoolExecutor(1) as pool:
        sending = pool.submit(_send, a, [pieces[0], memoryview(np.frombuffer(pieces[1], np.uint8)), *pieces[2:]])
        got = b.recv(sum(map(len, pieces)), socket.MSG_WAITALL)
        sending.result(10)
    assert got == b"".join(pieces)


def test_each_thread_gets_its_own_answer(link):
    relay, sidecar = link
    body = request(record(inference_body({"x": np.arange(30.0)}))).SerializeToString()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        asked = [pool.submit(relay.export, body) for _ in range(3)]
        frames = [_read(sidecar) for _ in range(3)]
        for rid, kind, payload in reversed(frames):  # answered out of order
            assert kind == DECODED
            decoded = handover.decode(bytearray(payload))
            assert decoded.items[0].batch.columns["x"].tolist() == list(range(30))
            _answer(sidecar, rid, IngestResult(accepted=rid))
        results = [f.result(10) for f in asked]
    assert sorted(r.accepted for r in results) == sorted(rid for rid, _, _ in frames)


def test_an_error_answer_is_raised_with_its_retry_hint(link):
    relay, sidecar = link
    body = request(record(inference_body({"x": np.arange(3.0)}))).SerializeToString()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        asked = pool.submit(relay.export, body)
        rid, _, _ = _read(sidecar)
        _answer(sidecar, rid, error_tuple(Overloaded("queue full", 1.5)))
        with pytest.raises(Overloaded) as info:
            asked.result(10)
    assert info.value.retry_after_s == 1.5


def test_a_refusal_is_counted_by_the_sidecar_then_raised(link):
    relay, sidecar = link
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        asked = pool.submit(relay.refuse, TooLarge("too big"))
        rid, kind, payload = _read(sidecar)
        assert kind == REFUSED and pickle.loads(payload)[:2] == ("TooLarge", "too big")
        _answer(sidecar, rid, None)
        with pytest.raises(TooLarge):
            asked.result(10)


def test_a_closed_link_fails_the_waiting_and_the_later_requests(link):
    relay, sidecar = link
    body = request(record(inference_body({"x": np.arange(3.0)}))).SerializeToString()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        asked = pool.submit(relay.export, body)
        _read(sidecar)
        sidecar.close()
        with pytest.raises(ShuttingDown):
            asked.result(10)
    assert relay.closed.wait(10)
    with pytest.raises(ShuttingDown):
        relay.export(body)
