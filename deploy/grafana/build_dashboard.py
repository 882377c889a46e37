"""Build deploy/grafana/driftcar.json (the driftcar Grafana dashboard) from this description.

    python deploy/grafana/build_dashboard.py           # rewrite driftcar.json
    python deploy/grafana/build_dashboard.py --check   # exit 1 when driftcar.json is stale

Panels use only the contract's Prometheus names (tests/deploy/test_dashboards_and_alerts.py
checks them against driftcar.sidecar.telemetry.names). Data source uids: ``prometheus``,
``loki``, ``tempo`` (deploy/compose/grafana/provisioning/datasources/ provisions them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "driftcar.json"
PROM = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}
SEL = 'model_name=~"$model", model_version=~"$version"'
FSEL = SEL + ', feature_name=~"$feature"'
#: one drift test's series; a driftcar_drift_pvalue_ratio series exists only while the test decides by p-value
TEST = "on (model_name, model_version, feature_name, drift_method, drift_window)"

_ids = iter(range(1, 1000))


def target(expr: str, legend: str = "", ref: str = "A", **extra) -> dict:
    return {"datasource": PROM, "expr": expr, "legendFormat": legend, "refId": ref, **extra}


def panel(kind: str, title: str, targets: list[dict], x: int, y: int, w: int = 12, h: int = 8, **extra) -> dict:
    return {
        "id": next(_ids),
        "type": kind,
        "title": title,
        "datasource": targets[0]["datasource"] if targets else PROM,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        **extra,
    }


def row(title: str, y: int) -> dict:
    return {"id": next(_ids), "type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


def unit(u: str, **defaults) -> dict:
    return {"defaults": {"unit": u, **defaults}, "overrides": []}


def variable(name: str, label: str, query: str) -> dict:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": PROM,
        "query": {"query": query, "refId": f"var-{name}"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def build() -> dict:
    global _ids
    _ids = iter(range(1, 1000))
    rate = "[$__rate_interval]"
    panels = [
        row("Golden signals (per model and version)", 0),
        panel("timeseries", "Calls per second", [
            target(f"sum by (model_name, model_version, method) (rate(driftcar_inference_calls_total{{{SEL}}}{rate}))",
                   "{{model_name}} v{{model_version}} {{method}}"),
        ], 0, 1, 8, fieldConfig=unit("reqps")),
        panel("timeseries", "Error ratio", [
            target(f'sum by (model_name, model_version) (rate(driftcar_inference_calls_total{{{SEL}, error_type!=""}}{rate}))'
                   f" / sum by (model_name, model_version) (rate(driftcar_inference_calls_total{{{SEL}}}{rate}))",
                   "{{model_name}} v{{model_version}}"),
        ], 8, 1, 8, fieldConfig=unit("percentunit")),
        panel("timeseries", "Latency p50 / p95 / p99", [
            target(f"histogram_quantile({q}, sum by (le, model_name, model_version) (rate(driftcar_inference_duration_seconds_bucket{{{SEL}}}{rate})))",
                   f"p{int(q * 100)} {{{{model_name}}}} v{{{{model_version}}}}", ref)
            for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
        ], 16, 1, 8, fieldConfig=unit("s")),
        panel("timeseries", "Rows per second", [
            target(f"sum by (model_name, model_version) (rate(driftcar_inference_rows_total{{{SEL}}}{rate}))",
                   "{{model_name}} v{{model_version}}"),
        ], 0, 9, 8, fieldConfig=unit("rowsps")),
        panel("stat", "Features drifting now", [
            target(f"sum by (model_name, model_version) (driftcar_drift_detected_ratio{{{SEL}}})",
                   "{{model_name}} v{{model_version}}", instant=True),
        ], 8, 9, 8, fieldConfig=unit("none", thresholds={"mode": "absolute", "steps": [
            {"color": "green", "value": None}, {"color": "red", "value": 1}]})),
        panel("stat", "Models tracked", [target("sum(driftcar_state_models)", "models", instant=True)], 16, 9, 4,
              fieldConfig=unit("none")),
        panel("stat", "Reference coverage", [
            target(f"min by (model_name, model_version) (driftcar_reference_coverage_ratio{{{SEL}}})",
                   "{{model_name}} v{{model_version}}", instant=True),
        ], 20, 9, 4, description=(
            "Share of the reference's profiled features seen in the last window with traffic. 0 means drift is "
            "compared on nothing (feature or model names that do not match the reference, or no reference): "
            "the driftcar.reference.mismatch event names what did not match."),
            fieldConfig=unit("percentunit", min=0, max=1, thresholds={"mode": "absolute", "steps": [
                {"color": "red", "value": None}, {"color": "orange", "value": 0.01}, {"color": "green", "value": 0.5}]})),

        row("Drift", 17),
        panel("timeseries", "Distance scores vs score threshold (tests deciding by score; dashed: threshold)", [
            target(f"driftcar_drift_score_ratio{{{FSEL}}} unless {TEST} driftcar_drift_pvalue_ratio",
                   "{{feature_name}} {{drift_method}}", "A"),
            target(f"driftcar_drift_threshold_ratio{{{FSEL}}} unless {TEST} driftcar_drift_pvalue_ratio",
                   "threshold {{feature_name}} {{drift_method}}", "B"),
        ], 0, 18, 16, 10, description=(
            "Tests that decide by a distance (Wasserstein, PSI, Jensen-Shannon, Hellinger; PCA on large windows): "
            "drift when score >= threshold. Tests that decide by p-value are in the p-value "
            "panel below, because their threshold is a p-value cut-off, not a score."), fieldConfig={"defaults": {"unit": "none"}, "overrides": [{
            "matcher": {"id": "byFrameRefID", "options": "B"},
            "properties": [
                {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                {"id": "custom.lineWidth", "value": 1},
            ],
        }]}),
        panel("table", "Detected drift (deciding test per feature)", [
            target(f"driftcar_drift_detected_ratio{{{FSEL}}} == 1", "", "A", instant=True, format="table"),
            target(f"driftcar_drift_score_ratio{{{FSEL}}}", "", "B", instant=True, format="table"),
            target(f"driftcar_drift_threshold_ratio{{{FSEL}}}", "", "C", instant=True, format="table"),
            target(f"driftcar_drift_pvalue_ratio{{{FSEL}}}", "", "D", instant=True, format="table"),
        ], 16, 18, 8, 10, description=(
            "threshold is on the scale of the deciding quantity: a p-value cut-off (drift when p-value < threshold) "
            "where the p-value column is filled, else a score threshold (drift when score >= threshold)."),
            transformations=[
            {"id": "merge", "options": {}},
            {"id": "filterByValue", "options": {"type": "include", "match": "all", "filters": [
                {"fieldName": "Value #A", "config": {"id": "equal", "options": {"value": 1}}}]}},
            {"id": "organize", "options": {
                "excludeByName": {"Time": True, "__name__": True, "job": True, "instance": True, "Value #A": True},
                "renameByName": {"Value #B": "score", "Value #C": "threshold", "Value #D": "p-value",
                                 "feature_name": "feature", "drift_method": "method", "drift_window": "window"}}},
        ]),
        panel("timeseries", "p-values vs p-value cut-off (tests deciding by p-value; dashed: cut-off)", [
            target(f"driftcar_drift_pvalue_ratio{{{FSEL}}}", "{{feature_name}} {{drift_method}}", "A"),
            target(f"driftcar_drift_threshold_ratio{{{FSEL}}} and {TEST} driftcar_drift_pvalue_ratio",
                   "cut-off {{feature_name}} {{drift_method}}", "B"),
        ], 0, 28, 12, description=(
            "p-values (corrected across features) of the tests that decide by p-value (KS and chi-square; PCA "
            "on small windows): drift when p-value < cut-off. A lower line is stronger evidence of drift."),
            fieldConfig={"defaults": {"unit": "none", "min": 0, "max": 1}, "overrides": [{
                "matcher": {"id": "byFrameRefID", "options": "B"},
                "properties": [
                    {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                    {"id": "custom.lineWidth", "value": 1},
                ],
            }]}),
        panel("state-timeline", "Drift verdicts over time", [
            target(f"max by (feature_name) (driftcar_drift_detected_ratio{{{FSEL}}})", "{{feature_name}}"),
        ], 12, 28, 12, fieldConfig={"defaults": {"mappings": [{"type": "value", "options": {
            "0": {"text": "ok", "color": "green"}, "1": {"text": "drift", "color": "red"}}}]}, "overrides": []}),

        row("Distributions", 36),
        panel("bargauge", "Feature histogram vs reference: last 15m and 24h on the reference's equal-frequency bins", [
            target(f"sum by (le) (increase(driftcar_feature_value_bucket{{{FSEL}}}[15m]))"
                   f" / scalar(sum(increase(driftcar_feature_value_count{{{FSEL}}}[15m])))",
                   "{{le}} (15m)", "A", instant=True, format="heatmap"),
            target(f"sum by (le) (increase(driftcar_feature_value_bucket{{{FSEL}}}[1d]))"
                   f" / scalar(sum(increase(driftcar_feature_value_count{{{FSEL}}}[1d])))",
                   "{{le}} (24h)", "B", instant=True, format="heatmap"),
        ], 0, 37, 12, 10, description=(
            "Share of rows per bin, one feature (pick it above). The buckets are the reference profile's "
            "equal-frequency bins (20 by default), so under the reference each holds 1/20 = 5% of the rows: "
            "green bars match the reference, orange/red ones hold 1.5x/2x that share or more. Features with "
            "repeated values have merged bins; their exact reference counts are in the sidecar's "
            "/v1/models/<model>/drift JSON."),
            fieldConfig=unit("percentunit", thresholds={"mode": "absolute", "steps": [
                {"color": "green", "value": None}, {"color": "orange", "value": 0.075}, {"color": "red", "value": 0.1}]}),
            options={"displayMode": "basic", "orientation": "horizontal"}),
        panel("timeseries", "Missing values per second", [
            target(f"sum by (feature_name) (rate(driftcar_feature_missing_total{{{FSEL}}}{rate}))", "{{feature_name}}"),
        ], 12, 37, 12, 5, fieldConfig=unit("rowsps")),
        panel("timeseries", "Top categories", [
            target(f"topk(10, sum by (feature_name, category) (rate(driftcar_feature_category_total{{{FSEL}}}{rate})))",
                   "{{feature_name}}={{category}}"),
        ], 12, 42, 12, 5, fieldConfig=unit("rowsps")),
        panel("timeseries", "Predicted classes", [
            target(f"sum by (class) (rate(driftcar_prediction_class_total{{{SEL}}}{rate}))", "{{class}}"),
        ], 0, 47, 12, fieldConfig=unit("rowsps")),
        panel("timeseries", "Prediction value p50 / p95", [
            target(f"histogram_quantile({q}, sum by (le) (rate(driftcar_prediction_value_bucket{{{SEL}}}{rate})))", f"p{int(q * 100)}", ref)
            for q, ref in ((0.5, "A"), (0.95, "B"))
        ], 12, 47, 12),

        row("Model quality", 55),
        panel("timeseries", "Performance (from labels)", [
            target(f"driftcar_performance_score_ratio{{{SEL}}}", "{{model_name}} v{{model_version}} {{metric}}"),
        ], 0, 56, 8),
        panel("timeseries", "Estimated accuracy (label-free)", [
            target(f"driftcar_performance_estimated_accuracy_ratio{{{SEL}}}", "{{model_name}} v{{model_version}}"),
        ], 8, 56, 8, fieldConfig=unit("percentunit", min=0, max=1)),
        panel("timeseries", "Labels without a prediction", [
            target(f"sum by (reason) (rate(driftcar_labels_unmatched_total{{{SEL}}}{rate}))", "{{reason}}"),
        ], 16, 56, 8, fieldConfig=unit("rowsps")),

        row("Pipeline health", 64),
        panel("timeseries", "Hook drops (rows/s)", [
            target(f"sum by (model_name, model_version) (rate(driftcar_hook_dropped_total{{{SEL}}}{rate}))",
                   "{{model_name}} v{{model_version}}"),
        ], 0, 65, 6, fieldConfig=unit("rowsps", thresholds={"mode": "absolute", "steps": [
            {"color": "green", "value": None}, {"color": "red", "value": 0.001}]})),
        panel("timeseries", "Batches received by outcome", [
            target(f"sum by (outcome) (rate(driftcar_receiver_batches_total{rate}))", "{{outcome}}"),
        ], 6, 65, 6, fieldConfig=unit("ops")),
        panel("timeseries", "Receive queue (rows) and ignored records", [
            target("sum(driftcar_receiver_queue_size)", "queued rows", "A"),
            target(f"sum(rate(driftcar_receiver_records_ignored_total{rate}))", "ignored records/s", "B"),
        ], 12, 65, 6),
        panel("timeseries", "Cardinality overflow (series folded)", [
            target(f"sum by (attribute) (rate(driftcar_cardinality_overflow_total{rate}))", "{{attribute}}"),
        ], 18, 65, 6),

        row("Events", 73),
        panel("logs", "Drift and performance events (links to sample traces)", [
            {"datasource": LOKI, "refId": "A",
             "expr": '{service_name=~"driftcar.*"} | model_name=~"$model"'},
        ], 0, 74, 24, 10, options={"showTime": True, "wrapLogMessage": True, "enableLogDetails": True,
                                   "sortOrder": "Descending"},
            description="driftcar.drift.detected / resolved, driftcar.performance.degraded and "
                        "driftcar.reference.mismatch log events; "
                        "the trace ids of sampled calls open in Tempo (Loki data source derived fields)."),
    ]
    return {
        "uid": "driftcar-overview",
        "title": "driftcar: model monitoring",
        "description": "Golden signals, drift, distributions and quality of ML models, from the driftcar sidecar.",
        "tags": ["driftcar", "ml", "drift"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "annotations": {"list": [{
            "name": "Drift detected", "datasource": PROM, "enable": True, "iconColor": "red",
            "expr": f"changes(driftcar_drift_detected_ratio{{{SEL}}}[2m]) > 0 and driftcar_drift_detected_ratio == 1",
            "titleFormat": "drift: {{feature_name}}", "textFormat": "{{drift_method}} on {{model_name}} v{{model_version}}",
        }]},
        "templating": {"list": [
            variable("model", "model", "label_values(driftcar_inference_rows_total, model_name)"),
            variable("version", "version", 'label_values(driftcar_inference_rows_total{model_name=~"$model"}, model_version)'),
            variable("feature", "feature", 'label_values(driftcar_drift_score_ratio{model_name=~"$model"}, feature_name)'),
        ]},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print("deploy/grafana/driftcar.json is stale: run python deploy/grafana/build_dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
