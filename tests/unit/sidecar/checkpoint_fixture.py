"""Writes a checkpoint (format 3) and what its writer's state held, for the compatibility test.

The stored copy in ``data/checkpoint-v3`` was written by the sidecar before its state was split
into parts; later code must keep reading it. Regenerate only when the format version changes:
``PYTHONPATH=agent:. python tests/unit/sidecar/checkpoint_fixture.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DIRECTORY = os.path.join(HERE, "data", "checkpoint-v3")


def write(directory: str) -> dict:
    """Two evaluated windows of a drifting model, hook drops and predictions waiting for labels."""
    from driftcar.sidecar.checkpoint import Checkpointer
    from driftcar.sidecar.config import load_config
    from driftcar.sidecar.evaluator import Evaluator
    from driftcar.sidecar.ingest import Item
    from driftcar.sidecar.state import StateStore
    from driftcar.wire import Column, decode_batch, encode_batch

    from tests.unit.sidecar.batches import inference_body, numeric_frame
    from tests.unit.sidecar.fake_telemetry import FakeTelemetry

    now = [1_700_000_000 * 10**9]
    tel = FakeTelemetry()
    config = load_config(env={}, flags={"live_reference_rows": "0", "window": "1m"})
    store = StateStore(config.store_config(), tel, clock=lambda: now[0])
    evaluator = Evaluator(store, tel, config.evaluator_config())

    def apply(body: bytes) -> None:
        store.apply(Item("m", "1", decode_batch(body), len(body), 0, b""))

    apply(encode_batch("reference", [Column(n, "feature", v) for n, v in numeric_frame(1_000, 2, seed=1).items()]))
    for seed in (2, 3):
        apply(inference_body(numeric_frame(400, 2, seed=seed, shift={"x1": 2.0}),
                             hook={"instance": "h", "dropped_rows": 7 * seed}))
        now[0] += 60 * 10**9
        evaluator.evaluate_all(store.close_windows())
    apply(inference_body(numeric_frame(30, 2, seed=4), predictions=np.array([1] * 30),
                         ids=np.arange(30, dtype=np.int64)))
    Checkpointer(directory, store).save()
    state = store.models[("m", "1")]
    return {"fingerprint": state.profile.fingerprint, "source": state.reference_source,
            "closed_rows": [w.rows for w in state.closed],
            "x1_counts": np.asarray(state.closed[-1].sketch.feature("x1").counts).tolist(),
            "cumulative_rows": int(state.cumulative.rows), "verdicts": sorted(f for f, v in state.verdicts.items() if v),
            "hook_dropped": dict(state.hook_dropped), "rows_total": int(state.rows_total),
            "batches_total": int(state.batches_total), "waiting_labels": 30}


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
    shutil.rmtree(DIRECTORY, ignore_errors=True)
    expected = write(DIRECTORY)
    with open(os.path.join(DIRECTORY, "expected.json"), "w") as fh:
        json.dump(expected, fh, indent=1)
