"""driftcar's threads wake a bounded number of times, whatever the model's call rate and the endpoint.

A model process runs in a subprocess; the kernel's per-thread voluntary context-switch
counters (``/proc/self/task/*/status``: one per blocking wait, so one per wake-up) count the
wake-ups of every thread other than the model's own, including the gRPC core's threads, during two windows of equal length: a slow caller
(one call per 20 ms) and a caller predicting flat out (25x or more calls). A thread that
polls, or that is woken per call, shows up as wake-ups growing with the calls. No timing is
asserted: only counts of events.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from driftcar.hook.shipping.shipper import YIELD_EVERY
from tests.support.otlp import GrpcOtlpReceiver, HttpOtlpReceiver
from tests.support.waiting import free_port
from tests.unit.shipping.helpers import BlackHole

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading, time
    import numpy as np
    sys.path[:0] = [{agent!r}]
    import driftcar
    from sklearn.linear_model import LogisticRegression

    MAIN = threading.get_native_id()
    # A thread waiting for the GIL while the model runs flat out wakes once per switch interval
    # (5 ms) until it gets it, and on a loaded machine it waits longer: those wake-ups measure CPU
    # contention, not driftcar. A longer interval keeps them out of the count; a thread that polls
    # or is woken per call still shows.
    sys.setswitchinterval(0.05)

    def switches():
        out = {{}}
        for tid in os.listdir("/proc/self/task"):
            if int(tid) == MAIN:
                continue
            try:
                with open(f"/proc/self/task/{{tid}}/status") as f:
                    out[tid] = sum(int(l.split()[1]) for l in f if l.startswith("voluntary_ctxt_switches"))
            except OSError:
                pass  # a thread that just ended
        return out

    def wakeups(before):
        # per thread; a thread started since counts from 0, one that ended counts once
        now = switches()
        return sum(n - before.get(tid, 0) for tid, n in now.items()) + len(set(before) - set(now))

    X = np.random.default_rng(0).normal(size=(512, 8))
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    monitor = driftcar.instrument(model, name="w", endpoint={endpoint!r}, protocol={protocol!r},
                                  max_batch_age_s=0.2, retry_initial_backoff_s=0.2, retry_max_backoff_s=0.4)
    for i in range(20):
        model.predict(X[i:i + 1])
    monitor.flush(1.0)
    out = {{}}
    for name, pause in (("idle", None), ("slow", 0.02), ("flat_out", 0.0)):
        before, worker, calls = switches(), monitor.stats["worker_wakeups"], 0
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            if pause is None:
                time.sleep(0.1)
                continue
            model.predict(X[calls & 511:(calls & 511) + 1])
            calls += 1
            if pause:
                time.sleep(pause)
        out[name] = {{"threads": wakeups(before), "worker": monitor.stats["worker_wakeups"] - worker,
                     "calls": calls}}
    print(json.dumps(out), flush=True)
    os._exit(0)
    """
)


def _run(endpoint: str, protocol: str = "grpc") -> dict:
    script = SCRIPT.format(agent=os.path.join(ROOT, "agent"), endpoint=endpoint, protocol=protocol)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _check(result: dict, idle_bound: int, rate_free: bool = True) -> None:
    idle, slow, fast = result["idle"], result["slow"], result["flat_out"]
    assert fast["calls"] >= 5 * slow["calls"], result  # the rates really differ
    # a thread polling every millisecond would wake ~1,500 times in a 1.5 s window; gRPC's own
    # threads wake on their timers and per attempt (a few dozen a second while retrying)
    assert idle["threads"] <= idle_bound, result
    # never woken per call: flat out, far fewer wake-ups than calls
    assert fast["threads"] * 5 < fast["calls"], result
    # Woken per batch age or back-off, so about the same wake-ups at many times the calls, plus by
    # design at most one GIL hand-off per YIELD_EVERY offers while the worker has rows to convert
    # (it has more of them, for longer, when the model runs flat out).
    if rate_free:
        assert fast["threads"] <= 1.5 * slow["threads"] + 40 + fast["calls"] / YIELD_EVERY, result
    # the worker: one wake-up per batch age (0.2 s) or back-off, plus one per export attempt
    assert slow["worker"] <= 30 and fast["worker"] <= 30, result


@pytest.mark.timeout(120)
def test_no_thread_polls_with_the_endpoint_up():
    with GrpcOtlpReceiver() as rx:
        result = _run(rx.endpoint)
    assert result["idle"]["worker"] == 0, result  # nothing queued: the worker sleeps without a timer
    _check(result, idle_bound=300)


@pytest.mark.timeout(120)
def test_wakeups_stay_bounded_while_the_endpoint_is_down():
    result = _run(f"http://127.0.0.1:{free_port()}")
    _check(result, idle_bound=300)


@pytest.mark.timeout(120)
def test_wakeups_stay_bounded_while_the_endpoint_is_a_black_hole():
    with BlackHole() as hole:
        result = _run(f"http://127.0.0.1:{hole.port}")
    # Not independent of the rate here: while an export hangs, the flat-out model thread's GIL
    # hand-offs (every 16 offers, the worker being runnable) also wake gRPC's threads, measured
    # ~150-220 wake-ups against ~40-110 for the slow caller. Still far from one per call.
    _check(result, idle_bound=300, rate_free=False)


@pytest.mark.timeout(120)
def test_over_otlp_http_no_background_thread_runs_while_idle():
    with HttpOtlpReceiver() as rx:
        result = _run(rx.endpoint, "http/protobuf")
    # no poller in the process at all (the worker may still be settling right after the flush)
    assert result["idle"]["worker"] == 0, result
    _check(result, idle_bound=2)
