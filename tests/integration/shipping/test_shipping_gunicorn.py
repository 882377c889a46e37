"""A pre-fork server (gunicorn --preload, 2 workers): every worker ships its own rows, exactly once.

The shipper is built in the master at import time (and holds a warm-up item);
gunicorn then forks the workers. Each worker must ship with its own instance id
and pid, and no row may arrive twice.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.otlp import GrpcOtlpReceiver
from tests.support.waiting import free_port, wait_until
from tests.unit.shipping.helpers import decoded_batches

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
REQUESTS = 40

APP = textwrap.dedent(
    """
    import os, sys, time
    sys.path[:0] = [{root!r}, {agent!r}]
    import numpy as np
    from driftcar.hook.shipping import Shipper, ShipperConfig
    from tests.unit.shipping.helpers import item

    shipper = Shipper(ShipperConfig.from_env("gunicorn-model", "1", max_batch_age_s=0.2))
    shipper.offer(item(np.full((3, 2), -1.0)))  # the master's own rows, offered before the fork

    def app(environ, start_response):
        value = float(environ.get("QUERY_STRING") or 0)
        time.sleep(0.02)  # a model's work: keeps a sync worker busy so concurrent requests reach both
        shipper.offer(item(np.full((1, 2), value)))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    """
)


def _get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


@pytest.mark.timeout(30)
def test_preforked_workers_ship_their_own_rows_exactly_once(tmp_path):
    (tmp_path / "app.py").write_text(APP.format(root=ROOT, agent=os.path.join(ROOT, "agent")))
    port = free_port()
    with GrpcOtlpReceiver() as rx:
        env = dict(os.environ, DRIFTCAR_ENDPOINT=rx.endpoint)
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "-b", f"127.0.0.1:{port}", "--chdir",
             str(tmp_path), "--log-level", "warning", "app:app"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            wait_until(lambda: _get(port, "/?0"), 15, what="gunicorn serving")
            with ThreadPoolExecutor(4) as pool:
                pids = Counter(pool.map(lambda i: int(_get(port, f"/?{i}")), range(1, REQUESTS + 1)))
            # the warm-up request (0), REQUESTS requests and the master's 3 rows
            wait_until(lambda: sum(b.rows for _, b in decoded_batches(rx.logs)) >= REQUESTS + 1 + 3, 15,
                       what="all rows at the receiver")
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)
        batches = decoded_batches(rx.logs)
    values = Counter(v for _, b in batches for v in b.columns["x0"].tolist())
    assert values == Counter({-1.0: 3, **{float(i): 1 for i in range(REQUESTS + 1)}})  # every row exactly once
    instance_of_pid: dict[int, set] = {}
    for _, batch in batches:
        instance_of_pid.setdefault(batch.hook["pid"], set()).add(batch.hook["instance"])
    assert all(len(ids) == 1 for ids in instance_of_pid.values())  # one instance per process
    all_instances = [next(iter(ids)) for ids in instance_of_pid.values()]
    assert len(set(all_instances)) == len(all_instances)  # and no two processes share one
    worker_pids = set(pids)
    assert len(worker_pids) == 2  # both forked workers served and shipped
    assert worker_pids <= set(instance_of_pid)  # every worker that served shipped under its own pid
    master_rows = [b for _, b in batches if b.hook["pid"] not in worker_pids]
    assert sorted(v for b in master_rows for v in b.columns["x0"].tolist()) == [-1.0] * 3
