"""An online (river) classifier learning from a stream, watched by driftcar and by rolling metrics.

    python -m examples.river_stream.stream --n 6000 --flip-after 3000 [--endpoint http://127.0.0.1:14317]

Each event is predicted first (``predict_one``), then learned (``learn_one``), test-then-train
as in production streams. ``driftcar.instrument`` captures both: features and predictions from
``predict_one``, the true label from ``learn_one``, joined by the event id given with
``monitor.ids``. So the sidecar reports precision/recall (``driftcar.performance.score``) and
feature drift per window, and :class:`QualityWatch` does the same locally over a rolling window
of events and warns when precision or recall falls under its threshold.

``--flip-after`` flips the stream's labels from that event on (a concept drift: the same inputs
now mean the opposite); the warning fires within about one window.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Iterator

import driftcar

__all__ = ["QualityWatch", "Warning_", "events", "make_model", "run", "main"]

log = logging.getLogger("examples.river_stream")
FEATURES = ("amount", "hour", "merchant_risk", "distance_km")


def events(n: int, seed: int = 7, flip_after: int | None = None) -> Iterator[tuple[int, dict, bool]]:
    """``(index, x, y)``: card transactions, y = fraud. Seeded; labels flipped from ``flip_after`` on.

    >>> [(i, sorted(x), y) for i, x, y in events(1)]
    [(0, ['amount', 'distance_km', 'hour', 'merchant_risk'], False)]
    """
    rng = random.Random(seed)
    for i in range(n):
        x = {
            "amount": rng.lognormvariate(3.5, 1.0),
            "hour": float(rng.randrange(24)),
            "merchant_risk": rng.random(),
            "distance_km": rng.expovariate(1 / 20.0),
        }
        logit = -0.5 + 8.0 * (x["merchant_risk"] - 0.5) + 0.05 * (x["distance_km"] - 20.0) + 0.01 * (x["amount"] - 33.0)
        y = rng.random() < 1.0 / (1.0 + math.exp(-logit))
        if flip_after is not None and i >= flip_after:
            y = not y
        yield i, x, y


def make_model():
    """StandardScaler | LogisticRegression, river's usual online classifier."""
    from river import linear_model, optim, preprocessing

    return preprocessing.StandardScaler() | linear_model.LogisticRegression(optimizer=optim.SGD(0.01))


@dataclass
class Warning_:
    """A quality warning: which metric fell under its threshold, at which event."""

    event: int
    metric: str
    value: float
    threshold: float


@dataclass
class QualityWatch:
    """Precision and recall over the last ``window`` events; warns under ``thresholds``.

    Warns once when a metric falls under its threshold and again only after it recovered
    above ``threshold + recover_margin`` (no flapping). Nothing is checked before ``window`` events were seen.

    >>> watch = QualityWatch(window=4, thresholds={"precision": 0.5, "recall": 0.5})
    >>> for i, (y, p) in enumerate([(True, True)] * 4 + [(False, True), (True, False)] * 2):
    ...     _ = watch.update(i, y, p)
    >>> [(w.event, w.metric) for w in watch.warnings]
    [(6, 'precision'), (7, 'recall')]
    """

    window: int = 300
    thresholds: dict = field(default_factory=lambda: {"precision": 0.6, "recall": 0.6})
    recover_margin: float = 0.05  # a metric re-arms only once back above threshold + margin
    warnings: list = field(default_factory=list)

    def __post_init__(self):
        from river import metrics, utils

        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        unknown = set(self.thresholds) - {"precision", "recall"}
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)} (precision, recall)")
        self._metrics = {
            "precision": utils.Rolling(metrics.Precision, window_size=self.window),
            "recall": utils.Rolling(metrics.Recall, window_size=self.window),
        }
        self._seen = 0
        self._low = {m: False for m in self.thresholds}

    def update(self, event: int, y_true: bool, y_pred: bool) -> list[Warning_]:
        """Add one outcome; return the warnings it raised (also kept in ``warnings``)."""
        for metric in self._metrics.values():
            metric.update(y_true, y_pred)
        self._seen += 1
        raised = []
        if self._seen < self.window:
            return raised
        for name, threshold in self.thresholds.items():
            value = self._metrics[name].get()
            if value < threshold and not self._low[name]:
                self._low[name] = True
                warning = Warning_(event, name, value, threshold)
                raised.append(warning)
                log.warning("%s over the last %d events fell to %.3f (< %.2f) at event %d",
                            name, self.window, value, threshold, event)
            elif value >= threshold + self.recover_margin:
                self._low[name] = False
        self.warnings.extend(raised)
        return raised

    @property
    def values(self) -> dict[str, float]:
        return {name: metric.get() for name, metric in self._metrics.items()}


def run(n: int = 6000, *, flip_after: int | None = None, endpoint: str | None = None, window: int = 300,
        thresholds: dict | None = None, seed: int = 7, name: str = "fraud-stream", version: str = "1",
        rate: float | None = None, **hook_options) -> tuple[QualityWatch, object]:
    """Stream ``n`` events through an instrumented river model; returns (watch, monitor).

    ``rate``: events per second (None: as fast as the model goes), so that time windows
    downstream see the stream as it would arrive in production."""
    model = make_model()
    start = time.monotonic()
    monitor = driftcar.instrument(model, name=name, version=version, endpoint=endpoint, **hook_options)
    watch = QualityWatch(window=window, thresholds=thresholds or {"precision": 0.6, "recall": 0.6})
    for i, x, y in events(n, seed=seed, flip_after=flip_after):
        with monitor.ids(f"evt-{i}"):
            y_pred = bool(model.predict_one(x))
            model.learn_one(x, y)
        watch.update(i, y, y_pred)
        if rate:
            time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    return watch, monitor


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--flip-after", type=int, default=None)
    parser.add_argument("--window", type=int, default=300)
    parser.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as possible)")
    parser.add_argument("--endpoint", default=None, help="driftcar sidecar or collector (default $DRIFTCAR_ENDPOINT)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    watch, monitor = run(args.n, flip_after=args.flip_after, endpoint=args.endpoint, window=args.window, rate=args.rate)
    monitor.shutdown(timeout=5.0)
    print(f"final rolling precision/recall: {watch.values}; warnings: {len(watch.warnings)}")


if __name__ == "__main__":
    main()
