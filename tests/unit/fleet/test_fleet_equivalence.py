"""The fleet verdict from N replicas equals the verdict on the pooled rows.

50 simulated replicas (no servers) each see a different slice of one window's rows,
close their window into a ``driftcar.window`` body, and a gateway merges the decoded
bodies and judges once. The same rows in one sketch give the reference verdict:
every score and p-value must agree to 1e-9, every decision exactly; joined labels
give the same performance scores as sklearn-free numpy on the pooled labels.
A replica that reports late or never: the window closes at the bound and says so.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from driftcar.sidecar.config import SidecarConfig
from driftcar.sidecar.evaluator import Evaluator
from driftcar.sidecar.fleet.gateway import FleetGateway
from driftcar.sidecar.fleet.golden import GoldenWindow
from driftcar.sidecar.fleet.record import ReferenceCadence, window_record
from driftcar.sidecar.state import StateStore, WindowClose
from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig
from driftcar.stats import evaluate_drift, profile
from driftcar.wire.window import decode_window, encode_window

W = 60.0
START = 1_800_000_000 * 10**9 - (1_800_000_000 * 10**9) % int(W * 1e9)
END = START + int(W * 1e9)
N_REPLICAS = 50


def _reference():
    rng = np.random.default_rng(1)
    n = 20_000
    return profile({"a": rng.normal(size=n), "b": rng.exponential(size=n), "c": rng.normal(5, 2, n),
                    "city": rng.choice(["x", "y", "z"], n)}, predictions=rng.integers(0, 2, n))


REFERENCE = _reference()


def _rows(n: int, seed: int = 2) -> dict:
    rng = np.random.default_rng(seed)
    a = rng.normal(0.15, 1.0, n)  # a small shift: some methods flag it, some do not
    a[rng.random(n) < 0.02] = np.nan
    return {"a": a, "b": rng.exponential(1.0, n), "c": rng.normal(5.6, 2, n),
            "city": rng.choice(["x", "y", "z", "w"], n, p=[0.3, 0.3, 0.3, 0.1]),
            "pred": rng.integers(0, 2, n), "label": rng.integers(0, 2, n)}


def _replica_close(rows: dict, lo: int, hi: int, replica: int) -> WindowClose:
    sketch = REFERENCE.new_window()
    cols = {k: rows[k][lo:hi] for k in ("a", "b", "c", "city")}
    cols["pred"] = rows["pred"][lo:hi]
    sketch.update(cols, {"a": "feature", "b": "feature", "c": "feature", "city": "feature", "pred": "prediction"})
    golden = GoldenWindow()
    golden.add_calls("predict", None, hi - lo)
    golden.add_durations("predict", np.full(hi - lo, 0.003))
    # each replica closes a few ms after the boundary, as real ticks do
    return WindowClose(model="churn", version="3", profile=REFERENCE, sketch=sketch,
                       start_ns=START + replica, end_ns=END + 3_000_000 + replica * 1000, rows=hi - lo,
                       y_true=rows["label"][lo:hi].tolist(), y_pred=rows["pred"][lo:hi].tolist(),
                       proba_sum=0.0, proba_n=0, trace_ids=[], golden=golden)


def _gateway(clock, **config):
    config = SidecarConfig(window_s=W, **config)
    tel = Telemetry(TelemetryConfig(export="none", scope="fleet"))
    store = StateStore(config.store_config(), tel, clock=clock)
    evaluator = Evaluator(store, tel, config.evaluator_config())
    return FleetGateway(store, evaluator, tel, config.fleet_config(), clock=clock), tel


def _splits(n: int, parts: int, seed: int = 3) -> list[tuple[int, int]]:
    cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, n), parts - 1, replace=False))
    bounds = [0, *cuts.tolist(), n]
    return list(zip(bounds[:-1], bounds[1:]))


def _forward(gateway, rows, splits, replicas):
    for i in replicas:
        lo, hi = splits[i]
        rec = window_record(_replica_close(rows, lo, hi, i), f"pod-{i}", W, ReferenceCadence(f"pod-{i}"))
        outcome = gateway.add(decode_window(encode_window(rec)))
        assert outcome == "merged", outcome


def test_fifty_replicas_give_the_pooled_verdict():
    n = 60_000
    rows = _rows(n)
    splits = _splits(n, N_REPLICAS)
    now = [END]
    gateway, tel = _gateway(lambda: now[0])
    _forward(gateway, rows, splits, range(N_REPLICAS))
    (result,) = gateway.close_due(now_ns=END + int(W * 1e9))
    assert result["replicas_reported"] == N_REPLICAS and result["rows"] == n and not result["missing"]

    pooled = REFERENCE.new_window()
    pooled.update({k: rows[k] for k in ("a", "b", "c", "city")})
    pooled.update_predictions(rows["pred"])
    expected = evaluate_drift(REFERENCE, pooled)
    (state,) = gateway.store.find("churn", "3")
    got = state.last.report
    assert [(r.feature, r.method) for r in got.results] == [(r.feature, r.method) for r in expected.results]
    for g, e in zip(got.results, expected.results):
        assert g.statistic == pytest.approx(e.statistic, abs=1e-9, rel=1e-9), (g.feature, g.method)
        assert (g.pvalue is None) == (e.pvalue is None)
        if e.pvalue is not None:
            assert g.pvalue == pytest.approx(e.pvalue, abs=1e-9, rel=1e-9)
        assert (g.detected, g.deciding, g.n_current) == (e.detected, e.deciding, e.n_current)
    assert got.detected() == expected.detected() and expected.detected()  # the shift is seen, by both
    accuracy = float(np.mean(rows["label"] == rows["pred"]))
    assert state.last.performance["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    text = tel.prometheus_text()
    assert f'driftcar_fleet_replicas{{model_name="churn",model_version="3",driftcar_scope="fleet"}} {N_REPLICAS}' in text
    assert 'driftcar_inference_calls_total{model_name="churn",model_version="3",driftcar_scope="fleet",' \
           f'method="predict"}} {n}' in text


def test_a_replica_that_never_reports_closes_the_window_at_the_bound():
    n = 5_000
    rows = _rows(n, seed=5)
    splits = _splits(n, 4)
    now = [END]
    gateway, _ = _gateway(lambda: now[0], fleet_wait_s=30.0)
    _forward(gateway, rows, splits, range(4))
    (first,) = gateway.close_due(now_ns=END + 30 * 10**9)
    assert first["closed_by"] == "bound" and first["replicas_reported"] == 4

    # next window: pod-3 stays silent; nothing closes before the bound ...
    nxt = START + int(W * 1e9)
    gateway.clock = lambda: nxt + int(W * 1e9)
    for i in range(3):
        lo, hi = splits[i]
        close = _replica_close(rows, lo, hi, i)
        close = dataclasses.replace(close, end_ns=close.end_ns + int(W * 1e9))
        assert gateway.add(decode_window(encode_window(window_record(close, f"pod-{i}", W)))) == "merged"
    assert gateway.close_due(now_ns=nxt + int(W * 1e9) + 29 * 10**9) == []
    # ... and at the bound it closes, saying who is missing
    (second,) = gateway.close_due(now_ns=nxt + int(W * 1e9) + 30 * 10**9)
    assert second["closed_by"] == "bound"
    assert (second["replicas_expected"], second["replicas_reported"], second["missing"]) == (4, 3, ["pod-3"])
    (state,) = gateway.store.find("churn", "3")
    assert state.summary()["fleet"]["missing"] == ["pod-3"]
    # pod-3 reports after the close: late, counted, not merged
    lo, hi = splits[3]
    close = _replica_close(rows, lo, hi, 3)
    close = dataclasses.replace(close, end_ns=close.end_ns + int(W * 1e9))
    assert gateway.add(decode_window(encode_window(window_record(close, "pod-3", W)))) == "late"
    assert gateway.counts["late"] == 1


def test_a_window_closes_early_once_every_previous_replica_reported():
    n = 3_000
    rows = _rows(n, seed=7)
    splits = _splits(n, 3)
    gateway, _ = _gateway(lambda: END)
    _forward(gateway, rows, splits, range(3))
    gateway.close_due(now_ns=END + int(W * 1e9))  # first window: at the bound (nobody is expected yet)
    nxt_end = END + int(W * 1e9)
    gateway.clock = lambda: nxt_end
    for i in range(3):
        lo, hi = splits[i]
        close = _replica_close(rows, lo, hi, i)
        close = dataclasses.replace(close, end_ns=close.end_ns + int(W * 1e9))
        rec = decode_window(encode_window(window_record(close, f"pod-{i}", W)))
        assert gateway.close_due(now_ns=nxt_end) == []  # still waiting for someone
        gateway.add(rec)
    (result,) = gateway.close_due(now_ns=nxt_end + 1)
    assert (result["closed_by"], result["replicas_reported"]) == ("all_reported", 3)


def test_a_retried_record_is_merged_once():
    rows = _rows(1_000, seed=9)
    gateway, _ = _gateway(lambda: END)
    rec = window_record(_replica_close(rows, 0, 1_000, 0), "pod-0", W)
    body = encode_window(rec)
    assert gateway.add(decode_window(body)) == "merged"
    assert gateway.add(decode_window(body)) == "duplicate"
    (result,) = gateway.close_due(now_ns=END + int(W * 1e9))
    assert result["rows"] == 1_000


def test_sketches_wait_for_their_reference_and_are_merged_when_it_arrives():
    rows = _rows(2_000, seed=11)
    gateway, _ = _gateway(lambda: END)
    without = window_record(_replica_close(rows, 0, 1_000, 0), "pod-0", W)
    without.reference = None
    assert gateway.add(decode_window(encode_window(without))) == "held"
    assert gateway.add(decode_window(encode_window(window_record(_replica_close(rows, 1_000, 2_000, 1), "pod-1",
                                                                  W)))) == "merged"
    (result,) = gateway.close_due(now_ns=END + int(W * 1e9))
    assert result["rows"] == 2_000 and result["unreferenced"] == []
    assert gateway.counts["merged"] == 2


def test_joined_labels_are_bounded_per_fleet_window():
    rows = _rows(3_000, seed=13)
    gateway, _ = _gateway(lambda: END, label_max_rows=2_500)
    _forward(gateway, rows, [(0, 1_000), (1_000, 2_000), (2_000, 3_000)], range(3))
    (result,) = gateway.close_due(now_ns=END + int(W * 1e9))
    assert result["labels_dropped"] == 500 and result["rows"] == 3_000


def test_a_gateway_with_the_reference_file_reads_windows_at_once(tmp_path):
    path = tmp_path / "churn.dcprof"
    REFERENCE.save(path)
    rows = _rows(1_000, seed=17)
    gateway, _ = _gateway(lambda: END, references={"churn": str(path)})
    rec = window_record(_replica_close(rows, 0, 1_000, 0), "pod-0", W)
    rec.reference = None  # none attached: the file must serve
    assert gateway.add(decode_window(encode_window(rec))) == "merged"
    other, _ = _gateway(lambda: END)
    assert other.add(decode_window(encode_window(rec))) == "held"  # without the file: held until one arrives
    (result,) = other.close_due(now_ns=END + int(W * 1e9))
    assert result["unreferenced"] == ["pod-0"] and other.counts["unreferenced"] == 1
