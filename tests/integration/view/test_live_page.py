"""The live page in a real browser: a scikit-learn model instrumented with driftcar sends clean
then drifted traffic to ``driftcar sidecar`` (a child process, 1 s windows, a bearer token);
headless Chromium opens the page with the token, runs its refresh script, and the DOM must
show exactly the shifted features as drifted and the accuracy of late labels as scikit-learn
computes it. Screenshots at 1280 and 390 px wide."""

from __future__ import annotations

import contextlib
import re
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
from opentelemetry.sdk.trace import TracerProvider
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import driftcar
from driftcar.view.svg import fmt
from tests.integration.sidecar.sidecar_helpers import SidecarProcess, get_json
from tests.integration.view.browser import Verdicts, chromium, dump_dom, keep_screenshot, screenshot
from tests.support.waiting import wait_until

NUMERIC = ["age", "income", "tenure", "visits"]
SHIFTED = {"age", "plan"}
CLEAN = {"income", "tenure", "visits"}
TOKEN = "page-" + "t0k" * 8


def frame(n: int, seed: int, shifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {name: rng.normal(0.0, 1.0, n) for name in NUMERIC}
    data["plan"] = rng.choice(np.array(["basic", "plus", "pro"], dtype=object), n,
                              p=[0.2, 0.3, 0.5] if shifted else [0.5, 0.3, 0.2])
    if shifted:
        data["age"] = data["age"] + 1.5
    return pd.DataFrame(data)


def model() -> Pipeline:
    prep = ColumnTransformer([("num", StandardScaler(), NUMERIC),
                              ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])])
    return Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=200))])


def _status(url: str, headers=None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _clean_then_drifted(sidecar, clf, monitor, auth) -> None:
    """Three clean windows (the score history starts under the threshold), then drift until the
    JSON API reports the shifted features."""

    def closed_windows() -> int:
        status, body = get_json(f"{sidecar.http}/v1/models", auth)
        return sum(m["closed_windows"] for m in body["models"] if m["name"] == "churn") if status == 200 else 0

    for seed in range(10, 13):
        clf.predict(frame(600, seed, shifted=False))
        assert monitor.flush(20)
        wait_until(lambda s=seed: closed_windows() >= s - 9, 20, what=f"clean window {seed - 9}")

    def drifted():
        for seed in range(20, 22):
            clf.predict(frame(600, seed, shifted=True))
        monitor.flush(20)
        status, body = get_json(f"{sidecar.http}/v1/models/churn/drift", auth)
        doc = body["versions"][0] if status == 200 else {}
        return set(doc.get("drift_detected", ())) >= SHIFTED

    wait_until(drifted, 40, interval=0.3, what=f"drift verdicts in the JSON API\n{sidecar.log()}")


def _late_labels(sidecar, clf, monitor, auth) -> str:
    """Labels for one batch; the accuracy scikit-learn computes on it, as the page prints it."""
    X_lab = frame(500, 30, shifted=True)
    ids = [f"r{i}" for i in range(len(X_lab))]
    with monitor.ids(ids):
        pred = clf.predict(X_lab)
    y_lab = (X_lab["income"] + X_lab["tenure"] > 0.3).astype(np.int64).to_numpy()
    monitor.log_labels(ids, y_lab)
    assert monitor.flush(20)

    def accuracy():
        status, body = get_json(f"{sidecar.http}/v1/models/churn/drift", auth)
        return status == 200 and body["versions"][0]["performance"].get("accuracy") is not None

    wait_until(accuracy, 20, interval=0.2, what="accuracy from the late labels")
    return fmt(accuracy_score(y_lab, pred))


def test_live_page_shows_the_drifted_features_in_a_browser(tmp_path):
    chromium()  # skip (or fail under DRIFTCAR_REQUIRE_ALL) before starting anything
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with contextlib.ExitStack() as stack:
        sidecar = stack.enter_context(SidecarProcess(
            tmp_path, "--window", "1s", "--export", "none", "--live-reference-rows", "0",
            "--token-file", str(token_file), "--drift", "{exit_windows: 1}"))
        X_train = frame(4_000, seed=1, shifted=False)
        y_train = (X_train["income"] + X_train["tenure"] > 0).astype(np.int64).to_numpy()
        clf = model()
        endpoint = f"http://127.0.0.1:{sidecar.ports['grpc']}"
        monitor = driftcar.instrument(clf, name="churn", version="7", endpoint=endpoint,
                                      tracer_provider=TracerProvider(), max_batch_age_s=0.1, headers=auth)
        stack.callback(monitor.shutdown, 10)
        clf.fit(X_train, y_train)
        monitor.set_reference(X_train, y_train, predictions=clf.predict(X_train))
        assert monitor.flush(20)
        _clean_then_drifted(sidecar, clf, monitor, auth)
        expected_accuracy = _late_labels(sidecar, clf, monitor, auth)

        page = f"{sidecar.http}/"
        assert _status(page) == 401  # same auth as the JSON API
        assert _status(f"{page}?token=wrong") == 401
        assert _status(page, auth) == 200

        html = dump_dom(f"{page}?token={TOKEN}", run_ms=6_000)
        seen = Verdicts(html)
        assert int(seen.body.get("data-refreshes") or 0) >= 1, "the page did not refresh itself"
        rows = seen.of("churn@7")
        for feature in SHIFTED:
            verdict, text = rows[feature]
            assert verdict == "drifted" and "DRIFTED" in text, (feature, rows[feature])
        for feature in CLEAN:
            verdict, text = rows[feature]
            assert verdict == "ok" and "DRIFTED" not in text, (feature, rows[feature])
        order = [verdict for verdict, _ in rows.values()]
        assert order == sorted(order, key=lambda v: v != "drifted"), f"drifted features first, got {rows}"
        assert re.search(r'<svg class="chart"', html) and "threshold" in html
        assert "driftcar.drift.detected" in html
        assert f"<dt>accuracy</dt><dd>{expected_accuracy}</dd>" in html
        assert re.search(r"[0-9a-f]{32}", html), "sample trace ids of the drift events"
        assert not re.search(r"(src|href)=\"https?://", html), "the page loads nothing from elsewhere"

        wide = screenshot(f"{page}?token={TOKEN}", str(tmp_path / "page.png"), 1280, 1000)
        phone = screenshot(f"{page}?token={TOKEN}", str(tmp_path / "page-phone.png"), 390, 1100)
        keep_screenshot(wide, "page.png")
        keep_screenshot(phone, "page-phone.png")
