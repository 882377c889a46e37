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


def test_a_calls_block_arrives_as_the_same_calls_and_counts_as_received(pair):
    from driftcar.hook.records import SealedCalls

    writer, reader = pair
    # 8 slots, as a calls block has: only the first ``calls`` are sent
    sent = SealedCalls(3, ["predict", "predict_proba", "predict"] + [None] * 5, [1, 2, 3] + [0] * 5,
                       [10, 20, 30] + [0] * 5, [1_000, 5, 7] + [0] * 5, [0, 9 << 70, 0] + [0] * 5)
    assert writer.push_calls(sent) and writer.pushed_calls == 3
    [msg] = reader.messages()
    got = reader.sealed_calls(msg)
    assert got.calls == 3 and got.rows == 0 and len(got.methods) == 3
    mine, theirs = sent.thaw(), got.thaw()
    for name in ("start_ns", "duration_s", "rows", "method"):
        assert list(theirs.calls[name]) == list(mine.calls[name])
    assert theirs.calls["trace_id"] == mine.calls["trace_id"]
    assert int(reader.header[H.received_calls]) == 3


def test_the_helpers_budget_decision_reads_as_keep_and_unset_means_keep_all(pair):
    writer, reader = pair
    assert writer.keep() == 1.0  # the helper has not decided yet
    reader.header[H.keep] = ring.KEEP_ONE // 64
    assert writer.keep() == 1 / 64


def test_the_config_read_first_leaves_the_blocks_sent_before_it_unfreed(pair, monkeypatch):
    # Blocks (and their layout) the model process sent while the helper started sit in the ring
    # before the config, which the helper reads first. Meanwhile the model process keeps pushing:
    # had the config's read freed the ring up to its end, those pushes would overwrite the earlier
    # records before the helper read them (the layout's too: every later block of it was lost).
    from driftcar.hook.shipping import helper

    writer, reader = pair
    early = _sealed(100, 3, rows_per_call=40)  # ~3 KB: the ring holds ~20 of them
    assert writer.push(early)
    config = ShipperConfig(model_name="m", endpoint="http://127.0.0.1:9", protocol="http/protobuf", exit_timeout_s=0.5)
    assert writer.send_object(ring.CONFIG, {"config": config, "instance": "t", "pid": os.getpid()})
    got = []
    made = helper.HelperShipper.__init__

    def made_while_the_model_pushes(self, *args, **kwargs):
        made(self, *args, **kwargs)
        later = 0
        while writer.push(_sealed(1_000 + 3 * later, 3, rows_per_call=40)) and later < 200:
            later += 1  # as many as the ring takes: the space the config's read freed, if any
        os.close(writer.write_fd)  # then end of file, once the helper has read what is there
        writer.write_fd = -1

    monkeypatch.setattr(helper.HelperShipper, "__init__", made_while_the_model_pushes)
    monkeypatch.setattr(helper.HelperShipper, "offer_sealed", lambda self, sealed: got.append(sealed))
    helper._serve(reader)
    assert got, "the helper read no block"
    first = got[0].thaw()
    np.testing.assert_array_equal(first.inputs, early.thaw().inputs)
    assert list(first.calls["start_ns"]) == [100, 101, 102]
