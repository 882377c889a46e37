"""Merge many small captured items into one before conversion (throughput on the shipper's thread).

A model server typically captures one row per call. Converting each item on its
own (20 tiny arrays per 1-row item) costs far more than the data is worth, so
:func:`plan` gives each item a cheap structural key (input layout, output layout,
id/label layout, method) and its row count, and :func:`combine` concatenates the
raw values of items with the same key into one synthetic :class:`Captured`
(``np.concatenate``, ``pd.concat``, list extension), converted once.

Only structure is compared here, never values; anything whose layout is not
recognised gets key None and is converted on its own. Keys carry row counts
per piece so an item whose pieces disagree in length is never merged (it is
converted alone, and dropped there).
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import numpy as np

from driftcar.hook.records import Captured
from driftcar.hook.specs import OUTPUT_METHODS, PROBA_METHODS

__all__ = ["plan", "combine", "PROBA_METHODS", "OUTPUT_METHODS"]


_NONE = ("none",)
_ndarray = np.ndarray
_SCALARS = (str, bytes, bool, int, float, np.generic)


def _is_frame(v: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(v, pd.DataFrame)


def _input_plan(v: Any, names: tuple | None) -> tuple[tuple | None, int]:
    if v is None:
        return _NONE, -1
    if type(v) is _ndarray:
        if v.ndim == 2:
            return ("nd", v.dtype.str, v.shape[1], names), v.shape[0]
        return None, 0
    if isinstance(v, dict):
        return ("dicts",), 1
    if isinstance(v, list) and v and all(type(r) is dict for r in v):
        return ("dicts",), len(v)
    if _is_frame(v):
        try:
            columns = tuple(v.columns)
            hash(columns)
        except TypeError:
            return None, 0
        return ("df", columns), len(v)
    return None, 0


def _wants_output(item: Captured) -> bool:
    return item.kind == "reference" or item.method in OUTPUT_METHODS


def _output_plan(item: Captured) -> tuple[tuple | None, int]:
    v = item.outputs
    if v is None or not _wants_output(item):
        return _NONE, -1
    if item.method in PROBA_METHODS or (item.method == "__call__" and isinstance(v, dict)):
        if type(v) is _ndarray and v.ndim == 2 and v.dtype.kind in "fiub":
            return ("p2", v.shape[1], id(item.classes)), v.shape[0]
        if isinstance(v, dict):
            try:
                return ("pd", tuple(sorted(v, key=lambda c: (str(type(c)), str(c))))), 1
            except TypeError:
                return None, 0
        return None, 0
    if type(v) is _ndarray:
        if v.ndim == 1:
            return ("v1", v.dtype.str), v.shape[0]
        if v.ndim == 2:
            return ("v2", v.dtype.str, v.shape[1]), v.shape[0]
        return None, 0
    if isinstance(v, _SCALARS):
        return ("s", type(v).__name__), 1
    if type(v) is list:
        return ("l",), len(v)
    return None, 0


def _vector_plan(v: Any) -> tuple[tuple | None, int]:
    if v is None:
        return _NONE, -1
    if type(v) is _ndarray:
        if v.ndim == 1:
            return ("a", v.dtype.str), v.shape[0]
        return None, 0
    if type(v) is list:
        return ("l",), len(v)
    if isinstance(v, _SCALARS):
        return ("s", type(v).__name__), 1
    return None, 0


def plan(item: Captured) -> tuple[tuple | None, int]:
    """``(key, rows)``: items with equal keys may be combined; key None: convert alone.

    ``rows`` is the item's data rows (0 for an item that carries no data).
    """
    if item.kind == "labels":
        ki, ni = _vector_plan(item.ids)
        kl, nl = _vector_plan(item.labels)
        if ki is None or kl is None or ki is _NONE or kl is _NONE or ni != nl:
            return None, 0
        return ("labels", item.method, ki, kl), ni
    if item.kind not in ("inference", "reference"):
        return None, 0
    x, y = item.inputs, item.outputs
    if x is None and y is None:
        return None, 0  # no data (unsampled, failed or call-only): nothing to combine
    if (  # the common case, kept short: a numpy predict without ids or labels
        type(x) is _ndarray and type(y) is _ndarray and x.ndim == 2 and y.ndim == 1
        and item.method == "predict" and item.ids is None and item.labels is None
    ):
        n = x.shape[0]
        if y.shape[0] != n:
            return None, 0
        return (item.kind, "predict", ("nd", x.dtype.str, x.shape[1], item.feature_names), ("v1", y.dtype.str),
                _NONE, _NONE), n
    parts = (_input_plan(x, item.feature_names), _output_plan(item), _vector_plan(item.ids), _vector_plan(item.labels))
    rows = -1
    for key, n in parts:
        if key is None:
            return None, 0
        if key is not _NONE:
            if rows >= 0 and n != rows:
                return None, 0
            rows = n
    if rows < 0:
        return None, 0
    return (item.kind, item.method, parts[0][0], parts[1][0], parts[2][0], parts[3][0]), rows


def _concat_arrays(values: list) -> np.ndarray:
    return values[0] if len(values) == 1 else np.concatenate(values, axis=0)


def _concat_rows(key: tuple, values: list) -> Any:
    kind = key[0]
    if kind == "none":
        return None
    if kind in ("nd", "v1", "v2", "a", "p2"):
        return _concat_arrays(values)
    if kind == "df":
        if len(values) == 1:
            return values[0]
        pd = sys.modules["pandas"]
        if _concat_takes_copy():
            return pd.concat(values, ignore_index=True, copy=False)
        return pd.concat(values, ignore_index=True)
    if kind == "dicts":
        out: list = []
        for v in values:
            if isinstance(v, dict):
                out.append(v)
            else:
                out.extend(v)
        return out
    if kind == "s":
        return list(values)
    if kind == "l":
        out = []
        for v in values:
            out.extend(v)
        return out
    if kind == "pd":  # river probabilities: one dict per row -> (rows, classes) matrix
        classes = key[1]
        return np.array(
            [[np.nan if d[c] is None else float(d[c]) for c in classes] for d in values], dtype="f8"
        )
    raise ValueError(f"unknown layout {kind!r}")


_CONCAT_COPY: list[bool] = []


def _concat_takes_copy() -> bool:
    # pandas >= 3 deprecates/ignores ``copy=`` (copy-on-write); older versions copy unless told not to
    if not _CONCAT_COPY:
        pd = sys.modules["pandas"]
        _CONCAT_COPY.append(int(pd.__version__.split(".", 1)[0]) < 3)
    return _CONCAT_COPY[0]


def combine(key: tuple, items: Sequence[Captured], rows: int) -> Captured:
    """One synthetic item holding the concatenated data of ``items`` (all planned to ``key``)."""
    first = items[0]
    _, _, in_key, out_key, id_key, label_key = key if key[0] != "labels" else (None, None, _NONE, _NONE, key[2], key[3])
    classes, method = first.classes, first.method
    if out_key[0] == "pd":  # dicts became a (rows, classes) matrix: convert it as probabilities
        classes, method = list(out_key[1]), "predict_proba"
    return Captured(
        kind=first.kind,
        method=method,
        start_ns=first.start_ns,
        duration_s=0.0,
        rows=rows,
        inputs=_concat_rows(in_key, [i.inputs for i in items]) if in_key is not _NONE else None,
        outputs=_concat_rows(out_key, [i.outputs for i in items]) if out_key is not _NONE else None,
        classes=classes,
        ids=_concat_rows(id_key, [i.ids for i in items]) if id_key is not _NONE else None,
        labels=_concat_rows(label_key, [i.labels for i in items]) if label_key is not _NONE else None,
        feature_names=first.feature_names,
    )
