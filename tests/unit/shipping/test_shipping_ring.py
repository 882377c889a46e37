"""The shared ring between the model process and the helper: records round-trip exactly, space is
reused after the reader frees it, a full ring or pipe refuses a block and counts it."""

from __future__ import annotations

import os

import numpy as np
import pytest

from driftcar.hook.records import Sealed
from driftcar.hook.shipping import ring
from driftcar.hook.shipping.config import ShipperConfig
from driftcar.hook.shipping.ring import H, RingReader, RingWriter

pytestmark = pytest.mark.skipif(not ring.available(), reason="memfd_create is Linux-only")


def _sealed(first: int, calls: int, rows_per_call: int = 1, traced: bool = False) -> Sealed:
    xs = [np.full((rows_per_call, 3), float(first + i)).tobytes() for i in range(calls)]
    ys = [np.full(rows_per_call, first + i, dtype=np.int64).tobytes() for i in range(calls)]
    traces = [(first + i) << 70 | 7 if traced else 0 for i in range(calls)]
    return Sealed("predict", ("a", "b", "c"), np.dtype("f8"), 3, np.dtype("i8"), (), calls, calls * rows_per_call,
                  xs + [None] * 4, ys + [None] * 4, [first + i for i in range(calls)] + [0] * 4,
                  [10 * i for i in range(calls)] + [0] * 4, [rows_per_call] * calls + [0] * 4, traces + [0] * 4)


@pytest.fixture
def pair():
    writer = RingWriter(64 * 1024)
    reader = RingReader(writer.read_fd, writer.fd)
    yield writer, reader
    writer.close_pipe()
    os.close(writer.fd)


def _read_blocks(reader: RingReader) -> list[Sealed]:
    out = []
    for msg in reader.messages():
        if msg[0] == ring.LAYOUT:
            reader.layouts[msg[2]] = ring.pickle.loads(reader.record(msg))
        elif msg[0] == ring.BLOCK:
            out.append(reader.sealed(msg))
    return out


@pytest.mark.parametrize("traced", [False, True])
def test_a_block_arrives_as_the_same_columns_and_calls(pair, traced):
    writer, reader = pair
    sent = _sealed(5, 4, rows_per_call=2, traced=traced)
    assert writer.push(sent)
    [got] = _read_blocks(reader)
    mine, theirs = sent.thaw(), got.thaw()
    np.testing.assert_array_equal(theirs.inputs, mine.inputs)
    np.testing.assert_array_equal(theirs.outputs, mine.outputs)
    assert theirs.feature_names == ("a", "b", "c") and theirs.method == "predict"
    for name in ("start_ns", "duration_s", "rows", "captured"):
        np.testing.assert_array_equal(theirs.calls[name], mine.calls[name])
    assert theirs.calls["trace_id"] == mine.calls["trace_id"]
    assert (theirs.calls["trace_id"][0] is not None) == traced
    assert reader.header[H.received_rows] == 8 and reader.header[H.received_calls] == 4


def test_space_freed_by_the_reader_is_reused_across_the_ring_end(pair):
    writer, reader = pair
    got = []
    for first in range(0, 4_000, 100):  # ~7 KB per block: the 64 KiB ring wraps many times
        assert writer.push(_sealed(first, 100))
        got += _read_blocks(reader)
    values = np.concatenate([g.thaw().inputs[:, 0] for g in got])
    np.testing.assert_array_equal(values, np.arange(4_000, dtype=float))
    assert writer.header[H.ring_dropped_rows] == 0


def test_a_full_ring_refuses_blocks_and_counts_their_rows_and_calls(pair):
    writer, reader = pair
    pushed = [writer.push(_sealed(i * 100, 100)) for i in range(20)]  # nobody reads
    refused = pushed.count(False)
    assert pushed[:5] == [True] * 5 and refused > 0 and pushed == sorted(pushed, reverse=True)
    assert writer.header[H.ring_dropped_rows] == writer.header[H.ring_dropped_calls] == 100 * refused
    got = _read_blocks(reader)  # what was accepted is intact
    assert [int(g.thaw().inputs[0, 0]) for g in got] == [i * 100 for i in range(20 - refused)]
    assert writer.push(_sealed(9_000, 100))  # the space is free again


def test_a_reader_gone_makes_later_blocks_dropped_never_a_blocked_writer(pair):
    writer, reader = pair
    os.close(writer.read_fd)
    writer.read_fd = -1
    assert not writer.push(_sealed(0, 3)) and writer.broken
    assert writer.header[H.ring_dropped_rows] == 3


def test_ship_process_is_an_env_option_checked_like_the_others():
    assert ShipperConfig.from_env("m", env={"DRIFTCAR_SHIP_PROCESS": "on"}).ship_process is True
    assert ShipperConfig.from_env("m", env={"DRIFTCAR_SHIP_PROCESS": "0"}).ship_process is False
    assert ShipperConfig("m").ship_process is False
    with pytest.raises(ValueError, match="DRIFTCAR_SHIP_PROCESS"):
        ShipperConfig.from_env("m", env={"DRIFTCAR_SHIP_PROCESS": "maybe"})


@pytest.mark.parametrize("traced", [False, True])
def test_blocks_read_from_the_ring_merge_into_one_run_with_every_call(pair, traced):
    # the helper's worker merges consecutive blocks (records.thaw_all): blocks rebuilt by the reader
    # hold their ints as arrays and one byte string per column, unlike the model side's lists
    from driftcar.hook.records import thaw_all

    writer, reader = pair
    sent = [_sealed(0, 3, traced=traced), _sealed(100, 2, rows_per_call=2, traced=traced), _sealed(200, 4)]
    assert all(writer.push(block) for block in sent)
    [merged] = thaw_all(_read_blocks(reader))
    alone = [block.thaw() for block in sent]
    np.testing.assert_array_equal(merged.inputs, np.concatenate([a.inputs for a in alone]))
    np.testing.assert_array_equal(merged.outputs, np.concatenate([a.outputs for a in alone]))
    for name in ("start_ns", "duration_s", "rows", "captured"):
        np.testing.assert_array_equal(merged.calls[name], np.concatenate([a.calls[name] for a in alone]))
    assert merged.calls["trace_id"] == [t for a in alone for t in a.calls["trace_id"]]
