"""From an OTLP logs request to validated batches in a bounded queue.

Both receivers hand a parsed ``ExportLogsServiceRequest`` to :meth:`Ingestor.ingest`,
which decodes and validates every ``driftcar.batch`` record with :mod:`driftcar.wire`
(so a bad one is answered with its reason, never crashes anything), counts records of
other events as ignored, and offers the good batches to the :class:`IngestQueue`
all-or-nothing: either the whole request is accepted, or — when the queue is full —
none of it is and the client is told to retry (:class:`~.errors.Overloaded`), so a retry
never duplicates rows. An :class:`IngestWorker` thread applies queued batches to the
state off the event loop; batches waiting together are concatenated into one vectorised
pass (:mod:`.coalesce`). A request that finds the queue full waits up to ``ADMIT_WAIT_S``
for room before it is refused (:meth:`Ingestor.ingest_async`).

Outcomes (``driftcar.receiver.batches{outcome}``), one count per batch record:
accepted, rejected (bad record or bad request), throttled (queue full / stopping), duplicate
(a retry of a batch queued before, by its ``driftcar.batch.id``: answered, not queued; :mod:`.dedupe`).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from driftcar.sidecar.coalesce import coalesce
from driftcar.sidecar.dedupe import RecentBatches, batch_id
from driftcar.sidecar.errors import BadRequest, Overloaded, ShuttingDown
from driftcar.wire import Batch, BatchError, Limits, decode_batch
from driftcar.wire import otlp
from driftcar.wire.window import iter_window_bodies

__all__ = ["Item", "IngestResult", "IngestQueue", "Ingestor", "IngestWorker", "Prepared", "Decoded", "decode_record",
           "decode_request", "keep_heap", "MAX_REASONS", "ADMIT_WAIT_S", "MAX_ADMIT_WAITERS"]

log = logging.getLogger("driftcar.sidecar.ingest")

#: at most this many distinct reasons are quoted in a partial-success / error message
MAX_REASONS = 3
MAX_MODEL_NAME = 256
#: how long a request waits for room in a full queue before it is refused (see ``ingest_async``)
ADMIT_WAIT_S = 0.25
#: requests that may wait for room at once; others are refused at once (their memory is bounded)
MAX_ADMIT_WAITERS = 4
#: the worker takes up to this many queued batches at once and applies runs of one layout as one
#: concatenated batch (:mod:`.coalesce`)
TAKE_AT_ONCE = 16
#: with fewer queued, the worker waits up to this long for more before applying them. Why: a worker
#: that keeps up (the gRPC front process decodes elsewhere) otherwise takes batches one or two at a
#: time and pays the sketch's fixed cost per call on each: applying 1,000-row batches of 20 numeric +
#: 5 str columns took ~1.0 ms each one at a time, ~0.8 two at a time, ~0.65 four, ~0.6 eight or
#: sixteen (CPU, one process, 3 rounds); with the front process the sidecar's busiest thread went
#: from 0.80 to 0.67 ms per request (``benchmarks/bench_sidecar.py --ingest --quick``, shared machine)
GATHER_S = 0.005
#: glibc malloc: blocks up to this size come from the heap, not their own mmap (:func:`keep_heap`)
MMAP_THRESHOLD = 16 * 2**20
#: glibc malloc: free memory at the top of a heap is handed back to the kernel beyond this
TRIM_THRESHOLD = 32 * 2**20


class Counters(Protocol):
    """The part of the telemetry the ingest path reports to."""

    def add_receiver_batches(self, outcome: str, n: int) -> None: ...
    def add_ignored_records(self, n: int) -> None: ...
    def set_queue_size(self, rows: int) -> None: ...


@dataclass(slots=True)
class Item:
    """One validated batch waiting to be applied to the state."""

    model: str
    version: str
    batch: Batch
    nbytes: int
    time_unix_nano: int
    trace_id: bytes = b""
    resource: dict = field(default_factory=dict)
    batches: int = 1  # > 1 when queued batches were concatenated (:mod:`.coalesce`)
    batch_id: int | None = None  # driftcar.batch.id: a retry of a queued batch is not queued again (:mod:`.dedupe`)

    @property
    def rows(self) -> int:
        return max(1, self.batch.rows)


@dataclass
class IngestResult:
    """What happened to one request; ``rejected`` > 0 with ``accepted`` > 0 is a partial success."""

    accepted: int = 0
    rejected: int = 0
    ignored: int = 0
    message: str = ""


class IngestQueue:
    """FIFO bounded by rows and bytes (not item count), shared by receivers and the worker.

    Thread-safe. :meth:`offer` never blocks: it takes all items or none. A single item
    larger than a bound is still accepted when the queue is empty, so no valid batch
    can be refused forever.
    """

    def __init__(self, max_rows: int, max_bytes: int):
        if max_rows <= 0 or max_bytes <= 0:
            raise ValueError("queue bounds must be positive")
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.rows = 0
        self.bytes = 0
        self._items: collections.deque[Item] = collections.deque()
        self._cond = threading.Condition()
        self._busy = 0  # items taken but not yet marked done
        #: items a waiting getter needs before it is woken (``get_many`` gathering: its limit). Why: woken by
        #: every offer, the worker re-checked its count and slept again, 15 times per 16 batches gathered:
        #: each a thread switch and a hand-over of the GIL, which the event loop waited for
        self._wanted = 1

    def offer(self, items: list[Item]) -> bool:
        rows = sum(i.rows for i in items)
        nbytes = sum(i.nbytes for i in items)
        with self._cond:
            if self._items and (self.rows + rows > self.max_rows or self.bytes + nbytes > self.max_bytes):
                return False
            self._items.extend(items)
            self.rows += rows
            self.bytes += nbytes
            if len(self._items) >= self._wanted:
                self._cond.notify()
            return True

    def get(self, timeout: float | None = None) -> Item | None:
        """Next item or None after ``timeout``; call :meth:`done` after applying it."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout):
                return None
            item = self._items.popleft()
            self._busy += 1
            return item

    def get_many(self, limit: int, timeout: float | None = None, gather_s: float = 0.0) -> list[Item]:
        """Up to ``limit`` waiting items (at least one, or [] after ``timeout``); :meth:`done` each.
        With ``gather_s``, fewer than ``limit`` waiting items wait up to that long for more."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout):
                return []
            if gather_s and len(self._items) < limit:
                self._wanted = limit
                try:
                    self._cond.wait_for(lambda: len(self._items) >= limit, gather_s)
                finally:
                    self._wanted = 1
            n = min(limit, len(self._items))
            items = [self._items.popleft() for _ in range(n)]
            self._busy += n
            return items

    def done(self, item: Item) -> None:
        with self._cond:
            self._busy -= 1
            self.rows -= item.rows
            self.bytes -= item.nbytes
            self._cond.notify_all()

    def wait_empty(self, timeout: float | None = None) -> bool:
        """Block until every offered item has been applied (drain before a window close)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and self._busy == 0, timeout)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


def _str_attr(attributes: dict, key: str) -> str | None:
    value = attributes.get(key)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    return None


def decode_record(record: otlp.BatchRecord, limits: Limits) -> Item:
    """Validate and decode one batch record (BatchError with the reason); needs no state, so it
    runs in the decode process (:mod:`.decode_pool`) as well as inline."""
    attrs = record.attributes
    model = _str_attr(attrs, otlp.ATTR_MODEL_NAME)
    if not model or len(model) > MAX_MODEL_NAME:
        raise BatchError(f"attribute {otlp.ATTR_MODEL_NAME} must be a string of 1..{MAX_MODEL_NAME} characters")
    version = _str_attr(attrs, otlp.ATTR_MODEL_VERSION)
    if not version or len(version) > MAX_MODEL_NAME:
        raise BatchError(f"attribute {otlp.ATTR_MODEL_VERSION} must be a string of 1..{MAX_MODEL_NAME} characters")
    if record.body is None:
        raise BatchError("record body must be bytes (AnyValue.bytes_value)")
    batch = decode_batch(record.body, limits)
    kind = attrs.get(otlp.ATTR_KIND)
    if kind is not None and kind != batch.kind:
        raise BatchError(f"attribute {otlp.ATTR_KIND}={kind!r} but body kind is {batch.kind!r}")
    rows = attrs.get(otlp.ATTR_ROWS)
    if isinstance(rows, int) and not isinstance(rows, bool) and rows != batch.rows:
        raise BatchError(f"attribute {otlp.ATTR_ROWS}={rows} but body has {batch.rows} rows")
    return Item(model, version, batch, len(record.body), record.time_unix_nano, record.trace_id, record.resource,
                batch_id=batch_id(attrs))


@dataclass
class Decoded:
    """Every record of one request decoded: the good items, one reason per bad record."""

    ignored: int = 0
    items: list[Item] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    windows: list = field(default_factory=list)  # (attributes, body) of driftcar.window records (gateway role)


def decode_request(request: ExportLogsServiceRequest, limits: Limits) -> Decoded:
    out = Decoded(windows=list(iter_window_bodies(request)))
    for record in otlp.iter_batch_records(request):
        if record is None:
            out.ignored += 1
            continue
        try:
            out.items.append(decode_record(record, limits))
        except BatchError as exc:
            out.reasons.append(exc.reason)
    return out


class Ingestor:
    """Validate requests and queue their batches. Thread-safe; never blocks; never raises
    anything but :class:`~.errors.IngestError` subclasses.

    ``admit(model, version) -> str | None`` returns a refusal reason for a (model, version)
    the state will not take (model cap reached), or None.
    """

    def __init__(
        self,
        queue: IngestQueue,
        counters: Counters,
        limits: Limits,
        *,
        retry_after_s: float = 1.0,
        admit: Callable[[str, str], str | None] | None = None,
        windows: Callable[[list], tuple[int, int, list[str]]] | None = None,
    ):
        self.queue = queue
        self.counters = counters
        self.limits = limits
        #: requests waiting for room in a full queue (only touched on the event loop)
        self.waiting = 0
        self.retry_after_s = retry_after_s
        self.admit = admit
        self.windows = windows  # gateway role: takes the driftcar.window records (FleetGateway.offer)
        self.stopping = False
        self.recent = RecentBatches()  # ids of the batches queued lately: a retry is answered, not re-queued

    # -- request-level refusals (counted here so receivers stay thin)
    def reject_request(self, error: Exception) -> None:
        """Count a request refused before its records could be read (bad protobuf, too large)."""
        self.counters.add_receiver_batches("rejected", 1)

    async def refuse(self, error: Exception):
        """Count a request refused before its records could be read, then raise ``error``."""
        self.reject_request(error)
        raise error

    def _windows(self, bodies: list, result: IngestResult, reasons: collections.Counter) -> None:
        """Hand ``driftcar.window`` records to the gateway first (a retry is deduplicated there)."""
        if self.stopping:
            raise ShuttingDown("sidecar is shutting down; retry later", self.retry_after_s)
        accepted, rejected, why = self.windows(bodies)  # may raise Overloaded
        result.accepted += accepted
        result.rejected += rejected
        reasons.update(why)

    def ingest(self, request: ExportLogsServiceRequest) -> IngestResult:
        """Validate, queue, count. Raises BadRequest when every batch record is bad,
        Overloaded/ShuttingDown when the queue cannot take the good ones."""
        return self.commit(self.prepare(request))

    async def ingest_body(self, data: bytes, as_json: bool) -> IngestResult:
        """What both receivers do with a request's bytes: parse and decode them (off the loop when
        large, see :mod:`.decode_pool`), count a request that cannot be parsed, then ingest."""
        from driftcar.sidecar import decode_pool  # it imports this module's decoding lazily

        try:
            decoded = await decode_pool.decode(data, as_json, self.limits)
        except BadRequest as exc:
            self.reject_request(exc)
            raise
        return await self.ingest_async(self.prepare_decoded(decoded))

    async def ingest_async(self, prepared: "Prepared") -> IngestResult:
        """:meth:`commit`, waiting up to :data:`ADMIT_WAIT_S` (on the loop, without blocking it)
        for room in a full queue before refusing.

        Why: a full queue is usually one the worker is draining; a client sending one request
        at a time is then paced to the worker's rate by a short wait instead of being refused
        and backing off for ``retry_after`` (it was refused for 4-12 % of its rows otherwise).
        Sustained overload from many clients is still refused, after the wait.
        """
        result = self.commit(prepared, last=self.waiting >= MAX_ADMIT_WAITERS)
        if result is not None:
            return result
        # At most MAX_ADMIT_WAITERS requests wait at once: each holds its decoded batches in
        # memory, so the wait must not become an unbounded second queue under overload.
        self.waiting += 1
        try:
            deadline = time.monotonic() + ADMIT_WAIT_S
            pause = 0.002
            while True:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.02)
                result = self.commit(prepared, last=time.monotonic() >= deadline)
                if result is not None:
                    return result
        finally:
            self.waiting -= 1

    def prepare(self, request: ExportLogsServiceRequest) -> "Prepared":
        """Decode and validate every record (no queueing yet). Raises BadRequest when every
        batch record is bad."""
        return self.prepare_decoded(decode_request(request, self.limits))

    def prepare_decoded(self, decoded: Decoded) -> "Prepared":
        """Count a decoded request and refuse models beyond the cap (the part that needs state)."""
        result = IngestResult(ignored=decoded.ignored)
        reasons: collections.Counter[str] = collections.Counter(decoded.reasons)
        items: list[Item] = []
        if self.windows is not None and decoded.windows:  # gateway role; else they count as ignored
            result.ignored -= len(decoded.windows)
            self._windows(decoded.windows, result, reasons)
        for item in decoded.items:
            refusal = self.admit(item.model, item.version) if self.admit is not None else None
            if refusal:
                reasons[refusal] += 1
                result.rejected += 1
            else:
                items.append(item)
        result.rejected += len(decoded.reasons)
        if result.ignored:
            self.counters.add_ignored_records(result.ignored)
        if result.rejected:
            self.counters.add_receiver_batches("rejected", result.rejected)
            quoted = "; ".join(r for r, _ in reasons.most_common(MAX_REASONS))
            more = len(reasons) - MAX_REASONS
            result.message = f"{result.rejected} driftcar.batch record(s) rejected: {quoted}" + (
                f" (+{more} other reasons)" if more > 0 else ""
            )
            if not items and not result.accepted:
                raise BadRequest(result.message)
        return Prepared(result, items)

    def commit(self, prepared: "Prepared", *, last: bool = True) -> IngestResult | None:
        """Offer the prepared items, all or none. When the queue is full: None if not ``last``
        (nothing counted; the caller may retry), else Overloaded. ShuttingDown when stopping."""
        result = prepared.result
        items, duplicates = self.recent.split(prepared.items)
        if items:
            if self.stopping:
                self.counters.add_receiver_batches("throttled", len(items))
                raise ShuttingDown("sidecar is shutting down; retry later", self.retry_after_s)
            if not self.queue.offer(items):
                if not last:
                    return None
                self.counters.add_receiver_batches("throttled", len(items))
                raise Overloaded(
                    f"ingest queue full ({self.queue.rows} rows, {self.queue.bytes} bytes queued); retry later",
                    self.retry_after_s,
                )
            self.recent.remember(items)
            result.accepted += len(items)
            self.counters.add_receiver_batches("accepted", len(items))
            self.counters.set_queue_size(self.queue.rows)
        if duplicates:  # counted once the request is answered with success
            self.counters.add_receiver_batches("duplicate", duplicates)
        return result


@dataclass(slots=True)
class Prepared:
    """A request's validated items and outcome so far, between :meth:`Ingestor.prepare` and ``commit``."""

    result: IngestResult
    items: list[Item]


def keep_heap() -> bool:
    """Fix glibc malloc's mmap and trim thresholds (:data:`MMAP_THRESHOLD`, :data:`TRIM_THRESHOLD`);
    False where there is no glibc ``mallopt``.

    Why: the worker's thread allocates from its own malloc arena, which handed the memory of each
    coalesced pass (a few MB of numpy temporaries) back to the kernel when it was freed and faulted
    it in again on the next pass: ~480 page faults and ~0.8 ms of system time per 1,000-row batch
    of 20 numeric + 5 str features, as much as the worker's own computing (``benchmarks/bench_sidecar.py``;
    with these thresholds ~2 faults). glibc's self-adjusting thresholds did not settle for this pattern
    (the same work on a main thread faulted ~210 times per batch). The price: each malloc arena may
    keep up to ``TRIM_THRESHOLD`` of freed memory instead of returning it.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no such symbol (macOS; other allocators): nothing to do
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(-3, MMAP_THRESHOLD)) and bool(mallopt(-1, TRIM_THRESHOLD))  # M_MMAP_ / M_TRIM_THRESHOLD


class IngestWorker:
    """One daemon thread applying queued items to the state in arrival order.

    ``apply(item)`` may raise: the error is counted (``errors``), logged once per
    exception type, and the worker carries on (the sidecar never dies on input).
    """

    def __init__(self, queue: IngestQueue, apply: Callable[[Item], Any], counters: Counters | None = None):
        self.queue = queue
        self.apply = apply
        self.counters = counters
        self.errors = 0
        self._logged: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="driftcar-ingest", daemon=True)

    def start(self) -> None:
        keep_heap()
        self._thread.start()

    def _run(self) -> None:
        last_report = 0.0
        while not self._stop.is_set():
            items = self.queue.get_many(TAKE_AT_ONCE, timeout=0.2, gather_s=GATHER_S)
            if not items:
                if self.counters is not None and last_report:  # idle: the queue is empty now
                    self.counters.set_queue_size(self.queue.rows)
                    last_report = 0.0
                continue
            try:
                for merged, count in coalesce(items):
                    self._apply(merged, count)
            finally:
                for item in items:
                    self.queue.done(item)
            now = time.monotonic()
            if self.counters is not None and now - last_report > 0.5:
                last_report = now
                self.counters.set_queue_size(self.queue.rows)

    def _apply(self, item: Item, count: int) -> None:
        try:
            self.apply(item)
        except Exception as exc:  # never die on input; count and log each kind once
            self.errors += count
            kind = type(exc).__name__
            if kind not in self._logged:
                self._logged.add(kind)
                log.error("applying a batch failed (%s); further %s errors are only counted", kind, kind,
                          exc_info=True)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
