"""The wrapper's own path for the commonest call (``HookState.plain``): when it applies, that every
switch turns it off and back on, and that it captures what the general path captures."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import driftcar
from tests.unit.hook.fakes import FakeShipper


def _model():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3))
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)), X


def test_plain_holds_for_a_default_instrument_and_each_switch_clears_it():
    model, X = _model()
    monitor = driftcar.instrument(model, name="m", shipper=FakeShipper())
    state = monitor.state
    assert state.plain
    with monitor.paused():
        assert not state.plain
    assert state.plain
    monitor.sample = 0.5
    assert not state.plain
    monitor.sample = 1.0
    assert state.plain
    monitor._capture = False
    assert not state.plain
    monitor._capture = True
    assert state.plain
    with monitor.ids(["a"]):
        assert not state.plain
    assert not state.plain  # ids are looked up by every call from then on
    monitor.unwrap()
    assert not state.plain


def test_plain_clears_while_any_thread_is_paused():
    model, X = _model()
    monitor = driftcar.instrument(model, name="m", shipper=FakeShipper())
    inside, leave = threading.Event(), threading.Event()

    def paused_elsewhere():
        with monitor.paused():
            inside.set()
            leave.wait(5)

    thread = threading.Thread(target=paused_elsewhere)
    thread.start()
    assert inside.wait(5)
    assert not monitor.state.plain
    leave.set()
    thread.join(5)
    assert monitor.state.plain and monitor.state.pausing == 0


@pytest.mark.parametrize("plain", [True, False])
def test_both_paths_capture_the_same_rows_calls_and_errors(plain):
    model, X = _model()
    shipper = FakeShipper()
    monitor = driftcar.instrument(model, name="m", shipper=shipper)
    if not plain:  # a paused() block open in another context: every call takes the general path
        monitor.state.pause(1)
        monitor.state.pause(-1)
        monitor.state.plain = False
    model.predict(X[:3])
    model.predict(X[3:4])
    with pytest.raises(ValueError):
        model.predict(np.ones((2, 5)))  # wrong width: the model raises
    monitor.flush()
    stats = monitor.stats
    assert (stats["calls"], stats["captured_rows"], stats["errors"]) == (3, 4, {"ValueError": 1})
    assert [(it.rows, it.error_type) for it in shipper.items] == [(3, None), (1, None), (2, "ValueError")]
    assert np.array_equal(shipper.items[0].inputs, X[:3])
    assert np.array_equal(shipper.items[1].outputs, model.predict(X[3:4]))
    assert all(it.start_ns > 0 and it.duration_s > 0 for it in shipper.items)


def test_a_nested_call_on_the_plain_path_is_not_captured_twice():
    model, X = _model()
    shipper = FakeShipper()
    monitor = driftcar.instrument(model, name="m", methods=["predict", "decision_function"], shipper=shipper)
    assert monitor.state.plain
    model.predict(X[:2])  # LogisticRegression.predict calls self.decision_function
    model.decision_function(X[:1])
    assert [(it.method, it.rows) for it in shipper.items] == [("predict", 2), ("decision_function", 1)]
    assert monitor.stats["calls"] == 2
