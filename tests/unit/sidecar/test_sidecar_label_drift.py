"""Label drift (``__label__``) across a checkpoint and in the JSON API's drift view."""

from __future__ import annotations

import numpy as np

from driftcar.sidecar.api import drift_document, summary_document
from driftcar.sidecar.checkpoint import Checkpointer
from driftcar.sidecar.config import load_config
from driftcar.sidecar.evaluator import Evaluator
from driftcar.sidecar.ingest import Item
from driftcar.sidecar.state import StateStore
from driftcar.stats import evaluate_label_drift, profile
from driftcar.wire import Column, decode_batch, encode_batch

from tests.unit.sidecar.batches import inference_body, numeric_frame
from tests.unit.sidecar.fake_telemetry import FakeTelemetry

N_REF, N = 4_000, 1_500


def _labels(rng, n: int, share_yes: float) -> np.ndarray:
    return np.where(rng.random(n) < share_yes, "yes", "no").astype(object)


class Sidecar:
    """A store and its evaluator on a fake clock and fake telemetry."""

    def __init__(self):
        self.now = [1_700_000_000 * 10**9]
        self.tel = FakeTelemetry()
        config = load_config(env={}, flags={"live_reference_rows": "0", "window": "1m"})
        self.store = StateStore(config.store_config(), self.tel, clock=lambda: self.now[0])
        self.evaluator = Evaluator(self.store, self.tel, config.evaluator_config())

    def apply(self, body: bytes) -> None:
        self.store.apply(Item("m", "1", decode_batch(body), len(body), 0, b""))

    def window(self, rng, share_yes: float, first_id: int) -> np.ndarray:
        """One window of predictions with ids and their labels; closed and evaluated."""
        ids = np.arange(first_id, first_id + N, dtype=np.int64)
        self.apply(inference_body(numeric_frame(N, 2, seed=first_id), predictions=list(rng.choice(["no", "yes"], N)),
                                  ids=ids))
        y_true = _labels(rng, N, share_yes)
        self.apply(encode_batch("labels", [Column("id", "id", ids), Column("label", "label", list(y_true))]))
        self.now[0] += 60 * 10**9
        self.evaluator.evaluate_all(self.store.close_windows())
        return y_true

    def label_events(self, name: str) -> list[dict]:
        return [e for e in self.tel.events
                if e["event_name"] == name and e["attributes"]["feature.name"] == "__label__"]


def _reference(rng):
    X, y = numeric_frame(N_REF, 2, seed=1), _labels(rng, N_REF, 0.2)
    body = encode_batch("reference", [Column(k, "feature", v) for k, v in X.items()] + [Column("y", "label", list(y))])
    return body, X, y


def _one_drifted_window():
    """A sidecar with a reference (labels 20 % yes) and one closed window whose labels are 45 % yes."""
    rng = np.random.default_rng(7)
    body, X, y_ref = _reference(rng)
    sidecar = Sidecar()
    sidecar.apply(body)
    return sidecar, X, y_ref, sidecar.window(rng, 0.45, 0)


def test_a_drifted_label_does_not_alert_again_after_a_restart(tmp_path):
    rng = np.random.default_rng(5)
    body, _, _ = _reference(rng)
    first = Sidecar()
    first.apply(body)
    first.window(rng, 0.45, 0)
    assert len(first.label_events("driftcar.drift.detected")) == 1
    assert Checkpointer(str(tmp_path), first.store).save() > 0

    second = Sidecar()
    second.now[0] = first.now[0]
    assert Checkpointer(str(tmp_path), second.store).restore() == 1
    assert second.store.models[("m", "1")].judgement.label_drifted() == ["__label__"]
    second.window(rng, 0.45, 10_000)  # still drifted: no second alert
    assert second.label_events("driftcar.drift.detected") == []
    for first_id in (20_000, 30_000, 40_000):  # back to the reference's shares: it resolves as usual
        second.window(rng, 0.2, first_id)
    assert len(second.label_events("driftcar.drift.resolved")) == 1


def test_a_new_reference_starts_the_label_with_no_verdict():
    rng = np.random.default_rng(6)
    sidecar = Sidecar()
    sidecar.apply(_reference(rng)[0])
    sidecar.window(rng, 0.45, 0)
    state = sidecar.store.models[("m", "1")]
    assert state.judgement.label_drifted() == ["__label__"]
    X, y = numeric_frame(N_REF, 2, seed=2), _labels(rng, N_REF, 0.45)  # the new reference has the new shares
    sidecar.apply(encode_batch("reference", [Column(k, "feature", v) for k, v in X.items()] + [Column("y", "label", list(y))]))
    for first_id in (10_000, 20_000, 30_000, 40_000):
        sidecar.window(rng, 0.45, first_id)
    assert state.judgement.label_drifted() == []
    assert len(sidecar.label_events("driftcar.drift.detected")) == 1  # the first reference's alert only
    assert sidecar.label_events("driftcar.drift.resolved") == []  # nothing drifted against the new one


def test_the_drift_view_lists_label_drift_like_a_feature():
    sidecar, X, y_ref, y_true = _one_drifted_window()
    prof = profile(X, y=y_ref)
    window = prof.new_window()
    window.update_labels(y_true)
    expected = evaluate_label_drift(prof, window)
    assert expected.detected
    state = sidecar.store.models[("m", "1")]

    doc = drift_document(state, 60.0)
    label = doc["features"]["__label__"]
    assert label["verdict"] is True and label["deciding_method"] == expected.method
    assert abs(label["methods"][expected.method]["score"] - expected.statistic) <= 1e-9 * abs(expected.statistic)
    assert "__label__" in doc["drift_detected"] and "x0" in doc["features"]
    summary = summary_document(state, 60.0)["features"]["__label__"]
    assert summary["method"] == expected.method and summary["verdict"] is True


def test_the_live_page_shows_label_drift_with_the_windows_label_counts():
    from driftcar.stats import DriftConfig
    from driftcar.view.live import live_document

    sidecar, _, y_ref, y_true = _one_drifted_window()
    (model,) = live_document(sidecar.store, sidecar.tel, 60.0, DriftConfig())["models"]
    label = next(f for f in model["features"] if f["name"] == "__label__")
    prof = sidecar.store.models[("m", "1")].profile
    window = prof.new_window()
    window.update_labels(y_true)
    expected = evaluate_label_drift(prof, window)
    assert label["verdict"] and "__label__" in model["drifted"]
    assert label["method"] == expected.method and label["score"] == expected.statistic
    dist = label["distribution"]
    counts = dict(zip(dist["labels"], dist["current"]))
    assert counts["yes"] == int((y_true == "yes").sum()) and counts["no"] == int((y_true == "no").sum())
    assert dict(zip(dist["labels"], dist["reference"]))["yes"] == int((y_ref == "yes").sum())
    detected = sidecar.label_events("driftcar.drift.detected")
    assert label["since_unix_nano"] == detected[0]["attributes"]["window.start"]

