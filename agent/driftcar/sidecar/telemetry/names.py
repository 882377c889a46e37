"""The sidecar's metric and event names: the single source (a contract with dashboards and alerts).

Every instrument the sidecar exports is described once here; the OTLP builder,
the Prometheus exposition and the README's metric reference all read this table,
and ``tests/unit/test_names_contract.py`` fails if a name, unit, type or
attribute key changes. Prometheus names are derived with the OpenTelemetry ->
Prometheus compatibility rules (dots -> underscores, unit suffix, ``_total`` on
counters), so they never drift from the OTel names.

Print the reference table::

    python -m driftcar.sidecar.telemetry.names --markdown

>>> METRICS["driftcar.drift.score"].prometheus_name
'driftcar_drift_score_ratio'
>>> prometheus_label("model.name")
'model_name'
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "COUNTER",
    "GAUGE",
    "HISTOGRAM",
    "MetricSpec",
    "EventSpec",
    "METRICS",
    "EVENTS",
    "MODEL_ATTRS",
    "OVERFLOW",
    "OTHER",
    "MULTIVARIATE",
    "PREDICTION",
    "LABEL",
    "prometheus_label",
    "prometheus_metric_name",
    "markdown",
]

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"

# attribute keys
MODEL_NAME = "model.name"
MODEL_VERSION = "model.version"
SCOPE = "driftcar.scope"  # pod (one replica's rows) | fleet (merged across replicas by a gateway)
SCOPES = ("pod", "fleet")
MODEL_ATTRS = (MODEL_NAME, MODEL_VERSION, SCOPE)
FEATURE_NAME = "feature.name"
METHOD = "method"
ERROR_TYPE = "error.type"
CATEGORY = "category"
CLASS = "class"
DRIFT_METHOD = "drift.method"
DRIFT_WINDOW = "drift.window"
METRIC = "metric"
OUTCOME = "outcome"
REASON = "reason"
ATTRIBUTE = "attribute"

# special attribute values
OVERFLOW = "__overflow__"  # feature-name and model caps
OTHER = "__other__"  # category cap
MULTIVARIATE = "__multivariate__"  # PCA reconstruction drift
PREDICTION = "__prediction__"  # prediction drift
LABEL = "__label__"  # label drift (labels joined to predictions, against the profile's)

# the closed value sets the contract names (checked on input)
OUTCOMES = ("accepted", "rejected", "throttled", "duplicate")
FLEET_OUTCOMES = ("sent", "dropped", "merged", "late", "duplicate", "rejected", "unreferenced")
LABEL_REASONS = ("expired", "unknown_id", "evicted")
PERFORMANCE_METRICS = ("accuracy", "precision", "recall", "f1", "mae", "rmse")


@dataclass(frozen=True)
class MetricSpec:
    """One exported instrument: OTel name, type, UCUM unit, attribute keys, help text."""

    name: str
    type: str  # COUNTER | GAUGE | HISTOGRAM
    unit: str
    attributes: tuple[str, ...]  # extra attribute keys beyond the model attributes
    description: str
    model_attrs: bool = True  # carries model.name / model.version / driftcar.scope

    @property
    def prometheus_name(self) -> str:
        return prometheus_metric_name(self.name, self.unit, self.type)

    @property
    def all_attributes(self) -> tuple[str, ...]:
        return (MODEL_ATTRS if self.model_attrs else ()) + self.attributes


@dataclass(frozen=True)
class EventSpec:
    """One log event (LogRecord ``event_name``) with its severity and attribute keys."""

    name: str
    severity: str  # WARN | INFO
    attributes: tuple[str, ...]
    description: str


_DRIFT_ATTRS = (FEATURE_NAME, DRIFT_METHOD, DRIFT_WINDOW)

_METRICS = (
    MetricSpec("driftcar.inference.calls", COUNTER, "{call}", (METHOD, ERROR_TYPE),
               "Model calls seen by the hook; error.type is set on failed calls only."),
    MetricSpec("driftcar.inference.rows", COUNTER, "{row}", (), "Rows the model was called on."),
    MetricSpec("driftcar.inference.duration", HISTOGRAM, "s", (METHOD,), "Model call duration."),
    MetricSpec("driftcar.feature.value", HISTOGRAM, "{value}", (FEATURE_NAME,),
               "Numeric feature values; explicit bounds are the reference bin edges."),
    MetricSpec("driftcar.feature.missing", COUNTER, "{row}", (FEATURE_NAME,), "Rows with the feature missing."),
    MetricSpec("driftcar.feature.category", COUNTER, "{row}", (FEATURE_NAME, CATEGORY),
               "Rows per category of a categorical feature (capped; the rest in __other__)."),
    MetricSpec("driftcar.prediction.value", HISTOGRAM, "{value}", (), "Numeric predictions."),
    MetricSpec("driftcar.prediction.class", COUNTER, "{row}", (CLASS,), "Rows per predicted class."),
    MetricSpec("driftcar.drift.score", GAUGE, "1", _DRIFT_ATTRS, "Drift statistic of the last closed window."),
    MetricSpec("driftcar.drift.pvalue", GAUGE, "1", _DRIFT_ATTRS,
               "p-value of the drift test (after correction across features) when the test decided by it; "
               "absent when the test decided by its score."),
    MetricSpec("driftcar.drift.threshold", GAUGE, "1", _DRIFT_ATTRS,
               "Decision threshold on the scale of the deciding quantity: a p-value cut-off (drift when "
               "driftcar.drift.pvalue < threshold) where a driftcar.drift.pvalue series exists, else a score "
               "threshold (drift when driftcar.drift.score >= threshold)."),
    MetricSpec("driftcar.drift.detected", GAUGE, "1", _DRIFT_ATTRS,
               "1 when drift is detected; one series per feature, from its deciding test."),
    MetricSpec("driftcar.performance.score", GAUGE, "1", (METRIC,), "Model quality from joined labels."),
    MetricSpec("driftcar.performance.estimated_accuracy", GAUGE, "1", (),
               "Label-free accuracy estimate from predicted probabilities."),
    MetricSpec("driftcar.receiver.batches", COUNTER, "{batch}", (OUTCOME,),
               "Batches received, by outcome: accepted/rejected/throttled; duplicate (a retry of a batch "
               "already queued, by its driftcar.batch.id: answered as success, not applied again).",
               model_attrs=False),
    MetricSpec("driftcar.hook.dropped", COUNTER, "{row}", (), "Rows the hook had to drop."),
    MetricSpec("driftcar.receiver.records.ignored", COUNTER, "{record}", (),
               "Log records that are not driftcar batches.", model_attrs=False),
    MetricSpec("driftcar.receiver.queue.size", GAUGE, "{row}", (), "Rows waiting in the receive queue.",
               model_attrs=False),
    MetricSpec("driftcar.state.models", GAUGE, "{model}", (), "Models (name, version) held in state.",
               model_attrs=False),
    MetricSpec("driftcar.labels.unmatched", COUNTER, "{row}", (REASON,), "Labels that matched no prediction."),
    MetricSpec("driftcar.fleet.windows", COUNTER, "{window}", (OUTCOME,),
               "driftcar.window records by outcome: sent/dropped (pod forwarder); merged/late/duplicate/"
               "rejected/unreferenced (gateway).", model_attrs=False),
    MetricSpec("driftcar.fleet.replicas", GAUGE, "{replica}", (),
               "Replicas whose window the gateway merged into the last fleet window of a model."),
    MetricSpec("driftcar.cardinality.overflow", COUNTER, "{series}", (ATTRIBUTE,),
               "Attribute values folded into an overflow series by a cardinality cap."),
    MetricSpec("driftcar.reference.coverage", GAUGE, "1", (),
               "Share of the reference's profiled features seen in the last window with traffic "
               "(0 when rows arrive with no reference to compare them with)."),
)

#: name -> spec, in contract order (read-only)
METRICS = MappingProxyType({spec.name: spec for spec in _METRICS})

#: ``drift.threshold.kind`` says what ``drift.threshold`` is compared with: ``pvalue`` or ``score``
_DRIFT_EVENT_ATTRS = (
    MODEL_NAME, MODEL_VERSION, SCOPE, FEATURE_NAME, DRIFT_METHOD, "drift.score", "drift.threshold", "drift.pvalue",
    "drift.threshold.kind", "window.start", "window.end", "driftcar.sample_trace_ids",
)
#: mismatch causes (``mismatch.cause``): see driftcar.sidecar.coverage.CAUSES
MISMATCH_CAUSES = ("unknown_features", "unseen_features", "no_reference", "live_reference", "unknown_drift_settings")
_EVENTS = (
    EventSpec("driftcar.drift.detected", "WARN", _DRIFT_EVENT_ATTRS, "A feature started drifting."),
    EventSpec("driftcar.drift.resolved", "INFO", _DRIFT_EVENT_ATTRS, "A drifting feature is back to normal."),
    EventSpec("driftcar.performance.degraded", "WARN", (MODEL_NAME, MODEL_VERSION, SCOPE, METRIC, "value", "threshold"),
              "A quality metric crossed its threshold."),
    EventSpec("driftcar.reference.mismatch", "WARN",
              (MODEL_NAME, MODEL_VERSION, SCOPE, "mismatch.cause", "mismatch.names", "mismatch.suggestions"),
              "Live traffic and reference do not match (once per model and cause): what did not match and "
              "the closest known names."),
)
#: event name -> spec (read-only)
EVENTS = MappingProxyType({spec.name: spec for spec in _EVENTS})

_UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "KiBy": "kibibytes", "%": "percent"}
_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def prometheus_metric_name(name: str, unit: str, type_: str) -> str:
    """OTel metric name -> Prometheus name (OTel -> Prometheus compatibility rules).

    >>> prometheus_metric_name("driftcar.inference.duration", "s", HISTOGRAM)
    'driftcar_inference_duration_seconds'
    >>> prometheus_metric_name("driftcar.inference.calls", "{call}", COUNTER)
    'driftcar_inference_calls_total'
    """
    base = re.sub(r"_+", "_", _INVALID.sub("_", name))
    unit = re.sub(r"\{[^}]*\}", "", unit)  # annotations add nothing
    suffix = ""
    if unit == "1":
        suffix = "ratio" if type_ == GAUGE else ""
    elif unit:
        suffix = _UNIT_SUFFIX.get(unit, _INVALID_LABEL.sub("_", unit))
    if suffix and not base.endswith("_" + suffix):
        base = f"{base}_{suffix}"
    if type_ == COUNTER and not base.endswith("_total"):
        base += "_total"
    return base


def prometheus_label(key: str) -> str:
    """OTel attribute key -> Prometheus label name (invalid characters -> ``_``)."""
    label = _INVALID_LABEL.sub("_", key)
    if label[:1].isdigit():
        label = "key_" + label
    return label


def markdown() -> str:
    """The metric and event reference as Markdown tables (generated into the README)."""
    lines = [
        "| OTel name | type | unit | attributes | Prometheus name |",
        "|---|---|---|---|---|",
    ]
    for spec in METRICS.values():
        attrs = ", ".join(f"`{a}`" for a in spec.all_attributes) or "-"
        prom = spec.prometheus_name
        if spec.type == HISTOGRAM:
            prom += "_{bucket,sum,count}"
        lines.append(f"| `{spec.name}` | {spec.type} | `{spec.unit}` | {attrs} | `{prom}` |")
    lines += ["", "| event (LogRecord event_name) | severity | attributes |", "|---|---|---|"]
    for event in EVENTS.values():
        attrs = ", ".join(f"`{a}`" for a in event.attributes)
        lines.append(f"| `{event.name}` | {event.severity} | {attrs} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m driftcar.sidecar.telemetry.names", description=__doc__.split("\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print the metric/event reference as Markdown")
    args = parser.parse_args(argv)
    if not args.markdown:
        parser.print_help()
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def __getattr__(name: str):
    """``DRIFT_METHODS``, the drift.method values: one per entry of driftcar.stats.registry, read when asked."""
    if name == "DRIFT_METHODS":
        from driftcar.stats.registry import names

        return names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
