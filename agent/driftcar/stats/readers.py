"""Chunked readers for ``driftcar profile``: CSV (optionally .gz) and Parquet.

Each reader yields dicts name -> column (float64 arrays for numeric columns,
lists of str/None for the rest) of at most ``chunk_rows`` rows, so files
larger than memory stream through in bounded memory. A CSV column is handed
over as float64 when every non-empty value of the chunk parses as a number,
else as its strings (empty and :data:`~driftcar.stats.infer.NA_VALUES` cells
as None): deciding what a mostly-numeric column is, and counting its strays,
is :mod:`driftcar.stats.infer`'s job, not the reader's. Parquet needs pyarrow
(an optional dependency); its nulls become NaN / None.

Progress: ``progress(done_fraction)`` is called after each chunk.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from driftcar.stats.infer import NA_VALUES  # one list of the spellings of "no value"

__all__ = ["read_chunks", "file_format", "ReadError", "NA_VALUES"]


class ReadError(ValueError):
    """An input file that cannot be read as a table (the message names the file)."""


def file_format(path: str | os.PathLike, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    name = str(path).lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    return "csv"


def read_chunks(path: str | os.PathLike, chunk_rows: int = 100_000, fmt: str = "auto", delimiter: str = ",",
                progress: Callable[[float], None] | None = None) -> Iterator[dict[str, object]]:
    """Yield chunks of ``path``; ReadError with the reason when it is not a readable table."""
    kind = file_format(path, fmt)
    if kind == "csv":
        yield from _csv_chunks(Path(path), chunk_rows, delimiter, progress)
    elif kind == "parquet":
        yield from _parquet_chunks(Path(path), chunk_rows, progress)
    else:
        raise ReadError(f"{path}: unknown format {fmt!r} (csv or parquet)")


# ---------------------------------------------------------------------------- CSV


def _numeric(values: list[str]) -> np.ndarray | None:
    """Values as float64 (NA strings -> NaN), or None when some value is not a number."""
    try:
        return np.array(values, dtype=np.float64)
    except ValueError:
        pass
    out = np.empty(len(values))
    for i, v in enumerate(values):
        s = v.strip()
        if s.lower() in NA_VALUES:
            out[i] = np.nan
            continue
        try:
            out[i] = float(s)
        except ValueError:
            return None
    return out


def _csv_chunks(path: Path, chunk_rows: int, delimiter: str, progress) -> Iterator[dict[str, object]]:
    try:
        raw = open(path, "rb")
    except OSError as exc:
        raise ReadError(f"{path}: {exc.strerror or exc}") from None
    total = max(1, os.fstat(raw.fileno()).st_size)
    with raw:
        binary = gzip.GzipFile(fileobj=raw) if path.name.lower().endswith(".gz") else raw
        text = io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="")
        reader = csv.reader(text, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise ReadError(f"{path}: empty file (no header row)") from None
        except csv.Error as exc:
            raise ReadError(f"{path}: not valid CSV: {exc}") from None
        names = [h.strip() for h in header]
        if len(set(names)) != len(names) or any(not n for n in names):
            raise ReadError(f"{path}: header has empty or duplicate column names")
        numeric: list[bool] | None = None
        line = 1
        while True:
            rows = []
            try:
                for row in reader:
                    line += 1
                    if not row:
                        continue
                    if len(row) != len(names):
                        raise ReadError(f"{path}:{line}: {len(row)} fields, header has {len(names)}")
                    rows.append(row)
                    if len(rows) >= chunk_rows:
                        break
            except csv.Error as exc:
                raise ReadError(f"{path}:{line}: not valid CSV: {exc}") from None
            if not rows:
                break
            cols = list(zip(*rows))
            chunk: dict[str, object] = {}
            if numeric is None:
                numeric = []
                for name, col in zip(names, cols):
                    arr = _numeric(list(col))
                    numeric.append(arr is not None)
                    chunk[name] = arr if arr is not None else _strings(col)
            else:  # a column of strings in the first chunk stays strings (the profile knows its kind)
                for name, col, is_num in zip(names, cols, numeric):
                    arr = _numeric(list(col)) if is_num else None
                    chunk[name] = arr if arr is not None else _strings(col)
            if progress is not None:
                progress(min(1.0, raw.tell() / total))
            yield chunk
            if len(rows) < chunk_rows:
                break
        if numeric is None:
            raise ReadError(f"{path}: no data rows")


def _strings(col) -> list:
    return [None if v.strip().lower() in NA_VALUES else v for v in col]


# ---------------------------------------------------------------------------- Parquet


def _parquet_chunks(path: Path, chunk_rows: int, progress) -> Iterator[dict[str, object]]:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        raise ReadError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise ReadError(f"{path}: not a readable Parquet file: {exc}") from None
    total = max(1, pf.metadata.num_rows)
    done = 0
    try:
        for batch in pf.iter_batches(batch_size=chunk_rows):
            chunk: dict[str, object] = {}
            for name, col in zip(batch.schema.names, batch.columns):
                t = col.type
                if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
                    chunk[name] = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
                else:
                    chunk[name] = [None if v is None else str(v) for v in col.to_pylist()]
            done += batch.num_rows
            if progress is not None:
                progress(min(1.0, done / total))
            yield chunk
    except pa.ArrowException as exc:
        raise ReadError(f"{path}: cannot read Parquet data: {exc}") from None
