"""How long a gateway that takes a model over reads no sketch: the bound proto/WINDOW.md states.

Replica r attaches its reference to the windows whose index (start / window length) is
crc32(r) mod 10, besides its first. A gateway with an empty reference cache (it just took the
model over: another instance died, or it restarted) holds the sketches of every window in which
no replica attached it and closes them `unreferenced`; the first window with one is read, and the
cache serves every later one. So the windows lost to drift after a takeover at any phase are at
most the largest cyclic gap between the replicas' offsets minus one (9 with a single offset).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from driftcar.sidecar.config import SidecarConfig
from driftcar.sidecar.evaluator import Evaluator
from driftcar.sidecar.fleet.gateway import FleetGateway
from driftcar.sidecar.fleet.golden import GoldenWindow
from driftcar.sidecar.fleet.record import REFERENCE_EVERY, ReferenceCadence, window_record
from driftcar.sidecar.state import StateStore, WindowClose
from driftcar.sidecar.telemetry import Telemetry, TelemetryConfig
from driftcar.stats import profile
from driftcar.wire.window import decode_window, encode_window

W = 60.0
WN = int(W * 1e9)
BASE = 30_000_000  # a window index that is a multiple of 10
REF = profile({"a": np.random.default_rng(0).normal(size=2_000)}, multivariate=False)


def _close(index: int, seed: int) -> WindowClose:
    sketch = REF.new_window()
    sketch.update({"a": np.random.default_rng(seed).normal(size=100)})
    golden = GoldenWindow()
    golden.add_calls("predict", None, 100)
    return WindowClose(model="churn", version="1", profile=REF, sketch=sketch, start_ns=index * WN,
                       end_ns=(index + 1) * WN, rows=100, y_true=[], y_pred=[], proba_sum=0.0, proba_n=0,
                       trace_ids=[], golden=golden)


def _unreferenced_after_takeover(replicas: list[str], phase: int) -> int:
    """Windows in a row closed with no sketch read by a fresh gateway that takes over at ``phase``."""
    now = [0]
    config = SidecarConfig(window_s=W)
    tel = Telemetry(TelemetryConfig(export="none", scope="fleet"))
    store = StateStore(config.store_config(), tel, clock=lambda: now[0])
    evaluator = Evaluator(store, tel, config.evaluator_config())
    gateway = FleetGateway(store, evaluator, tel, config.fleet_config(), clock=lambda: now[0])
    cadences = {r: ReferenceCadence(r) for r in replicas}
    for cadence in cadences.values():  # the replicas have run for a while: their first window went elsewhere
        cadence.due(REF.fingerprint, (BASE - 1) * WN, W)
    unread = []
    for index in range(BASE + phase, BASE + phase + REFERENCE_EVERY + 1):
        now[0] = (index + 1) * WN
        for i, replica in enumerate(replicas):
            gateway.add(decode_window(encode_window(window_record(_close(index, i), replica, W, cadences[replica]))))
        (result,) = gateway.close_due(now_ns=(index + 2) * WN)
        unread.append(len(result["unreferenced"]) == len(replicas) and result["rows"] == 0)
        assert result["replicas_reported"] == len(replicas)  # held sketches still count their replica
    first_read = unread.index(False)
    assert not any(unread[first_read:])  # once learnt, the cache serves every later window
    return first_read


def _bound(replicas: list[str]) -> int:
    offsets = sorted({zlib.crc32(r.encode()) % REFERENCE_EVERY for r in replicas})
    gaps = [(b - a) % REFERENCE_EVERY or REFERENCE_EVERY for a, b in zip(offsets, offsets[1:] + offsets[:1])]
    return max(gaps) - 1


@pytest.mark.parametrize("replicas", [["pod-a"], ["pod-a", "pod-b", "pod-c"], [f"pod-{i}" for i in range(12)]])
def test_a_takeover_reads_sketches_again_within_the_largest_gap_of_reference_offsets(replicas):
    waits = [_unreferenced_after_takeover(replicas, phase) for phase in range(REFERENCE_EVERY)]
    assert max(waits) == _bound(replicas) <= REFERENCE_EVERY - 1
    assert min(waits) == 0  # taking over in a window where some replica attaches it costs nothing
