"""The shared-memory ring between a model process and its shipping helper process (Linux).

Why: the in-process worker converts, encodes and exports on the model process's GIL, which the
model's threads then wait for (hand-offs and wake-ups that callgrind does not show but CPU time
does). With ``ship_process`` the model process only copies each sealed columnar block (up to 256
calls of one layout, :mod:`driftcar.hook.shipping.blocks`) into this ring and writes one 48-byte
descriptor to a pipe: one syscall per block, not per call. The helper
(:mod:`driftcar.hook.shipping.helper`) rebuilds the block as a :class:`~driftcar.hook.records.Sealed`
and ships it with the same :class:`~driftcar.hook.shipping.shipper.Shipper` code.

Region (an ``os.memfd_create`` file mapped by both processes, passed with ``pass_fds``): a
4 KiB header of int64 counters (:data:`H`; each field has one writer) and a byte ring. The
model process is the only producer (records are placed under :attr:`RingWriter.lock`, in pipe
order) and the helper the only consumer: records are freed in the order they were written, so a
running ``head`` (model) and ``tail`` (helper, in the header) say what is free. A record that does
not fit before the end of the ring starts at offset 0 (the gap is freed with it). A full ring, a
full pipe or a helper gone drops the block, counted in the header (rows and calls), never waits.

Descriptors (``struct`` :data:`MSG`, atomic pipe writes: < ``PIPE_BUF``): kind, flags, layout
id, and five int64s: record offset, record length, ring end after the record, calls, rows. Kinds:
a layout's block, a layout, the config, flush, shutdown, and a calls block (calls the CPU budget
sent without rows, pickled). The helper writes its CPU budget's decision in the header
(:attr:`H.keep`), which the model process's capture side obeys.
"""

from __future__ import annotations

import mmap
import os
import pickle
import struct
import sys
import threading
from array import array
from typing import Any

import numpy as np

from driftcar.hook.records import Sealed, SealedCalls

__all__ = ["H", "MSG", "RingWriter", "RingReader", "BLOCK", "LAYOUT", "CONFIG", "FLUSH", "SHUTDOWN", "CALLS",
           "HEADER_BYTES", "KEEP_ONE", "available"]

MSG = struct.Struct("<BBxxIqqqqq")
BLOCK, LAYOUT, CONFIG, FLUSH, SHUTDOWN, CALLS = 1, 2, 3, 4, 5, 6
#: ``header[H.keep]`` holds the CPU budget's keep fraction times this (0: not decided yet, keep all)
KEEP_ONE = 1 << 30
TRACED = 1  # flag: the record ends with the calls' trace ids (two uint64 columns: high, low)
HEADER_BYTES = 4096
_ERROR_AT, _ERROR_MAX = 2048, 1024  # the helper's last_error, utf-8, length in H.error_len


class _Fields:
    """Indices of the header's int64 counters (writer in brackets)."""

    tail = 0  # [helper] ring bytes freed so far
    received_rows = 1  # [helper] rows of blocks read from the ring
    received_calls = 2
    sent_rows = 3  # [helper] its Shipper's counters, published after every batch
    sent_requests = 4
    sent_batches = 5
    dropped_rows = 6  # [helper] its buffer's drops + its losses (not the ring's)
    dropped_calls = 7
    failed_exports = 8
    retries = 9
    rejected_records = 10
    encode_errors = 11
    failed_attempts = 12
    worker_wakeups = 13
    queued_rows = 14
    connected = 15  # -1 unknown, 0, 1
    flushed = 16  # [helper] the last flush number done in time
    flush_failed = 17  # [helper] the last flush number whose deadline came first
    error_len = 18
    ring_dropped_rows = 19  # [model] blocks the ring, the pipe or a dead helper refused
    ring_dropped_calls = 20
    stopped = 21  # [helper] 1 once it shut its Shipper down
    buffer_dropped_rows = 22  # [helper] its buffer's drops (in dropped_rows too)
    unclean = 23  # [helper] 1 when its shutdown left rows unsent at the deadline (counted as dropped)
    keep = 24  # [helper] its CPU budget's share of calls kept with rows, x KEEP_ONE (0: not yet decided)


H = _Fields
#: the helper's Shipper counters mirrored in the header, by stats name
PUBLISHED = ("sent_rows", "sent_requests", "sent_batches", "dropped_rows", "dropped_calls", "failed_exports",
             "retries", "rejected_records", "encode_errors", "failed_attempts", "worker_wakeups", "queued_rows", "buffer_dropped_rows")


def available() -> bool:
    """Can this platform run the helper process (``memfd_create``, Linux)?"""
    return hasattr(os, "memfd_create") and bool(sys.executable)


class _Region:
    """The mapping of the shared file: its header as int64s and its ring as bytes."""

    def __init__(self, fd: int, size: int):
        self.fd = fd
        self.mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.header = np.frombuffer(self.mm, dtype=np.int64, count=HEADER_BYTES // 8)
        self.ring_size = size - HEADER_BYTES

    def set_error(self, text: str) -> None:
        data = text.encode("utf-8", "replace")[:_ERROR_MAX]
        self.mm[_ERROR_AT:_ERROR_AT + len(data)] = data
        self.header[H.error_len] = len(data)

    def error(self) -> str | None:
        n = int(self.header[H.error_len])
        return self.mm[_ERROR_AT:_ERROR_AT + n].decode("utf-8", "replace") if n else None

    def close(self) -> None:
        self.header = None
        try:
            self.mm.close()
        except BufferError:  # a view still alive (a stats read in flight): the mapping goes with it
            pass


class RingWriter(_Region):
    """The model process's end: places records in the ring and writes their descriptors."""

    def __init__(self, ring_bytes: int):
        fd = os.memfd_create("driftcar-ring", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, HEADER_BYTES + ring_bytes)
            super().__init__(fd, HEADER_BYTES + ring_bytes)
            self.read_fd, self.write_fd = os.pipe()
        except Exception:
            os.close(fd)
            raise
        os.set_blocking(self.write_fd, False)  # a full pipe drops the block, never waits
        self.header[H.connected] = -1  # no attempt yet
        self.lock = threading.Lock()
        self.head = 0  # ring bytes allocated so far (the helper frees up to header[tail])
        self.layouts: dict[tuple, int] = {}
        self.broken = False  # the helper is gone: every later block is dropped and counted
        self.pushed_rows = self.pushed_calls = 0  # blocks handed to the helper (its received_* catch up)

    def _place(self, parts: list) -> tuple[int, int, int] | None:
        """Copy ``parts`` (flat byte views) into the ring as one record; (offset, length, end) or
        None when the ring has no room (the caller holds :attr:`lock`)."""
        n = sum(map(len, parts))
        size, pos = self.ring_size, self.head % self.ring_size
        gap = size - pos if pos + n > size else 0
        if n > size or self.head + gap + n - int(self.header[H.tail]) > size:
            return None
        offset = at = HEADER_BYTES + (0 if gap else pos)
        mm = self.mm
        for part in parts:
            mm[at:at + len(part)] = part
            at += len(part)
        return offset, n, self.head + gap + n

    def _send(self, kind: int, flags: int = 0, layout: int = 0, placed: tuple = (0, 0, 0), calls: int = 0,
              rows: int = 0) -> bool:
        """One descriptor; False when the pipe is full or the helper gone (the caller holds :attr:`lock`)."""
        if self.broken:
            return False
        try:
            os.write(self.write_fd, MSG.pack(kind, flags, layout, placed[0], placed[1], placed[2], calls, rows))
        except BlockingIOError:
            return False
        except OSError:  # EPIPE: the helper exited
            self.broken = True
            return False
        if placed[2]:
            self.head = placed[2]
        return True

    def send_object(self, kind: int, obj: Any, layout: int = 0) -> bool:
        """A pickled object as a ring record (the helper's config, a layout)."""
        with self.lock:
            placed = self._place([memoryview(pickle.dumps(obj))])
            return placed is not None and self._send(kind, layout=layout, placed=placed)

    def control(self, kind: int, value: int, extra: int = 0) -> bool:
        """A descriptor without a record (a timeout in ms in ``calls``, a flush number in ``rows``)."""
        with self.lock:
            return self._send(kind, calls=value, rows=extra)

    def push(self, sealed: Sealed) -> bool:
        """Queue a sealed block for the helper; False (counted as dropped) when there is no room."""
        c = sealed.calls
        key = (sealed.method, sealed.names, sealed.xdtype.str, sealed.ncols, sealed.ydtype.str, sealed.ytail)
        # array.array for the int columns: ~35 % cheaper than np.array from a list (measured)
        parts = [_joined(sealed.xs, c), _joined(sealed.ys, c), array("q", sealed.starts[:c]),
                 array("q", sealed.durations[:c]), array("q", sealed.nrows[:c])]
        traces = sealed.traces[:c]
        flags = 0
        if any(traces):
            flags = TRACED
            parts += [array("Q", [t >> 64 for t in traces]), array("Q", [t & 0xFFFF_FFFF_FFFF_FFFF for t in traces])]
        parts = [memoryview(p).cast("B") for p in parts]
        with self.lock:
            layout = self.layouts.get(key)
            if layout is None:
                layout = len(self.layouts) + 1
                placed = self._place([memoryview(pickle.dumps(key))])
                if placed is None or not self._send(LAYOUT, layout=layout, placed=placed):
                    return self._dropped(sealed)
                self.layouts[key] = layout
            return self._queue(BLOCK, parts, sealed, flags, layout)

    def push_calls(self, sealed: SealedCalls) -> bool:
        """Queue a sealed calls block (calls the CPU budget sent without rows) for the helper; False
        (counted as dropped) when there is no room. Pickled: 256 calls of ints and a few method names."""
        c = sealed.calls
        record = pickle.dumps((sealed.methods[:c], sealed.starts[:c], sealed.durations[:c], sealed.nrows[:c],
                               sealed.traces[:c]), pickle.HIGHEST_PROTOCOL)
        with self.lock:
            return self._queue(CALLS, [memoryview(record)], sealed)

    def _queue(self, kind: int, parts: list, sealed: Sealed | SealedCalls, flags: int = 0, layout: int = 0) -> bool:
        """One record and its descriptor, counted as pushed, or as dropped when the ring or the pipe
        has no room (the caller holds :attr:`lock`)."""
        placed = self._place(parts)
        if placed is None or not self._send(kind, flags, layout, placed, sealed.calls, sealed.rows):
            return self._dropped(sealed)
        self.pushed_rows += sealed.rows
        self.pushed_calls += sealed.calls
        return True

    def keep(self) -> float:
        """The helper's CPU budget decision: the share of calls to keep with their rows."""
        header = self.header
        value = int(header[H.keep]) if header is not None else 0
        return value / KEEP_ONE if value else 1.0

    def _dropped(self, sealed: Sealed | SealedCalls) -> bool:
        self.header[H.ring_dropped_rows] += sealed.rows
        self.header[H.ring_dropped_calls] += sealed.calls
        return False

    def close_pipe(self) -> None:
        """No more descriptors: the helper reads end-of-file once it has read the rest."""
        with self.lock:
            self.broken = True
            for fd in (self.write_fd, self.read_fd):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self.write_fd = self.read_fd = -1

    def close_read_end(self) -> None:
        """After the helper started: it holds the read end, so a helper gone makes writes fail (EPIPE)."""
        os.close(self.read_fd)
        self.read_fd = -1


def _joined(slots: list, calls: int) -> Any:
    """One call's buffer as it is (bytes or, with ``copy=False``, the caller's array), or the calls' join."""
    first = slots[0]
    if calls == 1:
        return np.ascontiguousarray(first) if isinstance(first, np.ndarray) else first
    return b"".join(slots[:calls])


class RingReader(_Region):
    """The helper's end: reads descriptors from the pipe and records from the ring."""

    def __init__(self, pipe_fd: int, region_fd: int):
        super().__init__(region_fd, os.fstat(region_fd).st_size)
        self.pipe_fd = pipe_fd
        self.layouts: dict[int, tuple] = {}
        self._pending = b""

    def messages(self) -> list[tuple] | None:
        """The next descriptors (blocks until there is one: no polling), or None at end-of-file."""
        data = os.read(self.pipe_fd, MSG.size * 512)
        if not data:
            return None
        data = self._pending + data
        whole = len(data) - len(data) % MSG.size
        self._pending = data[whole:]
        return [MSG.unpack_from(data, at) for at in range(0, whole, MSG.size)]

    def record(self, msg: tuple, free: bool = True) -> bytes:
        """A record's bytes, copied out; its ring space is freed at once, and with it every record
        before it. ``free=False`` for a record read ahead of earlier ones (the config, while blocks
        sent before it wait): those are still unread, and the ring must not reuse their space."""
        _, _, _, offset, length, end, _, _ = msg
        data = self.mm[offset:offset + length]
        if free:
            self.header[H.tail] = end
        return data

    def sealed_calls(self, msg: tuple) -> SealedCalls:
        """A calls descriptor's record as the :class:`SealedCalls` the model process sealed."""
        calls = msg[6]
        methods, starts, durations, nrows, traces = pickle.loads(self.record(msg))
        if not len(methods) == len(starts) == len(durations) == len(nrows) == len(traces) == calls:
            raise ValueError(f"a calls record of {len(methods)} calls where its descriptor says {calls}")
        self.header[H.received_calls] += calls
        return SealedCalls(calls, methods, starts, durations, nrows, traces)

    def sealed(self, msg: tuple) -> Sealed:
        """A block descriptor's record as the :class:`Sealed` the model process sealed."""
        _, flags, layout, _, _, _, calls, rows = msg
        method, names, xdtype, ncols, ydtype, ytail = self.layouts[layout]
        xdtype, ydtype = np.dtype(xdtype), np.dtype(ydtype)
        data = self.record(msg)
        ywidth = int(np.prod(ytail, dtype=np.int64)) if ytail else 1
        xlen, ylen = rows * ncols * xdtype.itemsize, rows * ywidth * ydtype.itemsize
        ints = np.frombuffer(data, dtype=np.int64, count=3 * calls, offset=xlen + ylen).reshape(3, calls)
        traces = [0] * calls
        if flags & TRACED:
            words = np.frombuffer(data, dtype=np.uint64, count=2 * calls, offset=xlen + ylen + 24 * calls)
            traces = [(int(hi) << 64) | int(lo) for hi, lo in zip(words[:calls], words[calls:])]
        self.header[H.received_rows] += rows
        self.header[H.received_calls] += calls
        return Sealed(method, names, xdtype, ncols, ydtype, ytail, calls, rows, [data[:xlen]],
                      [data[xlen:xlen + ylen]], ints[0], ints[1], ints[2], traces)
