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


@pytest.mark.parametrize("variance", [0.1, 0.99])
def test_coded_errors_equal_the_indicator_columns(variance):
    rng = np.random.default_rng(3)
    num = rng.normal(size=(4_000, 4))
    cat_a, cat_b = rng.integers(-1, 6, 4_000), rng.integers(0, 3, 4_000)  # -1 missing, 5 beyond the encoded
    onehot = (("a", ("p", "q", "r")), ("b", ("s",)))
    codes_a, codes_b = (1, 2, 4), (2,)  # the codes of each indicator, as the layout gives them
    ind = [(cat_a == k).astype(float) for k in codes_a] + [(cat_b == k).astype(float) for k in codes_b]
    ref = np.column_stack([num] + ind)
    model = fit_pca(ref, tuple("wxyz"), variance=variance, onehot=onehot)
    live = rng.normal(size=(300, 4)) * 1.5
    live[7, 1] = np.nan
    live[9, 0] = np.inf
    la, lb = rng.integers(-1, 7, 300), rng.integers(0, 3, 300)
    columns = [live[:, j].copy() for j in range(4)]
    live_ind = [(la == k).astype(float) for k in codes_a] + [(lb == k).astype(float) for k in codes_b]
    want = model.column_errors(columns + live_ind)
    got = model.coded_errors(columns, [(la, codes_a), (lb, codes_b)])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert np.isnan(got[[7, 9]]).all()
    assert model._residual_basis[1] == (variance > 0.5)  # both routes are covered


def _per_feature_gathers(model: PCAModel, columns, coded) -> np.ndarray:
    """The coded route before joint codes: one (m, codes + 2) table per feature, gathered and added in turn."""
    u = model._residual_basis[0]
    w = u / model.scale[:, None]
    n = len(model.features)
    acc = np.einsum("dm,dn->mn", w[:n], np.vstack(columns)) - (w.T @ model.mean)[:, None]
    row = n
    for codes, cs in coded:
        table = np.zeros((u.shape[1], max(cs) + 3))
        for k in cs:
            table[:, k + 1] = w[row]
            row += 1
        acc += table.take(np.minimum(codes + 1, table.shape[1] - 1), axis=1)
    return np.sqrt(np.einsum("ij,ij->j", acc, acc) / model.columns)


def test_joint_codes_match_the_onehot_projection_and_the_per_feature_route():
    """Seven str features (three joint-code groups), one with code 0 encoded, codes -1 and beyond the
    encoded ones: within 1e-9 of the one-hot matrix projected with numpy (whose z - z V V^T loses
    digits to cancellation) and within 1e-12 of the per-feature gathers it replaced."""
    rng = np.random.default_rng(11)
    sets = [(1, 2, 3, 4, 5, 6, 7), (0, 1, 2), (1, 3), (2, 4, 6, 8, 9), (1,), (1, 2, 3, 4), (0, 5)]
    onehot = tuple((f"c{i}", tuple(f"v{k}" for k in cs)) for i, cs in enumerate(sets))
    rows, live_rows = 5_000, 700
    ref_codes = [rng.integers(-1, max(cs) + 3, rows) for cs in sets]
    num = rng.normal(size=(rows, 6)) @ rng.normal(size=(6, 6))
    ref = np.column_stack([num] + [(c == k).astype(float) for c, cs in zip(ref_codes, sets) for k in cs])
    model = fit_pca(ref, tuple("uvwxyz"), variance=0.99, onehot=onehot)
    assert model._residual_basis[1]
    assert len(model._code_tables(tuple(sets))[2]) == 3
    live_codes = [rng.integers(-1, max(cs) + 5, live_rows) for cs in sets]
    live = rng.normal(size=(live_rows, 6)) * 1.5
    onehot_live = np.column_stack([live] + [(c == k).astype(float) for c, cs in zip(live_codes, sets) for k in cs])
    columns = [live[:, j].copy() for j in range(6)]
    coded = list(zip(live_codes, sets))
    got = model.coded_errors(columns, coded)
    np.testing.assert_allclose(got, _expected(model, onehot_live), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got, _per_feature_gathers(model, columns, coded), rtol=1e-12, atol=0)
