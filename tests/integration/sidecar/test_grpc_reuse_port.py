"""The gRPC receiver's port: exclusive by default (a second sidecar on it fails to start), shared
between receivers that all ask for ``reuse_port`` (the kernel spreads connections over them)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

from driftcar.sidecar.config import Endpoint
from driftcar.sidecar.ingest import IngestQueue, Ingestor
from driftcar.sidecar.receiver_grpc import GrpcReceiver
from driftcar.sidecar.security import TokenAuth
from driftcar.wire import DEFAULT_LIMITS

from tests.support.waiting import free_port
from tests.unit.sidecar.batches import inference_body, numeric_frame, record, request
from tests.unit.sidecar.fake_telemetry import FakeTelemetry


def _receiver(port: int, reuse_port: bool) -> tuple[GrpcReceiver, IngestQueue]:
    queue = IngestQueue(10**6, 10**9)
    ingestor = Ingestor(queue, FakeTelemetry(), DEFAULT_LIMITS)
    return GrpcReceiver(Endpoint("127.0.0.1", port), ingestor, TokenAuth(None), max_request_bytes=1 << 20,
                        reuse_port=reuse_port), queue


def test_a_second_receiver_on_a_taken_port_fails_by_default():
    async def main() -> None:
        port = free_port()
        first, _ = _receiver(port, reuse_port=False)
        await first.start()
        try:
            for reuse in (False, True):  # SO_REUSEPORT only shares a port whose every socket asked for it
                second = _receiver(port, reuse_port=reuse)[0]
                try:
                    with pytest.raises((OSError, RuntimeError)):
                        await second.start()
                finally:
                    await second.stop(0)
        finally:
            await first.stop(0)

    asyncio.run(main())


def test_receivers_asking_for_reuse_port_share_it_and_both_receive():
    export = request(record(inference_body(numeric_frame(10, seed=1))))

    async def main() -> list[int]:
        port = free_port()
        pair = [_receiver(port, reuse_port=True) for _ in range(2)]
        for receiver, _ in pair:
            await receiver.start()
        try:
            # each channel its own TCP connection; 32 connections all hashed to one socket: p = 2**-31
            for _ in range(32):
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}",
                                                     options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                    stub = logs_service_pb2_grpc.LogsServiceStub(channel)
                    await stub.Export(export, timeout=10)
                if all(len(queue) for _, queue in pair):
                    break
            return [len(queue) for _, queue in pair]
        finally:
            for receiver, _ in pair:
                await receiver.stop(0)

    counts = asyncio.run(main())
    assert all(counts) and sum(counts) <= 32, counts

