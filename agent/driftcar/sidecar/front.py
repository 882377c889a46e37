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

The link is a Unix socket pair, frames of (length, request id, kind) + a payload: a decoded request
as :mod:`.handover` lays it out (a small pickle, the numpy columns' memory as it is; ~0.05 ms here
and ~0.15 ms in the sidecar per such request, against ~0.15 / ~0.2 ms for a plain pickle, which
pays numpy's reduce per array), anything else as a pickle.
The process exits when the sidecar dies (``PR_SET_PDEATHSIG``) or closes the link, and stops
gracefully on SIGTERM (in-flight calls are answered first). :mod:`.front_link` starts it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import pickle
import signal
import socket
import struct
import sys
import threading

from driftcar.sidecar import errors, handover
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


def write_frame(writer: asyncio.StreamWriter, rid: int, kind: int, payload: bytes = b"") -> None:
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

    async def _ask(self, kind: int, payload: bytes, pieces: tuple[list, int] | None = None):
        self._next += 1
        rid = self._next
        answer = asyncio.get_running_loop().create_future()
        self._waiting[rid] = answer
        if pieces is None:
            write_frame(self.writer, rid, kind, payload)
        else:  # one write: the transport sends at once what the socket takes and keeps the rest in one copy
            self.writer.write(b"".join([HEADER.pack(pieces[1], rid, kind), *pieces[0]]))
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
        from driftcar.sidecar import decode_pool

        try:
            decoded = await decode_pool.decode(data, as_json, self.limits)
        except BadRequest as exc:
            await self.refuse(exc)
        return await self._ask(DECODED, b"", handover.encode(decoded))

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


#: the front's gRPC handler threads: requests beyond wait in grpcio's queue (each thread blocks
#: on the sidecar's answer, which waits up to ``ingest.ADMIT_WAIT_S`` for room in a full queue)
THREADS = int(os.environ.get("DCTHREADS", "8"))


def _send(sock: socket.socket, pieces: list) -> None:
    """All of ``pieces`` with ``sendmsg`` (gathered by the kernel, no join here), partial sends resumed."""
    views = [memoryview(p) for p in pieces]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= views[0].nbytes:
            sent -= views[0].nbytes
            views.pop(0)
        if sent:
            views[0] = views[0][sent:]


class SyncRelay:
    """The link for a thread-pool gRPC server: a handler thread sends its request's frame and blocks
    until the sidecar's answer, which one reader thread (:meth:`answers`) hands to it."""

    def __init__(self, sock: socket.socket, limits):
        self.sock = sock
        self.limits = limits
        self.closed = threading.Event()
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._waiting: dict[int, concurrent.futures.Future] = {}
        self._ids = itertools.count(1)

    def ask(self, kind: int, pieces: list, total: int):
        rid = next(self._ids)
        answer: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self.closed.is_set():
                raise errors.ShuttingDown("sidecar is not answering; retry later")
            self._waiting[rid] = answer
        try:
            with self._send_lock:
                _send(self.sock, [HEADER.pack(total, rid, kind), *pieces])
        except OSError:
            pass  # the link is gone: answers() fails every waiting request
        reply = answer.result()
        if isinstance(reply, tuple):
            raise error_from(reply)
        return reply

    def refuse(self, error: IngestError):
        """Counted by the sidecar as one rejected request, then raised."""
        payload = pickle.dumps(error_tuple(error))
        self.ask(REFUSED, [payload], len(payload))
        raise error

    def export(self, data: bytes):
        from driftcar.sidecar.decode_pool import decode_inline  # a handler thread: decode here, off nothing

        try:
            decoded = decode_inline(data, False, self.limits)
        except BadRequest as exc:
            self.refuse(exc)
        return self.ask(DECODED, *handover.encode(decoded))

    def answers(self) -> None:
        """Hand the sidecar's answers to the waiting threads until the link closes (a thread of its own)."""
        head = bytearray(HEADER.size)
        try:
            while True:
                if self.sock.recv_into(head, HEADER.size, socket.MSG_WAITALL) < HEADER.size:
                    break
                length, rid, _ = HEADER.unpack(head)
                payload = self.sock.recv(length, socket.MSG_WAITALL) if length else b""
                if len(payload) < length:
                    break
                with self._lock:
                    answer = self._waiting.pop(rid, None)
                if answer is not None:
                    answer.set_result(pickle.loads(payload))
        except OSError:
            pass
        with self._lock:
            self.closed.set()
            waiting, self._waiting = self._waiting, {}
        for answer in waiting.values():
            answer.set_result(error_tuple(errors.ShuttingDown("sidecar is not answering; retry later")))


def _handler(relay: SyncRelay, settings: dict):
    """LogsService/Export as :class:`~.receiver_grpc.GrpcReceiver` answers it (token, size, errors)."""
    import grpc
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsPartialSuccess, \
        ExportLogsServiceResponse

    from driftcar.sidecar.errors import TooLarge, Unauthenticated, grpc_status
    from driftcar.sidecar.receiver_grpc import METHOD, SERVICE

    auth, limit = settings["auth"], settings["max_request_bytes"]

    def export(data: bytes, context) -> ExportLogsServiceResponse:
        try:
            if auth.enabled:
                header = next((v for k, v in context.invocation_metadata() or () if k == "authorization"), None)
                if not auth.check(header):
                    raise Unauthenticated("missing or invalid bearer token")
            if len(data) > limit:
                relay.refuse(TooLarge(f"request of {len(data)} bytes exceeds the limit of {limit}"))
            result = relay.export(data)
        except IngestError as error:
            code, details, trailers = grpc_status(error)
            context.set_trailing_metadata(trailers)
            context.abort(code, details)
        response = ExportLogsServiceResponse()
        if result.rejected:
            response.partial_success.CopyFrom(
                ExportLogsPartialSuccess(rejected_log_records=result.rejected, error_message=result.message))
        return response

    return grpc.method_handlers_generic_handler(SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(
        export, request_deserializer=None, response_serializer=ExportLogsServiceResponse.SerializeToString)})


def _serve_sync(sock: socket.socket, settings: dict) -> None:
    """A synchronous ``grpc.server`` (why: see the module's docstring) relaying to the sidecar."""
    import grpc

    from driftcar.sidecar.security import grpc_server_credentials

    relay = SyncRelay(sock, settings["limits"])
    endpoint, credentials = settings["endpoint"], grpc_server_credentials(settings["tls"])
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(THREADS, thread_name_prefix="driftcar-front"),
                         handlers=(_handler(relay, settings),), options=[
                             ("grpc.max_receive_message_length", settings["max_request_bytes"]),
                             ("grpc.max_send_message_length", 4 * 1024 * 1024), ("grpc.so_reuseport", 0)])
    try:
        port = (server.add_secure_port(str(endpoint), credentials) if credentials is not None
                else server.add_insecure_port(str(endpoint)))
        if not port:
            raise OSError(f"cannot bind the gRPC receiver to {endpoint}")
        server.start()
    except Exception as exc:
        payload = pickle.dumps(f"{type(exc).__name__}: {exc}")
        _send(sock, [HEADER.pack(len(payload), 0, FAILED), payload])
        return
    payload = pickle.dumps(port)
    _send(sock, [HEADER.pack(len(payload), 0, READY), payload])
    log.info("OTLP/gRPC receiver listening on %s:%d%s", endpoint.host, port, " (TLS)" if credentials else "")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (relay.answers(), stop.set()), name="driftcar-front-answers", daemon=True).start()
    while not stop.wait(1.0):  # (a timed wait: the signal handler runs between waits)
        pass
    # SIGTERM: calls in flight get the grace period (the link still answers them); a closed link: none
    server.stop(0 if relay.closed.is_set() else settings["grace_s"]).wait()
    sock.close()


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
    if os.environ.get("DCFRONT", "sync") == "sync":
        _serve_sync(sock, settings)
    else:
        asyncio.run(_serve(sock, settings))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
