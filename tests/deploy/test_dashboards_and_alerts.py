"""The Grafana dashboard and the Prometheus alert rules: valid, unit-tested with promtool, and built
only on the contract's metric names (driftcar.sidecar.telemetry.names), so a rename breaks this test."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.waiting import require_binary

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "driftcar.json"

#: Prometheus-made series and labels the rules/dashboard may use besides the contract
BUILTIN_METRICS = {"up"}
BUILTIN_LABELS = {"le", "job", "instance", "__name__"}
#: labels of the Collector's own metrics (the driftcar-collector alert group); its metric names are
#: matched by a ``__name__`` pattern that tests/integration/collector/test_faults_live.py checks live
COLLECTOR_LABELS = {"exporter"}


def contract() -> tuple[set[str], set[str]]:
    """(Prometheus metric names incl. histogram series, Prometheus label names) from the names table."""
    from driftcar.sidecar.telemetry.names import HISTOGRAM, METRICS, prometheus_label

    metrics, labels = set(), set()
    for spec in METRICS.values():
        name = spec.prometheus_name
        metrics |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if spec.type == HISTOGRAM else {name}
        labels |= {prometheus_label(a) for a in spec.all_attributes}
    return metrics, labels


def promql_expressions() -> dict[str, str]:
    """Every PromQL expression: alert rules and Prometheus-backed dashboard targets/variables/annotations."""
    out = {}
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            out[f"alert {rule['alert']}"] = rule["expr"]
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for t in panel.get("targets", []):
            if t["datasource"]["type"] == "prometheus":
                out[f"panel {panel['title']} {t['refId']}"] = t["expr"]
    for var in dashboard["templating"]["list"]:
        out[f"variable {var['name']}"] = var["query"]["query"]
    for ann in dashboard["annotations"]["list"]:
        out[f"annotation {ann['name']}"] = ann["expr"]
    return out


_FUNCTIONS_AND_KEYWORDS = {
    "sum", "max", "min", "rate", "increase", "histogram_quantile", "topk", "scalar", "by", "and", "or",
    "unless", "on", "absent_over_time", "max_over_time", "min_over_time", "changes", "label_values", "offset",
}


def unknown_names(expr: str, metrics: set[str], labels: set[str]) -> list[str]:
    """Metric and label names in ``expr`` that the contract does not define."""
    problems = []
    text = re.sub(r'"[^"]*"', '""', expr)  # drop string literals
    for name in re.findall(r"\b(driftcar_[a-z0-9_]+)\b", text):
        if name not in metrics:
            problems.append(f"metric {name}")
    used_labels = set()
    for group in re.findall(r"\bby\s*\(([^)]*)\)", text):
        used_labels |= {g.strip() for g in group.split(",") if g.strip()}
    used_labels |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"", text))
    for label in used_labels - labels - BUILTIN_LABELS - COLLECTOR_LABELS:
        problems.append(f"label {label}")
    for name in re.findall(r"\b([a-z_]+)\s*\{", text):
        if not name.startswith("driftcar_") and name not in BUILTIN_METRICS and name not in _FUNCTIONS_AND_KEYWORDS:
            problems.append(f"metric {name}")
    return problems


def test_every_metric_and_label_is_in_the_contract():
    metrics, labels = contract()
    problems = {where: p for where, expr in promql_expressions().items() if (p := unknown_names(expr, metrics, labels))}
    assert problems == {}


def test_the_required_views_exist():
    exprs = " ".join(promql_expressions().values())
    for needed in ("driftcar_drift_score_ratio", "driftcar_drift_threshold_ratio", "driftcar_drift_detected_ratio",
                   "driftcar_feature_value_bucket", "driftcar_performance_score_ratio", "driftcar_hook_dropped_total",
                   "driftcar_inference_calls_total", "driftcar_inference_duration_seconds_bucket"):
        assert needed in exprs
    alerts = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    assert {"DriftcarDriftDetected", "DriftcarPerformanceDegraded", "DriftcarHookDropping", "DriftcarSidecarDown",
            "DriftcarCollectorDropping"} <= alerts
    dashboard = json.loads(DASHBOARD.read_text())
    logs = [p for p in dashboard["panels"] if p["type"] == "logs"]
    assert logs and logs[0]["targets"][0]["datasource"]["type"] == "loki"


def test_name_checker_reports_a_misspelt_metric_and_label():
    metrics, labels = contract()
    problems = unknown_names('max by (feature) (driftcar_drift_detect_ratio{model_name="x"})', metrics, labels)
    assert problems == ["metric driftcar_drift_detect_ratio", "label feature"]


def test_dashboard_is_generated_and_well_formed():
    result = subprocess.run([sys.executable, str(ROOT / "deploy/grafana/build_dashboard.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for p in dashboard["panels"]:
        grid = p["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, p["title"]
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] in ("prometheus", "loki", "tempo")


# --- promtool ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool():
    return require_binary("promtool")


def run(promtool, *args, cwd=None):
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_promtool_check_rules(promtool):
    result = run(promtool, "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_alerts(promtool):
    result = run(promtool, "test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_catches_a_misspelt_metric_and_a_broken_rule(promtool, tmp_path):
    text = ALERTS.read_text()
    assert "driftcar_hook_dropped_total" in text
    (tmp_path / "alerts.yaml").write_text(text.replace("driftcar_hook_dropped_total", "driftcar_hook_droped_total"))
    shutil.copy(ALERTS_TEST, tmp_path / "alerts_test.yaml")
    result = run(promtool, "test", "rules", "alerts_test.yaml", cwd=tmp_path)
    assert result.returncode != 0 and "DriftcarHookDropping" in result.stdout + result.stderr

    (tmp_path / "broken.yaml").write_text(text.replace("== 1", "== == 1", 1))
    assert run(promtool, "check", "rules", str(tmp_path / "broken.yaml")).returncode != 0


def test_promtool_parses_every_dashboard_query(promtool, tmp_path):
    """Each dashboard PromQL expression, with Grafana's variables filled in, as a recording rule:
    ``promtool check rules`` then parses it with Prometheus's own PromQL parser."""
    substitutions = {"$__rate_interval": "1m", "$__range": "1h", "$model": ".*", "$version": ".*", "$feature": ".*"}
    rules = []
    for i, (where, expr) in enumerate(sorted(promql_expressions().items())):
        if where.startswith("variable"):
            continue  # label_values(...) is Grafana syntax, not PromQL
        for var, value in substitutions.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"{where}: unsubstituted variable in {expr}"
        rules.append({"record": f"driftcar:dashboard_query_{i}", "expr": expr})
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(tmp_path / "queries.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout
