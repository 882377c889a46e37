"""The README's Quick start, run as written: its fenced blocks, in order, against the installed package.

What the test supplies is what the README leaves to the reader: a ``train.csv`` (generated), a real
scikit-learn model trained on it, live rows ``X`` in which ``income`` has shifted, request ids and
late labels. Ports come from free ones through the sidecar's and the hook's environment variables
(``DRIFTCAR_GRPC`` / ``DRIFTCAR_HTTP`` / ``DRIFTCAR_PROMETHEUS`` / ``DRIFTCAR_ENDPOINT``), which the
README's commands leave at their defaults, and the ``curl`` lines have their port numbers replaced;
the window is 2 s (``DRIFTCAR_WINDOW``) instead of a minute.

``pip install .`` is not run: the commands use the package installed in the test's own environment
(the ``driftcar`` console script next to this interpreter, with this checkout first on PYTHONPATH),
since a fresh install into a new venv takes about a minute per run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.waiting import free_port, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DEFAULT_PORTS = {"grpc": 14317, "http": 14318, "prometheus": 9464}
FEATURES = ("age", "income", "tenure")
pytestmark = pytest.mark.timeout(180)

# builds what the Python block uses: model, X (income shifted), request_ids, y_true
PREAMBLE = '''
import numpy as np, pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
train = pd.read_csv("train.csv")
features = train.drop(columns=["churn"])
numeric = [c for c in features if c != "plan"]
model = make_pipeline(ColumnTransformer([("num", StandardScaler(), numeric), ("cat", OneHotEncoder(), ["plan"])]),
                      LogisticRegression(max_iter=500)).fit(features, train["churn"])
X = pd.read_csv("live.csv")
request_ids = [f"req-{i}" for i in range(len(X))]
y_true = np.asarray(model.predict(X))
'''


def quick_start_blocks() -> list[tuple[str, str]]:
    text = README.read_text()
    section = text[text.index("## Quick start with your own model"):]
    section = section[:section.index("\n## ", 3)]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.S)


def commands(block: str) -> list[str]:
    """Shell lines as written, without their trailing comments (a ``#`` after a blank, outside quotes)."""
    out = []
    for line in block.splitlines():
        quote, cut = None, len(line)
        for i, ch in enumerate(line):
            if quote:
                quote = None if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch == "#" and (i == 0 or line[i - 1].isspace()):
                cut = i
                break
        line = line[:cut].strip()
        if line:
            shlex.split(line)  # a line the shell could not parse fails here, with the line
            out.append(line)
    return out


def write_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)

    def frame(rows: int, income_shift: float) -> dict:
        return {"age": rng.normal(40, 10, rows).round(), "income": rng.lognormal(10.5 + income_shift, 0.4, rows),
                "tenure": rng.integers(0, 120, rows), "plan": rng.choice(["basic", "plus", "pro"], rows)}

    def save(path: Path, columns: dict) -> None:
        names = list(columns)
        lines = [",".join(names)] + [",".join(str(columns[n][i]) for n in names) for i in range(len(columns[names[0]]))]
        path.write_text("\n".join(lines) + "\n")

    train = frame(5_000, 0.0)
    logit = 0.04 * (train["age"] - 40) - 0.02 * (train["tenure"] - 60)
    train["churn"] = (rng.random(5_000) < 1 / (1 + np.exp(-logit))).astype(int)
    save(tmp_path / "train.csv", train)
    save(tmp_path / "live.csv", frame(3_000, 0.8))


@pytest.fixture
def env():
    ports = {name: free_port() for name in DEFAULT_PORTS}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTCAR_", "OTEL_"))}
    base.update({
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), base.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "agent"), str(ROOT)]),
        "DRIFTCAR_GRPC": f"127.0.0.1:{ports['grpc']}",
        "DRIFTCAR_HTTP": f"127.0.0.1:{ports['http']}",
        "DRIFTCAR_PROMETHEUS": f"127.0.0.1:{ports['prometheus']}",
        "DRIFTCAR_WINDOW": "2s",
        "DRIFTCAR_ENDPOINT": f"http://127.0.0.1:{ports['grpc']}",
    })
    return base, ports


def with_ports(line: str, ports: dict) -> str:
    for name, default in DEFAULT_PORTS.items():
        line = re.sub(rf"(?<=:){default}\b", str(ports[name]), line)
    return line


def run_setup(block: str, tmp_path: Path, env: dict, log) -> subprocess.Popen:
    """The first shell block: profile, then the sidecar in the background (returned)."""
    sidecar = None
    for line in commands(block):
        if line.startswith("pip install"):
            continue  # the installed package is used (module docstring)
        if line.endswith("&"):
            sidecar = subprocess.Popen(["bash", "-c", "exec " + line[:-1].strip()], cwd=tmp_path, env=env,
                                       stdout=log, stderr=subprocess.STDOUT)
            continue
        result = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, (line, result.stdout[-2000:], result.stderr[-2000:])
    assert sidecar is not None, "the Quick start starts no sidecar in the background"
    return sidecar


def test_quick_start_as_written_reports_drift(tmp_path, env):
    env, ports = env
    blocks = quick_start_blocks()
    assert [lang for lang, _ in blocks] == ["sh", "python", "sh"], blocks
    write_data(tmp_path)
    log_path = tmp_path / "sidecar.log"
    with open(log_path, "w") as log:
        sidecar = run_setup(blocks[0][1], tmp_path, env, log)
        try:
            wait_until(lambda: sidecar.poll() is None and "driftcar sidecar ready" in log_path.read_text()
                       or (sidecar.poll() is not None and pytest.fail(log_path.read_text())), 60,
                       what="the sidecar to be ready")
            app = tmp_path / "app.py"
            app.write_text(PREAMBLE + blocks[1][1] + "\nassert monitor.flush(10.0)\n")
            result = subprocess.run([sys.executable, str(app)], cwd=tmp_path, env=env, capture_output=True,
                                    text=True, timeout=120)
            assert result.returncode == 0, result.stderr[-3000:]
            drift, events, metrics = (with_ports(line, ports) for line in commands(blocks[2][1]))

            def shell(line: str) -> str:
                out = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, timeout=30)
                return out.stdout

            def income_drifted():
                doc = json.loads(shell(drift) or "{}")
                feature = ((doc.get("versions") or [{}])[0].get("features") or {}).get("income") or {}
                return feature.get("verdict") and doc

            doc = wait_until(income_drifted, 60, interval=0.5, what="the Quick start's drift query to report income")
            events_out, metrics_out = shell(events), shell(metrics)
        finally:
            stop_process(sidecar)
    version = doc["versions"][0]
    income = version["features"]["income"]
    assert {"method", "score", "threshold", "pvalue", "verdict", "decision"} <= set(income)
    assert "histogram" not in income  # the compact view
    assert version["coverage"]["share"] == 1.0 and not version["coverage"]["unknown_features"]
    assert not version["features"]["age"]["verdict"]
    assert "driftcar.drift.detected" in events_out
    assert re.search(r'driftcar_drift_detected_ratio\{[^}]*feature_name="income"[^}]*\} 1', metrics_out)
    text = log_path.read_text()
    assert "drift detected: churn@3 feature income drifted" in text  # visible with --export none
    assert re.search(r"window \S+ UTC churn@3: \d+ rows", text)
