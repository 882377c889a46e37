"""What the whole sidecar (run_in_thread) evaluates and exports at a window's close.

- ``drift: {methods: [...]}``: each feature's deciding test plus the listed methods, nothing else.
- Label drift: a reference batch with labels, predictions with ids, then labels joined to them;
  the joined labels are judged against the reference's label distribution and exported under
  ``feature.name="__label__"`` (gauges on the Prometheus endpoint, a ``driftcar.drift.detected``
  event), with the same verdict as ``driftcar.stats.evaluate_label_drift`` on the same rows."""

from __future__ import annotations

import numpy as np
import pytest

from driftcar.stats import profile
from driftcar.stats.drift import evaluate_label_drift
from driftcar.wire import Column, encode_batch

from tests.integration.sidecar.sidecar_helpers import GrpcSender, config, get_json, get_text, sidecar  # noqa: F401 (fixture)
from tests.unit.sidecar.batches import inference_body, numeric_frame, record, request
from tests.support.waiting import wait_until

CLASSES = np.array(["no", "yes"], dtype=object)


def _window(handle, sender, rng, n: int, share_yes: float, first_id: int) -> tuple[dict, np.ndarray]:
    """One window: n predictions with ids, then their labels (share_yes of them "yes"); closed."""
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    X = numeric_frame(n, 2, seed=first_id)
    y_pred = list(rng.choice(CLASSES, n))
    y_true = np.where(rng.random(n) < share_yes, "yes", "no").astype(object)
    sender.send(request(record(inference_body(X, predictions=y_pred, ids=ids))))
    labels = encode_batch("labels", [Column("id", "id", ids), Column("label", "label", list(y_true))])
    sender.send(request(record(labels, kind="labels")))
    wait_until(lambda: handle.service.queue.wait_empty(0) and handle.service.store.models, 10, what="applied")
    handle.close_window()
    return X, y_true


def _label_series(text: str, metric: str) -> list[str]:
    """The exposition lines of one metric (its Prometheus name) for feature ``__label__``."""
    return [line for line in text.splitlines() if line.startswith(metric + "{") and 'feature_name="__label__"' in line]


def test_joined_labels_are_judged_against_the_reference_labels(sidecar):
    handle = sidecar(window="1h")
    sender = GrpcSender(handle.service.grpc_port)
    rng = np.random.default_rng(5)
    n_ref = 4_000
    ref = numeric_frame(n_ref, 2, seed=1)
    y_ref = np.where(rng.random(n_ref) < 0.2, "yes", "no").astype(object)
    body = encode_batch("reference", [Column(k, "feature", v) for k, v in ref.items()]
                        + [Column("y", "label", list(y_ref))])
    sender.send(request(record(body, kind="reference")))
    prom = f"http://127.0.0.1:{handle.service.prometheus_port}/metrics"

    # a window whose labels follow the reference's shares: judged, not flagged
    _window(handle, sender, rng, 1_500, 0.2, 0)
    text = get_text(prom)
    detected = _label_series(text, "driftcar_drift_detected_ratio")
    assert len(detected) == 1 and detected[0].endswith(" 0"), detected
    assert _label_series(text, "driftcar_drift_score_ratio")

    # the same judged in-process on the same rows: the engine's verdict and score
    _, y_true = _window(handle, sender, rng, 1_500, 0.35, 10_000)
    prof = profile({k: v for k, v in ref.items()}, y=y_ref)
    w = prof.new_window()
    w.update_labels(y_true)
    expected = evaluate_label_drift(prof, w)
    assert expected.detected
    text = get_text(prom)
    detected = _label_series(text, "driftcar_drift_detected_ratio")
    assert len(detected) == 1 and detected[0].endswith(" 1"), detected
    assert f'drift_method="{expected.method}"' in detected[0]
    score = [line for line in _label_series(text, "driftcar_drift_score_ratio")
             if f'drift_method="{expected.method}"' in line]
    assert float(score[0].rsplit(" ", 1)[1]) == pytest.approx(expected.statistic, rel=1e-9)
    events = get_json(f"{handle.http_endpoint}/v1/events")[1]["events"]
    label_events = [e for e in events if e["event_name"] == "driftcar.drift.detected"
                    and e["attributes"]["feature.name"] == "__label__"]
    assert len(label_events) == 1
    assert label_events[0]["attributes"]["drift.method"] == expected.method
    version = get_json(f"{handle.http_endpoint}/v1/models/m/drift")[1]["versions"][0]
    assert version["features"]["__label__"]["verdict"] is True and "__label__" in version["drift_detected"]
    assert version["features"]["__label__"]["methods"][expected.method]["score"] == pytest.approx(expected.statistic,
                                                                                                  rel=1e-9)
    sender.close()


def _score_methods(text: str) -> dict[str, set[str]]:
    """feature -> the drift.method values of its driftcar.drift.score series."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("driftcar_drift_score_ratio{"):
            attrs = dict(part.split("=", 1) for part in line[line.index("{") + 1: line.rindex("}")].split(","))
            out.setdefault(attrs["feature_name"].strip('"'), set()).add(attrs["drift_method"].strip('"'))
    return out


@pytest.mark.parametrize("methods", [[], ["psi", "hellinger"]])
def test_sidecar_computes_the_deciding_test_and_the_configured_methods(sidecar, methods):
    handle = sidecar(drift=f"{{methods: {methods}}}")
    sender = GrpcSender(handle.service.grpc_port)
    ref = numeric_frame(3_000, 3, seed=1)
    body = encode_batch("reference", [Column(k, "feature", v) for k, v in ref.items()])
    sender.send(request(record(body, kind="reference")))
    sender.send(request(record(inference_body(numeric_frame(1_500, 3, seed=2)))))
    wait_until(lambda: handle.service.queue.wait_empty(0) and handle.service.store.models, 10, what="applied")
    handle.close_window()
    got = _score_methods(get_text(f"http://127.0.0.1:{handle.service.prometheus_port}/metrics"))
    assert set(got) == {"x0", "x1", "x2", "__multivariate__"}
    for feature in ("x0", "x1", "x2"):
        assert got[feature] == {"ks"} | set(methods), got  # ks: the calibrated rule's test
    assert got["__multivariate__"] == {"pca_reconstruction"}
    sender.close()
