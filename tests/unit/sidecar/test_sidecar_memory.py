"""Allocator tuning: applied by the CLI on glibc, skipped when the user set MALLOC_* explicitly."""

import sys

import pytest

from driftcar.sidecar.memory import limit_blas_threads, tune_malloc


def test_explicit_environment_wins():
    assert tune_malloc({"MALLOC_ARENA_MAX": "4"}) is False
    assert tune_malloc({"MALLOC_MMAP_THRESHOLD_": "65536"}) is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_accepts_the_settings():
    assert tune_malloc({}) is True


def test_blas_limited_to_one_thread_in_a_fresh_process():
    """In a child (the test process keeps its own BLAS threads): every OpenBLAS numpy loaded runs 1 thread."""
    import json
    import os
    import subprocess

    pytest.importorskip("threadpoolctl")
    code = ("import json, threadpoolctl; from driftcar.sidecar.memory import limit_blas_threads; "
            "n = limit_blas_threads({}); "
            "print(json.dumps([n, [i['num_threads'] for i in threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas']]))")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True)
    done, threads = json.loads(out.stdout)
    assert done >= 1 and threads and set(threads) == {1}
    assert limit_blas_threads({"OPENBLAS_NUM_THREADS": "4"}) == 0  # the user's setting wins
