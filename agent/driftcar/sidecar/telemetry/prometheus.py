"""Prometheus text exposition (format 0.0.4) of a metric-state snapshot.

Names follow :mod:`driftcar.sidecar.telemetry.names` (OTel -> Prometheus rules);
histograms get cumulative ``le`` buckets ending in ``+Inf`` plus ``_sum`` and
``_count``; the resource becomes a ``target_info`` gauge, as the OTel ->
Prometheus compatibility spec asks. Pure function of its inputs.

>>> from driftcar.sidecar.telemetry.state import Series
>>> print(render([Series("driftcar.state.models", (), 3.0)], {"service.name": "s"}), end="")
# HELP target_info Target metadata
# TYPE target_info gauge
target_info{service_name="s"} 1
# HELP driftcar_state_models Models (name, version) held in state.
# TYPE driftcar_state_models gauge
driftcar_state_models 3
"""

from __future__ import annotations

import functools
import math
from typing import Iterable, Mapping

from driftcar.sidecar.telemetry.names import COUNTER, HISTOGRAM, METRICS, prometheus_label
from driftcar.sidecar.telemetry.state import HistogramValue, Series

__all__ = ["CONTENT_TYPE", "render", "format_value", "escape_label_value"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def format_value(value: float) -> str:
    """Go-compatible sample value: integers without ``.0``, ``+Inf``/``-Inf``/``NaN``."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def escape_label_value(value: str) -> str:
    if "\\" not in value and "\n" not in value and '"' not in value:
        return value
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


_label_name = functools.lru_cache(maxsize=4096)(prometheus_label)


def _label_body(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{_label_name(k)}="{escape_label_value(str(v))}"' for k, v in pairs)


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    body = _label_body(pairs)
    return "{" + body + "}" if body else ""


def render(series: list[Series], resource: Mapping[str, object]) -> str:
    """The exposition text for ``series`` (in contract order) and the ``resource`` attributes."""
    out: list[str] = []
    if resource:
        out += ["# HELP target_info Target metadata", "# TYPE target_info gauge"]
        out.append("target_info" + _labels(sorted((k, str(v)) for k, v in resource.items())) + " 1")
    current = None
    for s in series:
        spec = METRICS[s.name]
        name = spec.prometheus_name
        if s.name != current:
            current = s.name
            out.append(f"# HELP {name} {_escape_help(spec.description)}")
            out.append(f"# TYPE {name} {spec.type if spec.type != COUNTER else 'counter'}")
        if spec.type == HISTOGRAM:
            out += _histogram_lines(name, s.attributes, s.value)
        else:
            out.append(f"{name}{_labels(s.attributes)} {format_value(s.value)}")
    return "\n".join(out) + "\n" if out else ""


def _histogram_lines(name: str, attrs, value: HistogramValue) -> list[str]:
    body = _label_body(attrs)
    bucket = f"{name}_bucket{{{body}{',' if body else ''}le=\""
    labels = "{" + body + "}" if body else ""
    lines = []
    running = 0
    for bound, count in zip(value.bounds, value.counts):
        running += count
        lines.append(f'{bucket}{format_value(float(bound))}"}} {running}')
    lines.append(f'{bucket}+Inf"}} {value.count}')
    lines.append(f"{name}_sum{labels} {format_value(float(value.sum))}")
    lines.append(f"{name}_count{labels} {value.count}")
    return lines
