"""End to end with real processes on 127.0.0.1: the hook in this (model) process ->
``driftcar sidecar`` started by its CLI -> an OTLP test receiver; optionally with the
rotel collector as the hop on both sides.

Checks: drift detected exactly for the shifted features, exported KS/PSI equal to what
driftcar.stats computes on the same rows, quality from late labels equal to
scikit-learn's, and every contract metric/event name present with its unit and
documented attributes.
"""

from __future__ import annotations

import contextlib

import grpc
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, mean_absolute_error
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import driftcar
from driftcar.sidecar.telemetry.names import EVENTS, METRICS
from driftcar.stats import DriftConfig, evaluate_drift, profile
from driftcar.wire.otlp import attributes_to_dict

from tests.integration.sidecar.sidecar_helpers import SidecarProcess, latest, metric_points, value
from tests.support.rotel import Rotel
from tests.support.otlp import GrpcOtlpReceiver
from driftcar.wire import Column, encode_batch

from tests.unit.sidecar.batches import other_record, record, request
from tests.support.waiting import wait_until

NUMERIC = [f"x{i}" for i in range(9)]
FEATURES = NUMERIC + ["plan"]
SHIFTED = ["x0", "x4", "plan"]
PLANS = np.array(["basic", "plus", "pro"], dtype=object)


def frame(n: int, seed: int, shifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {name: rng.normal(0.0, 1.0, n) for name in NUMERIC}
    p = [0.2, 0.3, 0.5] if shifted else [0.5, 0.3, 0.2]
    data["plan"] = rng.choice(PLANS, n, p=p)
    if shifted:
        data["x0"] = data["x0"] + 1.5
        data["x4"] = data["x4"] * 2.0 + 1.0
        data["x8"][rng.random(n) < 0.05] = np.nan  # missing values
    return pd.DataFrame(data)


def target(X: pd.DataFrame, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ((X["x1"].to_numpy() + X["x2"].to_numpy() + rng.normal(0, 0.5, len(X))) > 0).astype(np.int64)


def classifier() -> Pipeline:
    prep = ColumnTransformer([
        ("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), NUMERIC),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
    ])
    return Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=200))])


def reference_columns(X: pd.DataFrame) -> dict:
    """The reference as the sidecar receives it from the hook (float64 arrays, str lists)."""
    return {c: (X[c].to_numpy(dtype=np.float64) if c != "plan" else list(X[c])) for c in X.columns}


@pytest.mark.parametrize("wiring", ["direct", "rotel"])
def test_hook_to_sidecar_to_receiver(tmp_path, wiring):
    receiver = GrpcOtlpReceiver().start()
    with contextlib.ExitStack() as stack:
        stack.callback(receiver.stop)
        out = receiver.endpoint
        if wiring == "rotel":
            out = stack.enter_context(Rotel(tmp_path, receiver.endpoint)).grpc_endpoint
        sidecar = stack.enter_context(SidecarProcess(
            tmp_path, "--window", "2s", "--export", "otlp", "--otlp-endpoint", out, "--otlp-protocol", "grpc",
            "--export-interval", "1s", "--live-reference-rows", "0", "--max-categories", "2",
            "--performance-thresholds", "accuracy=0.99", "--drift", "{exit_windows: 1}"))
        hook_endpoint = f"http://127.0.0.1:{sidecar.ports['grpc']}"
        if wiring == "rotel":
            hook_endpoint = stack.enter_context(Rotel(tmp_path, hook_endpoint)).grpc_endpoint

        # ---- the model process side: three instrumented models
        X_train = frame(4_000, seed=1, shifted=False)
        y_train = target(X_train, 2)
        clf = classifier()
        monitor = driftcar.instrument(clf, name="churn", version="3", endpoint=hook_endpoint)
        stack.callback(monitor.shutdown, 10)
        clf.fit(X_train, y_train)  # the "fit" call counts too (method attribute)
        ref_pred = clf.predict(X_train)
        monitor.set_reference(X_train, y_train, predictions=ref_pred)
        reg = Ridge().fit(X_train[NUMERIC], X_train["x1"].to_numpy() * 3.0)
        reg_monitor = driftcar.instrument(reg, name="price", version="1", endpoint=hook_endpoint)
        stack.callback(reg_monitor.shutdown, 10)
        reg_monitor.set_reference(X_train[NUMERIC], predictions=reg.predict(X_train[NUMERIC]))
        assert monitor.flush(20) and reg_monitor.flush(20)

        X_live = frame(2_000, seed=3, shifted=True)
        y_live = target(X_live, 4)
        ids = [f"r{i}" for i in range(len(X_live))]
        with monitor.ids(ids):
            live_pred = clf.predict(X_live)
        clf.predict_proba(X_live)
        with pytest.raises(Exception):
            clf.predict(X_live[["x0"]])  # a failing call: error.type
        monitor.log_labels(ids + ["unknown-1", "unknown-2"], list(y_live) + [0, 1])
        reg_ids = [f"p{i}" for i in range(500)]
        with reg_monitor.ids(reg_ids):
            reg_pred = reg.predict(X_live[NUMERIC].iloc[:500].fillna(0.0))
        reg_truth = X_live["x1"].to_numpy()[:500] * 3.0 + 0.5
        reg_monitor.log_labels(reg_ids, reg_truth)
        # a third model with no reference bound and live references off: a reference mismatch, said
        bare = LogisticRegression(max_iter=200).fit(X_train[NUMERIC].fillna(0.0).to_numpy(), y_train)
        bare_monitor = driftcar.instrument(bare, name="bare", version="1", endpoint=hook_endpoint)
        stack.callback(bare_monitor.shutdown, 10)
        bare.predict(X_live[NUMERIC].fillna(0.0).to_numpy())
        assert monitor.flush(20) and reg_monitor.flush(20) and bare_monitor.flush(20)
        channel = grpc.insecure_channel(hook_endpoint.removeprefix("http://"))
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

        # a foreign log record (ignored, counted) and a batch from a hook that had to drop rows
        dropped = encode_batch("labels", [Column("id", "id", []), Column("label", "label", [])],
                               hook={"instance": "other-hook", "pid": 1, "dropped_rows": 7})
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            request(other_record(), record(dropped, model="churn", version="3", kind="labels")), timeout=10)
        channel.close()

        # ---- drift detected exactly for the shifted features
        def verdicts():
            points = latest(metric_points(receiver), "driftcar.drift.detected")
            out = {}
            for attrs, point in points.items():
                a = dict(attrs)
                if a["model.name"] == "churn" and not a["feature.name"].startswith("__"):
                    out[a["feature.name"]] = value(point)
            return out if len(out) == len(FEATURES) and all(out[f] == 1 for f in SHIFTED) else None

        got = wait_until(verdicts, 40, interval=0.2, what=f"drift verdicts at the receiver\n{sidecar.log()}")
        assert sorted(f for f, v in got.items() if v == 1) == sorted(SHIFTED)

        # ---- exported KS/PSI == driftcar.stats on the same rows
        prof = profile(reference_columns(X_train), y_train, ref_pred)
        window = prof.new_window()
        window.update(reference_columns(X_live))
        expected = evaluate_drift(prof, window, DriftConfig(exit_windows=1))
        scores = {}
        for attrs, point in latest(metric_points(receiver), "driftcar.drift.score").items():
            a = dict(attrs)
            if a["model.name"] == "churn":
                assert a["drift.window"] == "2s"
                scores[(a["feature.name"], a["drift.method"])] = value(point)
        compared = 0
        for result in expected.results:
            if result.method in ("ks", "psi") and result.feature in FEATURES:
                assert scores[(result.feature, result.method)] == pytest.approx(result.statistic, rel=1e-9, abs=1e-12)
                compared += 1
        assert compared >= len(NUMERIC)

        # ---- late labels: accuracy equals scikit-learn's on the same rows; MAE for the regressor
        def perf(model, metric):
            for attrs, point in latest(metric_points(receiver), "driftcar.performance.score").items():
                a = dict(attrs)
                if a["model.name"] == model and a["metric"] == metric:
                    return value(point)
            return None

        wait_until(lambda: perf("churn", "accuracy") is not None and perf("price", "mae") is not None, 20,
                   what="performance gauges")
        assert perf("churn", "accuracy") == pytest.approx(accuracy_score(y_live, live_pred), abs=1e-12)
        assert perf("price", "mae") == pytest.approx(mean_absolute_error(reg_truth, reg_pred), rel=1e-9)

        # ---- back to normal -> drift.resolved events
        X_clean = frame(2_000, seed=5, shifted=False)
        clf.predict(X_clean)
        assert monitor.flush(20)

        def resolved():
            names = {attributes_to_dict(r.attributes).get("feature.name") for r in receiver.log_records()
                     if r.event_name == "driftcar.drift.resolved"}
            return set(SHIFTED) <= names

        wait_until(resolved, 30, interval=0.2, what="drift.resolved events")

        # ---- every contract name, with unit and documented attributes
        points = metric_points(receiver)
        seen = {}
        for name, unit, attrs, _ in points:
            seen.setdefault(name, (unit, set()))[1].update(attrs)
        for spec in METRICS.values():
            if spec.name.startswith("driftcar.fleet."):
                continue  # exported by the fleet roles only: tests/integration/fleet
            assert spec.name in seen, f"{spec.name} never exported"
            unit, keys = seen[spec.name]
            assert unit == spec.unit, spec.name
            assert keys <= set(spec.all_attributes), (spec.name, keys)
            required = set(spec.all_attributes) - {"error.type"}
            assert required <= keys, (spec.name, required - keys)
        events = [r for r in receiver.log_records() if r.event_name in EVENTS]
        for spec in EVENTS.values():
            found = [attributes_to_dict(r.attributes) for r in events if r.event_name == spec.name]
            assert found, f"event {spec.name} never exported"
            for attrs in found:
                missing = {k for k in spec.attributes if k not in attrs and k != "drift.pvalue"}
                assert not missing, (spec.name, missing)
        mismatches = {(a["model.name"], a["mismatch.cause"]) for a in (attributes_to_dict(r.attributes) for r in events
                      if r.event_name == "driftcar.reference.mismatch")}
        assert mismatches == {("bare", "no_reference")}, mismatches  # the referenced models match theirs
        detected = [attributes_to_dict(r.attributes) for r in events if r.event_name == "driftcar.drift.detected"
                    and attributes_to_dict(r.attributes)["model.name"] == "churn"]
        assert sorted(a["feature.name"] for a in detected if not a["feature.name"].startswith("__")) == \
            sorted(SHIFTED)
        assert all(a["window.end"] > a["window.start"] > 0 for a in detected)
        dropped_total = [value(p) for a, p in latest(points, "driftcar.hook.dropped").items()
                         if dict(a)["model.name"] == "churn"]
        assert dropped_total and dropped_total[0] >= 7
        assert sidecar.terminate() == 0
