"""Runs of queued inference batches of one layout, concatenated into one batch.

Why: a 1,000-row batch of 25 features costs the sketch ~25 numpy calls per feature
kind, most of it per-call overhead; concatenating the batches waiting in the queue and
counting them in one vectorised pass cut the worker's time per 1,000 rows by ~25 %
(8 batches, ``benchmarks/bench_sidecar.py``), which is what lets the worker keep up
with the receivers instead of the queue filling. Counts are sums, so they are exactly
those of applying the batches one by one (per-bin value sums differ by float rounding only).

Only batches that are interchangeable are merged: same model, version, kind
``inference``, column names/roles/types/classes, call-table columns, trace id and hook
instance (the hook's counters are cumulative: the last batch's are kept).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from driftcar.wire import StrColumn

__all__ = ["coalesce", "MAX_ROWS"]

#: a merged batch holds at most this many rows: bounds the copy and how long one numpy call on it
#: holds the GIL (the event loop waits for it), while 16 batches of 1,000 rows still merge
MAX_ROWS = 16_000


def _key(item) -> tuple | None:
    b = item.batch
    if b.kind != "inference" or not b.rows:
        return None
    calls = None if b.calls is None else tuple(b.calls.types.items())
    return (item.model, item.version, tuple(b.types.items()), tuple(b.roles.items()), tuple(b.classes.items()),
            calls, item.trace_id, b.hook.get("instance"))


def _concat(chunks: list):
    if all(isinstance(c, np.ndarray) for c in chunks):
        return np.concatenate(chunks)
    if all(isinstance(c, StrColumn) for c in chunks):  # keeps the dictionaries (the sketch counts by them)
        return StrColumn.concat(chunks)
    out: list = []
    for c in chunks:
        out.extend(c.tolist() if isinstance(c, np.ndarray) else c)
    return out


def _merge(run: list):
    first = run[0]
    if len(run) == 1:
        return first
    batches = [i.batch for i in run]
    columns = {n: _concat([b.columns[n] for b in batches]) for n in first.batch.columns}
    calls = first.batch.calls
    if calls is not None:
        calls = dataclasses.replace(calls, rows=sum(b.calls.rows for b in batches),
                                    columns={n: _concat([b.calls.columns[n] for b in batches]) for n in calls.columns})
    batch = dataclasses.replace(first.batch, rows=sum(b.rows for b in batches), columns=columns, calls=calls,
                                hook=run[-1].batch.hook)
    return dataclasses.replace(first, batch=batch, nbytes=sum(i.nbytes for i in run), batches=len(run))


def coalesce(items: list) -> list[tuple[object, int]]:
    """(item to apply, how many queued items it stands for), in queue order."""
    out: list[tuple[object, int]] = []
    run: list = []
    run_key = None
    rows = 0
    for item in items:
        key = _key(item)
        if run and (key is None or key != run_key or rows + item.batch.rows > MAX_ROWS):
            out.append((_merge(run), len(run)))
            run = []
        if key is None:
            out.append((item, 1))
            continue
        if not run:
            run_key, rows = key, 0
        run.append(item)
        rows += item.batch.rows
    if run:
        out.append((_merge(run), len(run)))
    return out
