"""What an export attempt came to, and the one retry loop that acts on it.

The classification follows the OTLP specification ("Failures"): an exporter
turns its transport's answer into an :class:`Outcome` (success, retryable with
an optional server hint, or permanent), and :func:`export_with_retry` retries
retryable outcomes with capped, jittered exponential backoff. A server hint
(gRPC ``RetryInfo`` / HTTP ``Retry-After``) replaces the backoff for that
attempt. No wait ever ends past the export deadline (the export gives up
instead), and every wait is cut short by the ``stop`` event.

Thread safety: :func:`export_with_retry` runs on the shipper's worker thread;
``stop`` may be set from any thread.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

__all__ = ["Outcome", "Exporter", "Backoff", "RetryResult", "export_with_retry"]


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

    @classmethod
    def success(cls, rejected: int = 0, detail: str = "") -> "Outcome":
        return cls(ok=True, rejected=rejected, detail=detail)

    @classmethod
    def retry(cls, error: str, retry_after_s: float | None = None, detail: str = "") -> "Outcome":
        return cls(ok=False, retryable=True, retry_after_s=retry_after_s, error=error, detail=detail)

    @classmethod
    def permanent(cls, error: str, detail: str = "") -> "Outcome":
        return cls(ok=False, retryable=False, error=error, detail=detail)


class Exporter(Protocol):
    """Sends one serialized ``ExportLogsServiceRequest``; one per transport.

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
    """Capped exponential backoff with multiplicative jitter.

    The n-th wait (n = 0, 1, ...) is ``min(initial * 2**n, maximum) * uniform(1 - jitter, 1 + jitter)``.

    >>> b = Backoff(initial_s=1.0, maximum_s=4.0, jitter=0.0)
    >>> [b.delay(n) for n in range(4)]
    [1.0, 2.0, 4.0, 4.0]
    """

    initial_s: float = 1.0
    maximum_s: float = 32.0
    jitter: float = 0.2
    rng: random.Random | None = None

    def delay(self, attempt: int) -> float:
        base = min(self.initial_s * (2.0 ** min(attempt, 62)), self.maximum_s)
        if not self.jitter:
            return base
        rng = self.rng or random
        return base * rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)


@dataclass(frozen=True)
class RetryResult:
    """Final outcome of an export and how many retries it took."""

    outcome: Outcome
    retries: int
    attempts: int
    outcomes: tuple[Outcome, ...]  # every failed attempt, for counting and logging


def export_with_retry(
    exporter: Exporter,
    payload: bytes,
    *,
    deadline: float,
    backoff: Backoff,
    stop: threading.Event,
    clock=time.monotonic,
    observe: Callable[[Outcome], None] | None = None,
) -> RetryResult:
    """Export ``payload`` until success, a permanent failure, the deadline or ``stop``.

    ``deadline`` is a ``clock()`` time. A retry whose wait would end past the
    deadline is not attempted: the export fails at once (it would fail anyway).
    When ``stop`` is set while waiting, the export fails without a new attempt.
    ``observe`` sees every attempt's outcome as it comes (the shipper's
    connection state stays current during a long outage).
    """
    failures: list[Outcome] = []
    attempt = 0
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            outcome = failures[-1] if failures else Outcome.retry("deadline exceeded before the first attempt")
            return RetryResult(outcome, max(attempt - 1, 0), attempt, tuple(failures))
        outcome = exporter.export(payload, remaining)
        attempt += 1
        if observe is not None:
            observe(outcome)
        if outcome.ok or not outcome.retryable:
            if not outcome.ok:
                failures.append(outcome)
            return RetryResult(outcome, attempt - 1, attempt, tuple(failures))
        failures.append(outcome)
        wait = outcome.retry_after_s if outcome.retry_after_s is not None else backoff.delay(attempt - 1)
        if clock() + wait > deadline:
            return RetryResult(outcome, attempt - 1, attempt, tuple(failures))
        if stop.wait(wait):
            return RetryResult(outcome, attempt - 1, attempt, tuple(failures))
