"""Prometheus text exposition of the telemetry state: parsed back and compared; checked by promtool."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig
from driftcar.sidecar.telemetry.prometheus import escape_label_value, format_value
from tests.support.waiting import require_binary
from tests.unit.telemetry.promparse import parse


@pytest.fixture
def tel(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", 'k8s.pod.name=pod-"1"')
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    return Telemetry(TelemetryConfig(export="none"))


def fill(tel: Telemetry, rng: np.random.Generator) -> dict:
    values = rng.normal(-1.0, 2.0, 5000)
    bounds = np.quantile(values, np.linspace(0.1, 0.9, 9))
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=bounds.size + 1)
    tel.set_histogram("feature", "churn", "3", "balance", bounds, counts, float(values.sum()), values.size)
    durations = rng.exponential(0.01, 300)
    tel.record_durations("churn", "3", "predict", durations)
    tel.add_category("churn", "3", "city", 'Saint-"Étienne"\\\nnord', 4)
    tel.add_calls("churn", "3", "predict", None, 9)
    tel.set_drift("churn", "3", "balance", "ks", "1m", 0.25, 1e-9, 0.0025, True)
    tel.set_queue_size(17)
    return {"values": values, "bounds": bounds, "durations": durations}


def test_parsed_back_equals_the_state(tel):
    data = fill(tel, np.random.default_rng(3))
    helps, types, samples = parse(tel.prometheus_text())
    assert types["driftcar_feature_value"] == "histogram"
    assert types["driftcar_inference_calls_total"] == "counter"
    assert types["driftcar_drift_score_ratio"] == "gauge" and types["target_info"] == "gauge"
    assert set(types) <= set(helps)

    def rows(name, **labels):
        return [(lab, v) for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in labels.items())]

    # histogram: cumulative le buckets equal numpy's count of values <= bound, +Inf = count
    buckets = rows("driftcar_feature_value_bucket", feature_name="balance")
    les = [lab["le"] for lab, _ in buckets]
    assert les[-1] == "+Inf"
    for lab, value in buckets[:-1]:
        assert value == np.count_nonzero(data["values"] <= float(lab["le"]))
    assert [float(le) for le in les[:-1]] == pytest.approx(list(data["bounds"]), rel=1e-15)
    assert buckets[-1][1] == rows("driftcar_feature_value_count")[0][1] == 5000
    assert rows("driftcar_feature_value_sum")[0][1] == pytest.approx(data["values"].sum(), rel=1e-12)
    values = [v for _, v in buckets]
    assert values == sorted(values)  # cumulative

    durations = rows("driftcar_inference_duration_seconds_bucket", le="0.01")[0][1]
    assert durations == np.count_nonzero(data["durations"] <= 0.01)

    # label escaping round-trips
    (labels, count), = rows("driftcar_feature_category_total")
    assert labels["category"] == 'Saint-"Étienne"\\\nnord' and count == 4
    (labels, _), = rows("target_info")
    assert labels["k8s_pod_name"] == 'pod-"1"' and labels["service_name"] == "driftcar-sidecar"
    assert rows("driftcar_drift_pvalue_ratio")[0][1] == pytest.approx(1e-9)
    assert rows("driftcar_receiver_queue_size") == [({}, 17.0)]


def test_promtool_accepts_the_exposition(tel, tmp_path):
    promtool = require_binary("promtool")
    fill(tel, np.random.default_rng(4))
    tel.set_histogram("prediction", "churn", "3", None, [0.25, 0.5, 0.75], [1, 2, 3, 4], 6.0, 10)
    tel.set_performance("churn", "3", "f1", 0.7)
    tel.add_receiver_batches("rejected", 2)
    text = tel.prometheus_text()
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


def test_promtool_rejects_a_broken_exposition(tmp_path):
    """The check above can fail: promtool does complain about a counter without _total."""
    promtool = require_binary("promtool")
    broken = "# HELP x_count_things c\n# TYPE x_count_things counter\nx_count_things 1\n"
    result = subprocess.run([promtool, "check", "metrics"], input=broken, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 or result.stdout.strip() or result.stderr.strip()


def test_value_formatting_and_escaping():
    assert [format_value(v) for v in (3, 2.0, 0.5, math.inf, -math.inf, math.nan, 1e-9)] == [
        "3", "2", "0.5", "+Inf", "-Inf", "NaN", "1e-09"]
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_empty_state_has_only_target_info(tel):
    helps, types, samples = parse(tel.prometheus_text())
    assert list(types) == ["target_info"] and len(samples) == 1


