"""Columnar blocks (the commonest call's path): every row delivered once or counted, same columns as before."""

import os
import threading
import time

import numpy as np
import pytest

import driftcar
from driftcar.hook.columns import to_columns
from driftcar.hook.records import Sealed, thaw_all
from driftcar.hook.shipping import Shipper, ShipperConfig
from driftcar.hook.shipping.blocks import block_capacity
from tests.support.waiting import wait_until
from tests.unit.shipping.helpers import FakeExporter, decoded_batches


def make(exporter, **options):
    options.setdefault("max_batch_age_s", 60.0)
    options.setdefault("retry_initial_backoff_s", 0.01)
    return Shipper(ShipperConfig("m", "1", resource={"service.name": "t"}, **options),
                   exporter_factory=lambda cfg: exporter)


def _instrument(shipper):
    """A fresh model per test (instrumenting one function twice returns its first Monitor)."""
    return driftcar.instrument(lambda X: (X[:, 0] * 2).astype(np.int64), name="m", shipper=shipper)


def _rows(batches) -> np.ndarray:
    blocks = [np.column_stack([b.columns["x0"], b.columns["x1"], b.columns["prediction"]]) for _, b in batches if b.rows]
    return np.vstack(blocks) if blocks else np.empty((0, 3))


def test_four_threads_deliver_every_row_once_in_order_per_thread(shippers):
    fake = FakeExporter()
    s = make(fake, max_batch_rows=64)
    shippers.append(s)
    monitor = _instrument(s)
    calls = 700

    def caller(t: int) -> None:
        x = np.empty((1, 2))
        for i in range(calls):
            x[0] = (t, i)
            monitor(x)  # the same buffer every call: what is shipped must be a copy

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert s.flush(10)
    assert s._blocks, "the calls took the block path"
    got = _rows(decoded_batches(fake.requests()))
    assert len(got) == 4 * calls and s.stats["sent_rows"] == 4 * calls and s.stats["dropped_rows"] == 0
    for t in range(4):
        mine = got[got[:, 0] == t]
        assert mine[:, 1].tolist() == list(range(calls))  # each row once, in this thread's order
        assert (mine[:, 2] == 2 * t).all()
    calls_rows = sum(b.calls.rows for _, b in decoded_batches(fake.requests()))
    assert calls_rows == 4 * calls


def test_a_block_sealed_by_batch_age_ships_with_its_calls_table(shippers):
    fake = FakeExporter()
    s = make(fake, max_batch_rows=1_000, max_batch_age_s=0.2)
    shippers.append(s)
    monitor = _instrument(s)
    before = time.time_ns()
    X = np.array([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0]])
    monitor(X[:1])
    monitor(X[1:])
    X[:] = -1  # the caller reuses its array: the block holds copies
    wait_until(lambda: fake.payloads, 5, what="the open block sealed by the batch age")
    [(record, batch)] = decoded_batches(fake.requests())
    assert batch.rows == 3 and batch.columns["x0"].tolist() == [1.0, 2.0, 3.0]
    assert batch.columns["prediction"].tolist() == [2, 4, 6]
    assert list(batch.calls.columns["rows"]) == [1, 2] and list(batch.calls.columns["captured"]) == [1, 2]
    assert all(before <= t <= time.time_ns() for t in batch.calls.columns["start_ns"])
    assert all(d > 0 for d in batch.calls.columns["duration_s"]) and list(batch.calls.columns["method"]) == ["__call__"] * 2


def test_drops_at_the_buffer_bound_are_whole_blocks_and_every_row_is_counted(shippers):
    fake = FakeExporter(block=threading.Event())  # the first export hangs: blocks pile up in the buffer
    s = make(fake, max_batch_rows=10, max_buffer_bytes=10_000, timeout_s=30.0)
    shippers.append(s)
    monitor = _instrument(s)
    for i in range(200):
        monitor(np.array([[float(i), 0.0]]))
    wait_until(lambda: fake.attempts, 5, what="the worker stuck in its first export")
    dropped = s.stats["buffer_dropped_rows"]
    assert dropped > 0 and dropped % block_capacity(10) == 0, dropped  # the oldest whole blocks
    assert s.stats["queued_bytes"] <= 10_000
    s.shutdown(0.5)
    stats = s.stats
    assert fake.payloads == [] and (stats["dropped_rows"], stats["dropped_calls"]) == (200, 200)
    monitor(np.array([[1.0, 2.0]]))  # after shutdown: counted, never queued
    assert (s.stats["dropped_rows"], s.stats["dropped_calls"]) == (201, 201)
    assert monitor.stats["captured_rows"] == 201


@pytest.mark.parametrize("outputs", [1, 2])
def test_blocks_give_the_same_columns_as_the_tuple_form(outputs):
    fake = FakeExporter()
    s = make(fake, max_batch_rows=100)
    shape = (1,) if outputs == 1 else (1, outputs)
    try:
        block = s.block_for("predict", np.zeros((1, 3)), np.zeros(shape, dtype=np.int32), ("a", "b", "c"))
        raws = []
        rng = np.random.default_rng(1)
        for i in range(40):
            x = rng.normal(size=(1 + i % 3, 3))
            y = (x[:, :outputs] > 0).astype(np.int32).reshape((len(x), *shape[1:]))
            trace = (i + 1) << 64 if i % 4 else 0
            assert block.write("predict", x, y, 1_000 + i, 50 + i, trace) == len(x)
            raws.append(("predict", 1_000 + i, 50 + i, len(x), trace, None, x.tobytes(), x.dtype, x.shape,
                         y.tobytes(), y.dtype, y.shape, ("a", "b", "c")))
        with block.lock:
            sealed = block.seal()
        assert type(sealed) is Sealed and sealed.calls == 40
        [new] = to_columns(thaw_all([sealed]))
        [old] = to_columns(thaw_all(raws))
        assert [(c.name, c.role, c.cls) for c in new.columns] == [(c.name, c.role, c.cls) for c in old.columns]
        for a, b in zip(new.columns, old.columns):
            np.testing.assert_array_equal(a.data, b.data)
            assert a.data.dtype == b.data.dtype
        assert new.calls.keys() == old.calls.keys()
        for name in old.calls:
            assert list(new.calls[name]) == list(old.calls[name]), name
    finally:
        s.shutdown(1.0)


def test_other_layouts_ids_and_big_calls_take_the_tuple_form(shippers):
    fake = FakeExporter()
    s = make(fake, max_batch_rows=20)
    shippers.append(s)
    monitor = _instrument(s)
    monitor(np.ones((1, 2)))
    block = monitor.state.block
    assert block is not None and block.rows == 1
    monitor(np.ones((30, 2)))  # more rows than a block: the tuple form
    with monitor.ids(["r1"]):
        monitor(np.ones((1, 2)))  # row ids: the tuple form
    monitor(np.ones((1, 2), dtype=np.float32))  # another layout: its own block
    assert block.rows == 1 and monitor.state.block is not block and monitor.state.block.rows == 1
    assert s.flush(5)
    batches = decoded_batches(fake.requests())
    assert sum(b.rows for _, b in batches) == 33 and s.stats["sent_rows"] == 33


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_after_fork_the_child_starts_with_an_empty_block(shippers):
    fake = FakeExporter()
    s = make(fake, max_batch_rows=1_000)
    shippers.append(s)
    monitor = _instrument(s)
    for i in range(5):
        monitor(np.array([[float(i), 0.0]]))
    assert s.stats["queued_rows"] == 5
    pid = os.fork()
    if pid == 0:  # the child: report by exit code only
        code = 1
        try:
            empty = s.stats["queued_rows"] == 0
            monitor(np.array([[100.0, 0.0]]))
            monitor(np.array([[101.0, 0.0]]))
            flushed = s.flush(5)
            rows = _rows(decoded_batches(fake.requests()))
            code = 0 if empty and flushed and rows[:, 0].tolist() == [100.0, 101.0] else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert s.flush(5)
    assert _rows(decoded_batches(fake.requests()))[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
