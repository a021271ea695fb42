"""Opportunity workers ``fvg_detector`` and ``liquidity_sweep_detector``.

Crafted sequences worked out by hand, and fair-value-gap counts on the bundled
``eurusd_15m`` sample against an independent plain-Python implementation (including its
own swings and market structure for ``require_structure_break``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metaflow_nb.workers.base import FeatureContext, get_plugin
from metaflow_nb.workers.features import cache_key

NAN = np.nan


def frame(high, low, close, start="2024-01-01"):
    high, low, close = (np.asarray(x, float) for x in (high, low, close))
    idx = pd.date_range(start, periods=len(high), freq="15min", name="time")
    return pd.DataFrame({"open": close, "high": high, "low": low, "close": close,
                         "volume": np.ones(len(high))}, index=idx)


def detect(df_or_ctx, plugin="fvg_detector", pip_size=0.0001, context_params=None, **params):
    ctx = df_or_ctx if isinstance(df_or_ctx, FeatureContext) else FeatureContext(
        df_or_ctx, pip_size=pip_size, context_params=context_params)
    cls = get_plugin(plugin)
    return cls(plugin, cls.Params.model_validate(params)).detect(ctx)


def nz(sig):
    return {int(i): int(sig.direction[i]) for i in np.flatnonzero(sig.direction)}


# ====================================================================== crafted FVGs

FVG_BARS = [  # (high, low, close)
    (1.1000, 1.0990, 1.0995),  # 0
    (1.1010, 1.0995, 1.1008),  # 1
    (1.1040, 1.1005, 1.1035),  # 2 bullish: high[0] 1.1000 < low[2] 1.1005 -> 5 pips, zone 1.1000-1.1005
    (1.1045, 1.1030, 1.1040),  # 3 bullish: high[1] 1.1010 < low[3] 1.1030 -> 20 pips, zone 1.1010-1.1030
    (1.1042, 1.1032, 1.1034),  # 4 none: high[2] 1.1040 >= low 1.1032; low[2] 1.1005 <= high 1.1042
    (1.1035, 1.1020, 1.1022),  # 5 none: high[3] 1.1045 >= 1.1020; low[3] 1.1030 <= 1.1035
    (1.1028, 1.1010, 1.1015),  # 6 bearish: low[4] 1.1032 > high[6] 1.1028 -> 4 pips, zone 1.1028-1.1032
    (1.1017, 1.1000, 1.1005),  # 7 bearish: low[5] 1.1020 > high[7] 1.1017 -> exactly 3 pips
]


def fvg_frame():
    return frame(*zip(*FVG_BARS))


def test_fvg_bullish_and_bearish_zones():
    s = detect(fvg_frame(), min_gap_size=0.0)
    assert nz(s) == {2: 1, 3: 1, 6: -1, 7: -1}
    assert s.direction.dtype == np.int8
    np.testing.assert_array_equal(s.bottom[[2, 3, 6, 7]], [1.1000, 1.1010, 1.1028, 1.1017])
    np.testing.assert_array_equal(s.top[[2, 3, 6, 7]], [1.1005, 1.1030, 1.1032, 1.1020])
    assert np.isnan(s.top[[0, 1, 4, 5]]).all() and np.isnan(s.bottom[[0, 1, 4, 5]]).all()


@pytest.mark.parametrize("pips,bars", [
    (0, [2, 3, 6, 7]),
    (3, [2, 3, 6, 7]),   # the exact 3-pip gap (1.1020 - 1.1017 = 0.000299999...) is kept
    (3.5, [2, 3, 6]),
    (4, [2, 3, 6]),
    (5, [2, 3]),
    (10, [3]),
    (20, [3]),
    (21, []),
])
def test_fvg_threshold_in_pips(pips, bars):
    assert sorted(nz(detect(fvg_frame(), min_gap_size=pips))) == bars


def test_fvg_threshold_in_price_and_pip_size():
    assert sorted(nz(detect(fvg_frame(), min_gap_size=0.0005, gap_unit="price"))) == [2, 3]
    # with a pip of 0.001 the gaps are 0.5, 2, 0.4 and 0.3 pips
    assert sorted(nz(detect(fvg_frame(), pip_size=0.001, min_gap_size=2))) == [3]
    assert sorted(nz(detect(fvg_frame(), pip_size=0.001, min_gap_size=2.5))) == []


@pytest.mark.parametrize("mult,bars", [(0.15, [3, 6, 7]), (0.2, [3, 6]), (1.0, [3]), (1.4, [])])
def test_fvg_threshold_in_atr(mult, bars):
    # the blueprint's atr context has period 1, so ATR[i] is bar i's true range:
    #   bar 2: max(1.1040-1.1005, |1.1040-1.1008|, |1.1005-1.1008|) = 35 pips -> gap 5/35 = 0.143 ATR
    #   bar 3: max(15, |1.1045-1.1035| = 10, 5) = 15 pips            -> gap 20/15 = 1.333 ATR
    #   bar 6: max(18, |1.1028-1.1022| = 6, 12) = 18 pips            -> gap 4/18 = 0.222 ATR
    #   bar 7: max(17, 2, |1.1000-1.1015| = 15) = 17 pips            -> gap 3/17 = 0.176 ATR
    s = detect(fvg_frame(), context_params={"atr": {"period": 1}}, min_gap_size=mult, gap_unit="atr")
    assert sorted(nz(s)) == bars


def test_fvg_atr_unit_has_no_gaps_during_atr_warmup():
    # default atr period 14 > 8 bars: the ATR is NaN on every bar, so nothing can be kept
    assert nz(detect(fvg_frame(), min_gap_size=0.0, gap_unit="atr")) == {}


def test_fvg_require_structure_break_lookback_window():
    # inject the market structure of the blueprint: a bullish break on bar 1 and a bearish
    # break on bar 4 (last_break_bar_* as known on each bar)
    df = fvg_frame()
    ctx = FeatureContext(df, pip_size=0.0001)
    ms_params = get_plugin("market_structure").Params().model_dump(mode="json")
    ctx.cache[cache_key("market_structure", ms_params)] = {
        "last_break_bar_bull": np.array([-1, 1, 1, 1, 1, 1, 1, 1], dtype=np.int64),
        "last_break_bar_bear": np.array([-1, -1, -1, -1, 4, 4, 4, 4], dtype=np.int64),
    }
    # lookback L keeps a gap on bar i when the break bar b satisfies b >= i - L + 1:
    #   L=2: bull gap 2 (b=1 >= 1) yes, bull gap 3 (1 >= 2) no, bear 6 (4 >= 5) no, bear 7 no
    #   L=3: bull 2, 3 (1 >= 1) yes; bear 6 (4 >= 4) yes; bear 7 (4 >= 5) no
    #   L=4: all four; a bullish break never validates a bearish gap and vice versa
    for lookback, want in ((1, {}), (2, {2: 1}), (3, {2: 1, 3: 1, 6: -1}), (4, {2: 1, 3: 1, 6: -1, 7: -1})):
        s = detect(ctx, min_gap_size=0.0, require_structure_break=True, structure_lookback=lookback)
        assert nz(s) == want, lookback
        kept = sorted(want)
        assert np.isnan(np.delete(s.top, kept)).all() and np.isnan(np.delete(s.bottom, kept)).all()
    # a break on the gap's own bar counts ("including bar i"), with lookback 1
    ctx.cache[cache_key("market_structure", ms_params)] = {
        "last_break_bar_bull": np.array([-1, -1, 2, 2, 2, 2, 2, 2], dtype=np.int64),
        "last_break_bar_bear": np.full(8, -1, dtype=np.int64),
    }
    assert nz(detect(ctx, min_gap_size=0.0, require_structure_break=True, structure_lookback=1)) == {2: 1}


def test_fvg_require_structure_break_with_real_structure():
    # Market structure with left = right = 1 (blueprint context):
    #   bars (high, low, close)
    #   0: 10.0  9.0  9.5
    #   1: 11.0  9.8 10.8   swing high 11 (11 >= 10, 11 > 10.9) ...
    #   2: 10.9 10.0 10.2   ... confirmed here
    #   3: 11.5 10.5 11.3   close 11.3 > 11: bullish CHoCH on bar 3
    #   4: 12.5 11.4 12.4   FVG bullish: high[2] 10.9 < low[4] 11.4 (0.5), break 1 bar ago
    #   5: 12.6 11.45 12.1  no FVG: high[3] 11.5 >= low 11.45
    #   6: 12.4 11.0 11.2   swing high 12.6 confirmed; no FVG (low[4] 11.4 < high 12.4)
    #   7: 10.8 10.1 10.3   FVG bearish: low[5] 11.45 > high[7] 10.8; no bearish break ever
    #                       (no swing low is confirmed: none is below both neighbours)
    df = frame([10.0, 11.0, 10.9, 11.5, 12.5, 12.6, 12.4, 10.8],
               [9.0, 9.8, 10.0, 10.5, 11.4, 11.45, 11.0, 10.1],
               [9.5, 10.8, 10.2, 11.3, 12.4, 12.1, 11.2, 10.3])
    cp = {"market_structure": {"left": 1, "right": 1}}
    ctx = FeatureContext(df, pip_size=0.01, context_params=cp)
    ms = ctx.context("market_structure")
    assert ms["choch"].tolist() == [0, 0, 0, 1, 0, 0, 0, 0]
    assert nz(detect(df, pip_size=0.01, context_params=cp, min_gap_size=0.0)) == {4: 1, 7: -1}
    assert nz(detect(df, pip_size=0.01, context_params=cp, min_gap_size=0.0,
                     require_structure_break=True)) == {4: 1}
    # lookback 1 needs the break on the gap bar itself: bar 3 != bar 4
    assert nz(detect(df, pip_size=0.01, context_params=cp, min_gap_size=0.0,
                     require_structure_break=True, structure_lookback=1)) == {}


def test_fvg_params_bounds_and_suggestions():
    from metaflow_nb.workers.base import suggested_space
    cls = get_plugin("fvg_detector")
    p = cls.Params()
    assert (p.min_gap_size, p.gap_unit, p.require_structure_break, p.structure_lookback) == (3.0, "pips", False, 20)
    space = suggested_space("fvg_detector")
    assert space["min_gap_size"] == {"start": 3, "end": 10, "step": 1}
    assert space["require_structure_break"] == {"values": [True, False]}
    assert space["gap_unit"] == {"values": ["pips", "atr", "price"]}
    for bad in ({"min_gap_size": -1}, {"gap_unit": "points"}, {"structure_lookback": 0}, {"extra": 1}):
        with pytest.raises(ValueError):
            cls.Params.model_validate(bad)


# ====================================================================== liquidity sweeps

LIQ_BARS = [  # (high, low, close); liquidity context: left = right = 1, atr_period = 1
    (10.0, 9.0, 9.5),     # 0
    (11.0, 9.5, 10.5),    # 1
    (10.5, 9.2, 9.8),     # 2  buy-side 11 (swing high of bar 1) known from here
    (10.6, 9.0, 10.2),    # 3
    (10.95, 9.8, 10.5),   # 4  sell-side 9.0 known; high 10.95 does not reach 11
    (10.7, 10.0, 10.3),   # 5  10.95 pooled into 11 (equal highs)
    (10.6, 9.5, 9.7),     # 6
    (10.2, 9.6, 10.0),    # 7  sell-side 9.5 known: nearest below the close
    (11.2, 9.9, 10.8),    # 8  high 11.2 > 11 = nearest_buy_side[7], close 10.8 < 11 -> SHORT,
                          #    zone 11 .. 11.2 (wick 0.2)
    (11.0, 9.4, 9.6),     # 9  low 9.4 < 9.5 = nearest_sell_side[8], close 9.6 > 9.5 -> LONG,
                          #    zone 9.4 .. 9.5 (wick 0.1); high 11.0: no buy-side known at bar 8
    (9.8, 8.5, 8.8),      # 10 low 8.5 < 9.0 = nearest_sell_side[9] but close 8.8 < 9.0: no
]
LIQ_CP = {"liquidity_levels": {"left": 1, "right": 1, "atr_period": 1}}


def test_liquidity_sweep_detector():
    df = frame(*zip(*LIQ_BARS))
    s = detect(df, "liquidity_sweep_detector", pip_size=0.01, context_params=LIQ_CP)
    assert nz(s) == {8: -1, 9: 1}
    assert (s.top[8], s.bottom[8]) == (11.2, 11.0)
    assert (s.top[9], s.bottom[9]) == (9.5, 9.4)
    # wick 0.2 = 20 pips (pip 0.01) at bar 8, exactly 10 pips (9.5 - 9.4 = 0.0999...) at bar 9
    for wick, want in ((10, {8: -1, 9: 1}), (15, {8: -1}), (20, {8: -1}), (21, {})):
        got = detect(df, "liquidity_sweep_detector", pip_size=0.01, context_params=LIQ_CP, min_wick_pips=wick)
        assert nz(got) == want, wick


def test_liquidity_sweep_uses_previous_bars_levels_only():
    # the first bar can never be a sweep, and a level confirmed on bar i is not swept on
    # bar i itself: with only bars 0..2 the buy-side level 11 exists (known at bar 2)
    # but no later bar has traded through it
    df = frame(*zip(*LIQ_BARS[:3]))
    assert nz(detect(df, "liquidity_sweep_detector", pip_size=0.01, context_params=LIQ_CP)) == {}


# ====================================================================== eurusd vs plain Python

def load_eurusd():
    try:
        from metaflow_nb.data import load_data
        return load_data("eurusd_15m")
    except Exception:  # pragma: no cover - fallback while the data package is in flux
        raw = pd.read_csv("/work/shared/data/eurusd_15m.csv.gz")
        idx = pd.to_datetime(raw["Date"], format="%Y.%m.%d %H:%M:%S").rename("time")
        return pd.DataFrame({"open": raw["Open"].to_numpy(float), "high": raw["High"].to_numpy(float),
                             "low": raw["Low"].to_numpy(float), "close": raw["Close"].to_numpy(float),
                             "volume": raw["Tickvol"].to_numpy(float)}, index=idx)


def plain_breaks(high, low, close, left=2, right=2):
    """Independent swings + market structure: per bar, the latest bullish / bearish break."""
    n = len(close)
    hi = lo = None          # live (unbroken) levels
    trend = 0
    last_bull, last_bear = [-1] * n, [-1] * n
    lb = lr = -1
    for c in range(n):
        j = c - right
        if j >= left:
            if all(high[j] >= high[j - k] for k in range(1, left + 1)) and \
                    all(high[j] > high[j + k] for k in range(1, right + 1)):
                hi = high[j]
            if all(low[j] <= low[j - k] for k in range(1, left + 1)) and \
                    all(low[j] < low[j + k] for k in range(1, right + 1)):
                lo = low[j]
        up = hi is not None and close[c] > hi
        down = lo is not None and close[c] < lo
        if up:
            hi = None
        if down:
            lo = None
        if up and not down:
            lb, trend = c, 1
        elif down and not up:
            lr, trend = c, -1
        last_bull[c], last_bear[c] = lb, lr
    return last_bull, last_bear


def plain_fvg_count(df, min_pips, pip=0.0001, require_break=False, lookback=20):
    high, low, close = df["high"].tolist(), df["low"].tolist(), df["close"].tolist()
    if require_break:
        last_bull, last_bear = plain_breaks(high, low, close)
    bull = bear = 0
    for i in range(2, len(high)):
        if high[i - 2] < low[i]:
            d, gap = 1, low[i] - high[i - 2]
        elif low[i - 2] > high[i]:
            d, gap = -1, low[i - 2] - high[i]
        else:
            continue
        if round(gap / pip, 6) < min_pips:        # sizes in pips, rounded off float noise
            continue
        if require_break:
            b = last_bull[i] if d > 0 else last_bear[i]
            if b < 0 or b < i - lookback + 1:
                continue
        if d > 0:
            bull += 1
        else:
            bear += 1
    return bull, bear


@pytest.fixture(scope="module")
def eurusd_ctx():
    return FeatureContext(load_eurusd(), pip_size=0.0001)


@pytest.mark.parametrize("require_break", [False, True])
@pytest.mark.parametrize("pips", [0, 3, 5, 10])
def test_fvg_counts_on_eurusd_match_plain_python(eurusd_ctx, pips, require_break):
    s = detect(eurusd_ctx, min_gap_size=pips, require_structure_break=require_break)
    got = (int((s.direction == 1).sum()), int((s.direction == -1).sum()))
    want = plain_fvg_count(pd.DataFrame({"high": eurusd_ctx.high, "low": eurusd_ctx.low,
                                         "close": eurusd_ctx.close}), pips, require_break=require_break)
    assert got == want
    assert got[0] + got[1] > 0
    # zones are well formed
    m = s.direction != 0
    assert (s.top[m] > s.bottom[m]).all()
    assert np.isnan(s.top[~m]).all()
