"""Debian's headless Chromium driven from the command line: load a page, run its scripts,
read the resulting DOM, take screenshots. No WebDriver, no browser download.

Every run gets a fresh profile directory and no network beyond what the page asks for
(background networking, component updates and sync are off). Skips without chromium,
fails instead when ``DRIFTCAR_REQUIRE_ALL=1`` (CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser

from tests.support.waiting import require_binary

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--disable-dev-shm-usage")


def chromium() -> str:
    return require_binary("chromium")


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="driftcar-chromium-")
    try:
        proc = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if proc.returncode != 0:
        raise AssertionError(f"chromium exited with {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}")
    return proc


def dump_dom(url: str, run_ms: int = 6000, width: int = 1280, timeout: float = 60.0) -> str:
    """The DOM after the page's scripts ran for ``run_ms`` of virtual time (timers fire, fetches finish)."""
    proc = _run([f"--window-size={width},900", f"--virtual-time-budget={run_ms}", "--dump-dom", url], timeout)
    return proc.stdout.decode("utf-8", errors="replace")


def screenshot(url: str, path: str, width: int, height: int, run_ms: int = 1000, timeout: float = 60.0) -> str:
    """A PNG of the first ``width`` x ``height`` pixels of the page."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _run([f"--window-size={width},{height}", f"--virtual-time-budget={run_ms}", f"--screenshot={path}", url], timeout)
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return path


def keep_screenshot(path: str, name: str) -> None:
    """Copy a screenshot to ``$DRIFTCAR_SCREENSHOTS/name`` when set (how docs/*.png are refreshed)."""
    target = os.environ.get("DRIFTCAR_SCREENSHOTS")
    if target:
        os.makedirs(target, exist_ok=True)
        shutil.copyfile(path, os.path.join(target, name))


class Verdicts(HTMLParser):
    """Collects what the page says per feature: ``data-verdict`` of the table rows and their text."""

    def __init__(self, html: str):
        super().__init__()
        self.rows: dict[tuple[str, str], tuple[str, str]] = {}  # (model, feature) -> (data-verdict, text)
        self.body: dict[str, str] = {}
        self._model = ""
        self._row: list | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = {k: v or "" for k, v in a.items()}
        if tag == "section" and "data-model" in a:
            self._model = a["data-model"]
        if tag == "tr" and "data-feature" in a:
            self._row = [a["data-feature"], a.get("data-verdict", ""), ""]

    def handle_data(self, data):
        if self._row is not None:
            self._row[2] += data

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            feature, verdict, text = self._row
            self.rows[(self._model, feature)] = (verdict, " ".join(text.split()))
            self._row = None

    def of(self, model: str) -> dict[str, tuple[str, str]]:
        return {f: v for (m, f), v in self.rows.items() if m == model}
