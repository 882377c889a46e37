"""Process-wide allocator settings for the sidecar process (glibc only; a no-op elsewhere).

Why: the sidecar allocates and frees many arrays of a few hundred KiB (window sketches,
merges, checkpoint blobs) from several threads. With glibc's defaults the mmap threshold
rises after the first such free, so later ones come from per-thread heap arenas that keep
the freed memory: RSS crept up ~12% over 10 minutes at steady load with no Python-level
growth (tracemalloc). Pinning the mmap threshold at 128 KiB (large blocks go back to the OS
on free) and capping arenas at 2 keeps it flat (measured in ``benchmarks/bench_sidecar.py``).

:func:`limit_blas_threads` keeps numpy's OpenBLAS to one thread: the sketch's multivariate
error is a small matrix product per batch (features x rows), and OpenBLAS's worker threads
spin-waiting on a busy 2-core machine made it ~40x slower (28 ms instead of 0.7 ms per
1,000-row batch, the ingest worker's largest cost; ``benchmarks/bench_sidecar.py``). The sidecar's
parallelism is its own (receivers, ingest worker, decode process), not BLAS's.

Only the CLI calls these (it owns the process); embedding programs
(``run_in_thread``) keep their own allocator settings. Explicit ``MALLOC_ARENA_MAX`` /
``MALLOC_MMAP_THRESHOLD_`` in the environment win: then nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["tune_malloc", "limit_blas_threads", "MMAP_THRESHOLD", "ARENA_MAX"]

M_MMAP_THRESHOLD = -3  # glibc mallopt parameters (malloc.h)
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024
ARENA_MAX = 2


def tune_malloc(environ: dict | None = None) -> bool:
    """Apply the settings above; True when glibc accepted them."""
    environ = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return False
    if "MALLOC_ARENA_MAX" in environ or "MALLOC_MMAP_THRESHOLD_" in environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = mallopt(M_ARENA_MAX, ARENA_MAX) == 1 and ok
    return ok


_BLAS_SETTERS = ("openblas_set_num_threads", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads64_",
                 "scipy_openblas_set_num_threads")


def limit_blas_threads(environ: dict | None = None) -> int:
    """One thread for every OpenBLAS loaded in this process (numpy's); returns how many were set.
    ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` in the environment win: then nothing is changed."""
    environ = os.environ if environ is None else environ
    if "OPENBLAS_NUM_THREADS" in environ or "OMP_NUM_THREADS" in environ:
        return 0
    import numpy  # noqa: F401  (loads the OpenBLAS to limit)

    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower() and ".so" in line}
    except OSError:  # not Linux
        return 0
    done = 0
    for path in sorted(p for p in paths if p.startswith("/")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _BLAS_SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter.argtypes = [ctypes.c_int]
                setter(1)
                done += 1
                break
    return done
