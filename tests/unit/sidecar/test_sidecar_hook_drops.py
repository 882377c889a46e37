"""The hook's drop counts have one rule: the JSON API, the checkpoint and the metric agree past the cap."""

from __future__ import annotations

from driftcar.sidecar.checkpoint import Checkpointer
from driftcar.sidecar.config import load_config
from driftcar.sidecar.state import StateStore
from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig
from driftcar.sidecar import signals as signals_module

from tests.unit.sidecar.batches import inference_body, numeric_frame
from tests.unit.sidecar.test_sidecar_state import Clock, item


def _metric(tel: Telemetry) -> float:
    (line,) = [l for l in tel.prometheus_text().splitlines() if l.startswith("driftcar_hook_dropped_total{")]
    return float(line.rsplit(" ", 1)[1])


def test_api_checkpoint_and_metric_count_hook_drops_alike_past_the_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(signals_module, "MAX_HOOK_INSTANCES", 3)
    config = load_config(env={}, flags={"live_reference_rows": "0", "state_dir": str(tmp_path)})
    tel = Telemetry(TelemetryConfig(export="none"))
    store = StateStore(config.store_config(), tel, clock=Clock())
    reports = [(f"pid-{i}", 10 + i) for i in range(6)] + [("pid-5", 40), ("pid-4", 2)]  # a live one grows, a stale report
    for instance, dropped in reports:
        store.apply(item(inference_body(numeric_frame(5, 2), hook={"instance": instance, "dropped_rows": dropped})))
    state = store.models[("m", "1")]
    expected = (10 + 11 + 12) + (13 + 14 + 40)  # three retired instances keep their share
    assert state.summary()["hook_dropped_rows"] == expected == _metric(tel)
    assert sorted(state.hook_dropped) == ["pid-3", "pid-4", "pid-5"]

    assert Checkpointer(str(tmp_path), store).save() > 0
    store2 = StateStore(config.store_config(), Telemetry(TelemetryConfig(export="none")), clock=Clock())
    assert Checkpointer(str(tmp_path), store2).restore() == 1
    assert store2.models[("m", "1")].summary()["hook_dropped_rows"] == expected
