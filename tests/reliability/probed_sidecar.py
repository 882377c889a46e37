"""``driftcar sidecar`` through its real CLI, plus an event-loop lag probe (test-only launcher).

Run as ``python probed_sidecar.py PROBE_FILE sidecar --grpc ...``. After the service has
started, a probe task on the sidecar's own loop sleeps 10 ms at a time and records

- ``max_lag_s``: the largest wall-clock overshoot of those sleeps (includes time the
  OS or other processes took the CPU away: on a shared machine this is noisy), and
- ``max_busy_s``: the largest CPU time the loop's thread itself spent between two
  probe wake-ups (``time.thread_time``) -- work done on the loop -- with ``busiest_sys_s``,
  the part of that interval spent in the kernel (page faults, system calls), and
- ``max_busy_user_s``: the largest user-mode CPU time of the loop's thread between two
  wake-ups (``getrusage(RUSAGE_THREAD)``, the kernel's split of the thread's time, tick-based):
  the loop's own work without the kernel's cost of the pages it touched, and
- ``max_own_stall_s``: the largest lag during which the sidecar process itself was
  on the CPU as long (``min(lag, process CPU time)``): work on the loop *or* another
  thread holding the GIL. A lag while the process was not on the CPU at all is the
  machine's doing (other processes), not a stall caused by the sidecar.

Both are written to PROBE_FILE as JSON every 200 ms (atomic rename), with counts over 100 ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time

INTERVAL_S = 0.01
STALL_S = 0.1


async def _probe(path: str) -> None:
    state = {"samples": 0, "max_lag_s": 0.0, "max_busy_s": 0.0, "max_own_stall_s": 0.0, "busiest_sys_s": 0.0,
             "max_busy_user_s": 0.0, "lag_over_100ms": 0,
             "busy_over_100ms": 0, "own_stall_over_100ms": 0}
    last_write = 0.0
    while True:
        wall, cpu, process = time.perf_counter(), time.thread_time(), time.process_time()
        before = resource.getrusage(resource.RUSAGE_THREAD)
        await asyncio.sleep(INTERVAL_S)
        lag = time.perf_counter() - wall - INTERVAL_S
        busy = time.thread_time() - cpu
        after = resource.getrusage(resource.RUSAGE_THREAD)
        if busy > state["max_busy_s"]:
            state["busiest_sys_s"] = after.ru_stime - before.ru_stime
        state["max_busy_user_s"] = max(state["max_busy_user_s"], after.ru_utime - before.ru_utime)
        own = min(lag, time.process_time() - process)
        state["samples"] += 1
        state["max_lag_s"] = max(state["max_lag_s"], lag)
        state["max_busy_s"] = max(state["max_busy_s"], busy)
        state["lag_over_100ms"] += lag > STALL_S
        state["busy_over_100ms"] += busy > STALL_S
        state["max_own_stall_s"] = max(state["max_own_stall_s"], own)
        state["own_stall_over_100ms"] += own > STALL_S
        now = time.monotonic()
        if now - last_write > 0.2:
            last_write = now
            tmp = path + ".tmp"
            with open(tmp, "w") as fh:
                json.dump(state, fh)
            os.replace(tmp, path)


def main() -> None:
    path, argv = sys.argv[1], sys.argv[2:]
    from driftcar import cli
    from driftcar.sidecar import service

    original = service.SidecarService.start

    async def start(self):
        await original(self)
        self._reliability_probe = asyncio.get_running_loop().create_task(_probe(path))

    service.SidecarService.start = start
    cli.main(argv)


if __name__ == "__main__":
    main()
