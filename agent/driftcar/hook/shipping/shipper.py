"""The shipper: a bounded buffer drained by one daemon thread into OTLP log exports.

Contracts:

* :meth:`Shipper.offer` is called on the model's threads. It is O(1), never
  waits on I/O and never raises: it appends to a byte-bounded buffer (dropping
  and counting the oldest items when full) and wakes the worker when a batch
  is due. The worker starts lazily on the first offer.
* The commonest numpy call skips ``offer``: it writes to the open columnar block of its
  layout (:meth:`block_for`, :mod:`driftcar.hook.shipping.blocks`), which becomes one
  buffer item when full, or when the worker seals it at the batch age, a flush or shutdown.
* The worker seals a batch when ``max_batch_rows`` rows are queued or the
  oldest item is ``max_batch_age_s`` old (or on flush); while the endpoint backs
  off (``driftcar.wire.retry``: one back-off kept across exports), not before the
  next allowed attempt, so an outage costs one attempt per back-off period and
  no work in between. A back-off wait ends on an offer (which hands the worker the
  GIL), a flush or a shutdown, by the worker's own timer only after the back-off
  cap (:class:`_BackingOff` says why). Once the exporter's ``ready`` reached the endpoint
  (:meth:`Shipper._reachable`), it converts the items to
  columns (``driftcar.hook.columns.to_columns``), encodes bodies with the
  hook's cumulative counters, caps each request at ``max_request_bytes`` and
  exports with retries per the OTLP specification.
* :meth:`flush` and :meth:`shutdown` return by their deadline. At interpreter
  exit every shipper is shut down within ``exit_timeout_s``. After ``fork()``
  the child's shipper is fresh: empty buffer, new instance id, new worker and
  channel; the parent's buffered rows stay the parent's.
* Every loss is counted (:attr:`stats`) and each kind of problem is logged
  once on the ``driftcar.hook`` logger.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from typing import Any, Callable, Sequence

from driftcar.hook.records import SealedCalls, thaw_all
from driftcar.hook.shipping import lifecycle
from driftcar.hook.shipping.blocks import BLOCK_ROWS, CALL_BYTES, Block, CallsBlock, block_capacity
from driftcar.hook.shipping.batching import body_budget, encode_part, pack_requests, record_pieces
from driftcar.hook.shipping.budget import CpuBudget
from driftcar.hook.shipping.buffer import ByteBuffer, Taken
from driftcar.hook.shipping.config import ShipperConfig
from driftcar.hook.shipping.resource import resolve_resource
from driftcar.wire.otlp import new_batch_id
from driftcar.wire.retry import Backoff, Exporter, Outcome, RetryState, retry

__all__ = ["Shipper", "estimate_size", "ITEM_OVERHEAD_BYTES"]

logger = logging.getLogger("driftcar.hook")

Converter = Callable[[Sequence[Any]], Sequence[Any]]
_monotonic = time.monotonic
_thread_time = time.thread_time
_CALLS = ("calls without data",)  # the key of the calls block among the layouts' blocks
_ROW_ESTIMATE_BYTES = 256  # per row when an input has no nbytes (DataFrame, list of dicts)
#: added to every item's size for the buffer bound: a 1-row item (Captured, two small numpy
#: arrays, the buffer's tuple) measured ~660 bytes under tracemalloc against a size_hint of 168
ITEM_OVERHEAD_BYTES = 512
#: offers between two GIL hand-overs to the worker (a power of two; see Shipper.offer_raw)
YIELD_EVERY = 16
YIELD_EVERY_MASK = YIELD_EVERY - 1
#: the largest shared ring to a helper process (ship_process): it holds sealed blocks only until the
#: helper copies them out (its own buffer, max_buffer_bytes, holds them through an outage)
HELPER_RING_BYTES = 8 * 1024 * 1024
#: what the retry loop sees when an exporter's ``ready`` finds the endpoint reachable (:meth:`Shipper._reachable`)
_REACHED = Outcome.success()
#: unanswered requests held for one more attempt at a time (:meth:`Shipper._hold`); more are dropped
MAX_HELD = 4


def estimate_size(item: Any) -> int:
    """Data bytes an item holds, when the capture side gave no ``size_hint``; O(1)."""
    size = 0
    for value in (item.inputs, item.outputs, item.labels, item.ids):
        if value is None:
            continue
        nbytes = getattr(value, "nbytes", None)
        size += nbytes if isinstance(nbytes, int) else max(int(item.rows), 1) * _ROW_ESTIMATE_BYTES
    return size


def _sealed_bytes(sealed: Any) -> int:
    """What a sealed block keeps in memory: its data and :data:`CALL_BYTES` per call (O(1))."""
    if type(sealed) is SealedCalls:
        return sealed.calls * CALL_BYTES
    y_width = sealed.ytail[0] if sealed.ytail else 1
    return sealed.calls * CALL_BYTES + sealed.rows * (sealed.ncols * sealed.xdtype.itemsize
                                                      + y_width * sealed.ydtype.itemsize)


_pages_kept = False


def _keep_batch_pages(nbytes: int) -> None:
    """Let glibc keep a batch's worth of freed heap mapped between batches (once per process).

    Why: the worker's buffers for a batch (joined columns, arrays, bodies, the request: ~3 MB per
    10,000 1-row calls) are freed at the top of its malloc arena, and glibc gave those pages back
    (``madvise(MADV_DONTNEED)``) as soon as more than its trim threshold (twice its mmap threshold)
    was free there, so every batch faulted them in again: measured ~700 minor faults and their
    kernel time per batch, ~12 k per 60,000 1-row calls with the endpoint up. glibc raises its mmap
    threshold to the size of any mmapped block that is freed (``mallopt(3)``, the dynamic
    threshold), as it would after any large temporary in the app; a calloc'ed block of ``nbytes``
    freed at once does that without touching its pages. Measured at 4,000 1-row calls/s over
    60,000 calls: ~1,000-12,000 faults in the worker before, 1,200-2,200 with a 3 MiB block (one
    default request), 11-12 with 6 MiB (two, used here). glibc raises it to 32 MiB at most.
    Cost: freed heap up to twice ``nbytes`` stays mapped per arena. No-op on other C libraries.
    """
    global _pages_kept
    if _pages_kept:
        return
    _pages_kept = True
    try:
        import platform

        if platform.libc_ver()[0] != "glibc":
            return
        import numpy as np

        # calloc'ed: mmapped and freed without its pages ever being touched
        block = np.zeros(min(max(int(nbytes), 1 << 20), 32 << 20), dtype=np.uint8)
        del block
    except Exception:  # memory tuning only: never a reason to stop shipping
        pass


#: rows after whose conversion or encoding the worker lets a model thread that waits for the GIL run
YIELD_ROWS = 1_000


def _let_model_run(rows: int) -> None:
    """Release the GIL for a moment after a stage of a large batch (a no-op for a small one).

    Why: from taking a batch to sending its request the worker runs C code that keeps the GIL
    (the run's join, the columns, the encoding, the request's join): ~470-540 µs per batch of
    ten 1,000-row calls (thread CPU per stage, least of 300 reps), and a model thread coming back
    from its BLAS call (or handing the worker the GIL every 16 offers) waited for all of it. A
    release between stages lets it in after the stage it came back in: its longest wait becomes
    the longest stage (~230 µs, the columns). ``sleep(0)`` returns as soon as the GIL is back;
    with nobody waiting it is one syscall (~1 µs).
    """
    if rows >= YIELD_ROWS:
        time.sleep(0)


def _exporter_class(config: ShipperConfig) -> type:
    """The transport's class for ``config.protocol`` (its module imported on first use: gRPC's is heavy)."""
    if config.protocol == "grpc":
        from driftcar.hook.shipping.grpc_exporter import GrpcExporter

        return GrpcExporter
    from driftcar.hook.shipping.http_exporter import HttpExporter

    return HttpExporter


def _default_exporter(config: ShipperConfig) -> Exporter:
    gzip = config.compression == "gzip"
    if config.protocol == "grpc":
        target, secure = config.grpc_target
        return _exporter_class(config)(target, secure=secure, headers=config.headers, gzip=gzip,
                                       ca_file=config.ca_file)
    return _exporter_class(config)(config.logs_url, headers=config.headers, gzip=gzip, gzip_level=config.gzip_level,
                                   ca_file=config.ca_file)


def _default_converter() -> Converter:
    from driftcar.hook.columns import to_columns

    return to_columns


class Shipper:
    """Ships captured items as ``driftcar.batch`` OTLP log records; see the module docstring.

    ``convert`` turns a list of items into parts (objects with ``kind``,
    ``rows``, ``columns`` and ``calls``); it defaults to
    ``driftcar.hook.columns.to_columns``. ``exporter_factory`` builds the
    transport from the config (tests inject fakes); it is called on the
    worker thread, so no channel exists before the first batch.
    """

    def __init__(
        self,
        config: ShipperConfig,
        *,
        convert: Converter | None = None,
        exporter_factory: Callable[[ShipperConfig], Exporter] | None = None,
    ):
        if not isinstance(config, ShipperConfig):
            raise TypeError(f"config must be a ShipperConfig, got {type(config).__name__}")
        self.config = config
        self._exporter_factory = exporter_factory or _default_exporter
        # a helper process ships with the default converter and transport only (tests inject fakes)
        self._helper_ok = config.ship_process and convert is None and exporter_factory is None
        # The worker's first export imports the converter and the transport's module unless they are
        # imported here, on the instrumenting thread. Why here: imports read files, and each read hands
        # the GIL away; the worker, woken beside a model calling predict flat out, then waits for the
        # GIL at every one of them (a convoy): its first batch left 0.3-1.8 s after the loop began,
        # or not within 1.5 s (2 runs of 6, 50 ms batch age; test_shipping_busy_model.py). Only the
        # modules: no channel or connection exists before the first batch. The price: driftcar.instrument
        # in a fresh process took 116 -> 129 ms over gRPC and 94 -> 124 ms over OTLP/HTTP, once.
        self._convert = convert or _default_converter()
        if exporter_factory is None and not self._helper_ok:
            _exporter_class(config)
        self._backoff = Backoff(config.retry_initial_backoff_s, config.retry_max_backoff_s, config.retry_jitter)
        self._max_rows = config.max_batch_rows
        self._block_cap = block_capacity(config.max_batch_rows)
        # made once: the capture side keeps a reference (HookState.gate); a forked child restarts it.
        # With a helper process the helper decides (its CPU against this process's and its own) and
        # this gate mirrors its decision, read from the ring's header whenever a block goes there
        self.gate = CpuBudget(config.cpu_budget, process_cpu=self._process_cpu_s)
        self._reset()
        lifecycle.register(self)

    # ------------------------------------------------------------------ state

    def _reset(self) -> None:
        """Fresh state: at construction and in a forked child."""
        self.instance = uuid.uuid4().hex[:16]
        self.pid = os.getpid()
        self._buffer = ByteBuffer(self.config.max_buffer_bytes)
        self._blocks: dict[tuple, Block] = {}  # layout -> open Block (block_for); retired after fork
        # (payload, rows, calls, seq) of requests that got no answer, for one more attempt (_hold)
        self._held: deque[tuple[bytes, int, int, int]] = deque()
        self._link: Any = None  # the helper process's HelperLink (ship_process), made by _start_worker
        self._wake = threading.Event()
        self._stop = threading.Event()  # drain what is left, then exit
        self._abort = threading.Event()  # give up now (deadline passed)
        self._kick = threading.Event()  # ends a back-off wait: an offer once it is due, or shutdown
        self._progress = threading.Condition(threading.Lock())
        self._start_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._exporter: Exporter | None = None
        self._shutdown_deadline: float | None = None
        self._closed = False
        # The endpoint's back-off outlives one export: through an outage the worker makes one attempt
        # per back-off period, however many batches are sealed meanwhile (a fresh back-off per export
        # made ~4 attempts per export timeout forever, each a new gRPC channel and its threads)
        self._retry = RetryState(self._backoff)
        self._backing_off = _BackingOff(self)  # the retry loop's ``stop``, made once
        self._inflight_seq: int | None = None  # first seq of the batch being shipped
        self._flush_target = 0
        self._idle = False  # the worker sleeps on an empty buffer: the next offer wakes it
        self._runnable = False  # the worker is woken or working: offers hand it the GIL now and then
        self._backing = False  # the worker waits out a back-off (_BackingOff): only a kick wakes it
        self._due_at = float("inf")  # monotonic time the worker's batch-age timer expires
        self._wakeups = 0  # times the worker came back from a wait (idle and back-off included)
        self._offers = 0  # offers since start, for the periodic GIL hand-over (see offer_raw)
        self._first_seen: float | None = None  # worker's clock when it first saw the queued items
        self._resource: dict | None = None
        self._budget = 0
        self._logged: set[str] = set()
        self._counts = {
            "lost_rows": 0,  # after leaving the buffer: encode errors, failed exports, shutdown leftovers
            "lost_calls": 0,
            "sent_batches": 0,
            "sent_requests": 0,
            "sent_rows": 0,
            "failed_exports": 0,
            "retries": 0,
            "rejected_records": 0,
            "encode_errors": 0,
            "offer_errors": 0,
            "failed_attempts": 0,  # export attempts that failed, retried or not
            "resent_requests": 0,  # unanswered requests sent once more before the next export (_hold)
        }
        # the exporter's state as last seen: None before any attempt, then whether the last
        # attempt reached the receiver, and the last failure (kept after a recovery)
        self._connected: bool | None = None
        self._last_error: str | None = None

    def _after_fork_in_child(self) -> None:
        # The parent's exporter (and its gRPC channel) is abandoned, never used or
        # closed here: closing it could touch state owned by the parent's threads.
        if self._exporter is not None:
            _FORK_ORPHANS.append(self._exporter)
        if self._link is not None:  # the parent's helper and ring are the parent's
            self._link.abandon()
        for block in list(self._blocks.values()):  # the parent's rows stay the parent's
            block.retire(fork=True)
        self.gate.restart()  # the parent's worker measured the parent's CPU
        self._reset()

    # ------------------------------------------------------------------ hot path

    def offer(self, item: Any) -> None:
        """Queue one captured item; O(1), lock-free, never blocks, never raises.

        Wakes the worker only when needed: when this item makes the queued rows
        cross ``max_batch_rows``, or when the worker sleeps on an empty buffer
        (it then starts the batch's age clock). No clock is read here.
        """
        try:
            # data rows the item contributes (0 for a call that was not sampled)
            if item.inputs is None and item.outputs is None and item.labels is None and item.ids is None:
                rows = 0
            else:
                rows = item.rows if item.rows > 0 else 0
            nbytes = item.size_hint or estimate_size(item)
            calls = 1 if item.kind == "inference" else 0
        except Exception as exc:  # the model must never see our problems
            self._offer_failed(exc)
            return
        self.offer_raw(item, rows, nbytes, calls)

    def offer_raw(self, raw: Any, rows: int, nbytes: int, calls: int = 1) -> None:
        """Queue one item whose captured ``rows``, data ``nbytes`` and model ``calls`` are known.

        The capture side's fast path hands numpy calls here directly in the compact
        tuple form (``driftcar.hook.records.thaw``); :meth:`offer` ends here too.
        Same contract: O(1), lock-free, never blocks, never raises.
        """
        try:
            if self._closed:
                self._count_lost(rows, calls, "offer after shutdown", "items offered after shutdown are dropped")
                return
            if self._helper_ok and self._worker is None:  # the first call makes the ring
                self._start_worker()
            link = self._link
            if link is not None and type(raw) is tuple:
                sealed = link.as_sealed(raw)
                if sealed is not None:
                    self._to_helper(link, sealed)
                    return
            queued = self._buffer.put(raw, nbytes + ITEM_OVERHEAD_BYTES, rows, calls)
            # a batch's worth queued wakes the worker, unless the endpoint's back-off holds it anyway: then
            # the wake-up was futile and, in a back-off wait (which ends on _kick), it left the worker marked
            # runnable, so every 16th offer handed it the GIL for nothing until the wait ended (measured:
            # ~1,200 sleep(0) hand-overs, each a context switch, in 60,000 calls with the endpoint down)
            if self._idle or (queued >= self._max_rows and queued - rows < self._max_rows and not self._backing
                              and _monotonic() >= self._retry.not_before):
                self._idle = False
                self._runnable = True
                self._wake.set()
            if self._worker is None:  # after the put: starting a thread lets other threads run
                self._start_worker()
            self._offers += 1
            if not self._offers & YIELD_EVERY_MASK and queued:
                self.maybe_hand_over()
        except Exception as exc:  # the model must never see our problems
            self._offer_failed(exc)

    def maybe_hand_over(self) -> None:
        """Hand the GIL to the worker if it is runnable (woken, or its batch-age timer has expired).

        Called every YIELD_EVERY offers (and block writes). A model thread calling predict in a
        loop releases and retakes the GIL so often (numpy, sklearn) that CPython's switch timer
        never fires for a waiting thread: measured, the worker woke 0 times in 1 s of 1-row
        predicts, shipped nothing and the buffer dropped. sleep(0) is a yield, not a wait: it
        returns as soon as this thread gets the GIL back. While the worker sleeps on its timer
        or an empty buffer nobody waits, so no yield is made.
        """
        if self._runnable or _monotonic() >= self._due_at:
            if not self._runnable:  # a back-off that is over: the retry runs now, on this hand-over
                self._kick.set()
                self._wake.set()
            time.sleep(0)

    # ------------------------------------------------------------------ columnar blocks

    def block_for(self, method: str, x: Any, y: Any, names: tuple | None) -> Block | None:
        """The open block for calls of this layout (:mod:`driftcar.hook.shipping.blocks`), or None when
        the call cannot use one (shut down, not 2-D in, not 1-D/2-D out with a row per input row,
        object dtypes). Never raises for arrays."""
        if (self._closed or x.ndim != 2 or not 1 <= y.ndim <= 2 or len(y) != len(x) or x.dtype.hasobject
                or y.dtype.hasobject):
            return None
        return self._open_block((method, x.dtype, x.shape[1], y.dtype, y.shape[1:], names),
                                lambda: Block(self, method, x, y, names, self._block_cap))

    def _open_block(self, key: Any, make: Callable[[], Any]) -> Any:
        """The open block under ``key``, made once (``make``) unless shut down: then None."""
        block = self._blocks.get(key)
        if block is None:
            with self._start_lock:
                block = self._blocks.get(key)
                if block is None and not self._closed:
                    block = self._blocks[key] = make()
        return block

    def shed(self, method: str, start_ns: int, duration_ns: int, rows: int, trace_id: int) -> None:
        """A call the CPU budget keeps without its rows (:mod:`driftcar.hook.shipping.budget`): into the
        calls block, sent as calls (never raises; after shutdown counted as a lost call)."""
        try:
            block = self._open_block(_CALLS, lambda: CallsBlock(self, BLOCK_ROWS))
            if block is None or not block.write(method, start_ns, duration_ns, rows, trace_id):
                self._count_lost(0, 1, "offer after shutdown", "items offered after shutdown are dropped")
        except Exception as exc:  # the model must never see our problems
            self._offer_failed(exc)

    def offer_sealed(self, sealed: Any) -> None:
        """Queue a block a model thread sealed because it was full (as :meth:`offer_raw`); with a helper
        process, into its ring (a full ring drops the block, counted)."""
        link = self._link
        if link is not None:
            self._to_helper(link, sealed)
            return
        self.offer_raw(sealed, sealed.rows, _sealed_bytes(sealed), sealed.calls)

    def _cost_cpu_s(self) -> float:
        """The CPU seconds the budget counts as the hook's: this worker thread's (a helper process
        counts all of its own threads)."""
        return _thread_time()

    def _process_cpu_s(self) -> float:
        """The CPU seconds the budget's share is of: this process's (a helper process adds the model
        process's to its own)."""
        return time.process_time()

    def _to_helper(self, link: Any, sealed: Any) -> None:
        """A sealed block into the helper's ring, and the helper's latest CPU budget decision into
        this process's gate (one header read per block: a calls block seals every 256 calls)."""
        if type(sealed) is SealedCalls:
            link.writer.push_calls(sealed)
        else:
            link.writer.push(sealed)
        self.gate.keep = link.writer.keep()

    def block_started(self) -> None:
        """A block got its first call: start the worker, or wake it if it sleeps on an empty buffer
        (it then starts the batch's age clock)."""
        try:
            if self._worker is None:
                self._start_worker()
            if self._idle:
                self._idle = False
                self._runnable = True
                self._wake.set()
        except Exception as exc:  # the model must never see our problems
            self._offer_failed(exc)

    def _open_rows(self) -> int:
        """Rows written to open blocks and not sealed yet (read without their locks: a hint)."""
        return sum(block.rows for block in list(self._blocks.values()))

    def _seal_blocks(self, retire: bool = False) -> None:
        """Queue every open block's calls (batch age, flush, shutdown); with ``retire`` take no more."""
        for block in list(self._blocks.values()):
            if retire:
                sealed = block.retire()
            else:
                with block.lock:
                    sealed = block.seal()
            if sealed is None:
                continue
            link = self._link
            if link is not None:
                self._to_helper(link, sealed)
            else:
                self._buffer.put(sealed, _sealed_bytes(sealed) + ITEM_OVERHEAD_BYTES, sealed.rows, sealed.calls)

    def _offer_failed(self, exc: Exception) -> None:
        try:
            with self._buffer.lock:
                self._counts["offer_errors"] += 1
            self._log_once("offer", "driftcar could not queue a captured item (%s: %s); counted in stats",
                           type(exc).__name__, exc)
        except Exception:
            pass

    def _start_worker(self) -> None:
        with self._start_lock:
            if self._worker is not None or self._closed:
                return
            if self._helper_ok and self._link is None:
                self._link = self._new_link()
            worker = threading.Thread(target=self._run, name="driftcar-shipper", daemon=True)
            worker.start()
            self._worker = worker

    def _new_link(self) -> Any:
        """The ring to a helper process (started by the worker thread), or None: the in-process worker."""
        try:
            from driftcar.hook.shipping import ring
            from driftcar.hook.shipping.helper import HelperLink

            return HelperLink(min(self.config.max_buffer_bytes, HELPER_RING_BYTES)) if ring.available() else None
        except Exception as exc:  # no shared memory here: ship in process
            self._log_once("helper", "driftcar could not set up its helper process (%s: %s); shipping in process",
                           type(exc).__name__, exc)
            return None

    def _start_helper(self) -> None:
        """Start the helper process once (the worker thread at its start, or a shutdown that comes first)."""
        link = self._link
        if link is None:
            return
        try:
            link.start(self.config, self.instance, self.pid)
        except Exception as exc:  # what the ring held is counted as dropped (stats), later blocks too
            link.writer.broken = True
            self._log_once("helper", "driftcar could not start its helper process (%s: %s); rows dropped",
                           type(exc).__name__, exc)

    # ------------------------------------------------------------------ public control

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (thread-safe read) and the exporter's state: ``connected``
        (None before the first attempt, then whether the last attempt reached the receiver),
        ``last_error`` (the last failed attempt's reason, kept after a recovery),
        ``failed_attempts`` (every failed attempt) and ``retries``. With a helper process, its
        counters are added (read from the ring's header) and the exporter's state is its own."""
        out = self._local_stats()
        link = self._link
        if link is not None:
            link.merge(out)
        return out

    def _local_stats(self) -> dict[str, Any]:
        """The counters of this process's buffer and worker (the hook counters its batches carry)."""
        buffer = self._buffer
        with buffer.lock:
            counts = dict(self._counts)
            out: dict[str, Any] = {
                "instance": self.instance,
                "pid": self.pid,
                "dropped_rows": buffer.dropped_rows + counts.pop("lost_rows"),
                "dropped_calls": buffer.dropped_calls + counts.pop("lost_calls"),
                "buffer_dropped_rows": buffer.dropped_rows,
                "queued_rows": buffer.rows + self._open_rows(),
                "queued_items": len(buffer),
                "queued_bytes": buffer.bytes,
                "max_buffer_bytes": buffer.max_bytes,
            }
        out.update(counts)
        out["worker_wakeups"] = self._wakeups
        out.update(self.gate.stats())
        out["connected"] = self._connected
        out["last_error"] = self._last_error
        return out

    def _observe(self, outcome: Any) -> None:
        """Track the exporter's state per attempt (worker thread), so an outage shows in :attr:`stats`."""
        if outcome is _REACHED:  # a connection before an export: the export is the attempt counted
            self._connected = True
            return
        self._wakeups += 1  # an attempt: the worker ran (after a back-off wait, or at once)
        if outcome.ok:
            self._connected = True
            return
        self._connected = False
        self._last_error = f"{outcome.error}: {outcome.detail}" if outcome.detail else outcome.error
        with self._buffer.lock:
            self._counts["failed_attempts"] += 1

    def flush(self, timeout: float = 10.0) -> bool:
        """Ship everything offered before this call; True when nothing of it is left by ``timeout`` s.

        Items that could not be delivered count as handled (they are in
        :attr:`stats`); False means the deadline came first. Never raises.
        """
        deadline = time.monotonic() + max(float(timeout), 0.0)
        self._seal_blocks()  # the calls written to blocks so far are offered before now too
        link = self._link
        if link is not None and not link.flush(deadline):
            return False
        target = self._buffer.seq
        if target == 0 or self._done(target):
            return True
        with self._progress:
            self._flush_target = max(self._flush_target, target)
        self._runnable = True
        self._wake.set()
        self._kick.set()
        if self._worker is None:
            self._start_worker()
        with self._progress:
            while not self._done(target):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._worker is None:
                    return False
                # drops made by offers do not notify; re-check at least every 50 ms, and end a
                # back-off wait when it is over (the worker waits for offers: see _BackingOff)
                wait, now = min(remaining, 0.05), time.monotonic()
                if not self._runnable and self._due_at > now:
                    wait = min(wait, self._due_at - now)
                self._progress.wait(wait)
                if not self._runnable and time.monotonic() >= self._due_at:
                    self._kick.set()
        return True

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flush and stop within ``timeout`` s; True when everything queued was handled in time.

        Idempotent. Items still queued at the deadline are dropped and counted.
        Later offers are dropped and counted.
        """
        deadline = time.monotonic() + max(float(timeout), 0.0)
        with self._start_lock:
            already = self._closed
            self._closed = True
            self._shutdown_deadline = deadline
            worker = self._worker
        if already:
            return worker is None or not worker.is_alive()
        self._seal_blocks(retire=True)  # later writes take offer_raw, which counts them as dropped
        link = self._link
        if link is not None:  # the helper ships what it was sent meanwhile, by the same deadline
            if link.writer.pushed_calls:
                self._start_helper()
            link.stop(deadline)
        self._stop.set()
        self._wake.set()
        self._kick.set()
        clean = True
        if worker is not None:
            # leave a moment to cancel an export in flight before the caller's deadline
            worker.join(max(deadline - time.monotonic() - 0.05, 0.0))
            if worker.is_alive():
                clean = False
                self._abort.set()
                self._kick.set()
                exporter = self._exporter
                if exporter is not None:
                    exporter.abort()
                worker.join(max(deadline - time.monotonic(), 0.0))
        left = self._buffer.clear()
        if left:
            clean = False
            self._count_lost_entries(left, "shutdown", "%d items still queued at shutdown were dropped", len(left))
        if worker is None or not worker.is_alive():
            self._close_exporter()
        if link is not None:
            clean = link.wait(deadline) and clean
        return clean and (worker is None or not worker.is_alive())

    # ------------------------------------------------------------------ worker

    def _done(self, target: int) -> bool:
        oldest = self._buffer.oldest_seq()
        inflight = self._inflight_seq
        held = self._held_seq()
        return ((oldest is None or oldest > target) and (inflight is None or inflight > target)
                and (held is None or held > target))

    def _held_seq(self) -> int | None:
        """The sequence number of the oldest held request (any thread; held in sequence order)."""
        try:
            return self._held[0][3]
        except IndexError:
            return None

    def _pending(self) -> bool:
        return bool(len(self._buffer)) or self._open_calls() or bool(self._held)

    def _open_calls(self) -> bool:
        """Calls written to open blocks and not sealed yet (read without their locks: a hint)."""
        return any(block.calls for block in list(self._blocks.values()))

    def _due(self, now: float) -> bool:
        buffer = self._buffer
        if not self._pending():
            return False
        held = self._held_seq()
        if held is not None and (self._stop.is_set() or now >= self._retry.not_before or self._flush_target >= held):
            return True  # its one more attempt, before anything newer (a flush's waits for the back-off)
        if self._first_seen is None:
            self._first_seen = now
        if self._stop.is_set():
            self._seal_blocks()
            return bool(len(buffer))
        if now >= self._retry.not_before:
            if buffer.rows >= self._max_rows:
                return True
            if now - self._first_seen >= self.config.max_batch_age_s:  # open blocks go with this batch
                self._seal_blocks()
                return bool(len(buffer))
        with self._progress:
            return self._flush_target >= (buffer.oldest_seq() or 0) > 0

    def _run(self) -> None:
        # The age clock of a batch starts when this thread first sees it queued: an offer to
        # an empty buffer wakes it (``_idle``), so that is within a scheduling delay of the
        # offer, and offers need no clock. Items left after a full batch start a new clock.
        buffer = self._buffer
        gate = self.gate
        self._start_helper()
        if self._link is None:  # this thread converts and encodes (with a helper process, the helper does)
            _keep_batch_pages(2 * self.config.max_request_bytes)  # a batch's buffers: a few requests' worth
        try:
            while not self._abort.is_set():
                try:
                    self._runnable = False
                    if not self._pending():
                        self._first_seen = None
                        self._due_at = float("inf")
                        self._idle = True  # set before the re-check, so an offer in between still wakes us
                        if not self._pending() and not self._stop.is_set():
                            self._wake.wait()
                        self._idle = False
                    elif not self._stop.is_set():
                        first = self._first_seen
                        if first is None:
                            first = self._first_seen = time.monotonic()
                        # while the endpoint backs off, queued rows wait for the next allowed attempt
                        # (the buffer's byte bound still holds): sealing a batch per batch age only to
                        # drop it woke this thread and encoded rows for nothing through an outage
                        aged = first + self.config.max_batch_age_s
                        if self._held:  # a held request is due as soon as the back-off allows
                            aged = min(aged, self._retry.not_before)
                        self._due_at = max(aged, self._retry.not_before)
                        wait = self._due_at - time.monotonic()
                        if self._retry.not_before > aged or self._held:  # the back-off decides: an offer
                            wait = max(wait, self.config.retry_max_backoff_s)  # ends the wait (_BackingOff)
                        self._wake.wait(max(wait, 0.0))
                    self._runnable = True
                    self._wakeups += 1
                    self._wake.clear()
                    while not self._abort.is_set() and self._due(time.monotonic()):
                        self._ship_next()
                        self._first_seen = None
                        if self._link is None:  # with a helper, the helper's share decides (_to_helper)
                            gate.update(self._cost_cpu_s())  # its share decides how many calls keep their rows
                    if self._stop.is_set() and ((buffer.oldest_seq() is None and not self._held)
                                                or self._abort.is_set()):
                        break
                except Exception as exc:  # a bug: say so once, keep shipping (bounded retry pace)
                    self._log_once("worker", "driftcar shipper worker hit an unexpected error: %r", exc)
                    self._abort.wait(0.1)
        finally:
            while self._held:  # stopped before their one more attempt
                _, rows, calls, _ = self._held.popleft()
                self._count_lost(rows, calls, "shutdown", "driftcar shutdown deadline passed; unsent rows dropped")
            with self._progress:
                self._progress.notify_all()
            if self._closed:
                self._close_exporter()

    def _ship_next(self) -> None:
        if self._held:
            return self._resend_held()
        with self._progress:
            entries = self._buffer.take(self._max_rows, self.config.max_buffer_bytes)
            if not entries:
                return
            self._inflight_seq = entries.first_seq
        try:
            self._ship(entries)
        except Exception as exc:  # any bug in conversion/encoding loses this batch only
            self._count_lost_entries(entries, "ship",
                             "driftcar could not ship a batch (%s: %s); its rows are counted as dropped",
                             type(exc).__name__, exc)
        finally:
            with self._progress:
                self._inflight_seq = None
                self._progress.notify_all()

    def _hook_counters(self) -> dict[str, int | str]:
        s = self._local_stats()
        return {
            "instance": self.instance,
            "pid": self.pid,
            "dropped_rows": s["dropped_rows"],
            "dropped_calls": s["dropped_calls"],
            "queued_rows": s["queued_rows"],
            "sent_batches": s["sent_batches"],
            "failed_exports": s["failed_exports"],
        }

    def _ship(self, entries: Taken) -> None:
        config = self.config
        if not self._reachable(entries):
            return
        if self._resource is None:
            self._resource = resolve_resource(config.resource)
            self._budget = body_budget(self._resource, config.model_name, config.model_version, config.max_request_bytes)
        convert = self._convert
        try:
            parts = list(convert(thaw_all(entries.items)))
        except Exception as exc:
            with self._buffer.lock:
                self._counts["encode_errors"] += 1
            self._count_lost_entries(entries, "convert",
                             "driftcar could not convert captured items to columns (%s: %s); rows dropped",
                             type(exc).__name__, exc)
            return
        _let_model_run(entries.rows)
        converted_away = sum(int(getattr(p, "dropped_rows", 0) or 0) for p in parts)
        if converted_away:  # the converter logs its own problems once; we count the rows
            self._count_lost(converted_away, 0, None)
        records, tallies = [], []
        for part in parts:
            if not part.rows and not part.calls:
                continue
            done_rows = done_calls = 0
            try:
                # hook counters are read as each body is sealed; a body counts as a batch once
                # it is kept (bodies re-split for size are not counted)
                for chunk, body in encode_part(part, self._budget, self._hook_counters):
                    records.append(record_pieces(
                        body, model_name=config.model_name, model_version=config.model_version,
                        kind=chunk.kind, rows=chunk.rows, trace_id=chunk.trace_id, batch_id=new_batch_id(),
                    ))  # the id is in the payload, so every retry of it carries the same one
                    n_calls = len(next(iter(chunk.calls.values()))) if chunk.calls else 0
                    tallies.append((chunk.rows, n_calls))
                    done_rows += chunk.rows
                    done_calls += n_calls
                    with self._buffer.lock:
                        self._counts["sent_batches"] += 1
                    _let_model_run(chunk.rows)
            except Exception as exc:  # what was already encoded still goes; the rest is counted
                with self._buffer.lock:
                    self._counts["encode_errors"] += 1
                n_calls = len(next(iter(part.calls.values()))) if getattr(part, "calls", None) else 0
                self._count_lost(max(int(part.rows) - done_rows, 0), max(n_calls - done_calls, 0), "encode",
                                 "driftcar could not encode a batch (%s: %s); its rows are counted as dropped",
                                 type(exc).__name__, exc)
        start = 0
        in_pieces = getattr(self._exporter_now(), "pieces", False)  # bodies not joined into the request
        for payload, n_records in pack_requests(records, self._resource, config.max_request_bytes, in_pieces):
            rows = sum(t[0] for t in tallies[start:start + n_records])
            calls = sum(t[1] for t in tallies[start:start + n_records])
            start += n_records
            self._export(payload, rows, calls)

    def _resend_held(self) -> None:
        """The one more attempt of the oldest held request (:meth:`_hold`); its rows are counted as
        dropped if it fails too."""
        payload, rows, calls, seq = self._held[0]
        with self._progress:
            self._inflight_seq = seq
        try:
            with self._buffer.lock:
                self._counts["resent_requests"] += 1
            self._export(payload, rows, calls, resend=True)
        finally:
            self._held.popleft()
            with self._progress:
                self._inflight_seq = None
                self._progress.notify_all()

    def _hold(self, payload: bytes, rows: int, calls: int) -> bool:
        """Keep a request no attempt got an answer for, to send once more before the next export.

        Why: its batch may have been applied (the answer was late or lost), or not. Counting its
        rows as dropped was wrong in the first case; the batch id carried in the payload makes one
        more attempt safe in both (a sidecar that applied it answers the copy as a duplicate
        without applying it again). It waits for the endpoint's back-off like any export.
        """
        if len(self._held) >= MAX_HELD or self._abort.is_set() or self._inflight_seq is None:
            return False
        self._held.append((payload, rows, calls, self._inflight_seq))
        return True

    def _reachable(self, entries: Taken) -> bool:
        """Reach the endpoint (the exporter's ``ready``: a connection, opened if none is) before
        converting and encoding ``entries``; if it is not reached by the export's deadline, their
        rows are counted as dropped, as a failed export's are.

        Why: through an outage every export converted and encoded a whole batch (~40 ms of the
        worker's CPU and ~2,000 page faults per 10,000 rows, measured) only to find the endpoint
        refused. The attempts, the back-off and the counts are an export's: a failed ``ready`` is a
        failed attempt. With a connection open ``ready`` returns at once. An exporter without
        ``ready`` is not asked.
        """
        ready = getattr(self._exporter_now(), "ready", None)
        if ready is None:
            return True
        if self._abort.is_set():
            self._count_lost_entries(entries, "shutdown", "driftcar shutdown deadline passed; unsent rows dropped")
            return False
        failures = self._retry.failures
        result = self._attempts(lambda left: ready(self._attempt_s(left)) or _REACHED,
                                self._deadline(time.monotonic()))
        if result.outcome.ok:  # a connection is no answer: a failing export grows the back-off from here
            self._retry.failures = failures + len(result.outcomes)
            return True
        with self._buffer.lock:
            self._counts["failed_exports"] += 1
        self._count_lost(entries.rows, entries.calls, None)
        return False

    def _exporter_now(self) -> Exporter:
        if self._exporter is None:
            self._exporter = self._exporter_factory(self.config)
        return self._exporter

    def _deadline(self, start: float) -> float:
        """An export's deadline from ``start``, never past a shutdown's."""
        deadline = start + self.config.timeout_s
        return deadline if self._shutdown_deadline is None else min(deadline, self._shutdown_deadline)

    def _attempts(self, attempt: Callable[[float], Any], deadline: float) -> Any:
        """:func:`retry` with the endpoint's back-off; counts the retries and logs each kind of failure once."""
        result = retry(attempt, deadline=deadline, state=self._retry, stop=self._backing_off, observe=self._observe)
        with self._buffer.lock:
            self._counts["retries"] += result.retries
        for failure in result.outcomes:
            self._log_once("export:" + failure.error, "driftcar export to %s: %s %s (logged once per kind)",
                           self.config.endpoint, failure.error, failure.detail)
        return result

    def _export(self, payload: bytes, rows: int, calls: int, resend: bool = False) -> None:
        if self._abort.is_set():
            self._count_lost(rows, calls, "shutdown", "driftcar shutdown deadline passed; unsent rows dropped")
            return
        exporter = self._exporter_now()
        start = time.monotonic()
        if resend:  # its one more attempt gets the whole deadline after the back-off
            start = max(start, self._retry.not_before)
        result = self._attempts(lambda left: exporter.export(payload, self._attempt_s(left)), self._deadline(start))
        outcome = result.outcome
        if outcome.ok:
            with self._buffer.lock:
                self._counts["sent_requests"] += 1
                self._counts["sent_rows"] += rows
                self._counts["rejected_records"] += outcome.rejected
            if outcome.rejected or outcome.detail:  # a partial success, or a warning from the receiver
                self._log_once("partial", "driftcar receiver rejected %d records: %s (logged once)",
                               outcome.rejected, outcome.detail)
            return
        if outcome.unanswered and not resend and self._hold(payload, rows, calls):
            return
        with self._buffer.lock:
            self._counts["failed_exports"] += 1
        self._count_lost(rows, calls, None)

    def _attempt_s(self, left: float) -> float:
        """Seconds one attempt may take: half the export's deadline when the back-off after it and a
        retry still fit in the ``left`` seconds, else all of them.

        Why: an attempt left without an answer (late or lost; the batch may have been applied) is
        then retried within the deadline, which the batch ids make safe (the sidecar applies a
        retried batch once). With the whole deadline per attempt a late answer left no retry and
        the applied rows were counted as dropped. Where no retry would fit (a back-off grown by an
        outage), cutting the attempt short would only lose a late answer.
        """
        half = self.config.timeout_s / 2
        return half if half + self._backoff.longest(self._retry.failures) < left else left

    # ------------------------------------------------------------------ helpers

    def _count_lost(self, rows: int, calls: int, kind: str | None, message: str = "", *args: Any) -> None:
        with self._buffer.lock:
            self._counts["lost_rows"] += rows
            self._counts["lost_calls"] += calls
        if kind is not None:
            self._log_once(kind, message, *args)

    def _count_lost_entries(self, entries: Taken, kind: str, message: str, *args: Any) -> None:
        self._count_lost(entries.rows, entries.calls, kind, message, *args)

    def _log_once(self, kind: str, message: str, *args: Any) -> None:
        if kind in self._logged:
            return
        self._logged.add(kind)
        logger.warning(message, *args)

    def _close_exporter(self) -> None:
        exporter, self._exporter = self._exporter, None
        if exporter is not None:
            try:
                exporter.close()
            except Exception:
                pass

    def __enter__(self) -> "Shipper":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown(self.config.exit_timeout_s)

    def __repr__(self) -> str:
        return f"Shipper({self.config.model_name!r}, endpoint={self.config.endpoint!r}, instance={self.instance})"


class _BackingOff:
    """The retry loop's ``stop`` for the shipper: a back-off wait that ends on an offer, not on a timer.

    While the worker waits out a back-off it is neither runnable nor due, so offers make no GIL
    hand-over to it (a flat-out model thread otherwise called ``sleep(0)`` every 16 offers for
    nothing: 227 hand-overs in 2.5 s, endpoint down, then 7-9). Once the back-off is over, the
    next offer that checks the clock ends the wait and hands the GIL over at once.

    Why not a timer: a thread that wakes by itself beside a model thread calling ``predict`` flat
    out may wait for the GIL for as long as the model keeps calling. CPython (3.11) lets a waiter
    ask for the GIL only after a whole switch interval (5 ms) without a release, and the model
    releases it about once per call (numpy's BLAS call), so the waiter is woken, loses the race
    and waits again, while every release now costs the model thread about 25 µs (measured: 1.2x
    CPU per 1-row call for an uninstrumented model in the same process, until the model paused;
    the attempt's connect held the worker 1.6 s). So without offers (an instrumented model that is
    silent while another model runs) the worker wakes by itself only after ``retry_max_backoff_s``:
    an export's rows are retried then or dropped at its deadline, and an empty buffer has no timer.
    """

    __slots__ = ("_shipper",)

    def __init__(self, shipper: Shipper):
        self._shipper = shipper

    def is_set(self) -> bool:
        return self._shipper._abort.is_set()

    def wait(self, timeout: float) -> bool:
        shipper = self._shipper
        now = _monotonic()
        due = now + timeout
        latest = now + max(timeout, shipper.config.retry_max_backoff_s)
        shipper._runnable = False
        shipper._backing = True
        shipper._due_at = due  # the loop sets it afresh before its next wait
        kicked = False  # by an offer (once due) or a shutdown; a kick left from before is cleared
        try:
            while not shipper._abort.is_set():
                shipper._kick.clear()
                now = _monotonic()
                hurry = shipper._stop.is_set()  # a shutdown waits for this batch: retry on time
                if now >= latest or (now >= due and (kicked or hurry)):
                    return False
                kicked = shipper._kick.wait((due if hurry and now < due else latest) - now)
            return True
        finally:
            shipper._backing = False
            shipper._runnable = True


#: exporters inherited from a parent process: kept referenced so that their
#: channels are never finalised in the child
_FORK_ORPHANS: list = []
