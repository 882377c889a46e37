"""The helper process (``ship_process=True``): every row delivered, drops at a full ring counted
exactly, flush / shutdown contracts, fork, the helper's exit with its parent, and no polling.

Real components: a scikit-learn model instrumented in this process (or a subprocess), the helper
process it starts, and the OTLP/HTTP receiver of tests/support on 127.0.0.1. No timing is
asserted; waits have deadlines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import driftcar
from driftcar.hook.shipping import ring
from tests.support.otlp import HttpOtlpReceiver
from tests.support.waiting import wait_until
from tests.unit.shipping.helpers import BlackHole, decoded_batches

pytestmark = pytest.mark.skipif(not ring.available() or not os.path.isdir("/proc/self/task"),
                                reason="the helper process needs Linux (memfd_create, /proc)")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
N_FEATURES = 5


@pytest.fixture(scope="module")
def fitted():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    X = rng.normal(size=(3_000, N_FEATURES))
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)), X


def _instrument(model, endpoint: str, **options):
    from sklearn.base import clone

    model = clone(model).fit(np.eye(N_FEATURES), [0, 1, 0, 1, 0])
    monitor = driftcar.instrument(model, name="hp", version="1", endpoint=endpoint, protocol="http/protobuf",
                                  ship_process=True, **options)
    return model, monitor


def _rows(batches) -> np.ndarray:
    parts = [np.column_stack([b.columns[f"x{j}"] for j in range(N_FEATURES)]) for _, b in batches if b.rows]
    return np.vstack(parts) if parts else np.empty((0, N_FEATURES))


def _sorted(rows: np.ndarray) -> np.ndarray:
    return rows[np.lexsort(rows.T[::-1])]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")  # a zombie has exited
    except FileNotFoundError:
        return True


@pytest.mark.timeout(60)
@pytest.mark.parametrize("copy", [True, False])
def test_every_row_goes_through_the_helper_in_call_order_with_its_calls_and_identity(fitted, copy):
    model, X = fitted
    with HttpOtlpReceiver() as rx:
        model, monitor = _instrument(model, rx.endpoint, copy=copy, max_batch_age_s=60.0)
        sent = [X[i:i + 1] for i in range(700)] + [X[700:1_300]] + [X[i:i + 3] for i in range(1_300, 1_330, 3)]
        for x in sent:
            model.predict(x)
        assert monitor.flush(20)
        stats = monitor.stats
        batches = decoded_batches(rx.logs)
        helper = stats["helper_pid"]
        driftcar.uninstrument(model)
    assert helper and helper != os.getpid()
    # exact; a call larger than a block goes ahead of the open block's calls, as in process
    np.testing.assert_array_equal(_sorted(_rows(batches)), _sorted(np.vstack(sent)))
    calls = np.concatenate([b.calls.columns["rows"] for _, b in batches if b.calls is not None])
    assert sorted(calls.tolist()) == sorted(len(x) for x in sent)  # one calls-table row per call
    assert {b.hook["instance"] for _, b in batches} == {stats["instance"] + "-p"}
    assert {b.hook["pid"] for _, b in batches} == {os.getpid()}  # the model process's identity
    assert stats["sent_rows"] == stats["captured_rows"] == 1_330 and stats["dropped_rows"] == 0
    wait_until(lambda: _gone(helper), 10, what="the helper to exit after uninstrument")


@pytest.mark.timeout(60)
def test_row_ids_take_the_in_process_worker_and_arrive_too(fitted):
    model, X = fitted
    with HttpOtlpReceiver() as rx:
        model, monitor = _instrument(model, rx.endpoint, max_batch_age_s=60.0)
        for i in range(40):
            model.predict(X[i:i + 1])
        with monitor.ids([f"r{i}" for i in range(40, 45)]):
            model.predict(X[40:45])
        assert monitor.flush(20)
        assert monitor.shipper.shutdown(10)  # nothing left: a clean stop of both workers
        batches = decoded_batches(rx.logs)
        stats = monitor.stats
        driftcar.uninstrument(model)
    by_instance = {}
    for _, batch in batches:
        by_instance.setdefault(batch.hook["instance"], []).append(batch)
    assert set(by_instance) == {stats["instance"], stats["instance"] + "-p"}
    [with_ids] = by_instance[stats["instance"]]  # the in-process worker's batch
    assert list(with_ids.columns["id"]) == [f"r{i}" for i in range(40, 45)]
    assert sum(b.rows for b in by_instance[stats["instance"] + "-p"]) == 40
    assert stats["sent_rows"] == 45 and stats["dropped_rows"] == 0


@pytest.mark.timeout(60)
def test_a_full_ring_drops_whole_blocks_counted_exactly_and_the_rest_arrives(fitted):
    model, X = fitted
    with HttpOtlpReceiver() as rx:
        model, monitor = _instrument(model, rx.endpoint, max_batch_age_s=60.0, max_buffer_bytes=256 * 1024)
        model.predict(X[:1])
        assert monitor.flush(20)  # the helper runs
        helper = monitor.stats["helper_pid"]
        os.kill(helper, signal.SIGSTOP)  # it reads nothing now: the 256 KiB ring fills
        try:
            for i in range(1, 2_001):
                model.predict(X[i:i + 300])  # 300 rows: a one-call block of 12 KB each
        finally:
            os.kill(helper, signal.SIGCONT)
        assert monitor.flush(20)
        stats = monitor.stats
        got = _rows(decoded_batches(rx.logs))
        driftcar.uninstrument(model)
    assert stats["captured_rows"] == 1 + 2_000 * 300
    assert stats["dropped_rows"] > 0 and stats["dropped_rows"] % 300 == 0  # whole calls
    assert stats["sent_rows"] + stats["dropped_rows"] == stats["captured_rows"]
    assert len(got) == stats["sent_rows"]
    assert stats["buffer_dropped_rows"] == stats["dropped_rows"]


@pytest.mark.timeout(60)
def test_blocks_sent_while_the_helper_starts_arrive_intact_when_the_ring_wraps(fitted):
    # The first calls' blocks (and their layout) sit in the ring before the helper's config; the
    # helper reads the config first. Reading it must not free their space: a model calling flat out
    # then overwrote them, the layout's record with them, and every later block of that layout was
    # lost (all 1,000-row calls of a batch-scoring loop, counted as dropped but never sent).
    model, X = fitted
    with HttpOtlpReceiver() as rx:
        model, monitor = _instrument(model, rx.endpoint, max_batch_age_s=60.0, max_buffer_bytes=256 * 1024)
        for i in range(3_000):
            model.predict(X[i % 2_000:i % 2_000 + 300])  # one-call blocks of 12 KB: the ring wraps often
        assert monitor.flush(20)
        stats = monitor.stats
        got = _rows(decoded_batches(rx.logs))
        driftcar.uninstrument(model)
    assert stats["captured_rows"] == 3_000 * 300
    assert stats["sent_rows"] > 0 and len(got) == stats["sent_rows"]
    assert stats["sent_rows"] + stats["dropped_rows"] == stats["captured_rows"]
    # every drop is a full ring's or buffer's (whole blocks), none a record the helper could not read
    assert stats["dropped_rows"] == stats["buffer_dropped_rows"]


@pytest.mark.timeout(60)
def test_shutdown_with_the_endpoint_black_holed_counts_every_row_and_the_helper_exits(fitted):
    model, X = fitted
    with BlackHole() as hole:
        model, monitor = _instrument(model, f"http://127.0.0.1:{hole.port}", exit_timeout_s=1.0, timeout_s=30.0)
        for i in range(300):
            model.predict(X[i:i + 1])
        assert not monitor.flush(0.5)  # nothing can be delivered
        helper = monitor.stats["helper_pid"]
        shipper = monitor.shipper
        assert not shipper.shutdown(1.5)  # bounded: the helper gives up by the deadline
        wait_until(lambda: _gone(helper), 10, what="the helper to exit after shutdown")
        stats = shipper.stats
        driftcar.uninstrument(model)
    assert stats["sent_rows"] == 0 and stats["dropped_rows"] == 300 and stats["queued_rows"] == 0


FORK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, numpy as np
    sys.path[:0] = [{root!r}, {agent!r}]
    import driftcar
    from sklearn.linear_model import LogisticRegression
    X = np.random.default_rng(1).normal(size=(400, {n}))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    monitor = driftcar.instrument(model, name="hp", endpoint={endpoint!r}, protocol="http/protobuf",
                                  ship_process=True, max_batch_age_s=60.0)
    for i in range(100):
        model.predict(X[i:i + 1])
    assert monitor.flush(20)
    parent_helper = monitor.stats["helper_pid"]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        for i in range(100, 130):
            model.predict(X[i:i + 1])
        ok = monitor.flush(20)
        s = monitor.stats
        os.write(write_fd, json.dumps({{"ok": ok, "helper": s["helper_pid"], "instance": s["instance"],
                                        "sent": s["sent_rows"]}}).encode())
        monitor.shipper.shutdown(5)
        os._exit(0)
    os.close(write_fd)
    for i in range(200, 250):
        model.predict(X[i:i + 1])
    child = json.loads(os.fdopen(read_fd).read())
    os.waitpid(pid, 0)
    ok = monitor.flush(20)
    s = monitor.stats
    print(json.dumps({{"child": child, "child_pid": pid, "ok": ok, "helper": s["helper_pid"],
                      "parent_helper": parent_helper, "instance": s["instance"], "sent": s["sent_rows"]}}))
    """
)


@pytest.mark.timeout(90)
def test_a_forked_child_ships_its_rows_through_its_own_helper_and_the_parents_keep_flowing():
    with HttpOtlpReceiver() as rx:
        script = FORK_SCRIPT.format(root=ROOT, agent=os.path.join(ROOT, "agent"), endpoint=rx.endpoint, n=N_FEATURES)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=80)
        assert out.returncode == 0, out.stderr[-3000:]
        report = json.loads(out.stdout.strip().splitlines()[-1])
        batches = decoded_batches(rx.logs)
    child = report["child"]
    assert report["ok"] and child["ok"]
    assert report["helper"] == report["parent_helper"] and child["helper"] not in (None, report["helper"])
    rows = {}
    for _, batch in batches:
        rows.setdefault((batch.hook["instance"], batch.hook["pid"]), []).append(batch.rows)
    assert {k: sum(v) for k, v in rows.items()} == {(report["instance"] + "-p", _parent_pid(batches, report)): 150,
                                                     (child["instance"] + "-p", report["child_pid"]): 30}
    assert report["sent"] == 150 and child["sent"] == 30


def _parent_pid(batches, report) -> int:
    pids = {b.hook["pid"] for _, b in batches if b.hook["instance"] == report["instance"] + "-p"}
    assert len(pids) == 1 and report["child_pid"] not in pids
    return pids.pop()


KILL_SCRIPT = textwrap.dedent(
    """
    import os, sys, time, numpy as np
    sys.path[:0] = [{root!r}, {agent!r}]
    import driftcar
    from sklearn.linear_model import LogisticRegression
    X = np.random.default_rng(2).normal(size=(1_000, {n}))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    monitor = driftcar.instrument(model, name="hp", endpoint={endpoint!r}, protocol="http/protobuf",
                                  ship_process=True, max_batch_age_s=600.0, exit_timeout_s=5.0)
    model.predict(X[:600])  # more rows than a block: straight into the ring, held by the helper (batch age)
    deadline = time.monotonic() + 30  # a wait with a deadline: the test reads "not held" otherwise
    while (monitor.stats["helper_received_rows"] != 600 or monitor.stats["queued_rows"] != 600) \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    held = monitor.stats["helper_received_rows"] == 600 and monitor.stats["queued_rows"] == 600
    print(monitor.stats["helper_pid"] if held else "not held", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.timeout(90)
def test_the_helper_ships_what_it_holds_and_exits_when_its_parent_is_killed():
    with HttpOtlpReceiver() as rx:
        script = KILL_SCRIPT.format(root=ROOT, agent=os.path.join(ROOT, "agent"), endpoint=rx.endpoint, n=N_FEATURES)
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline().strip()
            assert line.isdigit(), f"the helper did not hold the 600 rows: {line!r}"
            helper = int(line)
            wait_until(lambda: _idle_switches(helper) is not None, 10, what="the helper's /proc entry")
            # its start-up may still be finishing on a loaded machine (CI read 3 ticks once): the window
            # opens once a quarter second passes without a tick of CPU
            wait_until(lambda: _settled(helper), 20, what="the helper to settle after its start-up")
            before = _idle_switches(helper), _cpu_ticks(helper)
            time.sleep(2.0)  # the observation window: the helper's wake-ups and CPU over it
            after = _idle_switches(helper), _cpu_ticks(helper)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            wait_until(lambda: _gone(helper), 20, what="the helper to exit after its parent was killed")
            wait_until(lambda: sum(b.rows for _, b in decoded_batches(rx.logs)) == 600, 10, what="the held rows")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    # idle with 600 rows held (batch age 600 s): it waits on the pipe and its worker on one timer
    assert after[0] - before[0] <= 4, (before, after)
    assert after[1] - before[1] <= 2, (before, after)  # clock ticks (10 ms) of CPU over 2 s


def _settled(pid: int) -> bool:
    """No CPU tick over a quarter second."""
    ticks = _cpu_ticks(pid)
    time.sleep(0.25)
    return _cpu_ticks(pid) == ticks


def _idle_switches(pid: int) -> int | None:
    """Voluntary context switches of every thread of ``pid``: one per blocking wait (a wake-up)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    return total


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().split(") ", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@pytest.mark.timeout(60)
def test_rows_sent_to_a_helper_that_died_are_counted_as_dropped_and_the_model_never_waits(fitted):
    model, X = fitted
    with HttpOtlpReceiver() as rx:
        model, monitor = _instrument(model, rx.endpoint, max_batch_age_s=60.0)
        for i in range(300):
            model.predict(X[i:i + 1])
        assert monitor.flush(20)
        helper = monitor.stats["helper_pid"]
        os.kill(helper, signal.SIGKILL)
        wait_until(lambda: _gone(helper), 10, what="the helper to die")
        for i in range(300, 1_300):
            model.predict(X[i:i + 1])  # blocks to a pipe nobody reads: dropped, counted
        assert not monitor.flush(1)
        stats = monitor.stats
        driftcar.uninstrument(model)
    assert stats["captured_rows"] == 1_300 and stats["sent_rows"] == 300
    assert stats["dropped_rows"] == 1_000 and stats["queued_rows"] == 0
