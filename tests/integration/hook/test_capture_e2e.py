"""Must-show #1: instrumented models -> real Shipper -> real gRPC / HTTP OTLP receivers on 127.0.0.1.

The decoded batches must equal exactly what each model saw and said: a Pipeline with a
ColumnTransformer on a pandas frame with a string column and NaNs, a numpy model, a
river model and a plain function.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import driftcar
from driftcar.wire import decode_batch
from driftcar.wire.otlp import iter_batch_records
from tests.support.otlp import GrpcOtlpReceiver, HttpOtlpReceiver

RECEIVERS = {"grpc": GrpcOtlpReceiver, "http/protobuf": HttpOtlpReceiver}
pytestmark = [pytest.mark.timeout(30), pytest.mark.parametrize("protocol", list(RECEIVERS))]


def _batches(rx, kind: str | None = None) -> list:
    out = []
    for request in list(rx.logs):
        for record in iter_batch_records(request):
            if record is not None:
                batch = decode_batch(record.body)
                assert record.attributes["driftcar.batch.kind"] == batch.kind
                assert record.attributes["driftcar.batch.rows"] == batch.rows
                if kind is None or batch.kind == kind:
                    out.append((record, batch))
    return out


def _column(batches, name) -> list:
    values: list = []
    for _, b in batches:
        data = b.columns[name]
        values.extend(data.tolist() if isinstance(data, np.ndarray) else data)
    return values


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        x == y or (x is None and y is None) or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        for x, y in zip(a, b)
    )


def _ship(monitor, rx, kind: str, rows: int) -> list:
    assert monitor.flush(10)
    batches = _batches(rx, kind)
    assert sum(b.rows for _, b in batches) == rows
    return batches


def test_pipeline_on_a_dataframe(protocol):
    rng = np.random.default_rng(5)
    n = 300
    X = pd.DataFrame({"age": rng.normal(40, 9, n), "income": rng.normal(3e3, 400, n),
                      "city": rng.choice(["Paris", "Lyon", "Nice"], n).astype(object)})
    X.loc[::6, "age"] = np.nan
    X.loc[::4, "city"] = None
    y = (X["income"] > 3e3).astype(int).to_numpy()
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"]),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="?"), OneHotEncoder(handle_unknown="ignore")), ["city"]),
    ])
    pipe = Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(X, y)
    with RECEIVERS[protocol]() as rx:
        monitor = driftcar.instrument(pipe, name="churn", version="3", endpoint=rx.endpoint, protocol=protocol,
                                      max_batch_age_s=0.1)
        try:
            said, proba = [], []
            for start in range(0, 120, 40):
                chunk = X.iloc[start:start + 40]
                with monitor.ids([f"r{i}" for i in range(start, start + 40)]):
                    said.extend(pipe.predict(chunk).tolist())
                proba.append(pipe.predict_proba(chunk))
            monitor.log_labels(["r0", "r1"], [1, 0])
            monitor.set_reference(X, y)
            batches = _ship(monitor, rx, "inference", 240)
            predicted = [(r, b) for r, b in batches if "prediction" in b.columns]
            probas = [(r, b) for r, b in batches if "proba[1]" in b.columns]
            seen = X.iloc[:120]
            for part in (predicted, probas):
                assert _same(_column(part, "age"), seen["age"].tolist())
                assert _same(_column(part, "income"), seen["income"].tolist())
                assert _column(part, "city") == [None if pd.isna(v) else v for v in seen["city"]]
            assert _column(predicted, "prediction") == said
            assert _column(predicted, "id") == [f"r{i}" for i in range(120)]
            assert _column(probas, "proba[1]") == np.concatenate(proba)[:, 1].tolist()
            assert all(b.classes["proba[0]"] == "0" for _, b in probas)
            record = batches[0][0]
            assert record.attributes["model.name"] == "churn" and record.attributes["model.version"] == "3"
            calls = [m for _, b in batches for m in b.calls.columns["method"]]
            assert sorted(calls) == ["predict"] * 3 + ["predict_proba"] * 3
            labels = _batches(rx, "labels")
            assert _column(labels, "id") == ["r0", "r1"] and _column(labels, "label") == [1, 0]
            reference = _batches(rx, "reference")
            assert _same(_column(reference, "age"), X["age"].tolist())
            assert _column(reference, "label") == y.tolist()
        finally:
            assert monitor.shutdown(5)


def test_numpy_model(protocol):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(64, 5))
    X[3, 1] = np.nan
    model = LinearRegression().fit(np.nan_to_num(X), X[:, 0] * 2)
    calls = []
    with RECEIVERS[protocol]() as rx:
        monitor = driftcar.instrument(model, name="reg", endpoint=rx.endpoint, protocol=protocol)
        try:
            safe = np.nan_to_num(X)
            for i in range(0, 64, 8):
                calls.append(model.predict(safe[i:i + 8]))
            with pytest.raises(ValueError):
                model.predict(X[:4])  # NaN input: the model raises; counted, not captured
            batches = _ship(monitor, rx, "inference", 64)
            for j in range(5):
                assert _column(batches, f"x{j}") == np.nan_to_num(X)[:, j].tolist()
            assert _column(batches, "prediction") == np.concatenate(calls).tolist()
            errors = [e for _, b in batches for e in b.calls.columns["error_type"]]
            assert errors.count("ValueError") == 1 and errors.count(None) == 8
        finally:
            assert monitor.shutdown(5)


def test_river_model(protocol):
    from river import compose, linear_model, preprocessing

    # "tier" is in the rows the model sees (and in the capture) but not used by it
    model = compose.Select("a", "b") | preprocessing.StandardScaler() | linear_model.LogisticRegression()
    rng = np.random.default_rng(7)
    rows = [{"a": float(rng.normal()), "b": float(rng.normal()), "tier": str(rng.choice(["x", "y"]))} for _ in range(50)]
    with RECEIVERS[protocol]() as rx:
        monitor = driftcar.instrument(model, name="stream", endpoint=rx.endpoint, protocol=protocol)
        try:
            said = []
            for x in rows:
                said.append(model.predict_one(x))
                model.learn_one(x, x["a"] > 0)
            batches = _ship(monitor, rx, "inference", 100)
            predicted = [(r, b) for r, b in batches if "prediction" in b.columns]
            learned = [(r, b) for r, b in batches if "label" in b.columns]
            assert _column(predicted, "prediction") == said
            assert _column(predicted, "a") == [x["a"] for x in rows]
            assert _column(learned, "label") == [x["a"] > 0 for x in rows]
            assert _column(learned, "tier") == [x["tier"] for x in rows]
        finally:
            assert monitor.shutdown(5)


def test_plain_function(protocol):
    def score(features: dict) -> float:
        return 2.0 * features["x"] + (1.0 if features["kind"] == "a" else 0.0)

    with RECEIVERS[protocol]() as rx:
        monitor = driftcar.instrument(score, name="score", endpoint=rx.endpoint, protocol=protocol)
        try:
            inputs = [{"x": float(i), "kind": "ab"[i % 2]} for i in range(30)]
            said = [monitor(x) for x in inputs]
            batches = _ship(monitor, rx, "inference", 30)
            assert _column(batches, "x") == [x["x"] for x in inputs]
            assert _column(batches, "kind") == [x["kind"] for x in inputs]
            assert _column(batches, "prediction") == said
            assert [m for _, b in batches for m in b.calls.columns["method"]] == ["__call__"] * 30
        finally:
            assert monitor.shutdown(5)
