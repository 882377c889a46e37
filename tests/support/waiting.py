"""Wait on conditions with deadlines (never sleep-and-hope), pick loopback ports."""

from __future__ import annotations

import collections
import os
import shutil
import socket
import threading
import time
from typing import Callable, TypeVar

import pytest

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns a truthy value; fail the test at the deadline.

    Exceptions from ``predicate`` count as "not yet" (a server still starting). To stop waiting
    at once, e.g. when the process being waited for has exited, call ``pytest.fail`` in it.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # keep polling; report the last error at the deadline
            last_exc = exc
        if time.monotonic() >= deadline:
            suffix = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}{suffix}")
        time.sleep(interval)


_GIVEN: collections.deque = collections.deque(maxlen=4096)  # the ports this process was handed last
_GIVEN_LOCK = threading.Lock()


def free_port() -> int:
    """A loopback port free right now and not handed out by this function before (among the last
    4,096): a port closed after it was found free may be found free again at once, and two
    "free" ports asked one after the other were once the same one (two listeners on one port)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with _GIVEN_LOCK:
            if port not in _GIVEN:
                _GIVEN.append(port)
                return port
    raise AssertionError("no loopback port free that was not handed out already")


def require_binary(name: str) -> str:
    """Path of an external binary; skip without it, or fail when CI demands everything."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian package / PyPI package providing it)"
    if os.environ.get("DRIFTCAR_REQUIRE_ALL") == "1":
        pytest.fail(message)
    pytest.skip(message)


def rotel_binary() -> str:
    """The rotel collector binary shipped inside the ``rotel`` PyPI package."""
    try:
        import rotel
    except ImportError:
        return require_binary("rotel-agent")
    path = os.path.join(os.path.dirname(rotel.__file__), "rotel-agent")
    if not os.access(path, os.X_OK):
        pytest.fail(f"rotel-agent not executable at {path}")
    return path


def stop_process(proc, timeout: float = 10.0) -> int | None:
    """SIGTERM a child process, SIGKILL it if it outlives ``timeout``; returns its exit code."""
    import subprocess

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port`` (a readiness probe for servers)."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0
