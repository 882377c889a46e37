"""One retry loop and one back-off for every OTLP export driftcar makes.

The hook's shipper, the fleet forwarder and the sidecar's gRPC exporters all retry through
:func:`retry`. The classification follows the OTLP specification ("Failures"): a transport turns
its answer into an :class:`Outcome` (success, retryable with an optional server hint, or
permanent); retryable outcomes are retried after a capped, jittered exponential back-off, and a
server hint (gRPC ``RetryInfo`` / HTTP ``Retry-After``) replaces the back-off for that wait.

The back-off lives in a :class:`RetryState` that may outlive one export. Kept across exports (the
shipper keeps one per endpoint), a long outage costs one attempt per back-off period, whatever
the number of batches sealed meanwhile: an export whose deadline comes before the next allowed
attempt fails at once, without touching the transport. With a fresh state per export, every
export starts with an immediate attempt, as the OpenTelemetry SDK's exporters do.

No wait ever ends past the export deadline (the export gives up instead), every wait is an
``Event.wait`` cut short by ``stop`` (no polling), and ``clock`` is injectable for tests.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

__all__ = ["Outcome", "Exporter", "Backoff", "RetryState", "RetryResult", "retry", "export_with_retry",
           "DEFAULT_MAX_BACKOFF_S"]

#: the cap of every back-off unless configured (the OpenTelemetry SDK's exporters use 32 s too)
DEFAULT_MAX_BACKOFF_S = 32.0


@dataclass(frozen=True)
class Outcome:
    """The result of one export attempt.

    ``rejected``: log records the receiver refused in a partial success
    (never retried). ``retry_after_s``: the server's hint, when it gave one.
    """

    ok: bool
    retryable: bool = False
    retry_after_s: float | None = None
    rejected: int = 0
    error: str = ""  # short reason; stable per kind of problem (used to log each kind once)
    detail: str = ""  # message from the server or the exception text
    #: no answer came, though the request may have reached the receiver (a timeout, a connection
    #: lost after sending): whether it was applied is unknown
    unanswered: bool = False

    @classmethod
    def success(cls, rejected: int = 0, detail: str = "") -> "Outcome":
        return cls(ok=True, rejected=rejected, detail=detail)

    @classmethod
    def retry(cls, error: str, retry_after_s: float | None = None, detail: str = "",
              unanswered: bool = False) -> "Outcome":
        return cls(ok=False, retryable=True, retry_after_s=retry_after_s, error=error, detail=detail,
                   unanswered=unanswered)

    @classmethod
    def permanent(cls, error: str, detail: str = "") -> "Outcome":
        return cls(ok=False, retryable=False, error=error, detail=detail)


class Exporter(Protocol):
    """Sends one serialized OTLP request; one per transport.

    ``export`` blocks for at most ``timeout_s`` and never raises: every failure
    is an :class:`Outcome`. ``abort`` (any thread) cuts an export in flight
    short; ``close`` releases connections. Exporters are used by one worker
    thread at a time.
    """

    def export(self, payload: bytes, timeout_s: float) -> Outcome: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class Backoff:
    """Capped exponential back-off with multiplicative jitter.

    The n-th wait (n = 0, 1, ...) is ``min(initial * 2**n, maximum) * uniform(1 - jitter, 1 + jitter)``.

    >>> b = Backoff(initial_s=1.0, maximum_s=4.0, jitter=0.0)
    >>> [b.delay(n) for n in range(4)]
    [1.0, 2.0, 4.0, 4.0]
    """

    initial_s: float = 1.0
    maximum_s: float = DEFAULT_MAX_BACKOFF_S
    jitter: float = 0.2
    rng: random.Random | None = None

    def delay(self, attempt: int) -> float:
        base = min(self.initial_s * (2.0 ** min(attempt, 62)), self.maximum_s)
        if not self.jitter:
            return base
        rng = self.rng or random
        return base * rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)

    def longest(self, attempt: int) -> float:
        """The most the ``attempt``-th wait can be (its jitter at the top)."""
        return min(self.initial_s * (2.0 ** min(attempt, 62)), self.maximum_s) * (1.0 + self.jitter)


class RetryState:
    """An endpoint's back-off: retryable failures in a row, and the earliest next attempt.

    A success, or a permanent failure (a server answered), clears it. Used by one thread.
    """

    def __init__(self, backoff: Backoff, clock: Callable[[], float] = time.monotonic):
        self.backoff = backoff
        self.clock = clock
        self.failures = 0
        self.not_before = float("-inf")

    def failed(self, hint_s: float | None = None) -> float:
        """Record a retryable failure; the wait before the next attempt (the hint, else the back-off)."""
        wait = hint_s if hint_s is not None else self.backoff.delay(self.failures)
        self.failures += 1
        self.not_before = self.clock() + wait
        return wait

    def clear(self) -> None:
        self.failures = 0
        self.not_before = float("-inf")

    def wait_s(self) -> float:
        """Seconds until the next attempt is allowed (0 when it is)."""
        return max(self.not_before - self.clock(), 0.0)


@dataclass(frozen=True)
class RetryResult:
    """Final outcome of an export and how many attempts it took."""

    outcome: Outcome
    retries: int
    attempts: int
    outcomes: tuple[Outcome, ...]  # every failed attempt, for counting and logging


def _give_up(failures: list[Outcome], attempts: int, why: str) -> RetryResult:
    outcome = failures[-1] if failures else Outcome.retry(why)
    return RetryResult(outcome, max(attempts - 1, 0), attempts, tuple(failures))


def retry(
    attempt: Callable[[float], Outcome],
    *,
    deadline: float,
    state: RetryState,
    stop: threading.Event,
    observe: Callable[[Outcome], None] | None = None,
    max_attempts: int | None = None,
) -> RetryResult:
    """Call ``attempt(seconds_left)`` until success, a permanent failure, the deadline, ``stop``
    or ``max_attempts``; waits as ``state`` says between attempts (and before the first one when
    an earlier export left the endpoint backing off).

    ``deadline`` is a ``state.clock()`` time. A wait that would end past it is not made: the
    export fails at once (it would fail anyway). ``observe`` sees every attempt's outcome as it
    comes (a caller's connection state stays current through a long outage).
    """
    clock = state.clock
    failures: list[Outcome] = []
    attempts = 0
    while True:
        wait = state.wait_s()
        if wait > 0:
            if clock() + wait > deadline:
                return _give_up(failures, attempts, "endpoint backing off: no attempt before the deadline")
            if stop.wait(wait):
                return _give_up(failures, attempts, "stopped while backing off")
        remaining = deadline - clock()
        if remaining <= 0:
            return _give_up(failures, attempts, "deadline exceeded before the first attempt")
        outcome = attempt(remaining)
        attempts += 1
        if observe is not None:
            observe(outcome)
        if outcome.ok or not outcome.retryable:
            state.clear()  # an answer from a server: the next export need not wait
            if not outcome.ok:
                failures.append(outcome)
            return RetryResult(outcome, attempts - 1, attempts, tuple(failures))
        failures.append(outcome)
        state.failed(outcome.retry_after_s)
        if max_attempts is not None and attempts >= max_attempts:
            return RetryResult(outcome, attempts - 1, attempts, tuple(failures))


def export_with_retry(
    exporter: Exporter,
    payload: bytes,
    *,
    deadline: float,
    stop: threading.Event,
    backoff: Backoff | None = None,
    state: RetryState | None = None,
    clock: Callable[[], float] = time.monotonic,
    observe: Callable[[Outcome], None] | None = None,
) -> RetryResult:
    """:func:`retry` of ``exporter.export(payload, ...)``: with ``state`` (kept by the caller across
    exports) or a fresh one built from ``backoff`` and ``clock`` (each export starts at once)."""
    if state is None:
        state = RetryState(backoff or Backoff(), clock)
    return retry(lambda remaining: exporter.export(payload, remaining), deadline=deadline, state=state, stop=stop,
                 observe=observe)
