"""Window sketches: the live counterpart of a profile, mergeable by addition.

A :class:`WindowSketch` is bound to one :class:`~driftcar.stats.profile.Profile`
and keeps, per tracked column, counts in that profile's fine bins (numeric:
below-min, fine quantile bins, above-max, missing) with per-bin sums of the
finite values, or counts per reference category + ``__other__`` + missing;
plus the PCA reconstruction error binned the same way, the prediction and
label columns, and the sum of max predicted probability (estimated accuracy).

Counts (``num_counts``, ``cat_counts``) are int32 while every count provably fits, i.e. while the
rows ever added to the sketch (merges add their bounds) stay at most ``COUNT_LIMIT`` = 2**31 - 1;
past that they are promoted to int64 before the add, so nothing is lost. Why: half the bytes of
an open window's and of the cumulative sketch's counts (1.6 KB per numeric feature each).
Checkpoint and wire bytes always carry int64 (the format is unchanged).

Update cost: one bin lookup (grid lookup, or ``searchsorted`` for heavy tails:
:mod:`driftcar.stats._binning`) + two ``bincount`` per numeric column, one
``Counter`` (or ``np.unique``) per categorical column, one small matrix
product for PCA. Memory is fixed by the profile, whatever the traffic:
12 * (fine_bins + 3) bytes per numeric column (4.8 KB at 400 fine bins),
4 * (top_k + 2) per categorical column, plus at most 100 unknown names.

The numeric grid is made lazily: a new sketch keeps the float values of its numeric columns as
they come (one array per column per batch; the caller's arrays are copied) while they take less
memory than the grid would (values x 8 bytes + 128 per batch against the grid's
12 * (fine_bins + 3) per numeric column), and bins them, batch by batch (the same arrays bit for
bit as binning each batch as it came), the first time that bound would be passed or anything
reads the grid (its arrays, ``feature``, ``merge``, ``pack``, ``to_bytes``). Why: a window of
20-50 rows per feature holds 160-400 bytes of values against a 4.8 KB grid, and most open windows
are that small when features are many; once a window sees a large batch it is dense and updates
bin directly, as before.

``merge`` adds every array, so it is associative and commutative, and a
sketch of a whole stream equals the merge of sketches of any split of it
(windows combine over time and across replicas).

Thread safety: not thread-safe; one writer, or merge copies made per thread. The first read of a
new sketch's grid bins its buffered values (it writes): make it from the writer's thread before
handing the sketch to others (``WindowSeries`` does when it closes a window).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from driftcar.stats import _codec
from driftcar.stats._columns import as_columns, to_float
from driftcar.stats.errors import ProfileError
from driftcar.stats._layout import LABEL, MULTIVARIATE, OTHER, PREDICTION, coarse_counts

if TYPE_CHECKING:  # imports run one way: profile -> sketch -> _layout
    from driftcar.stats.profile import Profile

__all__ = ["WindowSketch", "NumericSketch", "CategoricalSketch", "update_chunks", "MAX_UNKNOWN_NAMES", "COUNT_LIMIT"]

MAX_UNKNOWN_NAMES = 100
#: the largest count kept in int32; a sketch whose rows may exceed it holds int64 counts
COUNT_LIMIT = int(np.iinfo(np.int32).max)
_MAGIC = b"DCWIND\x00\x01"
_VERSION = 1
#: packed (closed-window) forms: v5 each fine bin's mean in 0-8 bits, optional exact totals per row
#: (``pack(exact=False, bits=...)``); v4 each fine bin's mean as one byte (``pack(exact=False)``); v3 sums
#: against their bin centre (zigzag difference) in byte planes, frame without the grid; v2 the same with XOR and the frame holding a zero grid; v1 raw sums;
#: else zlib of to_bytes
_PACKED_V5, _PACKED_V4 = b"DCW\x05", b"DCW\x04"
_PACKED, _PACKED_V2, _PACKED_V1 = b"DCW\x03", b"DCW\x02", b"DCW\x01"
_LEVELS = 255  # codes 1..255 for a mean's place in its bin (v4, 8 bits); 0: every value on the lower edge
_GRID = ("num_counts", "num_sums")  # what the packed forms store sparsely
#: roles of the wire contract and where update() sends them
_ROLE_TARGETS = {"feature": "feature", "prediction": "prediction", "probability": "probability",
                 "id": None, "label": "label"}


@dataclass(frozen=True)
class NumericSketch:
    """A snapshot of one numeric column of a window.

    counts: per coarse bin, aligned with the profile feature's ``edges`` (open
    ends included, so out-of-range values land in the first/last bin);
    fine_counts: the fine layout (below, fine bins, above, missing);
    n: non-missing values (infinities included); missing: None/NaN;
    out_of_range: values outside the reference [min, max]; infinite; invalid:
    non-numeric values (counted as missing); sum/mean: of the finite values.
    """

    name: str
    counts: np.ndarray
    fine_counts: np.ndarray
    n: int
    missing: int
    out_of_range: int
    infinite: int
    invalid: int
    sum: float
    fine_sums: np.ndarray | None = None
    neg_infinite: int = 0
    low: float = np.inf  # smallest finite value below the reference range (inf: none)
    high: float = -np.inf  # largest finite value above it (-inf: none)

    kind = "numeric"

    @property
    def mean(self) -> float:
        finite = self.n - self.infinite
        return self.sum / finite if finite else 0.0


@dataclass(frozen=True)
class CategoricalSketch:
    """A snapshot of one categorical column: ``counts`` per reference category
    then ``__other__`` (aligned with the profile's ``categories``), ``missing``, ``n``."""

    name: str
    categories: tuple[str, ...]
    counts: np.ndarray
    n: int
    missing: int

    kind = "categorical"

    @property
    def category_counts(self) -> dict[str, int]:
        out = dict(zip(self.categories, (int(c) for c in self.counts[:-1])))
        out[OTHER] = int(self.counts[-1])
        return out

    @property
    def out_of_range(self) -> int:
        return int(self.counts[-1])


class _GridArray:
    """An array of the numeric grid, read before the grid is made: makes it (``WindowSketch._dense``),
    which sets the arrays as plain attributes, so later reads never come here (no cost on updates)."""

    def __get__(self, sketch: "WindowSketch | None", owner: type) -> Any:
        if sketch is None:
            return self
        sketch._dense()
        return sketch.__dict__[self.name]

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name


class WindowSketch:
    """Counts of one window of live data in a profile's bins; see the module docstring.

    >>> import numpy as np
    >>> from driftcar.stats import profile
    >>> rng = np.random.default_rng(0)
    >>> prof = profile({"x": rng.normal(size=10_000)})
    >>> w1, w2 = prof.new_window(), prof.new_window()
    >>> w1.update({"x": rng.normal(size=500)})
    >>> w2.update({"x": [1.0, None, float("inf")], "unknown": [1, 2, 3]})
    >>> w = w1.merge(w2)
    >>> w.rows, w.feature("x").n, w.feature("x").missing, w.feature("x").infinite, w.unknown
    (503, 502, 1, 1, {'unknown': 3})
    """

    pca_errors = True  # (also for sketches built by merge / from_bytes)

    def __init__(self, profile: Profile, pca_errors: bool = True):
        """``pca_errors=False`` leaves the ``__multivariate__`` row empty (a profile's counting pass,
        whose error distribution comes from a held-out sample instead)."""
        self.profile = profile
        self.pca_errors = pca_errors
        L = profile.layout
        self.count_bound = 0  # no count can exceed this (values added, merges summed): picks the dtype
        self._buffering = True
        self._pending: dict[int, list[np.ndarray]] = {}  # row -> values not yet binned (module docstring)
        self._pending_bytes = 0
        self._dense_bytes = 12 * len(L.num_names) * (L.F + 3)
        self.num_invalid = np.zeros(len(L.num_names), dtype=np.int64)
        self.cat_counts = np.zeros((len(L.cat_names), L.Kmax + 1), dtype=np.int32)
        self.cat_missing = np.zeros(len(L.cat_names), dtype=np.int64)
        self.rows = 0
        self.batches = 0
        self.unknown: dict[str, int] = {}
        self.proba_sum = 0.0
        self.proba_rows = 0
        self.mv_skipped = 0

    # ------------------------------------------------------------------ the numeric grid (made lazily)
    _buffering = False  # True from __init__ until the grid is made (sketches built by merge are dense)
    _pending: dict[int, list[np.ndarray]] | None = None
    _pending_bytes = _dense_bytes = 0
    _PENDING_OVERHEAD = 128  # bytes a buffered batch costs beyond its values (array header, list slot)

    def _dense(self) -> None:
        """Make the grid's missing arrays (plain attributes from then on), and bin every buffered
        batch into it, batch by batch as :meth:`update` would have: the same bins, sums and binners."""
        self._buffering = False
        have = self.__dict__
        n, size = len(self.profile.layout.num_names), self.profile.layout.F + 3
        for name, make in (("num_counts", lambda: np.zeros((n, size), _count_dtype(self.count_bound))),
                           ("num_sums", lambda: np.zeros((n, size))),
                           ("num_inf", lambda: np.zeros((n, 2), np.int64)),  # -inf, +inf
                           # extremes of finite out-of-range values (below the reference min / above its max)
                           ("num_lo", lambda: np.full(n, np.inf)), ("num_hi", lambda: np.full(n, -np.inf))):
            if name not in have:
                have[name] = make()
        pending, self._pending, self._pending_bytes = self._pending, None, 0
        for row, parts in (pending or {}).items():
            for x in parts:
                self._bin_numeric(row, x)

    def bin_pending(self) -> None:
        """Bin the buffered values now: a writer calls this before handing the sketch to readers
        on other threads, because the first read of the grid would otherwise bin (write) there."""
        if self._buffering:
            self._dense()

    num_counts, num_sums, num_inf = _GridArray(), _GridArray(), _GridArray()
    num_lo, num_hi = _GridArray(), _GridArray()

    # ------------------------------------------------------------------ updates
    def update(self, columns: Any, roles: Mapping[str, str] | None = None, *,
               feature_names: Any = None) -> None:
        """Add one batch: ``columns`` maps names to equal-length 1-D arrays/lists, or is any table
        :func:`~driftcar.stats.profile.profile` takes (a DataFrame, a 2-D array whose columns are
        ``feature_names`` or else ``x0, x1, ...``), so the same data profiles and updates alike.

        Without ``roles`` every column is a feature. With ``roles`` (name ->
        feature | prediction | probability | id | label, as ``driftcar.wire``
        decodes) predictions, labels and probability columns (one per class,
        estimated accuracy) go to their sketches and ids are skipped. Names the
        profile does not know are counted in ``unknown`` (at most 100 names,
        the rest under ``__other__``) and otherwise ignored. ``rows`` grows by
        the batch length. Raises ValueError (nothing changed) on ragged or non-1-D columns.

        >>> import numpy as np
        >>> from driftcar.stats import profile
        >>> prof = profile(np.zeros((200, 2)), feature_names=["age", "income"])
        >>> w = prof.new_window()
        >>> w.update(np.ones((5, 2)), feature_names=["age", "income"])
        >>> w.rows, w.feature("income").n, w.unknown
        (5, 5, {})
        """
        columns, n = _checked(columns, feature_names)
        self._grow(n)  # one bound per batch: no row gets more than its length
        L = self.profile.layout
        floats: dict[int, np.ndarray] = {}
        codes: dict[int, np.ndarray] = {}
        to_bin: dict[int, np.ndarray] = {}  # numeric rows binned together after the loop
        probas = []
        for name, values in columns.items():
            role = "feature" if roles is None else _ROLE_TARGETS.get(roles.get(name, "feature"), "feature")
            if role is None:
                continue
            if role == "prediction":
                self._add_extra(L.pred, values)
                continue
            if role == "label":
                self._add_extra(L.label, values)
                continue
            if role == "probability":
                probas.append(values)
                continue
            where = L.where.get(name) if name not in (PREDICTION, LABEL, MULTIVARIATE) else None
            if where is None:
                self._unknown(name, len(values))
            elif where[0] == "numeric":
                floats[where[1]] = self._add_numeric(where[1], values, to_bin)
            else:
                codes[where[1]] = self._add_categorical(where[1], values)
        self._bin_block(to_bin)
        if L.pca is not None and self.pca_errors and (floats or codes):
            if all(r in floats for r in L.pca_rows) and all(r in codes for r, _ in L.pca_cats):
                # rows with a missing/infinite value get a NaN error: counted as missing, not tested
                cols = [floats[r] for r in L.pca_rows]
                coded = [(codes[r], tuple(cs)) for r, cs in L.pca_cats]  # no indicator columns built
                self._add_numeric(L.mv_row, L.pca.coded_errors(cols, coded))
            else:
                self.mv_skipped += 1
        if probas:
            self.update_probabilities(np.column_stack([to_float(p)[0] for p in probas]))
        self.rows += n
        self.batches += 1

    def update_predictions(self, values: Any) -> None:
        """Add model outputs (1-D) to the ``__prediction__`` sketch; ignored when the
        profile has no prediction distribution. Does not change ``rows``."""
        self._grow(_length(values))
        self._add_extra(self.profile.layout.pred, values)

    def update_labels(self, values: Any) -> None:
        """Add ground-truth labels (1-D) to the ``__label__`` sketch, if profiled."""
        self._grow(_length(values))
        self._add_extra(self.profile.layout.label, values)

    def update_probabilities(self, probabilities: Any) -> None:
        """Add predicted class probabilities (rows, classes) for estimated accuracy."""
        p = np.asarray(probabilities, dtype=np.float64)
        if p.ndim != 2 or p.shape[0] == 0:
            return
        top = np.max(np.where(np.isfinite(p), p, 0.0), axis=1)
        self.proba_sum += float(np.clip(top, 0.0, 1.0).sum())
        self.proba_rows += p.shape[0]

    def _grow(self, n: int) -> None:
        """Raise the count bound by ``n`` values, promoting the counts to int64 first when it would
        pass :data:`COUNT_LIMIT` (before any add, so an int32 count never wraps)."""
        self.count_bound += n
        if self.count_bound > COUNT_LIMIT and self.cat_counts.dtype != np.int64:
            self.cat_counts = self.cat_counts.astype(np.int64)
        if self.count_bound > COUNT_LIMIT and not self._buffering and self.num_counts.dtype != np.int64:
            self.num_counts = self.num_counts.astype(np.int64)  # a grid made later is made int64

    def _add_extra(self, where: tuple[str, int] | None, values: Any) -> None:
        if where is None:
            return
        if where[0] == "numeric":
            self._add_numeric(where[1], values)
        else:
            self._add_categorical(where[1], values)

    def _unknown(self, name: str, n: int) -> None:
        if name in self.unknown or len(self.unknown) < MAX_UNKNOWN_NAMES:
            self.unknown[name] = self.unknown.get(name, 0) + n
        else:
            self.unknown[OTHER] = self.unknown.get(OTHER, 0) + n

    def _add_numeric(self, row: int, values: Any, later: dict[int, np.ndarray] | None = None) -> np.ndarray:
        """Bin one numeric column, or keep its values while the grid is not made (module docstring);
        with ``later``, put them there to be binned with the batch's other columns (:meth:`_bin_block`)."""
        x, invalid = to_float(values)
        if invalid:
            self.num_invalid[row] += invalid
        if self._buffering:
            cost = x.nbytes + self._PENDING_OVERHEAD
            if self._pending_bytes + cost <= self._dense_bytes:
                owned = x is not values and x.base is None  # else the caller's memory: copied
                self._pending.setdefault(row, []).append(x if owned else x.copy())
                self._pending_bytes += cost
                return x
            self._dense()
        if later is not None and row not in later:
            later[row] = x
        else:
            self._bin_numeric(row, x)
        return x

    def _bin_block(self, columns: dict[int, np.ndarray]) -> None:
        """Bin a batch's numeric columns as one block: the same bins, counts and sums (each row's
        values added in the same order) as :meth:`_bin_numeric` one column at a time, with ~10x fewer
        numpy calls (``benchmarks/bench_stats.py``, "Sketch update throughput")."""
        if len(columns) < 2:
            for row, x in columns.items():
                self._bin_numeric(row, x)
            return
        rows = list(columns)
        x = np.stack(list(columns.values()))
        size = self.num_counts.shape[1]
        idx = self.profile.layout.binners.block(rows, x)
        flat = (idx + np.arange(0, len(rows) * size, size)[:, None]).reshape(-1)
        counts = np.bincount(flat, minlength=len(rows) * size).reshape(len(rows), size)
        sums = np.bincount(flat, weights=x.reshape(-1), minlength=len(rows) * size).reshape(len(rows), size)
        _add_binned([(self, 0, x.shape[1])], rows, x, idx, counts[:, None], sums[:, None])

    def _bin_numeric(self, row: int, x: np.ndarray) -> None:
        size = self.num_counts.shape[1]
        idx = self.profile.layout.binners(row, x)
        counts = np.bincount(idx, minlength=size)
        self.num_counts[row] += counts
        if counts[0] or counts[size - 2]:  # out of the reference range (rare when undrifted)
            self._extremes(row, x, idx, counts, size)
        sums = np.bincount(idx, weights=x, minlength=size)
        if not (np.isfinite(sums[0]) and np.isfinite(sums[size - 2])):
            # only the open-ended bins can hold infinities: recount them without (rare path)
            finite = np.isfinite(x)
            self.num_inf[row, 0] += int(np.count_nonzero(x == -np.inf))
            self.num_inf[row, 1] += int(np.count_nonzero(x == np.inf))
            sums = np.bincount(idx[finite], weights=x[finite], minlength=size)
        sums[size - 1] = 0.0  # the missing bin
        self.num_sums[row] += sums

    def _extremes(self, row: int, x: np.ndarray, idx: np.ndarray, counts: np.ndarray, size: int) -> None:
        if counts[0]:
            below = x[idx == 0]
            below = below[np.isfinite(below)]
            if len(below):
                self.num_lo[row] = min(self.num_lo[row], float(below.min()))
        if counts[size - 2]:
            above = x[idx == size - 2]
            above = above[np.isfinite(above)]
            if len(above):
                self.num_hi[row] = max(self.num_hi[row], float(above.max()))

    def _add_categorical(self, row: int, values: Any) -> np.ndarray:
        """Count one categorical column; returns each value's code (-1 missing, last column other)."""
        codes = self.profile.layout.cat_codes[row].codes(values)
        self._add_codes(row, np.bincount(codes + 1, minlength=self.cat_counts.shape[1] + 1))
        return codes

    def _add_codes(self, row: int, counts: np.ndarray) -> None:
        """Add a categorical column's code counts (missing, the categories, other)."""
        self.cat_missing[row] += counts[0]
        self.cat_counts[row] += counts[1:]

    # ------------------------------------------------------------------ reading
    def feature(self, name: str) -> NumericSketch | CategoricalSketch:
        """A snapshot of one tracked column (a feature, ``__prediction__``,
        ``__label__`` or ``__multivariate__``); KeyError for unknown names."""
        L = self.profile.layout
        if name not in L.where:
            raise KeyError(f"{name!r} is not a column of this window's profile")
        kind, row = L.where[name]
        if kind == "numeric":
            fine = self.num_counts[row].astype(np.int64)  # snapshots keep int64, whatever is held
            F = L.F
            coarse = coarse_counts(fine[None, :], L.B)[0][L.keep[row]]
            return NumericSketch(name, coarse, fine, int(fine[: F + 2].sum()), int(fine[F + 2]),
                                 int(fine[0] + fine[F + 1]), int(self.num_inf[row].sum()), int(self.num_invalid[row]),
                                 float(self.num_sums[row].sum()), self.num_sums[row].copy(),
                                 int(self.num_inf[row, 0]), float(self.num_lo[row]), float(self.num_hi[row]))
        prof = L.cat_profiles[row]
        k = len(prof.categories)
        counts = np.concatenate([self.cat_counts[row, :k], self.cat_counts[row, -1:]]).astype(np.int64)
        return CategoricalSketch(name, prof.categories, counts, int(counts.sum()), int(self.cat_missing[row]))

    @property
    def estimated_accuracy(self) -> float | None:
        """Mean max predicted probability over the window (CBPE-style), or None without probabilities."""
        return self.proba_sum / self.proba_rows if self.proba_rows else None

    # ------------------------------------------------------------------ merging
    _ARRAYS = ("num_counts", "num_sums", "num_inf", "num_invalid", "cat_counts", "cat_missing")
    _EXTREMES = ("num_lo", "num_hi")
    _SCALARS = ("rows", "batches", "proba_sum", "proba_rows", "mv_skipped")
    _COUNTS = ("num_counts", "cat_counts")  # int32 under the count bound (module docstring)

    def merge(self, other: "WindowSketch") -> "WindowSketch":
        """A new sketch = self + other (neither is changed). Both must use the same profile."""
        if other.profile is not self.profile and other.profile.fingerprint != self.profile.fingerprint:
            raise ValueError("cannot merge windows of different profiles")
        out = WindowSketch.__new__(WindowSketch)
        out.profile = self.profile
        out.count_bound = self.count_bound + other.count_bound
        counts = _count_dtype(out.count_bound)
        with np.errstate(over="ignore"):  # sums of values near the float limit may overflow: handled downstream
            for a in self._ARRAYS:
                setattr(out, a, np.add(getattr(self, a), getattr(other, a),
                                       dtype=counts if a in self._COUNTS else None))
        out.num_lo = np.minimum(self.num_lo, other.num_lo)
        out.num_hi = np.maximum(self.num_hi, other.num_hi)
        for s in self._SCALARS:
            setattr(out, s, getattr(self, s) + getattr(other, s))
        out.unknown = dict(self.unknown)
        for name, n in other.unknown.items():
            out._unknown(name, n)
        return out

    def copy(self) -> "WindowSketch":
        return self.merge(WindowSketch(self.profile))

    # ------------------------------------------------------------------ closed windows
    def pack(self, exact: bool = True, *, bits: int = 8, totals: bool = False) -> bytes:
        """Compact bytes of a window kept after it closed; inverse: :meth:`unpack`.

        Why sparse: a closed window's fine grid (features x ~400 bins of counts and of value sums) is
        mostly empty bins; only the non-empty ones are stored (:mod:`_codec`), and the rest of the
        window (the frame) leaves the grid out. ``exact=True``: every array bit for bit; the sums
        are what stays, ~6.3 of 8 bytes per non-empty bin for full-precision values (the mantissa
        bits finer than the bin: the floor of any exact form). ``exact=False`` (the closed windows
        a series keeps): counts, extremes and everything but the sums exact, and each fine bin's
        mean as one byte, its place in the bin (:func:`_code_means`: within 1/510 of the bin's width,
        values all on the lower edge kept exact), ~1.2 bytes instead. ``bits`` (with ``exact=False``):
        each mean's place in ``2**bits - 1`` cells instead of 255 (within width / (2 * (2**bits - 1));
        0 bits: no place, every bin read at its centre, and no atom code). ``totals``: each row's
        sum of the coded bins kept exact too, the decoded means of the row shifted together to meet
        it (the row's ``sum`` exact to rounding; a mean may then leave its cell). Falls back to zlib of
        :meth:`to_bytes` when a sum sits in an empty bin (never produced by :meth:`update`, but
        bytes must round-trip).
        """
        import zlib

        counts, sums = self.num_counts, self.num_sums
        pos = np.flatnonzero(counts)
        if counts.min(initial=0) < 0 or np.delete(sums.reshape(-1).view(np.uint64), pos).any():
            return zlib.compress(self.to_bytes(), 1)
        values = counts.reshape(-1)[pos].astype(np.int64)
        if not exact:
            if not (isinstance(bits, int) and 0 <= bits <= 8):
                raise ValueError(f"bits must be an int from 0 to 8, got {bits!r}")
            flat = sums.reshape(-1)[pos]
            codes, exact_at = _code_means(self.profile.layout, pos, values, flat, (1 << bits) - 1)
            frame = self._frame(grid=False)
            if bits == 8 and not totals:
                return _PACKED_V4 + _codec.pack_sparse_coded(frame, pos, values, codes, exact_at, flat[exact_at])
            row_totals = _coded_totals(self.profile.layout, pos, flat, exact_at) if totals else np.empty(0)
            return _PACKED_V5 + _codec.pack_sparse_bits(frame, pos, values, codes, bits, exact_at, flat[exact_at],
                                                        row_totals)
        guess = values * self.profile.layout.centres(pos)
        residuals = _codec.zigzag_residuals(sums.reshape(-1)[pos], guess)
        return _PACKED + _codec.pack_sparse(self._frame(grid=False), pos, values, residuals)

    @classmethod
    def unpack(cls, blob: bytes, profile: Profile) -> "WindowSketch":
        """Inverse of :meth:`pack` (also reads the earlier packed forms); ProfileError when bad."""
        import zlib

        if blob.startswith(_PACKED_V5):
            return cls._unpack_v5(blob[len(_PACKED_V5):], profile)
        if blob.startswith(_PACKED_V4):
            frame, pos, values, codes, exact_at, exact = _codec.unpack_sparse_coded(blob[len(_PACKED_V4):])
            sketch = cls._from_frame(frame, profile, False)
            if len(pos) and pos[-1] >= sketch.num_counts.size:
                raise ProfileError("closed window is corrupt (a bin beyond the profile's grid)")
            sketch._put_counts(pos, values)
            sums = _decode_means(profile.layout, pos, values, codes)
            sums[exact_at] = exact
            sketch.num_sums.reshape(-1)[pos] = sums
            return sketch
        for magic, grid in ((_PACKED, False), (_PACKED_V2, True)):
            if blob.startswith(magic):
                frame, pos, values, residuals = _codec.unpack_sparse(blob[len(magic):])
                sketch = cls._from_frame(frame, profile, grid)
                if len(pos) and pos[-1] >= sketch.num_counts.size:
                    raise ProfileError("closed window is corrupt (a bin beyond the profile's grid)")
                guess = values * profile.layout.centres(pos)
                sketch._put_counts(pos, values)
                sketch.num_sums.reshape(-1)[pos] = (_codec.from_zigzag(residuals, guess) if not grid else
                                                    (residuals ^ guess.view(np.uint64)).view(np.float64))
                return sketch
        if blob.startswith(_PACKED_V1):
            return _unpack_v1(blob[len(_PACKED_V1):], profile)
        try:
            data = zlib.decompress(blob)
        except zlib.error as exc:
            raise ProfileError(f"closed window is corrupt ({exc})") from None
        return cls.from_bytes(data, profile)

    @classmethod
    def _unpack_v5(cls, body: bytes, profile: Profile) -> "WindowSketch":
        frame, pos, values, codes, bits, exact_at, exact, totals = _codec.unpack_sparse_bits(body)
        sketch = cls._from_frame(frame, profile, False)
        if len(pos) and pos[-1] >= sketch.num_counts.size:
            raise ProfileError("closed window is corrupt (a bin beyond the profile's grid)")
        if len(totals) not in (0, sketch.num_counts.shape[0]):
            raise ProfileError(f"closed window is corrupt ({len(totals)} row totals)")
        sketch._put_counts(pos, values)
        sums = _decode_means(profile.layout, pos, values, codes, (1 << bits) - 1)
        if len(totals):
            sums = _meet_totals(profile.layout, pos, values, sums, exact_at, totals)
        sums[exact_at] = exact
        sketch.num_sums.reshape(-1)[pos] = sums
        return sketch

    # ------------------------------------------------------------------ checkpoints
    def to_bytes(self) -> bytes:
        """Versioned bytes for checkpoints; restore with :meth:`from_bytes` and the same profile."""
        return self._frame(grid=True)

    def _frame(self, grid: bool) -> bytes:
        """:meth:`to_bytes`, or (``grid=False``) the same without the fine grid (packed forms)."""
        payload = {"profile": self.profile.fingerprint, "unknown": self.unknown}
        payload.update({a: _codec.pack_array(getattr(self, a)) for a in self._ARRAYS + self._EXTREMES
                        if grid or a not in _GRID})
        payload.update({s: getattr(self, s) for s in self._SCALARS})
        return _codec.frame(_MAGIC, _VERSION, payload)

    @classmethod
    def from_bytes(cls, data: bytes, profile: Profile) -> "WindowSketch":
        """Inverse of :meth:`to_bytes`; ProfileError when the bytes are bad or from another profile."""
        return cls._from_frame(data, profile, grid=True)

    @classmethod
    def _from_frame(cls, data: bytes, profile: Profile, grid: bool) -> "WindowSketch":
        p = _codec.unframe(data, _MAGIC, _VERSION, "window")
        if p.get("profile") != profile.fingerprint:
            raise ProfileError("window was recorded against a different profile")
        w = cls(profile)
        for a in cls._ARRAYS + cls._EXTREMES:
            if not grid and a in _GRID:
                if a in p:
                    raise ProfileError(f"closed window is corrupt (a dense {a} in a sparse form)")
                continue
            arr = _codec.unpack_array(_codec.field(p, a, dict, "window"), f"window.{a}")
            if arr.shape != getattr(w, a).shape:
                raise ProfileError(f"window.{a}: shape {arr.shape} does not match the profile")
            setattr(w, a, arr.astype(np.int64 if a in cls._COUNTS else getattr(w, a).dtype))
        w._dense()  # the arrays read back are the grid: later updates bin into them
        w._narrow()
        for s in cls._SCALARS:
            setattr(w, s, _codec.field(p, s, (int, float), "window"))
        unknown = _codec.field(p, "unknown", dict, "window")
        w.unknown = {str(k): int(v) for k, v in unknown.items()}
        return w

    def _narrow(self) -> None:
        """Counts read back (int64) kept in int32 when every one fits; the bound is their largest."""
        self.count_bound = max(int(np.abs(getattr(self, a)).max(initial=0)) for a in self._COUNTS)
        for a in self._COUNTS:
            setattr(self, a, getattr(self, a).astype(_count_dtype(self.count_bound), copy=False))

    def _put_counts(self, pos: np.ndarray, values: np.ndarray) -> None:
        """Numeric counts at flat positions ``pos`` (a packed form read back), kept narrow if they fit."""
        self.num_counts = self.num_counts.astype(np.int64)
        self.num_counts.reshape(-1)[pos] = values
        self._narrow()

    def __repr__(self) -> str:
        return f"WindowSketch(rows={self.rows}, batches={self.batches}, profile={self.profile.fingerprint})"


def _checked(columns: Any, feature_names: Any) -> tuple[Mapping[str, Any], int]:
    """``columns`` as a mapping of equal-length 1-D columns, and their length; ValueError if not."""
    if feature_names is not None or not isinstance(columns, Mapping):
        columns = as_columns(columns, "update()", feature_names)
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns have different lengths {sorted(lengths)}")
    for name, v in columns.items():
        if isinstance(v, np.ndarray) and v.ndim != 1:
            raise ValueError(f"column {name!r} must be 1-D, got shape {v.shape}")
    return columns, next(iter(lengths), 0)


#: bounds on one block of :func:`update_chunks` (columns binned together): its (column, chunk, bin)
#: cells, and its values. Why: blocks save numpy calls on short batches (as in ``update``), while on
#: long ones a column at a time is faster: its copies, bins and indices (8 bytes a value each) stay in
#: cache, and the lookup runs on scalar constants (``benchmarks/callgrind_verdicts.py --part profile``)
_BLOCK_CELLS, _BLOCK_VALUES = 1 << 21, 1 << 15


def update_chunks(sketches: Sequence[WindowSketch], columns: Any, cuts: Sequence[int],
                  roles: Mapping[str, str] | None = None) -> None:
    """``sketches[i].update(rows cuts[i]:cuts[i + 1] of columns, roles)`` for every i: the same
    arrays bit for bit, with each column binned once.

    Why: a profile's counting pass keeps its counts per calibration chunk (consecutive rows of
    one batch); one ``update`` per chunk would bin and count every column once per chunk. Here the
    numeric columns are binned by the profile's binners (as blocks on short batches, as ``update``
    does; a column at a time on long ones: ``_BLOCK_VALUES``) and their counts and sums split by one
    ``bincount`` over (column, chunk, bin), each categorical column coded once and counted by one
    ``bincount`` over (chunk, code).
    ``bincount`` adds in row order, so every (chunk, bin) sum adds the same values in the same order
    as one ``update`` per chunk. Makes the sketches' grids (no buffered values, module docstring).

    Kept on the plain path: numeric columns holding non-numeric values (their ``invalid`` count is
    per chunk) are converted and binned chunk by chunk, and sketches that compute PCA errors get one
    ``update`` per chunk (errors of one matrix product over the batch may round otherwise).

    ``cuts``: ``len(sketches) + 1`` non-decreasing row numbers from 0 to the batch length; every
    sketch bound to the same profile. ValueError (nothing changed) otherwise, or as ``update``.

    >>> import numpy as np
    >>> from driftcar.stats import profile
    >>> rng = np.random.default_rng(0)
    >>> prof = profile({"x": rng.normal(size=2_000), "c": rng.choice(["a", "b"], 2_000)})
    >>> w1, w2 = prof.new_window(), prof.new_window()
    >>> update_chunks([w1, w2], {"x": rng.normal(size=300), "c": ["a"] * 300}, [0, 100, 300])
    >>> w1.rows, w2.rows, w1.feature("x").n, w2.feature("c").category_counts["a"]
    (100, 200, 100, 200)
    """
    sketches = list(sketches)
    columns, n = _checked(columns, None)
    cuts = np.asarray(cuts, dtype=np.int64)
    if cuts.shape != (len(sketches) + 1,) or cuts[0] != 0 or cuts[-1] != n or (np.diff(cuts) < 0).any():
        raise ValueError(f"cuts must be {len(sketches) + 1} non-decreasing row numbers from 0 to {n}, "
                         f"got {cuts.tolist()}")
    if not sketches:
        return
    prof = sketches[0].profile
    if any(s.profile is not prof and s.profile.fingerprint != prof.fingerprint for s in sketches):
        raise ValueError("cannot update windows of different profiles together")
    chunks = list(zip(sketches, cuts[:-1].tolist(), cuts[1:].tolist()))
    if prof.layout.pca is not None and any(s.pca_errors for s in sketches):
        for s, a, b in chunks:
            s.update({name: v[a:b] for name, v in columns.items()}, roles)
        return
    for s, a, b in chunks:
        s._grow(b - a)
    numeric, codes, probas = _route(chunks, columns, roles)
    _split_numeric(chunks, numeric)
    _split_codes(chunks, codes)
    if probas:
        p = np.column_stack([to_float(v)[0] for v in probas])
        for s, a, b in chunks:
            s.update_probabilities(p[a:b])
    for s, a, b in chunks:
        s.rows += b - a
        s.batches += 1


def _route(chunks: list, columns: Mapping[str, Any], roles: Mapping[str, str] | None
           ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], list]:
    """Sort a batch's columns as :meth:`WindowSketch.update` does: (grid row -> float values to
    bin, categorical row -> codes, probability columns); unknown names and numeric columns with
    non-numeric values are counted into each chunk's sketch here."""
    L = chunks[0][0].profile.layout
    numeric: dict[int, np.ndarray] = {}
    codes: dict[int, np.ndarray] = {}
    probas = []
    for name, values in columns.items():
        role = "feature" if roles is None else _ROLE_TARGETS.get(roles.get(name, "feature"), "feature")
        if role == "probability":
            probas.append(values)
            continue
        if role in ("prediction", "label"):
            where = L.pred if role == "prediction" else L.label
        elif role is None:
            continue
        else:
            where = L.where.get(name) if name not in (PREDICTION, LABEL, MULTIVARIATE) else None
            if where is None:
                for s, a, b in chunks:
                    s._unknown(name, b - a)
                continue
        if where is None:
            continue
        if where[0] == "categorical":
            codes[where[1]] = L.cat_codes[where[1]].codes(values)
            continue
        x, invalid = to_float(values)
        if not invalid:
            numeric[where[1]] = x
            continue
        for s, a, b in chunks:  # (rare) each chunk's own invalid count
            s._add_numeric(where[1], values[a:b])
    return numeric, codes, probas


def _split_numeric(chunks: list, numeric: dict[int, np.ndarray]) -> None:
    """Bin numeric columns (grid row -> values) once, in blocks, and add each chunk's counts, sums,
    extremes and infinities to its sketch (:func:`_add_binned`)."""
    if not numeric:
        return
    L = chunks[0][0].profile.layout
    k, size, n = len(chunks), L.F + 3, len(next(iter(numeric.values())))
    for s, _, _ in chunks:
        s.bin_pending()  # the grid: the chunks' counts are added to it
    offset = np.repeat(np.arange(0, k * size, size), [b - a for _, a, b in chunks])  # (chunk, bin) of each row
    rows = list(numeric)
    per = max(1, min(_BLOCK_CELLS // (k * size), _BLOCK_VALUES // max(n, 1)))
    for at in range(0, len(rows), per):
        block = rows[at: at + per]
        if len(block) == 1:  # (the same bins either way: _binning)
            x = numeric[block[0]][None, :]
            idx = L.binners(block[0], x[0])[None, :]
        else:
            x = np.stack([numeric[r] for r in block])
            idx = L.binners.block(block, x)
        flat = idx + offset
        if len(block) > 1:
            flat += np.arange(0, len(block) * k * size, k * size)[:, None]
        flat = flat.reshape(-1)
        cells = len(block) * k * size
        counts = np.bincount(flat, minlength=cells).reshape(len(block), k, size)
        sums = np.bincount(flat, weights=x.reshape(-1), minlength=cells).reshape(len(block), k, size)
        _add_binned(chunks, block, x, idx, counts, sums)


def _add_binned(chunks: list, rows: list[int], x: np.ndarray, idx: np.ndarray, counts: np.ndarray,
                sums: np.ndarray) -> None:
    """Add a block's ``bincount`` results to the sketches of ``chunks`` ((sketch, a, b): rows a..b of
    the batch): ``counts``/``sums`` (column, chunk, bin) of the grid rows ``rows``, ``x``/``idx`` the
    columns' values and bins (column, row of the batch); with the extremes and infinities they imply,
    as :meth:`WindowSketch._bin_numeric` adds them. ``sums`` is changed (infinities left out, the
    missing bin zeroed)."""
    size = counts.shape[2]
    for i, c in zip(*np.nonzero(~(np.isfinite(sums[:, :, 0]) & np.isfinite(sums[:, :, size - 2])))):  # inf (rare)
        s, a, b = chunks[c]
        xi, finite = x[i, a:b], np.isfinite(x[i, a:b])
        s.num_inf[rows[i], 0] += int(np.count_nonzero(xi == -np.inf))
        s.num_inf[rows[i], 1] += int(np.count_nonzero(xi == np.inf))
        sums[i, c] = np.bincount(idx[i, a:b][finite], weights=xi[finite], minlength=size)
    sums[:, :, size - 1] = 0.0  # the missing bin
    for c, (s, a, b) in enumerate(chunks):
        if len(rows) == 1:  # (plain indexing: cheaper)
            s.num_counts[rows[0]] += counts[0, c]
            s.num_sums[rows[0]] += sums[0, c]
        else:
            s.num_counts[rows] += counts[:, c]
            s.num_sums[rows] += sums[:, c]
    for i, c in zip(*np.nonzero(counts[:, :, 0] | counts[:, :, size - 2])):  # out of the reference range (rare)
        s, a, b = chunks[c]
        s._extremes(rows[i], x[i, a:b], idx[i, a:b], counts[i, c], size)


def _split_codes(chunks: list, codes: dict[int, np.ndarray]) -> None:
    """Count categorical codes (row -> codes, -1 missing) per chunk with one ``bincount`` per column."""
    if not codes:
        return
    width = chunks[0][0].cat_counts.shape[1] + 1  # missing, the categories, other
    offset = np.repeat(np.arange(1, len(chunks) * width, width), [b - a for _, a, b in chunks])
    for row, c in codes.items():
        counts = np.bincount(c + offset, minlength=len(chunks) * width).reshape(len(chunks), width)
        for j, (s, _, _) in enumerate(chunks):
            s._add_codes(row, counts[j])


def _length(values: Any) -> int:
    return len(values) if hasattr(values, "__len__") else 1


def _count_dtype(bound: int) -> type:
    return np.int32 if bound <= COUNT_LIMIT else np.int64


def _spans(layout: Any, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lower edge, width, inner, missing) of the bins at flat positions of a (rows, F + 3) grid;
    inner = a fine bin (bounded), missing = the missing-values bin."""
    row, col = np.divmod(pos, layout.F + 3)
    inner = (col >= 1) & (col <= layout.F)
    at = np.where(inner, col, 1)
    lo = layout.edges_ext[row, at - 1]
    with np.errstate(all="ignore"):
        width = layout.edges_ext[row, at] - lo
    return lo, width, inner, col == layout.F + 2


def _code_means(layout: Any, pos: np.ndarray, counts: np.ndarray, sums: np.ndarray,
                levels: int = _LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """Each non-empty bin's mean as a byte: 0 when the bin passes the atom test of
    :func:`driftcar.stats.methods.atoms` (sum <= count * lower edge: every value on the edge,
    discrete data), else 1 + its place in ``levels`` equal cells of the bin, read back at the cell's
    middle (within width / (2 * levels) of the mean; 0 levels: every code 0). Returns (codes,
    indices whose sum is kept exact): the open-ended bins (unbounded), a missing bin with a sum
    (never from :meth:`WindowSketch.update`), and means outside their bin (floating-point
    arithmetic, or a cumulative's shifted means read back: kept at 0 levels)."""
    lo, width, inner, missing = _spans(layout, pos)
    with np.errstate(all="ignore"):
        atom = inner & (sums <= counts * lo)
        frac = (sums / counts - lo) / width
    # (0 levels: a mean outside its bin is read at the centre like any, the row's total keeps the rest)
    ok = inner & (width > 0) & np.isfinite(width) & ((frac >= 0.0) & (frac <= 1.0) | (levels == 0))
    if levels:
        codes = np.where(ok & ~atom, np.minimum(np.floor(np.where(ok, frac, 0.0) * levels), levels - 1) + 1, 0)
    else:
        codes = np.zeros(len(pos))
    keep = ~(atom | ok | (missing & (sums == 0.0)))
    return codes.astype(np.uint8), np.flatnonzero(keep)


def _decode_means(layout: Any, pos: np.ndarray, counts: np.ndarray, codes: np.ndarray,
                  levels: int = _LEVELS) -> np.ndarray:
    """Sums from :func:`_code_means` codes (the exact ones are the caller's): count * the middle of
    the mean's cell; code 0 count * lower edge (the atom test holds again) or 0 outside fine bins;
    0 levels: count * the bin's centre."""
    lo, width, inner, _ = _spans(layout, pos)
    with np.errstate(all="ignore"):
        if not levels:
            return np.where(inner, counts * (lo + 0.5 * width), 0.0)
        edge = counts * lo
        sums = counts * (lo + (codes - 0.5) / levels * width)
        # never at or under count * lower edge for a non-atom, so the atom test reads as it did
        sums = np.where(sums > edge, sums, np.nextafter(edge, np.inf))
    return np.where(inner & (codes > 0), sums, np.where(inner, edge, 0.0))


def _coded_totals(layout: Any, pos: np.ndarray, sums: np.ndarray, exact_at: np.ndarray) -> np.ndarray:
    """Each numeric row's sum over its coded bins (those not kept exact), in flat order."""
    coded = np.ones(len(pos), dtype=bool)
    coded[exact_at] = False
    rows = pos // (layout.F + 3)
    return np.bincount(rows[coded], weights=sums[coded], minlength=len(layout.num_names))


def _meet_totals(layout: Any, pos: np.ndarray, counts: np.ndarray, sums: np.ndarray, exact_at: np.ndarray,
                 totals: np.ndarray) -> np.ndarray:
    """Decoded ``sums`` with each row's coded means shifted by one amount so they add up to its total."""
    coded = np.ones(len(pos), dtype=bool)
    coded[exact_at] = False
    rows = pos // (layout.F + 3)
    n = len(layout.num_names)
    have = np.bincount(rows[coded], weights=sums[coded], minlength=n)
    weight = np.bincount(rows[coded], weights=counts[coded], minlength=n)
    with np.errstate(all="ignore"):
        shift = np.where(weight > 0, (totals - have) / weight, 0.0)
    return np.where(coded, sums + counts * shift[rows], sums)


def _unpack_v1(blob: bytes, profile: Profile) -> WindowSketch:
    """The first packed form (checkpoints written before v2): uint32 gaps, narrowest counts, raw sums."""
    import zlib

    body = zlib.decompress(blob)
    n_frame, n, size = (int(v) for v in np.frombuffer(body, np.uint64, 3))
    at = 24
    sketch = WindowSketch.from_bytes(body[at:at + n_frame], profile)
    at += n_frame
    pos = np.cumsum(np.frombuffer(body, np.uint32, n, at), dtype=np.int64)
    at += 4 * n
    counts = np.frombuffer(body, {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[size], n, at)
    at += size * n
    sketch._put_counts(pos, counts)
    sketch.num_sums.reshape(-1)[pos] = np.frombuffer(body, np.float64, n, at)
    return sketch
