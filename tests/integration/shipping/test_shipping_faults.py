"""Shipping batches costs the model process few page faults: the worker's batch buffers are not given
back to the kernel and faulted in again after every batch.

A model process (a subprocess, 1-row ``LogisticRegression.predict``) ships to a real OTLP/HTTP receiver
in this process. After a warm-up whose batch is delivered (the transport's imports and first
connection are out of the count), 20,000 calls make four batches of 5,000 rows, each delivered
before the next call (``flush``), and the process's minor page faults over them are counted
(``getrusage``, every thread). Before, glibc trimmed the worker's malloc arena after each batch
(``madvise(MADV_DONTNEED)`` of ~2-3 MB) and the next batch faulted the pages in again: ~3,800
faults over the four batches (three runs, all above the bound); now the freed pages stay mapped
(``shipper._keep_batch_pages``): 60-80.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from tests.support.otlp import HttpOtlpReceiver

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc trimming")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CALLS, BATCH_ROWS = 20_000, 5_000
#: the bound leaves room for a pymalloc arena or two the model thread's blocks may map (1 MiB: 256
#: faults each)
MAX_FAULTS = 600

SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    sys.path[:0] = [{agent!r}]
    import driftcar
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(4_096, 20))
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    monitor = driftcar.instrument(model, name="faults", endpoint={endpoint!r}, protocol="http/protobuf",
                                  max_batch_rows={batch_rows}, max_batch_age_s=3600.0)
    rows = [X[i:i + 1] for i in range(256)]
    for i in range({batch_rows}):  # the warm-up batch: imports, resource, first connection
        model.predict(rows[i & 255])
    assert monitor.flush(30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range({calls}):
        model.predict(rows[i & 255])
        if not (i + 1) % {batch_rows}:
            assert monitor.flush(30)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    stats = monitor.stats
    print(json.dumps({{"faults": faults, "sent_rows": stats["sent_rows"], "dropped_rows": stats["dropped_rows"]}}))
    """
)


@pytest.mark.timeout(180)
def test_batches_shipped_back_to_back_fault_few_pages():
    with HttpOtlpReceiver() as receiver:
        script = SCRIPT.format(agent=os.path.join(ROOT, "agent"), endpoint=receiver.endpoint, calls=CALLS,
                               batch_rows=BATCH_ROWS)
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=150, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["sent_rows"] == CALLS + BATCH_ROWS and result["dropped_rows"] == 0, result
    assert result["faults"] <= MAX_FAULTS, result
