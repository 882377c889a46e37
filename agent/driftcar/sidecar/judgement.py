"""What the evaluator keeps per (model, version) between windows: verdicts, the last result,
degraded flags, label drift's verdict.

The evaluator's thread is the only writer (one evaluation runs at a time); the JSON API and the
live page read :attr:`Judgement.verdicts` and :attr:`Judgement.last`, which are replaced whole,
never mutated in place. Verdicts have one home, the :class:`~driftcar.stats.VerdictTracker`;
``verdicts`` is its drifted set published for readers after each window.

Verdicts belong to a reference: each reference a model adopts has a new number (the
``generation`` of its :class:`~driftcar.sidecar.reference.ReferenceBuilder`, carried by every
:class:`~driftcar.sidecar.state.WindowClose`). When it changes, the next evaluation starts a fresh
tracker (:meth:`Judgement.bind`), and readers see no verdicts until then.

Label drift (``__label__``) has a tracker of its own (:meth:`Judgement.label`): labels arrive on
another path than features, and its verdict is checkpointed next to the features' ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    from driftcar.stats import DriftConfig, DriftReport, DriftResult, VerdictChange, WindowSketch

__all__ = ["Judgement", "EvaluationResult"]

_NONE: Mapping[str, bool] = MappingProxyType({})


@dataclass(frozen=True)
class EvaluationResult:
    """What the API shows for a model: the last evaluated window (replaced whole)."""

    start_ns: int
    end_ns: int
    rows: int
    report: DriftReport | None
    verdicts: dict[str, bool]
    performance: dict[str, float]
    estimated_accuracy: float | None
    sketch: WindowSketch | None
    label: DriftResult | None = None  # label drift (``__label__``) of the last window with labels
    label_current: Any = None  # that window's ``__label__`` counts (the live page draws them)


class Judgement:
    """The evaluator's per-model state; see the module docstring."""

    __slots__ = ("reference", "tracker", "verdicts", "last", "degraded", "label_tracker", "label_verdicts")

    def __init__(self) -> None:
        self.reference = 0  # generation of the reference the tracker's verdicts are about
        self.tracker = None
        self.verdicts: Mapping[str, bool] = _NONE  # feature -> True while drifted (published whole)
        self.last: EvaluationResult | None = None
        self.degraded: dict[str, bool] = {}  # metric -> below its threshold at the last window
        self.label_tracker = None  # label drift's VerdictTracker (``__label__``, a family of one)
        self.label_verdicts: tuple[str, ...] = ()  # the label tracker's drifted set (published whole)

    def verdicts_for(self, reference: int) -> Mapping[str, bool]:
        """The verdicts if they are about ``reference`` (the model's current one), else none."""
        return self.verdicts if reference == self.reference else _NONE

    def bind(self, reference: int, config: DriftConfig) -> None:
        """Judge against ``reference`` from now on; a new reference starts with no verdicts, the
        label's included (a label drifted from the old reference says nothing about the new one)."""
        if self.tracker is None or reference != self.reference:
            from driftcar.stats import VerdictTracker

            self.tracker = VerdictTracker(config)
            if reference != self.reference:
                self.verdicts = _NONE
                self.label_tracker, self.label_verdicts = None, ()
            self.tracker.restore(f for f, detected in self.verdicts.items() if detected)
            self.reference = reference

    def update(self, report: DriftReport) -> list[VerdictChange]:
        """Feed one window's report to the tracker (after :meth:`bind`); returns the changes."""
        changes = self.tracker.update(report)
        if changes:
            self.verdicts = MappingProxyType({f: True for f in self.tracker.drifted})
        return changes

    def update_label(self, report: DriftReport, config: DriftConfig) -> list[VerdictChange]:
        """Feed one window's label drift to its tracker (made on first use, starting from the
        verdict of a checkpoint); returns the changes."""
        if self.label_tracker is None:
            from driftcar.stats import VerdictTracker

            self.label_tracker = VerdictTracker(config)
            self.label_tracker.restore(self.label_verdicts)
        changes = self.label_tracker.update(report)
        if changes:
            self.label_verdicts = tuple(self.label_tracker.drifted)
        return changes

    def label_drifted(self) -> list[str]:
        """The drifted label columns (``["__label__"]`` or none)."""
        return list(self.label_verdicts)

    # ------------------------------------------------------------------ checkpoint
    def to_state(self, reference: int | None) -> dict[str, Any]:
        """The part a checkpoint keeps, so hysteresis does not re-alert after a restart: the drifted
        features about ``reference`` (None: the model has none) and the drifted labels."""
        verdicts = self.verdicts_for(reference) if reference is not None else _NONE
        return {"verdicts": dict(verdicts), "label_verdicts": self.label_drifted()}

    def restore(self, reference: int, verdicts: Mapping[str, Any] | Iterable,
                label_verdicts: Iterable[str] = ()) -> None:
        """Verdicts read from a checkpoint, about ``reference``; older checkpoints also list
        resolved features (False), which are dropped, and have no label verdicts."""
        items = verdicts.items() if isinstance(verdicts, Mapping) else ((f, True) for f in verdicts)
        self.reference = reference
        self.tracker = None
        self.verdicts = MappingProxyType({str(f): True for f, detected in items if detected})
        self.label_tracker = None
        self.label_verdicts = tuple(str(f) for f in label_verdicts)
