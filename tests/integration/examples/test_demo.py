"""``driftcar demo`` as a new user runs it: a subprocess, real sidecar and hook inside, exit 0,
and a summary that names the features that were made to drift."""

from __future__ import annotations

import os
import subprocess
import sys

from driftcar.demo import DRIFTED


def test_demo_finds_the_injected_drift():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTCAR_", "OTEL_"))}
    result = subprocess.run(
        [sys.executable, "-m", "driftcar.cli", "demo", "--fast"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    summary = out[out.index("driftcar demo summary"):]
    found = next(line for line in summary.splitlines() if "drifted features found:" in line)
    assert set(found.split(":", 1)[1].replace(",", " ").split()) == set(DRIFTED), summary
    for feature in DRIFTED:
        assert f"    {feature}: " in summary and "s after the drift started" in summary
    assert "/metrics" in summary and "/v1/models/demo-churn/drift" in summary
    assert "\x1b[" not in out, "plain text when stdout is not a terminal"
