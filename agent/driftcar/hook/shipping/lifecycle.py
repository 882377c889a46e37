"""Process-level hooks for every live shipper: fork safety and the flush at exit.

One ``os.register_at_fork`` and one ``atexit`` handler serve all shippers
(kept in a WeakSet so a dropped shipper is collected). In a forked child each
shipper is reset: fresh worker, empty buffer, new instance id, no gRPC channel
from the parent. At interpreter exit each shipper is shut down within its
``exit_timeout_s``, all of them within the largest of those deadlines.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref

__all__ = ["register"]

_SHIPPERS: "weakref.WeakSet" = weakref.WeakSet()
_LOCK = threading.Lock()
_INSTALLED = False


def _after_fork_in_child() -> None:
    global _LOCK
    _LOCK = threading.Lock()  # the parent may have held it at fork time
    for shipper in list(_SHIPPERS):
        try:
            shipper._after_fork_in_child()
        except Exception:  # never break the application's fork
            pass


def _at_exit() -> None:
    shippers = list(_SHIPPERS)
    if not shippers:
        return
    start = time.monotonic()
    for shipper in shippers:
        budget = shipper.config.exit_timeout_s - (time.monotonic() - start)
        try:
            shipper.shutdown(max(budget, 0.0))
        except Exception:
            pass


def register(shipper) -> None:
    """Track ``shipper`` for fork resets and the exit flush (idempotent)."""
    global _INSTALLED
    with _LOCK:
        if not _INSTALLED:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            atexit.register(_at_exit)
            _INSTALLED = True
        _SHIPPERS.add(shipper)
