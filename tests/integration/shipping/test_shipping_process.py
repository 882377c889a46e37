"""Process life cycle: fork (the child ships its own rows, the parent's are never sent twice) and exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from driftcar.hook.shipping import Shipper, ShipperConfig
from tests.support.otlp import GrpcOtlpReceiver
from tests.support.waiting import wait_until
from tests.unit.shipping.helpers import BlackHole, decoded_batches, item, to_parts

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _wait_child(pid: int, timeout: float) -> int:
    status = {}

    def reaped():
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status["code"] = os.waitstatus_to_exitcode(code)
        return done

    try:
        wait_until(reaped, timeout, what="the forked child to exit")
    except AssertionError:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise
    return status["code"]


@pytest.mark.timeout(20)
def test_after_fork_the_child_ships_its_own_rows_and_the_parents_are_not_sent_twice():
    with GrpcOtlpReceiver() as rx:
        shipper = Shipper(ShipperConfig("m", "1", endpoint=rx.endpoint, max_batch_age_s=60.0), convert=to_parts)
        try:
            shipper.offer(item(np.full((2, 3), -1.0)))
            assert shipper.flush(10)  # the parent now holds a live gRPC channel
            shipper.offer(item(np.full((5, 3), 1.0)))  # buffered in the parent at fork time
            parent_instance = shipper.instance
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # child: never return into pytest
                code = 1
                try:
                    os.close(read_fd)
                    queued_at_fork = shipper.stats["queued_rows"]
                    shipper.offer(item(np.full((7, 3), 2.0)))
                    flushed = shipper.flush(10)
                    report = {"instance": shipper.instance, "queued_at_fork": queued_at_fork, "flushed": flushed,
                              "stats": shipper.stats}
                    os.write(write_fd, json.dumps(report).encode())
                    shipper.shutdown(2)
                    code = 0
                finally:
                    os._exit(code)
            os.close(write_fd)
            assert _wait_child(pid, 15) == 0
            with os.fdopen(read_fd, "rb") as pipe:
                child = json.loads(pipe.read())
            assert shipper.flush(10)
        finally:
            shipper.shutdown(5)
        batches = decoded_batches(rx.logs)
    assert child["flushed"] and child["queued_at_fork"] == 0  # the child starts with an empty buffer
    assert child["instance"] != parent_instance and child["stats"]["pid"] == pid
    by_instance: dict[str, list] = {}
    for _, batch in batches:
        by_instance.setdefault(batch.hook["instance"], []).append(batch)
    assert set(by_instance) == {parent_instance, child["instance"]}
    [child_batch] = by_instance[child["instance"]]
    assert child_batch.hook["pid"] == pid and child_batch.hook["sent_batches"] == 0
    assert child_batch.columns["x0"].tolist() == [2.0] * 7  # only the child's rows
    parent_values = np.concatenate([b.columns["x0"] for b in by_instance[parent_instance]])
    assert parent_values.tolist() == [-1.0] * 2 + [1.0] * 5  # the buffered rows, exactly once
    assert all(b.hook["pid"] == os.getpid() for b in by_instance[parent_instance])


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    sys.path[:0] = [{root!r}, {agent!r}]
    from driftcar.hook.shipping import Shipper, ShipperConfig
    from tests.unit.shipping.helpers import item, to_parts
    shipper = Shipper(ShipperConfig("m", "1", endpoint={endpoint!r}, max_batch_age_s=60.0, exit_timeout_s=1.0,
                                    timeout_s=30.0), convert=to_parts)
    shipper.offer(item(np.full((6, 2), 3.0)))
    # no flush, no shutdown: the exit hook must ship within exit_timeout_s
    """
)


def _run_exit_script(endpoint: str) -> float:
    script = EXIT_SCRIPT.format(root=ROOT, agent=os.path.join(ROOT, "agent"), endpoint=endpoint)
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=15)
    return time.monotonic() - started


@pytest.mark.timeout(30)
def test_rows_still_queued_at_interpreter_exit_are_shipped():
    with GrpcOtlpReceiver() as rx:
        _run_exit_script(rx.endpoint)
        batches = decoded_batches(rx.logs)
    assert [b.columns["x0"].tolist() for _, b in batches] == [[3.0] * 6]


@pytest.mark.timeout(30)
def test_exit_is_bounded_by_exit_timeout_when_the_endpoint_never_answers():
    with GrpcOtlpReceiver() as rx:
        baseline = _run_exit_script(rx.endpoint)  # interpreter start-up, imports and a normal exit flush
    with BlackHole() as hole:
        elapsed = _run_exit_script(f"http://127.0.0.1:{hole.port}")
        assert hole.conns  # it did try
    # without the bound the export would wait its 30 s timeout; exit_timeout_s is 1 s
    assert elapsed < baseline + 1.0 + 1.0


DEFAULT_EXIT_SCRIPT = textwrap.dedent(
    """
    import os, sys, numpy as np
    sys.path[:0] = [{root!r}, {agent!r}]
    os.environ.pop("DRIFTCAR_EXIT_TIMEOUT", None)
    import driftcar
    monitor = driftcar.instrument(lambda X: X.sum(axis=1), name="exit", endpoint={endpoint!r})
    for _ in range(5):
        monitor(np.ones((3, 2)))
    monitor.flush(0.2)  # the export is failing and retrying when the interpreter exits
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["down", "black hole"])
def test_default_exit_delay_is_bounded_with_the_sidecar_unreachable(where):
    def run(endpoint: str) -> float:
        script = DEFAULT_EXIT_SCRIPT.format(root=ROOT, agent=os.path.join(ROOT, "agent"), endpoint=endpoint)
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
        return time.monotonic() - started

    with GrpcOtlpReceiver() as rx:
        baseline = run(rx.endpoint)  # start-up, imports and an exit flush that succeeds
    if where == "down":
        from tests.support.waiting import free_port

        elapsed = run(f"http://127.0.0.1:{free_port()}")
    else:
        with BlackHole() as hole:
            elapsed = run(f"http://127.0.0.1:{hole.port}")
    # the default exit_timeout_s is 1 s (it was 5, and such a process exited 3.3 s late)
    assert elapsed < baseline + 1.0 + 1.0, (elapsed, baseline)
