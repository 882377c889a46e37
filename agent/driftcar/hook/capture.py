"""Hot-path helpers: count rows, copy what the model saw and said, estimate its size.

These run on the model's thread inside every captured call, so they only copy
(the caller may reuse or mutate its buffers after the call returns) and never
convert: conversion to wire columns happens later on the shipper's thread
(:mod:`driftcar.hook.columns`). Plain numpy arrays take the fast path (one
``type`` check and ``ndarray.copy``). Any helper may raise on odd input; the
caller wraps them in ``try/except`` and counts the failure.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

__all__ = ["n_rows", "copy_value", "size_hint"]

_ndarray = np.ndarray


def _pandas_kind(obj: Any) -> str | None:
    pd = sys.modules.get("pandas")
    if pd is None:
        return None
    if isinstance(obj, pd.DataFrame):
        return "frame"
    if isinstance(obj, pd.Series):
        return "series"
    return None


def n_rows(x: Any) -> int:
    """Input rows of one call: 2-D -> first axis; dict (river row), scalar or 1-D vector -> 1."""
    if type(x) is _ndarray:
        return x.shape[0] if x.ndim >= 2 else 1
    if x is None:
        return 0
    if isinstance(x, dict):
        return 1
    if isinstance(x, (list, tuple)):
        return len(x)
    shape = getattr(x, "shape", None)
    if shape is not None:
        if len(shape) >= 2 or _pandas_kind(x) == "series":
            return int(shape[0])
        return 1
    return 1


_COW: list[bool] = []  # pandas copy-on-write, decided once


def _copy_pandas(obj: Any) -> Any:
    # With copy-on-write (always on in pandas >= 3) a shallow copy is a safe snapshot
    # and costs O(columns), not O(cells); older pandas needs a deep copy.
    if not _COW:
        pd = sys.modules["pandas"]
        _COW.append(int(pd.__version__.split(".", 1)[0]) >= 3 or pd.options.mode.copy_on_write is True)
    return obj.copy(deep=not _COW[0])


def copy_value(x: Any) -> Any:
    """A snapshot of ``x`` the caller cannot change afterwards (as far as cheaply possible).

    ndarray -> copy; DataFrame/Series -> copy (shallow under copy-on-write);
    list/tuple -> list (dict rows and list rows copied one level); dict -> dict;
    scalars and anything else -> as is.
    """
    if type(x) is _ndarray:
        return x.copy()
    if isinstance(x, dict):
        return dict(x)
    if isinstance(x, (list, tuple)):
        return [dict(r) if isinstance(r, dict) else (list(r) if isinstance(r, list) else r) for r in x]
    if isinstance(x, _ndarray):
        return np.array(x)
    if _pandas_kind(x) is not None:
        return _copy_pandas(x)
    if hasattr(x, "toarray") and hasattr(x, "copy"):  # scipy.sparse
        return x.copy()
    return x


def size_hint(x: Any, rows: int) -> int:
    """Rough bytes ``x`` holds, for the shipper's byte bound (cheap, not exact)."""
    if x is None:
        return 0
    nbytes = getattr(x, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) == 2:
        return int(shape[0]) * int(shape[1]) * 16
    if isinstance(x, dict):
        return 64 * len(x) + 64
    if isinstance(x, list):
        first = x[0] if x else None
        width = len(first) if isinstance(first, (dict, list, tuple)) else 1
        return 64 * width * len(x) + 64
    return 64 * max(rows, 1)
