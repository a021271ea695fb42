"""Hand-computed bars pinning rules that only the goldens (or nothing) pinned: a mutation
of each rule (hunt91: touched exactly, triggers on the high, the best close, a boundary)
passed every other test. Bars are (open, high, low, close); the signal is on bar 0 and
fills at bar 1's open."""
from __future__ import annotations

import numpy as np
import pytest
import engine_helpers as h
from metaflow_nb.engine import codes

SIG = (100, 100, 100, 100)


def one(out):
    assert len(out["trades"]) == 1, out["trades"]
    return out["trades"][0]


def test_stop_touched_exactly_fills():            # M03
    # long filled at bar 1's open 100, stop 95 (absolute); bar 2's low is exactly 95
    df = h.make_ohlc([SIG, (100, 101, 99, 100), (99, 100, 95, 96), (96, 97, 95.5, 96)])
    t = one(h.kernel(df, [0], [1], stop=[95.0], stop_mode=codes.PRICE_ABSOLUTE))
    assert (t["exit_bar"], t["exit_price"], t["exit_reason"]) == (2, 95.0, codes.EXIT_STOP_LOSS)


def test_target_touched_exactly_fills():          # M04
    df = h.make_ohlc([SIG, (100, 101, 99, 100), (105, 110, 104, 108), (108, 109, 107, 108)])
    t = one(h.kernel(df, [0], [1], target=[110.0], target_mode=codes.PRICE_ABSOLUTE))
    assert (t["exit_bar"], t["exit_price"], t["exit_reason"]) == (2, 110.0, codes.EXIT_TAKE_PROFIT)


def test_fixed_risk_size_is_capped_by_equity_times_leverage():   # M06
    # risk 1 % of 10000 = 100 over a stop 0.1 away -> 1000 units ($100k); the cap: floor(10000 F / 100) = 99
    df = h.flat_bars([100.0] * 5)
    out = h.kernel(df, [0], [1], stop=[99.9], stop_mode=codes.PRICE_ABSOLUTE, sizer_kind=codes.SIZER_FIXED_RISK,
                   sizer_param=1.0, whole_units=True, finalize=True)
    assert out["trades"]["size"].tolist() == [99.0]


def test_break_even_triggers_on_the_high_not_the_close():        # M10
    # long at 100, stop 98 (1 R = 2); bar 2's high 102.5 reaches +1 R, its close 101.5 does not:
    # the stop moves to 100 at bar 2's close; bar 3 dips to 99.9 -> exit at 100
    df = h.make_ohlc([SIG, (100, 101, 98.5, 100.5), (100.5, 102.5, 100.2, 101.5),
                      (101, 101.5, 99.9, 100.5), (100.5, 101, 100, 100.5)])
    t = one(h.kernel(df, [0], [1], stop=[2.0], stop_mode=codes.PRICE_DISTANCE, breakeven_r=1.0))
    assert (t["exit_bar"], t["exit_price"], t["exit_reason"], t["stop"]) == (3, 100.0, codes.EXIT_STOP_LOSS, 100.0)


def test_finalize_pays_slippage():                # M12
    # long filled at 100 * 1.001; finalized at the last open 100 less slippage: 99.9
    df = h.flat_bars([100.0] * 5)
    t = one(h.kernel(df, [0], [1], slippage=0.001, finalize=True))
    assert (t["exit_bar"], t["exit_reason"]) == (4, codes.EXIT_END_OF_DATA)
    assert t["exit_price"] == pytest.approx(100 * 0.999, rel=1e-15)


def test_limit_touched_exactly_fills():           # M14
    df = h.make_ohlc([SIG, (100, 100.5, 99, 99.5), (99.5, 100, 99.2, 99.8)])
    out = h.kernel(df, [0], [1], limit=[99.0])

    assert h.journal_rows(out["journal"], codes.EV_TRADE_OPENED)["bar"].tolist() == [1]


def test_close_at_the_far_edge_does_not_cancel():  # M15
    # a plugin's long limit 98 outside its zone (far edge 99): bar 1 does not reach 98 and
    # closes AT 99 (not beyond): the order stays; bar 2 trades to 97.5 -> filled at 98
    df = h.make_ohlc([SIG, (100, 100.5, 99, 99), (99, 99.5, 97.5, 98.5), (98.5, 99, 98, 98.5)])
    out = h.kernel(df, [0], [1], limit=[98.0], cancel=[99.0])
    assert len(h.journal_rows(out["journal"], codes.EV_ORDER_CANCELLED)) == 0
    assert h.journal_rows(out["journal"], codes.EV_TRADE_OPENED)["bar"].tolist() == [2]


def test_percent_trail_follows_the_best_close_not_the_high():   # M24
    # long at 100; bar 2 spikes to 110 but closes 105: best close 105 -> stop 99.75 (not 104.5
    # from the high); bar 3's low 103 does not touch it; the trade is finalized at bar 4's open
    df = h.make_ohlc([SIG, (100, 101, 99.5, 101), (102, 110, 101, 105), (104, 105, 103, 104), (104, 104, 104, 104)])
    t = one(h.kernel(df, [0], [1], trail_mode=codes.TRAIL_PERCENT, trail_param=0.05, finalize=True))
    assert (t["exit_bar"], t["exit_reason"]) == (4, codes.EXIT_END_OF_DATA)
    assert t["stop"] == pytest.approx(105 * 0.95)


def test_gap_days_boundary():                     # P7
    from metaflow_nb.engine.metrics import GAP_DAYS, measured_periods_per_year as ppy
    # 7-day data, 28 days, a hole, 28 days: a step of exactly GAP_DAYS (13 days without bars)
    # stays in the span; one step more is left out
    kept = np.r_[np.arange(0, 28), np.arange(28 + GAP_DAYS - 1, 56 + GAP_DAYS - 1)]
    cut = kept.copy(); cut[28:] += 1
    assert np.diff(kept).max() == GAP_DAYS and np.diff(cut).max() == GAP_DAYS + 1
    assert ppy(kept) == pytest.approx(296.8380952380952, rel=1e-12)
    assert ppy(cut) == 365.25
