"""The wire contract: golden vectors both ways, malformed cases, limits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from driftcar.wire import BatchError, Column, Limits, decode_batch, encode_batch
from driftcar.wire.codec import NUMERIC_TYPES

GOLDEN = Path(__file__).resolve().parents[2] / "proto" / "golden"


def _load(kind: str) -> list[dict]:
    """Every schema version's file of ``kind``, each entry tagged with its version ``v``."""
    return [dict(entry, v=version) for version, suffix in ((1, ""), (2, "_v2"))
            for entry in json.loads((GOLDEN / f"{kind}{suffix}.json").read_text())]


VECTORS = _load("vectors")
MALFORMED = _load("malformed")


def _values(values, wire_type):
    values = [float("nan") if v == "NaN" else v for v in values]
    if wire_type == "str":
        return values
    return np.array(values, dtype=NUMERIC_TYPES[wire_type])


def _same(a, b) -> bool:
    a = a.tolist() if isinstance(a, np.ndarray) else list(a)
    b = list(b)
    return len(a) == len(b) and all(
        (x == "NaN" and isinstance(y, float) and math.isnan(y)) or x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
        for x, y in zip(b, a)
    )


@pytest.mark.parametrize("vector", VECTORS, ids=[f"v{v['v']}-{v['name']}" for v in VECTORS])
def test_golden_vector_decodes_to_expected_form(vector):
    expected = vector["expected"]
    batch = decode_batch(bytes.fromhex(vector["hex"]))
    assert batch.version == vector["v"]
    assert batch.kind == expected["kind"]
    assert batch.rows == expected["rows"]
    assert list(batch.columns) == [c[0] for c in expected["columns"]]
    for name, role, wire_type, cls, values in expected["columns"]:
        assert batch.roles[name] == role
        assert batch.types[name] == wire_type
        assert batch.classes.get(name) == cls
        assert _same(batch.columns[name], values), name
    if "calls" in expected:
        assert batch.calls.rows == expected["calls"]["rows"]
        for name, values in expected["calls"]["columns"].items():
            assert _same(batch.calls.columns[name], values), name
    else:
        assert batch.calls is None
    assert batch.hook == expected.get("hook", {})


@pytest.mark.parametrize("vector", VECTORS, ids=[f"v{v['v']}-{v['name']}" for v in VECTORS])
def test_golden_vector_reencodes_to_same_bytes(vector):
    expected = vector["expected"]
    columns = [Column(n, r, _values(v, t), cls=c) for n, r, t, c, v in expected["columns"]]
    calls = None
    if "calls" in expected:
        from driftcar.wire import CALL_COLUMNS

        calls = {n: _values(v, CALL_COLUMNS[n]) for n, v in expected["calls"]["columns"].items()}
    body = encode_batch(expected["kind"], columns, rows=expected["rows"], calls=calls, hook=expected.get("hook"),
                        version=vector["v"])
    assert body.hex() == vector["hex"]


@pytest.mark.parametrize("case", MALFORMED, ids=[f"v{c['v']}-{c['name']}" for c in MALFORMED])
def test_malformed_case_gets_documented_error(case):
    with pytest.raises(BatchError) as info:
        decode_batch(bytes.fromhex(case["hex"]))
    assert case["error"] in info.value.reason
    assert str(info.value) == info.value.reason


def test_numeric_columns_decode_zero_copy():
    body = encode_batch("inference", [Column("x", "feature", np.arange(1000, dtype=np.float64))])
    col = decode_batch(body).columns["x"]
    assert not col.flags.owndata and not col.flags.writeable
    assert isinstance(col.base, (bytes, memoryview))


def test_body_over_byte_limit_is_refused_before_unpacking():
    body = encode_batch("inference", [Column("x", "feature", np.zeros(100))])
    with pytest.raises(BatchError, match="exceeds the limit of 100"):
        decode_batch(body, Limits(max_body_bytes=100))


def test_rows_limit_is_inclusive():
    body = encode_batch("inference", [Column("x", "feature", np.zeros(10))])
    assert decode_batch(body, Limits(max_rows=10)).rows == 10
    with pytest.raises(BatchError, match="outside 0..9"):
        decode_batch(body, Limits(max_rows=9))


def test_encoder_refuses_what_decoder_would_refuse():
    with pytest.raises(BatchError, match="role"):
        encode_batch("inference", [Column("x", "target", np.zeros(2))])
    with pytest.raises(BatchError, match="kind"):
        encode_batch("training", [])
    with pytest.raises(BatchError, match="expected 2"):
        encode_batch("inference", [Column("x", "feature", np.zeros(2)), Column("y", "feature", np.zeros(3))])


def test_nothing_is_unpickled():
    import pickle

    evil = pickle.dumps(object())
    body = msgpack.packb({"v": 1, "kind": "inference", "rows": 1,
                          "columns": [{"name": "x", "role": "feature", "type": "str", "data": [evil]}]}, use_bin_type=True)
    with pytest.raises(BatchError, match="expected str or nil"):
        decode_batch(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_only_ever_raise_batch_error(data):
    try:
        decode_batch(data)
    except BatchError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 300), st.data())
def test_mutated_valid_bodies_only_ever_raise_batch_error(n, data):
    body = bytearray(bytes.fromhex(VECTORS[2]["hex"]))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    body = bytes(body[: len(body) - (n % 7)])
    try:
        decode_batch(body)
    except BatchError:
        pass


def test_a_str_column_of_one_value_encodes_as_the_same_values_one_by_one():
    # lists of one repeated value (or all nil) take a shortcut; a tuple takes the per-value path
    for values in (["predict"] * 5, [None] * 4, ["a", "a", "b"], [None, "x"]):
        n = len(values)
        fast = encode_batch("inference", [Column("s", "feature", list(values))], rows=n)
        slow = encode_batch("inference", [Column("s", "feature", tuple(values))], rows=n)
        assert fast == slow
        assert decode_batch(fast).columns["s"] == list(values)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["a", "bb", "é", ""]), st.just(float("nan")), st.integers(0, 3)),
                max_size=40))
def test_v2_dictionary_columns_decode_to_what_v1_arrays_do(values):
    expected = [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values]
    n = len(values)
    v1 = encode_batch("inference", [Column("s", "feature", list(values))], rows=n, version=1)
    v2 = encode_batch("inference", [Column("s", "feature", list(values))], rows=n, version=2)
    assert decode_batch(v1).columns["s"] == expected
    assert decode_batch(v2).columns["s"] == expected
    assert decode_batch(v2).version == 2 and decode_batch(v1).version == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), st.sampled_from(["a", "bb", "é"])), min_size=6, max_size=30),
                min_size=1, max_size=4))
def test_a_dictionary_column_keeps_its_dictionary_through_concat_and_pickle(parts):
    import pickle

    from driftcar.wire import StrColumn

    decoded = [decode_batch(encode_batch("inference", [Column("s", "feature", values)], rows=len(values))).columns["s"]
               for values in parts]  # at most 3 distinct values in 6+ rows: always the dictionary form
    assert all(isinstance(column, StrColumn) for column in decoded)
    for column in decoded + [StrColumn.concat(decoded)]:
        assert column.codes.min() >= 0 and column.keys[-1] is None
        assert [column.keys[c] for c in column.codes.tolist()] == list(column)
        again = pickle.loads(pickle.dumps(column))
        assert again == column and again.keys == column.keys and np.array_equal(again.codes, column.codes)
    assert StrColumn.concat(decoded) == [v for c in decoded for v in c]


def _dictionary_column(values: list):
    from driftcar.wire import StrColumn

    column = decode_batch(encode_batch("inference", [Column("s", "feature", values)], rows=len(values))).columns["s"]
    assert type(column) is StrColumn and column._rows is None  # nothing read yet: no rows made
    return column


def test_a_dictionary_column_reads_as_the_list_it_stands_for():
    values = ["a", None, "bb", "a", None, "a", "bb", "a"]
    column = _dictionary_column(values)
    assert len(column) == 8 and column.keys == ["a", "bb", None]
    assert [column[i] for i in range(-8, 8)] == values + values  # indexing alone makes no rows
    assert column._rows is None
    with pytest.raises(IndexError):
        column[8]
    with pytest.raises(TypeError):
        column[1.0]
    assert column[2:6] == values[2:6] and column[::-2] == values[::-2] and column[2:6].keys is column.keys
    assert column == values and values == column and not (column != values) and column != values[:-1]
    assert column == _dictionary_column(list(values)) and column != ("a",) and column != "a"
    assert list(column) == values and column.tolist() == values and column.tolist() is not column.tolist()
    assert list(reversed(column)) == values[::-1]
    assert ("bb" in column, "c" in column, column.index("bb"), column.count(None)) == (True, False, 2, 2)
    assert repr(column) == f"StrColumn({values!r})"
    with pytest.raises(TypeError):
        hash(column)


def test_a_dictionary_column_makes_the_arrays_its_list_makes():
    for values in (["x", "yy", "x", "x"], ["x", None, "x", None], ["1.5", "2", "1.5", "2"]):
        column = _dictionary_column(values)
        for dtype in (object, None):  # (an object array is made from the keys: no rows made)
            got, want = np.asarray(column, dtype=dtype), np.asarray(values, dtype=dtype)
            assert got.dtype == want.dtype and got.tolist() == want.tolist()
            assert (column._rows is None) == (dtype is object)
    assert np.asarray(_dictionary_column(["1.5", "2", "1.5", "2"]), dtype=np.float64).tolist() == [1.5, 2.0, 1.5, 2.0]


def test_a_decoded_dictionary_column_encodes_again_to_the_same_bytes():
    values = ["a", None, "bb", "a", None, "a", "bb", "a"]
    column = _dictionary_column(values)
    for version in (1, 2):
        assert encode_batch("inference", [Column("s", "feature", column)], version=version) == encode_batch(
            "inference", [Column("s", "feature", values)], version=version)


def test_v2_dictionary_is_used_only_where_it_is_smaller_and_shares_the_str_objects():
    plan = ["basic", "pro", None, "basic"] * 250
    ids = [f"r{i}" for i in range(1_000)]
    body = encode_batch("inference", [Column("plan", "feature", plan), Column("id", "id", ids)])
    raw = msgpack.unpackb(body)
    assert raw["v"] == 2
    assert raw["columns"][0]["data"]["values"] == ["basic", "pro"]  # first appearance order
    assert isinstance(raw["columns"][1]["data"], list)  # distinct ids: an array is smaller
    decoded = decode_batch(body).columns["plan"]
    assert decoded == plan
    assert len({id(v) for v in decoded}) == 3  # "basic", "pro", None: no str per cell


def test_the_encoder_refuses_an_unknown_version():
    with pytest.raises(BatchError, match="version must be one of"):
        encode_batch("inference", [], version=3)


def test_the_record_attribute_names_the_body_version():
    from driftcar.wire import SCHEMA_VERSION, otlp

    for version in (1, 2):
        body = encode_batch("inference", [Column("s", "feature", ["a", "a"])], version=version)
        record = otlp.batch_log_record(body, model_name="m", model_version="1", kind="inference", rows=2,
                                       schema_version=version)
        attrs = {kv.key: kv.value.int_value for kv in record.attributes if kv.key == otlp.ATTR_SCHEMA_VERSION}
        assert attrs == {otlp.ATTR_SCHEMA_VERSION: decode_batch(body).version} == {otlp.ATTR_SCHEMA_VERSION: version}
    default = otlp.batch_log_record(b"", model_name="m", model_version="1", kind="inference", rows=0)
    assert any(kv.key == otlp.ATTR_SCHEMA_VERSION and kv.value.int_value == SCHEMA_VERSION for kv in default.attributes)


def _body_with(change) -> bytes:
    """A valid v2 body (two f8 columns, a dictionary str column, a calls table), unpacked, changed, packed."""
    body = msgpack.unpackb(encode_batch(
        "inference",
        [Column("a", "feature", np.arange(4.0)), Column("b", "feature", np.ones(4)),
         Column("s", "feature", ["x", "y", "x", None])],
        calls={"method": ["predict"], "rows": np.array([4]), "captured": np.array([4])},
    ), raw=False)
    change(body)
    return msgpack.packb(body, use_bin_type=True)


def _set(path, value):
    def change(body):
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


# Each one breaks one condition of _decode_columns' fast path for a column otherwise shaped for it: the
# column must take the full checks and fail with their message (or, for "class", be accepted).
@pytest.mark.parametrize("change, error", [
    (_set(("columns", 1, "name"), "a"), "body.columns[1].name: duplicate column name 'a'"),
    (_set(("columns", 1, "name"), ""), "body.columns[1].name: length 0 outside 1.."),
    (_set(("columns", 1, "name"), "n" * 10_000), "body.columns[1].name: length 10000 outside 1.."),
    (_set(("columns", 1, "name"), 7), "body.columns[1].name: expected str, got int"),
    (_set(("columns", 1, "role"), "call"), "body.columns[1].role: 'call' is not one of"),
    (_set(("columns", 1, "role"), b"feature"), "body.columns[1].role: expected str, got bytes"),
    (_set(("columns", 1, "type"), "f16"), "body.columns[1].type: 'f16' is not one of"),
    (_set(("columns", 1, "type"), "f4"), "body.columns[1].data: 32 bytes, expected 4 x 4 = 16"),
    (_set(("columns", 1, "data"), b"\0" * 31), "body.columns[1].data: 31 bytes, expected 4 x 8 = 32"),
    (_set(("columns", 1, "data"), [1.0, 2.0, 3.0, 4.0]), "body.columns[1].data: type f8 needs bin, got list"),
    (_set(("columns", 1, "data"), None), "body.columns[1].data: type f8 needs bin, got NoneType"),
    (_set(("columns", 1, "type"), "bool"), "body.columns[1].data: 32 bytes, expected 4 x 1 = 4"),
    (_set(("columns", 1, "extra"), 1), "body.columns[1]: unknown keys ['extra']"),
    (lambda body: body["columns"][1].pop("data") and body["columns"][1].update(cls="c"),
     "body.columns[1]: unknown keys ['cls']"),
    (_set(("columns", 2, "type"), "f8"), "body.columns[2].data: type f8 needs bin, got dict"),
    (_set(("columns", 2, "data", "values"), ["x", 5]), "body.columns[2].data.values[1]: expected str, got int"),
    (_set(("columns", 2, "data", "values"), ["x", "y" * 5_000]), "body.columns[2].data.values[1]: string longer"),
    (_set(("columns", 2, "data", "values"), ["x", "x"]), "body.columns[2].data.values: values must be distinct"),
    (_set(("columns", 2, "data", "codes"), np.array([0, 1, 2, -1], "<i4").tobytes()),
     "body.columns[2].data.codes: codes must be in -1..1"),
    (_set(("columns", 2, "data", "codes"), np.array([0, 1, 0, -2], "<i4").tobytes()),
     "body.columns[2].data.codes: codes must be in -1..1"),
    (_set(("calls", "columns", 1, "data"), np.array([-1], "<i8").tobytes()),
     "body.calls.rows: values must be in 0.."),
    (_set(("calls", "columns", 2, "data"), np.array([2**62], "<i8").tobytes()),
     "body.calls.captured: values must be in 0.."),
    (_set(("calls", "columns", 1, "type"), "f8"), "body.calls.rows: type 'f8', expected 'i8'"),
])
def test_a_column_off_the_fast_path_fails_with_the_full_checks_message(change, error):
    with pytest.raises(BatchError) as info:
        decode_batch(_body_with(change))
    assert info.value.reason.startswith(error), info.value.reason


def test_a_column_off_the_fast_path_is_decoded_as_on_it():
    batch = decode_batch(_body_with(_set(("columns", 1, "class"), "yes")))  # five keys: the full checks
    assert batch.classes == {"b": "yes"} and batch.columns["b"].tolist() == [1.0] * 4
    assert list(batch.columns) == ["a", "b", "s"] and batch.types == {"a": "f8", "b": "f8", "s": "str"}
    assert batch.columns["s"] == ["x", "y", "x", None]
    assert batch.calls.columns["rows"].tolist() == [4] and list(batch.calls.types) == ["method", "rows", "captured"]
