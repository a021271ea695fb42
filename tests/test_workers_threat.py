"""Threat workers: max_drawdown_monitor, volatility_spike_detector, market_risk_monitor.

Each rule is checked on a small hand-made bar sequence (the arithmetic is in the
comments), then end to end through ``metaflow_nb.api.backtest`` (the journal must reject
with the worker's reason code and name the threat), then for causality on real data
(a mask computed on ``data[:t]`` equals the full-data mask on ``0..t-1``).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaflow_nb import api
from metaflow_nb.data import load_data
from metaflow_nb.engine.nb import threats as nbt
from metaflow_nb.workers import base as wbase
from metaflow_nb.workers.base import (
    FeatureContext, OpportunityWorker, Params, Signals, get_plugin, suggested_space,
)

# ---------------------------------------------------------------- helpers


class _SetupParams(Params):
    longs: tuple[int, ...] = ()
    shorts: tuple[int, ...] = ()


class _Setups(OpportunityWorker):
    """Test-only opportunity worker: long / short setups (no zone) at the given bars."""

    name = "threat_test_setups"
    Params = _SetupParams

    def detect(self, ctx):
        d = np.zeros(ctx.n, np.int8)
        d[[i for i in self.params.longs if i < ctx.n]] = 1
        d[[i for i in self.params.shorts if i < ctx.n]] = -1
        return Signals.from_direction(d)


wbase._ensure_builtins()
if _Setups.name not in wbase._REGISTRY:
    wbase.register(_Setups)


def bars(rows, freq="15min"):
    """OHLCV frame from (open, high, low, close) rows."""
    idx = pd.date_range("2024-01-01", periods=len(rows), freq=freq, name="time")
    df = pd.DataFrame([list(map(float, r)) for r in rows], columns=["open", "high", "low", "close"], index=idx)
    df["volume"] = 100.0
    return df


def ranged(ranges, price=1.1):
    """Bars with open = close = price and a symmetric range: true range = the range."""
    return bars([(price, price + r / 2, price - r / 2, price) for r in ranges])


def ctx_of(df, **context_params):
    return FeatureContext(df, pip_size=0.0001, context_params=context_params)


def worker(plugin, **params):
    cls = get_plugin(plugin)
    return cls(plugin + "_1", cls.Params.model_validate(params))


def strategy(longs=(), shorts=(), threats=(), context=(), stops=None, sizer=None):
    exits = []
    if stops is not None:
        exits.append({"instance_id": "stops_1", "plugin": "percent_stops", "params": stops})
    planning = {"exit_planning": exits}
    if sizer is not None:
        planning["size_planning"] = [{"instance_id": "size_1", **sizer}]
    return {
        "name": "threat_test",
        "workforce": {
            "context_workers": list(context),
            "opportunity_workers": [{"instance_id": "setups_1", "plugin": "threat_test_setups",
                                     "params": {"longs": list(longs), "shorts": list(shorts)}}],
            "threat_workers": list(threats),
            "planning_workers": planning,
        },
    }


OPERATION = {"name": "t", "instrument": {"symbol": "EURUSD", "pip_size": 0.0001}, "cash": 10_000,
             "commission": 0.0, "slippage": 0.0, "leverage": 10}


def rejections(res):
    j = res.journal
    return j[j.event == "OPPORTUNITY_REJECTED"]


def check_journal_links(res):
    """Every TRADE_OPENED follows a detected opportunity; every rejection names a threat and reason."""
    j = res.journal
    detected = set(j.loc[j.event == "OPPORTUNITY_DETECTED", "opportunity_id"])
    opened = j[j.event == "TRADE_OPENED"]
    assert opened.opportunity_id.isin(detected).all()
    assert (opened.opportunity_id >= 0).all()
    rej = rejections(res)
    assert rej.opportunity_id.isin(detected).all()
    assert (rej.threat_id != "").all() and (rej.reason != "").all()
    threat_ids = {w["instance_id"] for w in res.specs.workers() if w["section"] == "threat_workers"}
    assert set(rej.threat_id) <= threat_ids
    # every closed trade in the trades table was opened for the opportunity the journal names
    by_trade = opened.set_index("trade_id").opportunity_id
    t = res.trades
    assert list(by_trade.loc[t.trade_id]) == list(t.opportunity_id)


# ---------------------------------------------------------------- registry and params


def test_plugins_are_registered_with_reasons_and_suggestions():
    expect = {"max_drawdown_monitor": "MAX_DRAWDOWN", "volatility_spike_detector": "VOLATILITY_SPIKE",
              "market_risk_monitor": "MARKET_RISK"}
    for name, reason in expect.items():
        cls = get_plugin(name)
        assert cls.role == "threat" and cls.reason == reason and cls.declared_reasons() == (reason,)
        assert cls.__doc__ and len(cls.__doc__) > 200
    assert suggested_space("max_drawdown_monitor")["max_drawdown_pct"] == {"start": 5, "end": 25, "step": 5}
    p = get_plugin("volatility_spike_detector").Params()
    assert (p.percentile, p.lookback) == (95.0, 500)
    p = get_plugin("market_risk_monitor").Params()
    assert (p.adx_threshold, p.ema_period, p.slope_bars, p.gap_atr_multiple, p.gap_cooldown_bars) == (25, 50, 5, 2.0, 4)
    with pytest.raises(Exception):
        get_plugin("max_drawdown_monitor").Params(max_drawdown_pct=0)


def test_max_drawdown_hands_its_limit_to_the_loop():
    w = worker("max_drawdown_monitor", max_drawdown_pct=12.5, cooldown_bars=7)
    assert w.drawdown_limit() == (12.5, 7)
    assert not worker("max_drawdown_monitor").mask(ctx_of(ranged([0.001] * 5))).any()
    assert worker("max_drawdown_monitor").drawdown_limit() == (10.0, 0)


# ---------------------------------------------------------------- volatility spike


def test_rolling_percentile_matches_numpy():
    rng = np.random.default_rng(3)
    x = rng.lognormal(size=3000)
    x[:13] = np.nan  # an ATR warm-up
    for window, q in ((1, 50.0), (7, 95.0), (50, 0.0), (50, 100.0), (500, 95.0), (64, 37.5)):
        got = nbt.rolling_percentile(x, window, q)
        want = np.full_like(x, np.nan)
        w = np.lib.stride_tricks.sliding_window_view(x, window)
        ok = ~np.isnan(w).any(axis=1)
        want[window - 1:][ok] = np.percentile(w[ok], q, axis=1)
        np.testing.assert_array_equal(got, want)
    # ties: a constant series has its own value as every percentile
    np.testing.assert_array_equal(nbt.rolling_percentile(np.ones(10), 4, 95.0)[3:], np.ones(7))


def test_rolling_percentile_is_fast_on_the_bundled_data():
    n = 24_424
    x = np.random.default_rng(0).lognormal(size=n)
    nbt.rolling_percentile(x, 500, 95.0)  # compile / load from cache
    best = min(_timed(lambda: nbt.rolling_percentile(x, 500, 95.0)) for _ in range(3))
    assert best < 0.05, f"rolling percentile took {best * 1e3:.1f} ms"


def _timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def test_volatility_spike_rule_by_hand():
    # ATR(1) is the true range itself; every bar opens/closes at 1.1 with range r, so
    # TR = r. Ranges (pips): 10 everywhere, 50 on bar 6.
    ranges = [0.001] * 11
    ranges[6] = 0.005
    ctx = ctx_of(ranged(ranges), atr={"period": 1})
    w = worker("volatility_spike_detector", lookback=4, percentile=95)
    thr = w.threshold(ctx)
    # bars 0..2: fewer than 4 values in the window -> no threshold, no block
    assert np.isnan(thr[:3]).all()
    # bars 3..5: window all 10 pips -> p95 = 10 pips, ATR 10 is not ABOVE it
    np.testing.assert_allclose(thr[3:6], 0.001)
    # bars 6..9: window holds {10, 10, 10, 50}: rank 0.95 * 3 = 2.85 -> 10 + 0.85 * 40 = 44 pips
    np.testing.assert_allclose(thr[6:10], 0.0044)
    # bar 10: the 50-pip bar left the window
    np.testing.assert_allclose(thr[10], 0.001)
    mask = w.mask(ctx)
    assert mask.dtype == np.int8
    # only bar 6 (ATR 50 > 44) is a spike, and it blocks both directions
    assert list(mask) == [0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0]
    # the blueprint's atr context is used unless atr_period is set: ATR(2) on bar 6 is
    # (10 + 50) / 2 = 30 pips ... window {10,10,10,30} -> p95 = 10 + 0.85 * 20 = 27 -> still a spike
    w2 = worker("volatility_spike_detector", lookback=4, percentile=95, atr_period=2)
    assert w2.mask(ctx)[6] == 3
    # percentile 100: nothing is above the window's own maximum
    assert not worker("volatility_spike_detector", lookback=4, percentile=100).mask(ctx).any()


def test_volatility_spike_rejects_in_a_backtest():
    ranges = [0.001] * 12
    ranges[6] = 0.005
    df = ranged(ranges)
    res = api.backtest(strategy(longs=[6, 9], context=[{"instance_id": "atr_1", "plugin": "atr",
                                                        "params": {"period": 1}}],
                                threats=[{"instance_id": "vol_1", "plugin": "volatility_spike_detector",
                                          "params": {"lookback": 4, "percentile": 95}}]),
                       OPERATION, data=df)
    rej = rejections(res)
    # the setup on the spike bar 6 is rejected by vol_1; the one on bar 9 becomes an order
    assert list(rej.bar) == [6] and list(rej.reason) == ["VOLATILITY_SPIKE"] and list(rej.threat_id) == ["vol_1"]
    placed = res.journal[res.journal.event == "ORDER_PLACED"]
    assert list(placed.bar) == [9]
    check_journal_links(res)


# ---------------------------------------------------------------- market risk


def trend_bars(step, n=10):
    # close moves by `step` per bar, high/low +-5 pips around it, open 2 pips back from
    # the close: |open - prev close| = |step| - 2 pips, far below 2 x ATR (ATR >= 10 pips)
    rows = []
    for i in range(n):
        c = 1.1 + step * i
        rows.append((c - np.sign(step) * 0.0002, c + 0.0005, c - 0.0005, c))
    return bars(rows)


def test_market_risk_strong_trend_blocks_against_it():
    # Rising 10 pips a bar: +DM = 10 pips, -DM = 0, so -DI = 0, DX = 100 and with
    # ADX(2) known from bar 2 * 2 - 1 = 3 it is 100 >= 25. EMA(3) is known from bar 2 and
    # rises every bar: ema[i] > ema[i-1] from bar 3. Strong uptrend -> shorts blocked (2).
    ctx = ctx_of(trend_bars(+0.001), adx={"period": 2})
    w = worker("market_risk_monitor", ema_period=3, slope_bars=1)
    assert list(ctx.context("adx")["adx"][3:]) == [100.0] * 7
    assert list(w.mask(ctx)) == [0, 0, 0, 2, 2, 2, 2, 2, 2, 2]
    # mirror: a falling market blocks longs (1)
    ctx = ctx_of(trend_bars(-0.001), adx={"period": 2})
    assert list(w.mask(ctx)) == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    # slope over 5 bars needs ema[i - 5]: the EMA(3) starts at bar 2, so from bar 7 on
    w5 = worker("market_risk_monitor", ema_period=3, slope_bars=5)
    assert list(w5.mask(ctx)) == [0] * 7 + [1, 1, 1]
    # below the ADX threshold nothing is blocked, however steep the EMA
    assert not worker("market_risk_monitor", ema_period=3, slope_bars=1, adx_threshold=100.5).mask(ctx).any()


def gap_bars():
    # 10-pip bars around 1.1 (TR = 10 pips, ATR(2) = 10 pips); bar 5 opens 50 pips higher
    # (gap 50 >= 2 x 10) and the market stays up there.
    rows = [(1.1, 1.1005, 1.0995, 1.1)] * 5 + [(1.1050, 1.1055, 1.1045, 1.1050)] * 7
    return bars(rows)


def test_market_risk_gap_blocks_both_directions_with_cooldown():
    ctx = ctx_of(gap_bars(), atr={"period": 2}, adx={"period": 2})
    w = worker("market_risk_monitor", ema_period=3, slope_bars=1, adx_threshold=100.5,
               gap_atr_multiple=2.0, gap_cooldown_bars=2)
    # the gap bar 5 and the next 2 bars are blocked both ways; bar 5's gap is measured
    # against ATR[4] = 10 pips (bar 5's own TR is 55 pips but is not known at its open)
    assert list(w.gap_mask(ctx)) == [0, 0, 0, 0, 0, 3, 3, 3, 0, 0, 0, 0]
    assert list(w.mask(ctx)) == [0, 0, 0, 0, 0, 3, 3, 3, 0, 0, 0, 0]
    # a larger multiple (50 < 6 x 10) is no gap; cooldown 0 blocks the gap bar only
    assert not worker("market_risk_monitor", adx_threshold=100.5, gap_atr_multiple=6.0).gap_mask(ctx).any()
    assert list(np.flatnonzero(worker("market_risk_monitor", adx_threshold=100.5,
                                      gap_cooldown_bars=0).gap_mask(ctx))) == [5]


def test_market_risk_rejects_in_a_backtest():
    res = api.backtest(
        strategy(longs=[5, 7, 9], shorts=[6],
                 context=[{"instance_id": "atr_1", "plugin": "atr", "params": {"period": 2}},
                          {"instance_id": "adx_1", "plugin": "adx", "params": {"period": 2}}],
                 threats=[{"instance_id": "risk_1", "plugin": "market_risk_monitor",
                           "params": {"adx_threshold": 100.5, "ema_period": 3, "slope_bars": 1,
                                      "gap_atr_multiple": 2.0, "gap_cooldown_bars": 2}}]),
        OPERATION, data=gap_bars())
    rej = rejections(res)
    # bars 5, 6, 7 are blocked (gap + cooldown), both directions; bar 9 is free
    assert list(rej.bar) == [5, 6, 7]
    assert set(rej.reason) == {"MARKET_RISK"} and set(rej.threat_id) == {"risk_1"}
    assert list(res.journal[res.journal.event == "ORDER_PLACED"].bar) == [9]
    check_journal_links(res)


# ---------------------------------------------------------------- max drawdown, in the loop


def drawdown_bars():
    # flat at 100 with a 1-point range; bar 3 dips to 94 (the long's 95 stop is hit)
    rows = [(100, 100.5, 99.5, 100)] * 12
    rows[3] = (100, 100.5, 94, 99)
    return bars(rows, freq="D")


def drawdown_run(cooldown):
    # long setup on bar 1 -> market fill at bar 2's open (100), stop 5 % below the fill
    # (95); fixed risk 10 %: size = 10 000 * 10 % / 5 = 200 units (cap 10 000 * 10 / 100 = 1000).
    # Bar 3 stops it out at 95: -1000 -> equity 9000, drawdown 10 % >= 9 %: halted.
    return api.backtest(
        strategy(longs=[1, 4, 6, 7],
                 threats=[{"instance_id": "dd_1", "plugin": "max_drawdown_monitor",
                           "params": {"max_drawdown_pct": 9, "cooldown_bars": cooldown}}],
                 stops={"stop_loss_pct": 5.0, "reference": "fill"},
                 sizer={"plugin": "fixed_risk_sizer", "params": {"risk_pct": 10}}),
        {**OPERATION, "instrument": {"symbol": "X", "pip_size": 0.01}}, data=drawdown_bars())


def test_max_drawdown_rejects_and_rearms_after_cooldown():
    res = drawdown_run(cooldown=4)
    t = res.trades
    assert len(t) == 1 and t["size"][0] == pytest.approx(200) and t.exit_price[0] == 95 and t.exit_bar[0] == 3
    assert res.equity.iloc[3] == pytest.approx(9000)
    rej = rejections(res)
    # breach on bar 3 -> halted through bar 3 + 4 - 1 = 6: setups on bars 4 and 6 rejected
    assert list(rej.bar) == [4, 6]
    assert set(rej.reason) == {"MAX_DRAWDOWN"} and set(rej.threat_id) == {"dd_1"}
    # bar 7 = 3 + 4: the monitor re-measures from 9000 (drawdown 0) and the setup trades
    assert list(res.journal[res.journal.event == "TRADE_OPENED"].bar) == [2, 8]
    check_journal_links(res)


def test_max_drawdown_without_cooldown_stays_halted():
    res = drawdown_run(cooldown=0)
    rej = rejections(res)
    # flat after the loss, equity never recovers: every later setup is rejected
    assert list(rej.bar) == [4, 6, 7] and set(rej.reason) == {"MAX_DRAWDOWN"}
    assert list(res.journal[res.journal.event == "TRADE_OPENED"].bar) == [2]


# ---------------------------------------------------------------- causality


@pytest.fixture(scope="module")
def eurusd():
    return load_data("eurusd_15m").iloc[:3000].copy()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(t=st.integers(50, 3000), lookback=st.integers(2, 400), pct=st.floats(50, 100),
       atr_period=st.sampled_from([None, 5, 14]), adx_thr=st.floats(10, 40), ema_period=st.integers(2, 80),
       slope=st.integers(1, 10), gap_mult=st.floats(0.5, 4), cool=st.integers(0, 8))
def test_threat_masks_are_causal(eurusd, t, lookback, pct, atr_period, adx_thr, ema_period, slope, gap_mult, cool):
    workers = [
        worker("volatility_spike_detector", lookback=lookback, percentile=pct, atr_period=atr_period),
        worker("market_risk_monitor", adx_threshold=adx_thr, ema_period=ema_period, slope_bars=slope,
               gap_atr_multiple=gap_mult, gap_cooldown_bars=cool),
        worker("max_drawdown_monitor"),
    ]
    full, part = ctx_of(eurusd), ctx_of(eurusd.iloc[:t])
    for w in workers:
        np.testing.assert_array_equal(w.mask(part), w.mask(full)[:t], err_msg=w.name)


# ---------------------------------------------------------------- the shipped ICT strategy


@pytest.fixture(scope="module")
def ict_run():
    return api.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml")


def test_shipped_ict_run_uses_all_three_threats(ict_run):
    assert ict_run.metrics["total_trades"] >= 30
    counts = rejections(ict_run).reason.value_counts()
    for reason in ("MAX_DRAWDOWN", "VOLATILITY_SPIKE", "MARKET_RISK"):
        assert counts.get(reason, 0) > 0, reason
    check_journal_links(ict_run)
    j = ict_run.journal
    assert j.loc[j.event == "OPPORTUNITY_REJECTED", "threat_id"].isin(
        ["drawdown_1", "volatility_1", "market_risk_1"]).all()


# ---------------------------------------------------------------- session gate


def test_session_gate_by_hand_across_daylight_saving():
    """UTC bars: 07:00 in January is 07:00 in London (killzone), in July 08:00 BST (still in
    it), 10:00 UTC in July 11:00 BST (out); New York's killzone 07:00-10:00 local is
    12:00-15:00 UTC in winter and 11:00-14:00 in summer."""
    idx = pd.to_datetime(["2024-01-15 07:00", "2024-01-15 10:00", "2024-01-15 12:00", "2024-01-15 15:00",
                          "2024-07-15 07:00", "2024-07-15 10:00", "2024-07-15 11:00", "2024-07-15 14:00"])
    df = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 0.0}, index=idx)
    assert worker("session_gate").mask(ctx_of(df)).tolist() == [0, 3, 0, 3, 0, 3, 0, 3]
    london = worker("session_gate", windows=["london"]).mask(ctx_of(df)).tolist()
    assert london == [3, 0, 0, 0, 0, 0, 0, 0]   # 08:00-17:00 London: 07:00 UTC in January is before it
    # the order and repeats of windows do not matter: one canonical params value (one group)
    a = get_plugin("session_gate").Params(windows=["new_york_killzone", "london_killzone", "london_killzone"])
    assert a == get_plugin("session_gate").Params()
    with pytest.raises(Exception):
        get_plugin("session_gate").Params(windows=[])
    # a blueprint's session_filter clock applies: naive New York times read in New York
    ny = worker("session_gate", windows=["new_york_killzone"])
    local = df.iloc[:2].copy()
    assert ny.mask(ctx_of(local)).tolist() == [3, 3]   # read as UTC: 02:00 and 05:00 in New York
    assert ny.mask(ctx_of(local, session_filter={"timezone": "America/New_York"})).tolist() == [0, 3]


def test_session_gate_rejects_in_a_backtest_and_is_causal():
    df = load_data("eurusd_15m", timezone="Europe/Athens").iloc[:2000]
    res = api.backtest(strategy(longs=list(range(100, 1900, 37)),
                                threats=[{"instance_id": "gate_1", "plugin": "session_gate"}]), OPERATION, data=df)
    rej = rejections(res)
    assert len(rej) > 0 and set(rej.reason) == {"SESSION_CLOSED"} and set(rej.threat_id) == {"gate_1"}
    mask = worker("session_gate").mask(ctx_of(df))
    detected = res.journal[res.journal.event == "OPPORTUNITY_DETECTED"]
    assert (mask[rej.bar.to_numpy()] == 3).all()
    placed = res.journal[res.journal.event == "ORDER_PLACED"]
    assert len(placed) > 0 and (mask[placed.bar.to_numpy()] == 0).all()
    assert len(detected) == len(range(100, 1900, 37))
    check_journal_links(res)
    # causal: the mask on a prefix is the full mask's prefix
    for t in (300, 1234):
        assert (worker("session_gate").mask(ctx_of(df.iloc[:t])) == mask[:t]).all()
