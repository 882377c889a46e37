"""``instrument(feature_names=...)``, ``monitor.paused()`` and instrument()'s argument errors."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import driftcar
from driftcar.hook.columns import to_columns
from driftcar.hook.instrument import find_monitor
from tests.unit.hook.fakes import FakeShipper

NAMES = ["age", "income", "tenure"]


def _model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)), X


def _feature_columns(items) -> list[list[str]]:
    return [[c.name for c in part.columns if c.role == "feature"] for part in to_columns(items)]


@pytest.mark.parametrize("copy", [True, False])
def test_feature_names_name_numpy_columns_on_every_capture_path(copy):
    model, X = _model()
    shipper = FakeShipper()
    monitor = driftcar.instrument(model, name="m", shipper=shipper, feature_names=NAMES, copy=copy)
    model.predict(X[:5])  # the compact numpy path
    model.predict_proba(X[:2])  # the general path
    with monitor.ids(["a"]):
        model.predict(X[:1])
    assert monitor.feature_names == tuple(NAMES)
    assert [it.feature_names for it in shipper.items] == [tuple(NAMES)] * 3
    assert all(names == NAMES for names in _feature_columns(shipper.items))
    assert monitor.stats["feature_name_mismatches"] == 0


def test_without_feature_names_numpy_columns_are_x0_x1_and_dataframes_keep_theirs():
    model, X = _model()
    shipper = FakeShipper()
    driftcar.instrument(model, name="m", shipper=shipper)
    model.predict(X[:2])
    assert _feature_columns(shipper.items) == [["x0", "x1", "x2"]]
    frame_model = LogisticRegression().fit(pd.DataFrame(X, columns=NAMES), (X[:, 0] > 0).astype(int))
    shipper = FakeShipper()
    driftcar.instrument(frame_model, name="f", shipper=shipper, feature_names=["a", "b", "c"])
    frame_model.predict(pd.DataFrame(X[:2], columns=NAMES))
    assert _feature_columns(shipper.items) == [NAMES]  # a DataFrame's own names win


def test_a_width_mismatch_is_counted_logged_once_and_the_rows_still_travel(caplog):
    calls = []

    def score(X):
        calls.append(len(X))
        return np.zeros(len(X))

    shipper = FakeShipper()
    monitor = driftcar.instrument(score, name="wide", shipper=shipper, feature_names=NAMES)
    with caplog.at_level(logging.WARNING, logger="driftcar.hook"):
        monitor(np.ones((4, 5)))  # five columns against three names: never raised into the caller
        monitor(np.ones((2, 5)))
        monitor(np.ones((1, 3)))
    assert calls == [4, 2, 1]
    assert monitor.stats["feature_name_mismatches"] == 2 and monitor.stats["captured_rows"] == 7
    assert [m for m in caplog.messages if "feature_names" in m] == [caplog.messages[0]]
    assert "shape (4, 5)" in caplog.messages[0] and "3 names" in caplog.messages[0]
    assert _feature_columns(shipper.items[:2]) == [["x0", "x1", "x2", "x3", "x4"]]
    assert _feature_columns(shipper.items[2:]) == [NAMES]


def test_feature_names_are_checked_at_instrument_time():
    model, _ = _model()
    with pytest.raises(ValueError, match="feature_names has 2 names but LogisticRegression was fitted on 3"):
        driftcar.instrument(model, name="m", shipper=FakeShipper(), feature_names=["a", "b"])
    with pytest.raises(ValueError, match="duplicates: \\['a'\\]"):
        driftcar.instrument(model, name="m", shipper=FakeShipper(), feature_names=["a", "a", "b"])
    with pytest.raises(ValueError, match="sequence of non-empty str"):
        driftcar.instrument(model, name="m", shipper=FakeShipper(), feature_names="abc")
    assert find_monitor(model) is None  # nothing was wrapped


def test_paused_calls_run_the_model_but_are_neither_captured_nor_counted():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 3))
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, (X[:, 0] > 0).astype(int))
    shipper = FakeShipper()
    monitor = driftcar.instrument(pipe, name="p", shipper=shipper)
    pipe.predict(X[:3])
    with monitor.paused():
        reference = pipe.predict(X)  # reference predictions on training data
        pipe.predict_proba(X[:4])
    pipe.predict(X[:2])
    assert reference.shape == (50,)
    stats = monitor.stats
    assert (stats["calls"], stats["captured_rows"], stats["paused_calls"]) == (2, 5, 2)
    assert [it.rows for it in shipper.items] == [3, 2]


def test_paused_is_per_thread_and_nests():
    model, X = _model()
    shipper = FakeShipper()
    monitor = driftcar.instrument(model, name="m", shipper=shipper)
    inside, resume = threading.Event(), threading.Event()

    def other():
        inside.wait(5)
        model.predict(X[:4])  # another thread is still captured while this one is paused
        resume.set()

    worker = threading.Thread(target=other)
    worker.start()
    with monitor.paused():
        with monitor.paused():
            model.predict(X[:1])
        model.predict(X[:1])
        inside.set()
        assert resume.wait(5)
    worker.join(5)
    model.predict(X[:2])
    assert [it.rows for it in shipper.items] == [4, 2]
    assert monitor.stats["paused_calls"] == 2 and monitor.state.pausing == 0


def test_a_mistyped_argument_names_instrument_and_the_likely_one():
    model, _ = _model()
    with pytest.raises(TypeError, match=r"instrument\(\) got an unexpected keyword argument 'feature_name' "
                                        r"\(did you mean 'feature_names'\?\)"):
        driftcar.instrument(model, name="m", feature_name=NAMES)
    assert not any(type(v).__name__ == "Wrapper" for v in vars(model).values())  # nothing was wrapped
