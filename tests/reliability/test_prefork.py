"""Check 6: gunicorn ``--preload`` with 4 workers recycled many times, the hook created in the master.

The WSGI app (written to a temp dir) instruments a scikit-learn model at import, i.e. in
gunicorn's master before it forks. Each request predicts one row whose first feature is
the request's number, and answers the worker's pid. Workers are recycled every
``MAX_REQUESTS`` requests until ``PREFORK_RECYCLES`` new workers (8 in CI, 50 long) have
served. Watchdog: every request has a 10 s timeout and the test a global one, so a
deadlock fails instead of hanging. A real OTLP test receiver must then hold batches from
every worker pid that served, and every request number exactly once (nothing lost at
worker exit, nothing duplicated across forks).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.request

import pytest

from tests.reliability.harness import child_env
from tests.support.waiting import port_accepts
from tests.reliability.sizes import size
from tests.support.otlp import GrpcOtlpReceiver
from tests.support.waiting import free_port, stop_process, wait_until
from tests.unit.shipping.helpers import decoded_batches

RECYCLES = size("PREFORK_RECYCLES")
WORKERS = 4
MAX_REQUESTS = 5
pytestmark = pytest.mark.timeout(60 + RECYCLES * 3)

APP = textwrap.dedent("""
    import os
    import numpy as np
    import driftcar
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(200, 3))
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    monitor = driftcar.instrument(model, name="prefork", version="1", endpoint=os.environ["RECEIVER"],
                                  spans=False, max_batch_age_s=0.05)

    def app(environ, start_response):
        n = float(environ["QUERY_STRING"].partition("=")[2])
        model.predict(np.array([[n, 0.0, 0.0]]))
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
""")


def test_preloaded_hook_in_recycled_workers(tmp_path):
    (tmp_path / "prefork_app.py").write_text(APP)
    port = free_port()
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    with GrpcOtlpReceiver() as rx:
        env = child_env(RECEIVER=rx.endpoint)
        log = open(tmp_path / "gunicorn.log", "wb")
        proc = subprocess.Popen([gunicorn, "--preload", "-w", str(WORKERS), "--max-requests", str(MAX_REQUESTS),
                                 "--max-requests-jitter", "0", "--graceful-timeout", "10", "--bind",
                                 f"127.0.0.1:{port}", "--chdir", str(tmp_path), "prefork_app:app"],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        served: dict[int, int] = {}  # request number -> pid
        try:
            wait_until(lambda: proc.poll() is None and port_accepts(port), 30, what="gunicorn listening")
            n = 0
            limit = (RECYCLES + WORKERS) * MAX_REQUESTS * 4
            while len(set(served.values())) < WORKERS + RECYCLES:
                assert n < limit, f"only {len(set(served.values()))} worker pids after {n} requests"
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/?n={n}", timeout=10) as resp:  # watchdog
                    served[n] = int(resp.read())
                n += 1
        finally:
            stop_process(proc, 30)  # SIGTERM; SIGKILL (exit -9, asserted next) if a deadlock outlives 30 s
            log.close()
        assert proc.returncode == 0, f"gunicorn exit {proc.returncode} (-9: not stopped within 30 s of SIGTERM, deadlock?)"
        wait_until(lambda: sum(b.rows for _, b in decoded_batches(rx.logs)) >= len(served), 20,
                   what="every served request's row at the receiver")
        batches = decoded_batches(rx.logs)
    values = sorted(float(v) for _, b in batches if b.rows for v in b.columns["x0"])
    pids = {int(b.hook["pid"]) for _, b in batches}
    print(f"\nprefork: {len(served)} requests over {len(set(served.values()))} worker pids "
          f"({len(set(served.values())) - WORKERS} recycled), {len(batches)} batches from {len(pids)} pids")
    assert values == [float(i) for i in range(len(served))], "a request's row is missing or duplicated"
    assert set(served.values()) <= pids  # batches from every worker that served
