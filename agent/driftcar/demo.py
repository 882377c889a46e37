"""``driftcar demo``: see driftcar work in one command, with nothing else installed or running.

It trains a model on data it generates, starts a sidecar in this process (embedded Prometheus
endpoint on, no collector needed), sends traffic through the real hook (``driftcar.instrument``,
OTLP over loopback gRPC), posts the labels back by id, injects drift into two features halfway,
shows a live view (features, scores, verdicts; plain lines when stdout is not a terminal), and ends
with a summary: what drifted, how quickly it was found, and where to look. ``--forever`` keeps the
sidecar and the traffic going until Ctrl-C.

The model is a scikit-learn Pipeline on a pandas DataFrame when both are installed (``make demo``
installs them), else a small numpy logistic regression called on dict rows, so the demo also runs
on a core install. Blocking: runs in the foreground; everything it starts stops before it returns.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["register", "run", "Scenario", "generate", "DemoResult"]

MODEL_NAME = "demo-churn"
MODEL_VERSION = "1"
FEATURES = ("age", "income", "tenure_months", "balance", "products")
#: what the second half of the run changes: income shifts up, tenure spreads out
DRIFTED = ("income", "tenure_months")
#: the sidecar's own pseudo-features (reported, never counted as false alarms on real features)
SPECIAL = ("__prediction__", "__multivariate__", "__label__", "__overflow__")  # model-level, not features


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="self-contained demo: model + hook + in-process sidecar, drift injected halfway",
        description="Train a model on generated data, start a sidecar in this process (Prometheus /metrics on, "
                    "no collector), send traffic through the real hook with labels posted back, inject drift into "
                    "two features halfway, show a live view and end with a summary of what drifted, how quickly "
                    "it was found and where to look.",
    )
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="traffic time; drift starts halfway (default 30, or 14 with --fast)")
    parser.add_argument("--window", default=None, metavar="DURATION",
                        help="sidecar window (default 3s, or 2s with --fast)")
    parser.add_argument("--rate", type=int, default=2000, metavar="ROWS", help="rows per second (default 2000)")
    parser.add_argument("--fast", action="store_true", help="short run (~20 s) for CI and impatient people")
    parser.add_argument("--forever", action="store_true", help="after the summary keep serving until Ctrl-C")
    parser.add_argument("--plain", action="store_true", help="plain text lines even on a terminal")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--http", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="sidecar HTTP/JSON API address (default: a free loopback port)")
    parser.add_argument("--prometheus", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="sidecar /metrics address (default: a free loopback port)")
    parser.set_defaults(func=run)


# --------------------------------------------------------------------------- data and model


def generate(n: int, rng: np.random.Generator, drift: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``n`` customers as columns plus churn labels; ``drift`` moves :data:`DRIFTED` only.

    >>> cols, y = generate(4, np.random.default_rng(0))
    >>> sorted(cols) == sorted(FEATURES), y.shape
    (True, (4,))
    """
    age = rng.normal(42.0, 11.0, n)
    income = rng.lognormal(10.6, 0.35, n) * (1.35 if drift else 1.0)
    tenure = rng.gamma(2.0, 14.0, n) * (rng.uniform(0.3, 2.2, n) if drift else 1.0)
    balance = rng.normal(1200.0, 400.0, n)
    products = rng.poisson(2.0, n).astype(np.float64)
    # with drift the world changes too: richer customers now churn more (the model still thinks less)
    income_effect = 0.00004 if drift else -0.00003
    logit = (-0.4 - 0.05 * (tenure - 28.0) + income_effect * (income - 42000.0)
             + 0.0008 * (balance - 1200.0) - 0.3 * (products - 2.0))
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return {"age": age, "income": income, "tenure_months": tenure, "balance": balance, "products": products}, y


@dataclass
class Model:
    """What the demo calls: ``predict(batch)``; ``to_input(columns)`` builds ``batch``."""

    kind: str
    predict: Callable[[Any], Any]
    to_input: Callable[[dict], Any]
    target: Any  # what driftcar.instrument wraps


def train(columns: dict[str, np.ndarray], y: np.ndarray) -> Model:
    try:
        import pandas as pd
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        return _numpy_model(columns, y)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    model.fit(pd.DataFrame(columns), y)
    return Model("scikit-learn Pipeline(StandardScaler, LogisticRegression)", lambda X: model.predict(X),
                 lambda cols: pd.DataFrame(cols), model)


def _numpy_model(columns: dict[str, np.ndarray], y: np.ndarray) -> Model:
    """Logistic regression by a few Newton steps on standardised columns (no scikit-learn)."""
    X = np.column_stack([columns[f] for f in FEATURES])
    mean, std = X.mean(axis=0), X.std(axis=0) + 1e-12
    Z = np.column_stack([np.ones(len(X)), (X - mean) / std])
    w = np.zeros(Z.shape[1])
    for _ in range(15):
        p = 1.0 / (1.0 + np.exp(-Z @ w))
        hessian = (Z * (p * (1 - p))[:, None]).T @ Z + 1e-6 * np.eye(Z.shape[1])
        w -= np.linalg.solve(hessian, Z.T @ (p - y))

    def churn_model(rows: list[dict]) -> np.ndarray:
        A = (np.array([[r[f] for f in FEATURES] for r in rows]) - mean) / std
        return ((w[0] + A @ w[1:]) > 0).astype(np.int64)

    def to_rows(cols: dict) -> list[dict]:
        return [dict(zip(FEATURES, values)) for values in zip(*(cols[f].tolist() for f in FEATURES))]

    return Model("numpy logistic regression (scikit-learn not installed)", None, to_rows, churn_model)


# --------------------------------------------------------------------------- the run


@dataclass
class Scenario:
    duration_s: float
    window: str
    rate: int
    seed: int

    @property
    def drift_at_s(self) -> float:
        return self.duration_s / 2


@dataclass
class DemoResult:
    """What happened: detection times (seconds after the drift started) per feature, etc."""

    detected: dict[str, float] = field(default_factory=dict)  # feature -> seconds after injection
    decided_by: dict[str, str] = field(default_factory=dict)  # feature -> "ks p = … < 0.05" / "… score … ≥ threshold …"
    false_alarms: list[str] = field(default_factory=list)  # real features flagged before the drift
    also_flagged: list[str] = field(default_factory=list)  # flagged real features that were not drifted
    accuracy_before: float | None = None
    accuracy_after: float | None = None
    rows: int = 0
    dropped: int = 0


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.load(resp)


def _model_doc(http: str) -> dict | None:
    try:
        doc = _get_json(f"{http}/v1/models/{MODEL_NAME}/drift")
    except (OSError, ValueError):
        return None
    versions = doc.get("versions") if isinstance(doc, dict) else None
    if versions:
        return next((v for v in versions if v.get("version") == MODEL_VERSION), versions[0])
    return doc if isinstance(doc, dict) and "features" in doc else None


def _closed_after(http: str, end_ns: int, timeout_s: float) -> dict | None:
    """The model's state once a window ending at or after ``end_ns`` has been evaluated (the last
    state read if none has within ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    doc = _model_doc(http)
    while (((doc or {}).get("window") or {}).get("end_unix_nano") or 0) < end_ns and time.monotonic() < deadline:
        time.sleep(0.1)
        doc = _model_doc(http)
    return doc


class View:
    """The live view: a redrawn table on a terminal, one compact line per window otherwise."""

    def __init__(self, out, tty: bool):
        self.out = out
        self.tty = tty
        self._last_window = None

    def show(self, t: float, scenario: Scenario, doc: dict | None, rows: int, drift_on: bool,
             first_seen: dict[str, float]) -> None:
        phase = "DRIFTING" if drift_on else f"normal (drift at {scenario.drift_at_s:.0f}s)"
        features = (doc or {}).get("features") or {}
        if self.tty:
            lines = [
                f"driftcar demo  model {MODEL_NAME} v{MODEL_VERSION}  t={t:5.1f}s  {phase}  "
                f"rows {rows:,}  window {scenario.window}",
                "",
                f"  {'feature':<18}{'decision (p-value tests: p < cut-off; distances: score ≥ threshold)':<70}  verdict",
            ]
            for name in sorted(features, key=lambda n: (n.startswith("__"), n)):
                entry = features[name]
                verdict = "DRIFT" if entry.get("verdict") else "ok"
                if name in first_seen:
                    verdict += f" (found {first_seen[name]:.1f}s after injection)"
                lines.append(f"  {name:<18}{_decided_by(entry):<70}  {verdict}")
            perf = (doc or {}).get("performance") or {}
            if perf:
                lines += ["", "  quality from labels: " + "  ".join(f"{k} {_fmt(v)}" for k, v in sorted(perf.items()))]
            if not features:
                lines.append("  (waiting for the first window to close)")
            self.out.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
            self.out.flush()
            return
        window = ((doc or {}).get("window") or {}).get("end_unix_nano")
        if window == self._last_window:
            return
        self._last_window = window
        flagged = sorted(n for n, e in features.items() if e.get("verdict"))
        scores = ", ".join(
            f"{n} {_fmt(_deciding(features[n])[1].get('score'))}"
            for n in sorted(features) if not n.startswith("__"))
        self.out.write(f"[t={t:5.1f}s {'drift ' if drift_on else 'normal'}] rows={rows:,} "
                       f"drifting: {', '.join(flagged) or 'none'} | scores: {scores or 'n/a'}\n")
        self.out.flush()


def _deciding(entry: dict) -> tuple[str | None, dict]:
    """A feature entry's deciding method and that method's result (score, threshold)."""
    method = entry.get("deciding_method")
    return method, (entry.get("methods") or {}).get(method) or {}


def _decided_by(entry: dict) -> str:
    """The sidecar's own description of the decision (p-value vs cut-off, or score vs threshold)."""
    method, r = _deciding(entry)
    return r.get("decision") or f"{method or '-'} score {_fmt(r.get('score'))}, threshold {_fmt(r.get('threshold'))}"


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:.3g}"


def run(args: argparse.Namespace) -> int:
    import driftcar
    from driftcar.sidecar.service import run_in_thread

    out = sys.stdout
    setup = _setup(args)
    if setup is None:
        return 2
    scenario, config, window_s = setup

    rng = np.random.default_rng(scenario.seed)
    out.write("driftcar demo: training a model on generated data ...\n")
    out.flush()
    train_cols, train_y = generate(20_000, rng)
    model = train(train_cols, train_y)
    reference_predictions = np.asarray(
        model.target.predict(model.to_input(train_cols)) if model.predict else model.target(model.to_input(train_cols)))

    handle = run_in_thread(config)
    http = handle.http_endpoint
    prom = f"http://127.0.0.1:{handle.service.prometheus_port}/metrics"
    monitor = None
    try:
        monitor = driftcar.instrument(model.target, name=MODEL_NAME, version=MODEL_VERSION,
                                      endpoint=handle.grpc_endpoint, spans=False, max_batch_age_s=0.2)
        predict = model.predict or monitor.model
        monitor.set_reference(model.to_input(train_cols), train_y, predictions=reference_predictions)
        monitor.flush(10)
        out.write(f"driftcar demo: watch it live at {http}/\n")
        out.write(f"driftcar demo: {model.kind}; sidecar on {http} (window {scenario.window}); "
                  f"{scenario.rate} rows/s for {scenario.duration_s:.0f}s, drift in "
                  f"{' and '.join(DRIFTED)} from {scenario.drift_at_s:.0f}s\n")
        out.flush()
        # start on a window boundary, so the first window is a full one like every other
        time.sleep(max(0.0, math.floor(time.time() / window_s + 1) * window_s - time.time()) + 0.05)
        result = _traffic(scenario, model, predict, monitor, http, rng, View(out, _is_tty(out, args.plain)))
        # ship what is queued, then read the state once the window holding the last rows has closed
        monitor.flush(10)
        final = _closed_after(http, time.time_ns(), timeout_s=2 * window_s + 5) or {}
        result.dropped = int(monitor.stats.get("dropped_rows", 0))
        _summary(out, scenario, result, final, http, prom)
        if args.forever:
            _serve_forever(out, scenario, model, predict, monitor, rng)
        return 0
    finally:
        if monitor is not None:
            monitor.shutdown(timeout=5.0)
        handle.stop(timeout=15.0)


def _setup(args: argparse.Namespace):
    """(scenario, sidecar config, window seconds) from the flags; None after saying what is wrong."""
    from driftcar.sidecar.config import ConfigError, load_config, parse_duration

    scenario = Scenario(
        duration_s=args.duration if args.duration is not None else (14.0 if args.fast else 30.0),
        window=args.window or ("2s" if args.fast else "3s"),
        rate=args.rate,
        seed=args.seed,
    )
    if scenario.duration_s <= 0 or scenario.rate <= 0:
        print("driftcar demo: --duration and --rate must be positive", file=sys.stderr)
        return None
    try:
        window_s = parse_duration(scenario.window)
        # env={}: the demo's sidecar ignores DRIFTCAR_* variables meant for a real deployment
        config = load_config(None, env={}, flags={
            "grpc": "127.0.0.1:0", "http": args.http, "prometheus": args.prometheus,
            "window": scenario.window, "export": "none", "live_reference_rows": 0,
            "log_level": "warning",
        })
    except (ConfigError, ValueError) as exc:
        print(f"driftcar demo: {exc}", file=sys.stderr)
        return None
    return scenario, config, window_s


def _serve_forever(out, scenario: Scenario, model, predict, monitor, rng) -> None:
    """``--forever``: drifted traffic at a tenth of the rate per 0.1 s until Ctrl-C."""
    out.write("\nServing until Ctrl-C (traffic continues, drifted) ...\n")
    out.flush()
    try:
        while True:
            cols, y = generate(max(1, scenario.rate // 10), rng, drift=True)
            _send(predict, monitor, model.to_input(cols), y, f"f{time.time_ns()}")
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass


def _is_tty(out, plain: bool) -> bool:
    return not plain and hasattr(out, "isatty") and out.isatty() and os.environ.get("TERM", "") != "dumb"


def _send(predict, monitor, batch, y, prefix: str) -> None:
    ids = [f"{prefix}-{i}" for i in range(len(y))]
    with monitor.ids(ids):
        predict(batch)
    monitor.log_labels(ids, y)


def _traffic(scenario: Scenario, model: Model, predict, monitor, http: str, rng, view: View) -> DemoResult:
    result = DemoResult()
    tick = 0.1
    per_tick = max(1, int(scenario.rate * tick))
    start = time.monotonic()
    injected_at: float | None = None
    next_poll = start
    i = 0
    while True:
        now = time.monotonic()
        t = now - start
        if t >= scenario.duration_s:
            break
        drift_on = t >= scenario.drift_at_s
        if drift_on and injected_at is None:
            injected_at = now
        cols, y = generate(per_tick, rng, drift=drift_on)
        _send(predict, monitor, model.to_input(cols), y, f"r{i}")
        result.rows += per_tick
        i += 1
        if now >= next_poll:
            next_poll = now + 0.5
            doc = _model_doc(http)
            _observe(doc, result, injected_at, now, drift_on)
            view.show(t, scenario, doc, result.rows, drift_on, result.detected)
        time.sleep(max(0.0, start + i * tick - time.monotonic()))
    return result


def _observe(doc: dict | None, result: DemoResult, injected_at: float | None, now: float, drift_on: bool) -> None:
    if not doc:
        return
    features = doc.get("features") or {}
    perf = (doc.get("performance") or {}).get("accuracy")
    if perf is not None:
        if drift_on:
            result.accuracy_after = perf
        else:
            result.accuracy_before = perf
    for name, entry in features.items():
        if not entry.get("verdict"):
            continue
        if not drift_on or injected_at is None:
            if name not in SPECIAL and name not in result.false_alarms:
                result.false_alarms.append(name)
            continue
        if name not in result.detected:
            result.detected[name] = now - injected_at
            result.decided_by[name] = _decided_by(entry)


def _summary(out, scenario: Scenario, result: DemoResult, final: dict, http: str, prom: str) -> None:
    features = final.get("features") or {}
    flagged_now = {n for n, e in features.items() if e.get("verdict")}
    for name in flagged_now - set(result.detected):  # found by the last window, after traffic stopped
        result.detected[name] = scenario.duration_s - scenario.drift_at_s
        result.decided_by[name] = _decided_by(features[name])
    drifted = [f for f in DRIFTED if f in result.detected]
    missed = [f for f in DRIFTED if f not in result.detected]
    result.also_flagged = sorted(f for f in result.detected if f not in DRIFTED and f not in SPECIAL)
    special = sorted(f for f in result.detected if f in SPECIAL)
    lines = [
        "",
        "=" * 72,
        "driftcar demo summary",
        f"  drift injected at t={scenario.drift_at_s:.0f}s into: {', '.join(DRIFTED)}",
        f"  drifted features found: {', '.join(drifted) or 'none'}",
    ]
    for name in drifted:
        lines.append(f"    {name}: {result.detected[name]:.1f}s after the drift started ({result.decided_by[name]})")
    if missed:
        lines.append(f"  NOT detected: {', '.join(missed)}")
    lines.append(f"  false alarms before the drift: {', '.join(result.false_alarms) or 'none'}")
    if result.also_flagged:
        lines.append(f"  also flagged after the drift (not drifted themselves): {', '.join(result.also_flagged)}")
    if special:
        lines.append(f"  model-level: {', '.join(special)} flagged too (prediction / multivariate / label drift)")
    if result.accuracy_before is not None or result.accuracy_after is not None:
        lines.append(f"  accuracy from the labels posted back: before {_fmt(result.accuracy_before)}, "
                     f"after {_fmt(result.accuracy_after)}")
    lines.append(f"  rows sent: {result.rows:,}; rows the hook dropped: {result.dropped}")
    lines += [
        "  where to look (served until the demo exits; --forever keeps it up):",
        f"    live page           {http}/",
        f"    Prometheus metrics  {prom}",
        f"    drift per feature   {http}/v1/models/{MODEL_NAME}/drift",
        f"    all models          {http}/v1/models",
        f"    drift events        {http}/v1/events",
        "=" * 72,
    ]
    out.write("\n".join(lines) + "\n")
    out.flush()
