"""The gRPC receiver in its own process (``grpc_front``): the same answers and counts as the receiver
on the sidecar's loop, a restart when it dies, and no orphan when the sidecar dies.

Real sidecars (in-process with ``run_in_thread`` and by the CLI), real gRPC over 127.0.0.1.
"""

from __future__ import annotations

import os
import signal

import grpc
import numpy as np
import psutil
import pytest
from google.rpc import error_details_pb2, status_pb2

from driftcar.sidecar import decode_pool
from driftcar.sidecar.front_link import FrontLink
from driftcar.sidecar.service import run_in_thread

from tests.integration.sidecar.sidecar_helpers import GrpcSender, SidecarProcess, config, get_json
from tests.unit.sidecar.batches import inference_body, numeric_frame, other_record, record, request
from tests.unit.sidecar.fake_telemetry import FakeTelemetry
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux (/proc, PR_SET_PDEATHSIG)")


@pytest.fixture
def front():
    """In-process sidecars with the gRPC front on and a fake telemetry (exact counts); stopped at the end."""
    handles = []

    def start(**flags):
        tel = FakeTelemetry()
        handle = run_in_thread(config(grpc_front="on", **flags), tel)
        handles.append(handle)
        assert isinstance(handle.service.grpc, FrontLink)
        return handle, tel, GrpcSender(handle.service.grpc_port)

    yield start
    for handle in handles:
        handle.stop()


def _rows(handle, model="m") -> int:
    handle.service.queue.wait_empty(10)
    _, body = get_json(f"{handle.http_endpoint}/v1/models")
    return sum(m["rows_total"] for m in body["models"] if m["name"] == model)


def test_every_accepted_row_is_counted_through_the_front(front):
    handle, tel, sender = front()
    sizes = [1, 7, 50, 1_000, 3, 2_500]
    for i, rows in enumerate(sizes):
        sender.send(request(record(inference_body(numeric_frame(rows, seed=i))), other_record()))
    mixed = request(record(inference_body(numeric_frame(5))), record(b"\x00\x01", rows=5))
    assert sender.send(mixed).partial_success.rejected_log_records == 1
    wait_until(lambda: _rows(handle) == sum(sizes) + 5, 20, what="every accepted row applied")
    assert tel.counters[("batches", "accepted")] == len(sizes) + 1
    assert tel.counters[("batches", "rejected")] == 1
    assert tel.counters[("ignored",)] == len(sizes)
    assert handle.service.status()["grpc_front"]["restarts"] == 0


def test_overload_is_unavailable_with_retry_info_through_the_front(front):
    handle, tel, sender = front(queue_max_rows="60")
    handle.service.worker.stop()  # nothing drains: the queue stays full
    sender.send(request(record(inference_body(numeric_frame(50)))))
    with pytest.raises(grpc.RpcError) as info:
        sender.send(request(record(inference_body(numeric_frame(50, seed=1)))))
    err = info.value
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    retry = error_details_pb2.RetryInfo()
    status = status_pb2.Status.FromString(dict(err.trailing_metadata())["grpc-status-details-bin"])
    assert status.details[0].Unpack(retry) and retry.retry_delay.seconds == 1
    assert (tel.counters[("batches", "accepted")], tel.counters[("batches", "throttled")]) == (1, 1)
    assert handle.service.queue.rows == 50


def test_a_retried_batch_is_answered_and_counted_duplicate_through_the_front(front):
    handle, tel, sender = front()
    batch = record(inference_body(numeric_frame(40)), batch_id=123456789)
    assert not sender.send(request(batch)).HasField("partial_success")
    assert not sender.send(request(batch)).HasField("partial_success")  # the retry: success, not applied
    sender.send(request(record(inference_body(numeric_frame(2)), batch_id=987654321)))
    wait_until(lambda: _rows(handle) == 42, 20, what="40 + 2 rows applied")
    assert tel.counters[("batches", "accepted")] == 2
    assert tel.counters[("batches", "duplicate")] == 1


def test_a_killed_front_is_restarted_on_the_same_port(front):
    handle, tel, sender = front()
    sender.send(request(record(inference_body(numeric_frame(10)))))
    first = handle.service.status()["grpc_front"]["pid"]
    os.kill(first, signal.SIGKILL)
    # counted once the new front listens
    wait_until(lambda: handle.service.status()["grpc_front"]["restarts"] == 1, 30, what="the front restarted")
    assert handle.service.status()["grpc_front"]["pid"] != first

    def sent() -> bool:
        try:
            sender.send(request(record(inference_body(numeric_frame(5, seed=3)))), timeout=5)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc  # connection refused while it starts
            return False
        return True

    wait_until(sent, 30, interval=0.2, what="a request accepted by the new front on the same port")
    wait_until(lambda: _rows(handle) == 15, 20, what="rows before and after the restart applied")


def _front_of(proc: psutil.Process) -> psutil.Process:
    fronts = [c for c in proc.children() if "driftcar.sidecar.front" in " ".join(c.cmdline())]
    assert len(fronts) == 1, [c.cmdline() for c in proc.children()]
    return fronts[0]


@pytest.mark.timeout(90)
def test_no_front_left_behind_when_the_sidecar_is_killed(tmp_path):
    with SidecarProcess(tmp_path, "--grpc-front", "on", "--export", "none") as sidecar:
        front = _front_of(psutil.Process(sidecar.proc.pid))
        GrpcSender(sidecar.ports["grpc"]).send(request(record(inference_body(numeric_frame(3)))))
        sidecar.proc.send_signal(signal.SIGKILL)
        sidecar.proc.wait(10)
    wait_until(lambda: not front.is_running() or front.status() == psutil.STATUS_ZOMBIE, 10,
               what="the front process to exit with its sidecar")


@pytest.mark.timeout(90)
def test_the_front_stops_with_the_sidecar_and_auto_follows_the_cpus(tmp_path):
    """SIGTERM: the front exits with a clean sidecar exit. ``auto`` on one CPU: no front process."""
    with SidecarProcess(tmp_path, "--export", "none") as sidecar:  # grpc_front: auto
        proc = psutil.Process(sidecar.proc.pid)
        if decode_pool.available():
            front = _front_of(proc)
            assert sidecar.terminate() == 0
            assert not front.is_running() or front.status() == psutil.STATUS_ZOMBIE
    one_cpu = SidecarProcess(tmp_path, "--export", "none")
    one_cpu.env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    with _pinned_to_one_cpu(), one_cpu:
        assert not psutil.Process(one_cpu.proc.pid).children()
        sender = GrpcSender(one_cpu.ports["grpc"])
        sender.send(request(record(inference_body({"x0": np.arange(4.0)}))))


class _pinned_to_one_cpu:
    """Children started inside inherit an affinity of one CPU (this process's is restored after)."""

    def __enter__(self):
        self.saved = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(self.saved)})

    def __exit__(self, *exc):
        os.sched_setaffinity(0, self.saved)
