"""Hard limits every decoder enforces.

Limits live here, in one frozen object, so that the hook (which must never
produce a batch the sidecar refuses) and the sidecar (which must never let a
hostile body allocate without bound) agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits", "DEFAULT_LIMITS"]


@dataclass(frozen=True)
class Limits:
    """Upper bounds for one decoded batch body.

    Every bound is inclusive: a value equal to the limit is accepted.
    """

    max_body_bytes: int = 32 * 1024 * 1024
    max_rows: int = 1_000_000
    max_columns: int = 2_048
    max_calls: int = 1_000_000
    max_name_length: int = 256  # characters, column and class names
    max_string_length: int = 4_096  # characters, one string cell
    max_meta_entries: int = 64

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive int, got {value!r}")


DEFAULT_LIMITS = Limits()
