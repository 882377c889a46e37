"""The batch body codec, schema v2 (and v1, still decoded; spec: ``proto/BATCH.md``).

A batch body is one msgpack map. Numeric columns travel as raw little-endian
buffers so that the sidecar decodes them with ``np.frombuffer`` (zero-copy)
instead of walking a msgpack array value by value; strings travel as msgpack
arrays of str/nil or (v2) dictionary-encoded: the distinct values once and one
int32 code per row, so that a categorical column costs the sidecar a few str
objects instead of one per cell (unpacking and checking those was most of the
time it spent decoding a batch). The decoder trusts nothing: every size is checked against
:class:`~driftcar.wire.limits.Limits` before anything is allocated, msgpack
extension types are refused, and nothing is ever unpickled.

Thread safety: all functions are pure and may be called from any thread.
"""

from __future__ import annotations

import collections.abc
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence, Union

import msgpack
import numpy as np

from driftcar.wire.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "SCHEMA_VERSION",
    "VERSIONS",
    "KINDS",
    "ROLES",
    "CALL_COLUMNS",
    "BatchError",
    "Column",
    "Table",
    "Batch",
    "StrColumn",
    "encode_batch",
    "decode_batch",
]

SCHEMA_VERSION = 2
#: every schema version the decoder reads (the sidecar reads every one ever shipped)
VERSIONS = (1, 2)
KINDS = ("inference", "labels", "reference")
ROLES = ("feature", "prediction", "probability", "id", "label")

#: numeric wire type -> numpy dtype (always little-endian on the wire)
NUMERIC_TYPES: dict[str, np.dtype] = {
    "f8": np.dtype("<f8"),
    "f4": np.dtype("<f4"),
    "i8": np.dtype("<i8"),
    "i4": np.dtype("<i4"),
    "i2": np.dtype("<i2"),
    "i1": np.dtype("i1"),
    "u8": np.dtype("<u8"),
    "u4": np.dtype("<u4"),
    "u2": np.dtype("<u2"),
    "u1": np.dtype("u1"),
    "bool": np.dtype("?"),
}
TYPES = tuple(NUMERIC_TYPES) + ("str",)

#: the per-call table: name -> wire type. Every call is one model invocation.
CALL_COLUMNS: dict[str, str] = {
    "method": "str",  # predict, predict_proba, learn_one, __call__, ...
    "start_ns": "i8",  # unix epoch nanoseconds
    "duration_s": "f8",  # wall time of the call in seconds
    "rows": "i8",  # input rows the model processed
    "captured": "i8",  # rows of this call present in the columns (sampling)
    "error_type": "str",  # exception class name, nil on success
    "trace_id": "str",  # 32 lowercase hex chars of the active span, or nil
}

ColumnData = Union[np.ndarray, list, "StrColumn"]


class StrColumn:
    """A str column decoded from v2's dictionary form: a read-only sequence of str/None (what every
    reader sees: ``len``, indexing, iteration, ``==`` with a list, ``np.asarray``), held as that
    dictionary: ``keys``, the distinct values then None, and ``codes``, one index into ``keys`` per
    row (int32, none negative).

    Why keep the dictionary: a reader that counts categories (the sidecar's sketches) then looks up
    each distinct value once instead of every row; hashing the rows' objects was ~60 % of the
    sidecar's CPU per batch of 20 numeric + 5 str columns (``benchmarks/bench_sidecar.py``).
    Why the rows are made only when first read (and then kept): making them (``take`` + ``tolist``,
    ~9 µs a 1,000-row column) was ~30 % of decoding such a batch, and was done again by the sidecar
    when the gRPC front handed the batch over, while the sidecar's hot path reads the dictionary only.
    Not a ``list`` any more for that reason (a list's storage is read directly by C code): code that
    needs one calls :meth:`tolist`.
    """

    __slots__ = ("keys", "codes", "_rows")

    def __init__(self, keys: list, codes: np.ndarray):
        self.keys = keys
        self.codes = codes
        self._rows: list | None = None

    def _values(self) -> list:
        """The rows (made once, kept; never handed out: :meth:`tolist` copies)."""
        rows = self._rows
        if rows is None:
            table = np.empty(len(self.keys), dtype=object)
            table[:] = self.keys
            rows = self._rows = table.take(self.codes).tolist()
        return rows

    def tolist(self) -> list:
        """The rows as a new list of str/None."""
        return list(self._values())

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index):
        if isinstance(index, slice):  # a slice keeps the dictionary (codes: a view)
            return StrColumn(self.keys, self.codes[index])
        return self.keys[self.codes[operator.index(index)]]

    def __iter__(self):
        return iter(self._values())

    def __reversed__(self):
        return reversed(self._values())

    def __contains__(self, value) -> bool:
        return value in self._values()

    def index(self, value, *args) -> int:
        return self._values().index(value, *args)

    def count(self, value) -> int:
        return self._values().count(value)

    def __eq__(self, other):
        if isinstance(other, StrColumn):
            other = other._values()
        elif not isinstance(other, list):
            return NotImplemented
        return self._values() == other

    __hash__ = None  # (as a list's)

    def __repr__(self) -> str:
        return f"StrColumn({self._values()!r})"

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if copy is False:
            raise ValueError("a StrColumn cannot be viewed as an array without a copy")
        if dtype is not None and np.dtype(dtype) == object:  # the common case: from the keys, no rows made
            table = np.empty(len(self.keys), dtype=object)
            table[:] = self.keys
            return table.take(self.codes)
        return np.asarray(self._values(), dtype=dtype)  # exactly what the list gives (e.g. '<U' without dtype)

    @classmethod
    def concat(cls, parts: Sequence["StrColumn"]) -> "StrColumn":
        """The parts one after another (their dictionaries side by side: a key may repeat)."""
        keys: list = []
        codes = []
        for part in parts:
            codes.append(part.codes + len(keys) if keys else part.codes)
            keys.extend(part.keys)
        return cls(keys, np.concatenate(codes) if codes else np.empty(0, np.int32))

    def __reduce__(self):
        # Pickled as its dictionary alone: pickling each row's str cost ~45 µs per 1,000 rows against
        # ~2 µs (the sidecar's gRPC front process hands decoded batches over this way).
        return (_str_column, (self.keys, self.codes))


collections.abc.Sequence.register(StrColumn)


def _codes_below(codes: np.ndarray, n: int) -> bool:
    """Every code in 0..n-1 (``codes`` not empty). Why not ``min`` and ``max``: int32 codes read as
    unsigned, where a negative one is larger than any valid one, take one pass and no wrapper (~1.6
    against ~5.5 µs a 1,000-row column, ``timeit``; 5 str columns are decoded per request)."""
    if codes.dtype == np.int32:
        return int(np.maximum.reduce(codes.view(np.uint32))) < n
    return 0 <= codes.min() and codes.max() < n


def _str_column(keys: list, codes: np.ndarray) -> StrColumn:
    """A pickled :class:`StrColumn` back, its codes checked against its keys as the decoder checks them:
    a damaged hand-over fails here, where it is read, not in whatever reads the rows later."""
    if type(keys) is not list or not isinstance(codes, np.ndarray) or codes.ndim != 1 or codes.dtype.kind not in "iu":
        raise ValueError("a str column needs a list of keys and a 1-d integer array of codes")
    if len(codes) and not _codes_below(codes, len(keys)):
        raise ValueError(f"a str column's codes must be in 0..{len(keys) - 1}")
    return StrColumn(keys, codes)


class BatchError(ValueError):
    """A batch body that cannot be accepted; ``reason`` says exactly why.

    Always permanent: the same bytes will fail the same way, so receivers
    answer INVALID_ARGUMENT / HTTP 400 and never ask for a retry.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Column:
    """One column to encode. ``cls`` names the class of a probability column."""

    name: str
    role: str
    data: ColumnData
    cls: str | None = None


@dataclass
class Table:
    """Decoded columnar table: equal-length columns keyed by name."""

    rows: int
    columns: dict[str, ColumnData]
    types: dict[str, str]


@dataclass
class Batch:
    """A decoded batch. Numeric columns are read-only views of the body."""

    kind: str
    rows: int
    columns: dict[str, ColumnData]
    roles: dict[str, str]
    types: dict[str, str]
    classes: dict[str, str] = field(default_factory=dict)
    calls: Table | None = None
    hook: dict[str, int | str] = field(default_factory=dict)
    version: int = SCHEMA_VERSION

    def names(self, role: str) -> list[str]:
        """Column names with ``role``, in body order."""
        return [n for n, r in self.roles.items() if r == role]


# --------------------------------------------------------------------------- encode


def _wire_type(data: ColumnData) -> str:
    if isinstance(data, np.ndarray) and data.dtype.kind in "fiub":
        if data.dtype.kind == "b":
            return "bool"
        code = f"{data.dtype.kind}{data.dtype.itemsize}"
        if code not in NUMERIC_TYPES:
            raise BatchError(f"unsupported numeric dtype {data.dtype}")
        return code
    return "str"


_STR_OR_NIL = {str, type(None)}


def _str_values(data: ColumnData) -> list:
    """The values as str or None (NaN is missing, anything else its ``str``)."""
    if type(data) is StrColumn:  # (a decoded column encoded again: already str or None)
        return data.tolist()
    if type(data) is list and data:
        first = data[0]
        # one str or None throughout (the calls table's method, error and trace id columns): list.count
        # compares by identity first, ~20x cheaper than the type set below (CPU time, 250 values); with
        # the rows column of a block of 1-row calls left unconverted (records.Sealed.thaw), the worker's
        # conversion and encoding of 1-row calls went 5.68 k -> 4.72 k instructions per row (callgrind,
        # export excluded).
        # Equal values are str or None themselves unless an object claims equality with one, which no
        # column driftcar builds holds
        if (first is None or type(first) is str) and data.count(first) == len(data):
            return data
        if set(map(type, data)) <= _STR_OR_NIL:
            return data  # already wire values: one C-level pass instead of a Python loop over every row
    out: list[str | None] = []
    for v in data:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        else:
            out.append(v if isinstance(v, str) else str(v))
    return out


def _dictionary(values: list) -> dict | None:
    """v2's dictionary form of a str column when it is smaller (at most one distinct value per two
    rows), else None. Values in order of first appearance, so the bytes are deterministic."""
    if len(values) < 2:
        return None
    first = values[0]
    if values.count(first) == len(values):  # one value throughout: the calls table's usual columns,
        # without a dict lookup per row (~0.3 k instructions per row and column less, measured)
        return {"values": [] if first is None else [first],
                "codes": np.full(len(values), -1 if first is None else 0, dtype="<i4").tobytes()}
    distinct = dict.fromkeys(values)
    distinct.pop(None, None)
    if len(distinct) * 2 > len(values):
        return None
    lut = {v: i for i, v in enumerate(distinct)}
    lut[None] = -1
    codes = np.fromiter(map(lut.__getitem__, values), dtype="<i4", count=len(values))
    return {"values": list(distinct), "codes": codes.tobytes()}


def _encode_data(data: ColumnData, wire_type: str, version: int = SCHEMA_VERSION) -> bytes | list | dict:
    if wire_type == "str":
        values = _str_values(data)
        return (_dictionary(values) if version >= 2 else None) or values
    arr = np.ascontiguousarray(data, dtype=NUMERIC_TYPES[wire_type])
    if arr.ndim != 1:
        raise BatchError(f"columns must be 1-D, got shape {arr.shape}")
    # msgpack packs a buffer as bin, the same bytes as ``tobytes()`` without that copy of the column
    return memoryview(arr).cast("B")


def _encode_columns(columns: Iterable[Column], rows: int, what: str, version: int) -> list[dict]:
    encoded = []
    seen: set[str] = set()
    for col in columns:
        if col.name in seen:
            raise BatchError(f"duplicate {what} column name {col.name!r}")
        seen.add(col.name)
        wire_type = _wire_type(col.data)
        if len(col.data) != rows:
            raise BatchError(f"{what} column {col.name!r} has {len(col.data)} values, expected {rows}")
        item: dict[str, Any] = {"name": col.name, "role": col.role, "type": wire_type}
        if col.cls is not None:
            item["class"] = col.cls
        item["data"] = _encode_data(col.data, wire_type, version)
        encoded.append(item)
    return encoded


def encode_batch(
    kind: str,
    columns: Sequence[Column],
    *,
    rows: int | None = None,
    calls: Mapping[str, ColumnData] | None = None,
    hook: Mapping[str, int | str] | None = None,
    version: int = SCHEMA_VERSION,
) -> bytes:
    """Encode one batch body; deterministic (same input, same bytes).

    ``version`` 1 writes every str column as an array (for a sidecar older than v2);
    2 dictionary-encodes the str columns where that is smaller.

    ``calls`` maps each :data:`CALL_COLUMNS` name to one value per call.
    ``hook`` carries the hook's cumulative counters (ints) and identity (str).
    Raises :class:`BatchError` when the input does not fit the contract.

    >>> import numpy as np
    >>> body = encode_batch("inference", [Column("x", "feature", np.array([1.5, np.nan]))])
    >>> b = decode_batch(body)
    >>> b.rows, b.columns["x"].tolist(), b.roles["x"]
    (2, [1.5, nan], 'feature')
    """
    if kind not in KINDS:
        raise BatchError(f"kind must be one of {KINDS}, got {kind!r}")
    if version not in VERSIONS:
        raise BatchError(f"version must be one of {VERSIONS}, got {version!r}")
    columns = list(columns)
    if rows is None:
        rows = len(columns[0].data) if columns else 0
    for col in columns:
        if col.role not in ROLES:
            raise BatchError(f"column {col.name!r}: role must be one of {ROLES}, got {col.role!r}")
    body: dict[str, Any] = {
        "v": version,
        "kind": kind,
        "rows": int(rows),
        "columns": _encode_columns(columns, int(rows), "data", version),
    }
    if calls is not None:
        unknown = set(calls) - set(CALL_COLUMNS)
        if unknown:
            raise BatchError(f"unknown call columns {sorted(unknown)}")
        n_calls = len(next(iter(calls.values()))) if calls else 0
        call_cols = []
        for name, wire_type in CALL_COLUMNS.items():
            if name not in calls:
                continue
            data = calls[name]
            if wire_type != "str":
                data = np.asarray(data, dtype=NUMERIC_TYPES[wire_type])
            call_cols.append(Column(name, "call", data))
        body["calls"] = {"rows": n_calls, "columns": _encode_columns(call_cols, n_calls, "call", version)}
    if hook:
        body["hook"] = {str(k): (v if isinstance(v, str) else int(v)) for k, v in hook.items()}
    return msgpack.packb(body, use_bin_type=True)


# --------------------------------------------------------------------------- decode


def _refuse_ext(code: int, data: bytes) -> Any:
    raise BatchError(f"msgpack extension types are not allowed (type {code})")


def _unpack(data: bytes, limits: Limits) -> Any:
    # Every msgpack container/bin/str length is capped *before* allocation.
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_refuse_ext,
            max_bin_len=limits.max_body_bytes,
            max_str_len=max(limits.max_string_length, limits.max_name_length) * 4,
            max_array_len=max(limits.max_rows, limits.max_calls, limits.max_columns),
            max_map_len=max(16, limits.max_meta_entries),
            max_ext_len=limits.max_body_bytes,
        )
    except BatchError:
        raise
    except msgpack.ExtraData:
        raise BatchError("trailing bytes after the msgpack body") from None
    except UnicodeDecodeError:
        raise BatchError("invalid UTF-8 in a msgpack string") from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise BatchError(f"body is not valid msgpack: {type(exc).__name__}: {exc}") from None


def _require(body: Mapping, key: str, kind: type | tuple, where: str) -> Any:
    if key not in body:
        raise BatchError(f"{where}: missing key {key!r}")
    value = body[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise BatchError(f"{where}.{key}: expected {name}, got {type(value).__name__}")
    return value


def _check_strings(raw: list, at: str, max_length: int) -> None:
    """Every value str (at most ``max_length`` characters) or nil, checked on the distinct values.

    Why a set: the per-value Python loop was ~80 % of decoding a batch with 5 str columns; hashing
    the values and checking each distinct one runs at C speed (the loop below only names the bad one).
    """
    try:
        distinct = set(raw)
    except TypeError:  # an unhashable value (array, map) is not a str either
        distinct = None
    if distinct is not None:
        distinct.discard(None)
        if all(isinstance(v, str) for v in distinct) and max(map(len, distinct), default=0) <= max_length:
            return
    for j, v in enumerate(raw):
        if v is None:
            continue
        if not isinstance(v, str):
            raise BatchError(f"{at}.data[{j}]: expected str or nil, got {type(v).__name__}")
        if len(v) > max_length:
            raise BatchError(f"{at}.data[{j}]: string longer than {max_length}")
    raise AssertionError("unreachable: the distinct values hold a bad one")  # pragma: no cover


def _decode_dictionary(raw: dict, rows: int, at: str, max_length: int) -> StrColumn:
    """A v2 dictionary-encoded str column, checked, as the :class:`StrColumn` of str/None it stands for.

    Its rows, when read, hold references to the few distinct str objects (no str per cell), and
    code -1, missing, takes the keys' last entry, None. Why the values are checked at C level (``map``)
    and the per-value loop only names a bad one: that loop's cost grows with the distinct values, this
    one's barely (with the benchmark's 8 values, ~2.8 against ~2.9 µs a column, ``timeit``, least of 7).
    """
    if not _DICTIONARY_KEYS.issuperset(raw):
        raise BatchError(f"{at}: unknown keys {sorted(map(str, set(raw) - _DICTIONARY_KEYS))}")
    values = raw.get("values")
    if type(values) is not list:
        values = _require(raw, "values", list, at)
    codes_raw = raw.get("codes")
    if type(codes_raw) is not bytes:
        codes_raw = _require(raw, "codes", bytes, at)
    if len(values) > rows:
        raise BatchError(f"{at}.values: {len(values)} values for {rows} rows")
    if not (_ONLY_STR.issuperset(map(type, values)) and max(map(len, values), default=0) <= max_length):
        for j, v in enumerate(values):
            if not isinstance(v, str):
                raise BatchError(f"{at}.values[{j}]: expected str, got {type(v).__name__}")
            if len(v) > max_length:
                raise BatchError(f"{at}.values[{j}]: string longer than {max_length}")
    if len(set(values)) != len(values):
        raise BatchError(f"{at}.values: values must be distinct")
    if len(codes_raw) != rows * 4:
        raise BatchError(f"{at}.codes: {len(codes_raw)} bytes, expected {rows} x 4 = {rows * 4}")
    codes = np.frombuffer(codes_raw, dtype=_I4)
    # (as _codes_below, inlined: the codes read as unsigned, a negative one is larger than any valid one)
    if rows and not int(np.maximum.reduce(codes.view(_U4))) < len(values):  # a missing value (-1), or a bad code
        if not (-1 <= codes.min() and codes.max() < len(values)):
            raise BatchError(f"{at}.codes: codes must be in -1..{len(values) - 1}")
        codes = np.where(codes < 0, np.int32(len(values)), codes)  # missing: the keys' last entry, None
    return StrColumn(values + [None], codes)


_DICTIONARY_KEYS = frozenset({"values", "codes"})
_ONLY_STR = frozenset({str})
_I4, _U4, _U8 = np.dtype("<i4"), np.dtype("<u4"), np.dtype("<u8")
#: the numeric wire types a column's fast path takes (bool's values are checked: the full path)
_PLAIN_NUMERIC = {t: d for t, d in NUMERIC_TYPES.items() if t != "bool"}


_COLUMN_KEYS = frozenset({"name", "role", "type", "data", "class"})


#: a decoded table's columns: (values, roles, types, classes), each keyed by column name in body order
Decoded = tuple[dict[str, ColumnData], dict[str, str], dict[str, str], dict[str, str]]


def _decode_columns(items: Any, rows: int, limits: Limits, where: str, allowed_roles: tuple, version: int) -> Decoded:
    """A table's columns, checked. Why a fast path: a column of exactly name, role, type and data, all
    as expected, numeric (its size checked) or str, skips the per-key checks and their helper calls, which
    were ~2 µs a column over ~32 columns a request; any other column takes :func:`_checked_column`, every
    check in order, so a bad column fails with the same message either way. ``decode_batch`` of the
    benchmark's requests (20 f8 + 5 str columns, a calls table): ~113 -> ~96 µs each, the two codecs
    alternating in one process (least of 60 passes of 48 requests, ``thread_time``)."""
    if not isinstance(items, list):
        raise BatchError(f"{where}.columns: expected array, got {type(items).__name__}")
    if len(items) > limits.max_columns:
        raise BatchError(f"{where}.columns: {len(items)} columns exceed the limit of {limits.max_columns}")
    columns: dict[str, ColumnData] = {}
    roles: dict[str, str] = {}
    types: dict[str, str] = {}
    classes: dict[str, str] = {}
    max_name, numeric = limits.max_name_length, _PLAIN_NUMERIC
    for i, item in enumerate(items):
        if type(item) is dict and len(item) == 4:
            name, role, wire_type, raw = item.get("name"), item.get("role"), item.get("type"), item.get("data")
            if (type(name) is str and type(role) is str and type(wire_type) is str and raw is not None
                    and 0 < len(name) <= max_name and name not in columns and role in allowed_roles):
                dtype = numeric.get(wire_type)
                if dtype is not None and type(raw) is bytes and len(raw) == rows * dtype.itemsize:
                    columns[name], roles[name], types[name] = np.frombuffer(raw, dtype), role, wire_type
                    continue
                if wire_type == "str":
                    data = _column_data(raw, wire_type, rows, f"{where}.columns[{i}]", limits, version)
                    columns[name], roles[name], types[name] = data, role, wire_type
                    continue
        name, role, wire_type, cls, data = _checked_column(item, f"{where}.columns[{i}]", rows, limits,
                                                           allowed_roles, version, columns)
        columns[name], roles[name], types[name] = data, role, wire_type
        if cls is not None:
            classes[name] = cls
    return columns, roles, types, classes


def _checked_column(item: Any, at: str, rows: int, limits: Limits, allowed_roles: tuple, version: int,
                    seen: Mapping) -> tuple:
    """One column, every check in order: (name, role, type, class or None, values)."""
    if not isinstance(item, dict):
        raise BatchError(f"{at}: expected map, got {type(item).__name__}")
    if not _COLUMN_KEYS.issuperset(item):
        raise BatchError(f"{at}: unknown keys {sorted(map(str, set(item) - _COLUMN_KEYS))}")
    name = _require(item, "name", str, at)
    if not name or len(name) > limits.max_name_length:
        raise BatchError(f"{at}.name: length {len(name)} outside 1..{limits.max_name_length}")
    if name in seen:
        raise BatchError(f"{at}.name: duplicate column name {name!r}")
    role = _require(item, "role", str, at)
    if role not in allowed_roles:
        raise BatchError(f"{at}.role: {role!r} is not one of {allowed_roles}")
    wire_type = _require(item, "type", str, at)
    if wire_type not in TYPES:
        raise BatchError(f"{at}.type: {wire_type!r} is not one of {TYPES}")
    cls = None
    if "class" in item:
        cls = _require(item, "class", str, at)
        if len(cls) > limits.max_name_length:
            raise BatchError(f"{at}.class: longer than {limits.max_name_length} characters")
    if "data" not in item:
        raise BatchError(f"{at}: missing key 'data'")
    return name, role, wire_type, cls, _column_data(item["data"], wire_type, rows, at, limits, version)


def _column_data(raw: Any, wire_type: str, rows: int, at: str, limits: Limits, version: int) -> ColumnData:
    """One column's checked values: a read-only view of the body (numeric), a list of str/None (str, v1
    array) or a :class:`StrColumn` (str, v2 dictionary)."""
    if wire_type == "str" and version >= 2 and isinstance(raw, dict):
        return _decode_dictionary(raw, rows, f"{at}.data", limits.max_string_length)
    if wire_type == "str":
        if not isinstance(raw, list):
            need = "an array or a dictionary map" if version >= 2 else "an array"
            raise BatchError(f"{at}.data: type str needs {need}, got {type(raw).__name__}")
        if len(raw) != rows:
            raise BatchError(f"{at}.data: {len(raw)} values, expected {rows}")
        _check_strings(raw, at, limits.max_string_length)
        return raw
    if not isinstance(raw, bytes):
        raise BatchError(f"{at}.data: type {wire_type} needs bin, got {type(raw).__name__}")
    dtype = NUMERIC_TYPES[wire_type]
    if len(raw) != rows * dtype.itemsize:
        raise BatchError(f"{at}.data: {len(raw)} bytes, expected {rows} x {dtype.itemsize} = {rows * dtype.itemsize}")
    data = np.frombuffer(raw, dtype=dtype)
    if wire_type == "bool" and data.size and np.frombuffer(raw, dtype="u1").max() > 1:
        raise BatchError(f"{at}.data: bool values must be 0 or 1")
    return data


def decode_batch(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Batch:
    """Decode and validate one batch body.

    Raises :class:`BatchError` (and nothing else) for any input that is not
    a valid v1 or v2 body within ``limits``; the message says where and why.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BatchError(f"body must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise BatchError("empty body")
    if len(data) > limits.max_body_bytes:
        raise BatchError(f"body of {len(data)} bytes exceeds the limit of {limits.max_body_bytes}")
    body = _unpack(bytes(data), limits)
    if not isinstance(body, dict):
        raise BatchError(f"body: expected a msgpack map, got {type(body).__name__}")
    version = _require(body, "v", int, "body")
    if version not in VERSIONS:
        known = ", ".join(map(str, VERSIONS))
        raise BatchError(f"body.v: unknown schema version {version} (this decoder reads {known})")
    extra = set(body) - {"v", "kind", "rows", "columns", "calls", "hook"}
    if extra:
        raise BatchError(f"body: unknown keys {sorted(map(str, extra))}")
    kind = _require(body, "kind", str, "body")
    if kind not in KINDS:
        raise BatchError(f"body.kind: {kind!r} is not one of {KINDS}")
    rows = _require(body, "rows", int, "body")
    if not 0 <= rows <= limits.max_rows:
        raise BatchError(f"body.rows: {rows} outside 0..{limits.max_rows}")
    columns, roles, types, classes = _decode_columns(body.get("columns"), rows, limits, "body", ROLES, version)
    batch = Batch(kind=kind, rows=rows, columns=columns, roles=roles, types=types, classes=classes, version=version)
    if "calls" in body:
        batch.calls = _decode_calls(body["calls"], limits, version)
    if "hook" in body:
        batch.hook = _decode_hook(body["hook"], limits)
    return batch


def _decode_calls(calls: Any, limits: Limits, version: int) -> Table:
    """``body.calls``: one row per model call, only the known call columns in their wire types."""
    if not isinstance(calls, dict):
        raise BatchError(f"body.calls: expected map, got {type(calls).__name__}")
    n_calls = _require(calls, "rows", int, "body.calls")
    if not 0 <= n_calls <= limits.max_calls:
        raise BatchError(f"body.calls.rows: {n_calls} outside 0..{limits.max_calls}")
    columns, _, types, _ = _decode_columns(calls.get("columns"), n_calls, limits, "body.calls", ("call",), version)
    for name, wire_type in types.items():
        expected = CALL_COLUMNS.get(name)
        if expected is None:
            raise BatchError(f"body.calls: unknown call column {name!r}")
        if expected != wire_type:
            raise BatchError(f"body.calls.{name}: type {wire_type!r}, expected {expected!r}")
    # per-call row counts feed counters: a negative or overflowing value would corrupt the
    # totals downstream (their sum wrapped to -2^63 in fuzzing), so it is refused here. Read as unsigned
    # (i8, checked above), a negative one is larger than any valid one: one reduce, not min and max
    # (``_decode_calls`` of one call: ~11.5 -> ~8 µs, ``timeit``, least of 7)
    for name in ("rows", "captured"):
        values = columns.get(name)
        if values is not None and len(values) and not int(np.maximum.reduce(values.view(_U8))) <= limits.max_rows:
            raise BatchError(f"body.calls.{name}: values must be in 0..{limits.max_rows}")
    return Table(rows=n_calls, columns=columns, types=types)


def _decode_hook(hook: Any, limits: Limits) -> dict:
    """``body.hook``: the hook's counters and identity, short keys to ints or strings."""
    if not isinstance(hook, dict):
        raise BatchError(f"body.hook: expected map, got {type(hook).__name__}")
    if len(hook) > limits.max_meta_entries:
        raise BatchError(f"body.hook: more than {limits.max_meta_entries} entries")
    for k, v in hook.items():
        if not isinstance(k, str) or len(k) > limits.max_name_length:
            raise BatchError("body.hook: keys must be short strings")
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise BatchError(f"body.hook.{k}: expected int or str, got {type(v).__name__}")
        if isinstance(v, int) and not 0 <= v < 2**63:
            raise BatchError(f"body.hook.{k}: counter {v} outside 0..2^63-1")
    return dict(hook)
