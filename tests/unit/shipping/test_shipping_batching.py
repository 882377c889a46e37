"""Splitting parts so that no request passes the byte cap, with calls counted once."""

import numpy as np
import pytest

from driftcar.hook.shipping.batching import Chunk, body_budget, encode_part, pack_requests, plan_chunks
from driftcar.wire import BatchError, Column, decode_batch
from driftcar.wire.otlp import batch_log_record
from tests.unit.shipping.helpers import Part


def _part(captured, n_features=20, seed=0, strings=False):
    rng = np.random.default_rng(seed)
    rows = int(sum(captured))
    X = rng.normal(size=(rows, n_features))
    columns = [Column(f"x{j}", "feature", X[:, j].copy()) for j in range(n_features)]
    if strings:
        columns.append(Column("s", "feature", ["a" * int(k) for k in rng.integers(0, 4000, size=rows)]))
    calls = {"method": ["predict"] * len(captured), "rows": np.asarray(captured, dtype=np.int64),
             "captured": np.asarray(captured, dtype=np.int64)}
    return Part("inference", rows, columns, calls), X


def _hook():
    return {"instance": "t", "pid": 1}


def test_small_part_is_one_body():
    part, _ = _part([3, 4])
    [(chunk, body)] = list(encode_part(part, 1 << 20, _hook))
    assert chunk.rows == 7 and decode_batch(body).calls.rows == 2


@pytest.mark.parametrize("captured", [[1] * 5_000, [2_000, 3, 1, 9_000, 40], [20_000]], ids=["many", "mixed", "one"])
def test_split_bodies_fit_and_reassemble_exactly(captured):
    part, X = _part(captured)
    budget = 256 * 1024
    out = list(encode_part(part, budget, _hook))
    assert len(out) > 1
    batches = [decode_batch(body) for _, body in out]
    assert all(len(body) <= budget for _, body in out)
    got = np.vstack([np.column_stack([b.columns[f"x{j}"] for j in range(20)]) for b in batches])
    np.testing.assert_array_equal(got, X)
    # every call appears exactly once; within a body, captured maps rows to calls
    calls = [b.calls for b in batches if b.calls is not None]
    assert sum(c.rows for c in calls) == len(captured)
    np.testing.assert_array_equal(np.concatenate([c.columns["rows"] for c in calls]), captured)
    for b in batches:
        if b.calls is not None:
            assert int(np.sum(b.calls.columns["captured"])) == b.rows


def test_uneven_string_rows_are_halved_until_they_fit():
    part, X = _part([50] * 20, n_features=2, strings=True)
    budget = 64 * 1024
    out = list(encode_part(part, budget, _hook))
    assert all(len(body) <= budget for _, body in out)
    assert sum(c.rows for c, _ in out) == 1_000
    got = [v for _, body in out for v in decode_batch(body).columns["s"]]
    assert got == part.columns[-1].data


def test_a_row_too_big_for_any_request_is_an_error():
    part = Part("reference", 1, [Column("s", "feature", ["x" * 4000])], None)
    with pytest.raises(BatchError, match="one row"):
        list(encode_part(part, 1_000, _hook))


def test_plan_without_call_table_cuts_evenly():
    assert plan_chunks(10, None, 4) == [(0, 4, 0, 0, None), (4, 8, 0, 0, None), (8, 10, 0, 0, None)]
    assert plan_chunks(0, [0, 0], 5) == [(0, 0, 0, 2, None)]  # calls without rows stay


def test_requests_are_packed_under_the_cap():
    resource = {"service.name": "s"}
    cap = 200_000
    budget = body_budget(resource, "m", "1", cap)
    records = [batch_log_record(b"\0" * n, model_name="m", model_version="1", kind="inference", rows=1)
               for n in (budget, 10, 10, 150_000, 60_000, budget)]
    requests = pack_requests(records, resource, cap)
    assert [n for _, n in requests] == [3, 1, 1, 1]  # the budget leaves room for small records
    assert all(len(payload) <= cap for payload, _ in requests)


def test_chunk_trace_id_picks_the_first_valid_one():
    chunk = Chunk("inference", 0, [], {"trace_id": [None, "zz" * 16, "ab" * 16]})
    assert chunk.trace_id == b""  # the first 32-char id is not hex: give up rather than guess
    assert Chunk("inference", 0, [], {"trace_id": [None, "ab" * 16]}).trace_id == bytes.fromhex("ab" * 16)
    assert Chunk("inference", 0, [], None).trace_id == b""


from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=300, deadline=None)
@given(captured=st.lists(st.integers(0, 40), min_size=0, max_size=30), target=st.integers(1, 25))
def test_plan_covers_every_row_and_call_exactly_once(captured, target):
    rows = sum(captured)
    pieces = plan_chunks(rows, captured, target)
    # rows: contiguous, in order, nothing lost or repeated, no piece over the target
    assert pieces[0][0] == 0 and pieces[-1][1] == rows
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    assert all(r1 - r0 <= target for r0, r1, *_ in pieces)
    # calls: each in exactly one piece, in order
    call_ids = [k for _, _, c0, c1, _ in pieces for k in range(c0, c1)]
    assert call_ids == list(range(len(captured)))
    # within a piece, the captured counts (with the cut call's override) map exactly its rows
    for r0, r1, c0, c1, last in pieces:
        counts = list(captured[c0:c1])
        if last is not None:
            counts[-1] = last
        if c1 > c0:
            assert sum(counts) == r1 - r0
        else:  # a continuation piece of a call cut in pieces: rows only (or the one piece of nothing)
            assert r1 > r0 or (rows == 0 and not captured)


@pytest.mark.parametrize("sizes", [[0], [10], [127, 128, 16_383, 16_384], [100_000, 3, 70_000], [1 << 20, 5]])
def test_packed_requests_are_the_bytes_protobuf_writes(sizes):
    from driftcar.wire.otlp import export_request

    resource = {"service.name": "svc", "host.name": "h", "process.pid": 12, "ratio": 0.5}
    records = [batch_log_record(b"x" * n, model_name="m", model_version="1", kind="inference", rows=n,
                                time_unix_nano=7, trace_id=b"\x01" * 16 if n % 2 else b"") for n in sizes]
    requests = pack_requests(records, resource, 1 << 30)
    assert requests == [(export_request(records, resource).SerializeToString(), len(records))]
    cap = max(sizes) + 4096  # one record per request at most, each still the protobuf bytes of its group
    start = 0
    for payload, n in pack_requests(records, resource, cap):
        assert len(payload) <= cap
        assert payload == export_request(records[start:start + n], resource).SerializeToString()
        start += n
    assert start == len(records)


@pytest.mark.parametrize("sizes", [[0], [10], [127, 128, 16_383, 16_384], [100_000, 3, 70_000]])
def test_record_pieces_pack_to_the_bytes_protobuf_writes(sizes):
    from driftcar.hook.shipping.batching import record_pieces
    from driftcar.wire.otlp import export_request

    resource = {"service.name": "svc", "host.name": "h"}
    attrs = [dict(model_name="m", model_version="1", kind="inference", rows=n, time_unix_nano=7 + n,
                  trace_id=b"\x01" * 16 if n % 2 else b"") for n in sizes]
    bodies = [bytes(range(256)) * (n // 256) + b"y" * (n % 256) for n in sizes]
    records = [batch_log_record(b, **a) for b, a in zip(bodies, attrs)]
    pieces = [record_pieces(b, **a) for b, a in zip(bodies, attrs)]
    assert [b"".join(p) for p in pieces] == [r.SerializeToString() for r in records]
    assert pack_requests(pieces, resource, 1 << 30) == [(export_request(records, resource).SerializeToString(),
                                                         len(records))]
    cap = max(sizes) + 4096
    assert pack_requests(pieces, resource, cap) == pack_requests(records, resource, cap)
