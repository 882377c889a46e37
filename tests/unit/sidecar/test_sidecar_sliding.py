"""Sliding views are stored: a polling client reads them; a window close recomputes them off the request."""

from __future__ import annotations

from driftcar.sidecar.sliding import MAX_KS, SlidingViews

from tests.unit.sidecar.batches import inference_body, numeric_frame
from tests.unit.sidecar.test_sidecar_state import item, make, reference

MINUTE_NS = 60 * 10**9


def _counting(monkeypatch) -> list:
    import driftcar.stats as stats

    calls = []
    real = stats.evaluate_drift

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(stats, "evaluate_drift", counted)
    return calls


def _window(store, evaluator, clock, seed: int) -> None:
    store.apply(item(inference_body(numeric_frame(200, 2, seed=seed))))
    clock.ns += MINUTE_NS
    evaluator.evaluate_all(store.close_windows())


def test_a_view_is_computed_once_per_window_and_refreshed_at_the_close(monkeypatch):
    store, evaluator, tel, clock = make()
    store.apply(item(reference(numeric_frame(1_000, 2, seed=1))))
    _window(store, evaluator, clock, seed=2)
    state = store.models[("m", "1")]
    views = SlidingViews()
    calls = _counting(monkeypatch)

    first, n = views.view(state, 3)
    assert n == 1 and first.rows == 200 and len(calls) == 1
    again, _ = views.view(state, 3)
    assert again is first and len(calls) == 1  # no new window: the stored view

    _window(store, evaluator, clock, seed=3)
    calls.clear()  # the window's own evaluation is not the view's
    views.refresh([state])  # what the service runs after each close, in the evaluator's thread
    assert len(calls) == 1
    fresh, n = views.view(state, 3)
    assert n == 2 and fresh.rows == 400 and fresh.end_ns > first.end_ns and len(calls) == 1


def test_remembered_window_counts_are_bounded():
    store, evaluator, tel, clock = make()
    store.apply(item(reference(numeric_frame(1_000, 2, seed=1))))
    _window(store, evaluator, clock, seed=2)
    state = store.models[("m", "1")]
    views = SlidingViews()
    for k in range(1, MAX_KS + 3):
        views.view(state, k)
    assert views._ks[("m", "1")] == list(range(3, MAX_KS + 3))
    assert len(views._views) == MAX_KS
