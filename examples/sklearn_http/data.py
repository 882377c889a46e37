"""Synthetic churn data for the HTTP example: seeded, with an optional drift.

Four numeric features; churn is more likely with short tenure, high charges and many support
calls. ``drift=True`` moves two features the way a product change would (charges up by one
standard deviation, support calls doubled), so a monitor should flag exactly those two.

>>> X, y = make_churn(5, seed=1)
>>> X.shape, y.shape, FEATURES[0]
((5, 4), (5,), 'tenure_months')
"""

from __future__ import annotations

import numpy as np

__all__ = ["FEATURES", "DRIFTED", "make_churn", "frame", "train"]

FEATURES = ("tenure_months", "monthly_charges", "support_calls", "age")
#: the features ``drift=True`` changes
DRIFTED = ("monthly_charges", "support_calls")


def make_churn(n: int, seed: int = 0, drift: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of (X, y); X columns in :data:`FEATURES` order, y in {0, 1}."""
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 12.0, n)
    charges = rng.normal(70.0, 20.0, n) + (20.0 if drift else 0.0)
    calls = rng.poisson(2.0 if not drift else 4.0, n).astype(np.float64)
    age = rng.normal(45.0, 12.0, n)
    logit = -1.0 - 0.06 * (tenure - 24.0) + 0.04 * (charges - 70.0) + 0.5 * (calls - 2.0)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return np.column_stack([tenure, charges, calls, age]), y


def frame(X: np.ndarray):
    """X as a pandas DataFrame with the feature names (driftcar reports features by these names)."""
    import pandas as pd

    return pd.DataFrame(X, columns=list(FEATURES))


def train(seed: int = 0, n: int = 5000):
    """A fitted scikit-learn Pipeline (scaler + logistic regression) and its training data (a DataFrame)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_churn(n, seed=seed)
    X = frame(X)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(X, y)
    return model, X, y
