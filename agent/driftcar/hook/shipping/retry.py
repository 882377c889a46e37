"""The hook's names for the shared retry loop (:mod:`driftcar.wire.retry`): one loop, one back-off."""

from driftcar.wire.retry import Backoff, Exporter, Outcome, RetryResult, RetryState, export_with_retry, retry

__all__ = ["Outcome", "Exporter", "Backoff", "RetryState", "RetryResult", "export_with_retry", "retry"]
