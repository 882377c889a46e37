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
    assert "live at http://127.0.0.1:" in out and "live page " in summary
    assert "\x1b[" not in out, "plain text when stdout is not a terminal"


def test_demo_forever_keeps_serving_prometheus_metrics_until_interrupted():
    import re
    import signal
    import urllib.request

    from tests.support.waiting import require_binary, wait_until

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTCAR_", "OTEL_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "driftcar.cli", "demo", "--fast", "--duration", "8", "--window", "1s", "--forever"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        lines = []
        for line in proc.stdout:  # the summary is printed before serving on
            lines.append(line)
            if "drift events" in line:
                break
        text = "".join(lines)
        url = re.search(r"Prometheus metrics\s+(\S+)", text).group(1)
        def scrape() -> str:
            return urllib.request.urlopen(url, timeout=5).read().decode()

        def calls(body: str) -> float:
            return sum(float(v) for v in re.findall(r"^driftcar_inference_calls_total\{[^}]*\} (\S+)$", body, re.M))

        first = calls(scrape())
        # still serving after the summary, with traffic flowing: the counter keeps rising
        def rising() -> str | None:
            body = scrape()
            return body if calls(body) > first else None

        body = wait_until(rising, timeout=20, what="calls counter rising after the summary")
        assert proc.poll() is None
        for feature in DRIFTED:
            assert re.search(r'driftcar_drift_detected_ratio\{[^}]*feature_name="%s"[^}]*\} 1' % feature, body), feature
        assert "driftcar_inference_calls_total{" in body
        page = urllib.request.urlopen(re.search(r"live page\s+(\S+)", text).group(1), timeout=10).read().decode()
        for feature in DRIFTED:
            assert f'data-feature="{feature}" data-verdict="drifted"' in page, feature
        lint = subprocess.run([require_binary("promtool"), "check", "metrics"], input=body, capture_output=True,
                              text=True, timeout=30)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_numpy_fallback_model_matches_scikit_learn():
    """Without scikit-learn the demo fits its own logistic regression: it must be as good (±0.02 accuracy)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from driftcar.demo import FEATURES, _numpy_model, generate

    rng = np.random.default_rng(0)
    train_cols, train_y = generate(20_000, rng)
    test_cols, test_y = generate(5_000, rng)
    fallback = _numpy_model(train_cols, train_y)
    ours = np.mean(fallback.target(fallback.to_input(test_cols)) == test_y)
    X = np.column_stack([train_cols[f] for f in FEATURES])
    reference = LogisticRegression(max_iter=2000).fit((X - X.mean(0)) / X.std(0), train_y)
    Xt = (np.column_stack([test_cols[f] for f in FEATURES]) - X.mean(0)) / X.std(0)
    theirs = np.mean(reference.predict(Xt) == test_y)
    assert ours > 0.6 and abs(ours - theirs) <= 0.02, (ours, theirs)


def test_bad_flags_are_refused_before_anything_starts():
    for flags, reason in ((["--rate", "0"], "must be positive"), (["--window", "soon"], "expected a duration")):
        result = subprocess.run([sys.executable, "-m", "driftcar.cli", "demo", *flags],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, (flags, result.stdout, result.stderr)
        assert reason in result.stderr and "training a model" not in result.stdout, (flags, result.stderr)
