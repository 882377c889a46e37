"""Golden signals of one (model, version): calls and errors per method, call durations, rows,
a sample of trace ids per window, and the hook instances' own drop counts.

Counters go to telemetry as they arrive; the window's calls and durations are also kept in a
:class:`~driftcar.sidecar.fleet.GoldenWindow` for fleet forwarding, taken at each close with the
window's trace ids. Bounds: ``trace_samples`` trace ids per window (reservoir sampling);
:data:`MAX_HOOK_INSTANCES` hook instances per model. Mutated under the store's lock only.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Mapping
from typing import Any

import numpy as np

from driftcar.sidecar.fleet.golden import GoldenWindow

__all__ = ["GoldenSignals", "HookDrops", "EMPTY", "MAX_HOOK_INSTANCES"]

#: exported in place of an empty string value (attribute values must not be empty)
EMPTY = "(empty)"
#: hook instances whose cumulative drop counts are tracked per model (least recent retired beyond)
MAX_HOOK_INSTANCES = 1_000


class HookDrops:
    """Per-instance maximum of a cumulative count, bounded; retired instances keep their share.

    The one home of the hook's drop counts: the metric (``driftcar.hook.dropped`` is set to
    :attr:`total`), the JSON API and the checkpoint all read this object, so they agree — also
    after a restart, when the restored total is exported again.
    """

    __slots__ = ("live", "retired")

    def __init__(self, live: Mapping[str, int] | None = None, retired: int = 0) -> None:
        self.live: collections.OrderedDict[str, int] = collections.OrderedDict(live or {})
        self.retired = retired

    def update(self, instance: str, cumulative: int) -> int | None:
        """New total, or None when nothing changed (a repeated or reordered report counts once)."""
        if cumulative <= self.live.get(instance, -1):
            return None
        self.live[instance] = cumulative
        self.live.move_to_end(instance)
        while len(self.live) > MAX_HOOK_INSTANCES:
            self.retired += self.live.popitem(last=False)[1]
        return self.total

    @property
    def total(self) -> int:
        return self.retired + sum(self.live.values())


class GoldenSignals:
    """The golden-signal part of a model's state; see the module docstring."""

    def __init__(self, model: str, version: str, trace_samples: int, telemetry):
        self.model = model
        self.version = version
        self.tel = telemetry
        self.trace_samples = trace_samples
        self.window = GoldenWindow()  # this window's calls and durations, for fleet forwarding
        self.trace_ids: list[str] = []
        self._trace_seen = 0
        self._rng = random.Random(hash((model, version)) & 0xFFFF)
        self.hook_drops = HookDrops()  # the hook instances' own drop counts
        self.rows_total = 0
        self.batches_total = 0

    def observe(self, batch, trace_id: bytes | None) -> None:
        """An inference batch: its calls (method, error, duration), rows and trace ids."""
        calls = batch.calls
        rows = batch.rows
        if calls is not None and calls.rows:
            cols = calls.columns
            self._calls(cols, calls.rows)
            if "rows" in cols:
                rows = int(np.asarray(cols["rows"], dtype=np.int64).sum())
            if "trace_id" in cols:
                for trace in cols["trace_id"]:
                    if trace:
                        self.sample_trace(trace)
        if trace_id:
            self.sample_trace(trace_id.hex())
        self.rows_total += rows
        if rows:
            self.tel.add_rows(self.model, self.version, rows)

    def _calls(self, cols: dict, n: int) -> None:
        methods = np.asarray(cols["method"], dtype=object) if "method" in cols else np.full(n, "predict", object)
        methods = np.where(methods == None, "predict", methods)  # noqa: E711 (element-wise)
        errors = np.asarray(cols.get("error_type", [None] * n), dtype=object)
        keys = collections.Counter(zip(methods.tolist(), errors.tolist()))
        for (method, error), count in keys.items():
            self.tel.add_calls(self.model, self.version, str(method) or EMPTY,
                               None if error is None else (str(error) or EMPTY), count)
            self.window.add_calls(str(method) or EMPTY, None if error is None else (str(error) or EMPTY), count)
        if "duration_s" in cols:
            durations = np.asarray(cols["duration_s"], dtype=np.float64)
            for method in set(methods.tolist()):
                mask = methods == method
                self.tel.record_durations(self.model, self.version, str(method) or EMPTY, durations[mask])
                self.window.add_durations(str(method) or EMPTY, durations[mask])

    def sample_trace(self, trace_id: str) -> None:
        """Reservoir sampling: each trace id of the window has the same chance to be kept."""
        k = self.trace_samples
        if k <= 0:
            return
        self._trace_seen += 1
        if len(self.trace_ids) < k:
            self.trace_ids.append(trace_id)
        else:
            j = self._rng.randrange(self._trace_seen)
            if j < k:
                self.trace_ids[j] = trace_id

    def hook_counters(self, hook: dict) -> None:
        instance = hook.get("instance")
        dropped = hook.get("dropped_rows")
        if isinstance(instance, str) and isinstance(dropped, int):
            total = self.hook_drops.update(instance, dropped)
            if total is not None:
                self.tel.set_hook_dropped(self.model, self.version, total)

    def take_window(self) -> tuple[GoldenWindow, list[str]]:
        """The window's calls and durations and its sampled trace ids; the next window starts empty."""
        out = (self.window, list(self.trace_ids))
        self.window = GoldenWindow()
        self.trace_ids, self._trace_seen = [], 0
        return out

    # ------------------------------------------------------------------ checkpoint
    def to_state(self) -> dict[str, Any]:
        return {"hook_dropped": dict(self.hook_drops.live), "hook_dropped_retired": self.hook_drops.retired,
                "rows_total": self.rows_total, "batches_total": self.batches_total}

    def restore(self, entry: dict[str, Any]) -> None:
        self.hook_drops = HookDrops({str(k): int(v) for k, v in (entry.get("hook_dropped") or {}).items()},
                                    int(entry.get("hook_dropped_retired", 0)))
        self.rows_total = int(entry.get("rows_total", 0))
        self.batches_total = int(entry.get("batches_total", 0))
