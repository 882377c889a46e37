"""Process-wide allocator settings for the sidecar process (glibc only; a no-op elsewhere).

Why: the sidecar allocates and frees many arrays of a few hundred KiB (window sketches,
merges, checkpoint blobs) from several threads. With glibc's defaults the mmap threshold
rises after the first such free, so later ones come from per-thread heap arenas that keep
the freed memory: RSS crept up ~12% over 10 minutes at steady load with no Python-level
growth (tracemalloc). Pinning the mmap threshold at 128 KiB (large blocks go back to the OS
on free) and capping arenas at 2 keeps it flat (measured in ``benchmarks/bench_sidecar.py``).

Only the CLI calls :func:`tune_malloc` (it owns the process); embedding programs
(``run_in_thread``) keep their own allocator settings. Explicit ``MALLOC_ARENA_MAX`` /
``MALLOC_MMAP_THRESHOLD_`` in the environment win: then nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["tune_malloc", "MMAP_THRESHOLD", "ARENA_MAX"]

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
