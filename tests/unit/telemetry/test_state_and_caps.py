"""Metric state, cardinality caps, configuration and events of the sidecar telemetry (in memory)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig
from driftcar.sidecar.telemetry.caps import CardinalityCaps
from driftcar.sidecar.telemetry.events import EventLog
from driftcar.sidecar.telemetry.state import MetricState, validate_bounds

M = (("model.name", "m"), ("model.version", "1"))


def series(tel: Telemetry, name: str) -> dict:
    return {s.attributes: s.value for s in tel._state.snapshot() if s.name == name}


def new(**kwargs) -> Telemetry:
    return Telemetry(TelemetryConfig(export="none", **kwargs))


# ----------------------------------------------------------------------------- state
def test_duration_buckets_match_numpy_upper_inclusive():
    rng = np.random.default_rng(11)
    bounds = validate_bounds([-1.0, 0.0, 0.5, 2.0])
    values = np.concatenate([rng.normal(0, 1, 1000), bounds, [np.nan, np.inf]])  # values on the bounds too
    state = MetricState()
    state.add_to_histogram("driftcar.inference.duration", M, bounds, values[:500])
    state.add_to_histogram("driftcar.inference.duration", M, bounds, values[500:])
    h = state.get("driftcar.inference.duration", M)
    finite = values[np.isfinite(values)]
    edges = np.concatenate([[-np.inf], bounds, [np.inf]])
    expected = [np.count_nonzero((finite > lo) & (finite <= hi)) for lo, hi in zip(edges[:-1], edges[1:])]
    assert list(h.counts) == expected and h.count == finite.size
    assert h.sum == pytest.approx(finite.sum(), rel=1e-12)


@pytest.mark.parametrize("bounds", [[1.0, 0.5], [0.0, 0.0], [0.0, np.nan], [[0.0]]])
def test_bad_bounds_are_refused(bounds):
    with pytest.raises(ValueError):
        validate_bounds(bounds)


def test_counters_refuse_negative_and_wrong_types():
    state = MetricState()
    with pytest.raises(ValueError):
        state.add("driftcar.inference.rows", M, -1)
    with pytest.raises(TypeError):
        state.set_gauge("driftcar.inference.rows", M, 1.0)
    with pytest.raises(KeyError):
        state.add("driftcar.not.a.metric", M, 1)


def test_concurrent_adds_are_exact():
    tel = new()

    def work():
        for _ in range(2000):
            tel.add_rows("m", "1", 3)
            tel.add_category("m", "1", "c", "x", 1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert series(tel, "driftcar.inference.rows")[M] == 4 * 2000 * 3
    assert sum(series(tel, "driftcar.feature.category").values()) == 4 * 2000


# ----------------------------------------------------------------------------- caps
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 1000)), max_size=200), st.integers(1, 10))
def test_category_cap_keeps_totals_exact(events, cap):
    tel = new(max_categories=cap)
    for category, n in events:
        tel.add_category("m", "1", "city", f"c{category}", n)
    got = series(tel, "driftcar.feature.category")
    assert sum(got.values()) == sum(n for _, n in events)
    distinct = list(dict.fromkeys(f"c{c}" for c, _ in events))
    kept = set(distinct[:cap])
    assert {dict(a)["category"] for a in got} == kept | ({"__other__"} if len(distinct) > cap else set())
    overflow = series(tel, "driftcar.cardinality.overflow")
    assert sum(overflow.values()) == max(len(distinct) - cap, 0)


def test_fifty_thousand_distinct_values_stay_capped():
    """Issue 6 point 10: series stay at their caps + one overflow series each, counts add up exactly."""
    tel = new(max_models=5, max_features_per_model=20, max_categories=10)
    n = 50_000
    for i in range(n):
        tel.add_missing("m", "1", f"feature-{i}", 2)
        tel.add_category("m", "1", "feature-0", f"city-{i}", 3)  # feature-0 is one of the 20 kept
        tel.add_rows(f"model-{i}", "1", 1)
    missing = series(tel, "driftcar.feature.missing")
    categories = series(tel, "driftcar.feature.category")
    rows = series(tel, "driftcar.inference.rows")
    assert len(missing) == 20 + 1 and sum(missing.values()) == 2 * n
    assert len(categories) == 10 + 1 and sum(categories.values()) == 3 * n
    assert len(rows) == 4 + 1 and sum(rows.values()) == n  # model "m" holds the fifth model slot
    assert missing[M + (("feature.name", "__overflow__"),)] == 2 * (n - 20)
    overflow = {dict(a)["attribute"]: v for a, v in series(tel, "driftcar.cardinality.overflow").items()}
    assert overflow == {"feature.name": n - 20, "category": n - 10, "model.name": n - 4}


def test_caps_exempt_special_feature_names():
    tel = new(max_features_per_model=1)
    tel.add_missing("m", "1", "a", 1)
    for name in ("__multivariate__", "__prediction__"):
        tel.set_drift("m", "1", name, "pca_reconstruction", "1m", 0.1, None, 0.2, False)
    features = {dict(a)["feature.name"] for a in series(tel, "driftcar.drift.detected")}
    assert features == {"__multivariate__", "__prediction__"}


def test_caps_memo_is_bounded_and_never_undercounts():
    caps = CardinalityCaps(1, memo_limit=3)
    folds = [caps.fold(("s",), f"v{i}", "__overflow__")[1] for i in range(10)] + \
            [caps.fold(("s",), "v1", "__overflow__")[1]]
    assert folds[0] is False and all(folds[1:10])
    assert caps.folded_total == 9  # v1 remembered: folding it again is not a new series
    assert caps.fold(("s",), "v9", "__overflow__")[1] is True  # beyond the memo: counted again


# ----------------------------------------------------------------------------- histograms from sketches
def test_overflowed_feature_histograms_fold_by_count_and_sum():
    tel = new(max_features_per_model=1)
    tel.set_histogram("feature", "m", "1", "kept", [0.0], [2, 3], 1.0, 5)
    tel.set_histogram("feature", "m", "1", "x", [1.0, 2.0], [1, 1, 1], 4.5, 3)
    tel.set_histogram("feature", "m", "1", "y", [5.0], [4, 0], -2.0, 4)
    tel.set_histogram("feature", "m", "1", "x", [1.0, 2.0], [2, 2, 2], 9.0, 6)  # cumulative update of x
    got = series(tel, "driftcar.feature.value")
    over = got[M + (("feature.name", "__overflow__"),)]
    assert (over.count, over.sum, over.bounds, over.counts) == (10, 7.0, (), (10,))
    assert got[M + (("feature.name", "kept"),)].counts == (2, 3)


@pytest.mark.parametrize("args, match", [
    (("feature", [0.0, 1.0], [1, 2], 0.0, 3), "len"),
    (("feature", [0.0], [1, 2], 0.0, 4), "sum"),
    (("feature", [1.0, 0.0], [1, 2, 3], 0.0, 6), "increasing"),
    (("feature", [0.0], [1, -1], 0.0, 0), "non-negative"),
    (("feature", [0.0], [1, 1], float("nan"), 2), "finite"),
    (("sideways", [0.0], [1, 1], 0.0, 2), "kind"),
])
def test_set_histogram_rejects_bad_input(args, match):
    kind, bounds, counts, total, count = args
    with pytest.raises(ValueError, match=match):
        new().set_histogram(kind, "m", "1", "x", bounds, counts, total, count)


# ----------------------------------------------------------------------------- semantics
def test_hook_dropped_is_the_sum_of_each_instances_maximum():
    from driftcar.sidecar.signals import HookDrops

    drops, tel = HookDrops(), new()
    for instance, cumulative in [("a", 5), ("b", 2), ("a", 3), ("a", 7), ("b", 2), ("c", 1)]:
        total = drops.update(instance, cumulative)
        if total is not None:
            tel.set_hook_dropped("m", "1", total)
    assert series(tel, "driftcar.hook.dropped")[M] == 7 + 2 + 1 == drops.total


def test_one_detected_series_per_feature_follows_the_deciding_test():
    tel = new()
    tel.set_drift("m", "1", "x", "ks", "1m", 0.3, 0.001, 0.05, True)
    tel.set_drift("m", "1", "x", "psi", "1m", 0.05, None, 0.1, None)  # not deciding
    detected = series(tel, "driftcar.drift.detected")
    assert [dict(a)["drift.method"] for a in detected] == ["ks"]
    tel.set_drift("m", "1", "x", "psi", "1m", 0.05, None, 0.1, False)  # the deciding test changed
    detected = series(tel, "driftcar.drift.detected")
    assert [(dict(a)["drift.method"], v) for a, v in detected.items()] == [("psi", 0.0)]
    assert len(series(tel, "driftcar.drift.score")) == 2  # both tests keep their scores
    assert len(series(tel, "driftcar.drift.pvalue")) == 1  # psi has no p-value


def test_overflowed_features_drift_detected_while_any_folded_feature_drifts():
    tel = new(max_features_per_model=1)
    tel.set_drift("m", "1", "a", "ks", "1m", 0.1, 0.5, 0.05, False)
    tel.set_drift("m", "1", "b", "ks", "1m", 0.9, 1e-9, 0.05, True)
    tel.set_drift("m", "1", "c", "ks", "1m", 0.1, 0.4, 0.05, False)
    key = M + (("feature.name", "__overflow__"), ("drift.method", "__overflow__"), ("drift.window", "1m"))
    assert series(tel, "driftcar.drift.detected")[key] == 1.0
    tel.set_drift("m", "1", "b", "ks", "1m", 0.1, 0.4, 0.05, False)
    assert series(tel, "driftcar.drift.detected")[key] == 0.0


@pytest.mark.parametrize("call", [
    lambda t: t.add_rows("m", "1", -1),
    lambda t: t.add_rows("m", "1", 1.5),
    lambda t: t.add_rows("", "1", 1),
    lambda t: t.add_receiver_batches("lost", 1),
    lambda t: t.add_labels_unmatched("m", "1", "whatever", 1),
    lambda t: t.set_performance("m", "1", "auc", 0.5),
    lambda t: t.set_drift("m", "1", "x", "ks", "1m", float("inf"), None, 0.1, True),
    lambda t: t.emit_event("driftcar.unknown", "WARN", "x", {}),
    lambda t: t.emit_event("driftcar.drift.detected", "LOUD", "x", {}),
])
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call(new())


def test_error_type_only_on_failures():
    tel = new()
    tel.add_calls("m", "1", "predict", None, 3)
    tel.add_calls("m", "1", "predict", "TimeoutError", 1)
    keys = {tuple(k for k, _ in a) for a in series(tel, "driftcar.inference.calls")}
    assert keys == {("model.name", "model.version", "method"), ("model.name", "model.version", "method", "error.type")}


# ----------------------------------------------------------------------------- config and events
def test_config_reports_every_problem_at_once():
    with pytest.raises(ValueError) as err:
        TelemetryConfig(export="kafka", otlp_protocol="http/json", export_interval_s=0, max_models=0,
                        max_categories=-1)
    message = str(err.value)
    for key in ("export:", "otlp_protocol:", "export_interval_s:", "max_models:", "max_categories:"):
        assert key in message


def test_export_interval_from_env(monkeypatch):
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "2500")
    assert TelemetryConfig().resolved_interval_s() == 2.5
    assert TelemetryConfig(export_interval_s=1).resolved_interval_s() == 1.0
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "soon")
    with pytest.raises(ValueError, match="OTEL_METRIC_EXPORT_INTERVAL"):
        TelemetryConfig().resolved_interval_s()
    monkeypatch.delenv("OTEL_METRIC_EXPORT_INTERVAL")
    assert TelemetryConfig().resolved_interval_s() == 60.0


def test_unsupported_protocol_from_env_is_refused(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match="http/json"):
        Telemetry(TelemetryConfig(export="otlp"))


def test_event_ring_is_bounded_and_newest_last():
    log = EventLog(None, max_events=3)
    for i in range(5):
        log.emit("driftcar.drift.detected", "WARN", f"e{i}", {"drift.pvalue": None, "i": i, "ids": ["a"]})
    recent = log.recent(10)
    assert [e["body"] for e in recent] == ["e2", "e3", "e4"]
    assert recent[-1]["attributes"] == {"i": 4, "ids": ["a"]}  # None (undefined p-value) dropped
    assert [e["body"] for e in log.recent(1)] == ["e4"] and log.recent(0) == []


# ----------------------------------------------------------------------------- request splitting
def test_large_states_are_split_into_requests_under_the_byte_limit():
    from driftcar.sidecar.telemetry.otlp import count_points, split_metrics_data

    tel = new()
    rng = np.random.default_rng(5)
    for f in range(300):
        counts = rng.integers(0, 100, 21)
        tel.set_histogram("feature", "m", "1", f"f{f}", np.linspace(-1, 1, 20), counts, 0.5, int(counts.sum()))
        tel.set_drift("m", "1", f"f{f}", "ks", "1m", 0.1, 0.5, 0.05, False)
        tel.add_missing("m", "1", f"f{f}", 1)
    data = tel.metrics_data()
    pieces = list(split_metrics_data(data, 16 * 1024))
    assert len(pieces) > 5
    assert all(p.ByteSize() <= 16 * 1024 for p in pieces)
    assert sum(count_points(p) for p in pieces) == count_points(data)

    def points(datas):
        return sorted(
            (m.name, p.SerializeToString())
            for d in datas for rm in d.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            for p in getattr(m, m.WhichOneof("data")).data_points
        )

    assert points(pieces) == points([data])
    assert all(p.resource_metrics[0].resource == data.resource_metrics[0].resource for p in pieces)
    assert list(split_metrics_data(data, 10**9)) == [data]


def test_otlp_timeout_env_is_read_in_milliseconds(monkeypatch):
    from driftcar.sidecar.telemetry.exporters import resolve_timeout_s

    for var in ("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    assert resolve_timeout_s("metrics") == 10.0
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")
    assert resolve_timeout_s("metrics") == 2.5 and resolve_timeout_s("logs") == 2.5
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "700")
    assert resolve_timeout_s("logs") == 0.7 and resolve_timeout_s("metrics") == 2.5
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "ten")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"):
        resolve_timeout_s("metrics")


def test_hook_instances_are_bounded_and_retired_counts_stay(monkeypatch):
    from driftcar.sidecar import signals as module

    monkeypatch.setattr(module, "MAX_HOOK_INSTANCES", 3)
    drops = module.HookDrops()
    for i in range(10):
        drops.update(f"pid-{i}", 10 + i)
    assert drops.update("pid-9", 30) == sum(10 + i for i in range(10)) + 11  # a live instance grows: +11
    assert drops.update("pid-9", 30) is None  # a repeated report counts once
    assert len(drops.live) == 3


def test_folded_feature_memory_is_bounded(monkeypatch):
    from driftcar.sidecar.telemetry import telemetry as module

    monkeypatch.setattr(module, "MAX_FOLDED_TRACKED", 2)
    tel = new(max_features_per_model=1)
    for name in ("kept", "a", "b", "c"):
        tel.set_histogram("feature", "m", "1", name, [0.0], [1, 1], 0.0, 2)
        tel.set_drift("m", "1", name, "ks", "1m", 0.9, 1e-9, 0.05, True)
    over = series(tel, "driftcar.feature.value")[M + (("feature.name", "__overflow__"),)]
    assert over.count == 4  # a and b tracked; c beyond the bound
    assert len(tel._overflow_hist[M]) == 2 and len(tel._overflow_detected[M]) == 2


def test_memory_is_flat_once_capped():
    """Issue 6 point 10: after the caps and the fold memo are full, new distinct values cost no memory."""
    import gc
    import tracemalloc

    tel = new(max_categories=10, max_features_per_model=10)
    tel._categories = CardinalityCaps(10, memo_limit=1000)
    tel._features = CardinalityCaps(10, memo_limit=1000)

    def feed(start, stop):
        for i in range(start, stop):
            tel.add_category("m", "1", "city", f"city-{i}", 1)
            tel.add_missing("m", "1", f"feature-{i}", 1)

    feed(0, 3000)  # caps and memos full
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        feed(3000, 8000)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert growth < 64 * 1024, growth
    assert sum(series(tel, "driftcar.feature.category").values()) == 8000
    assert len(series(tel, "driftcar.feature.category")) == 11
