"""The test receivers themselves speak real OTLP (so other tests can trust them)."""

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

from driftcar.wire import encode_batch
from driftcar.wire.otlp import batch_log_record, export_request, iter_batch_records
from tests.support.otlp import Answer, GrpcOtlpReceiver


def test_grpc_receiver_records_requests_and_scripts_status():
    answers = {1: Answer(grpc_code=grpc.StatusCode.UNAVAILABLE, retry_after_s=1.5)}
    with GrpcOtlpReceiver(respond=lambda kind, req, n: answers.get(n, Answer())) as rx:
        body = encode_batch("inference", [])
        request = export_request(
            [batch_log_record(body, model_name="m", model_version="1", kind="inference", rows=0)],
            {"service.name": "svc"},
        )
        with grpc.insecure_channel(f"127.0.0.1:{rx.port}") as channel:
            stub = logs_service_pb2_grpc.LogsServiceStub(channel)
            try:
                stub.Export(request, timeout=5)
                raise AssertionError("first call should fail")
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE
                bins = dict(err.trailing_metadata())
                assert "grpc-status-details-bin" in bins
            stub.Export(request, timeout=5)
        records = list(iter_batch_records(rx.logs[0]))
        assert len(records) == 1 and records[0].attributes["model.name"] == "m"
        assert records[0].resource["service.name"] == "svc"
