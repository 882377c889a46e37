"""to_columns: captured items -> wire columns (conventions of proto/BATCH.md), never raising."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from driftcar.hook.columns import BatchPart, dropped_rows, to_columns
from driftcar.hook.records import Captured
from driftcar.wire import Limits, decode_batch, encode_batch


def _item(inputs=None, outputs=None, method="predict", kind="inference", rows=None, **kw) -> Captured:
    if rows is None:
        rows = len(inputs) if isinstance(inputs, (np.ndarray, pd.DataFrame, list)) else 1
    return Captured(kind, method, 1_000, 0.002, rows, inputs=inputs, outputs=outputs, **kw)


def _roundtrip(part: BatchPart):
    """Every part must encode and decode within the default limits."""
    body = encode_batch(part.kind, part.columns, rows=part.rows, calls=part.calls)
    return decode_batch(body)


def _values(data):
    return data.tolist() if isinstance(data, np.ndarray) else list(data)


def _same(a, b) -> bool:
    a, b = _values(a), _values(b)
    return len(a) == len(b) and all(
        (x is None and y is None) or x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        for x, y in zip(a, b)
    )


def test_numpy_rows_get_positional_names_and_keep_dtype():
    X = np.arange(6, dtype="f4").reshape(3, 2)
    [part] = to_columns([_item(X, np.array([1, 0, 1]))])
    batch = _roundtrip(part)
    assert batch.rows == 3
    assert list(batch.columns) == ["x0", "x1", "prediction"]
    assert batch.types == {"x0": "f4", "x1": "f4", "prediction": "i8"}
    assert batch.columns["x1"].tolist() == [1.0, 3.0, 5.0]
    assert batch.roles["prediction"] == "prediction"


def test_probabilities_get_one_column_per_class():
    P = np.array([[0.1, 0.9], [0.7, 0.3]])
    [part] = to_columns([_item(np.zeros((2, 1)), P, method="predict_proba", classes=np.array(["no", "yes"]))])
    batch = _roundtrip(part)
    assert batch.names("probability") == ["proba[no]", "proba[yes]"]
    assert batch.classes == {"proba[no]": "no", "proba[yes]": "yes"}
    assert batch.columns["proba[yes]"].tolist() == [0.9, 0.3]


def test_dataframe_keeps_names_and_types_with_missing_values():
    df = pd.DataFrame(
        {
            "age": [31.0, np.nan, 40.5],
            "city": ["Paris", None, "Lyon"],
            "plan": pd.Categorical(["a", "b", None]),
            "visits": pd.array([1, None, 3], dtype="Int64"),
            "active": [True, False, True],
            "n": np.array([1, 2, 3], dtype="i4"),
            "seen": pd.to_datetime(["2026-01-01", None, "2026-01-02"]),
        }
    )
    [part] = to_columns([_item(df, np.array(["x", "y", "z"], dtype=object))])
    batch = _roundtrip(part)
    assert batch.types == {
        "age": "f8", "city": "str", "plan": "str", "visits": "f8", "active": "bool", "n": "i4", "seen": "f8",
        "prediction": "str",
    }
    assert _same(batch.columns["age"], [31.0, float("nan"), 40.5])
    assert batch.columns["city"] == ["Paris", None, "Lyon"]
    assert batch.columns["plan"] == ["a", "b", None]
    assert _same(batch.columns["visits"], [1.0, float("nan"), 3.0])
    assert batch.columns["active"].tolist() == [True, False, True]
    assert batch.columns["seen"][0] == pd.Timestamp("2026-01-01", tz="UTC").timestamp()
    assert math.isnan(batch.columns["seen"][1])
    assert batch.columns["prediction"] == ["x", "y", "z"]


def test_dict_rows_union_their_keys_and_mark_missing():
    rows = [{"a": 1, "b": "u"}, {"a": 2.5, "c": None}, {"b": "v"}]
    [part] = to_columns([_item(rows, np.array([0.0, 1.0, 2.0]))])
    batch = _roundtrip(part)
    assert list(batch.columns)[:3] == ["a", "b", "c"]
    assert _same(batch.columns["a"], [1.0, 2.5, float("nan")])
    assert batch.columns["b"] == ["u", None, "v"]
    assert _same(batch.columns["c"], [float("nan")] * 3)


def test_river_style_row_scalar_prediction_and_proba_dict():
    items = [
        _item({"x": 1.0, "colour": "red"}, True, method="predict_one"),
        _item({"x": 2.0, "colour": "blue"}, {False: 0.2, True: 0.8}, method="predict_proba_one"),
        _item({"x": 3.0, "colour": "red"}, None, method="learn_one", labels=True),
    ]
    parts = to_columns(items)
    by_method = {p.calls["method"][0]: _roundtrip(p) for p in parts}
    assert by_method["predict_one"].columns["prediction"].tolist() == [True]
    proba = by_method["predict_proba_one"]
    assert proba.classes == {"proba[False]": "False", "proba[True]": "True"}
    assert proba.columns["proba[True]"].tolist() == [0.8]
    learn = by_method["learn_one"]
    assert learn.roles["label"] == "label" and learn.columns["label"].tolist() == [True]
    assert learn.columns["colour"] == ["red"]


def test_learn_one_with_ids_also_emits_a_labels_row():
    items = [_item({"x": 1.0}, None, method="learn_one", labels="spam", ids=["r1"])]
    kinds = {p.kind: _roundtrip(p) for p in to_columns(items)}
    assert kinds["labels"].columns == {"id": ["r1"], "label": ["spam"]}
    assert kinds["labels"].calls is None


def test_items_group_by_signature_in_call_order():
    a = _item(np.ones((2, 2)), np.array([1, 2]))
    b = _item(pd.DataFrame({"f": [1.0]}), np.array([3]))
    c = _item(np.zeros((1, 2)), np.array([4]))
    unsampled = Captured("inference", "predict", 5, 0.001, 7)
    parts = to_columns([a, b, unsampled, c])
    assert len(parts) == 2
    first, second = (_roundtrip(p) for p in parts)
    assert first.columns["prediction"].tolist() == [1, 2, 4]
    # the unsampled call joins the first inference part: counted, no rows
    assert first.calls.columns["captured"].tolist() == [2, 0, 1]
    assert first.calls.columns["rows"].tolist() == [2, 7, 1]
    assert second.columns["f"].tolist() == [1.0]
    assert sum(p.calls.rows for p in (first, second)) == 4


def test_calls_table_carries_errors_and_trace_ids():
    ok = Captured("inference", "predict", 10, 0.5, 1, None, 0xABC, np.ones((1, 1)), np.array([1.0]))
    failed = Captured("inference", "predict", 11, 0.25, 3, "ValueError", "0" * 31 + "1")
    [part] = to_columns([ok, failed])
    calls = _roundtrip(part).calls.columns
    assert calls["error_type"] == [None, "ValueError"]
    assert calls["trace_id"] == [format(0xABC, "032x"), "0" * 31 + "1"]
    assert calls["duration_s"].tolist() == [0.5, 0.25]
    assert calls["start_ns"].tolist() == [10, 11]
    assert calls["captured"].tolist() == [1, 0]


def test_labels_and_reference_kinds():
    labels = Captured("labels", "log_labels", 1, 0.0, 2, ids=np.array([7, 8]), labels=np.array([0, 1]))
    ref = Captured("reference", "set_reference", 1, 0.0, 2, inputs=np.ones((2, 1)), labels=["a", "b"])
    parts = {p.kind: _roundtrip(p) for p in to_columns([labels, ref])}
    assert parts["labels"].types == {"id": "i8", "label": "i8"}
    assert parts["labels"].columns["id"].tolist() == [7, 8]
    assert parts["reference"].columns["label"] == ["a", "b"]
    assert parts["reference"].calls is None


def test_reserved_feature_names_are_prefixed():
    df = pd.DataFrame({"id": [1.0], "prediction": [2.0], "proba[x]": [3.0]})
    [part] = to_columns([_item(df, np.array([0]), ids=["r"])])
    batch = _roundtrip(part)
    assert batch.names("feature") == ["feature:id", "feature:prediction", "feature:proba[x]"]
    assert batch.columns["id"] == ["r"]


def test_long_strings_are_truncated_to_the_wire_limit():
    limits = Limits()
    [part] = to_columns([_item([{"s": "x" * (limits.max_string_length + 10)}], np.array([1]))])
    assert len(_roundtrip(part).columns["s"][0]) == limits.max_string_length


@pytest.mark.parametrize(
    "bad",
    [
        _item(np.ones((2, 2)), np.array([1, 2, 3])),  # lengths disagree
        _item(np.ones((2, 2, 2)), np.array([1, 2]), rows=2),  # 3-D features
        _item(np.ones((2, 2)), np.ones((2, 3)), method="predict_proba", rows=2, classes=["a", "b", "a"]),
        Captured("labels", "log_labels", 1, 0.0, 2, ids=[1, 2]),  # labels without labels
        Captured("weird", "predict", 1, 0.0, 4, inputs=np.ones((4, 1))),
        _item(pd.DataFrame([[1.0, 2.0]], columns=["a", "a"]), np.array([1])),  # duplicate names
        _item(np.ones((1, 2)), np.array([1 + 2j])),  # complex output
    ],
)
def test_unconvertible_items_are_dropped_and_counted(bad):
    good = _item(np.ones((1, 2)), np.array([1]))
    parts = to_columns([good, bad])
    assert dropped_rows(parts) == bad.rows
    for part in parts:
        _roundtrip(part)
    rows_with_data = sum(p.rows for p in parts)
    assert rows_with_data == 1
    if bad.kind == "inference":  # the call itself is still in the calls table
        assert sum(len(p.calls["method"]) for p in parts if p.calls) == 2


def test_too_many_columns_are_dropped():
    limits = Limits(max_columns=3)
    parts = to_columns([_item(np.ones((1, 5)), np.array([1]))], limits)
    assert dropped_rows(parts) == 1 and all(p.rows == 0 for p in parts)


_cells = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=5),
    st.binary(max_size=3), st.lists(st.integers(), max_size=2),
)
_inputs = st.one_of(
    st.none(),
    st.lists(st.dictionaries(st.text(max_size=3), _cells, max_size=3), max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), _cells, max_size=3),
    st.lists(st.lists(_cells, min_size=1, max_size=3), max_size=3),
    _cells,
)


@settings(max_examples=int(__import__("os").environ.get("DRIFTCAR_HYPOTHESIS_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["inference", "labels", "reference"]),
            st.sampled_from(["predict", "predict_proba", "predict_one", "predict_proba_one", "learn_one", "__call__"]),
            _inputs, _inputs, _inputs, st.integers(0, 5),
        ),
        max_size=6,
    )
)
def test_arbitrary_items_never_raise_and_always_encode(specs):
    items = [
        Captured(kind, method, 1, 0.0, rows, inputs=inp, outputs=out, labels=lab, ids=lab)
        for kind, method, inp, out, lab, rows in specs
    ]
    parts = to_columns(items)
    for part in parts:
        assert isinstance(part, BatchPart)
        if part.rows or part.calls:
            _roundtrip(part)
    calls = sum(len(p.calls["method"]) for p in parts if p.calls)
    assert calls == sum(1 for i in items if i.kind == "inference")


# --------------------------------------------------------------------------- combining many small items


def test_many_one_row_items_are_combined_in_call_order():
    rng = np.random.default_rng(4)
    rows = [rng.normal(size=(1, 3)) for _ in range(50)]
    items = [_item(r, np.array([i])) for i, r in enumerate(rows)]
    items.insert(10, Captured("inference", "predict", 5, 0.001, 1))  # an unsampled call in between
    [part] = to_columns(items)
    batch = _roundtrip(part)
    expected = np.vstack(rows)
    for j in range(3):
        assert batch.columns[f"x{j}"].tolist() == expected[:, j].tolist()
    assert batch.columns["prediction"].tolist() == list(range(50))
    assert batch.calls.columns["captured"].tolist() == [1] * 10 + [0] + [1] * 40


def test_a_bad_item_among_combinable_ones_only_drops_itself():
    good = [_item({"a": float(i)}, {"yes": 0.5, "no": 0.5}, method="predict_proba_one") for i in range(5)]
    bad = _item({"a": 9.0}, {"yes": "high", "no": 0.5}, method="predict_proba_one")
    parts = to_columns(good[:2] + [bad] + good[2:])
    assert dropped_rows(parts) == 1
    [batch] = [_roundtrip(p) for p in parts if p.rows]
    assert batch.columns["a"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert batch.columns["proba[yes]"].tolist() == [0.5] * 5
    assert batch.calls.columns["captured"].tolist() == [1, 1, 0, 1, 1, 1]


def test_combined_frames_with_differing_dtypes_convert_consistently():
    a = pd.DataFrame({"n": [1, 2], "c": pd.Categorical(["x", "y"])})
    b = pd.DataFrame({"n": [2.5], "c": pd.Categorical(["z"])})
    [part] = to_columns([_item(a, np.array([0, 1])), _item(b, np.array([1]))])
    batch = _roundtrip(part)
    assert batch.columns["n"].tolist() == [1.0, 2.0, 2.5]
    assert batch.columns["c"] == ["x", "y", "z"]


def test_combined_dict_rows_union_their_keys():
    items = [_item({"a": 1.0}, 0.5, method="predict_one"), _item({"b": "u"}, 0.25, method="predict_one")]
    [part] = to_columns(items)
    batch = _roundtrip(part)
    assert _same(batch.columns["a"], [1.0, float("nan")])
    assert batch.columns["b"] == [None, "u"]
    assert batch.columns["prediction"].tolist() == [0.5, 0.25]


def _rows_by_layout(parts):
    """{(kind, column names): (sorted row tuples, sorted captured counts)}; dtypes may differ
    (combining DataFrames with equal columns unifies their dtypes), values may not."""
    out = {}
    for p in parts:
        key = (p.kind, tuple((c.name, c.role) for c in p.columns))
        rows, captured = out.setdefault(key, ([], []))
        rows.extend(zip(*(map(float, _values(c.data)) for c in p.columns)))
        if p.calls:
            captured.extend(p.calls["captured"].tolist())
    return {k: (sorted(r), sorted(c)) for k, (r, c) in out.items()}


@settings(max_examples=int(__import__("os").environ.get("DRIFTCAR_HYPOTHESIS_EXAMPLES", "100")), deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["nd", "df"]), st.integers(1, 2), st.sampled_from(["f8", "i4"]),
                  st.integers(0, 3), st.sampled_from(["f8", "i8"])),
        max_size=12,
    ),
    st.integers(0, 2**32 - 1),
)
def test_combining_equals_converting_one_by_one(specs, seed):
    rng = np.random.default_rng(seed)
    items = []
    for form, width, dtype, rows, out_dtype in specs:
        X = (rng.normal(size=(rows, width)) * 10).astype(dtype)
        if form == "df":
            X = pd.DataFrame(X, columns=[f"c{j}" for j in range(width)])
        items.append(_item(X, (rng.normal(size=rows) * 10).astype(out_dtype), rows=rows))
    combined = _rows_by_layout(to_columns(items))
    one_by_one = _rows_by_layout([p for i in items for p in to_columns([i])])
    assert combined == one_by_one


def test_runs_of_compact_calls_convert_exactly_as_the_calls_one_by_one():
    from driftcar.hook.records import thaw, thaw_all

    rng = np.random.default_rng(3)

    def raw(rows, width=3, names=None, ids=None, method="predict", trace=0):
        x, y = rng.normal(size=(rows, width)), rng.integers(0, 3, size=rows)
        return (method, int(rng.integers(1, 1 << 40)), 1_000, rows, trace, ids, x.tobytes(), x.dtype, x.shape,
                y.tobytes(), y.dtype, y.shape, names)

    items = [raw(1), raw(2, trace=0xABC), raw(1), raw(1, width=4), raw(1, width=4), raw(3, ids=[1, 2, 3]),
             Captured("inference", "predict", 5, 0.001, 2), raw(1, names=("a", "b", "c")), raw(1, names=("a", "b", "c")),
             raw(1), raw(2, method="predict_one")]
    merged = thaw_all(list(items))
    assert [len(m.calls["method"]) if m.calls else 1 for m in merged] == [3, 2, 1, 1, 2, 1, 1]
    one_by_one = [thaw(i) if type(i) is tuple else i for i in items]

    def summary(parts):
        return [(p.kind, p.rows, [(c.name, np.asarray(c.data).tolist()) for c in p.columns],
                 {k: np.asarray(v).tolist() for k, v in (p.calls or {}).items()}) for p in parts]

    assert summary(to_columns(merged)) == summary(to_columns(one_by_one))


@pytest.mark.parametrize("odd", [None, "rows", "ids", "captured"])
def test_a_uniform_batch_of_compact_calls_converts_as_the_calls_one_by_one(odd):
    # a batch of compact calls of one layout and shape takes one shortcut; one odd item sends it the long way
    from driftcar.hook.records import thaw, thaw_all

    rng = np.random.default_rng(5)

    def raw(rows=1, ids=None, trace=0):
        x, y = rng.normal(size=(rows, 3)), rng.integers(0, 3, size=rows)
        return ("predict", int(rng.integers(1, 1 << 40)), int(rng.integers(1, 10**6)), rows, trace, ids,
                x.tobytes(), x.dtype, x.shape, y.tobytes(), y.dtype, y.shape, None)

    items = [raw(trace=(0xABC if i % 3 == 0 else 0)) for i in range(9)]
    if odd == "rows":
        items[4] = raw(rows=2)
    elif odd == "ids":
        items[4] = raw(ids=np.array([7]))
    elif odd == "captured":
        items[4] = Captured("inference", "predict", 5, 0.001, 2)
    merged = thaw_all(list(items))
    assert len(merged) == (1 if odd in (None, "rows") else 3)  # rows may differ within a run
    one_by_one = [thaw(i) if type(i) is tuple else i for i in items]

    def summary(parts):
        return [(p.kind, p.rows, [(c.name, np.asarray(c.data).tolist()) for c in p.columns],
                 {k: np.asarray(v).tolist() for k, v in (p.calls or {}).items()}) for p in parts]

    assert summary(to_columns(merged)) == summary(to_columns(one_by_one))
