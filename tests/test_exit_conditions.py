"""Exit conditions of a plugin's own (``ExitPlan.exit_long`` / ``exit_short``): nonzero at
bar ``i`` closes an open long (short) at the open of bar ``i + 1``, as an opposite signal
at ``i``'s close does, with its own reason ``EXIT_CONDITION``.

In the kernel they are bit flags of ``Exits.flat_at`` (``codes.BAR_EXIT_LONG`` = 2,
``BAR_EXIT_SHORT`` = 4, beside ``BAR_FLAT`` = 1 of a session's end). Hand-computed bars
through the kernel and through a scripted exit planner (``engine_helpers.ScriptedExit``);
the quiet-bar loop; the plugin boundary; prefix replay (``check-causality`` sees them);
the batch sweep equals the general path bit for bit; mode portfolio refuses them.

Conventions as in ``tests/test_engine_fills.py``: all in, whole units, F = 1 - 2**-52;
bars are written (open, high, low, close).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import engine_helpers as h
import metaflow_nb as mf
from metaflow_nb.engine import codes
from metaflow_nb.errors import ConfigError, PluginError

F = 1.0 - 2.220446049250313e-16
ROWS = [(100, 100, 100, 100), (100, 101, 99, 100.5), (100.5, 103, 100, 102), (102, 103, 101, 102.5),
        (103, 104, 102, 103)]
LONG, SHORT = codes.BAR_EXIT_LONG, codes.BAR_EXIT_SHORT


def closed(out) -> list[tuple]:
    return [(int(t["entry_bar"]), int(t["exit_bar"]), float(t["exit_price"]), int(t["exit_reason"]))
            for t in out["trades"]]


# ---------------------------------------------------------------- the kernel, by hand

def test_a_long_leaves_at_the_open_after_its_flag_with_slippage():
    out = h.kernel(h.make_ohlc(ROWS), [0], [1], flat_at=[0, 0, LONG, 0, 0], slippage=0.001)
    # entry at 100 * 1.001; 99 units (floor(10000 F / 100.1)); exit at open[3] * 0.999
    assert closed(out) == [(1, 3, pytest.approx(102 * 0.999), codes.EXIT_CONDITION)]
    t = out["trades"][0]
    assert t["size"] == math.floor(10_000 * F / 100.1) == 99
    assert t["pnl"] == pytest.approx(99 * (102 * 0.999 - 100.1), rel=1e-12)
    j = h.journal_rows(out["journal"], codes.EV_TRADE_CLOSED)
    assert j["bar"].tolist() == [3] and j["reason"].tolist() == [codes.EXIT_CONDITION]


def test_a_flag_of_the_other_side_or_of_a_flat_bar_does_nothing():
    df = h.make_ohlc(ROWS)
    out = h.kernel(df, [0], [1], flat_at=[LONG, SHORT, SHORT, SHORT, 0])   # LONG at bar 0: nothing is held yet
    assert closed(out) == [] and out["position"][-1] == 99


def test_a_short_leaves_at_the_open_after_its_flag():
    out = h.kernel(h.make_ohlc(ROWS), [0], [-1], flat_at=[0, LONG, SHORT, 0, 0], slippage=0.001)
    assert closed(out) == [(1, 3, pytest.approx(102 * 1.001), codes.EXIT_CONDITION)]


def test_flat_at_the_close_wins_over_an_exit_at_the_next_open():
    out = h.kernel(h.make_ohlc(ROWS), [0], [1], flat_at=[0, 0, codes.BAR_FLAT | LONG, 0, 0])
    assert closed(out) == [(1, 2, 102.0, codes.EXIT_SESSION)]


def test_the_fill_bar_and_the_last_bar():
    df = h.make_ohlc(ROWS)
    # flagged on its fill bar: known at that close, out at the next open
    assert closed(h.kernel(df, [0], [1], flat_at=[0, LONG, 0, 0, 0])) == [(1, 2, 100.5, codes.EXIT_CONDITION)]
    # on the last bar there is no next open: it stays open, or finalize closes it at the last open
    assert closed(h.kernel(df, [0], [1], flat_at=[0, 0, 0, 0, LONG])) == []
    assert closed(h.kernel(df, [0], [1], flat_at=[0, 0, 0, 0, LONG], finalize=True)) == \
        [(1, 4, 103.0, codes.EXIT_END_OF_DATA)]


def test_a_setup_at_the_flag_bar_enters_after_the_exit():
    # without reversal an opposite setup on a held position is skipped (IN_POSITION); with
    # the exit pending it is placed, as after an opposite signal
    df = h.make_ohlc(ROWS)
    plain = h.kernel(df, [0, 2], [1, -1])
    assert closed(plain) == [] and plain["position"][-1] == 99
    out = h.kernel(df, [0, 2], [1, -1], flat_at=[0, 0, LONG, 0, 0])
    assert closed(out) == [(1, 3, 102.0, codes.EXIT_CONDITION)]
    assert out["position"][3] == -math.floor((10_000 + 99 * 2.0) * F / 102.0)


def test_a_flag_deep_in_a_quiet_stretch_lands_on_its_bar():
    df = h.flat_bars([100.0] * 30 + [100.0 + 0.1 * k for k in range(70)])
    flags = np.zeros(100)
    flags[80] = LONG
    for full in (False, True):
        # a drawdown monitor that never fires walks every bar (no quiet-bar loop)
        extra = dict(threat_mask=np.zeros((1, 100), np.int8), dd_limit=[1e9], dd_cooldown=[0]) if full else {}
        out = h.kernel(df, [0], [1], flat_at=flags, **extra)
        assert closed(out) == [(1, 81, pytest.approx(df["open"].iloc[81]), codes.EXIT_CONDITION)], full


def test_a_flag_and_an_opposite_setup_on_one_bar_close_once_for_the_flag():
    # reversal on: the opposite setup at bar 2 would close the long too (SIGNAL); the
    # flag came first in the bar (step 3b before the decisions), so it names the exit
    df = h.make_ohlc(ROWS)
    assert closed(h.kernel(df, [0, 2], [1, -1], reverse=1)) == [(1, 3, 102.0, codes.EXIT_SIGNAL)]
    out = h.kernel(df, [0, 2], [1, -1], reverse=1, flat_at=[0, 0, LONG, 0, 0])
    assert closed(out) == [(1, 3, 102.0, codes.EXIT_CONDITION)]
    assert out["position"][3] < 0   # and the short is entered, as after the signal alone


# ---------------------------------------------------------------- through a plugin

def with_exit(bp: dict, instance: str = "x_1", **params) -> dict:
    bp["workforce"]["planning_workers"]["exit_planning"].append(
        {"instance_id": instance, "plugin": "test_scripted_exit", "params": params})
    return bp


def test_a_planners_exit_conditions_through_the_api():
    df = h.make_ohlc(ROWS)
    res = mf.backtest(with_exit(h.blueprint(longs=[0]), longs=[2]), h.operation(slippage=0.001), data=df)
    t = res.trades
    assert t[["entry_bar", "exit_bar", "exit_reason"]].values.tolist() == [[1, 3, "EXIT_CONDITION"]]
    assert t["exit_price"].iloc[0] == pytest.approx(102 * 0.999)
    # two planners: every flag of either counts, the first one closes the trade
    bp = with_exit(with_exit(h.blueprint(longs=[0]), "x_1", longs=[3]), "x_2", longs=[2], shorts=[1])
    assert mf.backtest(bp, h.operation(), data=df).trades[["exit_bar", "exit_reason"]].values.tolist() == \
        [[3, "EXIT_CONDITION"]]
    # a short's flag does not close a long
    assert mf.backtest(with_exit(h.blueprint(longs=[0]), shorts=[1, 2, 3]), h.operation(), data=df).trades.empty
    # beside a session exit (flat at every close of daily bars: 00:00) the close comes first
    bp = with_exit(h.blueprint(longs=[0]), longs=[1])
    bp["workforce"]["planning_workers"]["exit_planning"].insert(
        0, {"instance_id": "eod", "plugin": "session_exit", "params": {"at": "00:00"}})
    assert mf.backtest(bp, h.operation(), data=df).trades[["exit_bar", "exit_reason"]].values.tolist() == \
        [[1, "SESSION_EXIT"]]


def test_the_plugin_boundary_names_the_worker_and_the_field():
    from metaflow_nb.workers.base import ExitPlan

    class Bad(h.ScriptedExit):
        name = "test_bad_exit_condition"

        def plan(self, ctx, opps, entry):
            return ExitPlan(exit_long=np.zeros(ctx.n - 1))

    bad = h._register(Bad)
    bp = h.blueprint(longs=[0])
    bp["workforce"]["planning_workers"]["exit_planning"].append({"instance_id": "x_9", "plugin": bad.name})
    with pytest.raises(PluginError, match=r"^x_9 \(exit\): exit_long has 4 values; expected 5 \(one per bar\)"):
        mf.backtest(bp, h.operation(), data=h.make_ohlc(ROWS))


@pytest.mark.parametrize("what", ["exit_long", "exit_short", "flat_at"])
def test_a_nan_flag_is_refused_not_read_as_an_exit(what):
    # NaN is "no value" everywhere else in the contract (a level, a zone); a flag of NaN
    # (a float array with a warm-up) would otherwise close every trade of the warm-up
    from metaflow_nb.workers.base import ExitPlan

    class NanFlags(h.ScriptedExit):
        name = f"test_nan_{what}"

        def plan(self, ctx, opps, entry):
            flags = np.zeros(ctx.n)
            flags[:3] = np.nan
            return ExitPlan(**{what: flags})

    cls = h._register(NanFlags)
    bp = h.blueprint(longs=[0])
    bp["workforce"]["planning_workers"]["exit_planning"].append({"instance_id": "x_9", "plugin": cls.name})
    with pytest.raises(PluginError, match=rf"^x_9 \(exit\): {what} at bar 0 is nan; expected 0 \(no exit\) "
                                          rf"or nonzero \(exit\)"):
        mf.backtest(bp, h.operation(), data=h.make_ohlc(ROWS))


def _sma_with_exit(**params) -> dict:
    import yaml
    bp = yaml.safe_load(open("config/runs/sma_cross.yaml"))
    bp["workforce"]["planning_workers"]["exit_planning"].append(
        {"instance_id": "x_1", "plugin": "test_scripted_exit", "params": params})
    return bp


def test_check_causality_sees_exit_conditions():
    assert mf.check_causality(_sma_with_exit(every=7), data="sp500_daily", cuts=[2000, 4000]).ok
    res = mf.check_causality(_sma_with_exit(peek=3), data="sp500_daily", cuts=[2000, 4000])
    assert not res.ok and ("x_1", "exit_long") in set(zip(res.findings["worker"], res.findings["output"]))


def test_batch_sweep_equals_the_general_path_bit_for_bit():
    space = [{"worker_instance": "sma_1", "parameters": {"fast": {"values": [5, 10]}, "slow": {"values": [30, 60]}}},
             {"worker_instance": "x_1", "parameters": {"every": {"values": [0, 7, 25]}}}]
    cfg = {"name": "exit conditions", "base_strategy": _sma_with_exit(), "parameter_space": space,
           "base_operation": "config/operations/sp500_daily.yaml"}
    tables = [mf.optimize(cfg, engine=e, backend="sequential", progress=False).all_results.sort_values("run_id")
              .reset_index(drop=True) for e in ("batch", "general")]
    assert len(tables[0]) == 12 and tables[0]["total_trades"].nunique() > 3
    metrics = [c for c in tables[0].columns if c in mf.backtest("config/runs/sma_cross.yaml").metrics]
    pd.testing.assert_frame_equal(tables[0][["run_id", *metrics]], tables[1][["run_id", *metrics]])


def test_mode_portfolio_refuses_them():
    with pytest.raises(ConfigError, match="an exit condition \\(exit_long / exit_short\\)"):
        mf.backtest(_sma_with_exit(every=7), {"mode": "portfolio", "universe": {"path": "us_stocks",
                                                                               "symbols": ["IBM", "MSFT"]}})
