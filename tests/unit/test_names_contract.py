"""The metric and event names are a contract (dashboards and alerts depend on them).

The table below is the contract from DESIGN.md, written out by hand. This test fails
if the code's single source of names (driftcar.sidecar.telemetry.names) changes any
name, type, unit, attribute key or Prometheus name, or adds/removes an instrument.
Change both only on purpose, with a migration note.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig, names

M = ("model.name", "model.version", "driftcar.scope")  # scope: pod | fleet
DRIFT = ("feature.name", "drift.method", "drift.window")
# OTel name: (type, unit, attribute keys in order, Prometheus name)
CONTRACT = {
    "driftcar.inference.calls": ("counter", "{call}", M + ("method", "error.type"), "driftcar_inference_calls_total"),
    "driftcar.inference.rows": ("counter", "{row}", M, "driftcar_inference_rows_total"),
    "driftcar.inference.duration": ("histogram", "s", M + ("method",), "driftcar_inference_duration_seconds"),
    "driftcar.feature.value": ("histogram", "{value}", M + ("feature.name",), "driftcar_feature_value"),
    "driftcar.feature.missing": ("counter", "{row}", M + ("feature.name",), "driftcar_feature_missing_total"),
    "driftcar.feature.category": ("counter", "{row}", M + ("feature.name", "category"),
                                  "driftcar_feature_category_total"),
    "driftcar.prediction.value": ("histogram", "{value}", M, "driftcar_prediction_value"),
    "driftcar.prediction.class": ("counter", "{row}", M + ("class",), "driftcar_prediction_class_total"),
    "driftcar.drift.score": ("gauge", "1", M + DRIFT, "driftcar_drift_score_ratio"),
    "driftcar.drift.pvalue": ("gauge", "1", M + DRIFT, "driftcar_drift_pvalue_ratio"),
    "driftcar.drift.threshold": ("gauge", "1", M + DRIFT, "driftcar_drift_threshold_ratio"),
    "driftcar.drift.detected": ("gauge", "1", M + DRIFT, "driftcar_drift_detected_ratio"),
    "driftcar.performance.score": ("gauge", "1", M + ("metric",), "driftcar_performance_score_ratio"),
    "driftcar.performance.estimated_accuracy": ("gauge", "1", M, "driftcar_performance_estimated_accuracy_ratio"),
    "driftcar.receiver.batches": ("counter", "{batch}", ("outcome",), "driftcar_receiver_batches_total"),
    "driftcar.hook.dropped": ("counter", "{row}", M, "driftcar_hook_dropped_total"),
    "driftcar.receiver.records.ignored": ("counter", "{record}", (), "driftcar_receiver_records_ignored_total"),
    "driftcar.receiver.queue.size": ("gauge", "{row}", (), "driftcar_receiver_queue_size"),
    "driftcar.state.models": ("gauge", "{model}", (), "driftcar_state_models"),
    "driftcar.labels.unmatched": ("counter", "{row}", M + ("reason",), "driftcar_labels_unmatched_total"),
    "driftcar.fleet.windows": ("counter", "{window}", ("outcome",), "driftcar_fleet_windows_total"),
    "driftcar.fleet.replicas": ("gauge", "{replica}", M, "driftcar_fleet_replicas"),
    "driftcar.cardinality.overflow": ("counter", "{series}", M + ("attribute",), "driftcar_cardinality_overflow_total"),
    "driftcar.reference.coverage": ("gauge", "1", M, "driftcar_reference_coverage_ratio"),
}
DRIFT_EVENT = M + ("feature.name", "drift.method", "drift.score", "drift.threshold", "drift.pvalue",
                   "drift.threshold.kind", "window.start", "window.end", "driftcar.sample_trace_ids")
EVENTS = {
    "driftcar.drift.detected": ("WARN", DRIFT_EVENT),
    "driftcar.drift.resolved": ("INFO", DRIFT_EVENT),
    "driftcar.performance.degraded": ("WARN", M + ("metric", "value", "threshold")),
    "driftcar.reference.mismatch": ("WARN", M + ("mismatch.cause", "mismatch.names", "mismatch.suggestions")),
}
SPECIAL_VALUES = {"OVERFLOW": "__overflow__", "OTHER": "__other__", "MULTIVARIATE": "__multivariate__",
                  "PREDICTION": "__prediction__", "LABEL": "__label__"}


def test_metric_table_matches_the_contract():
    actual = {
        spec.name: (spec.type, spec.unit, spec.all_attributes, spec.prometheus_name)
        for spec in names.METRICS.values()
    }
    assert actual == CONTRACT


def test_event_table_matches_the_contract():
    actual = {e.name: (e.severity, e.attributes) for e in names.EVENTS.values()}
    assert actual == EVENTS


def test_special_attribute_values():
    assert {k: getattr(names, k) for k in SPECIAL_VALUES} == SPECIAL_VALUES


def test_exported_data_uses_the_table():
    """What actually leaves (OTLP and Prometheus) carries exactly the contract's names, units and keys."""
    tel = Telemetry(TelemetryConfig(export="none", scope="pod"))
    tel.add_calls("m", "1", "predict", "ValueError", 1)
    tel.add_rows("m", "1", 1)
    tel.record_durations("m", "1", "predict", np.array([0.01]))
    tel.set_histogram("feature", "m", "1", "x", [0.0], [1, 1], 0.5, 2)
    tel.add_missing("m", "1", "x", 1)
    tel.add_category("m", "1", "c", "a", 1)
    tel.set_histogram("prediction", "m", "1", None, [0.5], [1, 0], 0.1, 1)
    tel.add_prediction_class("m", "1", "yes", 1)
    tel.set_drift("m", "1", "x", "ks", "1m", 0.2, 0.01, 0.05, True)
    tel.set_performance("m", "1", "accuracy", 0.9)
    tel.set_estimated_accuracy("m", "1", 0.8)
    tel.add_receiver_batches("accepted", 1)
    tel.set_hook_dropped("m", "1", 1)
    tel.add_ignored_records(1)
    tel.set_queue_size(1)
    tel.set_state_models(1)
    tel.add_labels_unmatched("m", "1", "expired", 1)
    tel.set_coverage("m", "1", 0.75)
    tel.add_fleet_windows("sent", 1)
    tel.set_fleet_replicas("m", "1", 3)
    small = Telemetry(TelemetryConfig(export="none", max_categories=1, scope="pod"))
    small.add_category("m", "1", "c", "a", 1)
    small.add_category("m", "1", "c", "b", 1)
    overflow = small.metrics_data().resource_metrics[0].scope_metrics[0].metrics

    metrics = list(tel.metrics_data().resource_metrics[0].scope_metrics[0].metrics)
    metrics += [m for m in overflow if m.name == "driftcar.cardinality.overflow"]
    seen = {}
    for metric in metrics:
        kind = {"sum": "counter", "gauge": "gauge", "histogram": "histogram"}[metric.WhichOneof("data")]
        keys = {tuple(kv.key for kv in p.attributes) for p in getattr(metric, metric.WhichOneof("data")).data_points}
        seen[metric.name] = (kind, metric.unit, keys)
    assert set(seen) == set(CONTRACT)
    for name, (kind, unit, keys) in seen.items():
        type_, unit_, attrs, _ = CONTRACT[name]
        assert (kind, unit) == (type_, unit_), name
        assert tuple(attrs) in keys or (name == "driftcar.inference.calls"), (name, keys)
    text = tel.prometheus_text() + small.prometheus_text()
    for _, _, _, prom in CONTRACT.values():
        assert f"\n# TYPE {prom} " in text


def test_markdown_reference_is_printed_from_the_table():
    out = subprocess.run([sys.executable, "-m", "driftcar.sidecar.telemetry.names", "--markdown"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    for name, (type_, unit, _, prom) in CONTRACT.items():
        assert f"| `{name}` | {type_} | `{unit}` |" in out
        assert f"`{prom}" in out
    for name in EVENTS:
        assert f"| `{name}` |" in out


def test_package_readme_reference_is_current():
    from pathlib import Path

    readme = Path(names.__file__).with_name("README.md").read_text()
    assert names.markdown() in readme, "regenerate: python -m driftcar.sidecar.telemetry.names --markdown"
