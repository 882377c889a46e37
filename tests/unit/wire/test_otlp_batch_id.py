"""``driftcar.batch.id`` on the wire: the hook's framing carries it, every receive path reads it back,
and a record without it still decodes (older hooks, other senders)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from driftcar.hook.shipping.batching import pack_requests, record_pieces
from driftcar.sidecar import decode_pool
from driftcar.sidecar.ingest import decode_request
from driftcar.wire import DEFAULT_LIMITS, Column, encode_batch
from driftcar.wire.otlp import ATTR_BATCH_ID, batch_log_record, export_request, iter_batch_records, new_batch_id

RESOURCE = {"service.name": "svc"}


def _body(rows: int = 5) -> bytes:
    return encode_batch("inference", [Column("x", "feature", np.arange(rows, dtype=np.float64))])


def _attrs(**extra):
    return dict(model_name="m", model_version="1", kind="inference", rows=5, time_unix_nano=1, **extra)


@pytest.mark.parametrize("batch_id", [0, 1, -1, 2**63 - 1, -2**63])
def test_the_hook_framing_carries_the_id_to_the_decoded_item(batch_id):
    payload, n = pack_requests([record_pieces(_body(), **_attrs(batch_id=batch_id))], RESOURCE, 1 << 20)[0]
    request = ExportLogsServiceRequest.FromString(payload)
    (record,) = iter_batch_records(request)
    assert record.attributes[ATTR_BATCH_ID] == batch_id
    (item,) = decode_request(request, DEFAULT_LIMITS).items
    assert item.batch_id == batch_id and item.batch.rows == 5


def test_the_framed_record_is_the_record_protobuf_writes():
    pieces = record_pieces(_body(), **_attrs(batch_id=42))
    assert b"".join(pieces) == batch_log_record(_body(), **_attrs(batch_id=42)).SerializeToString()


def test_a_record_without_the_id_decodes_as_before():
    record = batch_log_record(_body(), **_attrs())
    assert ATTR_BATCH_ID not in {kv.key for kv in record.attributes}
    (item,) = decode_request(export_request([record], RESOURCE), DEFAULT_LIMITS).items
    assert item.batch_id is None and item.batch.rows == 5


def test_the_id_survives_otlp_json_and_the_decode_process():
    batch_id = -(2**63)  # int64 travels as a JSON string
    request = export_request([batch_log_record(_body(), **_attrs(batch_id=batch_id))], RESOURCE)
    data = json_format.MessageToJson(request).encode()
    decoded = decode_pool._rebuild(pickle.loads(pickle.dumps(decode_pool._child(data, True, DEFAULT_LIMITS))))
    assert [i.batch_id for i in decoded.items] == [batch_id]


def test_new_ids_are_int64_and_differ():
    ids = {new_batch_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(-(2**63) <= i < 2**63 for i in ids)
