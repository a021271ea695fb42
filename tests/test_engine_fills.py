"""Fill rules, sizing, equity and metrics, each on a hand-made 5-10 bar scenario.

Every expected number is computed by hand in the comments; the engine runs through the
public API (``metaflow_nb.api.backtest`` with a scripted opportunity worker, see
``tests/engine_helpers.py``) or, for threats, through the compiled kernel directly.

Conventions used in the comments:
  F = 1 - 2.220446049250313e-16 (backtesting.py's "all in" fraction)
  all-in size = floor(equity * leverage * F / (price * (1 + commission)))
  bars are written (open, high, low, close).
"""
from __future__ import annotations

import math
import statistics
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import engine_helpers as h
from metaflow_nb.engine import codes
from metaflow_nb.engine.metrics import metrics_from_frames
from metaflow_nb.engine.nb import simulate as nbsim

F = 1.0 - 2.220446049250313e-16
CASH = 10_000.0


def A(x):
    return pytest.approx(x, rel=1e-12, abs=1e-12)


def allin(equity, price, commission=0.0, leverage=1.0):
    """The sizing formula of the README, computed independently."""
    return math.floor(equity * leverage * F / (price * (1.0 + commission)))


FLAT = (100, 101, 99, 100)


def row(frame, i):
    """Trade ``i`` as attributes (a Series would answer ``.size`` with its length)."""
    return SimpleNamespace(**frame.iloc[i].to_dict())


def one(res):
    assert len(res.trades) == 1, res.trades
    return row(res.trades, 0)


def journal_kinds(res, bar):
    j = res.journal
    return list(j.loc[j["bar"] == bar, "event"])


# ====================================================================== market fills


def test_market_order_fills_at_next_open_not_on_signal_bar():
    df = h.make_ohlc([
        FLAT,                    # 0
        (100, 102, 99, 101),     # 1  long signal at the close (101)
        (103, 106, 102, 105),    # 2  fill at the open 103
        (105, 107, 104, 106),    # 3
        (106, 108, 105, 107),    # 4
    ])
    res = h.run(df, longs=[1])
    # size = floor(10000 * F / 103) = floor(97.087...) = 97
    size = 97
    assert allin(CASH, 103) == size
    pos = res.position.to_numpy()
    assert list(pos) == [0, 0, 97, 97, 97]                      # nothing on the signal bar
    assert journal_kinds(res, 1) == ["OPPORTUNITY_DETECTED", "ORDER_PLACED"]
    assert journal_kinds(res, 2) == ["TRADE_OPENED"]
    # equity marked at each close: cash until filled, then 10000 + 97 * (close - 103)
    assert list(res.equity) == [A(10000), A(10000), A(10000 + 97 * 2), A(10000 + 97 * 3), A(10000 + 97 * 4)]
    # the trade is still open at the end: not listed, but in the final equity (10388)
    assert len(res.trades) == 0
    assert res.metrics["final_equity"] == A(10388.0)
    assert res.metrics["total_trades"] == 0


def test_signal_on_the_last_bar_places_no_order():
    df = h.flat_bars([100, 100, 100, 100, 100])
    res = h.run(df, longs=[4], finalize=True)
    assert journal_kinds(res, 4) == ["OPPORTUNITY_DETECTED"]     # no ORDER_PLACED
    assert len(res.trades) == 0
    assert (res.position == 0).all()
    assert list(res.equity) == [CASH] * 5


def test_signal_on_bar_0_fills_on_bar_1():
    df = h.flat_bars([100, 110, 120, 130, 140])
    res = h.run(df, longs=[0], finalize=True)
    t = one(res)
    # filled at open[1] = 110, size floor(10000F/110) = 90; finalized at open[4] = 140
    assert (t.entry_bar, t.entry_price, t.size) == (1, 110.0, 90.0)
    assert (t.exit_bar, t.exit_price, t.exit_reason) == (4, 140.0, "END_OF_DATA")
    assert t.pnl == A(90 * 30)


# ====================================================================== slippage


SLIP_BARS = [FLAT, FLAT, (100, 104, 97, 102), (105, 107, 104, 106), (110, 112, 109, 111), (111, 112, 110, 111)]


def test_slippage_long_entry_up_exit_down():
    df = h.make_ohlc(SLIP_BARS)
    res = h.run(df, longs=[1], shorts=[3], direction="long_only", reverse=False, slippage=0.01)
    t = one(res)
    # entry: open[2] * (1 + 0.01) = 101;  size = floor(10000F/101) = floor(99.0099) = 99
    # exit (opposite signal at bar 3): open[4] * (1 - 0.01) = 108.9
    assert t.entry_price == A(101.0)
    assert t.exit_price == A(108.9)
    assert t.size == 99
    # pnl = 99 * (108.9 - 101) = 782.1
    assert t.pnl == A(99 * (108.9 - 101.0))
    assert t.exit_reason == "SIGNAL"
    assert res.metrics["final_equity"] == A(CASH + 99 * (108.9 - 101.0))


def test_slippage_short_entry_down_exit_up():
    df = h.make_ohlc(SLIP_BARS)
    res = h.run(df, shorts=[1], longs=[3], direction="short_only", reverse=False, slippage=0.01)
    t = one(res)
    # entry: 100 * 0.99 = 99; size = floor(10000F/99) = floor(101.0101) = 101
    # exit: 110 * 1.01 = 111.1; pnl = -101 * (111.1 - 99) = -1222.1
    assert t.direction == "short"
    assert t.entry_price == A(99.0)
    assert t.exit_price == A(111.1)
    assert t.size == 101
    assert t.pnl == A(-101 * (111.1 - 99.0))


def test_slippage_on_stop_fills_but_not_on_targets():
    stops = {"stop_loss_pct": 5.0, "take_profit_pct": 10.0, "reference": "fill"}
    # entry at 100 * 1.01 = 101: stop = 101 * 0.95 = 95.95, target = 101 * 1.10 = 111.1
    stop_df = h.make_ohlc([FLAT, FLAT, (100, 102, 99, 101), (99, 100, 94, 96), FLAT])
    t = one(h.run(stop_df, longs=[1], stops=stops, slippage=0.01))
    assert t.stop_price == A(95.95) and t.target_price == A(111.1)
    # stop touched on bar 3 (low 94): fills at min(99, 95.95) * (1 - 0.01) = 94.9905
    assert (t.exit_bar, t.exit_reason) == (3, "STOP_LOSS")
    assert t.exit_price == A(95.95 * 0.99)
    target_df = h.make_ohlc([FLAT, FLAT, (100, 102, 99, 101), (105, 112, 104, 108), FLAT])
    t = one(h.run(target_df, longs=[1], stops=stops, slippage=0.01))
    # target touched on bar 3 (high 112): a limit, fills at max(105, 111.1) = 111.1, no slippage
    assert (t.exit_bar, t.exit_reason) == (3, "TAKE_PROFIT")
    assert t.exit_price == A(111.1)


# ====================================================================== commission


def test_commission_on_entry_and_exit_and_final_equity():
    df = h.make_ohlc([
        FLAT,                   # 0
        FLAT,                   # 1  long signal
        (100, 106, 99, 105),    # 2  fill at 100
        (104, 108, 103, 107),   # 3  short signal (long_only: exit only)
        (110, 111, 109, 110),   # 4  exit at 110
        (110, 111, 109, 110),   # 5
    ])
    res = h.run(df, longs=[1], shorts=[3], direction="long_only", reverse=False, commission=0.01)
    t = one(res)
    # size = floor(10000F / (100 * 1.01)) = floor(99.0099) = 99
    assert t.size == 99 == allin(CASH, 100, 0.01)
    # entry commission 99 * 100 * 0.01 = 99; exit commission 99 * 110 * 0.01 = 108.9
    assert t.commission == A(99.0 + 108.9)
    # pnl = 99 * (110 - 100) - 99 - 108.9 = 782.1
    assert t.pnl == A(990.0 - 99.0 - 108.9)
    assert t.return_pct == A(782.1 / (100 * 99) * 100)
    # equity: entry commission leaves cash at 9901; marked at the closes
    #   bar 2: 9901 + 99 * 5 = 10396; bar 3: 9901 + 99 * 7 = 10594; bar 4/5: 10782.1
    assert list(res.equity) == [A(10000), A(10000), A(10396), A(10594), A(10782.1), A(10782.1)]
    assert res.metrics["final_equity"] == A(10782.1)
    assert res.metrics["total_return_pct"] == A(7.821)


# ====================================================================== sizing


@pytest.mark.parametrize("cash, price, commission, leverage, expected", [
    # 10000 * F = 9999.999999999998; / 100 = 99.99999999999997 -> 99, not 100 (the eps edge)
    (10_000.0, 100.0, 0.0, 1.0, 99),
    # 10000 / 99 = 101.0101 -> 101
    (10_000.0, 99.0, 0.0, 1.0, 101),
    # 9999.999... / 100.1 = 99.9001 -> 99
    (10_000.0, 100.0, 0.001, 1.0, 99),
    # 10000 / 64 = 156.25 -> 156
    (10_000.0, 64.0, 0.0, 1.0, 156),
    # leverage 2: 20000 * F / 50 = 399.99999... -> 399
    (10_000.0, 50.0, 0.0, 2.0, 399),
    # 1000 / (3 * 1.002) = 332.667 -> 332
    (1_000.0, 3.0, 0.002, 1.0, 332),
])
def test_all_in_whole_unit_size(cash, price, commission, leverage, expected):
    assert allin(cash, price, commission, leverage) == expected
    df = h.flat_bars([price] * 5)
    res = h.run(df, longs=[1], cash=cash, commission=commission, leverage=leverage, finalize=True)
    t = one(res)
    assert t.size == expected
    assert t.entry_price == price


def test_all_in_fractional_units_uses_one_minus_eps():
    df = h.flat_bars([100.0] * 5)
    res = h.run(df, longs=[1], sizer={"plugin": "all_in_sizer", "params": {"whole_units": False}}, finalize=True)
    # size = 10000 * F / 100 = 99.99999999999997, just under 100
    assert one(res).size == 10_000.0 * F / 100.0
    assert one(res).size < 100.0


def test_cash_too_small_for_one_unit_is_skipped():
    df = h.flat_bars([100.0] * 5)
    res = h.run(df, longs=[1], cash=99.0)
    # floor(99 * F / 100) = 0 units -> OPPORTUNITY_SKIPPED INSUFFICIENT_CASH at the fill bar
    sk = h.events(res, "OPPORTUNITY_SKIPPED")
    assert list(sk["bar"]) == [2] and list(sk["reason"]) == ["INSUFFICIENT_CASH"]
    assert (res.position == 0).all() and len(res.trades) == 0


def test_a_fixed_risk_order_without_a_usable_stop_is_skipped_as_no_stop():
    """hunt34 F2: the order was skipped as INSUFFICIENT_CASH with all the cash there."""
    df = h.flat_bars([100.0] * 8)
    # setups at bars 0, 2 and 4 fill at the next opens (100): stop NaN (an ATR warming up),
    # stop at the fill price (distance 0), stop 95 (risk 1 % of 10000 = 100 -> 20 units)
    out = h.kernel(df, [0, 2, 4], [1, 1, 1], stop=[np.nan, 100.0, 95.0], stop_mode=codes.PRICE_ABSOLUTE,
                   sizer_kind=codes.SIZER_FIXED_RISK, sizer_param=1.0, whole_units=True, finalize=True)
    sk = h.journal_rows(out["journal"], codes.EV_OPPORTUNITY_SKIPPED)
    assert sk["bar"].tolist() == [1, 3] and sk["reason"].tolist() == [codes.REASON_NO_STOP] * 2
    assert codes.REASON_NAMES[codes.REASON_NO_STOP] == "NO_STOP"
    assert out["trades"]["size"].tolist() == [20.0]
    # cash short for one unit stays what it was
    out = h.kernel(df, [0], [1], stop=[95.0], stop_mode=codes.PRICE_ABSOLUTE, sizer_kind=codes.SIZER_FIXED_RISK,
                   sizer_param=0.01, whole_units=True)
    assert h.journal_rows(out["journal"], codes.EV_OPPORTUNITY_SKIPPED)["reason"].tolist() == \
        [codes.REASON_INSUFFICIENT_CASH]


def test_fixed_fraction_sizer():
    df = h.make_ohlc([FLAT, FLAT, (100, 104, 98, 103), (103, 106, 102, 104), (105, 106, 104, 105)])
    sizer = {"plugin": "fixed_fraction_sizer", "params": {"fraction": 0.5, "whole_units": False}}
    res = h.run(df, longs=[1], sizer=sizer, commission=0.002, finalize=True)
    t = one(res)
    # size = 10000 * 0.5 / (100 * 1.002) = 49.90019960...
    size = 5000.0 / 100.2
    assert t.size == A(size)
    # entry commission = size * 100 * 0.002; cash after entry 10000 - 10 * 5000/5010
    entry_comm = size * 100 * 0.002
    assert res.equity.iloc[2] == A(CASH - entry_comm + size * 3)      # close 103
    assert res.equity.iloc[3] == A(CASH - entry_comm + size * 4)      # close 104
    # finalized at open[4] = 105: exit commission size * 105 * 0.002
    assert t.exit_price == 105.0
    assert t.pnl == A(size * 5 - entry_comm - size * 105 * 0.002)
    assert res.metrics["final_equity"] == A(CASH + t.pnl)
    # whole units: floor(49.9) = 49
    sizer["params"]["whole_units"] = True
    assert one(h.run(df, longs=[1], sizer=sizer, commission=0.002, finalize=True)).size == 49


def test_fixed_fraction_capped_by_equity():
    df = h.flat_bars([100.0] * 5)
    sizer = {"plugin": "fixed_fraction_sizer", "params": {"fraction": 1.0, "whole_units": False}}
    t = one(h.run(df, longs=[1], sizer=sizer, finalize=True))
    # min(10000 * 1.0 / 100, 10000 * F / 100) = the all-in cap 99.99999999999997
    assert t.size == 10_000.0 * F / 100.0


# ====================================================================== stops and targets

# long at 100 (signal close 100, fill open 100): stop 5 % -> 95, target 10 % -> 110, size 99.
STOPS = {"stop_loss_pct": 5.0, "take_profit_pct": 10.0, "reference": "signal_close"}
QUIET = (100, 104, 97, 102)  # touches neither 95 nor 110


def mirror(bar):
    """The short twin of a long scenario: p -> 200 - p (high and low swap)."""
    o, hi, lo, c = bar
    return (200 - o, 200 - lo, 200 - hi, 200 - c)


@pytest.mark.parametrize("side", ["long", "short"])
@pytest.mark.parametrize("bar3, exit_price, reason", [
    ((99, 100, 94, 96), 95.0, "STOP_LOSS"),       # low 94 <= 95: fills at min(99, 95) = 95
    ((105, 111, 104, 108), 110.0, "TAKE_PROFIT"),  # high 111 >= 110: fills at max(105, 110) = 110
    ((90, 92, 88, 91), 90.0, "STOP_LOSS"),        # gap below the stop: min(90, 95) = 90 (worse)
    ((115, 118, 114, 116), 115.0, "TAKE_PROFIT"),  # gap above the target: max(115, 110) = 115 (better)
    ((100, 112, 94, 105), 95.0, "STOP_LOSS"),      # both touched: the stop wins
], ids=["stop", "target", "gap-stop", "gap-target", "both-stop-wins"])
def test_stop_and_target(side, bar3, exit_price, reason):
    bars = [FLAT, FLAT, QUIET, bar3, FLAT, FLAT]
    if side == "short":
        # short at 100: stop 105, target 90; every price p becomes 200 - p, exit at 200 - x
        bars = [mirror(b) for b in bars]
        res = h.run(h.make_ohlc(bars), shorts=[1], stops=STOPS)
        want_exit = 200.0 - exit_price
        want_stop, want_target = 105.0, 90.0
    else:
        res = h.run(h.make_ohlc(bars), longs=[1], stops=STOPS)
        want_exit = exit_price
        want_stop, want_target = 95.0, 110.0
    t = one(res)
    assert t.direction == side
    assert (t.entry_bar, t.entry_price, t.size) == (2, 100.0, 99.0)
    assert (t.exit_bar, t.exit_reason) == (3, reason)
    assert t.exit_price == A(want_exit)
    assert (t.stop_price, t.target_price) == (A(want_stop), A(want_target))
    # the long and its mirrored short earn the same: 99 * (exit - 100) for the long
    assert t.pnl == A(99 * (exit_price - 100.0))
    # after the exit the account is flat at 10000 + pnl from the exit bar's close on
    assert list(res.equity.iloc[3:]) == [A(CASH + t.pnl)] * 3
    assert (res.position.iloc[3:] == 0).all()


@pytest.mark.parametrize("bar2, exit_price, reason", [
    ((100, 101, 94, 97), 95.0, "STOP_LOSS"),       # the fill bar's low touches the stop
    ((100, 111, 99, 108), 110.0, "TAKE_PROFIT"),   # the fill bar's high touches the target
    ((100, 111, 94, 105), 95.0, "STOP_LOSS"),      # both: stop
])
def test_market_fill_bar_checks_stop_and_target(bar2, exit_price, reason):
    res = h.run(h.make_ohlc([FLAT, FLAT, bar2, FLAT, FLAT]), longs=[1], stops=STOPS)
    t = one(res)
    # entered and left on bar 2
    assert (t.entry_bar, t.exit_bar, t.exit_reason, t.duration_bars) == (2, 2, reason, 0)
    assert t.exit_price == A(exit_price)   # 100 * 1.1 is 110.00000000000001
    assert res.equity.iloc[2] == A(CASH + 99 * (exit_price - 100))
    assert res.position.iloc[2] == 0
    assert journal_kinds(res, 2) == ["TRADE_OPENED", "TRADE_CLOSED"]


def test_percent_stops_reference_signal_close_vs_fill():
    # signal close 100, fill open 102 (gap up)
    df = h.make_ohlc([FLAT, FLAT, (102, 104, 101, 103), (101, 103, 96, 100), (100, 101, 99, 100)])
    sig = dict(STOPS, reference="signal_close")
    fill = dict(STOPS, reference="fill")
    # signal_close: stop 100 * 0.95 = 95, target 110; the low 96 of bar 3 does not reach 95
    t = one(h.run(df, longs=[1], stops=sig, finalize=True))
    assert (t.stop_price, t.target_price) == (A(95.0), A(110.0))
    assert (t.exit_bar, t.exit_reason, t.exit_price) == (4, "END_OF_DATA", 100.0)
    # fill: stop 102 * 0.95 = 96.9, target 102 * 1.1 = 112.2; bar 3 low 96 hits 96.9
    t = one(h.run(df, longs=[1], stops=fill, finalize=True))
    assert (t.stop_price, t.target_price) == (A(96.9), A(112.2))
    assert (t.exit_bar, t.exit_reason) == (3, "STOP_LOSS")
    assert t.exit_price == A(96.9)
    # size floor(10000F/102) = 98; pnl = 98 * (96.9 - 102)
    assert t.size == 98 and t.pnl == A(98 * (96.9 - 102.0))


def test_short_percent_stops_from_signal_close():
    df = h.make_ohlc([FLAT, FLAT, (100, 101, 98, 99), (99, 100, 97, 98), FLAT])
    t = one(h.run(df, shorts=[1], stops={"stop_loss_pct": 3.0, "take_profit_pct": 6.0}, finalize=True))
    # short: stop above, 100 * 1.03 = 103; target below, 100 * 0.94 = 94
    assert (t.stop_price, t.target_price) == (A(103.0), A(94.0))


# ====================================================================== limit entries


def test_limit_fill_checks_only_the_stop_on_the_fill_bar():
    # long setup on bar 1 with zone top 98 / bottom 96 -> limit buy at 98
    stops = {"stop_loss_pct": 2.0, "take_profit_pct": 10.0, "reference": "fill"}
    df = h.make_ohlc([FLAT, FLAT, (100, 112, 97, 105), (106, 109, 105, 108), FLAT])
    res = h.run(df, longs=[1], zones=[(1, 98.0, 96.0)], stops=stops,
                entry={"plugin": "test_limit_entry", "params": {}})
    t = one(res)
    # bar 2 trades down through 98 (low 97): fills at min(100, 98) = 98; size floor(10000F/98) = 102
    assert (t.entry_bar, t.entry_price, t.size) == (2, 98.0, 102.0)
    # stop 98 * 0.98 = 96.04, target 98 * 1.1 = 107.8; bar 2's high 112 is NOT a target fill
    # (the target may have come before the limit filled); bar 3 reaches 107.8
    assert (t.exit_bar, t.exit_reason) == (3, "TAKE_PROFIT")
    assert t.exit_price == A(107.8)
    assert res.equity.iloc[2] == A(CASH + 102 * (105 - 98))


def test_limit_fill_bar_stop_is_live():
    stops = {"stop_loss_pct": 2.0, "reference": "fill"}
    df = h.make_ohlc([FLAT, FLAT, (100, 101, 95, 99), FLAT, FLAT])
    t = one(h.run(df, longs=[1], zones=[(1, 98.0, 96.0)], stops=stops,
                  entry={"plugin": "test_limit_entry", "params": {}}))
    # fill at 98, stop 96.04 touched by the low 95 on the same bar: exit at min(100, 96.04)
    assert (t.entry_bar, t.exit_bar, t.exit_reason) == (2, 2, "STOP_LOSS")
    assert t.exit_price == A(96.04)


def test_stop_above_a_limit_fill_cannot_exit_above_the_fill():
    # long setup on bar 1 (close 100) with zone top 95 -> limit buy at 95; stop 2 % from the
    # signal close -> 98, ABOVE the limit. Bar 2 opens 99 and trades down to 94: the limit
    # fills at 95 on the way down, after the price already passed 98.
    df = h.make_ohlc([FLAT, FLAT, (99, 99.5, 94, 96), (96, 97, 95, 96), (96, 97, 95, 96)])
    t = one(h.run(df, longs=[1], zones=[(1, 95.0, 90.0)],
                  stops={"stop_loss_pct": 2.0, "reference": "signal_close"},
                  entry={"plugin": "test_limit_entry", "params": {}}))
    assert (t.entry_bar, t.entry_price, t.stop_price) == (2, 95.0, 98.0)
    assert (t.exit_bar, t.exit_reason) == (2, "STOP_LOSS")
    # a stop-loss exit can not be above the price just bought at: expected 95, pnl 0
    # (got: exit 98, pnl +315 = 105 units * 3)
    assert t.exit_price <= t.entry_price
    assert t.pnl <= 0.0


def test_limit_gap_through_fills_at_the_open():
    df = h.make_ohlc([FLAT, FLAT, (97, 99, 96.5, 98), FLAT, FLAT])
    t = one(h.run(df, longs=[1], zones=[(1, 98.0, 96.0)], finalize=True,
                  entry={"plugin": "test_limit_entry", "params": {}}))
    # the bar opens at 97, below the limit 98: fills at min(97, 98) = 97 (better)
    assert (t.entry_bar, t.entry_price) == (2, 97.0)
    assert t.size == allin(CASH, 97.0) == 103


def test_short_limit_and_expiry():
    # short setup on bar 1 with zone top 104 / bottom 102 -> limit sell at 102
    df = h.make_ohlc([FLAT, FLAT, (100, 101.5, 99, 101), (101, 103, 100, 102), FLAT])
    res = h.run(df, shorts=[1], zones=[(1, 104.0, 102.0)], finalize=True,
                entry={"plugin": "test_limit_entry", "params": {}})
    t = one(res)
    # bar 2 high 101.5 < 102: no fill; bar 3 high 103 >= 102: fills at max(101, 102) = 102
    assert (t.entry_bar, t.entry_price, t.direction) == (3, 102.0, "short")
    # with expiry_bars 1 the order placed at bar 1 expires on bar 2 (2 - 1 >= 1), unfilled
    res = h.run(df, shorts=[1], zones=[(1, 104.0, 102.0)],
                entry={"plugin": "test_limit_entry", "params": {"expiry_bars": 1}})
    ex = h.events(res, "ORDER_EXPIRED")
    assert list(ex["bar"]) == [2] and list(ex["reason"]) == ["EXPIRED"]
    assert len(res.trades) == 0 and (res.position == 0).all()


# ====================================================================== direction, reversal


@pytest.mark.parametrize("reverse", [False, True])
def test_long_only_skips_shorts_and_exits_on_them(reverse):
    df = h.flat_bars([100, 100, 100, 104, 110, 111, 112])
    res = h.run(df, longs=[1], shorts=[3], direction="long_only", reverse=reverse)
    t = one(res)
    # long 99 @ 100 (bar 2), the short at bar 3 is not allowed but exits the long at open[4] = 110
    assert (t.entry_bar, t.exit_bar, t.exit_price, t.exit_reason) == (2, 4, 110.0, "SIGNAL")
    sk = h.events(res, "OPPORTUNITY_SKIPPED")
    assert list(zip(sk["bar"], sk["reason"], sk["direction"])) == [(3, "DIRECTION_NOT_ALLOWED", "short")]
    assert list(res.position) == [0, 0, 99, 99, 0, 0, 0]
    assert res.metrics["final_equity"] == A(CASH + 99 * 10)


def test_long_only_without_reverse_ignores_shorts():
    df = h.flat_bars([100, 100, 100, 104, 110, 111, 112])
    res = h.run(df, longs=[1], shorts=[3], direction="long_only")
    assert len(res.trades) == 0
    assert list(res.position) == [0, 0, 99, 99, 99, 99, 99]
    assert res.metrics["final_equity"] == A(CASH + 99 * 12)


def test_short_only_skips_longs():
    df = h.flat_bars([100, 100, 100, 95, 90, 90])
    res = h.run(df, shorts=[1], longs=[3], direction="short_only", reverse=False)
    t = one(res)
    # short 99 @ 100 covered at open[4] = 90: pnl = +990 (short profits when price falls)
    assert (t.direction, t.exit_price, t.exit_reason) == ("short", 90.0, "SIGNAL")
    assert t.pnl == A(990.0)
    assert t.return_pct == A(990.0 / (100 * 99) * 100)     # +10 %
    sk = h.events(res, "OPPORTUNITY_SKIPPED")
    assert list(zip(sk["bar"], sk["reason"])) == [(3, "DIRECTION_NOT_ALLOWED")]


def test_short_trade_pnl_sign():
    up = h.run(h.flat_bars([100, 100, 100, 105, 110, 110]), shorts=[1], finalize=True)
    t = one(up)
    # short 99 @ 100, finalized at open[5] = 110: pnl = -99 * 10 = -990, return -10 %
    assert (t.direction, t.exit_price) == ("short", 110.0)
    assert t.pnl == A(-990.0) and t.return_pct == A(-10.0)
    # marked at the close: 10000 - 99 * (close - 100)
    assert list(up.equity) == [A(CASH), A(CASH), A(CASH), A(CASH - 495), A(CASH - 990), A(CASH - 990)]


def test_reversal_closes_then_opens_at_the_same_open_sized_from_cash_after_closing():
    df = h.make_ohlc([
        FLAT,                  # 0
        FLAT,                  # 1  long signal
        FLAT,                  # 2  long fills at 100
        (90, 91, 85, 86),      # 3  short signal
        (80, 82, 78, 81),      # 4  long closed at 80, short opened at 80
        (81, 83, 79, 82),      # 5  finalized at 81
    ])
    res = h.run(df, longs=[1], shorts=[3], reverse=False, commission=0.001, finalize=True)
    tr = res.trades
    assert len(tr) == 2
    a, b = row(tr, 0), row(tr, 1)
    # long: size floor(10000F / 100.1) = 99, entry commission 99 * 100 * 0.001 = 9.9
    # exit at 80: commission 99 * 80 * 0.001 = 7.92; pnl = 99 * (80 - 100) - 9.9 - 7.92 = -1997.82
    assert (a.direction, a.entry_price, a.exit_bar, a.exit_price, a.size) == ("long", 100.0, 4, 80.0, 99.0)
    assert a.pnl == A(-1997.82)
    # cash after closing: 10000 - 1997.82 = 8002.18; short size floor(8002.18F / 80.08) = 99
    # (sizing from equity before the exit commission, 8010.1, would give 100; from the
    #  cash before closing, 9990.1, 124)
    assert (b.direction, b.entry_bar, b.entry_price, b.size) == ("short", 4, 80.0, 99.0)
    assert allin(8002.18, 80.0, 0.001) == 99 and allin(8010.1, 80.0, 0.001) == 100
    # the close is journalled before the open on bar 4
    assert journal_kinds(res, 4) == ["TRADE_CLOSED", "TRADE_OPENED"]
    # short entry commission 99 * 80 * 0.001 = 7.92 -> cash 7994.26; bar 4 close 81:
    # equity 7994.26 - 99 * (81 - 80) = 7895.26
    assert res.equity.iloc[4] == A(7895.26)
    # finalized at open[5] = 81: commission 99 * 81 * 0.001 = 8.019; pnl = -99 - 7.92 - 8.019
    assert b.pnl == A(-99.0 - 7.92 - 8.019)
    assert res.metrics["final_equity"] == A(8002.18 - 114.939)
    assert res.equity.iloc[5] == A(8002.18 - 114.939)


@pytest.mark.parametrize("exclusive", [None, False, True])
def test_same_direction_setup_in_position(exclusive):
    df = h.flat_bars([100, 100, 100, 110, 120, 125])
    res = h.run(df, longs=[1, 3], reverse=exclusive)
    if not exclusive:
        # the second long (bar 3) is skipped: IN_POSITION; the first stays open
        sk = h.events(res, "OPPORTUNITY_SKIPPED")
        assert list(zip(sk["bar"], sk["reason"])) == [(3, "IN_POSITION")]
        assert len(res.trades) == 0
        assert list(res.position) == [0, 0, 99, 99, 99, 99]
        assert res.metrics["final_equity"] == A(CASH + 99 * 25)
    else:
        # exclusive orders: at open[4] = 120 the long closes (+1980) and a new long opens
        # with size floor(11980F / 120) = floor(99.83) = 99
        t = one(res)
        assert (t.exit_bar, t.exit_price, t.exit_reason, t.pnl) == (4, 120.0, "SIGNAL", A(1980.0))
        opened = h.events(res, "TRADE_OPENED")
        assert list(opened["bar"]) == [2, 4]
        assert list(res.position) == [0, 0, 99, 99, 99, 99]
        # 11980 + 99 * (125 - 120) = 12475
        assert res.metrics["final_equity"] == A(12475.0)


def test_finalize_trades_closes_at_last_open():
    df = h.make_ohlc([FLAT, FLAT, FLAT, (104, 106, 103, 105), (107, 110, 106, 109)])
    open_end = h.run(df, longs=[1])
    final = h.run(df, longs=[1], finalize=True, commission=0.0)
    # not finalized: nothing listed; final equity marks 99 units at the last close 109
    assert len(open_end.trades) == 0
    assert open_end.metrics["final_equity"] == A(CASH + 99 * 9)
    # finalized: closed at the last bar's OPEN (107), not its close; equity[-1] is the cash
    t = one(final)
    assert (t.exit_bar, t.exit_price, t.exit_reason) == (4, 107.0, "END_OF_DATA")
    assert t.pnl == A(99 * 7)
    assert final.metrics["final_equity"] == A(CASH + 99 * 7)
    assert final.equity.iloc[-1] == A(CASH + 99 * 7)
    assert final.position.iloc[-1] == 0
    assert final.metrics["total_trades"] == 1


def test_out_of_money_liquidates_at_the_close():
    df = h.make_ohlc([
        FLAT,                    # 0
        FLAT,                    # 1  short signal
        FLAT,                    # 2  short 99 @ 100
        (150, 205, 150, 202),    # 3  equity 10000 - 99 * 102 = -98 <= 0: liquidate at 202
        FLAT,                    # 4  a long signal here is never even detected
        FLAT,                    # 5
    ])
    res = h.run(df, shorts=[1], longs=[4], finalize=True)
    t = one(res)
    assert (t.exit_bar, t.exit_price, t.exit_reason) == (3, 202.0, "OUT_OF_MONEY")
    assert t.pnl == A(-99 * 102.0)
    # equity 0 from the liquidation bar on, trading stops
    assert list(res.equity) == [CASH, CASH, CASH, 0.0, 0.0, 0.0]
    assert (res.position.iloc[3:] == 0).all()
    assert (res.journal["bar"] <= 3).all()
    assert res.metrics["final_equity"] == 0.0
    assert res.metrics["total_return_pct"] == A(-100.0)
    assert res.metrics["max_drawdown_pct"] == A(100.0)


def test_equity_is_marked_at_every_close():
    closes = [100, 100, 101, 98, 103, 97, 99]
    df = h.make_ohlc([(100, 100, 100, 100), (100, 100, 100, 100), (100, 102, 99, 101), (101, 101, 97, 98),
                      (99, 104, 98, 103), (102, 102, 96, 97), (98, 100, 97, 99)])
    res = h.run(df, longs=[1], commission=0.001)
    # size floor(10000F / 100.1) = 99; entry commission 9.9 -> cash 9890.1 + 99 * (close - 100)
    want = [CASH, CASH] + [CASH - 9.9 + 99 * (c - 100) for c in closes[2:]]
    assert list(res.equity) == [A(w) for w in want]
    assert list(res.position) == [0, 0] + [99] * 5


def test_exposure_and_average_duration():
    df = h.flat_bars([100.0] * 10)
    # long at 1 -> in 2, short at 4 exits at 5 (3 bars); long at 6 -> in 7, short at 7 exits at 8 (1 bar)
    res = h.run(df, longs=[1, 6], shorts=[4, 7], direction="long_only", reverse=False)
    tr = res.trades
    assert list(zip(tr.entry_bar, tr.exit_bar, tr.duration_bars)) == [(2, 5, 3), (7, 8, 1)]
    # in a position at the close of bars 2, 3, 4 and 7: 4 of 10 bars
    assert list(res.position != 0) == [False, False, True, True, True, False, False, True, False, False]
    assert res.metrics["exposure_pct"] == A(40.0)
    assert res.metrics["avg_trade_duration_bars"] == A(2.0)


def test_journal_links_opportunities_orders_and_trades():
    res = h.run(h.flat_bars([100, 100, 100, 105, 110, 111]), longs=[1], shorts=[3], reverse=False, finalize=True)
    j = res.journal
    assert list(j["event"]) == ["OPPORTUNITY_DETECTED", "ORDER_PLACED", "TRADE_OPENED",
                                "OPPORTUNITY_DETECTED", "ORDER_PLACED", "TRADE_CLOSED", "TRADE_OPENED",
                                "TRADE_CLOSED"]
    assert list(j["opportunity_id"]) == [0, 0, 0, 1, 1, 0, 1, 1]
    assert list(res.trades["opportunity_id"]) == [0, 1]
    assert set(j["source_id"]) == {"script_1"}


# ====================================================================== threats (kernel)


def _threat_run(mask, reason, opp_bar, opp_dir, **kw):
    df = h.flat_bars([100.0] * 6)
    return h.kernel(df, opp_bar, opp_dir, threat_mask=np.asarray(mask, np.int8),
                    reason=np.asarray(reason, np.int64), **kw)


def test_threat_mask_rejects_with_first_threat_and_all_active_bits():
    m = np.zeros((3, 6), np.int8)
    m[0, 1] = 2          # threat 0 blocks shorts on bar 1 (not this long)
    m[1, 1] = 1          # threat 1 blocks longs on bar 1
    m[2, 1] = 3          # threat 2 blocks both on bar 1
    m[0, 3] = 2          # threat 0 blocks the short on bar 3
    reasons = [codes.REASON_MARKET_RISK, codes.REASON_VOLATILITY_SPIKE, codes.REASON_SESSION_CLOSED]
    out = _threat_run(m, reasons, [1, 3], [1, -1])
    rej = h.journal_rows(out["journal"], codes.EV_OPPORTUNITY_REJECTED)
    # long on bar 1: threats 1 and 2 active -> primary 1 (VOLATILITY_SPIKE), active = 0b110
    assert list(rej[0]) == [1, codes.EV_OPPORTUNITY_REJECTED, 0, -1, 1, 1, codes.REASON_VOLATILITY_SPIKE, 0b110, 0]
    # short on bar 3: threat 0 only -> MARKET_RISK, active = 0b001
    assert list(rej[1]) == [3, codes.EV_OPPORTUNITY_REJECTED, 1, -1, -1, 0, codes.REASON_MARKET_RISK, 0b001, 0]
    assert out["trades"].shape[0] == 0 and not out["position"].any()
    assert not h.journal_rows(out["journal"], codes.EV_ORDER_PLACED).size


def test_threat_mask_bit_only_blocks_its_direction():
    m = np.zeros((1, 6), np.int8)
    m[0, 1] = 2          # blocks shorts; the long passes
    out = _threat_run(m, [codes.REASON_MARKET_RISK], [1], [1])
    assert not h.journal_rows(out["journal"], codes.EV_OPPORTUNITY_REJECTED).size
    assert list(out["position"]) == [0, 0, 99, 99, 99, 99]


def test_rejected_opposite_setup_still_exits():
    m = np.zeros((1, 6), np.int8)
    m[0, 3] = 3
    # long at 1 (in at bar 2); short at 3 rejected by the threat, but reverse=1 still exits at 4
    out = _threat_run(m, [codes.REASON_MARKET_RISK], [1, 3], [1, -1], reverse=1)
    tr = out["trades"]
    assert tr.shape[0] == 1
    assert tr[0]["exit_bar"] == 4 and tr[0]["exit_reason"] == codes.EXIT_SIGNAL
    assert list(out["position"]) == [0, 0, 99, 99, 0, 0]


def _dd_run(cooldown):
    # flat bars: 100, 100, 80, 80, ... ; long at 0 fills at open[1] = 100 (99 units, 100 cash spare)
    # with an absolute stop at 85: bar 2 gaps to 80 -> stopped at the open 80, cash 10000 - 1980 = 8020
    df = h.flat_bars([100, 100, 80, 80, 80, 80, 80, 80])
    return h.kernel(df, [0, 2, 3, 4, 5], [1, 1, 1, 1, 1], stop=[85.0] * 5, stop_mode=codes.PRICE_ABSOLUTE,
                    threat_mask=np.zeros((2, 8), np.int8),
                    dd_limit=[np.nan, 10.0], dd_cooldown=[0, cooldown],
                    reason=[codes.REASON_MARKET_RISK, codes.REASON_MAX_DRAWDOWN])


def test_drawdown_threat_with_cooldown_rejects_while_halted_then_rearms():
    out = _dd_run(cooldown=2)
    # bar 2 close: equity 8020, drawdown (10000 - 8020) / 10000 = 19.8 % >= 10 % -> halted for
    # bars 2 and 3; on bar 4 (= 2 + 2) the peak resets to 8020, drawdown 0 -> accepted
    rej = h.journal_rows(out["journal"], codes.EV_OPPORTUNITY_REJECTED)
    assert list(rej["bar"]) == [2, 3]
    assert set(rej["threat"]) == {1}
    assert set(rej["reason"]) == {codes.REASON_MAX_DRAWDOWN}
    assert set(rej["active"]) == {0b10}
    placed = h.journal_rows(out["journal"], codes.EV_ORDER_PLACED)
    # bar 4 accepted; bar 5 too (the re-entry on bar 5 was stopped flat at 80: equity stays 8020)
    assert list(placed["bar"]) == [0, 4, 5]
    tr = out["trades"]
    assert tr[0]["exit_price"] == 80.0 and tr[0]["exit_reason"] == codes.EXIT_STOP_LOSS
    # re-entry at open[5] = 80 with floor(8020F / 80) = 100 units (stop 85 above the price:
    # touched on the fill bar, exits at min(80, 85) = 80, pnl 0)
    assert tr[1]["entry_bar"] == 5 and tr[1]["size"] == 100


def test_drawdown_threat_without_cooldown_stays_halted():
    out = _dd_run(cooldown=0)
    # flat at 8020 the drawdown stays 19.8 %: every later setup is rejected
    rej = h.journal_rows(out["journal"], codes.EV_OPPORTUNITY_REJECTED)
    assert list(rej["bar"]) == [2, 3, 4, 5]
    assert list(h.journal_rows(out["journal"], codes.EV_ORDER_PLACED)["bar"]) == [0]


def test_threat_plugin_names_in_journal():
    threats = [
        {"instance_id": "risk_a", "plugin": "test_mask_threat",
         "params": {"bars": [1], "block": 2, "reason_code": "MARKET_RISK"}},
        {"instance_id": "vol_b", "plugin": "test_mask_threat",
         "params": {"bars": [1, 3], "block": 1, "reason_code": "VOLATILITY_SPIKE"}},
        {"instance_id": "sess_c", "plugin": "test_mask_threat",
         "params": {"bars": [1], "block": 3, "reason_code": "SESSION_CLOSED"}},
    ]
    res = h.run(h.flat_bars([100.0] * 6), longs=[1, 3], threats=threats)
    rej = h.events(res, "OPPORTUNITY_REJECTED")
    assert list(rej["bar"]) == [1, 3]
    assert list(rej["threat_id"]) == ["vol_b", "vol_b"]
    assert list(rej["reason"]) == ["VOLATILITY_SPIKE", "VOLATILITY_SPIKE"]
    assert list(rej["active_reasons"]) == ["VOLATILITY_SPIKE|SESSION_CLOSED", "VOLATILITY_SPIKE"]
    assert res.metrics["opportunities_detected"] == 2
    assert res.metrics["opportunities_rejected"] == 2
    assert res.metrics["rejection_rate_pct"] == 100.0


# ====================================================================== metrics


def _independent_daily_returns(equity: pd.Series, cash: float) -> list[float]:
    last_per_day: dict = {}
    for ts, v in equity.items():
        last_per_day[ts.date()] = v           # ordered: the last bar of each day wins
    out, prev = [], cash
    for v in last_per_day.values():
        out.append(v / prev - 1.0)
        prev = v
    return out


def _independent_ratios(r: list[float], ppy: int):
    mean = sum(r) / len(r)
    sd = statistics.stdev(r)                   # ddof = 1
    down = math.sqrt(sum(min(x, 0.0) ** 2 for x in r) / (len(r) - 1))
    return mean / sd * math.sqrt(ppy), mean / down * math.sqrt(ppy), sd * math.sqrt(ppy) * 100


def _trades(rows=()):
    """A trades table from ``(pnl, entry_price, size, entry_bar, exit_bar)`` rows."""
    cols = ["pnl", "entry_price", "size", "entry_bar", "exit_bar"]
    return pd.DataFrame([dict(zip(cols, r)) for r in rows], columns=cols, dtype=float)


@pytest.mark.parametrize("freq, calendar, ppy", [
    ("B", "exchange", 252), ("D", "crypto_24x7", 365), ("B", "fx_24x5", 260),
    # measured (no calendar): 8 business days from Monday 2024-01-01 hold every weekday
    # Monday to Friday as often as it occurs in the span -> 5 a week; 8 calendar days, 7 a week
    ("B", None, 5 * 365.25 / 7), ("D", None, 365.25)])
def test_metrics_against_independent_computation(freq, calendar, ppy):
    idx = pd.date_range("2024-01-01", periods=8, freq=freq, name="time")
    values = [10_000, 10_100, 9_900, 10_200, 9_800, 10_300, 10_250, 10_400]
    eq = pd.Series(values, index=idx, dtype=float)
    pos = np.array([0, 1, 1, 0, 1, 1, 0, 0], float)
    # (pnl, entry price, size, entry bar, exit bar): returns 1 %, -0.5 %, 0.3 %, 0 %
    trades = _trades([(100.0, 100.0, 100.0, 0, 2), (-50.0, 100.0, 100.0, 1, 4),
                      (30.0, 50.0, 200.0, 3, 4), (0.0, 100.0, 10.0, 2, 6)])
    m = metrics_from_frames(eq, pos, trades, 10_000.0, detected=8, rejected=2, calendar_name=calendar)

    # total return: 10400 / 10000 - 1 = 4 %
    assert m["total_return_pct"] == A(4.0)
    assert m["final_equity"] == 10_400.0
    # drawdown: peaks 10000, 10100, 10100, 10200, 10200, 10300, 10300, 10400
    #   -> largest fall 400 / 10200 at bar 4
    assert m["max_drawdown_pct"] == A(400 / 10_200 * 100)
    r = _independent_daily_returns(eq, 10_000.0)
    assert r[0] == 0.0 and len(r) == 8
    sharpe, sortino, vol = _independent_ratios(r, ppy)
    assert m["sharpe_ratio"] == A(sharpe)
    assert m["sortino_ratio"] == A(sortino)
    assert m["volatility_ann_pct"] == A(vol)
    years = (idx[-1] - idx[0]).days / 365.25
    cagr = (1.04 ** (1 / years) - 1) * 100
    assert m["cagr_pct"] == A(cagr)
    assert m["calmar_ratio"] == A(cagr / (400 / 10_200 * 100))
    # trades: 2 winners of 4 -> 50 %; profit factor 130 / 50 = 2.6; expectancy mean of returns
    assert m["win_rate_pct"] == A(50.0)
    assert m["profit_factor"] == A(2.6)
    assert m["expectancy_pct"] == A((1.0 - 0.5 + 0.3 + 0.0) / 4)
    # durations 2, 3, 1, 4 bars
    assert m["avg_trade_duration_bars"] == A(2.5)
    assert m["total_trades"] == 4
    assert m["exposure_pct"] == A(50.0)
    assert m["rejection_rate_pct"] == A(25.0)


def test_max_drawdown_counts_starting_cash_as_first_peak():
    idx = pd.bdate_range("2024-01-01", periods=3)
    eq = pd.Series([9_500.0, 9_800.0, 10_100.0], index=idx)
    m = metrics_from_frames(eq, np.zeros(3), _trades(), 10_000.0, 0, 0)
    # peak 10000 (the cash) before the first bar: drawdown 500 / 10000 = 5 %
    assert m["max_drawdown_pct"] == A(5.0)
    assert math.isnan(m["win_rate_pct"]) and math.isnan(m["profit_factor"])
    assert math.isnan(m["rejection_rate_pct"])   # 0 of 0 setups: undefined, like the win rate


def test_daily_returns_use_each_days_last_bar():
    # 4 bars a day at 6 h: the daily series is the equity at 18:00 of each day
    idx = pd.date_range("2024-01-01", periods=12, freq="6h")
    vals = [10_000, 10_050, 9_990, 10_020, 10_100, 10_080, 10_000, 9_950,
            9_900, 10_010, 10_030, 10_200]
    eq = pd.Series(vals, index=idx, dtype=float)
    m = metrics_from_frames(eq, np.zeros(12), _trades(), 10_000.0, 0, 0)
    r = [10_020 / 10_000 - 1, 9_950 / 10_020 - 1, 10_200 / 9_950 - 1]
    assert _independent_daily_returns(eq, 10_000.0) == pytest.approx(r, rel=1e-15)
    # no calendar: measured; three days in a row (under a week: days with bars per
    # calendar day of the span) are every day of a 365.25-day year
    sharpe, sortino, vol = _independent_ratios(r, 365.25)
    assert m["sharpe_ratio"] == A(sharpe)
    assert m["sortino_ratio"] == A(sortino)
    assert m["volatility_ann_pct"] == A(vol)


def test_profit_factor_without_losses_is_infinite():
    idx = pd.bdate_range("2024-01-01", periods=3)
    eq = pd.Series([10_000.0, 10_100.0, 10_200.0], index=idx)
    m = metrics_from_frames(eq, np.zeros(3), _trades([(100.0, 100.0, 10.0, 0, 1), (100.0, 100.0, 10.0, 1, 2)]),
                            10_000.0, 0, 0)
    assert m["profit_factor"] == math.inf and m["win_rate_pct"] == 100.0


def test_profit_factor_of_trades_that_neither_made_nor_lost_anything_is_undefined():
    # 0 / 0 (a break-even stop without costs closes at exactly 0): NaN, as the README says, and
    # told apart from no trades by total_trades, from inf by a win rate of 0 (hunt101 F1)
    idx = pd.bdate_range("2024-01-01", periods=3)
    eq = pd.Series([10_000.0, 10_000.0, 10_000.0], index=idx)
    m = metrics_from_frames(eq, np.zeros(3), _trades([(0.0, 100.0, 10.0, 0, 1), (0.0, 100.0, 10.0, 1, 2)]),
                            10_000.0, 0, 0)
    assert math.isnan(m["profit_factor"]) and m["win_rate_pct"] == 0.0 and m["total_trades"] == 2


def test_run_metrics_match_independent_computation():
    df = h.make_ohlc([FLAT, FLAT, (100, 104, 97, 102), (103, 108, 102, 107), (106, 107, 95, 96),
                      (108, 111, 107, 110), (110, 112, 108, 111), (111, 113, 110, 112), (110, 111, 105, 106)],
                     freq="B")
    res = h.run(df, longs=[1, 5], shorts=[3], reverse=False, commission=0.001, finalize=True)
    m, eq, tr = res.metrics, res.equity, res.trades
    # long 2->4 wins, short 4->6 loses, long 6->8 (finalized at 110) loses its commission
    assert len(tr) == 3 and list(tr["pnl"] > 0) == [True, False, False]
    r = _independent_daily_returns(eq, CASH)
    # business days without a calendar: measured, five days a week -> 5 x 365.25 / 7
    sharpe, sortino, vol = _independent_ratios(r, 5 * 365.25 / 7)
    assert m["sharpe_ratio"] == A(sharpe)
    assert m["sortino_ratio"] == A(sortino)
    assert m["volatility_ann_pct"] == A(vol)
    peak, mdd = CASH, 0.0
    for v in eq:
        peak = max(peak, v)
        mdd = max(mdd, (peak - v) / peak * 100)
    assert m["max_drawdown_pct"] == A(mdd)
    assert m["total_return_pct"] == A((eq.iloc[-1] / CASH - 1) * 100)
    assert m["final_equity"] == A(CASH + tr.pnl.sum())
    wins = [p for p in tr.pnl if p > 0]
    losses = [-p for p in tr.pnl if p < 0]
    assert m["win_rate_pct"] == A(len(wins) / len(tr) * 100)
    assert m["profit_factor"] == A(sum(wins) / sum(losses))
    rets = [p / (e * s) * 100 for p, e, s in zip(tr["pnl"], tr["entry_price"], tr["size"])]
    assert m["expectancy_pct"] == A(sum(rets) / len(rets))
    years = (eq.index[-1] - eq.index[0]).days / 365.25
    assert m["cagr_pct"] == A(((eq.iloc[-1] / CASH) ** (1 / years) - 1) * 100)
    assert m["calmar_ratio"] == A(m["cagr_pct"] / mdd)
    assert m["exposure_pct"] == A(float((res.position != 0).mean() * 100))


# ====================================================================== data through the API


def test_api_runs_on_the_validated_frame():
    df = h.flat_bars([100.0, 100.0, 100.0, 110.0, 120.0])
    upper = df.rename(columns=str.capitalize)
    from metaflow_nb.data import load_data
    assert list(load_data(upper).columns) == ["open", "high", "low", "close", "volume"]  # accepted
    res = h.run(upper, longs=[1])
    # the same run as on the lower-case frame: 99 units from 100, marked at 120
    assert res.metrics["final_equity"] == A(CASH + 99 * 20)


@pytest.mark.parametrize("side", ["long", "short"])
def test_a_limit_gapped_through_at_the_open_takes_its_target_on_the_fill_bar(side):
    """hunt21 F1: a bar that opens beyond the limit fills at its open, before anything else
    on the bar: the fill bar is then a market fill's (stop and target both live), not an
    inside-the-bar fill whose target may have come first (it was left open, 'pessimistic')."""
    stops = {"stop_loss_pct": 2.0, "take_profit_pct": 2.0, "reference": "fill"}
    if side == "long":   # limit 98; bar 2 opens 97 (fills at 97): stop 95.06, target 98.94, high 99.5
        bars, kw = [FLAT, FLAT, (97, 99.5, 96.5, 98), FLAT, FLAT], {"longs": [1], "zones": [(1, 98.0, 96.0)]}
        fill, target = 97.0, 97.0 * 1.02
    else:                # limit 102; bar 2 opens 103 (fills at 103): stop 105.06, target 100.94, low 100.5
        bars, kw = [FLAT, FLAT, (103, 103.5, 100.5, 102), FLAT, FLAT], {"shorts": [1], "zones": [(1, 104.0, 102.0)]}
        fill, target = 103.0, 103.0 * 0.98
    res = h.run(h.make_ohlc(bars), stops=stops, finalize=True, entry={"plugin": "test_limit_entry", "params": {}},
                **kw)
    t = one(res)
    assert (t.entry_bar, t.entry_price) == (2, fill)
    assert (t.exit_bar, t.exit_reason) == (2, "TAKE_PROFIT") and t.exit_price == A(target)
    opened = h.events(res, "TRADE_OPENED")
    assert list(opened["fill_rule"]) == ["bar"]   # one outcome possible: nothing was ambiguous


def test_a_limit_gapped_through_at_the_open_takes_its_target_in_a_shared_account(tmp_path):
    # the portfolio kernel's fill bar: the same rule as the single run's (hunt21 F1)
    import metaflow_nb as mf
    df = h.make_ohlc([FLAT, FLAT, (97, 99.5, 96.5, 98), FLAT, FLAT])
    path = tmp_path / "X.csv"
    df.reset_index().to_csv(path, index=False)
    op = {"name": "one", "mode": "portfolio", "max_positions": 1, "finalize_trades": True,
          "instruments": [{"symbol": "X", "source": str(path), "pip_size": 0.01}]}
    bp = h.blueprint(longs=[1], zones=[(1, 98.0, 96.0)], entry={"plugin": "test_limit_entry", "params": {}},
                     stops={"stop_loss_pct": 2.0, "take_profit_pct": 2.0, "reference": "fill"})
    res = mf.backtest(bp, op)
    assert res.mode == "portfolio" and len(res.trades) == 1
    t = res.trades.iloc[0]
    assert (t["entry_price"], t["exit_reason"]) == (97.0, "TAKE_PROFIT") and t["exit_price"] == A(97.0 * 1.02)
    assert t["exit_time"] == df.index[2]
