"""What each column of a reference is, and why: numeric, categorical or excluded.

A guessed type that is wrong makes every later comparison meaningless (a numeric
``age`` profiled as 50 categories alarms on every window), so the guess is made
by stated rules and reported, never silently:

- no value at all -> excluded (*empty*);
- datetime values, or strings of which >= ``DATE_SHARE`` parse as dates -> excluded
  (*timestamp-like*: every window sees new times, so it would always drift);
- integers unique per row that form a sequence (max - min + 1 = rows), or strings
  unique per row (at least ``ID_MIN_ROWS`` of them) -> excluded (*id-like*);
- bools -> categorical; numbers -> numeric;
- strings of which >= ``NUMERIC_SHARE`` parse as numbers -> numeric, the strays
  (e.g. ``"unknown"``) counted as *invalid* (treated as missing) and reported with
  examples; other strings -> categorical.

The common spellings of "no value" (:data:`NA_VALUES`: ``""``, ``"n/a"``, ``"null"``,
...) are missing, not strays. ``keep`` overrides an exclusion; ``categorical``
forces a kind; ``exclude`` drops a column. Kinds are decided on the first chunk
(``--chunk-rows``, 100,000 rows by default); strays are counted in every chunk.

:func:`detectable_shift` says how small a reference is too small.

Thread safety: a :class:`KindInference` is fed by one thread; reports are immutable.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from statistics import NormalDist

import numpy as np

from driftcar.stats._columns import Encoded, is_missing

__all__ = [
    "ColumnKind",
    "InferenceReport",
    "KindInference",
    "detectable_shift",
    "NA_VALUES",
    "NUMERIC_SHARE",
    "DATE_SHARE",
    "ID_MIN_ROWS",
    "MIN_RELIABLE_ROWS",
]

#: spellings of "no value" in text data (CSV cells, object columns): missing, not invalid
NA_VALUES = frozenset({"", "na", "nan", "n/a", "null", "none", "-"})
#: a text column is numeric when at least this share of its non-missing values are numbers
NUMERIC_SHARE = 0.95
#: ... and timestamp-like when at least this share of its other values parse as dates
DATE_SHARE = 0.95
#: fewer distinct strings than this are not called id-like (tiny tables are often all distinct)
ID_MIN_ROWS = 20
#: a reference below this many rows is reported as too small: the default rule is tuned for windows
#: of 1,000 rows (``DriftConfig.large_sample``), and a smaller reference's own noise then dominates
MIN_RELIABLE_ROWS = 1_000
EXAMPLES = 5
_DATE_FORMATS = ("%d/%m/%Y", "%m/%d/%Y", "%Y/%m/%d", "%d.%m.%Y", "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S",
                 "%Y/%m/%d %H:%M:%S", "%d-%b-%Y", "%b %d %Y")
_DATE_SAMPLE = 200


@dataclass(frozen=True, slots=True)  # no per-column __dict__: one per feature name of a reference
class ColumnKind:
    """One column's inferred kind ('numeric' | 'categorical' | 'excluded') and why.

    ``invalid``: values that were not numbers in a numeric column (treated as missing),
    ``examples`` the first few distinct of them; ``kept``: an exclusion overridden by ``keep``.
    """

    name: str
    kind: str
    reason: str
    rows: int = 0
    missing: int = 0
    invalid: int = 0
    examples: tuple[str, ...] = ()
    note: str = ""
    kept: bool = False

    def line(self) -> str:
        """One line for people: ``age  numeric  ... (why)``."""
        text = f"{self.name:<24} {self.kind:<11} {self.reason}"
        if self.invalid:
            shown = ", ".join(repr(e) for e in self.examples)
            text += f"; {self.invalid:,} invalid value{'s' if self.invalid > 1 else ''} treated as missing (e.g. {shown})"
        return text + (f"; {self.note}" if self.note else "")

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "reason": self.reason, "rows": self.rows,
                "missing": self.missing, "invalid": self.invalid, "examples": list(self.examples),
                "note": self.note, "kept": self.kept}


@dataclass(frozen=True)
class InferenceReport:
    """Per column :class:`ColumnKind`, plus the reference's size and what it can detect."""

    columns: tuple[ColumnKind, ...]
    rows: int
    sensitivity: dict = field(default_factory=dict)
    decided_on: int = 0  # rows the kinds were decided on (the first chunk)
    unmatched: tuple[str, ...] = ()  # names given to keep / exclude / categorical that no column has

    @property
    def excluded(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "excluded"]

    @property
    def too_small(self) -> bool:
        return 0 < self.rows < MIN_RELIABLE_ROWS

    def warnings(self) -> list[str]:
        """What a person must know before trusting verdicts against this reference."""
        out = []
        for c in self.columns:
            if c.kind == "excluded" and c.note:
                out.append(f"column {c.name!r} excluded: {c.reason} ({c.note})")
            elif c.invalid:
                out.append(f"column {c.name!r}: {c.invalid:,} non-numeric value(s) treated as missing "
                           f"(e.g. {', '.join(repr(e) for e in c.examples)})")
        if self.unmatched:
            names = [c.name for c in self.columns]
            for u in self.unmatched:
                close = difflib.get_close_matches(u, names, n=3)
                out.append(f"no column {u!r} to keep, exclude or treat as categorical"
                           + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""))
        if self.too_small:
            out.append(f"reference has {self.rows:,} rows, fewer than {MIN_RELIABLE_ROWS:,}: {self.sensitivity_text()}")
        return out

    def sensitivity_text(self) -> str:
        s = self.sensitivity
        if not s:
            return "sensitivity unknown"
        return (f"with windows of {s['window']:,} rows it detects (alpha {s['alpha']:g}, power {s['power']:.0%}) "
                f"a mean shift of >= {s['mean_shift_sd']:.3g} sd, or a change of >= "
                f"{100 * s['share_change']:.3g} percentage points in a 50 % share")

    def to_dict(self) -> dict:
        return {"rows": self.rows, "columns": [c.to_dict() for c in self.columns], "sensitivity": dict(self.sensitivity),
                "decided_on": self.decided_on, "unmatched": list(self.unmatched)}

    @classmethod
    def from_dict(cls, d: Any) -> "InferenceReport":
        """Inverse of :meth:`to_dict`; ValueError on anything malformed."""
        if not isinstance(d, Mapping) or not isinstance(d.get("columns"), list):
            raise ValueError("inference: expected a map with a list of columns")
        cols = []
        for c in d["columns"]:
            if not isinstance(c, Mapping) or not isinstance(c.get("name"), str) or c.get("kind") not in (
                    "numeric", "categorical", "excluded"):
                raise ValueError("inference.columns: malformed entry")
            # interned: one object per distinct name (shared with the profile's features) and reason
            cols.append(ColumnKind(sys.intern(c["name"]), sys.intern(c["kind"]), sys.intern(str(c.get("reason", ""))),
                                   int(c.get("rows", 0)), int(c.get("missing", 0)), int(c.get("invalid", 0)),
                                   tuple(str(e) for e in c.get("examples", ())), sys.intern(str(c.get("note", ""))),
                                   bool(c.get("kept", False))))
        sens = d.get("sensitivity") or {}
        if not isinstance(sens, Mapping):
            raise ValueError("inference.sensitivity: expected a map")
        return cls(tuple(cols), int(d.get("rows", 0)), dict(sens), int(d.get("decided_on", 0)),
                   tuple(str(u) for u in d.get("unmatched", ())))


def detectable_shift(n_reference: int, n_window: int | None = None, alpha: float = 0.05,
                     power: float = 0.8) -> dict:
    """The smallest shifts a reference of ``n_reference`` rows lets a window detect.

    Two-sample z approximation: a mean shift is detected with probability ``power`` at
    two-sided level ``alpha`` when it is at least ``d = (z(1 - alpha/2) + z(power)) *
    sqrt(1/n + 1/m)`` standard deviations; a share p changes detectably by ``d *
    sqrt(p (1 - p))``, reported at p = 0.5 (the widest). ``m`` is the window size,
    by default ``max(n, 1000)`` (the window size the default decision rule switches at).
    Whatever the window, ``d`` never falls below ``(z(1 - alpha/2) + z(power)) / sqrt(n)``:
    the reference's own noise.

    >>> s = detectable_shift(265)
    >>> s["window"], round(s["mean_shift_sd"], 3), round(s["share_change"], 3)
    (1000, 0.194, 0.097)
    """
    if n_reference < 1:
        raise ValueError(f"n_reference must be >= 1, got {n_reference}")
    m = max(n_reference, 1_000) if n_window is None else n_window
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)  # stdlib: no scipy import here
    d = z * math.sqrt(1 / n_reference + 1 / m)
    return {"alpha": alpha, "power": power, "window": int(m), "mean_shift_sd": d, "share_change": d * 0.5,
            "floor_sd": z / math.sqrt(n_reference)}


class KindInference:
    """Decides each column's kind on the first chunk it sees, then converts every chunk.

    >>> inf = KindInference()
    >>> age = [str(a) for a in range(18, 68)] * 40 + ["unknown", "n/a"]
    >>> out = inf.apply({"age": age, "id": np.arange(2002), "when": ["2024-01-%02d" % (i % 28 + 1) for i in range(2002)]})
    >>> list(out), int(np.isnan(out["age"]).sum())
    (['age'], 2)
    >>> [(c.name, c.kind, c.invalid, c.missing) for c in inf.report().columns]
    [('age', 'numeric', 1, 1), ('id', 'excluded', 0, 0), ('when', 'excluded', 0, 0)]
    """

    def __init__(self, *, categorical: Iterable[str] = (), keep: Iterable[str] = (),
                 exclude: Iterable[str] = (), top_k: int = 50, text: bool = False):
        self.categorical = set(categorical)
        self.keep = set(keep)
        self.exclude = set(exclude)
        self.top_k = top_k
        self.text = text  # numbers came from text (CSV): say "parse as numbers", not the dtype
        self._kinds: dict[str, ColumnKind] | None = None
        self._invalid: dict[str, int] = {}
        self._examples: dict[str, list[str]] = {}
        self._missing: dict[str, int] = {}
        self._rows = 0
        self._decided_on = 0
        self._encoded: dict[str, Encoded] = {}  # categorical columns of the deciding chunk, read once

    @property
    def kinds(self) -> dict[str, str]:
        """name -> kind, once the first chunk was seen."""
        return {n: k.kind for n, k in (self._kinds or {}).items()}

    def apply(self, columns: Mapping[str, Any], count: bool = True) -> dict[str, Any]:
        """The columns to profile: excluded ones dropped, numeric ones as float64 (strays NaN).
        ``count=False`` for a second pass over the same data (nothing counted twice)."""
        if self._kinds is None:
            self._kinds = {name: self._decide(name, values) for name, values in columns.items()}
            self._decided_on = len(next(iter(columns.values()))) if columns else 0
        out = {}
        for name, values in columns.items():
            k = self._kinds.get(name)
            if k is None:
                out[name] = values  # not in the first chunk: the profile builder says so
            elif k.kind == "numeric":
                x, missing, bad = _numbers(values)
                if count:
                    self._count(name, missing, bad)
                out[name] = x
            elif k.kind == "categorical":
                out[name] = self._encoded.pop(name, values)
        if count and columns:
            self._rows += len(next(iter(columns.values())))
        return out

    def _count(self, name: str, missing: int, bad: list) -> None:
        self._missing[name] = self._missing.get(name, 0) + missing
        if bad:
            self._invalid[name] = self._invalid.get(name, 0) + sum(c for _, c in bad)
            seen = self._examples.setdefault(name, [])
            for v, _ in bad:
                if len(seen) >= EXAMPLES:
                    break
                if str(v) not in seen:
                    seen.append(str(v))

    def report(self, rows: int | None = None) -> InferenceReport:
        """What was inferred and counted; ``rows`` the profile's rows (default: rows seen)."""
        rows = self._rows if rows is None else rows
        cols = []
        for name, k in (self._kinds or {}).items():
            if k.kind == "numeric":
                k = ColumnKind(name, k.kind, k.reason, rows, self._missing.get(name, 0), self._invalid.get(name, 0),
                               tuple(self._examples.get(name, ())), k.note, k.kept)
            cols.append(k)
        named = self.keep | self.exclude | self.categorical
        unmatched = tuple(sorted(named - set(self._kinds or ()))) if self._kinds is not None else ()
        return InferenceReport(tuple(cols), rows, detectable_shift(rows) if rows else {}, self._decided_on, unmatched)

    # ------------------------------------------------------------------ the rules
    def _decide(self, name: str, values: Any) -> ColumnKind:
        if name in self.exclude:
            return ColumnKind(name, "excluded", "named in exclude")
        rows = len(values)
        if name in self.categorical:
            return ColumnKind(name, "categorical", "named categorical", rows)
        enc = None if isinstance(values, np.ndarray) and values.dtype.kind in "iufbMm" else Encoded.of(values)
        kind, reason, why_out, distinct = _classify(values if enc is None else enc, self.text)
        if enc is not None and kind == "categorical" and (not why_out or name in self.keep):
            self._encoded[name] = enc
        if why_out:
            if name not in self.keep:
                return ColumnKind(name, "excluded", why_out, rows, note=f"--keep {name} (keep=[{name!r}]) profiles it")
            return ColumnKind(name, kind, f"{reason}; kept although {why_out}", rows, kept=True)
        note = ""
        if kind == "categorical":
            distinct = distinct or _n_distinct(values)  # not counted by _classify (a kept datetime array)
            if distinct > self.top_k:
                note = f"{distinct:,} distinct: the top {self.top_k} kept, the rest counted as __other__"
        return ColumnKind(name, kind, reason, rows, note=note)


def _classify(values: Any, text: bool) -> tuple[str, str, str, int]:
    """(kind if kept, why that kind, why excluded or '', distinct text values or 0) for one column.

    Text is judged by its distinct values (weighted by their counts), so the cost is one
    ``Counter`` pass plus a parse per distinct value, not per row."""
    arr = values if isinstance(values, np.ndarray) else None
    if arr is not None and arr.dtype.kind in "Mm":
        return "categorical", f"{arr.dtype} values", f"timestamp-like: {arr.dtype} dtype", 0
    if arr is not None and arr.dtype.kind in "iuf":
        return _classify_numbers(arr.astype(np.float64, copy=False), f"{arr.dtype} values" if not text
                                 else "every non-empty value parses as a number")
    if arr is not None and arr.dtype.kind == "b":
        return "categorical", "bool values", "", 2
    tally, _ = _tally(values)
    present = {k: c for k, c in tally.items() if not _na(k)}
    n = sum(present.values())
    if not n:
        return "numeric", "no values", f"empty: no value in {len(values):,} rows", 0
    if all(isinstance(k, (bool, np.bool_)) for k in present):
        return "categorical", "bool values", "", len(present)
    if all(isinstance(k, (_dt.date, np.datetime64)) or type(k).__name__ == "Timestamp" for k in present):
        return "categorical", "datetime values", "timestamp-like: datetime values", len(present)
    parsed = {k: _parse(k) for k in present}
    good = [k for k in present if parsed[k][1] == _OK]
    share = sum(present[k] for k in good) / n
    if share >= NUMERIC_SHARE:
        x = np.repeat(np.array([parsed[k][0] for k in good], dtype=np.float64), [present[k] for k in good])
        return _classify_numbers(x, f"{share:.2%} of {n:,} values parse as numbers")
    words = [k for k in present if isinstance(k, str) and parsed[k][1] == _BAD]
    dates = _date_share(words)
    if words and dates >= DATE_SHARE:
        return "categorical", "strings", f"timestamp-like: {dates:.0%} of sampled values parse as dates", len(present)
    reason = f"strings, {share:.1%} numbers, {len(present):,} distinct in {n:,} values"
    if len(present) == n and n >= ID_MIN_ROWS:
        return "categorical", reason, f"id-like: all {n:,} values distinct", n
    return "categorical", reason, "", len(present)


def _classify_numbers(x: np.ndarray, reason: str) -> tuple[str, str, str, int]:
    finite = np.isfinite(x)
    fin = x if finite.all() else x[finite]  # (no copy in the common all-finite case)
    n = len(x) if len(fin) == len(x) else int(np.count_nonzero(~np.isnan(x)))
    if not n:
        return "numeric", "no values", f"empty: no value in {len(x):,} rows", 0
    if len(fin) == n >= ID_MIN_ROWS and float(fin.max() - fin.min()) + 1 == n and np.all(fin == np.round(fin)):
        if len(np.unique(fin)) == n:
            return "numeric", reason, (f"id-like: {n:,} distinct integers {fin.min():.0f}..{fin.max():.0f}, "
                                       f"one per row"), 0
    return "numeric", reason, "", 0


def _na(v: Any) -> bool:
    return is_missing(v) or (isinstance(v, str) and v.strip().lower() in NA_VALUES)


_OK, _NA, _BAD = 0, 1, 2


def _parse(v: Any) -> tuple[float, int]:
    """One value as (float, _OK), or (NaN, _NA) for a spelling of "no value", or (NaN, _BAD)."""
    if _na(v):
        return math.nan, _NA
    if isinstance(v, (bool, np.bool_)):
        return math.nan, _BAD
    try:
        return float(v.strip() if isinstance(v, str) else v), _OK
    except (TypeError, ValueError, OverflowError):
        return math.nan, _BAD


def _tally(values: Any) -> tuple[Counter, bool]:
    """Counts per distinct value, and whether values had to be keyed by their text (unhashable)."""
    if isinstance(values, Encoded):
        return Counter(dict(zip(values.keys, values.counts().tolist()))), False
    try:
        return Counter(values), False
    except TypeError:
        return Counter(str(v) for v in values), True


def _numbers(values: Any) -> tuple[np.ndarray, int, list]:
    """(float64 values, missing count, [(stray value, count), ...]) — strays become NaN.
    Text is parsed once per distinct value."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iufb":
        x = values.astype(np.float64, copy=False)
        return x, int(np.count_nonzero(np.isnan(x))), []
    try:
        x = np.asarray(values, dtype=np.float64)
        if x.ndim == 1:
            return x, int(np.count_nonzero(np.isnan(x))), []
    except (TypeError, ValueError):
        pass
    tally, by_text = _tally(values)
    parsed = {k: _parse(k) for k in tally}
    keys = (str(v) for v in values) if by_text else values
    out = np.fromiter((parsed[k][0] for k in keys), dtype=np.float64, count=len(values))
    missing = sum(c for k, c in tally.items() if parsed[k][1] == _NA)
    return out, missing, [(k, c) for k, c in tally.items() if parsed[k][1] == _BAD]


def _date_share(strings: list[str]) -> float:
    sample = list(dict.fromkeys(strings))[:_DATE_SAMPLE]
    return sum(_is_date(s) for s in sample) / len(sample) if sample else 0.0


def _is_date(s: str) -> bool:
    s = s.strip()
    if len(s) < 6 or s.isdigit():
        return False
    try:
        _dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
        return True
    except ValueError:
        pass
    for fmt in _DATE_FORMATS:
        try:
            _dt.datetime.strptime(s, fmt)
            return True
        except ValueError:
            continue
    return False


def _n_distinct(values: Any) -> int:
    return sum(1 for k in _tally(values)[0] if not _na(k))
