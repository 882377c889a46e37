"""``driftcar report`` end to end: CSV files -> the CLI -> one HTML file opened in headless
Chromium from disk (no server); the DOM must show exactly the shifted columns as drifted,
with daily windows cut from a time column. Screenshots at 1280 and 390 px wide."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd

from tests.integration.view.browser import Verdicts, chromium, dump_dom, keep_screenshot, screenshot

SHIFTED = {"age", "plan"}
CLEAN = {"income", "tenure"}


def tables(tmp_path):
    rng = np.random.default_rng(7)
    n, m = 20_000, 8 * 1_000

    def table(rows: int) -> pd.DataFrame:
        return pd.DataFrame({"age": rng.normal(40, 10, rows), "income": rng.lognormal(10, 1, rows),
                             "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2]),
                             "tenure": rng.exponential(3, rows)})

    table(n).to_csv(tmp_path / "train.csv", index=False)
    cur = table(m)
    cur.insert(0, "ts", pd.date_range("2026-03-01", periods=m, freq="2min").strftime("%Y-%m-%dT%H:%M:%SZ"))
    late = np.arange(m) >= m // 2  # the second half drifts: age shifts, a new plan appears
    cur.loc[late, "age"] += 8
    cur.loc[late, "plan"] = rng.choice(["basic", "plus", "pro", "enterprise"], late.sum(), p=[0.2, 0.3, 0.3, 0.2])
    cur.to_csv(tmp_path / "live.csv", index=False)
    return tmp_path / "train.csv", tmp_path / "live.csv"


def test_report_file_shows_the_drifted_columns_in_a_browser(tmp_path):
    chromium()
    train, live = tables(tmp_path)
    out = tmp_path / "report.html"
    proc = subprocess.run([sys.executable, "-m", "driftcar.cli", "report", str(train), str(live), "--out", str(out),
                           "--time-column", "ts", "--window", "1d", "--fail-on-drift"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr  # --fail-on-drift: drift found
    assert "drifted: " in proc.stdout and "wrote " in proc.stdout
    assert "[" not in proc.stderr, "no progress bar when stderr is not a terminal"

    html_file = out.read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html_file), "the report must be self-contained"
    html = dump_dom(out.as_uri(), run_ms=1_000)
    rows = Verdicts(html).of("live@report")
    assert {f for f, (v, _) in rows.items() if v == "drifted" and not f.startswith("__")} == SHIFTED, rows
    for feature in CLEAN:
        assert rows[feature][0] == "ok" and "DRIFTED" not in rows[feature][1]
    for feature in SHIFTED:
        assert "DRIFTED" in rows[feature][1]
    assert "12 × 1d" in html  # 8,000 rows every 2 minutes: 11.1 days, 12 daily windows
    assert html.count('class="pt hit"') >= 2 * 5, "drifted windows drawn as drift in the score history"

    wide = screenshot(out.as_uri(), str(tmp_path / "report.png"), 1280, 1000)
    phone = screenshot(out.as_uri(), str(tmp_path / "report-phone.png"), 390, 1100)
    keep_screenshot(wide, "report.png")
    keep_screenshot(phone, "report-phone.png")
