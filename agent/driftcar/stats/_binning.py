"""Bin index of values on uneven (quantile) edges: ``searchsorted`` or a grid lookup (internal).

Both return exactly ``np.searchsorted(edges + [NaN], x, "right")``: below the first
edge -> 0, bin i -> i, at/after the last edge -> len(edges), NaN -> len(edges) + 1.

``np.searchsorted`` costs a branchy binary search per value (~9 levels for 400 fine
edges). The lookup maps x to one of G uniform cells between the first and last edge
with arithmetic, reads the first candidate bin from a table, then corrects with at
most ``steps`` branch-free compare-and-add passes (cells hold few edges when the data
is not heavy-tailed). It is used only when ``steps`` is small; measured ~2x faster
than searchsorted on normal data (benchmarks/bench_stats.py). Exactness rests on the
cell function being monotone: cell(e) > cell(x) implies e > x, so only edges of x's
own cell need comparing.
"""

from __future__ import annotations

import copy

import numpy as np

__all__ = ["make_binner", "SearchBinner", "LookupBinner", "Binners"]

MAX_STEPS = 3  # above this many corrections, searchsorted is as fast
#: below this many values searchsorted is as fast as the lookup (whose fixed cost is a few numpy
#: calls): measured crossover 150-200 values at 400 fine edges, fresh values on every call
LOOKUP_MIN = 192
#: tried in order: 4 cells per edge keep normal-like data at one correction pass (3.2 KB table at
#: 400 fine edges), as fast as 8; skewed data needs 8 or 32
CELLS_PER_EDGE = (4, 8, 32)
#: bytes of lookup tables one layout keeps (tables + ~200 bytes of object each) for batches of
#: ``LOOKUP_MIN`` values or more; past it, a row gets its table only on a batch of ``LOOKUP_WIDE`` or
#: more, and bins smaller ones by ``searchsorted`` (the same bins). Why: a table is 3.2-26 KB per
#: feature at 400 fine bins; with thousands of features whose windows of 192-383 values are binned
#: at the close, tables were ~3.5 KiB of the ~31 KiB a feature cost (tests/reliability/feature_memory.py)
#: for a speed-up of 0-15 % there, against ~2x on batches of 1,000 (``benchmarks/bench_stats.py
#: --table-budget``); up to ~150 normal-like or ~20 skewed features keep theirs whatever the batch
TABLE_BUDGET = 1 << 19
LOOKUP_WIDE = 384
_BINNER_OVERHEAD = 200


def _extended(edges: np.ndarray, ext: np.ndarray | None, pad: int) -> np.ndarray:
    """``edges`` followed by ``pad`` NaN: ``ext`` itself when it already holds that (no copy)."""
    n = len(edges)
    if ext is not None and len(ext) >= n + pad and ext.flags.c_contiguous and ext.dtype == np.float64:
        if np.isnan(ext[n:n + pad]).all() and np.array_equal(ext[:n], edges):
            return ext[: n + pad]
    return np.concatenate([edges, np.full(pad, np.nan)])


class SearchBinner:
    kind = "searchsorted"

    def __init__(self, edges: np.ndarray, ext: np.ndarray | None = None):
        self.ext = _extended(np.asarray(edges, dtype=np.float64), ext, 1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.ext, x, "right")


class LookupBinner:
    kind = "lookup"

    def __init__(self, edges: np.ndarray, cells: int, steps: int, cell_of_edges: np.ndarray,
                 ext: np.ndarray | None = None):
        n = len(edges)
        self.lo = float(edges[0])
        self.scale = cells / float(edges[-1] - edges[0])
        # x is clipped to one cell beyond the edges first, so the arithmetic never overflows
        self.x_min, self.x_max = _x_range(self.lo, self.scale, cells)
        self.cells = cells
        self.steps = steps
        # entry c for cells 0 .. cells (clipped values), cells + 1 for NaN, and cell -1 last, where
        # take reads index -1 (no shifted copy of the cell numbers per batch)
        c = np.arange(0, cells + 3)
        c[-1] = -1
        dtype = np.int16 if n + 2 < np.iinfo(np.int16).max else np.int32  # small tables stay in cache
        self.table = np.searchsorted(cell_of_edges, c, "left").astype(dtype)
        self.table[cells + 1] = n + 1  # NaN
        self.ext = _extended(edges, ext, 2)  # ext[n], ext[n + 1] never <= x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        g = np.clip(x, self.x_min, self.x_max)
        g -= self.lo
        g *= self.scale
        g[np.isnan(g)] = self.cells + 1
        # widened once: every later read (the corrections, the caller's bincounts) indexes with
        # intp, and a narrow index would be widened again on each of them
        idx = self.table.take(g.astype(np.intp)).astype(np.intp)
        ext = self.ext
        for _ in range(self.steps):
            idx += ext.take(idx) <= x
        return idx


class Binners:
    """The bins of every row of ``edges_ext`` (rows: sorted finite edges then two NaN).

    Why lazy: a lookup table costs 4-32 cells x 2 bytes per edge (3.2-26 KB per feature at 400
    fine bins) and only pays off on batches of ``LOOKUP_MIN`` values or more; small batches use
    ``searchsorted`` on the shared edges, and a row's table is built on its first large batch.
    Both give exactly the same bins.
    """

    def __init__(self, edges_ext: np.ndarray, budget: int = TABLE_BUDGET):
        self.edges_ext = edges_ext
        self._lookup: dict[int, LookupBinner | SearchBinner] = {}
        self.budget = budget  # bytes of tables (and binner objects) still allowed (TABLE_BUDGET)

    def __call__(self, row: int, x: np.ndarray) -> np.ndarray:
        if len(x) >= LOOKUP_MIN:
            binner = self._built(row, len(x))
            if binner is not None:
                return binner(x)
        return np.searchsorted(self.edges_ext[row, :-1], x, "right")

    def block(self, rows: list[int], x: np.ndarray) -> np.ndarray:
        """``self(rows[i], x[i])`` for every i of a 2-D block (one column per row, same length):
        the lookup rows with one numpy call per step over the whole block, and the same float
        operations per value, so exactly the same bins.

        Why: at 1,000 values a lookup costs ~10 numpy calls per column, more than its arithmetic;
        a block of 20 columns makes ~30 calls instead of ~200 (``benchmarks/bench_stats.py``).
        An extra correction pass leaves an exact bin as it is (its next edge is above x or NaN),
        so every row takes the most passes any row needs.
        """
        out = np.empty(x.shape, dtype=np.intp)
        if x.shape[1] < LOOKUP_MIN:
            for i, row in enumerate(rows):
                out[i] = np.searchsorted(self.edges_ext[row, :-1], x[i], "right")
            return out
        binners = [self._built(row, x.shape[1]) for row in rows]
        look = [i for i, b in enumerate(binners) if isinstance(b, LookupBinner)]
        for i, b in enumerate(binners):
            if b is None:  # past the table budget
                out[i] = np.searchsorted(self.edges_ext[rows[i], :-1], x[i], "right")
            elif not isinstance(b, LookupBinner):
                out[i] = b(x[i])
        if look:
            out[look] = self._lookup_block([binners[i] for i in look], [rows[i] for i in look],
                                           x if len(look) == len(rows) else x[look])
        return out

    def _built(self, row: int, values: int = LOOKUP_WIDE):
        """Row ``row``'s binner, built on first use; None once the table budget is spent, unless the
        batch has ``LOOKUP_WIDE`` values or more."""
        binner = self._lookup.get(row)
        if binner is None and (self.budget > 0 or values >= LOOKUP_WIDE):
            ext = self.edges_ext[row]
            binner = self._keep(row, make_binner(ext[:-2], ext=ext))
        return binner

    def _keep(self, row: int, binner):
        self._lookup[row] = binner
        self.budget -= _cost(binner)
        return binner

    def _lookup_block(self, binners: list, rows: list[int], x: np.ndarray) -> np.ndarray:
        """:meth:`LookupBinner.__call__` over a block, each row with its own binner's constants."""
        col = lambda attr: np.array([getattr(b, attr) for b in binners], dtype=np.float64)[:, None]  # noqa: E731
        g = np.clip(x, col("x_min"), col("x_max"))
        g -= col("lo")
        g *= col("scale")
        nan = np.isnan(g)
        if nan.any():
            g[nan] = np.broadcast_to(col("cells") + 1, g.shape)[nan]
        cells = g.astype(np.intp)
        idx = np.empty(x.shape, dtype=np.intp)
        for i, b in enumerate(binners):
            idx[i] = b.table.take(cells[i])
        flat = self.edges_ext.reshape(-1)  # (a view: the layout's edges are one C-contiguous block)
        base = np.array(rows, dtype=np.intp)[:, None] * self.edges_ext.shape[1]
        for _ in range(max(b.steps for b in binners)):
            idx += flat.take(idx + base) <= x
        return idx

    def adopt(self, other: "Binners") -> None:
        """Take ``other``'s built binners for the rows whose edges equal this one's (a finished
        profile's layout after its counting pass: the same edges, so the same tables), reading
        this one's edges. Why: building the tables is ~60 us per feature, twice per profile."""
        for row, binner in other._lookup.items():
            if row in self._lookup or row >= len(self) or not np.array_equal(
                    other.edges_ext[row], self.edges_ext[row], equal_nan=True):
                continue
            if self.budget <= 0:
                return
            shared = copy.copy(binner)
            shared.ext = self.edges_ext[row][: len(binner.ext)]
            self._keep(row, shared)

    def __getitem__(self, row: int):
        """Row ``row``'s binner as a callable (tests, benchmarks)."""
        return lambda x: self(row, x)

    def __len__(self) -> int:
        return len(self.edges_ext)

    @property
    def tables(self) -> int:
        """Rows whose lookup table has been built."""
        return len(self._lookup)


def _cost(binner) -> int:
    table = getattr(binner, "table", None)
    return _BINNER_OVERHEAD + (table.nbytes if table is not None else 0)


def _x_range(lo: float, scale: float, cells: int) -> tuple[float, float]:
    return lo - 1.0 / scale, lo + cells / scale


def _cells(edges: np.ndarray, lo: float, scale: float, cells: int) -> np.ndarray:
    """The cell of each edge, by the very same float operations as LookupBinner.__call__."""
    x_min, x_max = _x_range(lo, scale, cells)
    g = np.clip(edges, x_min, x_max)
    g -= lo
    g *= scale
    return g.astype(np.intp)


def make_binner(edges: np.ndarray, cells_per_edge: tuple[int, ...] = CELLS_PER_EDGE, ext: np.ndarray | None = None):
    """The faster exact binner for these sorted finite ``edges`` (memory: 2 bytes x 4, 8 or 32
    cells per edge for the lookup table). ``ext``: the edges followed by two NaN,
    held by the caller; the binner reads it instead of a copy of its own."""
    edges = np.asarray(edges, dtype=np.float64)
    span = float(edges[-1] - edges[0]) if len(edges) > 1 else 0.0
    if len(edges) < 16 or not np.isfinite(span) or span <= 0:
        return SearchBinner(edges, ext)
    for per_edge in cells_per_edge:
        cells = per_edge * len(edges)
        scale = cells / span
        if not np.isfinite(scale):
            break
        cell_of_edges = _cells(edges, float(edges[0]), scale, cells)
        steps = int(np.bincount(cell_of_edges + 1).max())
        if steps <= MAX_STEPS:
            return LookupBinner(edges, cells, steps, cell_of_edges, ext)
    return SearchBinner(edges, ext)
