"""Build driftcar batches and OTLP requests for sidecar tests (what a hook would send)."""

from __future__ import annotations

import numpy as np

from driftcar.wire import Column, encode_batch
from driftcar.wire import otlp


def inference_body(X: dict, predictions=None, ids=None, probabilities=None, calls=None, hook=None) -> bytes:
    cols = [Column(name, "feature", data) for name, data in X.items()]
    if predictions is not None:
        cols.append(Column("prediction", "prediction", predictions))
    if probabilities is not None:
        for cls, data in probabilities.items():
            cols.append(Column(f"proba[{cls}]", "probability", data, cls=str(cls)))
    if ids is not None:
        cols.append(Column("id", "id", ids))
    return encode_batch("inference", cols, calls=calls, hook=hook)


def record(body: bytes, model="m", version="1", kind="inference", rows=None, **kw):
    if rows is None:
        from driftcar.wire import decode_batch

        rows = decode_batch(body).rows
    return otlp.batch_log_record(body, model_name=model, model_version=version, kind=kind, rows=rows, **kw)


def request(*records, resource=None):
    return otlp.export_request(list(records), resource or {"service.name": "test-model"})


def numeric_frame(rows: int, features: int = 3, seed: int = 0, shift: dict | None = None) -> dict:
    rng = np.random.default_rng(seed)
    X = {f"x{i}": rng.normal(0.0, 1.0, rows) for i in range(features)}
    for name, delta in (shift or {}).items():
        X[name] = X[name] + delta
    return X


def other_record(event_name="app.log"):
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

    return LogRecord(event_name=event_name, body=AnyValue(string_value="hello"))
