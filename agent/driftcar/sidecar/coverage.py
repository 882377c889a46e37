"""Coverage: how much of a model's reference its live traffic actually reaches, said out loud.

A drift verdict over features that never arrive reads "clean" while comparing nothing.
:class:`Coverage` (one per model, mutated under the store's lock) tracks which profiled
features the traffic carries, how many rows carried at least one of them, and which
sent names the reference does not know; each kind of mismatch is reported once per
model and cause through :func:`report_mismatch` (a WARN log line and a
``driftcar.reference.mismatch`` event naming what did not match and the closest names).

Bounds: at most :data:`MAX_UNMATCHED` unmatched names are remembered per model (the
rest are counted under ``__other__``), and each event names at most
:data:`MAX_NAMED` of them.
"""

from __future__ import annotations

import difflib
import logging
import re
from typing import Iterable

from driftcar.sidecar.messages import safe
from driftcar.sidecar.telemetry.names import MISMATCH_CAUSES

__all__ = ["Coverage", "CAUSES", "closest", "suggest", "report_mismatch", "MAX_UNMATCHED", "MAX_NAMED"]

log = logging.getLogger("driftcar.sidecar.coverage")

#: mismatch causes, in the order the API lists them (the names contract lists the same)
CAUSES = MISMATCH_CAUSES
MAX_UNMATCHED = 100
MAX_NAMED = 20
OTHER = "__other__"
_NUMPY_NAME = re.compile(r"^x\d+$")


def closest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Known names that look like ``name``: case-insensitive equals first, then difflib's close matches.

    >>> closest("Loan", ["loan", "churn"])
    ['loan']
    >>> closest("incme", ["income", "age", "outcome"])
    ['income']
    """
    known = list(known)
    folded = [k for k in known if k.casefold() == name.casefold() and k != name]
    by_lower = {k.casefold(): k for k in known}
    fuzzy = [by_lower[m] for m in difflib.get_close_matches(name.casefold(), list(by_lower), n=n, cutoff=0.6)]
    return list(dict.fromkeys(folded + fuzzy))[:n]


def suggest(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """``"sent -> closest, other"`` per name with a close known name (for events and the API)."""
    known = list(known)
    out = []
    for name in names:
        near = closest(name, known)
        if near:
            out.append(f"{safe(name)} -> {', '.join(safe(n) for n in near)}")
    return out


def _listed(names: list[str]) -> str:
    shown = ", ".join(safe(n) for n in names[:MAX_NAMED])
    return shown + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")


class Coverage:
    """Per-model coverage of the reference by live traffic. Not thread-safe: the store's lock guards it."""

    def __init__(self) -> None:
        self.profiled: tuple[str, ...] = ()
        self._profiled_set: frozenset[str] = frozenset()
        self.seen: set[str] = set()  # profiled features seen since the reference was bound
        self.window_seen: set[str] = set()
        self.window_rows = 0  # inference rows in the current window (matched or not)
        self.rows_matched = 0  # rows that carried at least one profiled feature
        self.rows_unmatched = 0  # rows compared with nothing (no profiled feature, or no reference)
        self.unmatched: dict[str, int] = {}  # sent feature name -> rows, for names the reference lacks
        self.share: float | None = None  # share of profiled features seen in the last window with rows
        self.mismatches: dict[str, dict] = {}  # cause -> what was reported (once per cause)

    def bind(self, features: Iterable[str]) -> None:
        """A (new) reference: start counting against its features."""
        self.profiled = tuple(features)
        self._profiled_set = frozenset(self.profiled)
        self.seen, self.window_seen = set(), set()
        self.unmatched = {}
        self.share = None
        self.mismatches.pop("unknown_features", None)
        self.mismatches.pop("unseen_features", None)

    def observe(self, names: Iterable[str], rows: int, bound: bool) -> list[str]:
        """One inference batch's feature names; returns the names the reference does not know."""
        names = list(names)
        self.window_rows += rows
        if not bound:
            self.rows_unmatched += rows
            return []
        profiled = self._profiled_set
        matched = [n for n in names if n in profiled]
        self.window_seen.update(matched)
        if matched or not names:  # a batch of predictions only is not a mismatch
            self.rows_matched += rows if matched else 0
        else:
            self.rows_unmatched += rows
        unknown = [n for n in names if n not in profiled]
        for name in unknown:
            key = name if name in self.unmatched or len(self.unmatched) < MAX_UNMATCHED else OTHER
            self.unmatched[key] = self.unmatched.get(key, 0) + rows
        return unknown

    def close_window(self, bound: bool) -> tuple[float | None, list[str]]:
        """Share of profiled features seen in the window (None when it had no rows or nothing is
        profiled; 0 when rows came with no reference) and the profiled features it missed."""
        rows, seen = self.window_rows, self.window_seen
        self.window_rows, self.window_seen = 0, set()
        if not rows:
            return None, []
        if not bound:
            self.share = 0.0
            return self.share, []
        if not self.profiled:
            return None, []
        self.seen |= seen
        self.share = len(seen) / len(self.profiled)
        return self.share, [f for f in self.profiled if f not in seen]

    def as_dict(self) -> dict:
        """JSON-ready view for the API."""
        return {
            "share": self.share,
            "features_profiled": len(self.profiled),
            "features_seen": len(self.seen),
            "unseen_features": [f for f in self.profiled if f not in self.seen][:MAX_UNMATCHED],
            "rows_matched": self.rows_matched,
            "rows_unmatched": self.rows_unmatched,
            "unknown_features": dict(sorted(self.unmatched.items())),
            "mismatches": [dict(self.mismatches[c], cause=c) for c in CAUSES if c in self.mismatches],
        }


def unknown_features_message(model: str, unknown: list[str], profiled: tuple[str, ...]) -> tuple[str, list[str]]:
    """Body and suggestions for live feature names the reference does not have."""
    hints = suggest(unknown, profiled)
    text = (f"{model}: {len(unknown)} feature name(s) sent are not in the reference and are not compared: "
            f"{_listed(unknown)}; the reference has {_listed(list(profiled))}")
    if hints:
        text += f" (closest: {'; '.join(hints[:MAX_NAMED])})"
    if unknown and all(_NUMPY_NAME.match(n) for n in unknown):
        text += ("; numpy inputs are named x0, x1, ...: name them with driftcar.instrument(..., "
                 "feature_names=[...]) or profile the same layout")
    return text, hints


def no_reference_message(model: str, version: str, known: list[str], live_rows: int) -> tuple[str, list[str]]:
    """Body and suggestions for a model name that matches no ``--reference NAME=`` binding."""
    hints = closest(model, known)
    text = (f"{safe(model)}@{safe(version)}: no reference is bound to this model name; --reference binds "
            f"{_listed(known) or 'no model name'}")
    if hints:
        text += f" (did you mean {' or '.join(safe(h) for h in hints)}? names are case-sensitive)"
    text += (f"; the first {live_rows} live rows will be taken as the reference instead" if live_rows > 0
             else "; drift is not evaluated for it")
    return text, [f"{model} -> {h}" for h in hints]


def report_mismatch(coverage: Coverage, tel, model: str, version: str, cause: str, body: str,
                    names: list[str], suggestions: list[str] | None = None) -> bool:
    """Log and emit ``driftcar.reference.mismatch`` once per (model, cause); True when reported now."""
    if cause in coverage.mismatches:
        return False
    suggestions = list(suggestions or [])
    coverage.mismatches[cause] = {"message": body, "names": names[:MAX_NAMED], "suggestions": suggestions}
    log.warning("reference mismatch (%s): %s", cause, body)
    tel.emit_event("driftcar.reference.mismatch", "WARN", body, {
        "model.name": model,
        "model.version": version,
        "mismatch.cause": cause,
        "mismatch.names": names[:MAX_NAMED],
        "mismatch.suggestions": suggestions[:MAX_NAMED],  # always present, maybe empty
    })
    return True
