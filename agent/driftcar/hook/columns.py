"""Captured items -> wire columns (runs on the shipper's thread, never on the model's).

The capture side keeps the caller's raw objects (numpy arrays, DataFrames, lists
of dicts, river dict rows, scalars); this module turns a list of them into
:class:`BatchPart`\\ s ready for :func:`driftcar.wire.encode_batch`, following the
column conventions of ``proto/BATCH.md``:

- features keep the caller's names (DataFrame columns, dict keys); unnamed 2-D
  input gets ``x0``, ``x1``, ...; numeric data keeps its dtype (float16 -> f4,
  nullable pandas numbers -> f8 with NaN for missing, datetimes -> f8 epoch
  seconds); object, string and categorical data travel as ``str`` (missing -> nil).
  A feature whose name is reserved (``prediction``, ``id``, ``label``,
  ``proba[...]``) travels as ``feature:<name>`` so names stay unique.
- the output of ``predict`` / ``predict_one`` / a plain callable is ``prediction``
  (``prediction[j]`` for multi-output); ``predict_proba`` (2-D) and
  ``predict_proba_one`` (dict class -> p) give one ``proba[<class>]`` column per
  class with ``cls`` set; ``transform`` and ``fit`` outputs are not captured.
- row ids are ``id`` (i8 when all integers, else str); labels are ``label``.
- a river ``learn_one(x, y)`` row is an inference row with features and
  ``label``; when it carries ids (``monitor.ids``) a ``labels`` row (``id``,
  ``label``) is emitted too, so the sidecar can join it to the earlier prediction.

Items with the same raw layout are first combined and converted once
(:mod:`driftcar.hook.grouping`: one conversion for ten thousand 1-row calls, not
ten thousand); the results are grouped by kind and by column signature (names,
roles, wire types, classes), in order of first appearance, and concatenated. Inference parts carry
the per-call table (:data:`driftcar.wire.CALL_COLUMNS`): one row per call,
including calls that raised, were not sampled or could not be converted, so
golden signals stay exact; ``captured`` maps data rows to calls.

Contract: :func:`to_columns` never raises. Whatever it cannot convert is dropped
and counted in :attr:`BatchPart.dropped_rows` (a part may then have ``rows == 0``
and no columns). Every part it returns encodes within ``limits`` (unique names,
name and string lengths, column count), except that one part may exceed
``max_rows`` when a single call did: splitting by size is the shipper's job.
Thread safety: pure function of its input; safe from any thread.
"""

from __future__ import annotations

import logging
import numbers
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from driftcar.hook.grouping import combine, plan
from driftcar.hook.specs import OUTPUT_METHODS, PROBA_METHODS
from driftcar.hook.records import Captured
from driftcar.wire.codec import CALL_COLUMNS, KINDS, Column
from driftcar.wire.limits import DEFAULT_LIMITS, Limits

__all__ = ["BatchPart", "to_columns", "dropped_rows", "PROBA_METHODS", "OUTPUT_METHODS"]

log = logging.getLogger("driftcar.hook")


_RESERVED = ("prediction", "id", "label")


@dataclass
class BatchPart:
    """One batch body's worth of columns, for ``encode_batch(kind, columns, rows=rows, calls=calls)``.

    kind:         "inference" | "labels" | "reference"
    rows:         data rows in every column
    columns:      the data columns (numeric as 1-D numpy arrays, strings as lists)
    calls:        per-call table for inference parts (name -> values), else None
    dropped_rows: rows of this part's items that could not be converted (count them as dropped)
    """

    kind: str
    rows: int
    columns: list[Column] = field(default_factory=list)
    calls: dict[str, Any] | None = None
    dropped_rows: int = 0


class _Unconvertible(Exception):
    """An item (or one of its pieces) cannot become wire columns."""


_logged: set[str] = set()


def _log_once(what: str, exc: BaseException) -> None:
    key = f"{what}:{type(exc).__name__}"
    if key not in _logged:
        _logged.add(key)
        log.warning("driftcar: dropped captured rows (%s): %s: %s (logged once)", what, type(exc).__name__, exc)


# --------------------------------------------------------------------------- cell helpers


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float):
        return v != v
    name = type(v).__name__
    if name in ("NAType", "NaTType"):
        return True
    if isinstance(v, np.floating):
        return bool(np.isnan(v))
    return False


def _is_number(v: Any) -> bool:
    return isinstance(v, (numbers.Real, np.number, np.bool_)) and not isinstance(v, (str, bytes))


def _to_str(v: Any, limits: Limits) -> str | None:
    if _is_missing(v):
        return None
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    elif not isinstance(v, str):
        v = str(v)
    if len(v) > limits.max_string_length:
        v = v[: limits.max_string_length]
    return v


def _str_list(values: Sequence, limits: Limits) -> list:
    types = set(map(type, values))
    if types <= _PLAIN_STR and all(len(v) <= limits.max_string_length for v in values if v is not None):
        return list(values)  # already str / None within the limit
    return [_to_str(v, limits) for v in values]


_PLAIN_STR = {str, type(None)}
#: exact types numpy turns into float64 exactly as ``float(v)`` would (None -> NaN)
_PLAIN_NUMBERS = {float, int, bool, type(None), np.float64, np.float32, np.int64, np.int32, np.bool_}


def _object_column(values: Sequence, limits: Limits) -> np.ndarray | list:
    """Values of unknown type: f8 when every present value is a number, else str."""
    types = set(map(type, values))
    if types <= _PLAIN_NUMBERS:  # (all missing, or empty: f8 too)
        try:
            return np.array(values, dtype="f8")
        except (OverflowError, ValueError, TypeError):
            pass  # e.g. an int beyond float range: take the careful path
    if types <= _PLAIN_STR:
        return _str_list(values, limits)
    numeric = True
    for v in values:
        if not _is_missing(v) and not _is_number(v):
            numeric = False
            break
    if numeric:
        return np.array([np.nan if _is_missing(v) else float(v) for v in values], dtype="f8")
    return _str_list(values, limits)


def _numeric_array(arr: np.ndarray, limits: Limits) -> np.ndarray | list:
    """1-D numpy array -> a column the wire can carry (copy-free when already fine)."""
    kind = arr.dtype.kind
    if kind == "f":
        if arr.dtype.itemsize == 2:
            return arr.astype("f4")
        if arr.dtype.itemsize > 8:
            return arr.astype("f8")
        return arr
    if kind in "iub":
        return arr
    if kind == "M":  # datetime64 -> epoch seconds, NaT -> NaN
        secs = arr.astype("datetime64[ns]").astype("i8").astype("f8") / 1e9
        secs[np.isnat(arr)] = np.nan
        return secs
    if kind == "m":  # timedelta64 -> seconds
        secs = arr.astype("timedelta64[ns]").astype("i8").astype("f8") / 1e9
        secs[np.isnat(arr)] = np.nan
        return secs
    if kind in "OUS":
        return _object_column(arr.tolist(), limits)
    raise _Unconvertible(f"unsupported dtype {arr.dtype}")


def _wire_type(data: np.ndarray | list) -> str:
    if isinstance(data, np.ndarray):
        if data.dtype.kind == "b":
            return "bool"
        return f"{data.dtype.kind}{data.dtype.itemsize}"
    return "str"


def _check_name(name: str, limits: Limits) -> str:
    if not name or len(name) > limits.max_name_length:
        raise _Unconvertible(f"column name of length {len(name)} outside 1..{limits.max_name_length}")
    return name


def _feature_name(name: Any, limits: Limits) -> str:
    text = name if isinstance(name, str) else str(name)
    if text in _RESERVED or text.startswith(("proba[", "prediction[")):
        text = f"feature:{text}"
    return _check_name(text, limits)


# --------------------------------------------------------------------------- features


def _pandas():
    return sys.modules.get("pandas")


def _is_dataframe(obj: Any) -> bool:
    pd = _pandas()
    return pd is not None and isinstance(obj, pd.DataFrame)


def _is_series(obj: Any) -> bool:
    pd = _pandas()
    return pd is not None and isinstance(obj, pd.Series)


def _series_column(s: Any, limits: Limits) -> np.ndarray | list:
    pd = _pandas()
    dtype = s.dtype
    if isinstance(dtype, np.dtype):
        return _numeric_array(s.to_numpy(), limits)
    if isinstance(dtype, pd.CategoricalDtype):
        return _str_list(s.astype(object).tolist(), limits)
    api = pd.api.types
    if api.is_bool_dtype(dtype):
        if s.isna().any():
            return s.to_numpy(dtype="f8", na_value=np.nan)
        return s.to_numpy(dtype="bool")
    if api.is_numeric_dtype(dtype):
        return s.to_numpy(dtype="f8", na_value=np.nan)
    if api.is_datetime64_any_dtype(dtype):
        values = s.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(dtype, "tz", None) else s
        return _numeric_array(values.to_numpy(dtype="datetime64[ns]"), limits)
    return _str_list(s.astype(object).tolist(), limits)


def _frame_features(df: Any, limits: Limits) -> list[Column]:
    cols = []
    for j, name in enumerate(df.columns):
        cols.append(Column(_feature_name(name, limits), "feature", _series_column(df.iloc[:, j], limits)))
    return cols


def _matrix_features(arr: np.ndarray, limits: Limits, names: Sequence[str] | None = None) -> list[Column]:
    if arr.ndim == 1:  # one row (a feature vector)
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise _Unconvertible(f"features must be at most 2-D, got shape {arr.shape}")
    if names is None or len(names) != arr.shape[1]:  # the capture side counted a mismatch
        labels = [f"x{j}" for j in range(arr.shape[1])]
    else:
        labels = [_feature_name(n, limits) for n in names]
    if arr.dtype.kind in "OUS":
        return [Column(labels[j], "feature", _object_column(arr[:, j].tolist(), limits)) for j in range(arr.shape[1])]
    # one transposing copy, its rows the columns: a strided copy per column cost more (~15 % of the
    # worker's instructions for a 1,000-row call, callgrind)
    by_column = np.ascontiguousarray(arr.T)
    return [Column(labels[j], "feature", _numeric_array(by_column[j], limits)) for j in range(arr.shape[1])]


def _dict_features(rows: Sequence[dict], limits: Limits) -> list[Column]:
    keys: dict[Any, None] = {}
    for r in rows:
        if not isinstance(r, dict):
            raise _Unconvertible(f"mixed rows: expected dict, got {type(r).__name__}")
        for k in r:
            keys.setdefault(k, None)
    return [
        Column(_feature_name(k, limits), "feature", _object_column([r.get(k) for r in rows], limits)) for k in keys
    ]


def _features(inputs: Any, limits: Limits, names: Sequence[str] | None = None) -> list[Column]:
    if isinstance(inputs, np.ndarray):
        return _matrix_features(inputs, limits, names)
    if _is_dataframe(inputs):
        return _frame_features(inputs, limits)
    if _is_series(inputs):
        name = inputs.name if inputs.name is not None else "x0"
        return [Column(_feature_name(name, limits), "feature", _series_column(inputs, limits))]
    if isinstance(inputs, dict):
        return _dict_features([inputs], limits)
    if hasattr(inputs, "toarray") and hasattr(inputs, "shape"):  # scipy.sparse
        if len(inputs.shape) != 2 or inputs.shape[1] > limits.max_columns:
            raise _Unconvertible(f"sparse input of shape {inputs.shape} is too wide")
        return _matrix_features(np.asarray(inputs.toarray()), limits)
    if isinstance(inputs, (list, tuple)):
        if inputs and all(isinstance(r, dict) for r in inputs):
            return _dict_features(inputs, limits)
        if not inputs:
            return []
        arr = np.asarray(inputs) if all(isinstance(r, (list, tuple, np.ndarray)) for r in inputs) else None
        if arr is None or arr.ndim != 2:
            arr = np.asarray(inputs, dtype=object).reshape(len(inputs), -1)
        return _matrix_features(arr, limits)
    if isinstance(inputs, (str, bytes)) or np.ndim(inputs) == 0:  # one scalar input
        return [Column("x0", "feature", _object_column([inputs], limits))]
    if hasattr(inputs, "__array__"):  # tensors and other array-likes
        return _features(np.asarray(inputs), limits)
    raise _Unconvertible(f"features of type {type(inputs).__name__}")


# --------------------------------------------------------------------------- outputs, ids, labels


def _vector(values: Any, limits: Limits) -> np.ndarray | list:
    """Scalar or 1-D values -> one column."""
    if _is_series(values):
        return _series_column(values, limits)
    if isinstance(values, np.ndarray):
        if values.ndim == 0:
            values = values.reshape(1)
        if values.ndim != 1:
            raise _Unconvertible(f"expected 1-D values, got shape {values.shape}")
        return _numeric_array(values, limits)
    if isinstance(values, (list, tuple)):
        return _typed_values(list(values), limits)
    if isinstance(values, (str, bytes)) or np.ndim(values) == 0:
        return _typed_values([values], limits)
    return _vector(np.asarray(values), limits)


def _typed_values(values: list, limits: Limits) -> np.ndarray | list:
    """Python values of one column: bool, i8, f8 (missing -> NaN) or str."""
    present = [v for v in values if not _is_missing(v)]
    if present and all(isinstance(v, (bool, np.bool_)) for v in present) and len(present) == len(values):
        return np.array(values, dtype="bool")
    if present and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in present):
        if len(present) == len(values) and all(-(2**63) <= int(v) < 2**63 for v in present):
            return np.array(values, dtype="i8")
    return _object_column(values, limits)


def _outputs(item: Captured, limits: Limits) -> list[Column]:
    out = item.outputs
    if item.method in PROBA_METHODS or (item.method == "__call__" and isinstance(out, dict)):
        return _proba_columns(out, item.classes, limits)
    if _is_dataframe(out):
        out = out.to_numpy()
    if isinstance(out, np.ndarray) and out.ndim == 2:
        if out.shape[1] == 1:
            return [Column("prediction", "prediction", _vector(out[:, 0], limits))]
        return [Column(f"prediction[{j}]", "prediction", _vector(out[:, j], limits)) for j in range(out.shape[1])]
    return [Column("prediction", "prediction", _vector(out, limits))]


def _proba_columns(out: Any, classes: Any, limits: Limits) -> list[Column]:
    if isinstance(out, dict):  # river predict_proba_one: {class: p}
        keys = sorted(out, key=lambda c: (str(type(c)), str(c)))
        return [
            _proba_column(c, np.array([np.nan if _is_missing(out[c]) else float(out[c])], dtype="f8"), limits)
            for c in keys
        ]
    if _is_dataframe(out):
        classes, out = list(out.columns), out.to_numpy()
    arr = np.asarray(out)
    if arr.ndim != 2 or arr.dtype.kind not in "fiub":
        raise _Unconvertible(f"probabilities must be a 2-D numeric array, got shape {arr.shape} {arr.dtype}")
    names = list(classes) if classes is not None and len(classes) == arr.shape[1] else list(range(arr.shape[1]))
    return [_proba_column(c, np.ascontiguousarray(arr[:, j], dtype="f8"), limits) for j, c in enumerate(names)]


def _proba_column(cls: Any, data: np.ndarray, limits: Limits) -> Column:
    label = _to_str(cls.item() if isinstance(cls, np.generic) else cls, limits) or "None"
    return Column(_check_name(f"proba[{label}]", limits), "probability", data, cls=_check_name(label, limits))


def _ids(ids: Any, limits: Limits) -> np.ndarray | list:
    data = _vector(ids, limits)
    if isinstance(data, np.ndarray) and data.dtype.kind in "iu" and data.dtype != np.dtype("u8"):
        return data.astype("i8")
    return data if isinstance(data, list) else _str_list(data.tolist(), limits)


# --------------------------------------------------------------------------- one item


def _convert(item: Captured, limits: Limits) -> list[Column]:
    """The data columns of one item (empty when it carries no rows). Raises _Unconvertible."""
    cols: list[Column] = []
    if item.kind == "labels":
        if item.ids is None or item.labels is None:
            raise _Unconvertible("a labels item needs ids and labels")
        cols.append(Column("id", "id", _ids(item.ids, limits)))
        cols.append(Column("label", "label", _vector(item.labels, limits)))
    elif item.kind in ("inference", "reference"):
        if item.inputs is None and item.outputs is None:
            return []
        if item.inputs is not None:
            cols.extend(_features(item.inputs, limits, item.feature_names))
        if item.outputs is not None and (item.kind == "reference" or item.method in OUTPUT_METHODS):
            cols.extend(_outputs(item, limits))
        if item.ids is not None:
            cols.append(Column("id", "id", _ids(item.ids, limits)))
        if item.labels is not None:
            cols.append(Column("label", "label", _vector(item.labels, limits)))
    else:
        raise _Unconvertible(f"unknown kind {item.kind!r}")
    if not cols:
        return cols
    n = len(cols[0].data)
    seen: set[str] = set()
    for c in cols:
        if len(c.data) != n:
            raise _Unconvertible(f"column {c.name!r} has {len(c.data)} values, {cols[0].name!r} has {n}")
        if c.name in seen:
            raise _Unconvertible(f"duplicate column name {c.name!r}")
        seen.add(c.name)
    if len(cols) > limits.max_columns:
        raise _Unconvertible(f"{len(cols)} columns exceed the limit of {limits.max_columns}")
    return cols


def _signature(cols: list[Column]) -> tuple:
    return tuple((c.name, c.role, _wire_type(c.data), c.cls) for c in cols)


def _concat(chunks: list) -> np.ndarray | list:
    if isinstance(chunks[0], np.ndarray):
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    out: list = []
    for chunk in chunks:
        out.extend(chunk)
    return out


def _call_row(item: Captured, captured: int) -> tuple:
    trace = item.trace_id
    if isinstance(trace, int):
        trace = format(trace, "032x") if trace else None
    return (item.method, int(item.start_ns), float(item.duration_s), int(item.rows), captured, item.error_type, trace)


class _Group:
    __slots__ = ("kind", "signature", "chunks", "rows", "calls", "dropped")

    def __init__(self, kind: str, signature: tuple | None):
        self.kind = kind
        self.signature = signature
        self.chunks: list[list[Column]] = []
        self.rows = 0
        self.calls: list[tuple] | None = [] if kind == "inference" else None  # (index, row or run table)
        self.dropped = 0

    def part(self) -> BatchPart:
        columns = []
        if self.chunks:
            for j, col in enumerate(self.chunks[0]):
                columns.append(Column(col.name, col.role, _concat([c[j].data for c in self.chunks]), cls=col.cls))
        calls = _calls_table(self.calls) if self.calls is not None else None
        return BatchPart(self.kind, self.rows, columns, calls, self.dropped)


def _calls_table(entries: list[tuple]) -> dict[str, Any]:
    """The calls table from ``(item index, call row or run table)`` entries.

    A run (``records.thaw_all``) brings its table as columns and keeps it: one
    concatenation per column per batch instead of a tuple per call (measured
    ~0.3 µs per 1-row call less on the shipper's thread).
    """
    with_data = [index for index, row in entries if _has_data(row)]
    if all(a <= b for a, b in zip(with_data, with_data[1:])):  # a merged run shares one index
        # data rows follow call order: put the calls without data back where they happened
        entries = sorted(entries, key=_first)
    blocks: list[dict] = []
    rows: list[tuple] = []
    for _, row in entries:
        if type(row) is dict:
            if rows:
                blocks.append(_rows_table(rows))
                rows = []
            blocks.append(row)
        else:
            rows.append(row)
    if rows or not blocks:
        blocks.append(_rows_table(rows))
    if len(blocks) == 1:
        return blocks[0]
    return {name: _concat([b[name] for b in blocks]) for name in CALL_COLUMNS}


def _first(entry: tuple) -> int:
    return entry[0]


def _has_data(row: Any) -> bool:
    if type(row) is dict:
        return bool(row["captured"].any())
    return bool(row[4])


def _rows_table(rows: list[tuple]) -> dict[str, Any]:
    values = list(zip(*rows)) if rows else [()] * len(CALL_COLUMNS)
    table = {}
    for name, column in zip(CALL_COLUMNS, values):
        wire = CALL_COLUMNS[name]
        table[name] = list(column) if wire == "str" else np.array(column, dtype=wire)
    return table


# --------------------------------------------------------------------------- public


def to_columns(items: Sequence[Captured], limits: Limits = DEFAULT_LIMITS) -> list[BatchPart]:
    """Group and convert captured items into batch parts (see the module docstring).

    Never raises; unconvertible rows are counted in ``BatchPart.dropped_rows``.

    >>> import numpy as np
    >>> from driftcar.hook.records import Captured
    >>> item = Captured("inference", "predict", 0, 0.001, 2,
    ...                 inputs=np.array([[1.0, 2.0], [3.0, 4.0]]), outputs=np.array([0, 1]))
    >>> [part] = to_columns([item])
    >>> part.kind, part.rows, [c.name for c in part.columns], part.calls["captured"].tolist()
    ('inference', 2, ['x0', 'x1', 'prediction'], [2])
    """
    try:
        return _to_columns(items, limits)
    except Exception as exc:  # defensive: a bug here must never kill the shipper's worker
        _log_once("to_columns", exc)
        dropped = sum(int(getattr(i, "rows", 0) or 0) for i in items if getattr(i, "inputs", None) is not None)
        return [BatchPart("inference", 0, [], None, dropped)] if dropped else []


def _to_columns(items: Sequence[Captured], limits: Limits) -> list[BatchPart]:
    # 1. units of work, in order of first appearance: items with the same structural key are
    #    combined and converted once (see grouping.py); the rest are converted one by one
    units: dict[Any, list] = {}
    for index, item in enumerate(items):
        key, rows = plan(item)
        if key is None:
            units[("single", index)] = [None, [(index, item, 0)]]
        else:
            unit = units.get(key)
            if unit is None:
                units[key] = unit = [key, []]
            unit[1].append((index, item, rows))
    # 2. convert: entries of (kind, signature, [(index, call item or None, captured rows)], columns, dropped)
    entries: list[tuple] = []
    for key, members in units.values():
        if key is not None and len(members) > 1:
            total = sum(n for _, _, n in members)
            try:
                cols = _convert(combine(key, [m[1] for m in members], total), limits)
                if not cols or len(cols[0].data) != total:
                    raise _Unconvertible(f"combined conversion gave {len(cols[0].data) if cols else 0} rows, expected {total}")
            except Exception as exc:  # convert them one by one: only the bad ones get dropped
                _log_once("combine", exc)
            else:
                _add_entry(entries, members[0][1], cols, [(i, it, n) for i, it, n in members], 0)
                continue
        for index, item, _ in members:
            try:
                cols = _convert(item, limits)
                dropped = 0
            except Exception as exc:  # anything odd in user data: drop and count, never raise
                _log_once(f"{item.kind}/{item.method}", exc)
                cols, dropped = [], _item_rows(item)
            _add_entry(entries, item, cols, [(index, item, len(cols[0].data) if cols else 0)], dropped)
    # 3. merge entries with the same signature; calls rows stay in data order
    groups: dict[tuple, _Group] = {}
    first_data: dict[str, tuple] = {}
    for kind, sig, _, _, _ in entries:
        if sig is not None and kind not in first_data:
            first_data[kind] = (kind, sig)
    for kind, sig, members, cols, dropped in entries:
        key = (kind, sig) if sig is not None else first_data.get(kind, (kind, None))
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(kind, key[1])
        if cols:
            group.chunks.append(cols)
            group.rows += len(cols[0].data)
        group.dropped += dropped
        if group.calls is not None:
            for index, item, n in members:
                if item is not None and item.kind == "inference":
                    if item.calls is not None:  # a run of calls merged by records.thaw_all
                        group.calls.append((index, item.calls))
                    else:
                        group.calls.append((index, _call_row(item, n)))
    return [g.part() for g in groups.values() if g.rows or g.calls or g.dropped]


def _add_entry(entries: list, item: Captured, cols: list[Column], members: list, dropped: int) -> None:
    kind = item.kind if item.kind in KINDS else "inference"
    entries.append((kind, _signature(cols) if cols else None, members, cols, dropped))
    if item.kind == "inference" and item.method == "learn_one" and cols and item.ids is not None:
        extra = [c for c in cols if c.role in ("id", "label")]
        if len(extra) == 2:  # learn_one's label, joinable by id: also a labels row
            entries.append(("labels", _signature(extra), [(i, None, n) for i, _, n in members], extra, 0))


def _item_rows(item: Captured) -> int:
    if item.inputs is None and item.outputs is None and item.labels is None and item.ids is None:
        return 0
    try:
        return max(int(item.rows), 0)
    except Exception:
        return 0


def dropped_rows(parts: Sequence[BatchPart]) -> int:
    """Total rows the conversion dropped (the shipper adds this to its drop counter)."""
    return sum(p.dropped_rows for p in parts)
