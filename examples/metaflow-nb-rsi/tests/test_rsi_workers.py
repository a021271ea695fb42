"""Tests of the example workers, the way a plugin author tests one.

1. Hand bars: a few bars whose RSI and mask are worked out by hand (exact fractions).
2. A plain-Python reference: the definition written as simply as possible, compared bit
   for bit with the compiled kernel on real data.
3. Causality: a prefix replay by hand, then ``mf.check_causality`` for each worker and
   for the whole strategy (what ``metaflow-nb check-causality`` runs).
4. The package as installed: the entry point, the configs, the reason code in the journal.

Run from anywhere: ``python -m pytest examples/metaflow-nb-rsi/tests``.
"""
from __future__ import annotations

from fractions import Fraction
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import metaflow_nb as mf
from metaflow_nb.errors import ConfigError
from metaflow_nb.workers.base import FeatureContext
from mf_rsi import RsiReversion, RsiReversionParams, TrendGuard, TrendGuardParams, level_crosses, wilder_rsi
from mf_rsi.workers import RsiExit, RsiExitParams

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
STRATEGY = CONFIGS / "rsi_reversion.yaml"
OPERATION = CONFIGS / "sp500_daily.yaml"


def bars(closes: list[float]) -> pd.DataFrame:
    """Daily bars whose open, high, low and close are all ``closes`` (only closes matter here)."""
    c = [float(x) for x in closes]
    idx = pd.date_range("2024-01-01", periods=len(c), freq="D", name="time")
    return mf.load_data(pd.DataFrame({"open": c, "high": c, "low": c, "close": c}, index=idx))


def reference_rsi(close: list[float], period: int) -> list[float]:
    """Wilder's RSI from its definition, in plain Python (the same operations in the same
    order as the kernel, so the bits must agree)."""
    n = len(close)
    out = [float("nan")] * n
    if n <= period:
        return out
    d = [close[i] - close[i - 1] for i in range(1, n)]  # d[i - 1] is bar i's change
    gain, loss = 0.0, 0.0
    for x in d[:period]:
        if x > 0:
            gain += x
        elif x < 0:
            loss -= x
    ag, al = gain / period, loss / period

    def value(g: float, lo: float) -> float:
        if lo == 0.0:
            return 100.0 if g > 0.0 else 50.0
        return 100.0 - 100.0 / (1.0 + g / lo)

    out[period] = value(ag, al)
    for i in range(period + 1, n):
        x = d[i - 1]
        ag = (ag * (period - 1) + max(x, 0.0)) / period
        al = (al * (period - 1) + max(-x, 0.0)) / period
        out[i] = value(ag, al)
    return out


# ------------------------------------------------------------------ hand bars

def test_rsi_by_hand():
    # changes +1, -0.5, +1.5, -1, +0.5, +1.5; period 3
    close = [10.0, 11.0, 10.5, 12.0, 11.0, 11.5, 13.0]
    F = Fraction
    ag, al = F(5, 2) / 3, F(1, 2) / 3                       # bar 3: means of bars 1..3
    want = [100 - 100 / (1 + ag / al)]                      # RS 5: 250/3
    for g, lo in ((0, 1), (F(1, 2), 0), (F(3, 2), 0)):      # bars 4, 5, 6
        ag, al = (ag * 2 + g) / 3, (al * 2 + lo) / 3
        want.append(100 - 100 / (1 + ag / al))
    assert want == [F(250, 3), F(500, 9), F(580, 9), F(13900, 171)]
    got = wilder_rsi(np.array(close), period=3)
    assert np.isnan(got[:3]).all()
    assert got[3:].tolist() == pytest.approx([float(w) for w in want], rel=1e-14)


def test_rsi_edge_cases():
    assert wilder_rsi(np.array([1.0, 2.0, 3.0, 4.0]), 2).tolist()[2:] == [100.0, 100.0]  # no losses
    assert wilder_rsi(np.array([4.0, 3.0, 2.0, 1.0]), 2).tolist()[2:] == [0.0, 0.0]      # no gains
    assert wilder_rsi(np.array([5.0, 5.0, 5.0]), 2).tolist()[2:] == [50.0]               # flat
    assert np.isnan(wilder_rsi(np.array([1.0, 2.0]), 2)).all()                          # too short


def test_rsi_matches_the_reference_bit_for_bit_on_real_data():
    close = mf.load_data("sp500_daily")["close"].to_numpy()
    for period in (2, 14, 50):
        got = wilder_rsi(close, period)
        want = np.array(reference_rsi(close.tolist(), period))
        np.testing.assert_array_equal(got, want)  # NaN equal to NaN, every other bit equal


def test_crosses_are_stamped_on_the_bar_that_completes_them():
    rsi = np.array([np.nan, 28.0, 30.0, 29.0, 31.0, 71.0, 70.0, 69.0, 72.0, 65.0])
    # 28 -> 30 reaches the level (long); 29 -> 31 again; 71 -> 70 reaches 70 (short); 72 -> 65
    assert level_crosses(rsi, 30.0, 70.0).tolist() == [0, 0, 1, 0, 1, 0, -1, 0, 0, -1]


def test_opportunity_worker_on_hand_bars():
    # period 2: a drop drives the RSI to 0, the rebound lifts it through 30 on bar 4
    close = [10.0, 9.0, 8.0, 7.0, 8.0, 9.0]
    rsi = wilder_rsi(np.array(close), 2)
    assert rsi.tolist()[2:] == [0.0, 0.0, 50.0, 75.0]
    sig = RsiReversion("rsi_1", RsiReversionParams(period=2)).detect(FeatureContext(bars(close)))
    assert sig.direction.tolist() == [0, 0, 0, 0, 1, 0]
    assert sig.direction.dtype == np.int8 and np.isnan(sig.top).all() and np.isnan(sig.bottom).all()


def test_trend_mask_on_hand_bars():
    # ema(2): nan, 9.5, 8.5, 7.5, 7.5, 7.433, 8.478, 9.493; slope over 1 bar
    close = [10.0, 9.0, 8.0, 7.0, 7.5, 7.4, 9.0, 10.0]
    guard = TrendGuard("trend_1", TrendGuardParams(ema_period=2, slope_bars=1))
    # bars 2, 3, 5: below a falling EMA, longs refused (1); bar 4: the EMA did not move;
    # bars 6, 7: above a rising EMA, shorts refused (2); bars 0, 1: warm-up
    assert guard.mask(FeatureContext(bars(close))).tolist() == [0, 0, 1, 1, 0, 1, 2, 2]
    # the mirror image refuses the mirrored direction
    mirror = [20.0 - c for c in close]
    assert guard.mask(FeatureContext(bars(mirror))).tolist() == [0, 0, 2, 2, 0, 2, 1, 1]
    # a slope window longer than the data refuses nothing
    long_slope = TrendGuard("trend_1", TrendGuardParams(ema_period=2, slope_bars=20))
    assert long_slope.mask(FeatureContext(bars(close))).tolist() == [0] * 8


def test_the_guard_declares_its_reason_code():
    assert TrendGuard.declared_reasons() == ("AGAINST_TREND",)
    assert TrendGuard("trend_1", TrendGuardParams()).instance_reason() == "AGAINST_TREND"


# ------------------------------------------------------------------ causality

def test_prefix_replay_by_hand():
    """Causal: on the first k bars a worker gives, for every bar before k, what it gives on all bars."""
    data = mf.load_data("sp500_daily")
    rsi_w = RsiReversion("rsi_1", RsiReversionParams(period=7))
    guard = TrendGuard("trend_1", TrendGuardParams(ema_period=50, slope_bars=3))
    full_dir = rsi_w.detect(FeatureContext(data)).direction
    full_mask = guard.mask(FeatureContext(data))
    for k in (60, 1234, 4000):
        part = FeatureContext(data.iloc[:k])
        np.testing.assert_array_equal(rsi_w.detect(part).direction, full_dir[:k])
        np.testing.assert_array_equal(guard.mask(part), full_mask[:k])


@pytest.mark.parametrize("plugin, params", [("rsi_reversion", {"period": 7}), ("trend_guard", {"ema_period": 50})])
def test_check_causality_passes_for_each_worker(plugin, params):
    res = mf.check_causality(plugin, params=params, data="sp500_daily", cuts=4, seed=1)
    assert res.ok, repr(res)
    assert any(out in ("direction", "mask") for _, out in res.compared)


def test_check_causality_passes_for_the_strategy():
    res = mf.check_causality(str(STRATEGY), operation=str(OPERATION), cuts=3, seed=2)
    assert res.ok, repr(res)
    assert {("run", "journal"), ("run", "trades")} <= set(res.compared)


# ------------------------------------------------------------------ as installed

def test_registered_by_entry_point():
    eps = {ep.name: ep.value for ep in entry_points(group="metaflow_nb.workers")}
    assert eps.get("rsi") == "mf_rsi", "install the package: pip install -e examples/metaflow-nb-rsi"
    assert "rsi_reversion" in mf.known_plugins("opportunity")
    assert "trend_guard" in mf.known_plugins("threat")


def test_strategy_runs_and_names_the_reason_in_the_journal():
    res = mf.backtest(str(STRATEGY), str(OPERATION))
    rej = res.journal[res.journal["event"] == "OPPORTUNITY_REJECTED"]
    assert len(rej) > 0 and set(rej["reason"]) == {"AGAINST_TREND"} and set(rej["threat_id"]) == {"trend_1"}
    assert list(res.rejections().index) == ["AGAINST_TREND"]
    assert res.metrics["total_trades"] > 0


def test_params_are_checked_with_their_bounds():
    with pytest.raises(ConfigError, match=r"oversold"):
        mf.backtest(str(STRATEGY), str(OPERATION), rsi_1__oversold=60)
    assert mf.suggested_space("rsi_reversion")["period"] == {"start": 7, "end": 28, "step": 7}


# ------------------------------------------------------------------ an exit rule of its own

def test_rsi_exit_flags_by_hand_and_the_engine_exits_at_the_next_open():
    # RSI(2) of these closes: NaN, NaN, 0, 50, 75, 87.5, then below 60 (test_rsi_by_hand's recursion)
    data = bars([10.0, 9.0, 8.0, 9.0, 10.0, 11.0, 10.5, 10.0])
    plan = RsiExit("x_1", RsiExitParams(period=2, level=60)).plan(FeatureContext(data), None, None)
    assert plan.exit_long.tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    assert plan.exit_short.tolist()[:4] == [0, 0, 1, 1]
    # the RSI crosses up through 30 at bar 3's close: long at bar 4's open (10), out at bar 5's
    # open (11), bar 4's close being the first with the RSI above 60
    strategy = {"name": "exit", "workforce": {
        "opportunity_workers": [{"instance_id": "rsi_1", "plugin": "rsi_reversion",
                                 "params": {"period": 2, "oversold": 30, "overbought": 99}}],
        "planning_workers": {"exit_planning": [{"instance_id": "x_1", "plugin": "rsi_exit",
                                                "params": {"period": 2, "level": 60}}]}}}
    t = mf.backtest(strategy, data=data).trades
    assert t[["entry_bar", "exit_bar", "exit_price", "exit_reason"]].values.tolist() == [[4, 5, 11.0, "RSI_BACK"]]


def test_check_causality_passes_for_the_exit_rule_and_the_variant():
    res = mf.check_causality("rsi_exit", params={"period": 7, "level": 55}, data="sp500_daily", cuts=4, seed=3)
    assert res.ok, repr(res)
    assert {out for _, out in res.compared} >= {"exit_long", "exit_short"}


def test_the_exit_variants_config_runs_both_exits():
    cmp = mf.compare_variants(str(CONFIGS / "rsi_exit_variants.yaml"), backend="sequential", progress=False)
    by = {v.name: v for v in cmp.variants}
    reasons = set(by["rsi_exit"].result.trades["exit_reason"])
    assert "RSI_BACK" in reasons and "EXIT_CONDITION" not in reasons and "TIME_STOP" not in reasons
    assert "TIME_STOP" in set(by["time_stop"].result.trades["exit_reason"])
