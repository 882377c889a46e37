"""Model quality: late labels joined to predictions, scores, and a label-free estimate.

Labels usually arrive long after predictions. :class:`LabelJoiner` keeps
recent predictions by row id in a bounded buffer with a TTL and hands back
the (y_true, y_pred) pairs as labels arrive; what cannot be matched is
counted, never kept. :func:`classification_scores` / :func:`regression_scores`
turn pairs into the exported scores; :func:`estimated_accuracy` needs no
labels at all (mean of the max predicted probability, as in
confidence-based performance estimation, CBPE), which is accurate when the
model is calibrated.

All functions are pure; LabelJoiner is not thread-safe (one per model).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from driftcar.stats import _codec
from driftcar.stats._columns import MISSING, label
from driftcar.stats.errors import ProfileError

_MAGIC = b"DCJOIN\x00\x01"

__all__ = ["LabelJoiner", "classification_scores", "regression_scores", "estimated_accuracy"]


def _key(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.str_):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


class LabelJoiner:
    """Join late labels to predictions by row id.

    Holds at most ``max_rows`` predictions (the oldest are evicted first and
    counted in ``evicted``); a prediction older than ``ttl_s`` seconds at the
    time of a later call is dropped and counted in ``expired``. Each label
    whose id is pending is ``matched`` once (the prediction is consumed);
    others count in ``unmatched_labels``. A repeated prediction id replaces
    the earlier one. Memory: O(max_rows). ``now`` is any monotonic clock in
    seconds (the caller's, so tests control time).

    >>> j = LabelJoiner(ttl_s=60, max_rows=2)
    >>> j.add_predictions(["a", "b", "c"], [1, 0, 1], now=0.0)     # "a" is evicted
    >>> y_true, y_pred = j.add_labels(["b", "zz", "c"], [0, 1, 0], now=10.0)
    >>> y_true.tolist(), y_pred.tolist(), j.matched, j.unmatched_labels, j.evicted
    ([0, 0], [0, 1], 2, 1, 1)
    """

    def __init__(self, ttl_s: float = 3600.0, max_rows: int = 100_000):
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s!r}")
        if not (isinstance(max_rows, int) and max_rows >= 1):
            raise ValueError(f"max_rows must be an int >= 1, got {max_rows!r}")
        self.ttl_s = ttl_s
        self.max_rows = max_rows
        self._pending: OrderedDict[Any, tuple[Any, float, Any]] = OrderedDict()
        self.matched = 0
        self.unmatched_labels = 0
        self.expired = 0
        self.evicted = 0
        self.last_probabilities: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def expire(self, now: float) -> int:
        """Drop predictions older than ``ttl_s`` at ``now`` (also done on every add); returns how many."""
        before = self.expired
        self._expire(now)
        return self.expired - before

    def to_bytes(self) -> bytes:
        """Pending predictions and counters, for checkpoints (versioned msgpack frame)."""
        pending = [[k, p, t, None if pr is None else pr.tolist()] for k, (p, t, pr) in self._pending.items()]
        payload = {"ttl_s": self.ttl_s, "max_rows": self.max_rows, "pending": pending,
                   "counters": [self.matched, self.unmatched_labels, self.expired, self.evicted]}
        return _codec.frame(_MAGIC, 1, payload)

    @classmethod
    def from_bytes(cls, data: bytes) -> "LabelJoiner":
        """Inverse of :meth:`to_bytes`; ProfileError when the bytes are bad."""
        p = _codec.unframe(data, _MAGIC, 1, "label joiner")
        try:
            j = cls(ttl_s=float(p["ttl_s"]), max_rows=int(p["max_rows"]))
            j.matched, j.unmatched_labels, j.expired, j.evicted = (int(v) for v in p["counters"])
            for key, pred, t, probs in p["pending"]:
                key = tuple(key) if isinstance(key, list) else key
                j._pending[key] = (pred, float(t), None if probs is None else np.asarray(probs, dtype=np.float64))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"label joiner checkpoint is malformed: {exc!r}") from None
        return j

    def _expire(self, now: float) -> None:
        limit = now - self.ttl_s
        pending = self._pending
        while pending:
            key, (_, t, _) = next(iter(pending.items()))
            if t >= limit:
                break
            pending.popitem(last=False)
            self.expired += 1

    def add_predictions(self, ids: Sequence[Any], predictions: Sequence[Any], now: float,
                        probabilities: Any = None) -> None:
        """Remember predictions (and optional per-row probability vectors) by id."""
        ids = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
        preds = predictions.tolist() if isinstance(predictions, np.ndarray) else list(predictions)
        if len(ids) != len(preds):
            raise ValueError(f"{len(ids)} ids for {len(preds)} predictions")
        probs = None
        if probabilities is not None:
            probs = np.asarray(probabilities, dtype=np.float64)
            if probs.ndim != 2 or len(probs) != len(ids):
                raise ValueError("probabilities must be (rows, classes) with one row per id")
        self._expire(now)
        pending = self._pending
        for k, (i, p) in enumerate(zip(ids, preds)):
            i = _key(i)
            p = _key(p)
            if i in pending:
                del pending[i]
            pending[i] = (p, now, None if probs is None else probs[k])
        while len(pending) > self.max_rows:
            pending.popitem(last=False)
            self.evicted += 1

    def add_labels(self, ids: Sequence[Any], labels: Sequence[Any], now: float) -> tuple[np.ndarray, np.ndarray]:
        """Match labels to pending predictions; returns (y_true, y_pred) of the new matches.

        The probability rows of the matches (when given) are in ``last_probabilities``.
        """
        ids = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
        labs = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
        if len(ids) != len(labs):
            raise ValueError(f"{len(ids)} ids for {len(labs)} labels")
        self._expire(now)
        y_true, y_pred, probs = [], [], []
        pending = self._pending
        for i, y in zip(ids, labs):
            hit = pending.pop(_key(i), None)
            if hit is None:
                self.unmatched_labels += 1
                continue
            y_true.append(y)
            y_pred.append(hit[0])
            probs.append(hit[2])
        self.matched += len(y_true)
        self.last_probabilities = (np.vstack(probs) if probs and all(p is not None for p in probs) else None)
        return np.asarray(y_true), np.asarray(y_pred)


def _as_labels(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length, got {t.shape} and {p.shape}")
    if t.dtype.kind != p.dtype.kind or t.dtype.kind == "O":
        t = np.array([_str(v) for v in t.tolist()], dtype=object)
        p = np.array([_str(v) for v in p.tolist()], dtype=object)
    return t, p


def _str(v: Any) -> str:
    lab = label(v)
    return "" if lab is MISSING else lab


def classification_scores(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """accuracy, macro precision/recall/f1 over the classes seen in either
    array, ``per_class`` {class: {precision, recall, f1, support}} and ``n``.
    Classes never predicted (or absent) score 0 (as ``zero_division=0``).
    Empty input gives zeros. Same as scikit-learn's ``precision_recall_fscore_support``.

    >>> s = classification_scores([0, 1, 1, 2, 2, 2], [0, 1, 2, 2, 2, 1])
    >>> round(s["accuracy"], 3), round(s["f1"], 3), s["per_class"][2]["support"]
    (0.667, 0.722, 3)
    """
    t, p = _as_labels(y_true, y_pred)
    if len(t) == 0:
        return {"accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "per_class": {}, "n": 0}
    classes, inv = np.unique(np.concatenate([t, p]), return_inverse=True)
    ti, pi = inv[: len(t)], inv[len(t):]
    k = len(classes)
    tp = np.bincount(ti[ti == pi], minlength=k).astype(np.float64)
    support = np.bincount(ti, minlength=k).astype(np.float64)
    predicted = np.bincount(pi, minlength=k).astype(np.float64)
    prec = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    rec = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros(k), where=(prec + rec) > 0)
    per_class = {(c.item() if hasattr(c, "item") else c): {"precision": float(prec[j]), "recall": float(rec[j]),
                                                          "f1": float(f1[j]), "support": int(support[j])}
                 for j, c in enumerate(classes)}
    return {"accuracy": float(tp.sum() / len(t)), "precision": float(prec.mean()), "recall": float(rec.mean()),
            "f1": float(f1.mean()), "per_class": per_class, "n": int(len(t))}


def regression_scores(y_true: Any, y_pred: Any) -> dict[str, float]:
    """mae, rmse and n over pairs where both values are finite; zeros when none.

    >>> regression_scores([1.0, 2.0, 3.0], [1.5, 2.0, 1.0])
    {'mae': 0.8333333333333334, 'rmse': 1.1902380714238083, 'n': 3}
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length, got {t.shape} and {p.shape}")
    ok = np.isfinite(t) & np.isfinite(p)
    err = t[ok] - p[ok]
    if not len(err):
        return {"mae": 0.0, "rmse": 0.0, "n": 0}
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err * err).mean())), "n": int(len(err))}


def estimated_accuracy(probabilities: Any) -> float:
    """Label-free accuracy estimate: the mean over rows of the max class probability.

    Rows with no finite probability are skipped; 0.0 when there are no rows
    (check the row count before exporting it as a quality figure).

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> p = rng.dirichlet([5, 1, 1], size=10_000)     # calibrated: label drawn from p
    >>> y = np.array([rng.choice(3, p=row) for row in p[:2_000]])
    >>> est = estimated_accuracy(p[:2_000]); real = float((p[:2_000].argmax(1) == y).mean())
    >>> bool(abs(est - real) < 0.03)
    True
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2:
        raise ValueError(f"probabilities must be (rows, classes), got shape {p.shape}")
    finite = np.isfinite(p)
    rows = finite.any(axis=1)
    if not rows.any():
        return 0.0
    top = np.max(np.where(finite, p, -np.inf), axis=1)[rows]
    return float(np.clip(top, 0.0, 1.0).mean())
