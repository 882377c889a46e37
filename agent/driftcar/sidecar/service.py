"""The sidecar service: wires telemetry, state, evaluator, receivers and HTTP servers.

Start-up is downstream-first (telemetry -> state + checkpoint restore -> forwarder -> ingest
worker -> window tick -> Prometheus endpoint -> HTTP app -> gRPC receiver) and fails fast:
a bad reference file or an address in use raises before anything is served.
Each step that starts something pushes its undo onto one ``AsyncExitStack``, so stop and
abort (a failed start) unwind the same list, upstream-first, within ``shutdown_timeout``:
receivers stop taking data (new requests get UNAVAILABLE/503 + retry hint), the ingest queue
drains, the current window is closed, evaluated, checkpointed and exported, the HTTP
sockets close, then telemetry flushes. An abort skips the drain and the final evaluation.

Use :meth:`SidecarService.run` in a process you own (the CLI: it handles SIGTERM/SIGINT),
or :func:`run_in_thread` to embed a sidecar in another program (the demo, tests).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from driftcar.sidecar import decode_pool
from driftcar.sidecar.api import Api
from driftcar.sidecar.checkpoint import Checkpointer
from driftcar.sidecar.config import SidecarConfig
from driftcar.sidecar.evaluator import Evaluator
from driftcar.sidecar.front_link import FrontLink
from driftcar.sidecar.ingest import IngestQueue, Ingestor, IngestWorker
from driftcar.sidecar.receiver_grpc import GrpcReceiver
from driftcar.sidecar.receiver_http import RUNNER_KWARGS, HttpReceiver
from driftcar.sidecar.security import TokenAuth, grpc_server_credentials, server_ssl_context
from driftcar.sidecar.sliding import SlidingViews
from driftcar.sidecar.state import StateStore
from driftcar.wire import DEFAULT_LIMITS, Limits

__all__ = ["SidecarService", "SidecarHandle", "StartError", "run_in_thread", "build_telemetry"]

log = logging.getLogger("driftcar.sidecar")
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StartError(RuntimeError):
    """The service could not start (address in use, unreadable reference file, ...)."""


def build_telemetry(config: SidecarConfig):
    from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig

    return Telemetry(TelemetryConfig(
        export=config.export,
        otlp_endpoint=config.otlp_endpoint,
        otlp_protocol=config.otlp_protocol,
        export_interval_s=config.export_interval_s,
        max_features_per_model=config.max_features,
        max_categories=config.max_categories,
        max_models=config.max_models,
        scope="fleet" if config.role == "gateway" else "pod",
    ))


class SidecarService:
    """One sidecar. Create, then ``await start()`` / ``await stop()`` on the loop that serves it.

    ``telemetry`` defaults to the real exporters built from ``config``; tests may pass a fake.
    After :meth:`start`, ``grpc_port``, ``http_port`` and ``prometheus_port`` hold bound ports.
    """

    def __init__(self, config: SidecarConfig, telemetry: Any = None, *, drift_config: Any = None):
        self.config = config
        self.tel = telemetry if telemetry is not None else build_telemetry(config)
        self.auth = TokenAuth.from_config(config.security_config())
        self.store = StateStore(config.store_config(drift_config), self.tel)
        self.queue = IngestQueue(config.queue_max_rows, config.queue_max_bytes)
        limits = Limits(max_body_bytes=min(DEFAULT_LIMITS.max_body_bytes, config.max_request_bytes))
        self.ingestor = Ingestor(self.queue, self.tel, limits, retry_after_s=config.retry_after_s,
                                 admit=self.store.admit)
        self.forwarder = self.gateway = None  # fleet roles: see driftcar.sidecar.fleet
        self.worker = IngestWorker(self.queue, self.store.apply, self.tel)
        self.checkpointer = Checkpointer(config.state_dir, self.store) if config.state_dir else None
        self.evaluator = Evaluator(self.store, self.tel, config.evaluator_config(drift_config),
                                   after_close=self._after_close)
        self._fleet(config)
        self.sliding = SlidingViews(self.evaluator.drift_config)
        self.api = Api(self.store, self.tel, self.auth, config.api_config(), lambda: self.ready,
                       drift_config=self.evaluator.drift_config, status=self.status, sliding=self.sliding)
        self.grpc: GrpcReceiver | FrontLink | None = None
        # a second process for gRPC where a second CPU can run it (benchmarks/bench_sidecar.py --ingest)
        self.grpc_front = config.grpc_front == "on" or (config.grpc_front == "auto" and decode_pool.available()
                                                        and os.name == "posix")  # a socket pair, fds passed
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self.prometheus_port: int | None = None
        self.ready = False
        self._stack = AsyncExitStack()  # every started part's undo, unwound upstream-first
        self._servers = AsyncExitStack()  # the HTTP sockets: closed after the final evaluation
        self._stopping = False
        self._aborting = False  # unwinding a failed start: no drain, no final evaluation, short waits
        self._deadline = 0.0
        self._ok = True

    def status(self) -> dict:
        """Operational counters for ``GET /v1/models`` (cheap reads; any thread)."""
        return {
            "ready": self.ready,
            "window": self.config.window,
            "queue": {"rows": self.queue.rows, "bytes": self.queue.bytes, "max_rows": self.queue.max_rows,
                      "max_bytes": self.queue.max_bytes},
            "apply_errors": self.worker.errors,
            "windows_closed": self.evaluator.windows_closed,
            "last_close_unix_nano": self.evaluator.last_close_ns,
            "refused_models": self.store.refused_models,
            "grpc_front": {"pid": self.grpc.proc.pid, "restarts": self.grpc.restarts}
            if isinstance(self.grpc, FrontLink) and self.grpc.proc is not None else None,
            "fleet": (self.gateway or self.forwarder).status() if (self.gateway or self.forwarder) else None,
            "checkpoints": None if self.checkpointer is None else {
                "dir": self.config.state_dir, "saves": self.checkpointer.saves,
                "bytes_written": self.checkpointer.bytes_written},
        }

    def _fleet(self, config: SidecarConfig) -> None:
        if config.role == "gateway":
            from driftcar.sidecar.fleet.gateway import FleetGateway

            self.evaluator.judge = True
            self.gateway = FleetGateway(self.store, self.evaluator, self.tel, config.fleet_config())
            self.ingestor.windows = self.gateway.offer
            # rows sent here would sit in windows that a gateway never closes: refuse them, with the reason
            self.ingestor.admit = lambda model, version: (
                "this sidecar is a fleet gateway (role: gateway): it takes driftcar.window records; "
                "send driftcar.batch records to a pod sidecar")
        elif config.forward:
            from driftcar.sidecar.fleet.forwarder import Forwarder

            self.forwarder = Forwarder(config.forward, config.replica_id(), config.window_s, self.tel)
            self.evaluator.forward = self.forwarder.offer

    def _after_close(self, closes) -> None:
        if self.checkpointer is not None:
            self.checkpointer.save()
        states = [self.store.models.get((c.model, c.version)) for c in closes]
        self.sliding.refresh(s for s in states if s is not None)  # the views clients poll, off their requests

    # ------------------------------------------------------------------ start
    async def start(self) -> None:
        config = self.config
        for bind in config.insecure_binds():
            log.warning("listening on %s without TLS or a bearer token (allow_insecure_bind): anyone who can "
                        "reach it can send data and read drift results", bind)
        for key, path in config.references.items():  # fail fast on a bad reference file
            self.store.file_profile(path)
        stack = self._stack
        self.tel.start()
        stack.push_async_callback(self._close_telemetry)
        stack.push_async_callback(self._close_servers)
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.restore)
            for state in self.store.models.values():
                if state.signals.hook_drops.total:
                    self.tel.set_hook_dropped(state.model, state.version, state.signals.hook_drops.total)
        if self.forwarder is not None:
            self.forwarder.start()
            stack.push_async_callback(self._stop_forwarder)
        self.worker.start()
        stack.callback(lambda: self.worker.stop(timeout=1.0 if self._aborting else min(1.0, self._left())))
        self._start_tick()
        stack.push_async_callback(self._drain)
        await self._start_servers(config)
        self.ready = True
        stack.callback(self._refuse)
        log.info("driftcar sidecar ready (window %s, export %s, role %s%s)", config.window, config.export, config.role,
                 f", forwarding windows to {config.forward}" if self.forwarder is not None else "")

    def _start_tick(self) -> None:
        if self.gateway is not None:
            self.gateway.start()
            tick = asyncio.create_task(self.gateway.run(), name="driftcar-fleet-tick")
        else:
            tick = asyncio.create_task(self.evaluator.run(), name="driftcar-window-tick")
        self._stack.push_async_callback(self._final_window, tick)

    async def _start_servers(self, config: SidecarConfig) -> None:
        ssl_context = server_ssl_context(config.tls)
        if config.prometheus is not None:
            app = web.Application()
            app.router.add_get("/metrics", self._metrics)
            self.prometheus_port = await self._serve(app, config.prometheus, ssl_context)
            log.info("Prometheus endpoint on http%s://%s:%d/metrics", "s" if ssl_context else "",
                     config.prometheus.host, self.prometheus_port)
        if config.http is not None:
            app = web.Application()
            HttpReceiver(self.ingestor, self.auth, max_request_bytes=config.max_request_bytes).add_routes(app)
            self.api.add_routes(app)
            self.http_port = await self._serve(app, config.http, ssl_context, **RUNNER_KWARGS)
            log.info("OTLP/HTTP receiver and JSON API on http%s://%s:%d", "s" if ssl_context else "",
                     config.http.host, self.http_port)
        if config.grpc is not None:
            if self.grpc_front:
                self.grpc = FrontLink(config.grpc, self.ingestor, {
                    "auth": self.auth, "tls": config.tls, "limits": self.ingestor.limits,
                    "max_request_bytes": config.max_request_bytes, "log_level": config.log_level,
                    "grace_s": min(2.0, config.shutdown_timeout_s * 0.2)})
            else:
                self.grpc = GrpcReceiver(config.grpc, self.ingestor, self.auth,
                                         max_request_bytes=config.max_request_bytes,
                                         credentials=grpc_server_credentials(config.tls))
            await self.grpc.start()
            self._stack.push_async_callback(self._stop_grpc)
            self.grpc_port = self.grpc.port

    async def _serve(self, app: web.Application, endpoint, ssl_context, **kwargs) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False, **kwargs)
        await runner.setup()
        self._servers.push_async_callback(self._cleanup_runner, runner)
        site = web.TCPSite(runner, endpoint.host, endpoint.port, ssl_context=ssl_context, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        return sockets[0].getsockname()[1] if sockets else endpoint.port

    async def _metrics(self, request: web.Request) -> web.Response:
        if not self.auth.check(request.headers.get("Authorization")):
            return web.Response(status=401, text="missing or invalid bearer token\n",
                                headers={"WWW-Authenticate": 'Bearer realm="driftcar"'})
        text = await asyncio.to_thread(self.tel.prometheus_text)
        return web.Response(body=text.encode("utf-8"), headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})

    # ------------------------------------------------------------------ stop
    async def stop(self) -> bool:
        """Upstream-first shutdown within ``shutdown_timeout``; True when everything finished in time."""
        if self._stopping:
            return True
        self._stopping = True
        self._deadline = time.monotonic() + self.config.shutdown_timeout_s
        await self._stack.aclose()
        log.info("driftcar sidecar stopped%s", "" if self._ok else " (deadline hit; see warnings)")
        return self._ok

    async def _abort(self) -> None:
        """Undo a partial start (best effort, short; never raises)."""
        self._stopping = self._aborting = True
        self._deadline = time.monotonic() + 1.0
        try:
            await self._stack.aclose()
        except Exception:
            log.debug("abort step failed", exc_info=True)

    def _left(self) -> float:
        return max(0.1, self._deadline - time.monotonic())

    def _refuse(self) -> None:
        self.ready = False
        self.ingestor.stopping = True  # new requests: UNAVAILABLE / 503 + retry hint

    async def _stop_grpc(self) -> None:
        try:
            await self.grpc.stop(grace_s=0 if self._aborting else min(2.0, self._left() * 0.2))
        except Exception:
            if not self._aborting:
                raise
            log.debug("abort step failed", exc_info=True)

    async def _drain(self) -> None:
        if self._aborting:
            return
        if not await asyncio.to_thread(self.queue.wait_empty, self._left() * 0.5):
            log.warning("shutdown: ingest queue not drained in time (%d batches left)", len(self.queue))
            self._ok = False

    async def _final_window(self, tick: asyncio.Task) -> None:
        """Stop the tick; on a stop (not an abort) close, evaluate and checkpoint the current window."""
        tick.cancel()
        try:
            await tick
        except (asyncio.CancelledError, Exception):
            pass
        if self._aborting:
            return
        left = self._left
        try:
            if self.gateway is not None:
                await asyncio.wait_for(asyncio.to_thread(self.gateway.stop, left() * 0.3), timeout=left() * 0.7)
            else:
                await asyncio.wait_for(self.evaluator.close_and_evaluate(final=True), timeout=left() * 0.7)
        except asyncio.TimeoutError:
            log.warning("shutdown: the final window evaluation did not finish in time")
            self._ok = False
        except Exception:
            log.exception("shutdown: final window evaluation failed")
            self._ok = False

    async def _stop_forwarder(self) -> None:
        timeout = 0.1 if self._aborting else self._left() * 0.5
        if not await asyncio.to_thread(self.forwarder.stop, timeout) and not self._aborting:
            log.warning("shutdown: forwarded windows not all sent in time")
            self._ok = False

    async def _close_servers(self) -> None:
        await self._servers.aclose()

    async def _cleanup_runner(self, runner: web.AppRunner) -> None:
        try:
            await asyncio.wait_for(runner.cleanup(), timeout=min(2.0, self._left()))
        except asyncio.TimeoutError:
            self._ok = False
        except Exception:
            if not self._aborting:
                raise
            log.debug("abort step failed", exc_info=True)

    async def _close_telemetry(self) -> None:
        try:
            done = await asyncio.to_thread(self.tel.shutdown, 1.0 if self._aborting else self._left())
        except Exception:
            if not self._aborting:
                raise
            log.debug("telemetry shutdown failed", exc_info=True)
            return
        self._ok = bool(done) and self._ok

    async def run(self, stop_event: asyncio.Event | None = None) -> bool:
        """Start, serve until SIGTERM/SIGINT (or ``stop_event``), stop. Returns :meth:`stop`'s result."""
        loop = asyncio.get_running_loop()
        stop_event = stop_event or asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop_event.set)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                pass
        try:
            await self.start()
        except Exception as exc:
            await self._abort()
            raise StartError(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            await self._abort()
            raise
        await stop_event.wait()
        log.info("driftcar sidecar stopping")
        return await self.stop()


@dataclass
class SidecarHandle:
    """A sidecar running on its own loop in a daemon thread (see :func:`run_in_thread`)."""

    service: SidecarService
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    _stop_event: asyncio.Event

    @property
    def grpc_endpoint(self) -> str | None:
        return None if self.service.grpc_port is None else f"http://127.0.0.1:{self.service.grpc_port}"

    @property
    def http_endpoint(self) -> str | None:
        return None if self.service.http_port is None else f"http://127.0.0.1:{self.service.http_port}"

    def close_window(self, timeout: float = 30.0):
        """Close and evaluate the current window now (blocks; for demos and tests)."""
        future = asyncio.run_coroutine_threadsafe(self.service.evaluator.close_and_evaluate(), self.loop)
        return future.result(timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Graceful stop (as on SIGTERM); blocks until the thread ended or ``timeout``. Idempotent."""
        if not self.thread.is_alive():
            return
        try:
            self.loop.call_soon_threadsafe(self._stop_event.set)
        except RuntimeError:  # the loop ended meanwhile
            return
        self.thread.join(timeout if timeout is not None else self.service.config.shutdown_timeout_s + 5)


def run_in_thread(config: SidecarConfig, telemetry: Any = None, *, drift_config: Any = None,
                  start_timeout: float = 30.0) -> SidecarHandle:
    """Start a sidecar in a daemon thread; returns once it is ready (or raises its start error)."""
    loop = asyncio.new_event_loop()
    service = SidecarService(config, telemetry, drift_config=drift_config)
    started = threading.Event()
    failure: list[BaseException] = []
    holder: dict[str, asyncio.Event] = {}

    async def main() -> None:
        holder["stop"] = asyncio.Event()
        try:
            await service.start()
        except BaseException as exc:
            failure.append(exc)
            started.set()
            await service._abort()
            return
        started.set()
        await holder["stop"].wait()
        await service.stop()

    def target() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    thread = threading.Thread(target=target, name="driftcar-sidecar", daemon=True)
    thread.start()
    if not started.wait(start_timeout):
        raise TimeoutError(f"sidecar did not start within {start_timeout} s")
    if failure:
        thread.join(5)
        raise failure[0]
    return SidecarHandle(service, loop, thread, holder["stop"])
