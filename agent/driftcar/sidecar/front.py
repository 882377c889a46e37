"""The gRPC front process: receives OTLP/gRPC, parses and decodes, hands decoded batches to the sidecar.

Why a second process: per 1,000-row request of 20 numeric + 5 str features, receiving (grpcio)
takes ~0.35 ms of CPU, parsing + decoding ~0.25 ms and applying to the state ~0.45 ms, all under
one GIL; ``np.histogram`` on the numeric columns takes ~0.68 ms, so one process is bounded at
~0.65x of it. Here the receiving and decoding run in this process and only the applying in the
sidecar's (``benchmarks/bench_sidecar.py --ingest`` measures both paths, ``grpc_front`` picks one).

What stays in the sidecar, so the answers are those of the single-process path: every count
(``driftcar.receiver.batches``), the model cap, the duplicate-batch memory, the queue and its
UNAVAILABLE + RetryInfo. This process runs the same :class:`~.receiver_grpc.GrpcReceiver` (token,
TLS, size limit, error translation) with a :class:`Relay` in place of the ``Ingestor``: a
request is answered success only once the sidecar has queued its batches.

Why ``grpc.aio`` and not a synchronous ``grpc.server``, although the latter alone receives for
13-33 % less CPU (``--grpc-floor-options``): a thread-pool front (8 or 3 handler threads, each
sending its frame with ``sendmsg`` and blocking on the sidecar's answer, handed to it by a reader
thread) used as much or more CPU per request than this one in 9 of 10 interleaved rounds (0.97-1.73
against 0.87-1.33 ms, ``bench_sidecar.py --front-link``): the hand-offs between threads and their
contention for the GIL ate the saving.

The link is a Unix socket pair, frames of (length, request id, kind) + a pickle; a decoded request
is pickled by :mod:`.handover` (its numpy arrays as raw bytes, not through numpy's reduce).
The process exits when the sidecar dies (``PR_SET_PDEATHSIG``) or closes the link, and stops
gracefully on SIGTERM (in-flight calls are answered first). :mod:`.front_link` starts it.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import signal
import socket
import struct
import sys

from driftcar.sidecar import decode_pool, errors, handover
from driftcar.sidecar.errors import BadRequest, IngestError

__all__ = ["Relay", "HEADER", "READY", "FAILED", "DECODED", "REFUSED", "ANSWER", "read_frame", "write_frame",
           "error_tuple", "error_from"]

log = logging.getLogger("driftcar.sidecar.front")

#: frame header: payload length, request id, kind
HEADER = struct.Struct("<IQB")
READY, FAILED, DECODED, REFUSED, ANSWER = range(5)


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """(request id, kind, payload); IncompleteReadError at the end of the link."""
    length, rid, kind = HEADER.unpack(await reader.readexactly(HEADER.size))
    return rid, kind, await reader.readexactly(length) if length else b""


def write_frame(writer: asyncio.StreamWriter, rid: int, kind: int, payload: bytes | memoryview = b"") -> None:
    writer.write(HEADER.pack(len(payload), rid, kind))
    if payload:
        writer.write(payload)


def error_tuple(error: IngestError) -> tuple[str, str, float | None]:
    """An error as plain values (an exception's pickle would lose ``retry_after_s``)."""
    return type(error).__name__, error.message, error.retry_after_s


def error_from(values: tuple[str, str, float | None]) -> IngestError:
    name, message, retry_after_s = values
    cls = getattr(errors, name)
    return cls(message, retry_after_s) if issubclass(cls, errors.Overloaded) else cls(message)


class Relay:
    """What :class:`~.receiver_grpc.GrpcReceiver` calls on an ``Ingestor``, answered by the sidecar."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limits):
        self.reader = reader
        self.writer = writer
        self.limits = limits
        self._waiting: dict[int, asyncio.Future] = {}
        self._next = 0

    async def _ask(self, kind: int, payload: bytes | memoryview, framed: bool = False):
        """Send a frame, wait for its answer. ``framed``: ``payload`` starts with room for the header,
        written there, so that the frame is one write. Why: written apart, the header alone woke the
        sidecar's loop for a read of 13 bytes before the payload came (one more wake-up and read per
        request in each process)."""
        self._next += 1
        rid = self._next
        answer = asyncio.get_running_loop().create_future()
        self._waiting[rid] = answer
        if framed:
            HEADER.pack_into(payload, 0, len(payload) - HEADER.size, rid, kind)
            self.writer.write(payload)
        else:
            write_frame(self.writer, rid, kind, payload)
        await self.writer.drain()
        reply = await answer
        if isinstance(reply, tuple):
            raise error_from(reply)
        return reply

    async def refuse(self, error: IngestError):
        """Counted by the sidecar as one rejected request, then raised."""
        await self._ask(REFUSED, pickle.dumps(error_tuple(error)))
        raise error

    async def ingest_body(self, data: bytes, as_json: bool):
        try:
            decoded = await decode_pool.decode(data, as_json, self.limits)
        except BadRequest as exc:
            await self.refuse(exc)
        return await self._ask(DECODED, handover.encode(decoded, head=HEADER.size), framed=True)

    async def answers(self) -> None:
        """Resolve waiting requests with the sidecar's answers until the link closes."""
        try:
            while True:
                rid, _, payload = await read_frame(self.reader)
                answer = self._waiting.pop(rid, None)
                if answer is not None and not answer.done():
                    answer.set_result(pickle.loads(payload))
        except (asyncio.IncompleteReadError, ConnectionError):
            for answer in self._waiting.values():
                if not answer.done():
                    answer.set_result(error_tuple(errors.ShuttingDown("sidecar is not answering; retry later")))


async def _serve(sock: socket.socket, settings: dict) -> None:
    from driftcar.sidecar.receiver_grpc import GrpcReceiver
    from driftcar.sidecar.security import grpc_server_credentials

    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**20)
    relay = Relay(reader, writer, settings["limits"])
    receiver = GrpcReceiver(settings["endpoint"], relay, settings["auth"],
                            max_request_bytes=settings["max_request_bytes"],
                            credentials=grpc_server_credentials(settings["tls"]))
    try:
        await receiver.start()
    except Exception as exc:
        write_frame(writer, 0, FAILED, pickle.dumps(f"{type(exc).__name__}: {exc}"))
        await writer.drain()
        return
    write_frame(writer, 0, READY, pickle.dumps(receiver.port))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    answers = asyncio.create_task(relay.answers())
    await asyncio.wait([answers, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    await receiver.stop(settings["grace_s"] if stop.is_set() else 0)  # the link still answers in-flight calls
    writer.close()


def main(fd: int, parent: int) -> None:
    from driftcar._children import die_with_parent
    from driftcar.sidecar.ingest import keep_heap

    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the sidecar stops us
    sock = socket.socket(fileno=fd)
    length, _, _ = HEADER.unpack(sock.recv(HEADER.size, socket.MSG_WAITALL))
    settings = pickle.loads(sock.recv(length, socket.MSG_WAITALL))
    logging.basicConfig(level=settings["log_level"].upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    keep_heap()  # as the ingest worker: decoding's temporaries stay in the heap
    asyncio.run(_serve(sock, settings))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
