"""Per-(model, version) state and the store of all of them.

A :class:`ModelState` is made of parts, each with one concern and each serialising itself
for the checkpoint:

- ``reference`` (:class:`~driftcar.sidecar.reference.ReferenceBuilder`): the reference from a
  file, inline reference batches or the first live rows;
- ``series`` (:class:`~driftcar.stats.windows.WindowSeries`): the open window, the kept closed
  windows (compacted) and the cumulative sketch; one per reference;
- ``labels`` (:class:`~driftcar.sidecar.labels.LabelJoin`): predictions waiting for labels;
- ``signals`` (:class:`~driftcar.sidecar.signals.GoldenSignals`): calls, durations, rows,
  trace samples, hook drop counts;
- ``coverage`` (:class:`~driftcar.sidecar.coverage.Coverage`): which features arrive;
- ``judgement`` (:class:`~driftcar.sidecar.judgement.Judgement`): the evaluator's part
  (verdicts, last result), written by the evaluator's thread only.

ModelState routes each batch to its parts and says what a reference change means for them.

Data flow: the ingest worker thread calls :meth:`StateStore.apply` for each queued
batch (one vectorized ``WindowSketch.update`` per batch); the evaluator calls
:meth:`StateStore.close_windows` at each window boundary, which closes every model's
window and hands back frozen :class:`WindowClose` values to be evaluated off the loop.

Thread-safety: ``apply``, ``close_windows``, ``admit`` and ``restore`` take the
store's lock; readers (the JSON API) only read attributes that are replaced whole
(``ModelState.last``, ``ModelState.verdicts``, ``ModelState.closed`` copies), never mutated
in place.

Bounds: at most ``max_models`` (model, version) pairs (others are refused at ingest
with a reason), ``windows_kept`` closed windows per model, ``max_reference_rows``
buffered reference rows, ``label_max_rows`` predictions waiting for labels,
``trace_samples`` trace ids per window. Feature and category caps are enforced by
the sketches (categories) and the telemetry (exported series).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from driftcar.sidecar.config import ModelConfig, StoreConfig
from driftcar.sidecar.coverage import Coverage, no_reference_message, report_mismatch, suggest, unknown_features_message
from driftcar.sidecar.ingest import Item
from driftcar.sidecar.judgement import EvaluationResult, Judgement
from driftcar.sidecar.labels import LabelJoin
from driftcar.sidecar.messages import safe
from driftcar.sidecar.reference import ReferenceBuilder
from driftcar.sidecar.signals import EMPTY, GoldenSignals
from driftcar.stats import Encoded
from driftcar.stats.windows import ClosedWindow, WindowSeries
from driftcar.wire import StrColumn

__all__ = ["ModelState", "StateStore", "WindowClose", "ClosedWindow", "EvaluationResult", "sketch_column"]

log = logging.getLogger("driftcar.sidecar.state")


@dataclass(frozen=True)
class WindowClose:
    """One just-closed window of one model, as the evaluator, the forwarder and the checkpoint
    see it: a value, with no way back to the state that keeps changing."""

    model: str
    version: str
    profile: Any
    sketch: Any
    start_ns: int
    end_ns: int
    rows: int
    y_true: list
    y_pred: list
    proba_sum: float
    proba_n: int
    trace_ids: list[str]
    final: bool = False
    golden: Any = None  # driftcar.sidecar.fleet.GoldenWindow: the window's calls and durations (forwarded)
    cumulative: Any = None  # merge of every closed window since the reference (exported histograms)
    classification: bool | None = None  # the model's predictions are classes (None: not known yet)
    coverage_share: float | None = None  # share of the reference's features seen (summary line)
    reference: int = 0  # generation of the model's reference the window was sketched against


@dataclass(frozen=True)
class Saved:
    """A model's state for a checkpoint: each part's small fields, and the large objects that
    serialise themselves (``profile.to_bytes``, ``ClosedWindow.blob``, the cumulative blob)."""

    fields: dict
    profile: Any
    windows: list
    cumulative: Callable[[], bytes] | None


def _is_categorical(data) -> bool:
    return not isinstance(data, np.ndarray) or data.dtype.kind not in "fiub"


def sketch_column(values):
    """A str column decoded with its dictionary, as the sketch's coded column: counted per distinct
    value, not per row (:class:`~driftcar.wire.StrColumn`)."""
    return Encoded(values.codes, values.keys) if isinstance(values, StrColumn) else values


class ModelState:
    """State of one (model, version). Mutated only under the store's lock."""

    def __init__(self, model: str, version: str, config: ModelConfig, telemetry, now_ns: int):
        self.model = model
        self.version = version
        self.config = config
        self.tel = telemetry
        self.reference = ReferenceBuilder(f"{model}@{version}", config.max_reference_rows,
                                          config.live_reference_rows)
        self.series: WindowSeries | None = None  # the model's windows, once it has a reference
        self.window_start_ns = now_ns
        self.unprofiled_rows = 0  # live rows seen while no reference existed and none could be built
        self.labels = LabelJoin(model, version, config.label_ttl_s, config.label_max_rows, telemetry)
        self.signals = GoldenSignals(model, version, config.trace_samples, telemetry)
        self.classification: bool | None = None
        self.judgement = Judgement()  # the evaluator's part: written by its thread only
        self.coverage = Coverage()
        self.fleet: dict | None = None  # gateway role: who reported the last fleet window

    @property
    def profile(self):
        """The reference profile (None until there is one)."""
        return self.reference.profile

    @property
    def reference_source(self) -> str | None:
        return self.reference.source

    @property
    def reference_file(self) -> str | None:
        return self.reference.file

    @property
    def window(self):
        """The open window's sketch (None without a reference)."""
        return self.series.current if self.series is not None else None

    @property
    def window_rows(self) -> int:
        return self.series.rows if self.series is not None else 0

    @property
    def closed(self):
        """The kept closed windows, oldest first (the evaluator's thread appends: copy to iterate)."""
        return self.series.closed if self.series is not None else ()

    @property
    def cumulative(self):
        """Merge of every closed window since the reference (the exported histograms)."""
        return self.series.cumulative if self.series is not None else None

    @property
    def rows_total(self) -> int:
        return self.signals.rows_total

    @property
    def batches_total(self) -> int:
        return self.signals.batches_total

    @property
    def verdicts(self):
        """feature -> True while drifted, about the current reference (read-only)."""
        return self.judgement.verdicts_for(self.reference.generation) if self.profile is not None else {}

    @property
    def last(self) -> EvaluationResult | None:
        """The last evaluated window (replaced whole by the evaluator)."""
        return self.judgement.last

    @property
    def label(self) -> str:
        """``model@version`` fit for a log line (data-derived names are escaped and cut)."""
        return f"{safe(self.model)}@{safe(self.version)}"

    # ------------------------------------------------------------------ reference
    def set_profile(self, prof, source: str, file: str | None = None) -> None:
        """Adopt a reference; the current window restarts bound to its bins."""
        self.reference.adopt(prof, source, file)
        self.series = WindowSeries(prof, self.config.window_s, self.config.windows_kept)
        features = list(prof.features)
        self.coverage.bind(features)
        log.info("model %s@%s: reference from %s (%s features)", self.model, self.version, source, len(features))
        self._check_drift_settings(features)

    def _check_drift_settings(self, features: list[str]) -> None:
        """Per-feature drift settings naming no feature of the reference are a typo, said once."""
        drift = self.config.drift
        configured = list(drift.features) if drift is not None else []
        known = set(features) | {"__prediction__", "__multivariate__"}
        unknown = [name for name in configured if name not in known]
        if not unknown:
            return
        hints = suggest(unknown, features)
        body = (f"{self.label}: drift settings name feature(s) the reference does not have, "
                f"so they apply to nothing: {', '.join(safe(n) for n in unknown)}"
                + (f" (closest: {'; '.join(hints)})" if hints else ""))
        report_mismatch(self.coverage, self.tel, self.model, self.version, "unknown_drift_settings", body,
                        unknown, hints)

    def _report_no_reference(self) -> None:
        """A window of live rows without any reference (judged at the close: reference batches
        sent with the first predictions may still be on their way): say which binding was
        missed, or that live rows become the reference."""
        named = list(self.config.named_references)
        live = self.reference.live.max_rows if self.reference.live is not None else 0
        if named:
            body, hints = no_reference_message(self.model, self.version, named, live)
            report_mismatch(self.coverage, self.tel, self.model, self.version, "no_reference", body,
                            [self.model], hints)
        if live:
            body = (f"{self.label}: no reference; taking the first {live} live rows (from now on) "
                    "as the reference: drift is measured against them, not against training data")
            report_mismatch(self.coverage, self.tel, self.model, self.version, "live_reference", body, [self.model])
        elif not named:
            body = (f"{self.label}: no reference and live references are off "
                    "(live_reference_rows 0): drift is not evaluated for it")
            report_mismatch(self.coverage, self.tel, self.model, self.version, "no_reference", body, [self.model])

    def _seal_reference_batches(self, at_close: bool = False, final: bool = False) -> None:
        prof = self.reference.seal(at_close, final)
        if prof is not None:
            self.set_profile(prof, "batch")

    # ------------------------------------------------------------------ apply
    def apply(self, item: Item, now_s: float) -> None:
        batch = item.batch
        self.signals.batches_total += item.batches
        if batch.kind == "reference":
            self._apply_reference(batch)
        elif batch.kind == "labels":
            self._apply_labels(batch, now_s)
        else:
            self._apply_inference(item, now_s)
        self.signals.hook_counters(batch.hook)

    def _apply_reference(self, batch) -> None:
        features = {n: batch.columns[n] for n in batch.names("feature")}
        labels = batch.columns[batch.names("label")[0]] if batch.names("label") else None
        preds = batch.columns[batch.names("prediction")[0]] if batch.names("prediction") else None
        self.reference.add_batch(features, labels, preds, batch.rows)

    def _apply_labels(self, batch, now_s: float) -> None:
        ids_cols, label_cols = batch.names("id"), batch.names("label")
        if not ids_cols or not label_cols:
            return
        self.labels.add_labels(batch.columns[ids_cols[0]], batch.columns[label_cols[0]], now_s)

    def _apply_inference(self, item: Item, now_s: float) -> None:
        batch = item.batch
        self.signals.observe(batch, item.trace_id)
        features = {n: batch.columns[n] for n in batch.names("feature")}
        pred_names = batch.names("prediction")
        predictions = all_predictions = batch.columns[pred_names[0]] if pred_names else None
        proba_names = batch.names("probability")
        probabilities = None
        if proba_names:
            probabilities = np.column_stack([np.asarray(batch.columns[n], dtype=np.float64) for n in proba_names])
        if self.reference.batches is not None:
            self._seal_reference_batches()
        self._observe_coverage(features, batch.rows)
        if self.profile is None and self.reference.live is not None and batch.rows:
            taken, prof = self.reference.take_live(features, predictions, batch.rows, now_s)
            if prof is not None:
                self._adopt_live_reference(prof, now_s)
            if taken:  # rows that became the reference are not compared with themselves
                features = {n: d[taken:] for n, d in features.items()}
                predictions = predictions[taken:] if predictions is not None else None
        rows_left = len(next(iter(features.values()))) if features else (
            len(predictions) if predictions is not None else 0)
        if self.series is not None and rows_left:
            columns: dict = {n: sketch_column(v) for n, v in features.items()}
            roles = {n: "feature" for n in features}
            if predictions is not None:
                columns[pred_names[0]] = predictions
                roles[pred_names[0]] = "prediction"
            if probabilities is not None and rows_left == batch.rows:
                for n in proba_names:
                    columns[n] = batch.columns[n]
                    roles[n] = "probability"
            self.series.update(columns, roles, rows_left)
        elif rows_left:
            self.unprofiled_rows += rows_left
        if all_predictions is not None:
            if self.classification is None:
                self.classification = _is_categorical(all_predictions) or bool(proba_names) or (
                    isinstance(all_predictions, np.ndarray) and all_predictions.dtype.kind in "iub")
            if self.classification and len(all_predictions):
                values, counts = np.unique(np.asarray(all_predictions, dtype=object if _is_categorical(
                    all_predictions) else None).astype(str), return_counts=True)
                for value, count in zip(values.tolist(), counts.tolist()):
                    self.tel.add_prediction_class(self.model, self.version, value or EMPTY, int(count))
        if probabilities is not None:
            self.labels.add_probabilities(probabilities)
        ids = batch.names("id")
        if ids and all_predictions is not None:
            self.labels.add_predictions(batch.columns[ids[0]], all_predictions, now_s)

    def _observe_coverage(self, features: dict, rows: int) -> None:
        if not rows:
            return
        unknown = self.coverage.observe(features, rows, self.profile is not None)
        if unknown and "unknown_features" not in self.coverage.mismatches:
            body, hints = unknown_features_message(self.label, unknown, self.coverage.profiled)
            report_mismatch(self.coverage, self.tel, self.model, self.version, "unknown_features", body,
                            unknown, hints)

    def _adopt_live_reference(self, prof, now_s: float) -> None:
        self.set_profile(prof, "live")
        taken = self.reference.live_rows
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((taken["from_unix_nano"] or 0) / 1e9))
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s))
        body = (f"{self.label}: no reference; the first {taken['rows']} live rows (received {start} .. "
                f"{end} UTC) were taken as the reference: drift is measured against them, not against training data")
        if not report_mismatch(self.coverage, self.tel, self.model, self.version, "live_reference", body,
                               [self.model]):
            log.warning("%s", body)

    @property
    def hook_dropped(self) -> dict[str, int]:
        """The tracked hook instances' cumulative drop counts (a copy)."""
        return dict(self.signals.hook_drops.live)

    # ------------------------------------------------------------------ windows
    def close_window(self, now_ns: int, final: bool = False) -> WindowClose:
        # Reference batches are sealed into a profile by the next inference batch, or once a
        # whole window passed without more of them (a chunked reference may straddle a close).
        self._seal_reference_batches(at_close=True, final=final)
        start_ns, rows = self.window_start_ns, self.window_rows
        sketch = self.series.close(start_ns, now_ns) if self.series is not None else None
        y_true, y_pred, proba_sum, proba_n = self.labels.take_window()
        golden, trace_ids = self.signals.take_window()
        self.window_start_ns = now_ns
        self._close_coverage()
        self.labels.expire(now_ns / 1e9)
        return WindowClose(
            model=self.model, version=self.version, profile=self.profile, sketch=sketch,
            start_ns=start_ns, end_ns=now_ns, rows=rows, y_true=y_true, y_pred=y_pred, proba_sum=proba_sum,
            proba_n=proba_n, trace_ids=trace_ids, final=final, golden=golden, cumulative=self.cumulative,
            classification=self.classification, coverage_share=self.coverage.share,
            reference=self.reference.generation,
        )

    def _close_coverage(self) -> None:
        if self.profile is None and self.coverage.window_rows and self.reference.batches is None:
            self._report_no_reference()
        share, unseen = self.coverage.close_window(self.profile is not None)
        if share is None:
            return  # no traffic is not "no coverage": the gauge keeps its last value
        self.tel.set_coverage(self.model, self.version, share)
        if unseen:
            profiled = self.coverage.profiled
            body = (f"{self.label}: {len(unseen)} of {len(profiled)} profiled feature(s) got no "
                    f"values in a whole window and are not compared: {', '.join(safe(n) for n in unseen[:20])}"
                    + (f" and {len(unseen) - 20} more" if len(unseen) > 20 else ""))
            report_mismatch(self.coverage, self.tel, self.model, self.version, "unseen_features", body, unseen)

    def compact_closed(self) -> None:
        """Compress closed windows still held live (evaluator thread, after evaluation)."""
        if self.series is not None:
            self.series.compact()

    # ------------------------------------------------------------------ checkpoint
    def saved(self) -> Saved:
        """What a checkpoint keeps (under the store's lock: references only, serialised later)."""
        series = self.series
        reference = self.reference.generation if self.profile is not None else None
        return Saved(
            fields={**self.reference.to_state(), **self.judgement.to_state(reference), **self.signals.to_state(),
                    "joiner": self.labels.to_bytes()},
            profile=self.profile,
            windows=list(series.closed) if series is not None else [],
            cumulative=series.cumulative_blob if series is not None and series.cumulative is not None else None,
        )

    def restore(self, fields: dict, profile: Callable[[], Any] | None,
                windows: Callable[[Any], list[ClosedWindow]], cumulative: Callable[[], bytes] | None) -> None:
        """Read back what :meth:`saved` kept; the large parts are read only when they apply (a
        configured reference file wins over the saved reference, and windows belong to it)."""
        if profile is not None and self.reference.source != "file":
            self.set_profile(profile(), fields.get("reference_source") or "batch", fields.get("reference_file"))
        if self.profile is not None and fields.get("reference_source") == self.reference.source:
            self.series.restore(windows(self.profile), cumulative() if cumulative is not None else None)
            self.judgement.restore(self.reference.generation, fields.get("verdicts") or {},
                                   fields.get("label_verdicts") or ())
        self.signals.restore(fields)
        if fields.get("joiner"):
            try:
                self.labels.restore(fields["joiner"])
            except Exception as exc:
                log.warning("label buffer of %s not restored: %s", self.label, exc)

    def summary(self) -> dict:
        """JSON-ready overview for ``GET /v1/models``."""
        last = self.last
        return {
            "name": self.model,
            "version": self.version,
            "reference": self.reference.summary(),
            "coverage": self.coverage.as_dict(),
            "rows_total": self.signals.rows_total,
            "batches_total": self.signals.batches_total,
            "unprofiled_rows": self.unprofiled_rows,
            "ignored_reference_rows": self.reference.ignored_rows,
            "window": {"start_unix_nano": self.window_start_ns, "rows": self.window_rows},
            "closed_windows": len(self.closed),
            "last_evaluated": None if last is None else {"start_unix_nano": last.start_ns,
                                                         "end_unix_nano": last.end_ns, "rows": last.rows},
            "drift_detected": sorted(f for f, v in self.verdicts.items() if v),
            "hook_dropped_rows": self.signals.hook_drops.total,
            **({"fleet": self.fleet} if self.fleet is not None else {}),
        }


class StateStore:
    """All models' state. See the module docstring for the threading contract."""

    def __init__(self, config: StoreConfig, telemetry, clock: Callable[[], int] = time.time_ns,
                 load_profile: Callable[[str], Any] | None = None):
        self.config = config
        self.model_config = config.model  # what each model's state reads
        self.tel = telemetry
        self.clock = clock
        self.lock = threading.RLock()
        self.models: dict[tuple[str, str], ModelState] = {}
        self.refused_models = 0
        # (model, version) pairs admitted but maybe not applied yet: the cap counts them too,
        # or every new model in the requests queued before the first apply would get in
        self._admitted: set[tuple[str, str]] = set()
        self._admit_lock = threading.Lock()
        self._load_profile = load_profile
        self._file_profiles: dict[str, Any] = {}

    def file_profile(self, path: str):
        """Load (once) a ``--reference`` file; errors propagate (checked at start-up)."""
        if path not in self._file_profiles:
            if self._load_profile is not None:
                self._file_profiles[path] = self._load_profile(path)
            else:
                from driftcar.stats import Profile

                self._file_profiles[path] = Profile.load(path)
        return self._file_profiles[path]

    def admit(self, model: str, version: str) -> str | None:
        """Refusal reason for a new (model, version) beyond ``max_models``, else None.

        Lock-free for known models; a new one takes a slot at once (under a small lock), so
        concurrent and queued batches cannot push the state past the cap.
        """
        key = (model, version)
        if key in self.models or key in self._admitted:
            return None
        with self._admit_lock:
            if key in self._admitted:
                return None
            if len(self._admitted.union(self.models)) < self.config.max_models:
                self._admitted.add(key)
                return None
            self.refused_models += 1
        return f"model cap reached ({self.config.max_models} model versions); batch for a new model refused"

    def get_or_create(self, model: str, version: str) -> ModelState:
        key = (model, version)
        state = self.models.get(key)
        if state is None:
            state = ModelState(model, version, self.model_config, self.tel, self.clock())
            path = self.config.reference_for(model, version)
            if path:
                state.set_profile(self.file_profile(path), "file", path)
            self.models[key] = state
            self.tel.set_state_models(len(self.models))
        return state

    def apply(self, item: Item) -> None:
        with self.lock:
            state = self.get_or_create(item.model, item.version)
            state.apply(item, self.clock() / 1e9)

    def close_windows(self, final: bool = False) -> list[WindowClose]:
        now = self.clock()
        with self.lock:
            return [state.close_window(now, final) for state in self.models.values()]

    def compact(self, model: str, version: str) -> None:
        """Compress the model's closed windows still held live (evaluator thread, after evaluation)."""
        state = self.models.get((model, version))
        if state is not None:
            state.compact_closed()

    def find(self, model: str, version: str | None = None) -> list[ModelState]:
        return [s for (m, v), s in list(self.models.items()) if m == model and (version is None or v == version)]
