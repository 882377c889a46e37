"""OTLP/gRPC log export of pre-serialized requests over one channel.

The request is serialized once by the shipper (its size is what the byte cap
checks), so the channel's method is registered without a serializer and sends
those bytes as they are. The channel is created lazily on the worker thread,
once the endpoint has answered an HTTP/2 handshake (:meth:`GrpcExporter.ready`:
a black-holed endpoint never gets a channel), and never crosses a fork (the
shipper builds a new exporter in the child).

Status mapping (OTLP specification, "Failures"): CANCELLED, DEADLINE_EXCEEDED,
ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are retryable;
RESOURCE_EXHAUSTED only when the server sent ``google.rpc.RetryInfo`` (in the
``grpc-status-details-bin`` trailer); every other code is permanent.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from typing import Mapping

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from driftcar.hook.shipping.retry import Outcome
from driftcar.wire.otlp_status import grpc_is_retryable, retry_delay_from_metadata

__all__ = ["GrpcExporter", "EXPORT_METHOD", "retry_delay_from_metadata"]

EXPORT_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
#: answers meaning "the endpoint is not there": the channel is closed until the next attempt
_UNREACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def _unreachable(err: grpc.RpcError) -> bool:
    """True when the attempt never reached a server (refused or black-holed), not when a server
    answered UNAVAILABLE (an overloaded sidecar does, with RetryInfo): only then is the channel
    dropped, so a reachable endpoint keeps its connection through back-off retries."""
    code = _code(err)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return True
    details = err.details() if callable(getattr(err, "details", None)) else ""
    return code in _UNREACHABLE and "failed to connect" in (details or "").lower()


#: gRPC reads ``grpc.min_reconnect_backoff_ms`` as the least time a connection attempt is given
#: (its MIN_CONNECT_TIMEOUT, doc/connection-backoff.md). At 250 ms a TCP + TLS + HTTP/2 handshake
#: over a ~80 ms round trip would time out every time (the channel is reopened per unreachable
#: attempt, so no attempt ever got longer). A channel's attempt to an endpoint that stops answering
#: ends after this long; the handshake's TCP connect (``ready``) gets the same.
MIN_CONNECT_TIMEOUT_MS = 1_000
#: upper bound of the channel's reconnect back-off: a recovered endpoint is used again within this
MAX_RECONNECT_BACKOFF_MS = 2_000


#: environment variables that route gRPC through a proxy: a direct connect then says nothing
_PROXY_ENV = ("grpc_proxy", "https_proxy", "http_proxy", "GRPC_PROXY", "HTTPS_PROXY", "HTTP_PROXY")


def _tcp_address(target: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port``) as a socket address; None for any other target form.

    >>> _tcp_address("127.0.0.1:4317"), _tcp_address("[::1]:4317"), _tcp_address("unix:/tmp/s")
    (('127.0.0.1', 4317), ('::1', 4317), None)
    """
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or "/" in host:
        return None
    return host.strip("[]"), int(port)


#: what a client sends first on an HTTP/2 connection (RFC 9113, 3.4): the preface and an empty SETTINGS frame
_CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes((0, 0, 0, 4, 0, 0, 0, 0, 0))
#: the frame type every HTTP/2 server sends first (RFC 9113, 3.4: its connection preface)
_SETTINGS = 4


class NotHttp2(ConnectionError):
    """The endpoint answered the handshake with something other than HTTP/2."""


def _code(err: grpc.RpcError) -> grpc.StatusCode | None:
    try:
        return err.code()
    except Exception:
        return None


class GrpcExporter:
    """One lazily created channel and Export method; see :class:`~driftcar.hook.shipping.retry.Exporter`.

    ``export`` blocks at most ``timeout_s`` (the gRPC deadline); ``abort``
    cancels the call in flight from any other thread.
    """

    def __init__(self, target: str, *, secure: bool = False, headers: Mapping[str, str] | None = None, gzip: bool = True,
                 ca_file: str | None = None):
        self.target = target
        self.secure = secure
        self.ca_file = ca_file
        self.metadata = tuple((k.lower(), v) for k, v in (headers or {}).items())
        self.compression = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression
        self._channel: grpc.Channel | None = None
        self._method = None
        self._lock = threading.Lock()
        self._calling = False  # a call is in flight on self._channel
        self._aborted = False  # ... and was cancelled by abort() or close()
        self._closed = False
        self._probe: socket.socket | None = None  # the handshake's socket while it waits (ready)

    def _ensure(self):
        if self._method is None:
            # gRPC's own reconnect back-off grows to 120 s while the endpoint is down: after a 2-minute
            # outage the hook then kept failing for ~1 minute after the sidecar was back (found by the
            # reliability outage check). Our retry loop already paces attempts; cap the channel's.
            options = [("grpc.max_send_message_length", -1), ("grpc.enable_retries", 0),
                       ("grpc.initial_reconnect_backoff_ms", 250),
                       ("grpc.min_reconnect_backoff_ms", MIN_CONNECT_TIMEOUT_MS),
                       ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS)]
            if self.secure:
                roots = None
                if self.ca_file:
                    with open(self.ca_file, "rb") as f:
                        roots = f.read()
                channel = grpc.secure_channel(self.target, grpc.ssl_channel_credentials(roots), options=options)
            else:
                channel = grpc.insecure_channel(self.target, options=options)
            self._channel = channel
            self._method = channel.unary_unary(
                EXPORT_METHOD, request_serializer=None, response_deserializer=ExportLogsServiceResponse.FromString
            )
        return self._method

    def ready(self, timeout_s: float) -> Outcome | None:
        """Before a channel is opened (the first export, and each one after an attempt found the
        endpoint unreachable): None once the endpoint has answered an HTTP/2 handshake (or this
        cannot tell: a proxy, a target that is not ``host:port``), else the failed attempt's outcome
        (nothing was sent). With a channel open, None at once: the export says how it goes.

        Why: the shipper asks this before it converts and encodes a batch, so an outage costs a
        connect per attempt, not a batch's conversion and encoding for a request that cannot leave,
        and no channel (nor gRPC's connection machinery) exists until the endpoint answers. Why a
        handshake and not a TCP connect: a black-holed endpoint accepts connections, and a channel's
        call to it waits in gRPC's blocking loop, which takes the GIL every 200 ms to check for
        signals; beside a model thread calling ``predict`` flat out each of those waits for the GIL
        until the model pauses, woken at every release of it (a GIL convoy: over 5 s the worker woke
        46,281 times and used 0.37 s of CPU; with the handshake 1,954 and 0.01 s, ``python
        benchmarks/outage_threads.py --protocol grpc --endpoint hole``; an uninstrumented model in
        the same process paid 1.12x its CPU before, 0.99x after, ``bench_hookproc``). The handshake
        waits in the kernel, as an OTLP/HTTP attempt does, and wakes once: answered or timed out.
        """
        with self._lock:
            if self._closed:
                return Outcome.permanent("exporter closed")
            if self._method is not None:
                return None
        address = _tcp_address(self.target)
        if address is None or any(os.environ.get(name) for name in _PROXY_ENV):
            return None
        try:
            self._handshake(address, max(timeout_s, 0.001))
        except OSError as exc:  # timeouts included
            if self._settle():
                return Outcome.permanent("export cancelled by shutdown")
            if isinstance(exc, (socket.timeout, TimeoutError)):
                return Outcome.retry("grpc handshake timeout", detail=str(exc) or "no HTTP/2 answer before the deadline")
            if isinstance(exc, NotHttp2):
                return Outcome.retry("grpc endpoint not HTTP/2", detail=str(exc))
            return Outcome.retry(f"grpc connect {type(exc).__name__}", detail=str(exc))
        self._settle()
        return None

    def _handshake(self, address: tuple[str, int], timeout_s: float) -> None:
        """Returns once the server at ``address`` has begun an HTTP/2 connection (its first frame, a
        SETTINGS frame, has arrived) within ``timeout_s``; raises ``TimeoutError`` if it stays silent
        and ``OSError`` if it refuses, closes, or answers something other than HTTP/2.

        The connect gets at most :data:`MIN_CONNECT_TIMEOUT_MS`, as a channel's attempt would; the
        wait for the answer the rest, and :meth:`abort` ends it at once. Over TLS the certificate is
        not checked: nothing but the preface is sent, and the channel that carries data checks it.
        """
        deadline = time.monotonic() + timeout_s

        def left() -> float:
            return max(deadline - time.monotonic(), 0.001)

        sock = socket.create_connection(address, timeout=min(timeout_s, MIN_CONNECT_TIMEOUT_MS / 1000))
        try:
            if self.secure:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                context.set_alpn_protocols(["h2"])
                sock.settimeout(left())
                sock = context.wrap_socket(sock, server_hostname=address[0])
            with self._lock:
                if self._closed:
                    raise ConnectionAbortedError("exporter closed")
                self._probe, self._calling, self._aborted = sock, True, False
            sock.settimeout(left())
            sock.sendall(_CLIENT_PREFACE)
            header = b""
            while len(header) < 9:  # a frame header: length (3), type (1), flags (1), stream (4)
                sock.settimeout(left())
                chunk = sock.recv(9 - len(header))
                if not chunk:
                    raise ConnectionResetError("the endpoint closed the connection before an HTTP/2 answer")
                header += chunk
            if header[3] != _SETTINGS:
                raise NotHttp2(f"the endpoint did not answer as HTTP/2 (first bytes {header!r}): "
                               "an OTLP/HTTP port given to the gRPC protocol?")
        finally:
            with self._lock:
                self._probe = None
            sock.close()

    def export(self, payload: bytes, timeout_s: float) -> Outcome:
        # The blocking call, not ``future()``: a future's result() wakes every 100 ms and each call
        # starts a Python thread that spins on the channel's queue (a start, an exit and a wake-up
        # every 200 ms). Every such wake-up wants the GIL, and beside a model thread calling predict
        # flat out a thread that wants the GIL is woken at each of the model's GIL releases and
        # loses the race, until the model pauses: measured, an uninstrumented model paid 1.24-1.38x
        # CPU per call while a black-holed attempt was in flight. The blocking call waits on its own
        # queue in C, waking only for the result (and gRPC's 200 ms signal check); abort() cancels
        # it by closing the channel.
        with self._lock:
            if self._closed:
                return Outcome.permanent("exporter closed")
            method = self._ensure()
            self._calling, self._aborted = True, False
        try:
            response = method(payload, timeout=max(timeout_s, 0.001), metadata=self.metadata or None,
                              compression=self.compression)
        except grpc.RpcError as err:
            if self._settle():
                return Outcome.permanent("export cancelled by shutdown")
            outcome = self._classify(err)
            if _unreachable(err):
                self._drop_channel()
            return outcome
        except Exception as exc:  # the transport must never raise into the worker
            if self._settle():  # a channel closed by abort() just before the call started
                return Outcome.permanent("export cancelled by shutdown")
            return Outcome.retry(f"grpc client error {type(exc).__name__}", detail=str(exc))
        self._settle()
        rejected = response.partial_success.rejected_log_records if response.HasField("partial_success") else 0
        return Outcome.success(rejected=rejected, detail=response.partial_success.error_message)

    def _settle(self) -> bool:
        """Ends the call in flight; True when abort() or close() cancelled it."""
        with self._lock:
            self._calling = False
            return self._aborted

    @staticmethod
    def _classify(err: grpc.RpcError) -> Outcome:
        code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
        details = err.details() if callable(getattr(err, "details", None)) else str(err)
        hint = None
        if callable(getattr(err, "trailing_metadata", None)):
            hint = retry_delay_from_metadata(err.trailing_metadata())
        error = f"grpc {code.name}"
        if grpc_is_retryable(code, hint):  # the OTLP spec table, shared with the sidecar's exporters
            return Outcome.retry(error, retry_after_s=hint, detail=details or "",
                                 unanswered=code == grpc.StatusCode.DEADLINE_EXCEEDED)
        return Outcome.permanent(error, detail=details or "")

    def _drop_channel(self) -> None:
        # A channel left open to an unreachable endpoint keeps reconnecting in the background
        # (gRPC's event engine woke ~16 times a second in the model process, measured): close it
        # and let the next attempt, paced by the worker's back-off, open a fresh one.
        with self._lock:
            channel, self._channel, self._method = self._channel, None, None
        if channel is not None:
            try:
                channel.close()
            except Exception:
                pass

    def abort(self) -> None:
        """Cancels the call or handshake in flight: closing its channel cancels a call (the next export
        opens another); shutting its socket down ends a handshake."""
        with self._lock:
            if not self._calling:
                return
            self._aborted = True
        self._end_in_flight()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._aborted = self._calling
        self._end_in_flight()

    def _end_in_flight(self) -> None:
        """Close the channel (cancelling its call) and end a handshake's wait (its owner closes it)."""
        with self._lock:
            channel, self._channel, self._method = self._channel, None, None
            probe = self._probe
        if channel is not None:
            channel.close()
        if probe is not None:
            try:
                probe.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
