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
