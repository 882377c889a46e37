"""Short (CI) and long (``DRIFTCAR_LONG=1``) sizes of the reliability checks, from one place.

Every check reads its size here so the short and the long run are the same code.
One size can be overridden with ``RELIABILITY_<NAME>`` (for example
``RELIABILITY_FUZZ_INPUTS=5000``); the ``DRIFTCAR_`` prefix is avoided on purpose
because the sidecar refuses unknown ``DRIFTCAR_*`` variables.
"""

from __future__ import annotations

import os

LONG = os.environ.get("DRIFTCAR_LONG") == "1"

#: name -> (short, long); the README's table is written from this
SIZES: dict[str, tuple[float, float]] = {
    "OUTAGE_S": (4, 60),  # 1) seconds down, then the same seconds black-holed
    "OVERLOAD_S": (6, 300),  # 3) seconds at twice the sustainable ingest rate
    "KILLS": (3, 50),  # 4) kill -9 under load, each followed by a restart
    "PREFORK_RECYCLES": (8, 50),  # 6) gunicorn worker recycles (max_requests)
    "SOAK_S": (20, 1800),  # 7) seconds of steady load
    "FUZZ_INPUTS": (600, 100_000),  # 8) generated inputs per receiver endpoint
    "CARDINALITY": (50_000, 50_000),  # 10) distinct category values / model names
    "FEATURE_NAMES": (10_000, 50_000),  # 10) distinct feature names (2,000 per model; slower: 25 models long)
    "FEATURE_MEMORY": (2_000, 50_000),  # 12) features of one model with 60 kept windows (memory per feature)
}


def size(name: str) -> int:
    """The size of one check for this run (``RELIABILITY_<NAME>`` wins)."""
    short, long = SIZES[name]
    override = os.environ.get(f"RELIABILITY_{name}")
    if override:
        return int(float(override))
    return int(long if LONG else short)
