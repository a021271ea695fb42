"""Context workers (ICT / smart-money structure, ATR, EMA, ADX, sessions).

Small crafted bar sequences with the expected answer worked out by hand in comments,
indicators against independent plain-Python / pandas implementations, and a prefix-replay
causality property for every context and opportunity worker: computing on ``data[:t]``
gives exactly the full-data outputs up to bar ``t - 1``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine_helpers import assert_prefix_replay
from metaflow_nb.workers.base import FeatureContext, get_plugin, known_plugins
from metaflow_nb.workers.context.sessions import utc_index

NAN = np.nan


def frame(high, low, close=None, open_=None, start="2024-01-01", freq="15min", index=None):
    high = np.asarray(high, float)
    low = np.asarray(low, float)
    close = (high + low) / 2 if close is None else np.asarray(close, float)
    open_ = close.copy() if open_ is None else np.asarray(open_, float)
    idx = index if index is not None else pd.date_range(start, periods=len(high), freq=freq, name="time")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "volume": np.ones(len(high))}, index=idx)


def compute(df, plugin, pip_size=0.0001, context_params=None, **params):
    ctx = FeatureContext(df, pip_size=pip_size, context_params=context_params)
    return ctx.feature(plugin, params)


def assert_same(a, b):
    a = np.asarray(a)
    b = np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        np.testing.assert_array_equal(a.astype(float), b.astype(float))
    else:
        np.testing.assert_array_equal(a, b)


def random_walk(n=400, seed=7, start="2024-03-25"):
    """Random-walk OHLC on a 0.0001 grid (so equal highs / lows occur), 15-minute bars
    spanning the 2024-03-31 European DST change."""
    rng = np.random.default_rng(seed)
    close = 1.1 + np.cumsum(rng.normal(0, 0.0006, n))
    open_ = np.r_[close[0], close[:-1]] + rng.normal(0, 0.0001, n)
    high = np.maximum(open_, close) + np.abs(rng.normal(0, 0.0004, n))
    low = np.minimum(open_, close) - np.abs(rng.normal(0, 0.0004, n))
    r = lambda x: np.round(x, 4)  # noqa: E731
    o, h, lo, c = r(open_), r(high), r(low), r(close)
    h = np.maximum(h, np.maximum(o, c))
    lo = np.minimum(lo, np.minimum(o, c))
    return frame(h, lo, c, o, start=start)


def eurusd_head(n=2000):
    try:
        from metaflow_nb.data import load_data
        df = load_data("eurusd_15m")
    except Exception:  # pragma: no cover - fallback while the data package is in flux
        raw = pd.read_csv("/work/shared/data/eurusd_15m.csv.gz")
        idx = pd.to_datetime(raw["Date"], format="%Y.%m.%d %H:%M:%S").rename("time")
        df = pd.DataFrame({"open": raw["Open"].to_numpy(float), "high": raw["High"].to_numpy(float),
                           "low": raw["Low"].to_numpy(float), "close": raw["Close"].to_numpy(float),
                           "volume": raw["Tickvol"].to_numpy(float)}, index=idx)
    return df.iloc[:n]


# ====================================================================== registry

def test_plugins_registered_with_docstrings():
    ctx_names = {"atr", "ema", "adx", "swing_points", "market_structure", "liquidity_levels", "session_filter"}
    opp_names = {"fvg_detector", "liquidity_sweep_detector"}
    assert ctx_names <= set(known_plugins("context"))
    assert opp_names <= set(known_plugins("opportunity"))
    for name in ctx_names | opp_names:
        cls = get_plugin(name)
        assert cls.__doc__ and len(cls.__doc__) > 80, name


# ====================================================================== ATR / EMA / ADX

def test_atr_matches_pandas_wilder():
    df = random_walk(300, seed=1)
    for period in (1, 5, 14):
        got = compute(df, "atr", period=period)["atr"]
        prev_close = df["close"].shift(1)
        tr = pd.concat([df["high"] - df["low"], (df["high"] - prev_close).abs(),
                        (df["low"] - prev_close).abs()], axis=1).max(axis=1)  # bar 0: high - low
        seeded = tr.copy()
        seeded.iloc[: period - 1] = np.nan
        seeded.iloc[period - 1] = tr.iloc[:period].mean()
        want = seeded.ewm(alpha=1.0 / period, adjust=False).mean().to_numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, equal_nan=True)
        assert np.isnan(got[: period - 1]).all() and not np.isnan(got[period - 1:]).any()


def test_ema_matches_pandas():
    df = random_walk(300, seed=2)
    got = compute(df, "ema", period=20)["ema"]
    c = df["close"].copy()
    c.iloc[:19] = np.nan
    c.iloc[19] = df["close"].iloc[:20].mean()
    want = c.ewm(alpha=2.0 / 21, adjust=False).mean().to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    default = compute(df, "ema")["ema"]   # period 50: first value on bar 49
    assert np.isnan(default[48]) and not np.isnan(default[49])


def adx_plain(high, low, close, n):
    """Wilder's ADX the way his book computes it: running *sums* TR14/+DM14/-DM14
    (first = sum of bars 1..n, then ``s - s/n + x``) and ADX as the mean of the first n
    DX, then ``(adx * (n-1) + dx) / n``."""
    m = len(close)
    adx = [NAN] * m
    pdi = [NAN] * m
    mdi = [NAN] * m
    tr, pdm, mdm = [NAN], [NAN], [NAN]
    for i in range(1, m):
        tr.append(max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1])))
        up, down = high[i] - high[i - 1], low[i - 1] - low[i]
        pdm.append(up if up > down and up > 0 else 0.0)
        mdm.append(down if down > up and down > 0 else 0.0)
    dxs = []
    s_tr = s_p = s_m = None
    for i in range(n, m):
        if s_tr is None:
            s_tr, s_p, s_m = sum(tr[1:n + 1]), sum(pdm[1:n + 1]), sum(mdm[1:n + 1])
        else:
            s_tr, s_p, s_m = s_tr - s_tr / n + tr[i], s_p - s_p / n + pdm[i], s_m - s_m / n + mdm[i]
        p = 100 * s_p / s_tr if s_tr > 0 else 0.0
        q = 100 * s_m / s_tr if s_tr > 0 else 0.0
        pdi[i], mdi[i] = p, q
        dx = 100 * abs(p - q) / (p + q) if p + q > 0 else 0.0
        dxs.append(dx)
        if len(dxs) == n:
            adx[i] = sum(dxs) / n
        elif len(dxs) > n:
            adx[i] = (adx[i - 1] * (n - 1) + dx) / n
    return np.array(adx), np.array(pdi), np.array(mdi)


@pytest.mark.parametrize("period", [3, 14])
def test_adx_matches_plain_python(period):
    df = random_walk(300, seed=3)
    got = compute(df, "adx", period=period)
    a, p, m = adx_plain(df["high"].tolist(), df["low"].tolist(), df["close"].tolist(), period)
    np.testing.assert_allclose(got["plus_di"], p, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(got["minus_di"], m, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(got["adx"], a, rtol=1e-9, equal_nan=True)
    # warm-up: DIs from bar `period`, ADX from bar 2 * period - 1
    assert np.isnan(got["plus_di"][period - 1]) and not np.isnan(got["plus_di"][period])
    assert np.isnan(got["adx"][2 * period - 2]) and not np.isnan(got["adx"][2 * period - 1])
    assert np.nanmin(got["adx"]) >= 0 and np.nanmax(got["adx"]) <= 100


def test_adx_hand_computed_period_1():
    # period 1: smoothing is the identity. Bars (h, l, c):
    #   0: 10, 9, 9.5 | 1: 11, 9.5, 10.5 | 2: 10.8, 8.5, 9
    # bar 1: up = 11-10 = 1, down = 9-9.5 = -0.5 -> +DM 1, -DM 0; TR = max(1.5, 1.5, 0) = 1.5
    #        +DI = 100 * 1 / 1.5 = 66.67, -DI = 0, DX = 100, ADX = 100
    # bar 2: up = -0.2, down = 9.5-8.5 = 1 -> +DM 0, -DM 1; TR = max(2.3, 0.3, 2.0) = 2.3
    #        +DI = 0, -DI = 100 / 2.3 = 43.48, DX = 100, ADX = 100
    df = frame([10, 11, 10.8], [9, 9.5, 8.5], [9.5, 10.5, 9])
    got = compute(df, "adx", period=1)
    np.testing.assert_allclose(got["plus_di"], [NAN, 100 / 1.5, 0.0], equal_nan=True)
    np.testing.assert_allclose(got["minus_di"], [NAN, 0.0, 100 / 2.3], equal_nan=True)
    np.testing.assert_allclose(got["adx"], [NAN, 100.0, 100.0], equal_nan=True)


# ====================================================================== swings

def test_swing_high_confirmed_on_right_bar():
    # left = right = 2.  highs: 1 2 3 5 4 3 4 6 7
    # j=3 (5): left 3, 2 <= 5 and right 4, 3 < 5 -> swing high, confirmed when bar 3+2 = 5
    # closes. j=6 (4): right neighbour 6 is higher -> no. Nothing else qualifies.
    high = [1, 2, 3, 5, 4, 3, 4, 6, 7]
    low = [h - 0.5 for h in high]
    out = compute(frame(high, low), "swing_points", left=2, right=2)
    assert_same(out["swing_high"], [NAN] * 5 + [5.0] + [NAN] * 3)
    assert_same(out["swing_high_bar"], [-1] * 5 + [3] + [-1] * 3)
    assert_same(out["last_swing_high"], [NAN] * 5 + [5.0] * 4)
    # the swing is not known on bars 3 or 4: with data up to bar 4 there is none
    early = compute(frame(high[:5], low[:5]), "swing_points", left=2, right=2)
    assert np.isnan(early["swing_high"]).all() and np.isnan(early["last_swing_high"]).all()
    assert out["swing_high_bar"].dtype == np.int64


def test_swing_ties_left_inclusive_right_strict():
    # flat top: highs 1 2 5 5 3 2 1, left = right = 2
    # j=2: right neighbour 5 is not strictly lower -> no swing
    # j=3: left 5 >= 5 (tie allowed), 5 >= 2; right 3, 2 < 5 -> swing at 3, confirmed at 5
    high = [1, 2, 5, 5, 3, 2, 1]
    out = compute(frame(high, [h - 1 for h in high]), "swing_points", left=2, right=2)
    assert_same(out["swing_high_bar"], [-1, -1, -1, -1, -1, 3, -1])
    # mirror for lows: lows 5 4 1 1 3 4 5 -> swing low at bar 3 (value 1) confirmed at 5
    low = [5, 4, 1, 1, 3, 4, 5]
    out = compute(frame([x + 1 for x in low], low), "swing_points", left=2, right=2)
    assert_same(out["swing_low"], [NAN] * 5 + [1.0, NAN])
    assert_same(out["swing_low_bar"], [-1] * 5 + [3, -1])
    assert_same(out["last_swing_low"], [NAN] * 5 + [1.0, 1.0])


def test_swing_lows_and_forward_fill_with_left1_right1():
    # left = right = 1.  lows: 5 3 4 2 6 1 7
    # j=1 (3): 3 <= 5, 3 < 4 -> swing low, confirmed at 2
    # j=3 (2): 2 <= 4, 2 < 6 -> confirmed at 4
    # j=5 (1): 1 <= 6, 1 < 7 -> confirmed at 6
    low = [5, 3, 4, 2, 6, 1, 7]
    out = compute(frame([x + 0.5 for x in low], low), "swing_points", left=1, right=1)
    assert_same(out["swing_low"], [NAN, NAN, 3, NAN, 2, NAN, 1])
    assert_same(out["swing_low_bar"], [-1, -1, 1, -1, 3, -1, 5])
    assert_same(out["last_swing_low"], [NAN, NAN, 3, 3, 2, 2, 1])


# ====================================================================== market structure

# (high, low, close) per bar; swings use left = right = 1
MS_BARS = [
    (10.0, 9.0, 9.5),     # 0
    (12.0, 10.0, 11.0),   # 1  swing high 12 (12 >= 10, 12 > 11) ...
    (11.0, 9.5, 10.0),    # 2  ... confirmed here
    (10.5, 8.0, 9.0),     # 3  swing low 8 (8 <= 9.5, 8 < 8.5) ...
    (10.0, 8.5, 9.5),     # 4  ... confirmed here
    (12.5, 9.5, 12.2),    # 5  close 12.2 > 12: first break -> CHoCH +1, trend +1
    (13.0, 12.0, 12.8),   # 6  close 12.8 > 12 again, but 12 was already broken: nothing
    (12.9, 11.0, 11.5),   # 7  swing high 13 (bar 6) confirmed
    (12.0, 10.5, 11.0),   # 8  swing low 10.5 (10.5 <= 11, 10.5 < 10.8) ...
    (13.5, 10.8, 13.2),   # 9  ... confirmed here; close 13.2 > 13 with the trend: BOS +1
    (13.4, 10.0, 10.2),   # 10 swing high 13.5 (bar 9) confirmed; close 10.2 < 10.5: CHoCH -1
    (10.5, 9.0, 9.2),     # 11 low 10.5 already broken, 8 was replaced by 10.5: nothing
    (9.8, 8.6, 9.0),      # 12 swing low 8.6 (8.6 <= 9, 8.6 < 8.8) ...
    (9.5, 8.8, 9.3),      # 13 ... confirmed here
    (9.4, 8.0, 8.2),      # 14 close 8.2 < 8.6 with the (down) trend: BOS -1
]


def ms_frame():
    h, lo, c = zip(*MS_BARS)
    return frame(h, lo, c)


def test_market_structure_swings_of_the_crafted_sequence():
    sw = compute(ms_frame(), "swing_points", left=1, right=1)
    assert np.flatnonzero(~np.isnan(sw["swing_high"])).tolist() == [2, 7, 10]
    assert sw["swing_high_bar"][[2, 7, 10]].tolist() == [1, 6, 9]
    assert sw["swing_high"][[2, 7, 10]].tolist() == [12.0, 13.0, 13.5]
    assert np.flatnonzero(~np.isnan(sw["swing_low"])).tolist() == [4, 9, 13]
    assert sw["swing_low"][[4, 9, 13]].tolist() == [8.0, 10.5, 8.6]


def test_market_structure_bos_vs_choch():
    out = compute(ms_frame(), "market_structure", left=1, right=1)
    z = [0] * 15

    def at(pairs):
        a = list(z)
        for i, v in pairs:
            a[i] = v
        return a

    assert out["break_dir"].tolist() == at([(5, 1), (9, 1), (10, -1), (14, -1)])
    assert out["choch"].tolist() == at([(5, 1), (10, -1)])
    assert out["bos"].tolist() == at([(9, 1), (14, -1)])
    assert out["trend"].tolist() == [0] * 5 + [1] * 5 + [-1] * 5
    assert out["last_break_bar_bull"].tolist() == [-1] * 5 + [5] * 4 + [9] * 6
    assert out["last_break_bar_bear"].tolist() == [-1] * 10 + [10] * 4 + [14]
    for k in ("trend", "bos", "choch", "break_dir"):
        assert out[k].dtype == np.int8
    assert out["last_break_bar_bull"].dtype == np.int64


def test_market_structure_first_break_bearish_is_choch():
    # left = right = 1. lows 10 9 10 10 8: swing low 9 (bar 1) confirmed at bar 2;
    # bar 4 closes at 8.2 < 9 -> first break, bearish -> CHoCH -1, trend -1
    high = [11, 10, 11, 11, 9]
    low = [10, 9, 10, 10, 8]
    close = [10.5, 9.5, 10.5, 10.5, 8.2]
    out = compute(frame(high, low, close), "market_structure", left=1, right=1)
    assert out["choch"].tolist() == [0, 0, 0, 0, -1]
    assert out["bos"].tolist() == [0] * 5
    assert out["trend"].tolist() == [0, 0, 0, 0, -1]


# ====================================================================== liquidity levels

# (high, low, close); left = right = 1, atr_period = 1 so ATR[i] = true range of bar i
LIQ_BARS = [
    (10.0, 9.0, 9.5),     # 0
    (11.0, 9.5, 10.5),    # 1  swing high 11 ...
    (10.5, 9.2, 9.8),     # 2  ... confirmed: buy-side 11
    (10.6, 9.0, 10.2),    # 3  swing low 9.0 (9 <= 9.2, 9 < 9.8) ...
    (10.95, 9.8, 10.5),   # 4  ... confirmed: sell-side 9.0. high 10.95 < 11: no sweep
    (10.7, 10.0, 10.3),   # 5  swing high 10.95 confirmed; TR = max(0.7, 0.2, 0.5) = 0.7,
                          #    tolerance 0.1 * 0.7 = 0.07 >= |11 - 10.95| -> pooled with 11
    (10.6, 9.5, 9.7),     # 6
    (10.2, 9.6, 10.0),    # 7  swing low 9.5 confirmed; tolerance 0.1 * 0.6, 9.0 too far: 2nd pool
    (11.2, 9.9, 10.8),    # 8  high 11.2 > 11: the pooled buy-side level is swept
    (11.0, 9.4, 9.6),     # 9  low 9.4 < 9.5: sell-side 9.5 swept; swing high 11.2 confirmed
    (9.8, 8.5, 8.8),      # 10 low 8.5 < 9.0: sell-side 9.0 swept
]


def liq_frame():
    h, lo, c = zip(*LIQ_BARS)
    return frame(h, lo, c)


def test_liquidity_levels_pooling_and_sweeps():
    out = compute(liq_frame(), "liquidity_levels", left=1, right=1, atr_period=1, equal_tolerance_atr=0.1)
    assert_same(out["nearest_buy_side"], [NAN, NAN, 11, 11, 11, 11, 11, 11, NAN, 11.2, 11.2])
    assert_same(out["buy_side_eq_count"], [0, 0, 1, 1, 1, 2, 2, 2, 0, 1, 1])
    assert_same(out["buy_side_count"], [0, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1])
    assert_same(out["nearest_sell_side"], [NAN, NAN, NAN, NAN, 9.0, 9.0, 9.0, 9.5, 9.5, 9.0, NAN])
    assert_same(out["sell_side_eq_count"], [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0])
    assert_same(out["sell_side_count"], [0, 0, 0, 0, 1, 1, 1, 2, 2, 1, 0])
    assert_same(out["eq_count"], [0, 0, 1, 1, 1, 2, 2, 2, 1, 1, 1])
    assert_same(out["swept_buy_side"], [NAN] * 8 + [11.0, NAN, NAN])
    assert_same(out["swept_sell_side"], [NAN] * 9 + [9.5, 9.0])


def test_liquidity_levels_without_tolerance_keeps_separate_levels():
    # tolerance 0: 10.95 and 11 are two pools; the nearest above the close is 10.95;
    # bar 8 sweeps both and reports the highest, 11
    out = compute(liq_frame(), "liquidity_levels", left=1, right=1, atr_period=1, equal_tolerance_atr=0.0)
    assert_same(out["nearest_buy_side"], [NAN, NAN, 11, 11, 11, 10.95, 10.95, 10.95, NAN, 11.2, 11.2])
    assert_same(out["buy_side_count"], [0, 0, 1, 1, 1, 2, 2, 2, 0, 1, 1])
    assert_same(out["buy_side_eq_count"], [0, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1])
    assert_same(out["swept_buy_side"], [NAN] * 8 + [11.0, NAN, NAN])


def test_liquidity_levels_max_levels_drops_oldest():
    # max_levels 1, tolerance 0: 10.95 (bar 5) displaces 11; 9.5 (bar 7) displaces 9.0,
    # so after 9.5 is swept on bar 9 no sell-side level is left and bar 10 sweeps nothing
    out = compute(liq_frame(), "liquidity_levels", left=1, right=1, atr_period=1,
                  equal_tolerance_atr=0.0, max_levels=1)
    assert_same(out["nearest_buy_side"], [NAN, NAN, 11, 11, 11, 10.95, 10.95, 10.95, NAN, 11.2, 11.2])
    assert_same(out["nearest_sell_side"], [NAN, NAN, NAN, NAN, 9.0, 9.0, 9.0, 9.5, 9.5, NAN, NAN])
    assert_same(out["swept_buy_side"], [NAN] * 8 + [10.95, NAN, NAN])
    assert_same(out["swept_sell_side"], [NAN] * 9 + [9.5, NAN])
    assert out["buy_side_count"].max() == 1 and out["sell_side_count"].max() == 1


def test_liquidity_levels_exact_equal_highs_pool_during_atr_warmup():
    # atr_period 50 > bars: ATR is NaN throughout, so only identical prices pool.
    # left = right = 1. highs 1 3 2 3 2: swing highs 3 (bar 1, confirmed 2) and 3 (bar 3,
    # confirmed 4: 3 >= 2, 3 > 2) -> one pool of 2 equal highs
    high = [1, 3, 2, 3, 2]
    out = compute(frame(high, [0.5] * 5, [0.8] * 5), "liquidity_levels", left=1, right=1, atr_period=50)
    assert_same(out["nearest_buy_side"], [NAN, NAN, 3, 3, 3])
    assert_same(out["buy_side_eq_count"], [0, 0, 1, 1, 2])
    assert_same(out["buy_side_count"], [0, 0, 1, 1, 1])


# ====================================================================== sessions

def test_session_windows_across_dst_changes_utc_data():
    # UTC bar starts. New York switches to EDT on 2024-03-10, London to BST on 2024-03-31.
    idx = pd.DatetimeIndex([
        "2024-03-08 12:00", "2024-03-08 13:00", "2024-03-08 21:00",   # NY EST: 07, 08, 16 local
        "2024-03-11 12:00", "2024-03-11 21:00",                       # NY EDT: 08, 17 local
        "2024-03-29 07:00", "2024-03-29 08:00", "2024-03-29 16:00", "2024-03-29 17:00",  # London GMT
        "2024-04-02 07:00", "2024-04-02 16:00",                       # London BST: 08, 17 local
        "2024-03-29 14:00", "2024-03-29 15:00", "2024-03-29 23:45", "2024-03-30 00:00",  # Tokyo 23, 00, 08:45, 09
    ], name="time")
    df = frame(np.ones(len(idx)) * 2, np.ones(len(idx)), index=idx)
    out = compute(df, "session_filter")
    ny = [False, True, True, True, False] + [None] * 10
    london = [None] * 5 + [False, True, True, False, True, False] + [None] * 4
    asia = [None] * 11 + [False, True, True, False]
    for key, want in (("new_york", ny), ("london", london), ("asia", asia)):
        for i, w in enumerate(want):
            if w is not None:
                assert bool(out[key][i]) is w, (key, str(idx[i]))
    assert_same(out["in_session"], out["asia"] | out["london"] | out["new_york"])
    only = compute(df, "session_filter", sessions=["london"])
    assert_same(only["in_session"], out["london"])
    assert out["in_session"].dtype == np.bool_


def test_session_windows_hourly_utc_over_a_whole_day():
    # 2024-07-01 (summer): Tokyo 15:00-24:00 UTC, London 07:00-16:00, NY 12:00-21:00
    # 2024-01-15 (winter): Tokyo 15:00-24:00 UTC, London 08:00-17:00, NY 13:00-22:00
    for day, lon, ny in (("2024-07-01", range(7, 16), range(12, 21)),
                         ("2024-01-15", range(8, 17), range(13, 22))):
        idx = pd.date_range(day, periods=24, freq="h", name="time")
        out = compute(frame(np.full(24, 2.0), np.ones(24), index=idx), "session_filter")
        assert np.flatnonzero(out["london"]).tolist() == list(lon)
        assert np.flatnonzero(out["new_york"]).tolist() == list(ny)
        assert np.flatnonzero(out["asia"]).tolist() == list(range(15, 24))


def test_session_windows_local_naive_data():
    # naive timestamps in Europe/London: 08:00 local is in the London session on both sides
    # of the 2024-03-31 change, 07:45 is not
    idx = pd.DatetimeIndex(["2024-03-29 07:45", "2024-03-29 08:00", "2024-04-02 07:45", "2024-04-02 08:00",
                            "2024-04-02 16:45", "2024-04-02 17:00"], name="time")
    out = compute(frame(np.full(6, 2.0), np.ones(6), index=idx), "session_filter", timezone="Europe/London")
    assert out["london"].tolist() == [False, True, False, True, True, False]
    # 08:00 London (BST) on 2024-04-02 is 07:00 UTC = 03:00 New York (EDT): not New York;
    # 16:45 / 17:00 London are 11:45 / 12:00 New York: New York
    assert out["new_york"].tolist() == [False, False, False, False, True, True]


def test_repeated_wall_clock_hour_is_resolved_causally():
    # America/New_York, 2024-11-03: 01:00-02:00 happens twice (EDT, then EST)
    naive = pd.DatetimeIndex(["2024-11-03 00:30", "2024-11-03 01:00", "2024-11-03 01:30",
                              "2024-11-03 01:00", "2024-11-03 01:30", "2024-11-03 02:00"])
    utc = utc_index(naive, "America/New_York")
    want = pd.DatetimeIndex(["2024-11-03 04:30", "2024-11-03 05:00", "2024-11-03 05:30",
                             "2024-11-03 06:00", "2024-11-03 06:30", "2024-11-03 07:00"], tz="UTC")
    assert (utc == want).all()
    for t in range(1, 6):
        assert (utc_index(naive[:t], "America/New_York") == want[:t]).all()


def test_session_params_validation():
    cls = get_plugin("session_filter")
    assert cls.Params(sessions=["new_york", "asia", "asia"]).sessions == ("asia", "new_york")
    with pytest.raises(ValueError):
        cls.Params(sessions=["sydney"])
    with pytest.raises(ValueError):
        cls.Params(sessions=[])
    with pytest.raises(ValueError):
        cls.Params(timezone="Mars/Olympus")


# ====================================================================== causality (prefix replay)

# (plugin, params, context params of the blueprint)
WORKERS = [
    ("atr", {}, None),
    ("atr", {"period": 3}, None),
    ("ema", {"period": 10}, None),
    ("adx", {}, None),
    ("adx", {"period": 5}, None),
    ("swing_points", {}, None),
    ("swing_points", {"left": 3, "right": 1}, None),
    ("market_structure", {}, None),
    ("market_structure", {"left": 1, "right": 3}, None),
    ("liquidity_levels", {}, None),
    ("liquidity_levels", {"left": 1, "right": 1, "equal_tolerance_atr": 0.5, "max_levels": 3}, None),
    ("session_filter", {}, None),
    ("session_filter", {"sessions": ["london"], "timezone": "Europe/London"}, None),
    ("fvg_detector", {"min_gap_size": 0.0}, None),
    ("fvg_detector", {"min_gap_size": 0.3, "gap_unit": "atr"}, {"atr": {"period": 5}}),
    ("fvg_detector", {"min_gap_size": 1.0, "require_structure_break": True, "structure_lookback": 10},
     {"market_structure": {"left": 1, "right": 2}}),
    ("liquidity_sweep_detector", {}, None),
    ("liquidity_sweep_detector", {"min_wick_pips": 1.0}, {"liquidity_levels": {"left": 1, "right": 1}}),
]

_DATA: dict[str, pd.DataFrame] = {}


def dataset(name):
    if name not in _DATA:
        _DATA[name] = random_walk(400, seed=11) if name == "random_walk" else eurusd_head(2000)
    return _DATA[name]


def outputs(df, plugin, params, cparams):
    ctx = FeatureContext(df, pip_size=0.0001, context_params=cparams)
    cls = get_plugin(plugin)
    if cls.role == "context":
        return ctx.feature(plugin, params)
    s = cls(plugin, cls.Params.model_validate(params)).detect(ctx)
    return {"direction": s.direction, "top": s.top, "bottom": s.bottom}


_FULL: dict = {}


@pytest.mark.parametrize("data_name", ["random_walk", "eurusd"])
@pytest.mark.parametrize("plugin,params,cparams", WORKERS,
                         ids=[f"{w[0]}-{i}" for i, w in enumerate(WORKERS)])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frac=st.floats(0.0, 1.0))
def test_prefix_replay_is_causal(data_name, plugin, params, cparams, frac):
    df = dataset(data_name)
    assert_prefix_replay(df, lambda d: outputs(d, plugin, params, cparams),
                         (data_name, plugin, repr(params), repr(cparams)), _FULL, frac)


def test_workers_fire_on_the_causality_data():
    # the causality property is only meaningful when the workers produce events there
    for name in ("random_walk", "eurusd"):
        df = dataset(name)
        assert (~np.isnan(outputs(df, "swing_points", {}, None)["swing_high"])).sum() > 10
        assert (outputs(df, "market_structure", {}, None)["bos"] != 0).sum() > 3
        assert (outputs(df, "market_structure", {}, None)["choch"] != 0).sum() > 3
        assert (~np.isnan(outputs(df, "liquidity_levels", {}, None)["swept_buy_side"])).sum() > 3
        assert (outputs(df, "fvg_detector", {"min_gap_size": 0.0}, None)["direction"] != 0).sum() > 10
        assert (outputs(df, "liquidity_sweep_detector", {}, None)["direction"] != 0).sum() > 3
    rw = outputs(dataset("random_walk"), "liquidity_levels", {"left": 1, "right": 1, "equal_tolerance_atr": 0.5}, None)
    assert rw["eq_count"].max() >= 2
