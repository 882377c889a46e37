"""Turning what users and the wire hand us into named 1-D columns (internal).

Accepted tables: a pandas-like DataFrame (anything with ``.columns`` and
``__getitem__``), a 2-D array (columns named ``x0, x1, ...``, as the hook names
unnamed inputs) or a mapping name -> 1-D array/list (what ``driftcar.wire``
decodes). Pure functions; no pandas import.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import sys
from collections import Counter
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["as_columns", "to_float", "is_categorical", "is_missing", "label", "count_labels", "MISSING", "Encoded"]

MISSING = object()  # marker returned by label() for None / NaN
_NA_TYPES = ("NAType", "NaTType")  # pandas.NA / NaT, recognised without importing pandas
#: object columns at least this long are coded by object identity first (see identity_codes);
#: below it one dict lookup per value costs about as much as that path's setup
IDENTITY_MIN = 2_048
#: distinct objects beyond which identity_codes gives up (its hash table grows as their square)
IDENTITY_MAX_OBJECTS = 256
_IDENTITY = sys.implementation.name == "cpython"  # an object array holds the objects' addresses (ids)
# odd 64-bit multipliers for the perfect hash of object addresses (tried in turn)
_MULTIPLIERS = tuple(np.uint64(m) for m in (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                                             0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53,
                                             0x94D049BB133111EB, 0xBF58476D1CE4E5B9))


def is_missing(value: Any) -> bool:
    """None, a float NaN, or pandas' NA / NaT."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in _NA_TYPES


def as_columns(X: Any, what: str = "X", names: Any = None) -> dict[str, Any]:
    """Named columns of ``X``; ValueError with a clear reason when it is not a table.

    ``names`` names the columns of a 2-D array (instead of ``x0, x1, ...``); tables that
    carry their own names refuse it rather than silently ignore it.
    """
    if names is not None and (isinstance(X, Mapping) or hasattr(X, "columns")):
        raise ValueError(f"{what}: feature_names only names the columns of an array; this table has its own names")
    if isinstance(X, Mapping):
        cols = {str(k): v for k, v in X.items()}
    elif hasattr(X, "columns") and hasattr(X, "__getitem__") and not isinstance(X, np.ndarray):
        cols = {}
        for name in X.columns:
            series = X[name]
            cols[str(name)] = _series_values(series)
    else:
        arr = np.asarray(X)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"{what} must be a DataFrame, a 2-D array or a mapping of columns; got shape {arr.shape}")
        cols = {name: arr[:, j] for j, name in enumerate(_array_names(names, arr.shape[1], what))}
    lengths = {name: len(v) if hasattr(v, "__len__") else -1 for name, v in cols.items()}
    bad = [n for n, ln in lengths.items() if ln < 0]
    if bad:
        raise ValueError(f"{what}: column {bad[0]!r} is not a sequence")
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{what}: columns have different lengths {sorted(set(lengths.values()))}")
    for name, v in cols.items():
        if isinstance(v, np.ndarray) and v.ndim != 1:
            raise ValueError(f"{what}: column {name!r} must be 1-D, got shape {v.shape}")
    return cols


def _array_names(names: Any, width: int, what: str) -> list[str]:
    if names is None:
        return [f"x{j}" for j in range(width)]
    out = [str(n) for n in names]
    if len(out) != width:
        raise ValueError(f"{what}: {len(out)} feature_names for {width} columns")
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: feature_names has duplicates")
    return out


def _series_values(series: Any) -> Any:
    dtype = getattr(series, "dtype", None)
    kind = getattr(dtype, "kind", "O")
    if kind in "iuf" and str(dtype)[:1].isupper():  # pandas nullable Int64/Float64
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    if kind in "iufb":
        return series.to_numpy()
    return list(series.to_numpy(dtype=object))


def is_categorical(values: Any) -> bool:
    """True for str/bool/object data; numbers (incl. None/NaN for missing) are numeric."""
    if isinstance(values, Encoded):
        return True
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "iuf":
            return False
        if values.dtype.kind != "O":
            return True
    for v in values:
        if is_missing(v):
            continue
        return isinstance(v, (str, bytes, bool, np.bool_)) or not isinstance(v, (int, float, np.number))
    return False  # all missing: numeric with no values


def to_float(values: Any) -> tuple[np.ndarray, int]:
    """Values as float64 (missing -> NaN) and the number of non-numeric values (also NaN)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iufb":
        return values.astype(np.float64, copy=False), 0
    try:
        return np.asarray(values, dtype=np.float64), 0
    except (TypeError, ValueError):
        pass
    out = np.empty(len(values), dtype=np.float64)
    invalid = 0
    for i, v in enumerate(values):
        if is_missing(v):
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            out[i] = np.nan
            invalid += 1
    return out, invalid


def label(value: Any) -> Any:
    """The category label of one value (str), or MISSING for None/NaN.

    Numbers are normalised so that 1, 1.0 and np.int64(1) share the label "1".
    """
    if isinstance(value, str):
        return value
    if value is None or type(value).__name__ in _NA_TYPES:
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if math.isnan(f):
            return MISSING
        return str(int(f)) if f.is_integer() else repr(f)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def count_labels(values: Any) -> Counter:
    """Counts per category label (see :func:`label`) of a 1-D column; MISSING counts None/NaN."""
    out: Counter = Counter()
    if isinstance(values, Encoded):
        items = zip(values.keys, values.counts().tolist())
    elif isinstance(values, np.ndarray) and values.dtype.kind != "O":
        uniq, cnt = np.unique(values, return_counts=True)
        items = zip(uniq.tolist(), cnt.tolist())
    else:
        try:
            items = Counter(values).items()
        except TypeError:  # unhashable values: count their text
            items = Counter(str(v) for v in values).items()
    for key, c in items:
        out[key if type(key) is str else label(key)] += int(c)
    return out


def identity_codes(values: Any, code_of: Callable[[Any], int], memo: list | None = None) -> np.ndarray | None:
    """Each value's code (int64) with ``code_of`` called once per distinct *object*, in the order
    the objects first appear; None when that path does not apply (then call ``code_of`` per value).

    Why: text columns usually repeat a few objects (numpy fancy indexing, pandas' CSV reader and
    categoricals share one object per distinct string), and one dict lookup per row costs ~50 ns
    against ~7 ns here (``benchmarks/bench_verdicts.py``, speed). An object array holds the objects'
    addresses (CPython's ``id``); they are read in place and mapped through a collision-free
    multiplicative hash of the distinct ones, checked against every row, so the codes are those
    ``code_of`` gives per value whenever it returns the same code for the same object. Columns of
    many distinct objects (e.g. strings decoded one by one) give up after the first 1,024 rows.
    ``memo``, a one-item list, carries the objects and their hash from call to call (batches that
    repeat the same objects skip building it); it holds references to those objects, so none of
    their addresses can be reused by another object while it is kept.
    """
    if not _IDENTITY or len(values) < IDENTITY_MIN:
        return None
    if not isinstance(values, np.ndarray):  # a list: copied only if its head repeats few objects
        if len(set(map(id, itertools.islice(values, 1_024)))) > IDENTITY_MAX_OBJECTS:
            return None
        values = np.fromiter(values, dtype=object, count=len(values))  # (not np.array: tuples stay objects)
    if values.dtype != object or values.ndim != 1 or values.itemsize != 8:  # (64-bit addresses only)
        return None
    values = np.ascontiguousarray(values)
    ids = np.frombuffer((ctypes.c_uint64 * len(values)).from_address(values.ctypes.data), dtype=np.uint64)
    out = _identity_grow(values, ids, code_of, memo[0]) if memo and memo[0] is not None else None
    if out is None:  # (without a memo, or the memo's objects plus this batch's are too many)
        out = _identity_grow(values, ids, code_of, None)
    if memo is not None:
        memo[:] = [None if out is None else out[1]]
    return None if out is None else out[0]


def _identity_grow(values: np.ndarray, ids: np.ndarray, code_of: Callable[[Any], int], state: tuple | None
                   ) -> tuple[np.ndarray, tuple] | None:
    """(codes, state) for :func:`identity_codes`, growing ``state`` = (objects, their addresses,
    their codes, hash table) by the objects the rows hold beyond it, 1,024 missed rows at a time."""
    objects, known, codes, table = state or ((), np.empty(0, np.uint64), np.empty(0, np.int64), None)
    todo = np.arange(min(len(ids), 1_024)) if table is None else None
    while True:
        if todo is not None:
            new, first = np.unique(ids[todo], return_index=True)
            keep = ~np.isin(new, known)
            if len(known) + int(keep.sum()) > IDENTITY_MAX_OBJECTS:
                return None
            first = np.sort(todo[first[keep]])  # first-seen order
            fresh = values[first].tolist()
            objects += tuple(fresh)
            codes = np.concatenate([codes, np.array([code_of(v) for v in fresh], dtype=np.int64)])
            known = np.concatenate([known, ids[first]])
            table = _perfect_hash(known, codes)
            if table is None:
                return None
        keys, lut, mult, shift = table
        slot = np.multiply(ids, mult)  # (in place from here: every row-sized temporary costs page faults)
        slot >>= shift
        slot = slot.view(np.intp)  # < 2^16
        found = keys.take(slot)
        miss = found != ids
        if not miss.any():
            return lut.take(slot, out=found.view(np.int64)), (objects, known, codes, table)
        todo = np.flatnonzero(miss)[:1_024]


def _perfect_hash(objects: np.ndarray, codes: np.ndarray) -> tuple | None:
    """(key table, code table, multiplier, shift) placing every address in its own slot of
    2^bits, bits about 2 log2(distinct) + 1 (collision-free for most multipliers); None if none is."""
    bits = min(16, max(8, 2 * len(objects).bit_length() + 1))
    shift = np.uint64(64 - bits)
    for mult in _MULTIPLIERS:
        slot = ((objects * mult) >> shift).astype(np.intp)
        if len(np.unique(slot)) == len(slot):
            keys = np.zeros(1 << bits, np.uint64)  # 0: no object has that address
            lut = np.zeros(1 << bits, np.int64)
            keys[slot] = objects
            lut[slot] = codes
            return keys, lut, mult, shift
    return None


class CodeTable(dict):
    """label -> code for one categorical column, looked up per value in C (``map(table.__getitem__,
    values)``, or a binary search over the sorted labels for fixed-width string arrays;
    ``benchmarks/bench_stats.py``, "Categorical counting"); values that are not str
    keys go through :func:`label` once and are remembered (up to ``cap`` distinct values, so
    high-cardinality traffic does not grow it without bound). Unknown labels get ``other``,
    None/NaN get -1."""

    def __init__(self, codes: Mapping[str, int], other: int, cap: int = 10_000):
        super().__init__(codes)
        self.other = other
        self.cap = cap
        keys = sorted(codes)  # for fixed-width string arrays: a vectorised binary search
        self._keys = np.array(keys, dtype=str) if keys else np.array([""])
        self._key_codes = np.array([codes[k] for k in keys] or [other], dtype=np.int64)
        self._identity: list = [None]  # identity_codes' memo: the objects of recent batches

    def __missing__(self, key: Any) -> int:
        lab = key if type(key) is str else label(key)
        code = -1 if lab is MISSING else dict.get(self, lab, self.other)
        if len(self) < self.cap and not (isinstance(key, float) and math.isnan(key)):
            try:
                self[key] = code
            except TypeError:  # unhashable: not remembered
                pass
        return code

    def codes(self, values: Any) -> np.ndarray:
        """The code of every value (int64)."""
        if isinstance(values, Encoded):  # one lookup per distinct value
            lut = np.fromiter(map(self.__getitem__, values.keys), dtype=np.int64, count=len(values.keys))
            return lut[values.codes] if len(lut) else np.empty(0, np.int64)
        if isinstance(values, np.ndarray) and values.dtype.kind not in "OUS":  # numbers: a C sort is faster
            uniq, inverse = np.unique(values, return_inverse=True)
            lut = np.array([self[u] for u in uniq.tolist()], dtype=np.int64)
            return lut[inverse.reshape(-1)] if len(lut) else np.empty(0, np.int64)
        if isinstance(values, np.ndarray) and values.dtype.kind == "U":
            idx = np.minimum(np.searchsorted(self._keys, values), len(self._keys) - 1)
            return np.where(self._keys[idx] == values, self._key_codes[idx], self.other)
        bytes_list = isinstance(values, np.ndarray) and values.dtype.kind != "O"
        if bytes_list:  # bytes: then C-level lookups (each a new object: no identity path)
            values = values.tolist()  # (an object array is iterated as is: 1.5x faster than a list copy)
        try:
            out = None if bytes_list else identity_codes(values, self.__getitem__, self._identity)
            if out is not None:
                return out
            return np.fromiter(map(self.__getitem__, values), dtype=np.int64, count=len(values))
        except TypeError:  # unhashable values: by their text
            return np.fromiter((self[str(v)] for v in values), dtype=np.int64, count=len(values))


class _Numbering(dict):
    """value -> the next code, assigned on first sight (``__missing__``: once per distinct value)."""

    def __missing__(self, key: Any) -> int:
        code = self[key] = len(self)
        return code


class Encoded:
    """A categorical column read once: ``codes`` (int64, one per row) into ``keys`` (the distinct
    raw values, first-seen order). Profiling reads a reference column several times (kind
    inference, category counts, the PCA's indicators, the calibration chunks' counts); encoding
    it once makes each later read an integer ``bincount`` or table lookup instead of a pass
    through Python objects (``benchmarks/bench_verdicts.py``, speed). Slicing keeps the keys."""

    __slots__ = ("codes", "keys", "_counts")

    def __init__(self, codes: np.ndarray, keys: list):
        self.codes = codes
        self.keys = keys
        self._counts: np.ndarray | None = None

    @classmethod
    def of(cls, values: Any) -> "Encoded":
        """Encode any 1-D column (unhashable values by their text)."""
        if isinstance(values, Encoded):
            return values
        if isinstance(values, np.ndarray) and values.dtype.kind in "US":
            return cls._of_text(values)
        if isinstance(values, np.ndarray) and len(values) and (
                values.dtype.kind in "ib" or values.dtype.kind == "u" and values.dtype.itemsize < 8):
            lo, hi = int(values.min()), int(values.max())
            if hi - lo <= max(len(values), 1024):  # small integer range: a counting pass, no sort
                present = np.flatnonzero(np.bincount(values.astype(np.int64) - lo))
                lut = np.zeros(hi - lo + 1, np.int64)
                lut[present] = np.arange(len(present))
                return cls(lut[values.astype(np.int64) - lo], (present + lo).astype(values.dtype).tolist())
        if isinstance(values, np.ndarray) and values.dtype.kind != "O":
            uniq, inverse = np.unique(values, return_inverse=True)
            return cls(inverse.reshape(-1).astype(np.int64, copy=False), uniq.tolist())
        table = _Numbering()
        try:
            codes = identity_codes(values, table.__getitem__)
            if codes is None:
                codes = np.fromiter(map(table.__getitem__, values), dtype=np.int64, count=len(values))
        except TypeError:
            table = _Numbering()
            codes = np.fromiter(map(table.__getitem__, map(str, values)), dtype=np.int64, count=len(values))
        return cls(codes, list(table))

    @classmethod
    def _of_text(cls, values: np.ndarray) -> "Encoded":
        """Fixed-width strings: keys found on a prefix, then a binary search per value (C), the
        keys grown from whatever the search missed (np.unique sorts strings: 5x slower)."""
        keys = np.unique(values[:1_000])
        while True:
            idx = np.minimum(np.searchsorted(keys, values), max(len(keys) - 1, 0))
            miss = keys[idx] != values if len(keys) else np.ones(len(values), dtype=bool)
            if not miss.any():
                return cls(idx.astype(np.int64, copy=False), keys.tolist())
            keys = np.union1d(keys, np.unique(values[miss][:100_000]))

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return Encoded(self.codes[index], self.keys)
        return self.keys[self.codes[index]]

    def __iter__(self):
        keys = np.empty(len(self.keys), dtype=object)
        for i, k in enumerate(self.keys):  # (not np.asarray: tuple keys would become a 2-D array)
            keys[i] = k
        return iter(keys[self.codes].tolist())

    def counts(self) -> np.ndarray:
        """Rows per key."""
        if self._counts is None:  # read by kind inference and by the category counts: counted once
            self._counts = np.bincount(self.codes, minlength=len(self.keys))
        return self._counts.copy()
