"""Property tests of the bar loop on random OHLC paths and random scripted setups.

Invariants: causality (fills strictly after the setup's bar), cash accounting (final
equity = cash + sum of trade pnl once everything is closed), equity finite and >= 0,
fill prices inside the fill bar's range, prefix replay (cutting the data after bar t
changes nothing before t) and determinism.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine_helpers as h

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=True)


def random_ohlc(n: int, seed: int, vol: float, gap_prob: float = 0.08) -> pd.DataFrame:
    """A positive, consistent OHLC path: low <= open, close <= high."""
    rng = np.random.default_rng(seed)
    close = np.empty(n)
    open_ = np.empty(n)
    prev = 100.0
    for i in range(n):
        # an occasional big gap so stops and targets gap through and shorts can go broke
        gap = rng.normal(0, vol / 2) + (rng.choice([-1, 1]) * rng.choice([0.25, 0.7]) if rng.random() < gap_prob else 0.0)
        open_[i] = prev * math.exp(gap)
        close[i] = open_[i] * math.exp(rng.normal(0, vol))
        prev = close[i]
    high = np.maximum(open_, close) * (1 + rng.exponential(vol / 2, n))
    low = np.minimum(open_, close) * (1 - np.minimum(rng.exponential(vol / 2, n), 0.9))
    rows = np.column_stack([open_, high, low, close])
    # round to cents like real quotes, keeping the OHLC ordering valid
    rows = np.round(rows, 2)
    rows[:, 1] = np.maximum(rows[:, 1], rows[:, [0, 3]].max(axis=1))
    rows[:, 2] = np.minimum(rows[:, 2], rows[:, [0, 3]].min(axis=1))
    rows = np.maximum(rows, 0.01)
    return h.make_ohlc(rows.tolist())


@st.composite
def scenarios(draw, ruinous: bool = False):
    """``(data, run kwargs)``; ``ruinous`` draws high leverage and frequent big gaps."""
    n = draw(st.integers(5, 40))
    vols = [0.06] if ruinous else [0.005, 0.02, 0.06]
    df = random_ohlc(n, draw(st.integers(0, 2**31 - 1)), draw(st.sampled_from(vols)), 0.25 if ruinous else 0.08)
    bars = draw(st.lists(st.integers(0, n - 1), max_size=max(1, n // 2), unique=True))
    dirs = draw(st.lists(st.sampled_from([1, -1]), min_size=len(bars), max_size=len(bars)))
    longs = sorted(b for b, d in zip(bars, dirs) if d > 0)
    shorts = sorted(b for b, d in zip(bars, dirs) if d < 0)
    kw = {
        "longs": longs, "shorts": shorts,
        "direction": draw(st.sampled_from(["long_short", "long_only", "short_only"])),
        "reverse": draw(st.sampled_from([None, False, True])),
        "commission": draw(st.sampled_from([0.0, 0.0005, 0.002, 0.01])),
        "leverage": draw(st.sampled_from([5.0, 10.0] if ruinous else [1.0, 1.0, 3.0, 10.0])),
    }
    stop = draw(st.one_of(st.none(), st.floats(0.5, 10.0)))
    target = draw(st.one_of(st.none(), st.floats(0.5, 20.0)))
    if stop is not None or target is not None:
        kw["stops"] = {"stop_loss_pct": stop, "take_profit_pct": target,
                       "reference": draw(st.sampled_from(["signal_close", "fill"]))}
    if draw(st.booleans()):
        # limit entries at a zone edge: longs below the signal close, shorts above it
        zones = []
        for b in bars:
            c = float(df["close"].iloc[b])
            a, w = draw(st.floats(0.0, 0.05)), draw(st.floats(0.001, 0.05))
            if b in longs:
                top = c * (1 - a)
                zones.append((b, top, top * (1 - w)))
            else:
                bottom = c * (1 + a)
                zones.append((b, bottom * (1 + w), bottom))
        kw["zones"] = zones
        kw["entry"] = {"plugin": "test_limit_entry", "params": {"expiry_bars": draw(st.integers(0, 5))}}
    if draw(st.booleans()):
        kw["threats"] = [{"instance_id": "threat_1", "plugin": "test_mask_threat",
                          "params": {"bars": draw(st.lists(st.integers(0, n - 1), max_size=n // 2, unique=True)),
                                     "block": draw(st.integers(1, 3))}}]
    if draw(st.booleans()):
        kw["sizer"] = {"plugin": "fixed_fraction_sizer",
                       "params": {"fraction": draw(st.floats(0.05, 1.0)), "whole_units": draw(st.booleans())}}
    return df, kw


def _opp_bars(res) -> dict[int, int]:
    j = res.journal
    det = j[j["event"] == "OPPORTUNITY_DETECTED"]
    return dict(zip(det["opportunity_id"], det["bar"]))


@SETTINGS
@given(scenarios(), st.booleans())
def test_run_invariants(scenario, finalize):
    df, kw = scenario
    check_invariants(df, h.run(df, finalize=finalize, **kw), finalize)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(scenarios(ruinous=True), st.booleans())
def test_run_invariants_under_leverage_and_gaps(scenario, finalize):
    df, kw = scenario
    check_invariants(df, h.run(df, finalize=finalize, **kw), finalize)


def check_invariants(df, res, finalize):
    eq = res.equity.to_numpy()
    tr = res.trades
    # equity: one finite, non-negative value per bar
    assert eq.shape == (len(df),)
    assert np.isfinite(eq).all()
    assert (eq >= 0).all()
    # causality: every fill strictly after the bar its setup was stamped on
    opp_bar = _opp_bars(res)
    opened = res.journal[res.journal["event"] == "TRADE_OPENED"]
    for opp, bar in zip(opened["opportunity_id"], opened["bar"]):
        assert bar > opp_bar[opp]
    for opp, bar in zip(tr["opportunity_id"], tr["entry_bar"]):
        assert bar > opp_bar[opp]
    assert (tr["exit_bar"] >= tr["entry_bar"]).all()
    # no slippage here: every fill price lies inside its bar's range
    lo, hi = df["low"].to_numpy(), df["high"].to_numpy()
    for eb, ep, xb, xp in zip(tr["entry_bar"], tr["entry_price"], tr["exit_bar"], tr["exit_price"]):
        assert lo[eb] <= ep <= hi[eb]
        assert lo[xb] <= xp <= hi[xb]
    assert (tr["size"] > 0).all()
    # cash accounting: once nothing is open, final equity = cash + sum of trade pnl, or 0
    # after ruin (equity <= 0 at a close stops the run: by then cash + pnl <= 0)
    total = 10_000.0 + float(tr["pnl"].sum())
    zero = np.flatnonzero(eq == 0.0)
    if zero.size:
        assert (eq[zero[0]:] == 0.0).all()
        assert (res.position.to_numpy()[zero[0]:] == 0).all()
        assert total <= 1e-9 * 10_000.0
    if finalize:
        assert res.position.iloc[-1] == 0
    if res.position.iloc[-1] == 0 and eq[-1] > 0:
        assert eq[-1] == pytest.approx(total, rel=1e-9)
    # trade count and metrics agree
    assert res.metrics["total_trades"] == len(tr)
    assert res.metrics["final_equity"] == eq[-1]


@SETTINGS
@given(scenarios(), st.booleans(), st.data())
def test_prefix_replay(scenario, finalize, data):
    df, kw = scenario
    n = len(df)
    t = data.draw(st.integers(2, n), label="t")
    full = h.run(df, finalize=finalize, **kw)
    part = h.run(df.iloc[:t].copy(), finalize=finalize, **kw)
    # everything decided and settled before the last bar of the prefix is identical
    h.assert_prefix_settled(part, full, t)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(scenarios(), st.booleans())
def test_determinism(scenario, finalize):
    df, kw = scenario
    a = h.run(df, finalize=finalize, **kw)
    b = h.run(df.copy(), finalize=finalize, **kw)
    assert json.dumps(a.metrics, sort_keys=True) == json.dumps(b.metrics, sort_keys=True)
    assert a.trades.equals(b.trades)
    assert a.journal.equals(b.journal)
    assert a.equity.equals(b.equity)
    assert a.specs.hash == b.specs.hash


def test_random_ohlc_is_valid():
    df = random_ohlc(200, 7, 0.06)
    assert (df["low"] <= df[["open", "close"]].min(axis=1)).all()
    assert (df["high"] >= df[["open", "close"]].max(axis=1)).all()
    assert (df[["open", "high", "low", "close"]] > 0).all().all()


def _metrics_both_ways(df, kw, finalize):
    """``(run_metrics of simulate's arrays, stream_metrics of simulate_metrics, daily returns of
    each)`` for one scripted scenario, with the general path's own prepared inputs."""
    import metaflow_nb as mf
    from metaflow_nb.engine.metrics import calendar
    from metaflow_nb.engine.nb import metrics as nbm
    from metaflow_nb.engine.nb import simulate as nbsim
    from metaflow_nb.assembly.run import prepare

    bp = dict(kw)
    specs = mf.build_specs(h.blueprint(**{k: v for k, v in bp.items() if k not in ("commission", "leverage")}),
                           h.operation(commission=kw["commission"], finalize=finalize, leverage=kw["leverage"]),
                           data=df)
    args = prepare(specs, df).records
    day_end, ppy, years = calendar(df.index)
    cash = args[4].cash  # the Account record
    out = nbsim.simulate(*args)
    kept = nbm.run_metrics(out, 0, day_end, cash, ppy, years)
    day_ret = np.full(int(day_end.sum()), -7.0)
    acc, n_tr2 = nbsim.simulate_metrics(*args, np.flatnonzero(day_end), day_ret)
    streamed = nbm.stream_metrics(acc, day_ret, n_tr2, len(df), cash, ppy, years)
    assert n_tr2 == len(out.trades)
    return kept, streamed, nbm.daily_returns(out.equity, 0, day_end, cash), day_ret


@SETTINGS
@given(scenarios(), st.booleans(), st.booleans())
def test_metrics_only_run_equals_the_kept_arrays_bit_for_bit(scenario, finalize, intraday):
    """The batch sweep's metrics-only loop (no equity, trade or journal arrays) gives the
    very metric vector and daily returns that the general path derives from its arrays
    (daily bars, and 7-hour bars where only some bars close a day)."""
    df, kw = scenario
    if intraday:
        df = df.set_axis(pd.date_range("2024-01-01 05:00", periods=len(df), freq="7h"))
    kept, streamed, r_kept, r_streamed = _metrics_both_ways(df, kw, finalize)
    assert np.array_equal(kept, streamed, equal_nan=True), (kept, streamed)
    assert np.array_equal(r_kept, r_streamed)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(scenarios(ruinous=True), st.booleans())
def test_metrics_only_run_equals_the_kept_arrays_after_ruin(scenario, finalize):
    df, kw = scenario
    kept, streamed, r_kept, r_streamed = _metrics_both_ways(df, kw, finalize)
    assert np.array_equal(kept, streamed, equal_nan=True), (kept, streamed)
    assert np.array_equal(r_kept, r_streamed)


@SETTINGS
@given(scenarios(), st.booleans())
def test_skipping_quiet_bars_changes_nothing(scenario, finalize):
    """The loop runs stretches with no order, no pending exit and no setup in a tight
    marking loop (step 6). A drawdown monitor that can never trigger turns that off; the
    run must be the same bit for bit, arrays, trades and journal."""
    import metaflow_nb as mf
    from metaflow_nb.engine.nb import simulate as nbsim
    from metaflow_nb.assembly.run import prepare

    df, kw = scenario
    specs = mf.build_specs(h.blueprint(**{k: v for k, v in kw.items() if k not in ("commission", "leverage")}),
                           h.operation(commission=kw["commission"], finalize=finalize, leverage=kw["leverage"]),
                           data=df)
    records = prepare(specs, df).records
    h.assert_same_run(nbsim.simulate(*records), nbsim.simulate(*h.on_full_path(records)))
