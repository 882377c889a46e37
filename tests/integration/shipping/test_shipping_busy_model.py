"""A model thread calling predict flat out must not starve the shipper's worker.

CPython hands the GIL to a waiting thread only after its switch timer fires, and a
predict loop releases and retakes the GIL (numpy, scikit-learn) often enough to keep
resetting that timer: without the shipper's periodic hand-over the worker never woke
during the loop, shipped nothing and the buffer dropped rows.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import driftcar
from tests.support.otlp import GrpcOtlpReceiver

pytest.importorskip("sklearn")


@pytest.mark.timeout(60)
def test_batches_leave_while_the_model_thread_is_busy():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2_000, 20))
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, (X[:, 0] > 0).astype(int))
    with GrpcOtlpReceiver() as receiver:
        monitor = driftcar.instrument(model, name="busy", version="1", endpoint=receiver.endpoint, spans=False,
                                      max_batch_age_s=0.05)
        try:
            deadline = time.monotonic() + 1.5
            calls = 0
            while time.monotonic() < deadline:  # the model thread never sleeps
                model.predict(X[calls % len(X):calls % len(X) + 1])
                calls += 1
            shipped_during_loop = monitor.stats["sent_rows"]
        finally:
            monitor.shutdown(5)
    # 1.5 s at a 50 ms batch age: most rows must have left while the loop ran, none dropped.
    assert shipped_during_loop >= calls // 2, (shipped_during_loop, calls)
    assert monitor.stats["dropped_rows"] == 0
