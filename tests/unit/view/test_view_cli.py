"""``driftcar report`` as a command: progress bar on request, clear errors with status 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd


def _run(*args):
    return subprocess.run([sys.executable, "-m", "driftcar.cli", "report", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


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
