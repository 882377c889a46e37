"""A black-holed OTLP/gRPC endpoint costs the model process no Python thread and few GIL wake-ups per attempt.

Why it matters: every time a thread other than the model's wakes in Python it wants the GIL, and
beside a model thread calling ``predict`` flat out such a thread is woken at each of the model's
GIL releases and loses the race (CPython asks the holder to drop the GIL only after a switch
interval without any release), until the model pauses: each wake-up in Python during an outage
can cost every call of an uninstrumented model in the same process. gRPC's future-based call
woke its waiter every 100 ms and started a Python thread per call (per attempt, since the channel
is closed after an unreachable attempt) that spun on the channel's queue; its blocking call wakes
every 200 ms to check for signals. So no channel is opened until the endpoint has answered an
HTTP/2 handshake, which waits in the kernel (``GrpcExporter.ready``).

The model process here (a subprocess) has one instrumented model calling every 0.1 s towards a
socket that accepts and never answers, and no other work: its Python threads wake only by their
own timers and events, so the counts are the same on a busy machine. Counted over the window, from
the kernel (``/proc/thread-self/status``, voluntary context switches): the wake-ups of every
Python thread but the model's (the shipper's worker and any thread started in the window), and
the Python threads started. gRPC's core threads (C++, they never take the GIL) are not counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.unit.shipping.helpers import BlackHole

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
WINDOW_S = 4.0

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading, time
    import numpy as np
    sys.path[:0] = [{agent!r}]
    import driftcar
    from sklearn.linear_model import LogisticRegression

    def switches(path="/proc/thread-self/status"):
        with open(path) as f:
            return sum(int(l.split()[1]) for l in f if l.startswith("voluntary_ctxt_switches"))

    started, ended = [], {{}}  # threads started, and each one's wake-ups when its run() ends
    _start, _run = threading.Thread.start, threading.Thread.run

    def start(self):
        started.append(self)
        _start(self)

    def run(self):
        try:
            _run(self)
        finally:
            ended[threading.get_native_id()] = switches()

    threading.Thread.start, threading.Thread.run = start, run

    X = np.random.default_rng(0).normal(size=(512, 8))
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    monitor = driftcar.instrument(model, name="g", endpoint={endpoint!r}, protocol="grpc", timeout_s=2.0,
                                  max_batch_age_s=0.05, retry_initial_backoff_s=0.3, retry_max_backoff_s=0.3,
                                  retry_jitter=0.0)
    model.predict(X[:1])
    monitor.flush(0.5)  # the worker runs and the first attempt is made
    worker = monitor.state.shipper._worker.native_id
    attempts0, worker0, n0 = monitor.stats["failed_attempts"], switches(f"/proc/self/task/{{worker}}/status"), len(started)
    end = time.monotonic() + {window!r}
    while time.monotonic() < end:
        model.predict(X[:1])
        time.sleep(0.1)
    new = started[n0:]
    wakeups = switches(f"/proc/self/task/{{worker}}/status") - worker0
    for thread in new:
        tid = thread.native_id
        wakeups += ended[tid] if tid in ended else switches(f"/proc/self/task/{{tid}}/status")
    out = {{"attempts": monitor.stats["failed_attempts"] - attempts0, "wakeups": wakeups,
           "threads_started": [t.name for t in new]}}
    print(json.dumps(out), flush=True)
    os._exit(0)
    """
)

# measured per black-holed attempt: ~2 wake-ups of the worker (the back-off's end, the handshake's
# timeout: 7-8 in 4 attempts); with a channel's call waiting instead of the handshake, ~5 (gRPC's
# 200 ms signal checks besides: 19 in 4); before that, ~5.5 of the worker (its 100 ms result()
# polls) and ~3.5 of the call's spin thread
MAX_WAKEUPS_PER_ATTEMPT = 2


@pytest.mark.timeout(120)
def test_a_black_holed_grpc_endpoint_starts_no_thread_and_wakes_python_a_few_times_per_attempt():
    with BlackHole() as hole:
        script = SCRIPT.format(agent=os.path.join(ROOT, "agent"), endpoint=f"http://127.0.0.1:{hole.port}",
                               window=WINDOW_S)
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # one attempt per back-off (0.3 s) plus its handshake timeout (MIN_CONNECT_TIMEOUT_MS): the scene is set
    assert result["attempts"] >= 4, result
    assert result["threads_started"] == [], result  # no Python thread per attempt
    assert result["wakeups"] <= MAX_WAKEUPS_PER_ATTEMPT * result["attempts"] + 5, result
