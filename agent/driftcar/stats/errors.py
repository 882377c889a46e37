"""Errors of the statistics engine."""

from __future__ import annotations

__all__ = ["ProfileError"]


class ProfileError(ValueError):
    """A profile or window that cannot be built or read; ``reason`` says why.

    Raised for corrupt, truncated or wrong-version files, for a window that
    does not belong to the profile it is loaded against, and for input that
    cannot be profiled (no rows, no columns, ragged columns).
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
