"""The window-close tick: close every model's window, evaluate it off the loop, export.

Windows are tumbling and aligned to multiples of the window length since the Unix
epoch (a 1m window closes at every full minute), so replicas close the same windows
and their histograms add up. At each close, for each model with rows in the window:
drift tests (``driftcar.stats.evaluate_drift``) -> ``driftcar.drift.*`` gauges,
hysteresis (``VerdictTracker``) -> ``driftcar.drift.detected|resolved`` events on
changes only, joined labels -> ``driftcar.performance.*`` (+ ``degraded`` event),
labels joined in the window -> label drift (``evaluate_label_drift``, exported as feature
``__label__``), and the cumulative histograms/counters of features and predictions. Empty windows
leave the last values in place (no traffic is not "no drift").

Blocking: :meth:`Evaluator.evaluate` is CPU work and runs in ``asyncio.to_thread``;
only one evaluation runs at a time (the tick awaits it), so the per-model evaluator
state (:class:`~driftcar.sidecar.judgement.Judgement`: verdicts, last result, degraded
flags) has a single writer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from driftcar.sidecar.config import EvaluatorConfig
from driftcar.sidecar.messages import LineBudget, decision_kind, decision_pvalue, describe, safe, window_summary
from driftcar.sidecar.judgement import EvaluationResult, Judgement
from driftcar.sidecar.state import EMPTY, StateStore, WindowClose
from driftcar.stats.windows import next_boundary

if TYPE_CHECKING:
    from driftcar.stats import DriftConfig, DriftResult, FeatureProfile, NumericSketch

__all__ = ["Evaluator", "next_boundary", "HIGHER_IS_BETTER"]

log = logging.getLogger("driftcar.sidecar.evaluator")

HIGHER_IS_BETTER = {"accuracy": True, "precision": True, "recall": True, "f1": True, "estimated_accuracy": True,
                    "mae": False, "rmse": False}


def _finite(value: Any, default: float = 0.0) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _text_labels(values: list) -> bool:
    """Labels that are not all numbers stay Python objects (a mix would otherwise become text)."""
    return not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values)


#: per-window summary lines on the sidecar's log, across all models, in any rolling minute
SUMMARY_LINES_PER_MINUTE = 20


class Evaluator:
    """Closes windows on the tick and turns them into telemetry.

    ``after_close(closes)`` (e.g. the checkpoint writer) runs in the same worker thread
    after every evaluation.
    """

    def __init__(self, store: StateStore, telemetry, config: EvaluatorConfig, *,
                 after_close: Callable[[list[WindowClose]], None] | None = None):
        self.store = store
        self.tel = telemetry
        self.config = config
        drift_config = config.drift
        if drift_config is None:
            from driftcar.stats import DriftConfig

            drift_config = DriftConfig()
        self.drift_config: DriftConfig = drift_config
        self.after_close = after_close
        self.windows_closed = 0
        self.last_close_ns = 0
        self.forward: Callable[[list[WindowClose]], Any] | None = None  # fleet: ship closed windows
        self.judge = config.local_verdicts  # off: a pod that only forwards its windows to a fleet gateway
        self._lock = asyncio.Lock()
        self.summaries = LineBudget(SUMMARY_LINES_PER_MINUTE)

    async def run(self) -> None:
        """Tick forever (cancel to stop)."""
        while True:
            now = time.time()
            await asyncio.sleep(max(0.0, next_boundary(now, self.config.window_s) - now))
            try:
                await self.close_and_evaluate()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad evaluation stop the tick
                log.exception("window evaluation failed")

    async def close_and_evaluate(self, final: bool = False) -> list[WindowClose]:
        async with self._lock:
            # the swap allocates fresh sketches and merges the cumulative ones: off the loop too
            closes = await asyncio.to_thread(self.store.close_windows, final)
            await asyncio.to_thread(self.evaluate_all, closes)
            return closes

    def evaluate_all(self, closes: list[WindowClose]) -> None:
        if self.forward is not None:  # before judging: a fleet gateway waits for these, not for us
            try:
                self.forward(closes)
            except Exception:
                log.exception("forwarding closed windows failed")
        for close in closes:
            try:
                if self.judge:
                    self.evaluate(close)
            except Exception:
                log.exception("evaluating %s@%s failed", close.model, close.version)
            self.store.compact(close.model, close.version)
        self.windows_closed += 1
        self.last_close_ns = closes[0].end_ns if closes else time.time_ns()
        if self.after_close is not None:
            try:
                self.after_close(closes)
            except Exception:
                log.exception("after-close hook (checkpoint) failed")
        self.tel.force_flush(max(1.0, min(10.0, self.config.window_s)))

    # ------------------------------------------------------------------ one model
    def judgement(self, close: WindowClose) -> Judgement:
        """The model's evaluator state (a fleet gateway's closes have their model in the store too)."""
        state = self.store.models.get((close.model, close.version))
        if state is None:
            with self.store.lock:
                state = self.store.get_or_create(close.model, close.version)
        return state.judgement

    def evaluate(self, close: WindowClose) -> None:
        judgement = self.judgement(close)
        report = None
        performance, estimated = {}, None
        # three independent parts: a failure in one (logged) never skips the others
        if close.sketch is not None and close.rows > 0 and close.profile is not None:
            try:
                report = self._drift(close, judgement)
            except Exception:
                log.exception("drift evaluation of %s@%s failed", close.model, close.version)
            try:
                self._distributions(close)
            except Exception:
                log.exception("distribution export of %s@%s failed", close.model, close.version)
        try:
            performance, estimated = self._quality(close, judgement)
        except Exception:
            log.exception("quality evaluation of %s@%s failed", close.model, close.version)
        label = label_current = None
        if self.judge and close.y_true and close.profile is not None and close.profile.label is not None:
            try:
                label, label_current = self._label_drift(close, judgement)
            except Exception:
                log.exception("label drift evaluation of %s@%s failed", close.model, close.version)
        if report is not None:
            self._summary_line(close, report, judgement)
        if report is None and not performance and estimated is None and label is None:
            return
        # like the gauges, each part keeps its last value until a window updates it
        last = judgement.last
        fresh_drift = report is not None or last is None
        judgement.last = EvaluationResult(
            start_ns=close.start_ns if fresh_drift else last.start_ns,
            end_ns=close.end_ns if fresh_drift else last.end_ns,
            rows=close.rows if fresh_drift else last.rows,
            report=report if fresh_drift else last.report,
            verdicts=dict(judgement.verdicts),
            performance={**(last.performance if last else {}), **performance},
            estimated_accuracy=estimated if estimated is not None else (last.estimated_accuracy if last else None),
            sketch=close.sketch if fresh_drift else last.sketch,
            label=label if label is not None else (last.label if last else None),
            label_current=label_current if label is not None else (last.label_current if last else None),
        )

    def _drift(self, close: WindowClose, judgement: Judgement):
        from driftcar.stats import evaluate_drift

        config = self.drift_config
        report = evaluate_drift(close.profile, close.sketch, config=config)
        judgement.bind(close.reference, config)
        changes = judgement.update(report)
        window = self.config.window
        for result in report.results:
            detected = judgement.verdicts.get(result.feature, False) if result.deciding else None
            self.tel.set_drift(close.model, close.version, result.feature, result.method, window,
                               _finite(result.statistic), decision_pvalue(result), _finite(result.threshold), detected)
        for change in changes:
            self._drift_event(close, change)
        return report

    def _label_drift(self, close: WindowClose, judgement: Judgement) -> tuple[DriftResult | None, Any]:
        """The labels joined in this window against the profile's label distribution, exported and
        tracked like a feature's drift under ``feature.name="__label__"`` (its own family of one);
        the result and the window's label counts, for the JSON API and the live page (None, None:
        the profile cannot judge these labels)."""
        from driftcar.stats import DriftReport, evaluate_label_drift

        window = close.profile.new_window()
        window.update_labels(np.asarray(close.y_true, dtype=object if _text_labels(close.y_true) else None))
        result = evaluate_label_drift(close.profile, window, self.drift_config)
        if result is None:
            return None, None
        changes = judgement.update_label(DriftReport([result], rows=len(close.y_true)), self.drift_config)
        self.tel.set_drift(close.model, close.version, result.feature, result.method, self.config.window,
                           _finite(result.statistic), decision_pvalue(result), _finite(result.threshold),
                           result.feature in judgement.label_verdicts)
        for change in changes:
            self._drift_event(close, change)
        return result, window.feature(result.feature)

    def _summary_line(self, close: WindowClose, report, judgement: Judgement) -> None:
        """One compact line per model and window on the log (rate-limited across models)."""
        held = self.summaries.take()
        if held is None:
            return
        line = window_summary(close.model, close.version, close.start_ns, close.end_ns, close.rows, report,
                              judgement.verdicts, close.coverage_share)
        if held:
            line += f" ({held} summary line(s) held back in the last minute)"
        log.info("%s", line)

    def _drift_event(self, close: WindowClose, change) -> None:
        result = change.result
        name = "driftcar.drift.detected" if change.detected else "driftcar.drift.resolved"
        attributes = {
            "model.name": close.model,
            "model.version": close.version,
            "feature.name": change.feature,
            "drift.method": result.method,
            "drift.score": _finite(result.statistic),
            "drift.threshold": _finite(result.threshold),
            "drift.threshold.kind": decision_kind(result),
            "drift.window": self.config.window,
            "window.start": int(close.start_ns),
            "window.end": int(close.end_ns),
            "driftcar.sample_trace_ids": list(close.trace_ids),
        }
        pvalue = decision_pvalue(result)
        if pvalue is not None:
            attributes["drift.pvalue"] = pvalue
        verb = "drifted" if change.detected else "is back to its reference"
        body = f"{safe(close.model)}@{safe(close.version)} feature {safe(change.feature)} {verb}: {describe(result)}"
        self.tel.emit_event(name, "WARN" if change.detected else "INFO", body, attributes)
        log.info("drift %s: %s", "detected" if change.detected else "resolved", body)

    def _distributions(self, close: WindowClose) -> None:
        """Cumulative histograms from the merged sketches; window counts of missing/categories."""
        cumulative = close.cumulative
        if cumulative is None:
            return
        if close.profile is None:
            return
        for name, feature in close.profile.features.items():
            try:
                total = cumulative.feature(name)
                window = close.sketch.feature(name)
            except (KeyError, ValueError):
                continue
            if feature.kind == "numeric":
                self._histogram("feature", close, name, feature, total)
            else:
                for category, count in window.category_counts.items():
                    if count:
                        self.tel.add_category(close.model, close.version, name, str(category) or EMPTY, int(count))
            if window.missing:
                self.tel.add_missing(close.model, close.version, name, int(window.missing))
        prediction = close.profile.prediction
        if prediction is not None and prediction.kind == "numeric":
            try:
                total = cumulative.feature("__prediction__")
            except (KeyError, ValueError):
                return
            self._histogram("prediction", close, None, prediction, total)

    def _histogram(self, kind: str, close: WindowClose, name: str | None, feature: FeatureProfile,
                   sketch: NumericSketch) -> None:
        edges = np.asarray(feature.edges, dtype=np.float64)
        counts = np.asarray(sketch.counts, dtype=np.int64)
        if edges.size == 0 or counts.size != edges.size + 1:
            return
        total_sum = _finite(sketch.sum)
        count = int(counts.sum())
        self.tel.set_histogram(kind, close.model, close.version, name, edges.tolist(), counts.tolist(),
                               total_sum, count)

    def _quality(self, close: WindowClose, judgement: Judgement) -> tuple[dict[str, float], float | None]:
        from driftcar.stats import classification_scores, regression_scores

        performance: dict[str, float] = {}
        if close.y_true:
            y_true = np.asarray(close.y_true)
            y_pred = np.asarray(close.y_pred)
            classification = close.classification
            if classification is None:
                classification = y_pred.dtype.kind not in "f"
            scores = classification_scores(y_true, y_pred) if classification else regression_scores(y_true, y_pred)
            for metric in ("accuracy", "precision", "recall", "f1", "mae", "rmse"):
                if metric in scores:
                    performance[metric] = _finite(scores[metric])
                    self.tel.set_performance(close.model, close.version, metric, performance[metric])
        estimated = None
        if close.proba_n:
            estimated = _finite(close.proba_sum / close.proba_n)
            self.tel.set_estimated_accuracy(close.model, close.version, estimated)
        values = dict(performance)
        if estimated is not None:
            values["estimated_accuracy"] = estimated
        for metric, threshold in self.config.performance_thresholds:
            if metric not in values:
                continue
            value = values[metric]
            bad = value < threshold if HIGHER_IS_BETTER[metric] else value > threshold
            was = judgement.degraded.get(metric, False)
            judgement.degraded[metric] = bad
            if bad and not was:
                self.tel.emit_event("driftcar.performance.degraded", "WARN",
                                    f"{close.model}@{close.version} {metric} {value:.4g} "
                                    f"{'below' if HIGHER_IS_BETTER[metric] else 'above'} {threshold:.4g}",
                                    {"model.name": close.model, "model.version": close.version, "metric": metric,
                                     "value": value, "threshold": float(threshold),
                                     "window.start": int(close.start_ns), "window.end": int(close.end_ns)})
        return performance, estimated
