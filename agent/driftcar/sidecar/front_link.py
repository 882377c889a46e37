"""The sidecar's side of the gRPC front process (:mod:`.front`): start it, answer it, restart it.

Each decoded request from the front goes through the sidecar's own ``Ingestor``
(``prepare_decoded`` + ``ingest_async``: model cap, duplicates, queue, counts) and its answer
(an ``IngestResult`` or the error) goes back; a request the front could not read is counted here
as rejected. So the receiver's answers and metrics are those of the single-process path.

Lifecycle: :meth:`FrontLink.start` waits until the front listens (its bind error is this start's
error); :meth:`FrontLink.stop` sends it SIGTERM (it stops taking calls, answers those in flight
within the grace period, exits) and waits. The front dies with the sidecar (``PR_SET_PDEATHSIG``
and the link's end). If the front dies while the sidecar runs, the sidecar logs an error and
starts a new one on the same port, backing off (0.5 s doubling to 30 s) when it keeps dying: its
clients see refused connections or UNAVAILABLE for a moment and retry, and a batch the sidecar
had queued before the crash is recognised by its ``driftcar.batch.id`` when it comes again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time

import numpy as np

from driftcar._children import child_env
from driftcar.sidecar.config import Endpoint
from driftcar.sidecar.errors import IngestError
from driftcar.sidecar import handover
from driftcar.sidecar.front import ANSWER, DECODED, FAILED, HEADER, READY, REFUSED, error_from, error_tuple
from driftcar.sidecar.ingest import MAX_ADMIT_WAITERS

__all__ = ["FrontLink", "Frames", "START_TIMEOUT_S", "MAX_FRAME_BYTES"]

log = logging.getLogger("driftcar.sidecar.front")
#: how long the front process may take to import and bind
START_TIMEOUT_S = 30.0
#: a frame from the front longer than this is refused (the link is closed, the front restarted): a decoded
#: request is at most a few times its body, which ``max_request_bytes`` bounds
MAX_FRAME_BYTES = 2**31
#: the read buffer's size, and its room beyond the largest frame (:class:`Frames`)
SLACK = 256 * 1024


class Frames(asyncio.BufferedProtocol):
    """The front's frames, handed to ``on_frame(transport, request id, kind, payload)`` as each completes;
    ``payload`` is a view of the read buffer, valid during the call only (the buffer is read into again).

    The kernel writes straight into one buffer, as much as the socket holds, so one read (one wake-up
    of the loop) may take several frames; a frame reaching past the buffer's end moves to its start
    (or to a larger buffer: the largest frame + :data:`SLACK`, given back after a large one).

    Why not an ``asyncio.StreamReader``: it copies what arrives into its buffer and again out of it
    (~180 KB per 1,000-row request of 20 numeric + 5 str columns) and wakes a reading task per frame.
    """

    def __init__(self, on_frame):
        self.on_frame = on_frame
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._buffer = self._new(SLACK)
        self._start = self._end = 0  # the unread part of the buffer: [start, end)

    @staticmethod
    def _new(size: int) -> memoryview:
        # uninitialised (np.empty), not zeroed (bytearray): every byte is written by a read before use
        return memoryview(np.empty(size, np.uint8)).cast("B")

    def connection_made(self, transport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._start == self._end:  # everything read was handled: start again at the beginning
            self._start = self._end = 0
            if len(self._buffer) > 4 * SLACK:  # (after a large frame)
                self._buffer = self._new(SLACK)
        elif self._end == len(self._buffer):
            self._move(0)
        return self._buffer[self._end:]

    def _move(self, size: int) -> None:
        """The unread part to the start of a buffer with room for ``size`` bytes + SLACK."""
        unread = self._end - self._start
        if len(self._buffer) < size + SLACK:
            buffer = self._new(size + SLACK)
            buffer[:unread] = self._buffer[self._start: self._end]
            self._buffer = buffer
        else:
            self._buffer[:unread] = self._buffer[self._start: self._end]  # (memoryview copies with memmove)
        self._start, self._end = 0, unread

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes
        while self._end - self._start >= HEADER.size:
            length, rid, kind = HEADER.unpack_from(self._buffer, self._start)
            if length > MAX_FRAME_BYTES:
                log.error("the gRPC front sent a frame of %d bytes; closing the link (it restarts)", length)
                self.transport.close()
                return
            size = HEADER.size + length
            if self._end - self._start < size:
                if len(self._buffer) - self._start < size:
                    self._move(size)
                return
            payload = self._buffer[self._start + HEADER.size: self._start + size]
            self._start += size
            self.on_frame(self.transport, rid, kind, payload)

    def connection_lost(self, exc) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


class FrontLink:
    """The gRPC receiver as a separate process; the same ``start`` / ``stop`` / ``port`` as ``GrpcReceiver``."""

    def __init__(self, endpoint: Endpoint, ingestor, settings: dict):
        self.endpoint = endpoint
        self.ingestor = ingestor
        self.settings = settings  # auth, tls, limits, max_request_bytes, log_level, grace_s (to the front)
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._stopping = False
        self._stopped = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()

    async def start(self) -> None:
        link, frames = await self._spawn(self.endpoint)
        self._task = asyncio.create_task(self._run(link, frames), name="driftcar-grpc-front")

    async def _spawn(self, endpoint: Endpoint):
        here, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with child:
            self.proc = subprocess.Popen([sys.executable, "-m", "driftcar.sidecar.front", str(child.fileno()),
                                          str(os.getpid())], pass_fds=(child.fileno(),), env=child_env())
        settings = pickle.dumps(dict(self.settings, endpoint=endpoint))
        here.sendall(HEADER.pack(len(settings), 0, 0) + settings)
        here.setblocking(False)
        first = asyncio.get_running_loop().create_future()

        def first_frame(link, rid: int, kind: int, payload) -> None:  # READY with the port, or FAILED
            link.get_protocol().on_frame = self._frame  # every later frame goes straight to the ingest path
            first.set_result((kind, bytes(payload)))

        link, frames = await asyncio.get_running_loop().create_unix_connection(lambda: Frames(first_frame), sock=here)
        await asyncio.wait((first, frames.closed), timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if not first.done():
            self._kill()
            link.close()
            raise OSError(f"the gRPC front process did not start (exit code {self.proc.poll()})")
        kind, payload = first.result()
        if kind != READY:
            link.close()
            await asyncio.to_thread(self.proc.wait, 5)
            raise OSError(pickle.loads(payload) if kind == FAILED else f"unexpected frame {kind} from the gRPC front")
        self.port = pickle.loads(payload)
        log.info("OTLP/gRPC receiver in its own process (pid %d) on %s:%d", self.proc.pid, endpoint.host, self.port)
        return link, frames

    async def _run(self, transport, frames) -> None:
        """Answer the front; when it dies unasked, start another on the same port (backing off)."""
        backoff = 0.5
        while True:
            started = time.monotonic()
            await frames.closed  # every frame is answered by ``_frame`` as it arrives
            transport.close()
            code = await asyncio.to_thread(self.proc.wait)
            if self._stopping:
                return
            backoff = 0.5 if time.monotonic() - started > 60 else backoff
            log.error("the gRPC front process exited (code %s); starting a new one in %.1f s (clients retry "
                      "meanwhile)", code, backoff)
            frames = None
            while frames is None:
                try:  # the back-off, cut short by stop()
                    await asyncio.wait_for(self._stopped.wait(), backoff)
                    return
                except asyncio.TimeoutError:
                    backoff = min(backoff * 2, 30.0)
                try:
                    transport, frames = await self._spawn(Endpoint(self.endpoint.host, self.port))
                except OSError as exc:
                    log.error("the gRPC front process could not be restarted: %s", exc)
            self.restarts += 1

    def _frame(self, link, rid: int, kind: int, payload) -> None:
        if kind == DECODED:
            self._decoded(link, rid, payload)
        elif kind == REFUSED:
            error = error_from(pickle.loads(payload))
            self.ingestor.reject_request(error)
            self._reply(link, rid, error)
        else:
            log.error("the gRPC front sent a frame of unknown kind %d; closing the link (it restarts)", kind)
            link.close()

    def _decoded(self, link, rid: int, payload: bytearray) -> None:
        """Queue a decoded request as the single-process receiver does; answer at once when the queue
        has room (the common case, no task), else from a task that waits for room (``ingest_async``)."""
        ingestor = self.ingestor
        try:
            prepared = ingestor.prepare_decoded(handover.decode(payload))
            result = ingestor.commit(prepared, last=ingestor.waiting >= MAX_ADMIT_WAITERS)
        except Exception as exc:
            return self._reply(link, rid, exc)
        if result is not None:
            return self._reply(link, rid, result)
        task = asyncio.create_task(self._admit(link, rid, prepared))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _admit(self, link, rid: int, prepared) -> None:
        try:
            self._reply(link, rid, await self.ingestor.ingest_async(prepared))
        except Exception as exc:
            self._reply(link, rid, exc)

    def _reply(self, link, rid: int, answer) -> None:
        if isinstance(answer, Exception):
            if not isinstance(answer, IngestError):
                log.error("ingesting a request from the gRPC front failed", exc_info=answer)
                answer = IngestError("internal error")
            answer = error_tuple(answer)
        if not link.is_closing():
            payload = pickle.dumps(answer)
            link.write(HEADER.pack(len(payload), rid, ANSWER) + payload)

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    async def stop(self, grace_s: float = 2.0) -> None:
        """SIGTERM the front (it answers calls in flight within ``grace_s``), wait for it, kill it after."""
        self._stopping = True
        self._stopped.set()
        while self.proc is not None:
            proc = self.proc
            if grace_s <= 0:
                self._kill()
            elif proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), grace_s + 3.0)
            except asyncio.TimeoutError:
                log.warning("the gRPC front process did not stop in time; killing it")
                self._kill()
                await asyncio.to_thread(proc.wait, 5)
            if self.proc is proc:  # else a restart was under way: stop the new one too
                break
        if self._task is not None:
            await asyncio.wait_for(self._task, 5.0)
