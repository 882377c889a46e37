"""examples/river_stream against a real sidecar: precision/recall watched over rolling windows;
flipping the stream's labels makes the warning fire (locally and in the sidecar), an unflipped
stream raises none."""

from __future__ import annotations

import doctest

import examples.river_stream.stream as stream_module
import examples.sklearn_http.data as data_module
from examples.river_stream.stream import run
from tests.integration.examples.conftest import events, model_doc
from tests.support.waiting import wait_until


def test_flipped_labels_fire_the_warning(sidecar):
    # 500 events/s: the sidecar's 1 s windows see the flip as a production stream would show it
    watch, monitor = run(3000, flip_after=1500, endpoint=sidecar.grpc_endpoint, name="fraud-stream",
                         version="flipped", rate=500.0, max_batch_age_s=0.2)
    monitor.flush(10)
    assert {w.metric for w in watch.warnings} == {"precision", "recall"}
    assert all(w.event >= 1500 for w in watch.warnings), "no warning before the flip"
    assert all(w.value < w.threshold for w in watch.warnings)

    # the sidecar saw the same stream: labels joined by event id, quality per window, degraded event
    def degraded():
        return [e for e in events(sidecar) if e["event_name"] == "driftcar.performance.degraded"
                and e["attributes"].get("model.version") == "flipped"]

    found = wait_until(degraded, timeout=15, what="driftcar.performance.degraded for the flipped stream")
    assert {e["attributes"]["metric"] for e in found} & {"precision", "recall"}
    doc = model_doc(sidecar, "fraud-stream", "flipped")
    assert set(doc["performance"]) >= {"precision", "recall"}
    monitor.shutdown(5)


def test_clean_stream_raises_no_warning(sidecar):
    watch, monitor = run(3000, endpoint=sidecar.grpc_endpoint, name="fraud-stream", version="clean",
                         max_batch_age_s=0.2)
    monitor.flush(10)
    assert watch.warnings == []
    assert min(watch.values.values()) > 0.6
    wait_until(lambda: (d := model_doc(sidecar, "fraud-stream", "clean")) and d["performance"].get("recall"),
               timeout=15, what="recall for the clean stream")
    monitor.shutdown(5)


def test_example_doctests():
    for module in (stream_module, data_module):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
