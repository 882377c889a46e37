"""Build OTLP ``MetricsData`` (protobuf) by hand from a metric-state snapshot.

Why by hand: the series already hold cumulative values and bucket counts; the
SDK's instruments would re-aggregate them (and its histogram drops negative
values). Temporality is CUMULATIVE, ``start_time_unix_nano`` is fixed at
process start so backends compute rates correctly. Pure function.
"""

from __future__ import annotations

from typing import Mapping

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from driftcar.sidecar.telemetry.names import COUNTER, GAUGE, METRICS
from driftcar.sidecar.telemetry.state import Series

__all__ = ["SCOPE_NAME", "DEFAULT_MAX_REQUEST_BYTES", "build_metrics_data", "split_metrics_data", "any_value",
           "key_values", "count_points"]

SCOPE_NAME = "driftcar.sidecar"
_CUMULATIVE = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
#: requests stay well under the 4 MiB that gRPC servers (and the Collector) accept by default
DEFAULT_MAX_REQUEST_BYTES = 2 * 1024 * 1024


def any_value(value: object) -> AnyValue:
    """Python attribute value -> AnyValue (bool, int, float, str, bytes, or a sequence of those)."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    return AnyValue(string_value=str(value))


def key_values(attributes: Mapping[str, object] | tuple) -> list[KeyValue]:
    items = attributes.items() if isinstance(attributes, Mapping) else attributes
    return [KeyValue(key=k, value=any_value(v)) for k, v in items]


def build_metrics_data(
    series: list[Series],
    resource: Mapping[str, object],
    *,
    start_time_unix_nano: int,
    time_unix_nano: int,
    scope_version: str = "",
) -> metrics_pb2.MetricsData:
    """One ResourceMetrics -> one ScopeMetrics -> one Metric per contract name that has series."""
    scope = metrics_pb2.ScopeMetrics(scope=InstrumentationScope(name=SCOPE_NAME, version=scope_version))
    by_name: dict[str, metrics_pb2.Metric] = {}
    pairs: dict[tuple[str, str], KeyValue] = {}  # series share keys and values: build each KeyValue once

    def attributes_of(items) -> list[KeyValue]:
        out = []
        for pair in items:
            kv = pairs.get(pair)
            if kv is None:
                kv = pairs[pair] = KeyValue(key=pair[0], value=any_value(pair[1]))
            out.append(kv)
        return out

    for s in series:
        metric = by_name.get(s.name)
        spec = METRICS[s.name]
        if metric is None:
            metric = by_name[s.name] = scope.metrics.add(name=spec.name, unit=spec.unit, description=spec.description)
            if spec.type == COUNTER:
                metric.sum.aggregation_temporality = _CUMULATIVE
                metric.sum.is_monotonic = True
            elif spec.type == GAUGE:
                metric.gauge.SetInParent()
            else:
                metric.histogram.aggregation_temporality = _CUMULATIVE
        attrs = attributes_of(s.attributes)
        if spec.type == COUNTER:
            point = metric.sum.data_points.add(
                attributes=attrs, start_time_unix_nano=start_time_unix_nano, time_unix_nano=time_unix_nano
            )
            if isinstance(s.value, int):
                point.as_int = s.value
            else:
                point.as_double = float(s.value)
        elif spec.type == GAUGE:
            metric.gauge.data_points.add(attributes=attrs, time_unix_nano=time_unix_nano, as_double=float(s.value))
        else:
            h = s.value
            metric.histogram.data_points.add(
                attributes=attrs,
                start_time_unix_nano=start_time_unix_nano,
                time_unix_nano=time_unix_nano,
                count=h.count,
                sum=h.sum,
                bucket_counts=h.counts,
                explicit_bounds=h.bounds,
            )
    resource_metrics = metrics_pb2.ResourceMetrics(resource=Resource(attributes=key_values(resource)))
    if scope.metrics:
        resource_metrics.scope_metrics.append(scope)
    return metrics_pb2.MetricsData(resource_metrics=[resource_metrics])


def count_points(data: metrics_pb2.MetricsData) -> int:
    total = 0
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                which = metric.WhichOneof("data")
                if which:
                    total += len(getattr(metric, which).data_points)
    return total


def split_metrics_data(data: metrics_pb2.MetricsData, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES):
    """Yield ``MetricsData`` pieces of at most ~``max_bytes`` serialized, splitting between data points.

    Why: one request over a receiver's size limit is refused as a whole (RESOURCE_EXHAUSTED / 413)
    and every point in it is lost; pieces under the limit all get through. Each piece repeats the
    resource, scope and metric metadata. A single point larger than ``max_bytes`` travels alone.
    """
    if max_bytes < 1024:
        raise ValueError(f"max_bytes must be >= 1024, got {max_bytes}")
    if data.ByteSize() <= max_bytes:
        yield data
        return
    for rm in data.resource_metrics:
        overhead = rm.resource.ByteSize() + 64
        for sm in rm.scope_metrics:
            overhead += sm.scope.ByteSize()
            piece, size = None, overhead
            for metric in sm.metrics:
                which = metric.WhichOneof("data")
                header = metrics_pb2.Metric(name=metric.name, unit=metric.unit, description=metric.description)
                getattr(header, which).CopyFrom(getattr(metric, which))
                del getattr(header, which).data_points[:]
                current = None
                for point in getattr(metric, which).data_points:
                    point_size = point.ByteSize() + 8
                    if piece is not None and size + point_size + header.ByteSize() > max_bytes:
                        yield _wrap(rm, sm, piece)
                        piece, size, current = None, overhead, None
                    if piece is None:
                        piece = []
                    if current is None:
                        current = metrics_pb2.Metric()
                        current.CopyFrom(header)
                        piece.append(current)
                        size += header.ByteSize()
                    getattr(current, which).data_points.append(point)
                    size += point_size
            if piece:
                yield _wrap(rm, sm, piece)


def _wrap(rm, sm, metrics) -> metrics_pb2.MetricsData:
    scope = metrics_pb2.ScopeMetrics(scope=sm.scope, schema_url=sm.schema_url, metrics=metrics)
    resource = metrics_pb2.ResourceMetrics(resource=rm.resource, schema_url=rm.schema_url, scope_metrics=[scope])
    return metrics_pb2.MetricsData(resource_metrics=[resource])
