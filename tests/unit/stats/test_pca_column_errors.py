"""PCAModel.column_errors (the sketch's fast path) against the projection written out with numpy."""

from __future__ import annotations

import numpy as np
import pytest

from driftcar.stats.pca import PCAModel, fit_pca


def _expected(model: PCAModel, x: np.ndarray) -> np.ndarray:
    z = (x - model.mean) / model.scale
    v = model.components
    resid = z - z @ v @ v.T
    return np.sqrt((resid**2).mean(axis=1))


@pytest.mark.parametrize("variance", [0.3, 0.9, 0.999])  # few components (two products) .. many (complement)
def test_column_errors_match_the_projection(variance):
    rng = np.random.default_rng(7)
    ref = rng.normal(size=(3_000, 30)) @ rng.normal(size=(30, 30))
    model = fit_pca(ref, tuple(f"x{i}" for i in range(30)), variance=variance)
    live = rng.normal(size=(500, 30)) * 2.0
    got = model.column_errors([live[:, j].copy() for j in range(30)])
    np.testing.assert_allclose(got, _expected(model, live), rtol=1e-9, atol=1e-12)
    assert model._residual_basis[1] == (model.components.shape[1] * 3 > 30)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_row_with_nan_or_infinity_gets_nan_on_both_routes(bad):
    rng = np.random.default_rng(1)
    for variance in (0.2, 0.99):
        model = fit_pca(rng.normal(size=(1_000, 6)), tuple("abcdef"), variance=variance)
        x = rng.normal(size=(4, 6))
        x[2, 3] = bad
        got = model.column_errors([x[:, j].copy() for j in range(6)])
        assert np.isnan(got[2]) and np.isfinite(np.delete(got, 2)).all()
