"""ByteBuffer: bounded in bytes, drops the oldest, counts every drop."""

import pytest

from driftcar.hook.shipping.buffer import ByteBuffer


def test_drops_oldest_when_full_and_counts_rows_and_calls():
    buf = ByteBuffer(1_000)
    for i in range(10):
        buf.put(f"item{i}", nbytes=300, rows=i + 1)
        assert buf.bytes <= 1_000
    kept = buf.take(max_rows=10**9, max_bytes=10**9)
    assert [e.item for e in kept] == ["item7", "item8", "item9"]  # the newest survive
    assert buf.dropped_calls == 7 and buf.dropped_rows == sum(range(1, 8))
    assert buf.bytes == 0 and buf.rows == 0 and len(buf) == 0


def test_an_item_bigger_than_the_bound_is_refused_not_emptying_the_buffer():
    buf = ByteBuffer(1_000)
    buf.put("small", 100, 1)
    buf.put("huge", 5_000, 50)
    assert [e.item for e in buf.take(100, 10**9)] == ["small"]
    assert (buf.dropped_rows, buf.dropped_calls) == (50, 1)


def test_take_respects_rows_and_bytes_but_always_returns_one():
    buf = ByteBuffer(10**6)
    for i in range(5):
        buf.put(i, 100, 10)
    assert [e.item for e in buf.take(max_rows=25, max_bytes=10**6)] == [0, 1]
    assert [e.item for e in buf.take(max_rows=1, max_bytes=1)] == [2]  # one even if over
    assert [e.item for e in buf.take(max_rows=100, max_bytes=150)] == [3]
    assert buf.rows == 10 and buf.bytes == 100
    assert buf.oldest_seq() == 5


def test_sequence_numbers_and_put_result():
    buf = ByteBuffer(10**6)
    assert buf.put("a", 1, 3) == 3 and buf.put("b", 1, 4) == 7
    assert buf.seq == 2 and buf.oldest_seq() == 1


def test_bound_must_be_positive():
    with pytest.raises(ValueError):
        ByteBuffer(0)


def test_only_model_calls_count_as_dropped_calls():
    buf = ByteBuffer(100)
    buf.put("reference rows", 60, 1_000, calls=0)
    buf.put("a call", 60, 5, calls=1)  # pushes the reference item out
    buf.put("another", 60, 5, calls=1)
    assert (buf.dropped_rows, buf.dropped_calls) == (1_005, 1)


from hypothesis import given, settings
from hypothesis import strategies as st

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(1, 400), st.integers(0, 9), st.integers(0, 1)),
        st.tuples(st.just("take"), st.integers(1, 30), st.integers(1, 1_500)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops=OPS, bound=st.integers(1, 1_000))
def test_every_row_is_queued_taken_or_counted_dropped_and_the_bound_holds(ops, bound):
    buf = ByteBuffer(bound)
    put_rows = put_calls = taken_rows = taken_calls = 0
    order = []
    for op in ops:
        if op[0] == "put":
            _, nbytes, rows, calls = op
            buf.put(len(order), nbytes, rows, calls)
            order.append(len(order))
            put_rows += rows
            put_calls += calls
        else:
            for entry in buf.take(op[1], op[2]):
                taken_rows += entry.rows
                taken_calls += entry.calls
        assert 0 <= buf.bytes <= bound
    queued = buf.take(10**9, 10**9)
    assert [e.item for e in queued] == sorted(e.item for e in queued)  # FIFO
    assert taken_rows + buf.dropped_rows + sum(e.rows for e in queued) == put_rows
    assert taken_calls + buf.dropped_calls + sum(e.calls for e in queued) == put_calls
    assert buf.rows == 0 and buf.bytes == 0


def test_lock_free_puts_from_many_threads_keep_exact_counts_and_the_bound():
    """put takes no lock: 4 producer threads and a taker, every row accounted for exactly."""
    import threading

    bound, per_thread, producers = 50_000, 5_000, 4
    buf = ByteBuffer(bound)
    taken = [0, 0]  # rows, calls
    over = []
    done = threading.Event()

    def produce(k):
        for i in range(per_thread):
            buf.put((k, i), 100 + (i % 7) * 50, 1 + i % 3)
            if buf.bytes > bound + producers * 400:  # at most one uncounted item per other producer
                over.append(buf.bytes)

    def consume():
        while not done.is_set() or len(buf):
            for e in buf.take(200, 10**9):
                taken[0] += e.rows
                taken[1] += e.calls

    import sys

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(producers)]
    taker = threading.Thread(target=consume)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        taker.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        taker.join()
    finally:
        sys.setswitchinterval(interval)
    put_rows = producers * sum(1 + i % 3 for i in range(per_thread))
    assert not over
    assert taken[0] + buf.dropped_rows == put_rows
    assert taken[1] + buf.dropped_calls == producers * per_thread
    assert buf.rows == 0 and buf.bytes == 0 and len(buf) == 0
    assert buf.seq == producers * per_thread  # every put got a sequence number, in FIFO order


def test_sequence_numbers_follow_takes_and_drops():
    buf = ByteBuffer(250)
    for i in range(3):
        buf.put(i, 100, 1)  # the third pushes item 0 out
    assert buf.dropped_seq == 1 and buf.oldest_seq() == 2
    assert [(e.item, e.seq) for e in buf.take(10, 10**9)] == [(1, 2), (2, 3)]
    assert buf.oldest_seq() is None and buf.seq == 3
    buf.put(3, 100, 1)
    assert [(e.item, e.seq) for e in buf.clear()] == [(3, 4)]


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(st.tuples(st.integers(1, 300), st.integers(0, 5)), min_size=1, max_size=60),
       max_rows=st.integers(0, 40), max_bytes=st.integers(1, 3_000))
def test_take_pops_the_longest_prefix_that_fits_and_at_least_one_entry(entries, max_rows, max_bytes):
    buf = ByteBuffer(10**9)
    for i, (nbytes, rows) in enumerate(entries):
        buf.put(i, nbytes, rows, 1)
    expected, rows_sum, bytes_sum = 0, 0, 0
    for nbytes, rows in entries:  # the rule, item by item
        if expected and (rows_sum + rows > max_rows or bytes_sum + nbytes > max_bytes):
            break
        expected, rows_sum, bytes_sum = expected + 1, rows_sum + rows, bytes_sum + nbytes
    taken = buf.take(max_rows, max_bytes)
    assert [e.item for e in taken] == list(range(expected))
    assert (taken.rows, taken.nbytes, taken.first_seq) == (rows_sum, bytes_sum, 1)
    assert buf.rows == sum(r for _, r in entries) - rows_sum and len(buf) == len(entries) - expected


def test_take_still_takes_when_a_put_lands_while_the_window_is_copied():
    """A put between two steps of take's window copy (a GC finalizer can switch threads there)
    makes the deque refuse the copy: take must fall back to popping one by one, losing nothing."""
    from collections import deque

    buf = ByteBuffer(10**6)
    for i in range(10):
        buf.put(("early", i), 100, 1)

    class AppendsMidCopy(deque):
        appended = False

        def __iter__(self):
            inner = deque.__iter__(self)
            yield next(inner)
            if not self.appended:
                self.appended = True
                self.append((("late", 0), 100, 1, 1))  # what a put does, as the first copy runs
            yield from inner

    buf._items = AppendsMidCopy(buf._items)
    taken = buf.take(5, 10**9)
    assert [e.item for e in taken] == [("early", i) for i in range(5)]
    rest = buf.take(100, 10**9)
    assert [e.item for e in rest] == [("early", i) for i in range(5, 10)] + [("late", 0)]
