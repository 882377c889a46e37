"""The shipping helper process: conversion, encoding and export off the model process's GIL.

``ShipperConfig(ship_process=True)`` (``DRIFTCAR_SHIP_PROCESS=1``, Linux only): the model
process's :class:`~driftcar.hook.shipping.shipper.Shipper` copies each sealed columnar block into a
shared ring (:mod:`driftcar.hook.shipping.ring`) and this process — ``python -m
driftcar.hook.shipping.helper``, started lazily by the shipper's worker thread, one per shipper and
per process (a forked child starts its own) — rebuilds it and ships it with a :class:`HelperShipper`:
the same Shipper code (batching, batch ids, retry and back-off, drop counting, hook counters on
the wire), only fed from the ring. Its counters go back through the ring's header, so the model
process's ``stats`` stay whole.

Lifetime: it blocks on the pipe (no polling, no timer while idle); it exits after a shutdown
message, or at end-of-file (its parent gone, even by SIGKILL), flushing what it holds within the
``exit_timeout_s``. It ignores SIGINT and SIGTERM sent to the whole process group (a terminal's
Ctrl-C, a supervisor's stop): its parent's exit decides when it goes, so the parent's exit flush
still has somewhere to go.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from driftcar._children import child_env
from driftcar.hook.records import Sealed
from driftcar.hook.shipping import ring
from driftcar.hook.shipping.config import ShipperConfig
from driftcar.hook.shipping.ring import H, PUBLISHED, RingReader, RingWriter
from driftcar.hook.shipping.shipper import Shipper

__all__ = ["HelperLink", "HelperShipper", "main"]

#: suffix of the helper's ``instance`` on the wire: its counters are its own, cumulative per instance
INSTANCE_SUFFIX = "-p"


class HelperShipper(Shipper):
    """The helper's Shipper: the model process's identity, the ring's drops in its wire counters,
    its counters published in the ring's header after every batch."""

    def __init__(self, config: ShipperConfig, reader: RingReader, instance: str, pid: int):
        self._reader, self._parent = reader, (instance + INSTANCE_SUFFIX, pid)
        self._model_stat = f"/proc/{pid}/stat"
        # the CPU budget is decided here, where the work is, on this process's CPU against the model
        # process's and its own (the two clocks below), and obeyed by the model process's capture side
        # through the header (:meth:`publish`)
        super().__init__(config)

    def _cost_cpu_s(self) -> float:
        """Every thread of this process is the hook's cost (reading the ring, converting, encoding,
        exporting), not the worker thread's alone."""
        return time.process_time()

    def _process_cpu_s(self) -> float:
        return _both_cpu_s(self._model_stat)

    def _reset(self) -> None:
        super()._reset()
        self.instance, self.pid = self._parent

    def _local_stats(self) -> dict[str, Any]:
        out = super()._local_stats()
        header = self._reader.header
        if header is not None:  # blocks the model process could not queue are this instance's drops
            out["dropped_rows"] += int(header[H.ring_dropped_rows])
            out["dropped_calls"] += int(header[H.ring_dropped_calls])
        return out

    def _ship_next(self) -> None:
        try:
            super()._ship_next()
        finally:
            self.publish()

    def publish(self) -> None:
        """Mirror the counters in the header (each field has this one writer)."""
        stats, header = super()._local_stats(), self._reader.header
        for name in PUBLISHED:
            header[getattr(H, name)] = stats[name]
        header[H.connected] = -1 if self._connected is None else int(self._connected)
        if self.gate.share is not None:
            header[H.keep] = max(int(self.gate.keep * ring.KEEP_ONE), 1)
        if self._last_error:
            self._reader.set_error(self._last_error)


_TICKS = os.sysconf("SC_CLK_TCK")


def _both_cpu_s(model_stat: str) -> float:
    """The model process's CPU (every thread, ``/proc/<pid>/stat``: clock ticks of 10 ms against the
    budget's periods of 250 ms) and this process's, in seconds: what the budget's share is of."""
    try:
        with open(model_stat, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        model = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)
    except (OSError, IndexError, ValueError):  # the model process is gone: its share is moot
        model = 0.0
    return model + time.process_time()


def _serve(reader: RingReader) -> None:
    """Read descriptors until shutdown or end-of-file. Messages before the config (blocks the model
    process sealed while this process started) wait for it, in order."""
    shipper: HelperShipper | None = None
    held: list[tuple] = []
    while True:
        messages = reader.messages()
        if messages is None:  # the model process is gone (or closed the pipe): ship what is held
            if shipper is not None:
                shipper.shutdown(shipper.config.exit_timeout_s)
                shipper.publish()
            return
        for msg in messages:
            if msg[0] == ring.CONFIG:
                # blocks sent before the config sit before it in the ring, unread: freeing the config's
                # record would free theirs too, and a model calling flat out overwrote them (their
                # layouts with them: every later block of those layouts was lost)
                setup = pickle.loads(reader.record(msg, free=not held))
                shipper = HelperShipper(setup["config"], reader, setup["instance"], setup["pid"])
                if not all([_handle(shipper, reader, early) for early in held]):
                    return
                held = []
            elif shipper is None:
                held.append(msg)
            elif not _handle(shipper, reader, msg):
                return
        if shipper is not None:  # once per read: what it received shows as queued
            shipper.publish()


def _handle(shipper: HelperShipper, reader: RingReader, msg: tuple) -> bool:
    """One descriptor; False after a shutdown. A descriptor it cannot read loses its block only."""
    try:
        return _dispatch(shipper, reader, msg)
    except Exception as exc:  # a bug: the block's rows are counted, the helper goes on
        shipper._count_lost(msg[7] if msg[0] == ring.BLOCK else 0, msg[6] if msg[0] in (ring.BLOCK, ring.CALLS) else 0,
                            "helper",
                            "driftcar helper could not read a block (%s: %s); its rows are counted as dropped",
                            type(exc).__name__, exc)
        return True


def _dispatch(shipper: HelperShipper, reader: RingReader, msg: tuple) -> bool:
    kind = msg[0]
    if kind == ring.BLOCK:
        shipper.offer_sealed(reader.sealed(msg))
    elif kind == ring.CALLS:
        shipper.offer_sealed(reader.sealed_calls(msg))
    elif kind == ring.LAYOUT:
        reader.layouts[msg[2]] = pickle.loads(reader.record(msg))
    elif kind == ring.FLUSH:  # calls: the timeout in ms; rows: the flush's number
        ok = shipper.flush(msg[6] / 1000)
        shipper.publish()
        reader.header[H.flushed if ok else H.flush_failed] = msg[7]
    elif kind == ring.SHUTDOWN:
        reader.header[H.unclean] = not shipper.shutdown(msg[6] / 1000)
        shipper.publish()
        return False
    return True


def main(argv: list[str]) -> None:
    """``python -m driftcar.hook.shipping.helper PIPE_FD REGION_FD``."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    reader = RingReader(int(argv[0]), int(argv[1]))
    try:
        _serve(reader)
    finally:
        reader.header[H.stopped] = 1


class HelperLink:
    """The model process's handle on its helper: the ring's writer and the helper process."""

    def __init__(self, ring_bytes: int):
        self.writer = RingWriter(ring_bytes)
        self.proc: subprocess.Popen | None = None
        self.flushes = 0
        self._start_lock = threading.Lock()

    def start(self, config: ShipperConfig, instance: str, pid: int) -> None:
        """Start the helper (on the shipper's worker thread) and hand it the config; the resource is
        resolved here, where the application's TracerProvider lives."""
        from driftcar.hook.shipping.resource import resolve_resource

        with self._start_lock:
            if self.proc is not None or self.writer.broken:
                return
            self._spawn(dataclasses.replace(config, resource=resolve_resource(config.resource), ship_process=False),
                        instance, pid)

    def _spawn(self, config: ShipperConfig, instance: str, pid: int) -> None:
        writer = self.writer
        env = child_env()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "driftcar.hook.shipping.helper", str(writer.read_fd), str(writer.fd)],
            pass_fds=(writer.read_fd, writer.fd), stdin=subprocess.DEVNULL, env=env)
        writer.close_read_end()
        # the config goes first in the pipe's order, before any block: placed ahead of them by
        # the shipper (see Shipper._start_worker), sent here once the helper exists
        writer.send_object(ring.CONFIG, {"config": config, "instance": instance, "pid": pid})

    def alive(self) -> bool:
        """Starting or running (a helper that never started, or exited, holds nothing)."""
        return not self.writer.broken and (self.proc is None or self.proc.poll() is None)

    @staticmethod
    def as_sealed(raw: tuple) -> Sealed | None:
        """A compact numpy call the blocks did not take (more rows than a block) as a one-call block
        for the ring; None for what only the in-process worker handles (row ids, object dtypes, not 2-D)."""
        method, start, duration, rows, trace, ids, xb, xdtype, xshape, yb, ydtype, yshape, names = raw
        if ids is not None or xb is None or rows <= 0:
            return None
        if xdtype is None:  # copy=False: the caller's arrays themselves
            if xb.dtype.hasobject or yb.dtype.hasobject:
                return None
            xdtype, xshape, ydtype, yshape = xb.dtype, xb.shape, yb.dtype, yb.shape
        if len(xshape) != 2 or not 1 <= len(yshape) <= 2 or yshape[0] != xshape[0]:
            return None
        return Sealed(method, names, xdtype, xshape[1], ydtype, tuple(yshape[1:]), 1, rows, [xb], [yb],
                      [start], [duration], [rows], [trace])

    def merge(self, out: dict[str, Any]) -> None:
        """Add the helper's counters (the ring's header) to the model process's ``stats``."""
        writer, header = self.writer, self.writer.header
        if header is None:
            return
        got_rows, got_calls = int(header[H.received_rows]), int(header[H.received_calls])
        # blocks sent to a helper that is gone (or never started) are lost, not queued
        gone = not self.alive() or bool(header[H.stopped])
        in_pipe_rows, in_pipe_calls = writer.pushed_rows - got_rows, writer.pushed_calls - got_calls
        ring_rows, ring_calls = int(header[H.ring_dropped_rows]), int(header[H.ring_dropped_calls])
        out["dropped_rows"] += int(header[H.dropped_rows]) + ring_rows + (in_pipe_rows if gone else 0)
        out["dropped_calls"] += int(header[H.dropped_calls]) + ring_calls + (in_pipe_calls if gone else 0)
        out["buffer_dropped_rows"] += ring_rows + int(header[H.buffer_dropped_rows])
        out["queued_rows"] += int(header[H.queued_rows]) + (0 if gone else in_pipe_rows)
        for name in ("sent_rows", "sent_requests", "sent_batches", "failed_exports", "retries", "rejected_records",
                     "encode_errors", "failed_attempts"):
            out[name] += int(header[getattr(H, name)])
        out["helper_pid"] = self.proc.pid if self.proc is not None else None
        out["helper_wakeups"] = int(header[H.worker_wakeups])
        out["helper_received_rows"] = got_rows
        if header[H.connected] >= 0:  # the helper's exporter is the one that ships the blocks
            out["connected"] = bool(header[H.connected])
        out["last_error"] = writer.error() or out["last_error"]

    def flush(self, deadline: float) -> bool:
        """Ask the helper to ship what it was sent before now; True when it did by ``deadline``."""
        self.flushes += 1
        number = self.flushes
        header = self.writer.header
        if not self.writer.control(ring.FLUSH, max(int((deadline - time.monotonic()) * 1000), 0), number):
            return False
        pause = 0.001
        while header[H.flushed] < number and header[H.flush_failed] < number:
            if time.monotonic() >= deadline or not self.alive():
                return False
            time.sleep(pause)  # the caller's thread only, bounded by its deadline
            pause = min(pause * 2, 0.02)
        return header[H.flushed] >= number

    def stop(self, deadline: float) -> None:
        """Ask the helper to ship what it holds and exit by ``deadline`` (returns at once)."""
        writer = self.writer
        writer.control(ring.SHUTDOWN, max(int((deadline - time.monotonic() - 0.02) * 1000), 0))
        writer.close_pipe()

    def wait(self, deadline: float) -> bool:
        """Wait for the stopped helper to exit by ``deadline``; True when it did with nothing left unsent
        (or never started)."""
        if self.proc is None:
            return True
        try:
            self.proc.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            return False
        return not self.writer.header[H.unclean]

    def abandon(self) -> None:
        """In a forked child: the parent's helper and ring are the parent's; close this copy of them."""
        writer = self.writer
        for fd in (writer.write_fd, writer.read_fd, writer.fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        writer.write_fd = writer.read_fd = writer.fd = -1
        writer.broken = True
        writer.close()
        _ORPHANS.append(self.proc)  # never waited for here (not this process's child)


_ORPHANS: list = []


if __name__ == "__main__":
    main(sys.argv[1:])
