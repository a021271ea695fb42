"""An exit planner names its own exit conditions (hunt21 F2).

An exit planner may declare ``reasons`` (upper-case names, as a threat does): its exit
conditions (``ExitPlan.exit_long`` / ``exit_short``) then close trades under its own
exit reason instead of ``EXIT_CONDITION``, in the trades and the journal. In the kernel
the name's code is packed beside the flag in ``Exits.flat_at``
(``code << EXIT_NAME_SHIFT_LONG`` / ``EXIT_NAME_SHIFT_SHORT``); 0 reads ``EXIT_CONDITION``.
When two planners flag one bar, the first in ``exit_planning`` names the exit.

Bars as in ``tests/test_exit_conditions.py``: (open, high, low, close), all in, whole units.
"""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import yaml

import engine_helpers as h
import metaflow_nb as mf
from metaflow_nb.engine import codes
from metaflow_nb.errors import ConfigError
from metaflow_nb.workers import base as wbase
from metaflow_nb.workers.base import Params, param
from metaflow_nb.workers.contracts import ContextWorker, ThreatWorker

ROWS = [(100, 100, 100, 100), (100, 101, 99, 100.5), (100.5, 103, 100, 102), (102, 103, 101, 102.5),
        (103, 104, 102, 103)]
LONG, SHORT = codes.BAR_EXIT_LONG, codes.BAR_EXIT_SHORT


class TwoDown(h.ScriptedExit):
    """The scripted exit, its exits named ``TWO_DOWN``."""

    name = "test_two_down_exit"
    reasons = ("TWO_DOWN",)


class PickedParams(h.ScriptedExitParams):
    named: str = param("BACK_INSIDE", description="which of the declared names its exits carry")


class Picked(h.ScriptedExit):
    """Two declared names; a param picks the one an instance's exits carry."""

    name = "test_picked_exit"
    Params = PickedParams
    reasons = ("BACK_INSIDE", "MOMENTUM_GONE")

    @property
    def reason(self) -> str:
        return self.params.named


class TwoDownCopy(h.ScriptedExit):
    name = "test_two_down_exit_copy"
    reasons = ("TWO_DOWN",)


TwoDown, Picked, TwoDownCopy = (h._register(c) for c in (TwoDown, Picked, TwoDownCopy))


def closed(out) -> list[tuple]:
    return [(int(t["entry_bar"]), int(t["exit_bar"]), float(t["exit_price"]), int(t["exit_reason"]))
            for t in out["trades"]]


def exits(bp: dict, *planners: tuple) -> dict:
    for instance, plugin, params in planners:
        bp["workforce"]["planning_workers"]["exit_planning"].append(
            {"instance_id": instance, "plugin": plugin, "params": params})
    return bp


def exits_of(res) -> list[list]:
    return res.trades[["exit_bar", "exit_reason"]].values.tolist()


# ---------------------------------------------------------------- the kernel, by hand

def test_the_kernel_reads_the_name_packed_beside_the_flag():
    code = codes.allocate_exit_reason("TEST_KERNEL_NAMED")
    df = h.make_ohlc(ROWS)
    named_long = LONG | code << codes.EXIT_NAME_SHIFT_LONG
    assert closed(h.kernel(df, [0], [1], flat_at=[0, 0, named_long, 0, 0])) == [(1, 3, 102.0, code)]
    # the name of the other side's exit names nothing on this side
    both = LONG | SHORT | code << codes.EXIT_NAME_SHIFT_SHORT
    assert closed(h.kernel(df, [0], [1], flat_at=[0, 0, both, 0, 0])) == [(1, 3, 102.0, codes.EXIT_CONDITION)]
    assert closed(h.kernel(df, [0], [-1], flat_at=[0, 0, both, 0, 0])) == [(1, 3, 102.0, code)]
    # a name without its flag closes nothing
    assert closed(h.kernel(df, [0], [1], flat_at=[0, 0, code << codes.EXIT_NAME_SHIFT_LONG, 0, 0])) == []


# ---------------------------------------------------------------- through plugins

def test_a_planners_own_name_reaches_trades_and_journal():
    df = h.make_ohlc(ROWS)
    res = mf.backtest(exits(h.blueprint(longs=[0]), ("x_1", TwoDown.name, {"longs": [2]})),
                      h.operation(slippage=0.001), data=df)
    assert res.trades[["entry_bar", "exit_bar", "exit_reason"]].values.tolist() == [[1, 3, "TWO_DOWN"]]
    assert res.trades["exit_price"].iloc[0] == pytest.approx(102 * 0.999)
    j = res.journal[res.journal["event"] == "TRADE_CLOSED"]
    assert j[["bar", "reason"]].values.tolist() == [[3, "TWO_DOWN"]]
    # a short's flag names a short's exit
    res = mf.backtest(exits(h.blueprint(shorts=[0]), ("x_1", TwoDown.name, {"shorts": [1]})), h.operation(), data=df)
    assert exits_of(res) == [[2, "TWO_DOWN"]]


def test_the_first_planner_to_flag_a_bar_names_its_exit():
    df = h.make_ohlc(ROWS)
    run = lambda *planners: exits_of(mf.backtest(exits(h.blueprint(longs=[0]), *planners), h.operation(), data=df))
    # each names the bars it flags first
    assert run(("x_1", TwoDown.name, {"longs": [3]}), ("x_2", Picked.name, {"longs": [2]})) == [[3, "BACK_INSIDE"]]
    assert run(("x_1", TwoDown.name, {"longs": [2]}), ("x_2", Picked.name, {"longs": [2]})) == [[3, "TWO_DOWN"]]
    assert run(("x_2", Picked.name, {"longs": [2], "named": "MOMENTUM_GONE"}),
               ("x_1", TwoDown.name, {"longs": [2]})) == [[3, "MOMENTUM_GONE"]]
    # a planner naming nothing still comes first on its bar: EXIT_CONDITION
    assert run(("x_0", "test_scripted_exit", {"longs": [2]}), ("x_1", TwoDown.name, {"longs": [2]})) == \
        [[3, "EXIT_CONDITION"]]
    assert run(("x_0", "test_scripted_exit", {"longs": [3]}), ("x_1", TwoDown.name, {"longs": [2]})) == \
        [[3, "TWO_DOWN"]]
    # one planner's short flag on the bar does not take the name of another's long flag
    assert run(("x_0", "test_scripted_exit", {"shorts": [2]}), ("x_1", TwoDown.name, {"longs": [2]})) == \
        [[3, "TWO_DOWN"]]


def test_costs_count_the_slippage_of_named_exits():
    df = h.make_ohlc(ROWS)
    paid = [mf.backtest(exits(h.blueprint(longs=[0]), ("x_1", plugin, {"longs": [2]})), h.operation(slippage=0.001),
                        data=df).costs().slippage_paid for plugin in ("test_scripted_exit", TwoDown.name)]
    # entry 99 x 100 x 0.001 and exit 99 x 102 x 0.001 (each in price terms before slippage)
    assert paid[0] == paid[1] == pytest.approx(99 * 100 * 0.001 + 99 * 102 * 0.001)


def test_names_come_with_the_result_not_from_the_reading_process(monkeypatch):
    res = mf.backtest(exits(h.blueprint(longs=[0]), ("x_1", TwoDown.name, {"longs": [2]})), h.operation(),
                      data=h.make_ohlc(ROWS))
    blob = pickle.dumps(res)
    code = codes.EXIT_REASONS["TWO_DOWN"]
    monkeypatch.setitem(codes.REASON_NAMES, code, "SOMETHING_ELSE")
    back = pickle.loads(blob)
    assert exits_of(back) == [[3, "TWO_DOWN"]]
    assert back.journal.loc[back.journal["event"] == "TRADE_CLOSED", "reason"].tolist() == ["TWO_DOWN"]


def _sma_with(*planners: tuple) -> dict:
    bp = yaml.safe_load(open("config/runs/sma_cross.yaml"))
    return exits(bp, *planners)


def test_batch_sweep_equals_the_general_path_with_named_exits():
    space = [{"worker_instance": "sma_1", "parameters": {"fast": {"values": [5, 10]}, "slow": {"values": [30, 60]}}},
             {"worker_instance": "x_1", "parameters": {"every": {"values": [7, 25]}}},
             {"worker_instance": "x_2", "parameters": {"named": {"values": ["BACK_INSIDE", "MOMENTUM_GONE"]}}}]
    cfg = {"name": "named exits", "base_strategy": _sma_with(("x_1", TwoDown.name, {}),
                                                             ("x_2", Picked.name, {"every": 5})),
           "parameter_space": space, "base_operation": "config/operations/sp500_daily.yaml"}
    tables = [mf.optimize(cfg, engine=e, backend="sequential", progress=False).all_results.sort_values("run_id")
              .reset_index(drop=True) for e in ("batch", "general")]
    assert len(tables[0]) == 16
    metrics = [c for c in tables[0].columns if c in mf.backtest("config/runs/sma_cross.yaml").metrics]
    pd.testing.assert_frame_equal(tables[0][["run_id", *metrics]], tables[1][["run_id", *metrics]])
    # and a single run of one combination names both planners' exits
    res = mf.backtest(_sma_with(("x_1", TwoDown.name, {"every": 25}), ("x_2", Picked.name, {"every": 5})),
                      data="sp500_daily")
    assert {"TWO_DOWN", "BACK_INSIDE"} <= set(res.trades["exit_reason"])
    assert "EXIT_CONDITION" not in set(res.trades["exit_reason"])


# ---------------------------------------------------------------- the contract

def test_declared_names_get_codes_at_registration():
    code = codes.EXIT_REASONS["TWO_DOWN"]
    assert code >= codes.FIRST_PLUGIN_REASON and codes.REASON_NAMES[code] == "TWO_DOWN"
    assert codes.allocate_exit_reason("TWO_DOWN") == code  # a name keeps its code
    assert TwoDown.declared_reasons() == ("TWO_DOWN",)
    assert TwoDown("x_1", TwoDown.Params()).instance_reason() == "TWO_DOWN"
    # an exit planner naming nothing is fine: its exits read EXIT_CONDITION
    assert wbase.get_plugin("test_scripted_exit").declared_reasons() == ()


@pytest.mark.parametrize("name, message", [
    ("STOP_LOSS", "'STOP_LOSS' is a built-in skip, cancel or exit reason"),
    ("EXIT_CONDITION", "'EXIT_CONDITION' is a built-in skip, cancel or exit reason"),
    ("MARKET_RISK", "'MARKET_RISK' is a threat's reason; an exit needs a name of its own"),
    ("two_down", "'two_down' is not an upper-case identifier"),
])
def test_registration_refuses_bad_or_taken_exit_names(name, message):
    class Bad(h.ScriptedExit):
        name = "test_bad_exit_name"

    Bad.reasons = (name,)
    with pytest.raises(TypeError, match=r"^Bad: reason code " + message.replace("(", r"\(")):
        wbase.register(Bad)
    assert "test_bad_exit_name" not in wbase.known_plugins()


def test_a_threat_cannot_take_an_exits_name():
    class Thief(ThreatWorker):
        name = "test_threat_takes_exit_name"
        reasons = ("TWO_DOWN",)

        def mask(self, ctx):  # pragma: no cover - never registered
            return np.zeros(ctx.n, np.int8)

    with pytest.raises(TypeError, match=r"^Thief: reason code 'TWO_DOWN' is an exit planner's exit reason; "
                                        r"a threat needs a name of its own"):
        wbase.register(Thief)


def test_reason_codes_on_other_roles_are_still_refused():
    class Named(ContextWorker):
        name = "test_named_context"
        reasons = ("SOMETHING",)

        def compute(self, ctx):  # pragma: no cover - never registered
            return {}

    with pytest.raises(TypeError, match=r"^Named: declares reason codes, but it is a context worker: reason codes "
                                        r"name a threat worker's rejections or an exit planner's exits"):
        wbase.register(Named)


def test_config_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "picked.yaml"
    path.write_text(yaml.safe_dump(_sma_with(("x_1", Picked.name, {"named": "TWO_DOWN"}))))
    with pytest.raises(ConfigError) as err:
        mf.build_specs(str(path), data="sp500_daily")
    assert str(err.value) == (
        f"{path}: workforce.planning_workers.exit_planning[1].params.named: reason 'TWO_DOWN' is not one of the "
        f"reason codes 'test_picked_exit' declares (BACK_INSIDE, MOMENTUM_GONE)")
    path.write_text(yaml.safe_dump(_sma_with(("x_1", TwoDown.name, {}), ("x_2", TwoDownCopy.name, {}))))
    with pytest.raises(ConfigError) as err:
        mf.build_specs(str(path), data="sp500_daily")
    assert str(err.value).startswith(
        f"{path}: workforce.planning_workers.exit_planning: reason code 'TWO_DOWN' is declared by two plugins, "
        f"'test_two_down_exit' (workforce.planning_workers.exit_planning[1]) and 'test_two_down_exit_copy' "
        f"(workforce.planning_workers.exit_planning[2])")
    # two instances of one plugin share its names
    mf.build_specs(_sma_with(("x_1", TwoDown.name, {}), ("x_2", TwoDown.name, {})), data="sp500_daily")


def test_a_basket_names_each_accounts_exits():
    bp = _sma_with(("x_1", TwoDown.name, {"every": 25}))
    res = mf.backtest(bp, {"mode": "independent", "universe": {"path": "us_stocks"}, "data": {"start": "2008-01-01"}})
    assert set(res.trades["exit_reason"]) == {"TWO_DOWN", "SIGNAL"}
    closed_ = res.journal[res.journal["event"] == "TRADE_CLOSED"]
    assert (closed_["reason"].value_counts() == res.trades["exit_reason"].value_counts()).all()


def test_a_sweep_row_with_a_name_the_planner_does_not_declare_names_file_and_key(tmp_path):
    # hunt24 L1: the row said only "x_2: reason 'BOGUS' is not one of ..." (the run path's check)
    space = [{"worker_instance": "x_2", "parameters": {"named": {"values": ["BACK_INSIDE", "BOGUS"]}}}]
    cfg = {"optimization_config": {"name": "names", "base_strategy": _sma_with(("x_2", Picked.name, {"every": 5})),
                                   "parameter_space": space, "base_operation": "config/operations/sp500_daily.yaml"}}
    for engine in ("batch", "general"):
        rows = mf.optimize(cfg, engine=engine, backend="sequential", progress=False).all_results
        bad = rows.loc[rows["status"] == "failed", "error"].tolist()
        assert len(bad) == 1 and "parameter_space: combination" in bad[0], bad
        assert bad[0].endswith("workforce.planning_workers.exit_planning[1].params.named: reason 'BOGUS' is not one "
                               "of the reason codes 'test_picked_exit' declares (BACK_INSIDE, MOMENTUM_GONE)"), bad


def test_several_names_and_no_pick_says_to_set_reason(tmp_path):
    # hunt24 L2: "reason '' is not one of ..." said nothing of what to do
    class Unpicked(h.ScriptedExit):
        name = "test_unpicked_exit"
        reasons = ("NAME_A", "NAME_B")

    h._register(Unpicked)
    with pytest.raises(ConfigError, match=r"exit_planning\[1\]: 'test_unpicked_exit' declares several reason codes "
                                          r"\(NAME_A, NAME_B\); set reason \(a class attribute, or a property "
                                          r"reading a param\) to the one an instance uses"):
        mf.build_specs(_sma_with(("x_1", "test_unpicked_exit", {})), data="sp500_daily")


def test_check_causality_of_a_planner_refuses_a_name_it_does_not_declare():
    # hunt24 L3: passed (exit 0) for a name the planner refuses in a strategy
    with pytest.raises(ConfigError, match=r"^test_picked_exit: params\.named: reason 'BOGUS' is not one of the "
                                          r"reason codes 'test_picked_exit' declares \(BACK_INSIDE, MOMENTUM_GONE\)$"):
        mf.check_causality(Picked.name, params={"named": "BOGUS", "every": 5}, data="sp500_daily", cuts=[100])
    assert mf.check_causality(Picked.name, params={"named": "MOMENTUM_GONE", "every": 5}, data="sp500_daily",
                              cuts=[100]).ok
