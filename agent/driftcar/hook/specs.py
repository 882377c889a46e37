"""What each wrapped method captures: one table, built once, read by every part of the hook.

A root wrapper looks up its method's :class:`MethodSpec` when it is made; the
shipper's grouping and the column conversion read the same table to know which
outputs are predictions and which are probability tables.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MethodSpec", "SPECS", "spec_for", "OUTPUT_METHODS", "PROBA_METHODS", "CALL_ONLY"]


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """How the root wrapper of one method captures.

    mode:    "io" (inputs and outputs), "in" (inputs), "learn" (inputs and the
             ``y`` argument as label), "fit" (the call only; re-walks the model
             after it for spans) or "call" (the call only).
    outputs: the return value is captured (a prediction or probabilities).
    proba:   the return value is a probability table (classes from ``classes_``).
    fast:    numpy-in / numpy-out calls may take the compact hot path
             (:func:`driftcar.hook.capture.record_array`).
    """

    name: str
    mode: str = "call"
    outputs: bool = False
    proba: bool = False
    fast: bool = False


SPECS: dict[str, MethodSpec] = {
    s.name: s
    for s in (
        MethodSpec("predict", "io", outputs=True, fast=True),
        MethodSpec("predict_one", "io", outputs=True, fast=True),
        MethodSpec("__call__", "io", outputs=True, fast=True),
        MethodSpec("predict_proba", "io", outputs=True, proba=True),
        MethodSpec("predict_proba_one", "io", outputs=True, proba=True),
        MethodSpec("transform", "in"),
        MethodSpec("transform_one", "in"),
        MethodSpec("learn_one", "learn"),
        MethodSpec("fit", "fit"),
    )
}

#: methods whose return value is captured (the shipper converts it to prediction columns)
OUTPUT_METHODS = frozenset(name for name, s in SPECS.items() if s.outputs)
#: methods whose return value is a probability table
PROBA_METHODS = frozenset(name for name, s in SPECS.items() if s.proba)
#: the spec of any other configured method: only the call is recorded
CALL_ONLY = MethodSpec("", "call")


def spec_for(name: str) -> MethodSpec:
    """The spec of ``name`` (any unknown method records the call only).

    >>> spec_for("predict_proba").proba, spec_for("decision_function").mode
    (True, 'call')
    """
    return SPECS.get(name) or MethodSpec(name, "call")
