"""The gRPC front's hand-over codec (:mod:`driftcar.sidecar.handover`) and the sidecar's frame reader
(:class:`driftcar.sidecar.front_link.Frames`): every decoded request comes back exactly, a damaged
payload is refused with a clear error, frames are cut right whatever the reads' sizes."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import pickle

import numpy as np
import pytest

from driftcar.sidecar import handover
from driftcar.sidecar.front import ANSWER, DECODED, HEADER
from driftcar.sidecar.front_link import Frames, FrontLink
from driftcar.sidecar.handover import HandOverError
from driftcar.sidecar.ingest import Decoded, IngestQueue, Ingestor, Item, decode_request
from driftcar.wire import DEFAULT_LIMITS, Batch, StrColumn, decode_batch
from driftcar.wire.codec import NUMERIC_TYPES, Table

from tests.unit.sidecar.batches import inference_body, other_record, record, request
from tests.unit.sidecar.fake_telemetry import FakeTelemetry


def _payload(decoded) -> bytes:
    return bytes(handover.encode(decoded))


def _same_column(a, b) -> None:
    assert type(a) is type(b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()  # bit for bit (NaN, -0.0 included)
    else:
        assert list(a) == list(b)
        if isinstance(a, StrColumn):
            assert a.keys == b.keys and a.codes.dtype == b.codes.dtype and np.array_equal(a.codes, b.codes)


def _same_batch(a: Batch, b: Batch) -> None:
    for f in dataclasses.fields(Batch):
        if f.name not in ("columns", "calls"):
            assert getattr(a, f.name) == getattr(b, f.name), f.name
    assert list(a.columns) == list(b.columns)
    for name in a.columns:
        _same_column(a.columns[name], b.columns[name])
    assert (a.calls is None) == (b.calls is None)
    if a.calls is not None:
        assert (a.calls.rows, a.calls.types, list(a.calls.columns)) == (b.calls.rows, b.calls.types,
                                                                        list(b.calls.columns))
        for name in a.calls.columns:
            _same_column(a.calls.columns[name], b.calls.columns[name])


def _same(a: Decoded, b: Decoded) -> None:
    assert type(b) is Decoded
    assert (a.ignored, a.reasons, a.windows) == (b.ignored, b.reasons, b.windows)
    assert len(a.items) == len(b.items)
    for x, y in zip(a.items, b.items):
        for f in dataclasses.fields(Item):
            if f.name != "batch":
                assert getattr(x, f.name) == getattr(y, f.name), f.name
        _same_batch(x.batch, y.batch)


def _every_dtype(rows: int) -> dict:
    rng = np.random.default_rng(3)
    cols = {}
    for code, dtype in NUMERIC_TYPES.items():
        if dtype.kind == "f":
            values = rng.normal(0, 1e6, rows).astype(dtype)
            if rows >= 3:
                values[:3] = [np.nan, -0.0, np.inf]
        elif dtype.kind == "b":
            values = rng.random(rows) < 0.5
        else:
            info = np.iinfo(dtype)
            values = rng.integers(info.min, info.max, rows, dtype=dtype, endpoint=True)
        cols[f"x_{code}"] = values
    cats = np.array(["a", "é", "", None, "long " * 20], dtype=object)
    cols["s"] = list(cats[rng.integers(0, len(cats), rows)])
    return cols


@pytest.mark.parametrize("rows", [0, 1, 7, 1_000])
def test_a_decoded_request_comes_back_exactly_for_every_dtype(rows):
    calls = {"method": ["predict"], "duration_s": np.array([0.25]), "rows": np.array([rows]),
             "captured": np.array([rows]), "error_type": [None]}
    body = inference_body(_every_dtype(rows), predictions=np.arange(rows) % 3, ids=[f"id{i}" for i in range(rows)],
                          calls=calls, hook={"instance": "h", "dropped_rows": 2})
    req = request(record(body, batch_id=11), record(b"\x00\x01", rows=1), other_record(),
                  record(body, model="other", version="2"))
    decoded = decode_request(req, DEFAULT_LIMITS)
    assert len(decoded.items) == 2 and decoded.reasons and decoded.ignored == 1  # the fixture covers them
    back = handover.decode(_payload(decoded))
    _same(decoded, back)
    for column in back.items[0].batch.columns.values():
        if isinstance(column, np.ndarray):
            assert not column.flags.writeable and column.flags.aligned


def test_arrays_are_not_pickled_through_numpy():
    """The reason for the codec: no array goes through numpy's reduce (~5-7 µs each)."""
    decoded = Decoded(items=[Item("m", "1", decode_batch(inference_body({"x": np.arange(100.0)})), 10, 0)])
    payload = _payload(decoded)
    assert b"_reconstruct" not in payload and b"_frombuffer" not in payload and b"_columnar" in payload
    assert np.arange(100.0).tobytes() in payload
    assert b"_array" in _payload(Decoded(windows=[({}, np.arange(3.0))]))  # an array elsewhere: its bytes too


@pytest.mark.parametrize("cls", [Item, Decoded])
def test_only_a_batch_or_a_call_table_is_rebuilt_with_columns(cls):
    from driftcar.sidecar.handover import _columnar

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj):
            return (_columnar, (cls, {}, [], b"")) if type(obj) is Table else NotImplemented

    out = io.BytesIO()
    Pickler(out, protocol=5).dump(Decoded(items=[Item("m", "1", Batch("inference", 0, {}, {}, {}, calls=Table(
        0, {}, {})), 0, 0)]))
    with pytest.raises(HandOverError, match="rebuilds a"):
        handover.decode(out.getvalue())


def test_arrays_off_the_common_path_come_back_too():
    """Non-contiguous, 2-d and object arrays (not made by the wire decoder, kept correct all the same)."""
    base = np.arange(20, dtype=np.int32)
    batch = Batch("inference", 10, {"strided": base[::2], "grid": base.reshape(4, 5), "objects":
                                    np.array(["a", 1, None], dtype=object)}, {}, {})
    back = handover.decode(_payload(Decoded(items=[Item("m", "1", batch, 0, 0)]))).items[0].batch
    assert np.array_equal(back.columns["strided"], base[::2]) and back.columns["strided"].dtype == np.int32
    assert np.array_equal(back.columns["grid"], base.reshape(4, 5))
    assert back.columns["objects"].tolist() == ["a", 1, None]


def test_calls_table_survives():
    table = Table(2, {"duration_s": np.array([1.5, 2.5]), "method": ["a", "b"]}, {"duration_s": "f8", "method": "str"})
    batch = Batch("inference", 2, {"x": np.zeros(2)}, {"x": "feature"}, {"x": "f8"}, calls=table)
    back = handover.decode(_payload(Decoded(items=[Item("m", "1", batch, 0, 0)])))
    _same_batch(batch, back.items[0].batch)


def _good() -> bytearray:
    return _payload(decode_request(request(record(inference_body(_every_dtype(50)))), DEFAULT_LIMITS))


@pytest.mark.parametrize("cut", [0, 5, 200, -1])
def test_a_short_payload_is_refused(cut):
    with pytest.raises(HandOverError, match="cannot be read"):
        handover.decode(_good()[:cut])


def test_a_damaged_payload_is_refused():
    payload = bytearray(_good())
    payload[2:40] = os.urandom(38)
    with pytest.raises(HandOverError, match="cannot be read|not a decoded request|not a decoded request's type"):
        handover.decode(payload)


@pytest.mark.parametrize("codes", [[0, 3], [-1, 0], [[0, 1]]])
def test_a_str_column_with_codes_outside_its_keys_is_refused_where_it_is_read(codes):
    # its rows are made only when read: a damaged column must fail the hand-over, not the reader later
    column = StrColumn(["a", "b", None], np.array(codes, dtype=np.int32))
    batch = Batch("inference", 2, {"s": column}, {"s": "feature"}, {"s": "str"})
    with pytest.raises(HandOverError, match="codes"):
        handover.decode(_payload(Decoded(items=[Item("m", "1", batch, 0, 0)])))


def test_str_columns_come_back_without_their_rows_made():
    decoded = decode_request(request(record(inference_body({"s": ["a", None, "b", "a"] * 25}))), DEFAULT_LIMITS)
    back = handover.decode(_payload(decoded)).items[0].batch.columns["s"]
    assert type(back) is StrColumn and back._rows is None
    assert back == ["a", None, "b", "a"] * 25 and back._rows is not None


def test_a_foreign_global_is_refused_not_called():
    with pytest.raises(HandOverError, match="posix.system|os.system"):
        handover.decode(pickle.dumps(os.system))


def test_only_numpys_array_rebuilders_are_allowed_from_numpy():
    with pytest.raises(HandOverError, match="numpy.load"):
        handover.decode(pickle.dumps(np.load))


def test_something_else_than_a_decoded_request_is_refused():
    with pytest.raises(HandOverError, match="holds a dict"):
        handover.decode(pickle.dumps({"items": []}))


# --------------------------------------------------------------------------- the sidecar's frame reader


class _Transport:
    def __init__(self):
        self.written = bytearray()
        self.closed = False

    def write(self, data) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def _feed(frames: Frames, data: bytes, step: int) -> None:
    at = 0
    while at < len(data):
        buffer = frames.get_buffer(-1)
        n = min(step, len(buffer), len(data) - at)
        buffer[:n] = data[at: at + n]
        frames.buffer_updated(n)
        at += n


@pytest.mark.parametrize("step", [1, 7, 4096, 262_147, 10**9])
def test_frames_are_cut_right_whatever_the_read_sizes(step):
    async def run():
        got = []
        frames = Frames(lambda link, rid, kind, payload: got.append((rid, kind, bytes(payload))))
        frames.connection_made(_Transport())
        sent = [(1, DECODED, os.urandom(3000)), (2, ANSWER, b""), (3**30, 4, b"x"),
                *((i, DECODED, os.urandom(size)) for i, size in enumerate([270_000, 10, 900_000, 265_000, 13, 40]))]
        _feed(frames, b"".join(HEADER.pack(len(p), rid, kind) + p for rid, kind, p in sent), step)
        assert got == sent

    asyncio.run(run())


def test_a_frame_beyond_the_limit_closes_the_link(monkeypatch):
    async def run():
        import driftcar.sidecar.front_link as front_link

        monkeypatch.setattr(front_link, "MAX_FRAME_BYTES", 100)
        got, link = [], _Transport()
        frames = Frames(lambda *a: got.append(a))
        frames.connection_made(link)
        _feed(frames, HEADER.pack(101, 1, DECODED), 64)
        assert link.closed and not got

    asyncio.run(run())


def test_a_malformed_decoded_frame_is_answered_with_an_error_and_the_next_one_is_queued():
    async def run():
        tel = FakeTelemetry()
        queue = IngestQueue(10**6, 10**9)
        link_owner = FrontLink(None, Ingestor(queue, tel, DEFAULT_LIMITS), {})
        link = _Transport()
        frames = Frames(link_owner._frame)
        frames.connection_made(link)
        good = _good()
        _feed(frames, HEADER.pack(7, 1, DECODED) + b"garbage" + HEADER.pack(len(good), 2, DECODED) + good, 10**9)
        answers = []
        data = bytes(link.written)
        while data:
            length, rid, kind = HEADER.unpack_from(data)
            answers.append((rid, kind, pickle.loads(data[HEADER.size: HEADER.size + length])))
            data = data[HEADER.size + length:]
        assert [(rid, kind) for rid, kind, _ in answers] == [(1, ANSWER), (2, ANSWER)]
        assert answers[0][2][0] == "IngestError" and "internal error" in answers[0][2][1]
        assert answers[1][2].accepted == 1 and len(queue) == 1

    asyncio.run(run())


def test_the_front_sends_a_decoded_request_as_one_write_of_one_whole_frame():
    # written apart, the header alone could wake the sidecar's loop for a read of 13 bytes
    from driftcar.sidecar.front import Relay
    from driftcar.sidecar.ingest import IngestResult

    class Writer:
        def __init__(self):
            self.writes = []

        def write(self, data):
            self.writes.append(bytes(data))

        async def drain(self):
            pass

    async def run():
        writer = Writer()
        relay = Relay(None, writer, DEFAULT_LIMITS)
        sent = request(record(inference_body({"s": ["a", None, "b", "a"] * 25, "x": np.arange(100.0)})))
        data = sent.SerializeToString()
        asking = asyncio.create_task(relay.ingest_body(data, False))
        while not writer.writes:
            await asyncio.sleep(0)
        [frame] = writer.writes
        length, rid, kind = HEADER.unpack_from(frame)
        assert (length, kind) == (len(frame) - HEADER.size, DECODED)
        _same(decode_request(sent, DEFAULT_LIMITS), handover.decode(frame[HEADER.size:]))
        relay._waiting.pop(rid).set_result(IngestResult(accepted=1))
        assert (await asking).accepted == 1

    asyncio.run(run())
