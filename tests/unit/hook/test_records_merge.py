"""``records.thaw_all`` merges consecutive sealed blocks of one layout: the same columns and calls table,
in the same order, as thawing each block alone."""

from __future__ import annotations

import numpy as np

from driftcar.hook.columns import to_columns
from driftcar.hook.records import Captured, Sealed, thaw_all


def _block(method: str, first: int, calls: int, width: int = 3, rows_per_call: int = 1, spare: int = 2) -> Sealed:
    """A sealed block of ``calls`` calls (lists longer than ``calls``, as a block's are)."""
    rng = np.random.default_rng(first)
    xs = [rng.normal(size=(rows_per_call, width)).tobytes() for _ in range(calls)] + [None] * spare
    ys = [np.full(rows_per_call, first + i, dtype=np.int64).tobytes() for i in range(calls)] + [None] * spare
    starts = [1_000 * (first + i) for i in range(calls)] + [0] * spare
    durations = [10 + i for i in range(calls)] + [0] * spare
    nrows = [rows_per_call] * calls + [0] * spare
    traces = [(first + i) << 64 if i % 2 else 0 for i in range(calls)] + [0] * spare
    return Sealed(method, None, np.dtype("f8"), width, np.dtype("i8"), (), calls, calls * rows_per_call, xs, ys,
                  starts, durations, nrows, traces)


def _columns(items: list) -> list:
    return to_columns(items)


def _same(merged: list, alone: list) -> None:
    assert len(merged) == len(alone)
    for new, old in zip(merged, alone):
        assert (new.kind, new.rows) == (old.kind, old.rows)
        assert [c.name for c in new.columns] == [c.name for c in old.columns]
        for a, b in zip(new.columns, old.columns):
            np.testing.assert_array_equal(a.data, b.data)
        for name in old.calls:
            assert list(new.calls[name]) == list(old.calls[name]), name


def test_consecutive_blocks_of_one_layout_become_one_item_with_every_call_in_order():
    blocks = [_block("predict", 0, 5), _block("predict", 100, 3, rows_per_call=2), _block("predict", 200, 4)]
    thawed = thaw_all(blocks)
    assert len(thawed) == 1 and type(thawed[0]) is Captured
    item = thawed[0]
    assert item.rows == 5 + 6 + 4 and len(item.calls["rows"]) == 12
    assert item.calls["rows"].tolist() == [1] * 5 + [2] * 3 + [1] * 4
    assert item.calls["start_ns"].tolist() == [b.starts[i] for b in blocks for i in range(b.calls)]
    _same(_columns(thawed), _columns([b.thaw() for b in blocks]))


def test_other_layouts_and_other_items_end_a_merge_and_keep_their_place():
    other = Captured(kind="inference", method="predict", start_ns=5, duration_s=0.1, rows=1,
                     inputs=np.ones((1, 3)), outputs=np.ones(1, dtype=np.int64))
    items = [_block("predict", 0, 2), _block("predict", 10, 2), _block("predict", 20, 2, width=4),
             _block("predict", 30, 2, width=4), other, _block("predict", 40, 2), _block("predict_one", 50, 2)]
    thawed = thaw_all(items)
    assert [(it.method, it.rows) for it in thawed] == [("predict", 4), ("predict", 4), ("predict", 1),
                                                       ("predict", 2), ("predict_one", 2)]
    alone = [it.thaw() if type(it) is Sealed else it for it in items]
    _same(_columns(thawed), _columns(alone))


def test_a_block_rebuilt_from_the_ring_with_one_byte_string_per_column_merges_too():
    ring = _block("predict", 0, 3)
    ring.xs, ring.ys = [b"".join(ring.xs[:3])], [b"".join(ring.ys[:3])]  # as ring.sealed rebuilds a block
    blocks = [ring, _block("predict", 100, 2)]
    [item] = thaw_all(blocks)
    assert item.rows == 5
    _same(_columns([item]), _columns([b.thaw() for b in blocks]))
