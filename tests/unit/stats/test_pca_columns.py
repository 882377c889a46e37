"""The multivariate test's column budget: wide references stay cheap, what it covers is chosen in a
stated order (numeric features, then category indicators, whole features only) and reported."""

from __future__ import annotations

import numpy as np
import pytest

from driftcar.stats import profile
from driftcar.stats.cli import _pca_text
from driftcar.stats.profile import PCA_MAX_COLUMNS, ProfileBuilder


def _wide(numeric: int, categorical: int, rows: int = 600, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    data = {f"n{i:03d}": rng.normal(size=rows) for i in range(numeric)}
    cats = np.array(["a", "b", "c", "d"])
    data.update({f"k{i:02d}": rng.choice(cats, rows) for i in range(categorical)})
    return data


def test_a_wide_reference_is_cut_to_the_budget_numeric_first_in_column_order():
    prof = profile(_wide(250, 5), pca_max_columns=PCA_MAX_COLUMNS)
    pca = prof.pca
    assert pca.columns <= PCA_MAX_COLUMNS
    assert pca.features == tuple(f"n{i:03d}" for i in range(PCA_MAX_COLUMNS))
    assert pca.onehot == ()  # no room left for indicators
    assert "50 numeric feature(s)" in _pca_text(prof) and "5 categorical" in _pca_text(prof)


def test_indicators_fill_the_room_left_whole_features_only():
    prof = profile(_wide(5, 4), pca_max_columns=12)  # 5 numeric + 3 indicators per categorical
    assert prof.pca.features == tuple(f"n{i:03d}" for i in range(5))
    assert [name for name, _ in prof.pca.onehot] == ["k00", "k01"]  # a third would need 3 more columns
    assert all(len(labels) == 3 for _, labels in prof.pca.onehot)
    assert prof.pca.columns == 11


def test_under_the_budget_everything_is_in():
    prof = profile(_wide(6, 2))
    assert len(prof.pca.features) == 6 and len(prof.pca.onehot) == 2
    assert "left out" not in _pca_text(prof)


@pytest.mark.parametrize("bad", [1, 0, -5, 2.5, "200"])
def test_a_budget_under_two_columns_is_refused(bad):
    with pytest.raises(ValueError, match="pca_max_columns"):
        ProfileBuilder(pca_max_columns=bad)
