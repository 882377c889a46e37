"""The shipper's CPU budget: the controller's arithmetic, and calls kept without rows counted exactly."""

import random

import numpy as np
import pytest

import driftcar
from driftcar.hook.shipping import Shipper, ShipperConfig
from driftcar.hook.shipping.budget import FLOOR_CORE_SHARE, MIN_KEEP, PERIOD_S, CpuBudget
from driftcar.hook.shipping.config import parse_share
from tests.unit.shipping.helpers import FakeExporter, decoded_batches


class _Clock:
    """Wall time and the process's CPU, moved by the test."""

    def __init__(self):
        self.now = 100.0
        self.cpu = 10.0

    def wall(self):
        return self.now

    def process(self):
        return self.cpu


def _budget(share):
    clock = _Clock()
    return CpuBudget(share, clock=clock.wall, process_cpu=clock.process), clock


def _period(budget, clock, worker, worker_s, process_s, wall_s=PERIOD_S):
    """One period in which the worker used ``worker_s`` of the process's ``process_s`` CPU seconds."""
    clock.now += wall_s
    clock.cpu += process_s
    worker[0] += worker_s
    budget.update(worker[0])


def _started(share):
    budget, clock = _budget(share)
    worker = [1.0]
    budget.update(worker[0])  # the first update only anchors the period
    return budget, clock, worker


def test_no_budget_keeps_every_call():
    budget, clock, worker = _started(None)
    for _ in range(5):
        _period(budget, clock, worker, 0.9, 1.0)
    assert budget.keep == 1.0 and budget.periods == 0


def test_over_the_budget_the_kept_share_falls_in_proportion():
    budget, clock, worker = _started(0.03)
    _period(budget, clock, worker, 0.06, 1.0)  # the worker took 6 % of the process: twice the budget
    assert budget.keep == pytest.approx(0.5)
    assert budget.last_share == pytest.approx(0.06) and budget.over_periods == 1


def test_one_period_cuts_at_most_64_times_and_never_below_the_floor():
    budget, clock, worker = _started(0.01)
    _period(budget, clock, worker, 0.9, 1.0)  # 90x the budget
    assert budget.keep == pytest.approx(1 / 64)
    for _ in range(10):
        _period(budget, clock, worker, 0.9, 1.0)
    assert budget.keep == MIN_KEEP


def test_under_the_budget_the_kept_share_rises_at_most_twofold_to_one():
    budget, clock, worker = _started(0.03)
    budget.keep = 0.01
    # a server on 8 cores: the worker 1 % of the process (8 % of a core, over the floor): room for 2.4x, taken 2x
    _period(budget, clock, worker, 0.02, 2.0)
    assert budget.keep == pytest.approx(0.02) and budget.periods == 1
    for _ in range(10):
        _period(budget, clock, worker, 0.02, 2.0)
    assert budget.keep == 1.0


def test_near_the_budget_it_aims_below_it():
    budget, clock, worker = _started(0.03)
    budget.keep = 0.5
    _period(budget, clock, worker, 0.025, 1.0)  # just under the budget: aim at 80 % of it (2.4 %)
    assert budget.keep == pytest.approx(0.5 * 0.8 * 0.03 / 0.025)


def test_a_short_period_or_a_worker_below_the_floor_decides_nothing_against_the_model():
    budget, clock, worker = _started(0.03)
    budget.keep = 0.25
    _period(budget, clock, worker, 0.9, 1.0, wall_s=PERIOD_S / 2)  # not a whole period yet
    assert budget.keep == 0.25 and budget.periods == 0
    idle, clock, worker = _started(0.03)
    idle.keep = 0.25
    # a cheap model at a low rate: the worker is half the process's CPU but 2.5 % of a core
    _period(idle, clock, worker, FLOOR_CORE_SHARE / 2 * PERIOD_S, FLOOR_CORE_SHARE * PERIOD_S)
    assert idle.keep == 0.5 and idle.periods == 0


def test_a_restart_keeps_every_call_and_measures_afresh():
    budget, clock, worker = _started(0.03)
    _period(budget, clock, worker, 0.3, 1.0)
    assert budget.keep < 1.0
    budget.restart()
    assert budget.keep == 1.0
    _period(budget, clock, worker, 0.3, 1.0)  # anchors again: no decision on the parent's figures
    assert budget.keep == 1.0


@pytest.mark.parametrize("text, share", [("0.03", 0.03), ("3%", 0.03), (" 50% ", 0.5), ("1", 1.0), ("off", None),
                                         ("0", None), ("none", None)])
def test_budget_shares_parse(text, share):
    assert parse_share(text) == share


@pytest.mark.parametrize("text", ["2", "-1%", "fast", "150%"])
def test_bad_budget_shares_are_refused_with_the_value(text):
    with pytest.raises(ValueError, match="share"):
        parse_share(text)


def test_the_budget_comes_from_the_environment_or_a_keyword():
    env = {"DRIFTCAR_CPU_BUDGET": "5%"}
    assert ShipperConfig.from_env("m", env=env).cpu_budget == 0.05
    assert ShipperConfig.from_env("m", env=env, cpu_budget="off").cpu_budget is None
    assert ShipperConfig("m").cpu_budget == 0.03
    assert ShipperConfig("m", cpu_budget=0).cpu_budget is None
    with pytest.raises(ValueError, match="cpu_budget"):
        ShipperConfig("m", cpu_budget=1.5)
    with pytest.raises(ValueError, match="DRIFTCAR_CPU_BUDGET"):
        ShipperConfig.from_env("m", env={"DRIFTCAR_CPU_BUDGET": "lots"})


# --------------------------------------------------------------------------- the capture side


def _shipper(shippers, fake):
    s = Shipper(ShipperConfig("m", "1", resource={"service.name": "t"}, max_batch_age_s=60.0, cpu_budget=0.03),
                exporter_factory=lambda cfg: fake)
    shippers.append(s)
    return s


def test_calls_with_row_ids_keep_their_rows_past_the_budget(shippers):
    fake = FakeExporter()
    s = _shipper(shippers, fake)
    monitor = driftcar.instrument(lambda X: X[:, 0] * 2, name="ids", shipper=s)
    s.gate.keep = 0.0
    with monitor.ids(["a", "b"]):
        monitor(np.ones((2, 2)))  # labels will be joined to these rows: kept
    monitor(np.ones((2, 2)))  # no ids: sent without rows
    assert s.flush(10)
    assert monitor.stats["captured_rows"] == 2 and monitor.stats["shed_calls"] == 1


@pytest.mark.parametrize("rows", [1, 300])  # a block's layout (1 row) and the compact item (past a block)
def test_calls_kept_without_rows_are_sent_as_calls_and_counted(shippers, rows):
    fake = FakeExporter()
    s = _shipper(shippers, fake)
    monitor = driftcar.instrument(lambda X: (X[:, 0] > 0).astype(np.int64), name=f"m{rows}", shipper=s)
    s.gate.keep = 0.5  # as the controller would set it
    random.seed(7)
    x = np.arange(rows * 2, dtype=np.float64).reshape(rows, 2)
    for _ in range(400):
        monitor(x)
    assert s.flush(10)
    stats = monitor.stats
    assert stats["calls"] == 400 and 0 < stats["shed_calls"] < 400
    assert stats["shed_rows"] == stats["shed_calls"] * rows
    assert stats["captured_rows"] + stats["shed_rows"] == 400 * rows
    batches = [b for _, b in decoded_batches(fake.requests())]
    calls_rows = np.concatenate([np.asarray(b.calls.columns["rows"]) for b in batches])
    captured = np.concatenate([np.asarray(b.calls.columns["captured"]) for b in batches])
    assert len(calls_rows) == 400 and calls_rows.sum() == 400 * rows  # every call, with its rows: golden signals
    assert (captured == 0).sum() == stats["shed_calls"]  # the shed calls carry no data
    assert sum(b.rows for b in batches) == stats["captured_rows"] == stats["sent_rows"]
    assert stats["dropped_rows"] == 0


def test_with_nothing_kept_no_data_is_sent_and_every_call_is(shippers):
    fake = FakeExporter()
    s = _shipper(shippers, fake)
    monitor = driftcar.instrument(lambda X: X[:, 0] * 2, name="m0", shipper=s)
    s.gate.keep = 0.0
    for i in range(600):  # more than a calls block holds: sealed full by a model thread, and by the flush
        monitor(np.full((3, 2), float(i)))
    assert s.flush(10)
    batches = [b for _, b in decoded_batches(fake.requests())]
    assert sum(b.rows for b in batches) == 0 and monitor.stats["captured_rows"] == 0
    durations = np.concatenate([np.asarray(b.calls.columns["duration_s"]) for b in batches])
    assert len(durations) == 600 and (durations > 0).all()
    assert monitor.stats["shed_calls"] == 600 and monitor.stats["shed_rows"] == 1_800


def test_a_dataframe_call_past_the_budget_is_sent_without_its_rows(shippers):
    pd = pytest.importorskip("pandas")
    fake = FakeExporter()
    s = _shipper(shippers, fake)
    monitor = driftcar.instrument(lambda frame: frame["a"].to_numpy() * 2, name="frames", shipper=s)
    s.gate.keep = 0.0
    monitor(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}))
    s.gate.keep = 1.0
    monitor(pd.DataFrame({"a": [3.0], "b": ["z"]}))
    assert s.flush(10)
    [batch] = [b for _, b in decoded_batches(fake.requests())]
    assert batch.rows == 1 and batch.columns["a"].tolist() == [3.0]
    assert list(batch.calls.columns["rows"]) == [2, 1] and list(batch.calls.columns["captured"]) == [0, 1]
    assert monitor.stats["shed_calls"] == 1 and monitor.stats["shed_rows"] == 2


def test_a_forked_child_keeps_every_call_until_its_own_worker_measures(shippers):
    s = _shipper(shippers, FakeExporter())
    s.gate.keep = 0.01
    s._after_fork_in_child()  # what os.fork's after-in-child hook runs
    assert s.gate.keep == 1.0 and s.gate.share == 0.03
