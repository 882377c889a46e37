"""Pooled snapshot buffers for large copy=True calls: the bytes of tobytes(), a buffer reused only once
its snapshot is dead (shipped, dropped or discarded), bounded, reset by fork."""

import gc
import os

import numpy as np
import pytest

import driftcar
from driftcar.hook.shipping import Shipper, ShipperConfig
from driftcar.hook.shipping import snapshots
from driftcar.hook.shipping.snapshots import MIN_BYTES, POOL, Snapshot, SnapshotPool, snapshot
from tests.unit.shipping.helpers import FakeExporter, decoded_batches, features

ROWS, COLS = 1000, 20  # 160 KB per call: above MIN_BYTES, more rows than a block takes


def _addr(snap) -> int:
    return snap.__array_interface__["data"][0]


def test_a_snapshot_holds_what_tobytes_holds_whatever_the_layout():
    pool = SnapshotPool()
    x = np.arange(ROWS * COLS, dtype=np.float64).reshape(ROWS, COLS)
    for arr in (x, np.asfortranarray(x), x[::-1], x.astype(np.float32)[:, ::2]):
        snap = pool.copy(arr)
        assert type(snap) is Snapshot and bytes(snap) == arr.tobytes()
        assert np.array_equal(np.frombuffer(snap, dtype=arr.dtype).reshape(arr.shape), arr)
        assert b"".join([snap, snap]) == arr.tobytes() * 2  # the worker joins snapshots of a run


def test_small_inputs_stay_bytes():
    small = np.ones((10, COLS))
    assert small.nbytes < MIN_BYTES and type(snapshot(small)) is bytes
    assert type(snapshot(np.ones((ROWS, COLS)))) is Snapshot


def test_a_buffer_is_reused_only_once_its_snapshot_and_every_view_of_it_are_dead():
    pool = SnapshotPool()
    x = np.ones((ROWS, COLS))
    first = pool.copy(x)
    address = _addr(first)
    view = np.frombuffer(first, dtype=np.float64)  # as thaw makes it: keeps the snapshot alive
    del first
    second = pool.copy(x * 2)
    assert _addr(second) != address and pool.reused == 0  # still in use through the view
    assert np.all(view == 1.0)  # and not overwritten
    del view
    third = pool.copy(x * 3)
    assert _addr(third) == address and pool.reused == 1
    assert np.all(np.frombuffer(second, dtype=np.float64) == 2.0)


def test_idle_buffers_are_bounded():
    x = np.ones((ROWS, COLS))
    pool = SnapshotPool(idle_bytes=3 * x.nbytes + 3 * 16 * 1024)
    snaps = [pool.copy(x) for _ in range(5)]
    del snaps
    assert pool.freed == 2 and pool.idle <= pool.idle_bytes
    assert sum(map(len, pool._idle.values())) == 3


def test_after_fork_the_pool_is_empty_and_older_buffers_stay_out():
    pool = SnapshotPool()
    x = np.ones((ROWS, COLS))
    old = pool.copy(x)
    del x
    kept = pool.copy(np.zeros((ROWS, COLS)))
    del kept  # one idle buffer
    assert pool.idle > 0
    pool.after_fork()
    assert pool.idle == 0 and not any(pool._idle.values())
    del old  # a parent's snapshot dying in the child: its buffer is not taken
    assert pool.idle == 0 and pool.freed == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_starts_with_an_empty_process_pool():
    keep = snapshot(np.ones((ROWS, COLS)))
    dead = snapshot(np.ones((ROWS, COLS)))
    del dead
    assert POOL.idle > 0
    generation = POOL.generation
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 only if the pool was reset
        ok = POOL.idle == 0 and POOL.generation == generation + 1
        del keep
        os._exit(0 if ok and POOL.idle == 0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    del keep


def _shipper(exporter, **options):
    options.setdefault("max_batch_age_s", 60.0)
    return Shipper(ShipperConfig("m", "1", resource={"service.name": "t"}, **options),
                   exporter_factory=lambda cfg: exporter)


def test_queued_snapshots_are_never_overwritten_by_later_calls(shippers):
    fake = FakeExporter()
    s = _shipper(fake, max_batch_rows=4 * ROWS)
    shippers.append(s)
    monitor = driftcar.instrument(lambda X: (X[:, 0] * 2).astype(np.int64), name="m", shipper=s)
    x = np.empty((ROWS, COLS))
    calls = 40
    for i in range(calls):
        x[:] = i  # the caller reuses its buffer: what ships must be each call's snapshot
        monitor(x)
    assert s.flush(10)
    got = features(decoded_batches(fake.requests()), COLS)
    assert s.stats["sent_rows"] == calls * ROWS and s.stats["dropped_rows"] == 0
    assert np.array_equal(got[:, 0], np.repeat(np.arange(calls, dtype=np.float64), ROWS))
    assert np.array_equal(got[:, COLS - 1], got[:, 0])
    assert POOL.reused > 0  # buffers of shipped batches were written again


def test_a_dropped_item_gives_its_buffer_back(shippers):
    gc.collect()
    fake = FakeExporter()
    item_bytes = ROWS * COLS * 8
    # room for two queued calls (the buffer drops the oldest beyond), a batch never due by rows
    s = _shipper(fake, max_batch_rows=10**6, max_buffer_bytes=2 * item_bytes + 4 * 8 * ROWS + 4096)
    shippers.append(s)
    monitor = driftcar.instrument(lambda X: (X[:, 0] * 2).astype(np.int64), name="m", shipper=s)
    x = np.ones((ROWS, COLS))
    monitor(x)
    monitor(x)
    reused, dropped = POOL.reused, s.stats["buffer_dropped_rows"]
    for _ in range(6):
        monitor(x)  # each drops the oldest, whose buffer the next call takes
    assert s.stats["buffer_dropped_rows"] - dropped >= 5 * ROWS
    assert POOL.reused - reused >= 5


def test_shipper_module_uses_one_pool():
    assert snapshots.POOL is POOL


def test_idle_bytes_stay_exact_when_threads_take_and_give_back_at_once():
    import threading

    pool = SnapshotPool(idle_bytes=1 << 30)
    x = np.ones((ROWS, COLS))

    def churn():
        for _ in range(300):
            snaps = [pool.copy(x) for _ in range(3)]
            del snaps

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert pool.idle == sum(size * len(bufs) for size, bufs in pool._idle.items())
    assert pool.reused + pool.fresh == 4 * 300 * 3 and pool.fresh <= 12


def test_sizes_beyond_the_class_bound_are_freed():
    pool = SnapshotPool(idle_bytes=1 << 30)
    snaps = [pool.copy(np.ones((ROWS + 200 * k, COLS))) for k in range(snapshots._CLASSES + 4)]  # 32 KB apart
    del snaps
    assert len(pool._idle) == snapshots._CLASSES and pool.freed == 4
