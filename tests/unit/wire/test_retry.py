"""driftcar.wire.retry: the one retry loop and back-off, on a fake clock (no sleeping)."""

import random
import threading

from driftcar.wire.retry import Backoff, Outcome, RetryState, export_with_retry, retry


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class ClockStop(threading.Event):
    """A stop event whose wait advances the fake clock instead of sleeping; records each wait."""

    def __init__(self, clock, set_after=None):
        super().__init__()
        self.clock = clock
        self.waits = []
        self.set_after = set_after  # set itself during this many-th wait

    def wait(self, timeout=None):
        self.waits.append(timeout)
        if self.set_after is not None and len(self.waits) >= self.set_after:
            self.set()
            return True
        self.clock.now += timeout
        return self.is_set()


class Endpoint:
    """Answers ``down`` (retryable) until ``up_at`` on the clock, then success; records attempt times."""

    def __init__(self, clock, up_at=float("inf"), answer=None):
        self.clock = clock
        self.up_at = up_at
        self.answer = answer or Outcome.retry("grpc UNAVAILABLE")
        self.times = []

    def __call__(self, remaining):
        assert remaining > 0
        self.times.append(self.clock.now)
        return Outcome.success() if self.clock.now >= self.up_at else self.answer


def fixed(initial=1.0, maximum=4.0):
    return Backoff(initial, maximum, jitter=0.0)


def test_backoff_doubles_up_to_its_cap_and_jitter_stays_in_its_band():
    assert [fixed().delay(n) for n in range(6)] == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert Backoff().maximum_s == 32.0
    jittered = Backoff(1.0, 8.0, jitter=0.2, rng=random.Random(7))
    for n in range(40):
        base = min(2.0 ** n, 8.0)
        assert 0.8 * base <= jittered.delay(n) <= 1.2 * base
    assert Backoff(1.0, 8.0).delay(10_000) <= 8.0 * 1.2  # no overflow far into an outage


def test_one_export_retries_with_growing_waits_until_the_endpoint_answers():
    clock = Clock()
    stop = ClockStop(clock)
    endpoint = Endpoint(clock, up_at=clock.now + 8)
    result = retry(endpoint, deadline=clock.now + 60, state=RetryState(fixed(), clock), stop=stop)
    assert result.outcome.ok and result.attempts == 5 and result.retries == 4
    assert stop.waits == [1.0, 2.0, 4.0, 4.0]
    assert [t - 1000.0 for t in endpoint.times] == [0.0, 1.0, 3.0, 7.0, 11.0]


def test_a_kept_state_makes_one_attempt_per_back_off_across_many_short_exports():
    # 100 exports of 1 s each through a 100 s outage: a fresh back-off per export would attempt
    # at least once per export (100 attempts); a kept one attempts once per capped back-off
    clock = Clock()
    stop = ClockStop(clock)
    state = RetryState(fixed(1.0, 8.0), clock)
    endpoint = Endpoint(clock)
    failed_at_once = 0
    for _ in range(100):
        result = retry(endpoint, deadline=clock.now + 1.0, state=state, stop=stop)
        assert not result.outcome.ok and result.outcome.retryable
        failed_at_once += result.attempts == 0
        clock.now += 1.0  # the next batch is sealed a second later
    gaps = [b - a for a, b in zip(endpoint.times, endpoint.times[1:])]
    assert len(endpoint.times) <= 100 / 8 + 4, endpoint.times
    assert all(g >= 1.0 for g in gaps) and max(gaps) <= 8.0 + 1.0, gaps
    assert failed_at_once >= 80  # no transport work while backing off


def test_fresh_states_start_each_export_at_once():
    clock = Clock()
    endpoint = Endpoint(clock)
    for _ in range(5):
        export = type("E", (), {"export": lambda self, payload, t: endpoint(t)})()
        export_with_retry(export, b"", deadline=clock.now + 0.5, backoff=fixed(), stop=ClockStop(clock), clock=clock)
        clock.now += 1.0
    assert len(endpoint.times) == 5


def test_the_first_answer_clears_the_back_off():
    clock = Clock()
    stop = ClockStop(clock)
    state = RetryState(fixed(1.0, 8.0), clock)
    endpoint = Endpoint(clock, up_at=clock.now + 20)
    retry(endpoint, deadline=clock.now + 60, state=state, stop=stop)
    assert state.failures == 0 and state.wait_s() == 0.0
    # a recovered endpoint is used again at most one capped back-off after it came back
    assert endpoint.times[-1] - 1000.0 - 20 <= 8.0
    endpoint.times.clear()
    assert retry(endpoint, deadline=clock.now + 1, state=state, stop=stop).attempts == 1
    assert endpoint.times == [clock.now]


def test_a_permanent_answer_is_not_retried_and_clears_the_back_off():
    clock = Clock()
    state = RetryState(fixed(), clock)
    state.failed()
    clock.now += 5
    endpoint = Endpoint(clock, answer=Outcome.permanent("http 400"))
    result = retry(endpoint, deadline=clock.now + 60, state=state, stop=ClockStop(clock))
    assert result.attempts == 1 and not result.outcome.retryable and state.wait_s() == 0.0


def test_a_server_hint_replaces_the_back_off_and_no_wait_ends_past_the_deadline():
    clock = Clock()
    stop = ClockStop(clock)
    endpoint = Endpoint(clock, answer=Outcome.retry("http 503", retry_after_s=7.0))
    result = retry(endpoint, deadline=clock.now + 10, state=RetryState(fixed(), clock), stop=stop)
    assert stop.waits == [7.0] and result.attempts == 2  # at 0 and 7; a third at 14 would pass the deadline
    assert clock.now - 1000.0 == 7.0


def test_stop_ends_a_back_off_wait_without_another_attempt():
    clock = Clock()
    endpoint = Endpoint(clock)
    result = retry(endpoint, deadline=clock.now + 60, state=RetryState(fixed(), clock),
                   stop=ClockStop(clock, set_after=2))
    assert result.attempts == 2 and not result.outcome.ok


def test_max_attempts_bounds_one_export():
    clock = Clock()
    endpoint = Endpoint(clock)
    result = retry(endpoint, deadline=clock.now + 3600, state=RetryState(fixed(), clock), stop=ClockStop(clock),
                   max_attempts=6)
    assert result.attempts == 6 and len(result.outcomes) == 6


def test_a_deadline_already_passed_makes_no_attempt():
    clock = Clock()
    endpoint = Endpoint(clock)
    result = retry(endpoint, deadline=clock.now, state=RetryState(fixed(), clock), stop=ClockStop(clock))
    assert result.attempts == 0 and endpoint.times == [] and result.outcome.retryable


def test_a_zero_hint_retries_at_once_without_waiting():
    clock = Clock()
    stop = ClockStop(clock)
    endpoint = Endpoint(clock, answer=Outcome.retry("x", retry_after_s=0.0))
    result = retry(endpoint, deadline=clock.now + 1, state=RetryState(fixed(), clock), stop=stop, max_attempts=3)
    assert result.attempts == 3 and stop.waits == []
