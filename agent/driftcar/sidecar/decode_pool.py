"""Parse and decode large requests in a second process, so the event loop's process keeps the GIL
for receiving and sketching.

Why a process and not a thread: decoding holds the GIL. A 1,000-row batch of 20 numeric +
5 str columns costs ~0.5-0.9 ms to decode, ~0.4-0.7 ms of it validating the 5,000 str cells
one by one, the same order as sketching the batch; on the event loop's thread it competed
with the ingest worker for one core (``benchmarks/bench_sidecar.py``). In a child process it
runs on the second core. What comes back is cheap to unpickle: numeric columns are raw
buffers, and str columns travel dictionary-encoded (distinct values + int32 codes) instead of
one pickled str per cell (unpickling 5,000 strs cost ~0.3 ms, as much as decoding them).
An OTLP/JSON body is parsed there too, so a multi-megabyte JSON document never holds the
sidecar's GIL (``json.loads`` holds it for the whole document).

The pool is used only when the machine gives this process at least 2 CPUs and the request
is at least :data:`MIN_BYTES` (below that the round trip costs more than decoding inline).
If the child dies (``BrokenProcessPool``) the request is decoded inline and a new child is
started for the next one. The child holds no state: its answers are pure functions of the bytes.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import multiprocessing
import os
import threading
from typing import Any

import numpy as np

from driftcar.wire import Limits

__all__ = ["MIN_BYTES", "decode", "decode_inline", "available", "shutdown"]

log = logging.getLogger("driftcar.sidecar.decode_pool")

#: requests at least this large are decoded in the child process
MIN_BYTES = 32 * 1024

_lock = threading.Lock()
_pool: concurrent.futures.ProcessPoolExecutor | None = None


class _Strings:
    """A str column as distinct values + codes, rebuilt into the list the state expects."""

    __slots__ = ("values", "codes")

    def __init__(self, column: list):
        index: dict = {}
        self.codes = np.fromiter((index.setdefault(v, len(index)) for v in column), np.int32, len(column))
        self.values = list(index)

    def column(self) -> list:
        table = np.empty(len(self.values), dtype=object)
        table[:] = self.values
        return table.take(self.codes).tolist()


def _parse(data: bytes, as_json: bool):
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from driftcar.sidecar.errors import BadRequest

    if as_json:
        from driftcar.sidecar.receiver_http import parse_otlp_json

        return parse_otlp_json(data)
    try:
        return ExportLogsServiceRequest.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise BadRequest(f"body is not a valid ExportLogsServiceRequest: {type(exc).__name__}") from None


def decode_inline(data: bytes, as_json: bool, limits: Limits):
    """Parse + decode every record (BadRequest when the request itself cannot be parsed)."""
    from driftcar.sidecar.ingest import decode_request

    return decode_request(_parse(data, as_json), limits)


def _child(data: bytes, as_json: bool, limits: Limits):
    decoded = decode_inline(data, as_json, limits)
    for item in decoded.items:
        cols = item.batch.columns
        for name, col in cols.items():
            if isinstance(col, list):
                cols[name] = _Strings(col)
    return decoded


def _rebuild(decoded) -> Any:
    for item in decoded.items:
        cols = item.batch.columns
        for name, col in cols.items():
            if isinstance(col, _Strings):
                cols[name] = col.column()
    return decoded


def available() -> bool:
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except AttributeError:  # not Linux
        return (os.cpu_count() or 1) >= 2


def _get_pool() -> concurrent.futures.ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            # spawn, not fork: the sidecar has gRPC and exporter threads that a fork would copy mid-state
            _pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            atexit.register(shutdown)  # before interpreter teardown, or the executor's finaliser fails noisily
        return _pool


def _drop_pool(broken: concurrent.futures.ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


async def decode(data: bytes, as_json: bool, limits: Limits):
    """:func:`decode_inline` in the child process when worth it, else on a thread (large) or inline."""
    if len(data) < MIN_BYTES or not available():
        if len(data) < MIN_BYTES:
            return decode_inline(data, as_json, limits)
        return await asyncio.to_thread(decode_inline, data, as_json, limits)
    pool = _get_pool()
    try:
        return _rebuild(await asyncio.get_running_loop().run_in_executor(pool, _child, data, as_json, limits))
    except concurrent.futures.process.BrokenProcessPool:
        log.warning("the decode process died; decoding this request on a thread and starting a new one")
        _drop_pool(pool)
        return await asyncio.to_thread(decode_inline, data, as_json, limits)


def shutdown() -> None:
    """Stop the child (also done at interpreter exit by concurrent.futures)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
