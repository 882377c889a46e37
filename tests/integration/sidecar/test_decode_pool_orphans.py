"""The decode process ends with the sidecar, even when the sidecar is killed with SIGKILL.

A process that imports the decode pool decodes one large OTLP/JSON request (which starts the
child), prints the child's pid and kills itself with SIGKILL, as the OOM killer or ``kill -9``
would. The child must be gone within a deadline instead of living on as an orphan.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from driftcar.sidecar import decode_pool
from tests.support.waiting import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys
    sys.path[:0] = [{agent!r}, {root!r}]
    from driftcar.sidecar import decode_pool
    from driftcar.wire import Limits

    body = json.dumps({{"resourceLogs": [{{"scopeLogs": [{{"logRecords": [
        {{"eventName": "other", "body": {{"stringValue": "x" * 4096}}}}] * 400}}]}}]}}).encode()
    assert len(body) >= decode_pool.MIN_BYTES
    asyncio.run(decode_pool.decode(body, True, Limits()))
    print(" ".join(str(p) for p in decode_pool._pool._processes), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not decode_pool.available() or not os.path.isdir("/proc"), reason="needs Linux and 2 CPUs")
@pytest.mark.timeout(60)
def test_the_decode_process_dies_with_a_killed_sidecar():
    script = SCRIPT.format(agent=os.path.join(ROOT, "agent"), root=ROOT)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50)
    assert out.returncode == -9, out.stderr[-2000:]
    children = [int(p) for p in out.stdout.split()]
    assert children, out.stdout
    wait_until(lambda: not any(_alive(pid) for pid in children), 10, what="the orphaned decode process to exit")
