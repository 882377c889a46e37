"""The benchmarks' one timing rule: the best of ``repeat`` runs (the least disturbed by other work on
a shared machine), in wall seconds or in this process's CPU seconds."""

from __future__ import annotations

import time
from typing import Callable


def best(fn: Callable[[], object], repeat: int, number: int = 1) -> float:
    """Best-of-``repeat`` wall seconds per call of ``fn``, each run timing ``number`` calls."""
    fastest = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            fn()
        fastest = min(fastest, (time.perf_counter() - started) / number)
    return fastest


def best_cpu(fn: Callable[[], object], repeat: int) -> float:
    """Best-of-``repeat`` CPU seconds of this process per call: a rate per core, less disturbed by
    other work on a shared machine than wall time (numpy's BLAS threads excepted)."""
    fastest = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        fn()
        fastest = min(fastest, time.process_time() - started)
    return fastest
