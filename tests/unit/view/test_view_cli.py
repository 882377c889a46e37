"""``driftcar report`` as a command: progress bar on request, clear errors with status 2."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd


def _run(*args, env=None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCAR_")}
    return subprocess.run([sys.executable, "-m", "driftcar.cli", "report", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env={**clean, **(env or {})})


def test_progress_bar_and_summary(tmp_path):
    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=3_000)}).to_csv(tmp_path / "ref.csv", index=False)
    pd.DataFrame({"a": rng.normal(size=2_000)}).to_csv(tmp_path / "cur.csv", index=False)
    out = tmp_path / "r.html"
    proc = _run(tmp_path / "ref.csv", tmp_path / "cur.csv", "--out", out, "--progress", "always",
                "--chunk-rows", "500", "--rows", "1000")
    assert proc.returncode == 0, proc.stderr
    assert "reference 1/2 ref.csv" in proc.stderr and "current cur.csv" in proc.stderr and "100.0%" in proc.stderr
    assert "over 2 window(s); drifted: none" in proc.stdout and out.read_text().startswith("<!DOCTYPE html>")


def test_bad_input_exits_2_with_the_reason(tmp_path):
    (tmp_path / "ref.csv").write_text("a\n1\n2\n")
    (tmp_path / "cur.csv").write_text("a,b\n1\n")
    missing = _run(tmp_path / "nope.csv", tmp_path / "cur.csv", "--out", tmp_path / "x.html")
    assert missing.returncode == 2 and "nope.csv" in missing.stderr
    ragged = _run(tmp_path / "ref.csv", tmp_path / "cur.csv", "--out", tmp_path / "x.html")
    assert ragged.returncode == 2 and "cur.csv:2: 1 fields, header has 2" in ragged.stderr
    alone = _run(tmp_path / "ref.csv", tmp_path / "ref.csv", "--window", "1d")
    assert alone.returncode == 2 and "--time-column and --window go together" in alone.stderr
    assert not (tmp_path / "x.html").exists()


def test_options_from_environment_and_config_file(tmp_path):
    rng = np.random.default_rng(1)
    pd.DataFrame({"a": rng.normal(size=3_000)}).to_csv(tmp_path / "ref.csv", index=False)
    pd.DataFrame({"a": rng.normal(0.3, 1, 3_000)}).to_csv(tmp_path / "cur.csv", index=False)
    (tmp_path / "report.yaml").write_text("rows: 1000\nfail-on-drift: true\ndrift: {exit_windows: 1}\n")
    proc = _run(tmp_path / "ref.csv", tmp_path / "cur.csv", "--config", tmp_path / "report.yaml",
                env={"DRIFTCAR_REPORT_OUT": str(tmp_path / "env.html"), "DRIFTCAR_REPORT_ROWS": "1500"})
    assert proc.returncode == 1, proc.stderr  # fail-on-drift from the file; a 0.3 sd shift drifts
    assert "over 2 window(s)" in proc.stdout  # the variable (1500 rows) wins over the file (1000)
    assert (tmp_path / "env.html").exists()
    bad = _run(tmp_path / "ref.csv", tmp_path / "cur.csv", env={"DRIFTCAR_REPORT_ROWS": "zero",
                                                                 "DRIFTCAR_REPORT_DRIFT": "{nonsense: 1}"})
    assert bad.returncode == 2 and "DRIFTCAR_REPORT_ROWS" in bad.stderr and "DRIFTCAR_REPORT_DRIFT" in bad.stderr
