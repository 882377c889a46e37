"""``wire.otlp`` on receive: attribute values as Python scalars, and the record's body as given."""

from __future__ import annotations

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from driftcar.wire.otlp import attributes_to_dict, batch_log_record, export_request, iter_batch_records


def test_every_scalar_attribute_kind_reads_back_and_the_others_as_none():
    attributes = [
        KeyValue(key="s", value=AnyValue(string_value="x")),
        KeyValue(key="b", value=AnyValue(bool_value=True)),
        KeyValue(key="i", value=AnyValue(int_value=-3)),
        KeyValue(key="d", value=AnyValue(double_value=0.5)),
        KeyValue(key="y", value=AnyValue(bytes_value=b"\0\1")),
        KeyValue(key="a", value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)]))),
        KeyValue(key="unset", value=AnyValue()),
    ]
    got = attributes_to_dict(attributes)
    assert got == {"s": "x", "b": True, "i": -3, "d": 0.5, "y": b"\0\1", "a": None, "unset": None}
    assert type(got["b"]) is bool and type(got["i"]) is int


def test_a_batch_record_carries_its_body_and_one_whose_body_is_not_bytes_none():
    good = batch_log_record(b"body", model_name="m", model_version="1", kind="inference", rows=1)
    other = batch_log_record(b"", model_name="m", model_version="1", kind="inference", rows=1)
    other.body.CopyFrom(AnyValue(string_value="body"))
    records = list(iter_batch_records(export_request([good, other], {"service.name": "svc"})))
    assert [r.body for r in records] == [b"body", None]
    assert records[0].resource == {"service.name": "svc"} and records[0].attributes["model.name"] == "m"
