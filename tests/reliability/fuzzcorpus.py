"""Deterministic hostile inputs for the sidecar's receivers (check 8).

``corpus(seed, n, transport)`` yields ``(category, bytes)`` pairs: protobuf
``ExportLogsServiceRequest`` bytes for ``grpc`` / ``http-protobuf``, OTLP/JSON bytes
for ``http-json``. The same seed gives the same inputs (``random.Random`` and
``numpy.random.default_rng`` only). Categories:

random-bytes, mutated-request (bit flips, inserts, deletes, duplications, truncation
of a valid request), mutated-body (the same on the msgpack body inside a valid
envelope), truncated-msgpack, deep-nesting (msgpack, protobuf AnyValue, JSON),
huge-length (msgpack/protobuf length prefixes far beyond the data), nan-inf (NaN and
±Inf in data, call durations, row counts), invalid-utf8 (msgpack, protobuf and JSON
strings), wide (10,000 columns), megabyte-names (column, model, attribute names of
1 MiB), wrong-types (msgpack values of the wrong type) and, for JSON only,
json-shapes (wrong JSON types, bad hex ids).
"""

from __future__ import annotations

import base64
import json
import random
from typing import Iterator

import msgpack
import numpy as np
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from driftcar.wire import VERSIONS, Column, encode_batch
from driftcar.wire import otlp

MiB = 1024 * 1024
#: categories whose inputs are invalid by construction (the sidecar must answer 400 / INVALID_ARGUMENT)
ALWAYS_BAD = {"truncated-msgpack", "huge-length", "wide", "invalid-utf8", "deep-nesting", "wrong-types", "bad-calls"}
#: expensive categories: a fixed small number per run instead of a share of n
RARE = {"wide": 3, "megabyte-names": 3}


def _valid_body(rng: np.random.Generator, rows: int | None = None) -> bytes:
    rows = int(rng.integers(1, 40)) if rows is None else rows
    cols = []
    for j in range(int(rng.integers(1, 6))):
        kind = rng.integers(0, 4)
        if kind == 0:
            data = rng.normal(size=rows)
        elif kind == 1:
            data = rng.integers(-1000, 1000, size=rows)
        elif kind == 2:
            data = rng.random(rows) < 0.5
        else:
            data = [None if rng.random() < 0.1 else f"c{int(rng.integers(0, 5))}" for _ in range(rows)]
        cols.append(Column(f"x{j}", "feature", data))
    cols.append(Column("prediction", "prediction", rng.normal(size=rows)))
    calls = {"start_ns": np.full(1, 1_700_000_000_000_000_000), "duration_s": np.full(1, 0.001),
             "rows": np.full(1, rows), "captured": np.full(1, rows), "method": ["predict"], "error_type": [None]}
    return encode_batch("inference", cols, calls=calls, hook={"instance": "fuzz", "pid": 1, "dropped_rows": 0})


def _envelope(body: bytes, model: str = "fuzz", rows: int | None = None, **resource) -> ExportLogsServiceRequest:
    record = otlp.batch_log_record(body, model_name=model, model_version="1", kind="inference",
                                   rows=0 if rows is None else rows, time_unix_nano=1_700_000_000_000_000_000)
    if rows is None:  # drop the rows attribute (the decoder checks it only when present)
        del record.attributes[[kv.key for kv in record.attributes].index(otlp.ATTR_ROWS)]
    return otlp.export_request([record], {"service.name": "fuzz", **resource})


def _mutate(data: bytes, r: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(r.randint(1, 8)):
        if not buf:
            buf += bytes([r.randrange(256)])
        op = r.randrange(6)
        i = r.randrange(len(buf))
        if op == 0:
            buf[i] ^= 1 << r.randrange(8)
        elif op == 1:
            buf[i] = r.choice((0x00, 0xFF, 0x7F, 0x80, 0xC1, r.randrange(256)))
        elif op == 2:
            buf[i:i] = bytes(r.randrange(256) for _ in range(r.randint(1, 16)))
        elif op == 3:
            del buf[i:i + r.randint(1, 16)]
        elif op == 4:
            j = min(len(buf), i + r.randint(1, 64))
            buf[i:i] = buf[i:j]
        else:
            del buf[r.randrange(len(buf) + 1):]
    return bytes(buf)


def _msgpack_body(r: random.Random, rng: np.random.Generator, what: str) -> bytes:
    rows = 4
    f8 = np.array([np.nan, np.inf, -np.inf, 1.0]).astype("<f8").tobytes()
    col = {"name": "x", "role": "feature", "type": "f8", "data": f8}
    body = {"v": 1, "kind": "inference", "rows": rows, "columns": [col]}
    if what == "nan-inf":
        choice = r.randrange(5)
        if choice == 0:
            col["data"] = rng.choice([np.nan, np.inf, -np.inf], size=rows).astype("<f8").tobytes()
        elif choice == 1:
            body["rows"] = float("nan")
        elif choice == 2:
            body["calls"] = {"rows": 1, "columns": [
                {"name": "duration_s", "role": "call", "type": "f8", "data": np.array([np.inf]).tobytes()},
                {"name": "rows", "role": "call", "type": "i8", "data": np.array([4]).tobytes()}]}
        elif choice == 3:
            body["columns"].append({"name": "p", "role": "prediction", "type": "f8",
                                    "data": np.full(rows, np.nan).tobytes()})
        else:
            body["hook"] = {"dropped_rows": float("inf")}
    elif what == "wrong-types":
        key = r.choice(["v", "kind", "rows", "columns"])
        body[key] = r.choice([None, "x", -1, 2**63, [], {"a": 1}, 3.5, True])
        if key == "v" and body[key] == 1:
            body[key] = max(VERSIONS) + 1
        if key == "kind" and body[key] == "inference":
            body[key] = 7
        if key == "rows":
            body[key] = r.choice([-1, "4", None, [4], 2**40])
        if key == "columns" and body[key] == []:
            body[key] = "nope"
    return msgpack.packb(body, use_bin_type=True)


def _ld(field: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (built by hand: the library refuses to build too-deep messages)."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _deep_request(record_bytes: bytes, depth: int) -> bytes:
    """A request whose record has an attribute of AnyValue kvlists nested ``depth`` deep."""
    value = _ld(1, b"leaf")  # AnyValue.string_value
    for _ in range(depth):  # AnyValue.kvlist_value -> KeyValueList.values -> KeyValue{key, value}
        value = _ld(6, _ld(1, _ld(1, b"k") + _ld(2, value)))
    record = record_bytes + _ld(6, _ld(1, b"deep") + _ld(2, value))  # LogRecord.attributes
    return _ld(1, _ld(2, _ld(2, record)))  # request.resource_logs.scope_logs.log_records


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _protobuf_case(category: str, r: random.Random, rng: np.random.Generator) -> bytes:
    if category == "random-bytes":
        return r.randbytes(r.choice((0, 1, 2, 7, 64, 512, 4096)))
    if category == "mutated-request":
        return _mutate(_envelope(_valid_body(rng), rows=None).SerializeToString(), r)
    if category == "mutated-body":
        return _envelope(_mutate(_valid_body(rng), r)).SerializeToString()
    if category == "truncated-msgpack":
        body = _valid_body(rng)
        return _envelope(body[: r.randrange(len(body))]).SerializeToString()
    if category == "deep-nesting":
        choice = r.randrange(3)
        if choice == 0:  # msgpack arrays nested far beyond any stack
            return _envelope(b"\x91" * r.choice((200, 5_000, 100_000)) + b"\xc0").SerializeToString()
        if choice == 1:  # AnyValue kvlists nested beyond protobuf's recursion limit, in a record attribute
            record = _envelope(_valid_body(rng)).resource_logs[0].scope_logs[0].log_records[0]
            return _deep_request(record.SerializeToString(), r.choice((101, 150, 300, 3_000)))
        return _envelope(msgpack.packb({"v": 1, "kind": "inference", "rows": 1, "columns": [{"name": "x"}] * 1,
                                        "x": [[[[[[]]]]]] * 10})[:-1] + b"\x91" * 3000).SerializeToString()
    if category == "huge-length":
        choice = r.randrange(4)
        if choice == 0:  # array32 / bin32 / map32 / str32 headers declaring ~4 G elements
            header = r.choice((b"\xdd", b"\xc6", b"\xdf", b"\xdb")) + b"\xff\xff\xff\xff"
            return _envelope(header + r.randbytes(r.randrange(16))).SerializeToString()
        if choice == 1:  # a column whose data claims more rows than the body holds
            body = {"v": 1, "kind": "inference", "rows": 2**31, "columns": [
                {"name": "x", "role": "feature", "type": "f8", "data": b"\x00" * 16}]}
            return _envelope(msgpack.packb(body, use_bin_type=True)).SerializeToString()
        if choice == 2:  # a protobuf length prefix far beyond the request
            return b"\x0a" + _varint(r.choice((2**31, 2**40, 2**62))) + r.randbytes(32)
        # a valid envelope whose batch body length field is wrong inside the record
        good = _envelope(_valid_body(rng)).SerializeToString()
        return good[:3] + _varint(2**33) + good[4:]
    if category == "bad-calls":  # per-call row counts that would corrupt counters downstream
        name, wire_type, value = r.choice([("rows", "i8", -1), ("rows", "i8", -(2**63) + 25), ("rows", "i8", 2**62),
                                           ("captured", "i8", -5), ("captured", "i8", 2**40)])
        data = np.array([value], dtype="<i8" if wire_type == "i8" else "<f8").tobytes()
        body = {"v": 1, "kind": "inference", "rows": 1,
                "columns": [{"name": "x", "role": "feature", "type": "f8", "data": b"\x00" * 8}],
                "calls": {"rows": 1, "columns": [{"name": name, "role": "call", "type": wire_type, "data": data}]}}
        return _envelope(msgpack.packb(body, use_bin_type=True)).SerializeToString()
    if category in ("nan-inf", "wrong-types"):
        rows = None if category == "nan-inf" and r.random() < 0.5 else 4
        return _envelope(_msgpack_body(r, rng, category), rows=rows).SerializeToString()
    if category == "invalid-utf8":
        choice = r.randrange(3)
        if choice == 0:  # msgpack str (raw type) with invalid UTF-8 as a column name
            name = b"x\xff\xfe\xc3\x28"
            body = {"v": 1, "kind": "inference", "rows": 1,
                    "columns": [{"name": name, "role": "feature", "type": "f8", "data": b"\x00" * 8}]}
            return _envelope(msgpack.packb(body, use_bin_type=False)).SerializeToString()
        if choice == 1:  # invalid UTF-8 in a string cell
            packed = msgpack.packb({"v": 1, "kind": "inference", "rows": 1, "columns": [
                {"name": "s", "role": "feature", "type": "str", "data": ["\x00PLACEHOLDER"]}]}, use_bin_type=True)
            return _envelope(packed.replace(b"\x00PLACEHOLDER", b"\xed\xa0\x80PLACEHOLD")).SerializeToString()
        # invalid UTF-8 in a protobuf string (the model.name attribute): not a valid protobuf message
        good = _envelope(_valid_body(rng), model="MODELNAMEXX").SerializeToString()
        return good.replace(b"MODELNAMEXX", b"MODEL\xff\xfe\xc3\x28XX")
    if category == "wide":  # 10,000 one-row columns (the limit is 2,048)
        body = {"v": 1, "kind": "inference", "rows": 1, "columns": [
            {"name": f"f{i}", "role": "feature", "type": "f8", "data": b"\x00" * 8} for i in range(10_000)]}
        return _envelope(msgpack.packb(body, use_bin_type=True)).SerializeToString()
    if category == "megabyte-names":
        choice = r.randrange(3)
        big = "n" * MiB
        if choice == 0:
            body = {"v": 1, "kind": "inference", "rows": 1,
                    "columns": [{"name": big, "role": "feature", "type": "f8", "data": b"\x00" * 8}]}
            return _envelope(msgpack.packb(body, use_bin_type=True)).SerializeToString()
        if choice == 1:
            return _envelope(_valid_body(rng), model=big).SerializeToString()
        return _envelope(_valid_body(rng), **{big: "v"}).SerializeToString()
    raise ValueError(category)


def _to_json(data: bytes) -> bytes | None:
    try:
        message = ExportLogsServiceRequest.FromString(data)
    except Exception:
        return None
    return json_format.MessageToJson(message, indent=None).encode()


def _json_case(category: str, r: random.Random, rng: np.random.Generator) -> bytes:
    if category == "random-bytes":
        return r.randbytes(r.choice((0, 1, 2, 7, 64, 512, 4096)))
    if category == "mutated-request":
        return _mutate(_to_json(_envelope(_valid_body(rng)).SerializeToString()), r)
    if category == "deep-nesting" and r.random() < 0.5:
        depth = r.choice((1_000, 100_000))
        return (b'{"resourceLogs":' + b"[" * depth + b"]" * depth + b"}") if r.random() < 0.5 else \
            (b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[{"key":"k","value":'
             + b'{"kvlistValue":{"values":[{"key":"k","value":' * 300 + b"{}" + b"}]}}" * 300 + b"}]}]}]}]}")
    if category == "invalid-utf8" and r.random() < 0.5:
        return b'{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"\xff\xfe"}}]}}]}'
    if category == "json-shapes":
        body = base64.b64encode(_valid_body(rng)).decode()
        record = {"eventName": "driftcar.batch", "body": {"bytesValue": body}, "attributes": [
            {"key": "model.name", "value": {"stringValue": "fuzz"}},
            {"key": "model.version", "value": {"stringValue": "1"}}]}
        choice = r.randrange(7)
        if choice == 0:
            record["traceId"] = r.choice(["zz", "0" * 31, "not hex", "ABCDEF" * 10])
        elif choice == 1:
            record["body"] = {"bytesValue": "!!!not base64!!!"}
        elif choice == 2:
            record["attributes"] = {"model.name": "fuzz"}
        elif choice == 3:
            record["timeUnixNano"] = r.choice(["-1", "1e400", "NaN", [], 2**70])
        elif choice == 4:
            return json.dumps([record]).encode()
        elif choice == 5:
            record["body"] = {"bytesValue": body, "stringValue": "both"}
        else:
            record["attributes"][0]["value"] = {"doubleValue": "NaN"}
        doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}
        return json.dumps(doc).encode()
    data = _protobuf_case(category, r, rng)
    converted = _to_json(data)
    return converted if converted is not None else data  # not protobuf: send the raw bytes as "JSON"


CATEGORIES = ["random-bytes", "mutated-request", "mutated-body", "truncated-msgpack", "deep-nesting", "huge-length",
              "nan-inf", "invalid-utf8", "wrong-types", "bad-calls", "wide", "megabyte-names"]


def corpus(seed: int, n: int, transport: str) -> Iterator[tuple[str, bytes]]:
    """``n`` inputs for ``transport`` (grpc | http-protobuf | http-json), deterministic in ``seed``."""
    r = random.Random(seed)
    rng = np.random.default_rng(seed)
    categories = CATEGORIES + (["json-shapes"] if transport == "http-json" else [])
    common = [c for c in categories if c not in RARE]
    schedule = [c for c, k in RARE.items() for _ in range(k)]
    schedule += [common[i % len(common)] for i in range(max(0, n - len(schedule)))]
    r.shuffle(schedule)
    for category in schedule:
        if transport == "http-json":
            yield category, _json_case(category, r, rng)
        else:
            yield category, _protobuf_case(category, r, rng)
