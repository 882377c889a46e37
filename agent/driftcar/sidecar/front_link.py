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

from driftcar._children import child_env
from driftcar.sidecar.config import Endpoint
from driftcar.sidecar.errors import IngestError
from driftcar.sidecar.front import ANSWER, DECODED, FAILED, HEADER, READY, REFUSED, error_from, error_tuple, \
    read_frame, write_frame
from driftcar.sidecar.ingest import MAX_ADMIT_WAITERS

__all__ = ["FrontLink", "START_TIMEOUT_S"]

log = logging.getLogger("driftcar.sidecar.front")
#: how long the front process may take to import and bind
START_TIMEOUT_S = 30.0


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
        reader, writer = await self._spawn(self.endpoint)
        self._task = asyncio.create_task(self._run(reader, writer), name="driftcar-grpc-front")

    async def _spawn(self, endpoint: Endpoint):
        here, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with child:
            self.proc = subprocess.Popen([sys.executable, "-m", "driftcar.sidecar.front", str(child.fileno()),
                                          str(os.getpid())], pass_fds=(child.fileno(),), env=child_env())
        settings = pickle.dumps(dict(self.settings, endpoint=endpoint))
        here.sendall(HEADER.pack(len(settings), 0, 0) + settings)
        reader, writer = await asyncio.open_unix_connection(sock=here, limit=2**20)
        try:
            _, kind, payload = await asyncio.wait_for(read_frame(reader), START_TIMEOUT_S)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError):
            self._kill()
            writer.close()
            raise OSError(f"the gRPC front process did not start (exit code {self.proc.poll()})") from None
        if kind != READY:
            writer.close()
            await asyncio.to_thread(self.proc.wait, 5)
            raise OSError(pickle.loads(payload) if kind == FAILED else f"unexpected frame {kind} from the gRPC front")
        self.port = pickle.loads(payload)
        log.info("OTLP/gRPC receiver in its own process (pid %d) on %s:%d", self.proc.pid, endpoint.host, self.port)
        return reader, writer

    async def _run(self, reader, writer) -> None:
        """Answer the front; when it dies unasked, start another on the same port (backing off)."""
        backoff = 0.5
        while True:
            started = time.monotonic()
            await self._serve(reader, writer)
            code = await asyncio.to_thread(self.proc.wait)
            if self._stopping:
                return
            backoff = 0.5 if time.monotonic() - started > 60 else backoff
            log.error("the gRPC front process exited (code %s); starting a new one in %.1f s (clients retry "
                      "meanwhile)", code, backoff)
            reader = None
            while reader is None:
                try:  # the back-off, cut short by stop()
                    await asyncio.wait_for(self._stopped.wait(), backoff)
                    return
                except asyncio.TimeoutError:
                    backoff = min(backoff * 2, 30.0)
                try:
                    reader, writer = await self._spawn(Endpoint(self.endpoint.host, self.port))
                except OSError as exc:
                    log.error("the gRPC front process could not be restarted: %s", exc)
            self.restarts += 1

    async def _serve(self, reader, writer) -> None:
        try:
            while True:
                rid, kind, payload = await read_frame(reader)
                if kind == DECODED:
                    self._decoded(writer, rid, payload)
                elif kind == REFUSED:
                    error = error_from(pickle.loads(payload))
                    self.ingestor.reject_request(error)
                    write_frame(writer, rid, ANSWER, pickle.dumps(error_tuple(error)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _decoded(self, writer, rid: int, payload: bytes) -> None:
        """Queue a decoded request as the single-process receiver does; answer at once when the queue
        has room (the common case, no task), else from a task that waits for room (``ingest_async``)."""
        ingestor = self.ingestor
        try:
            prepared = ingestor.prepare_decoded(pickle.loads(payload))
            result = ingestor.commit(prepared, last=ingestor.waiting >= MAX_ADMIT_WAITERS)
        except Exception as exc:
            return self._reply(writer, rid, exc)
        if result is not None:
            return self._reply(writer, rid, result)
        task = asyncio.create_task(self._admit(writer, rid, prepared))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _admit(self, writer, rid: int, prepared) -> None:
        try:
            self._reply(writer, rid, await self.ingestor.ingest_async(prepared))
        except Exception as exc:
            self._reply(writer, rid, exc)

    def _reply(self, writer, rid: int, answer) -> None:
        if isinstance(answer, Exception):
            if not isinstance(answer, IngestError):
                log.error("ingesting a request from the gRPC front failed", exc_info=answer)
                answer = IngestError("internal error")
            answer = error_tuple(answer)
        if not writer.is_closing():
            write_frame(writer, rid, ANSWER, pickle.dumps(answer))

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
