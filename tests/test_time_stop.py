"""The time stop exit (``time_stop_exit``): close a trade at the open of bar
``entry_bar + N``, plus slippage, reason ``TIME_STOP``.

Hand-made 5-30 bar scenarios run three times, through the compiled loop by name
(:func:`engine_helpers.kernel`), through it again with every bar on the full path (no
quiet-bar loop), and through ``metaflow_nb.api.backtest`` with the scripted opportunity
worker, and must give the hand-computed numbers on every path.
Then three properties: prefix replay with time stops, the quiet-bar skipping of the loop
changes nothing with time stops, and the batch sweep path equals the general path with
the time stop in the swept space.

Conventions as in ``tests/test_engine_fills.py``: F = 1 - 2.220446049250313e-16,
all-in size = floor(equity * F / (price * (1 + commission))), bars are written
(open, high, low, close). Per bar the loop does: (1) a pending signal exit at the open,
then the time stop at the open; (2) stop, then target; (3) the pending entry; ...
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import engine_helpers as h
import metaflow_nb as mf
from metaflow_nb import api
from metaflow_nb.engine import codes
from metaflow_nb.errors import ConfigError
from metaflow_nb.workers.base import get_plugin, known_plugins, suggested_space

F = 1.0 - 2.220446049250313e-16
CASH = 10_000.0
FLAT = (100, 101, 99, 100)
# the compiled loop as it runs, the same with every bar on the full path (a drawdown
# monitor that never fires turns off the quiet-bar loop), and the public API
PATHS = ["kernel", "kernel_full", "api"]


def A(x):
    return pytest.approx(x, rel=1e-12, abs=1e-12)


def allin(equity, price, commission=0.0):
    return math.floor(equity * F / (price * (1.0 + commission)))


# ---------------------------------------------------------------- one scenario, two paths


def time_exits(bars: Sequence[int]) -> list[dict[str, Any]]:
    return [{"instance_id": f"time_{j + 1}", "plugin": "time_stop_exit", "params": {"bars": int(b)}}
            for j, b in enumerate(bars)]


def with_time_stops(bp: dict, bars: Sequence[int], first: bool = False) -> dict:
    """``bp`` with one ``time_stop_exit`` per entry of ``bars`` in its exit planning."""
    exits = bp["workforce"]["planning_workers"]["exit_planning"]
    exits[:] = (time_exits(bars) + exits) if first else (exits + time_exits(bars))
    return bp


def run_api(df, *, time_stops=(), cash=CASH, commission=0.0, slippage=0.0, finalize=False, leverage=1.0,
            **bp):
    """:func:`engine_helpers.run` with ``time_stop_exit`` planners after the other exits."""
    return api.backtest(with_time_stops(h.blueprint(**bp), time_stops),
                        h.operation(cash, commission, slippage, finalize, leverage), data=df)


def outcome(df, path: str, *, longs=(), shorts=(), zones=(), stop_pct=None, target_pct=None, reverse=None,
            direction="long_short", time_stops=(), commission=0.0, slippage=0.0, finalize=False):
    """One scripted scenario through the kernel (``kernel_full``: with a drawdown monitor
    that never fires, so no bar takes the quiet-bar loop) or the API, as plain values:
    ``trades`` (namespaces with entry/exit bar and price, size, pnl, commission, reason),
    ``closed`` ((bar, reason) of the journal's TRADE_CLOSED events), ``equity``,
    ``position`` and the API's ``journal`` frame (None on the kernel path).

    Stops and targets are percent_stops from the fill; a zone makes the setup a limit
    order at the zone's near edge, cancelled beyond the far edge (``test_limit_entry``).
    """
    if path == "api":
        kw: dict[str, Any] = {}
        if stop_pct is not None or target_pct is not None:
            kw["stops"] = {"stop_loss_pct": stop_pct, "take_profit_pct": target_pct, "reference": "fill"}
        if zones:
            kw["entry"] = {"plugin": "test_limit_entry", "params": {"expiry_bars": 0}}
        res = run_api(df, longs=longs, shorts=shorts, zones=zones, reverse=reverse, direction=direction,
                      time_stops=time_stops, commission=commission, slippage=slippage, finalize=finalize, **kw)
        trades = [SimpleNamespace(entry_bar=r.entry_bar, exit_bar=r.exit_bar, entry_price=r.entry_price,
                                  exit_price=r.exit_price, size=r.size, pnl=r.pnl, commission=r.commission,
                                  reason=r.exit_reason, direction=1 if r.direction == "long" else -1)
                  for r in res.trades.itertuples()]
        j = res.journal[res.journal["event"] == "TRADE_CLOSED"]
        return SimpleNamespace(trades=trades, closed=list(zip(j["bar"].tolist(), j["reason"].tolist())),
                               equity=res.equity.to_numpy(), position=res.position.to_numpy(), journal=res.journal)
    setups = sorted([(b, 1) for b in longs] + [(b, -1) for b in shorts])
    zone = {b: (top, bottom) for b, top, bottom in zones}
    limit = [(zone[b][0] if d > 0 else zone[b][1]) if b in zone else np.nan for b, d in setups]
    cancel = [(zone[b][1] if d > 0 else zone[b][0]) if b in zone else np.nan for b, d in setups]
    m = len(setups)
    full = {} if path == "kernel" else {"threat_mask": np.zeros((1, len(df)), np.int8), "dd_limit": [np.inf],
                                        "dd_cooldown": [0]}
    out = h.kernel(
        df, [b for b, _ in setups], [d for _, d in setups], limit=limit, cancel=cancel,
        stop=None if stop_pct is None else [stop_pct / 100.0] * m,
        target=None if target_pct is None else [target_pct / 100.0] * m,
        stop_mode=codes.PRICE_NONE if stop_pct is None else codes.PRICE_FRACTION,
        target_mode=codes.PRICE_NONE if target_pct is None else codes.PRICE_FRACTION,
        reverse={None: 0, False: 1, True: 2}[reverse],
        allow_long=direction != "short_only", allow_short=direction != "long_only",
        time_stop_bars=min(time_stops, default=0), commission=commission, slippage=slippage, finalize=finalize,
        **full)
    name = codes.REASON_NAMES
    trades = [SimpleNamespace(entry_bar=int(t["entry_bar"]), exit_bar=int(t["exit_bar"]),
                              entry_price=float(t["entry_price"]), exit_price=float(t["exit_price"]),
                              size=float(t["size"]), pnl=float(t["pnl"]), commission=float(t["commission"]),
                              reason=name[int(t["exit_reason"])], direction=int(t["direction"]))
              for t in out["trades"]]
    j = h.journal_rows(out["journal"], codes.EV_TRADE_CLOSED)
    return SimpleNamespace(trades=trades, closed=[(int(e["bar"]), name[int(e["reason"])]) for e in j],
                           equity=out["equity"], position=out["position"], journal=None)


def check(t, *, entry_bar, exit_bar, entry_price, exit_price, size, pnl, reason, direction=1):
    got = (t.entry_bar, t.exit_bar, t.size, t.reason, t.direction)
    assert got == (entry_bar, exit_bar, size, reason, direction), t
    assert t.entry_price == A(entry_price), t
    assert t.exit_price == A(exit_price), t
    assert t.pnl == A(pnl), t


# ---------------------------------------------------------------- the planner


def test_planner_is_registered_with_a_suggested_range_and_no_levels():
    assert "time_stop_exit" in known_plugins("exit")
    cls = get_plugin("time_stop_exit")
    assert not cls.provides_stop and not cls.provides_target
    assert suggested_space("time_stop_exit") == {"bars": {"start": 5, "end": 50, "step": 5}}
    assert cls.Params.model_json_schema()["properties"]["bars"]["description"]
    plan = cls("time_1", cls.Params(bars=7)).plan(None, None, None)
    assert (plan.time_stop_bars, plan.stop_mode, plan.target_mode, plan.reverse, plan.exclusive) == \
        (7, codes.PRICE_NONE, codes.PRICE_NONE, False, False)


@pytest.mark.parametrize("bars", [0, -3])
def test_planner_refuses_fewer_than_one_bar(bars):
    df = h.flat_bars([100] * 5)
    with pytest.raises(ConfigError, match="bars"):
        mf.build_specs(with_time_stops(h.blueprint(longs=[1]), [bars]), h.operation(), data=df)


# ---------------------------------------------------------------- exit at the open of bar entry + N

SLIP_COMM = h.make_ohlc([
    FLAT,                    # 0
    FLAT,                    # 1  long (or short) signal
    (100, 102, 99, 101),     # 2  fill at the open
    (102, 104, 101, 103),    # 3
    (104, 106, 103, 105),    # 4
    (106, 108, 105, 107),    # 5  = 2 + 3: the time stop's open
    (107, 109, 106, 108),    # 6
    (108, 110, 107, 109),    # 7
])


@pytest.mark.parametrize("path", PATHS)
def test_long_exits_at_the_open_n_bars_after_the_entry_with_slippage_and_commission(path):
    r = outcome(SLIP_COMM, path, longs=[1], time_stops=[3], commission=0.001, slippage=0.01)
    # entry: open[2] * 1.01 = 101; size = floor(10000F / (101 * 1.001)) = floor(98.911) = 98
    assert allin(CASH, 101, 0.001) == 98
    # exit: 3 bars after the entry bar 2, at open[5] * (1 - 0.01) = 104.94
    # commissions: 98 * 101 * 0.001 = 9.898 and 98 * 104.94 * 0.001 = 10.28412
    # pnl = 98 * (104.94 - 101) - 9.898 - 10.28412 = 386.12 - 20.18212 = 365.93788
    assert len(r.trades) == 1
    check(r.trades[0], entry_bar=2, exit_bar=5, entry_price=101.0, exit_price=106 * 0.99, size=98,
          pnl=98 * (106 * 0.99 - 101) - 9.898 - 98 * 106 * 0.99 * 0.001, reason="TIME_STOP")
    assert r.trades[0].commission == A(9.898 + 10.28412)
    assert r.closed == [(5, "TIME_STOP")]
    # equity: cash 10000 - 9.898 = 9990.102 from the fill on, plus 98 * (close - 101);
    # flat from bar 5 on at 10000 + 365.93788
    assert list(r.equity) == [A(CASH), A(CASH), A(9990.102), A(9990.102 + 98 * 2), A(9990.102 + 98 * 4),
                              A(10365.93788), A(10365.93788), A(10365.93788)]
    assert list(r.position) == [0, 0, 98, 98, 98, 0, 0, 0]


@pytest.mark.parametrize("path", PATHS)
def test_without_the_planner_the_same_trade_stays_open(path):
    r = outcome(SLIP_COMM, path, longs=[1], commission=0.001, slippage=0.01)
    assert r.trades == [] and r.closed == []
    assert list(r.position) == [0, 0, 98, 98, 98, 98, 98, 98]


@pytest.mark.parametrize("path", PATHS)
def test_short_exits_at_the_open_plus_slippage(path):
    df = h.make_ohlc([
        FLAT,                    # 0
        FLAT,                    # 1  short signal
        (100, 101, 98, 99),      # 2  fill at 100 * 0.99 = 99
        (99, 100, 97, 98),       # 3
        (97, 98, 95, 96),        # 4  = 2 + 2: exit at 97 * 1.01 = 97.97
        (96, 97, 94, 95),        # 5
    ])
    r = outcome(df, path, shorts=[1], time_stops=[2], commission=0.001, slippage=0.01)
    # size = floor(10000F / (99 * 1.001)) = floor(100.909) = 100
    assert allin(CASH, 99, 0.001) == 100
    # pnl = -100 * (97.97 - 99) - 100 * 99 * 0.001 - 100 * 97.97 * 0.001 = 103 - 9.9 - 9.797 = 83.303
    check(r.trades[0], entry_bar=2, exit_bar=4, entry_price=99.0, exit_price=97 * 1.01, size=100,
          pnl=-100 * (97 * 1.01 - 99) - 9.9 - 100 * 97 * 1.01 * 0.001, reason="TIME_STOP", direction=-1)
    assert r.trades[0].pnl == A(83.303)
    assert r.closed == [(4, "TIME_STOP")]
    assert list(r.position) == [0, 0, -100, -100, 0, 0]


# ---------------------------------------------------------------- against stops and targets

# long at the open of bar 2 (100), 99 units; 5 % stop = 95 and 10 % target = 110 from the
# fill; a 4-bar time stop would close at the open of bar 6
BEFORE = {
    "stop": ((100, 101, 94, 96), 4, 95.0, "STOP_LOSS"),      # bar 4 trades through 95
    "target": ((104, 111, 103, 108), 3, 110.0, "TAKE_PROFIT"),  # bar 3 trades through 110
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", sorted(BEFORE))
def test_a_stop_or_target_touched_before_entry_plus_n_wins(path, case):
    touch, bar, px, reason = BEFORE[case]
    rows = [FLAT, FLAT, (100, 102, 99, 101), (101, 103, 100, 102), (101, 103, 100, 102), FLAT, FLAT, FLAT]
    rows[bar] = touch
    r = outcome(h.make_ohlc(rows), path, longs=[1], stop_pct=5.0, target_pct=10.0, time_stops=[4])
    # stop: 99 * (95 - 100) = -495; target: 99 * (110 - 100) = 990
    check(r.trades[0], entry_bar=2, exit_bar=bar, entry_price=100.0, exit_price=px, size=99,
          pnl=99 * (px - 100), reason=reason)
    assert len(r.trades) == 1 and r.closed == [(bar, reason)]


# bar 5 = entry bar 2 + 3 touches the stop (95) or the target (110): the time stop is step 1
# of the bar, so it fills at the open before step 2 looks at the stop and the target
ON_THE_BAR = {
    # open above the stop, low through it: the open 97, not the stop 95
    "stop_inside_the_bar": ((97, 98, 90, 92), 97.0),
    # gap through the stop: the same price a stop would give (min(93, 95)), but TIME_STOP
    "gap_through_the_stop": ((93, 94, 90, 91), 93.0),
    # high through the target: the open 105, not the target 110
    "target_inside_the_bar": ((105, 112, 104, 111), 105.0),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", sorted(ON_THE_BAR))
def test_on_bar_entry_plus_n_the_time_stop_fills_at_the_open_before_stop_and_target(path, case):
    bar5, px = ON_THE_BAR[case]
    df = h.make_ohlc([FLAT, FLAT, (100, 102, 99, 101), (101, 103, 100, 102), (102, 104, 101, 103), bar5, FLAT])
    r = outcome(df, path, longs=[1], stop_pct=5.0, target_pct=10.0, time_stops=[3])
    # pnl = 99 * (open[5] - 100): -297, -693, 495
    check(r.trades[0], entry_bar=2, exit_bar=5, entry_price=100.0, exit_price=px, size=99,
          pnl=99 * (px - 100), reason="TIME_STOP")
    assert len(r.trades) == 1 and r.closed == [(5, "TIME_STOP")]


# ---------------------------------------------------------------- limit entries

LIMIT = h.make_ohlc([
    FLAT,                    # 0
    FLAT,                    # 1  long setup, zone [95, 98]: limit 98, cancelled by a close < 95
    FLAT,                    # 2  low 99 > 98: not filled (the order's first bar)
    (100, 101, 97, 99),      # 3  low 97 <= 98: fills at min(100, 98) = 98 inside the bar
    (99, 101, 98, 100),      # 4  = 3 + 1
    (101, 103, 100, 102),    # 5  = 3 + 2
    FLAT,                    # 6
    FLAT,                    # 7
])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n, exit_bar", [(1, 4), (2, 5)])
def test_a_limit_entry_counts_from_its_fill_bar(path, n, exit_bar):
    r = outcome(LIMIT, path, longs=[1], zones=[(1, 98.0, 95.0)], time_stops=[n])
    # size = floor(10000F / 98) = floor(102.04) = 102; counted from the setup (bar 1) or the
    # order's first bar (2) the exit would come 2 or 1 bars earlier
    px = float(LIMIT["open"].iloc[exit_bar])  # 99 or 101
    check(r.trades[0], entry_bar=3, exit_bar=exit_bar, entry_price=98.0, exit_price=px, size=102,
          pnl=102 * (px - 98), reason="TIME_STOP")
    assert r.closed == [(exit_bar, "TIME_STOP")]


# ---------------------------------------------------------------- signal exits

REVERSAL = h.make_ohlc([
    FLAT,                    # 0
    FLAT,                    # 1  long signal
    (100, 102, 99, 101),     # 2  long fills at 100 (99 units); 3-bar time stop due at bar 5
    (101, 103, 100, 102),    # 3
    (102, 104, 101, 103),    # 4  opposite (or, exclusive, same-side) setup: exit pending
    (103, 104, 101, 102),    # 5  the signal exit at 103 comes first; the new trade opens at 103
    (102, 103, 100, 101),    # 6
    (101, 102, 99, 100),     # 7
    (100, 101, 98, 99),      # 8  = 5 + 3: the new trade's time stop, at 100
    (99, 100, 97, 98),       # 9
])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("exclusive", [False, True])
def test_a_pending_signal_exit_on_the_same_bar_takes_precedence(path, exclusive):
    kw = {"longs": [1, 4]} if exclusive else {"longs": [1], "shorts": [4]}
    r = outcome(REVERSAL, path, reverse=exclusive, time_stops=[3], **kw)
    # first trade: 99 * (103 - 100) = 297 -> cash 10297; the next one sizes
    # floor(10297F / 103) = floor(99.97) = 99 and lives from bar 5 to the open of bar 8
    assert allin(10297.0, 103) == 99
    check(r.trades[0], entry_bar=2, exit_bar=5, entry_price=100.0, exit_price=103.0, size=99, pnl=297.0,
          reason="SIGNAL")
    d = 1 if exclusive else -1
    check(r.trades[1], entry_bar=5, exit_bar=8, entry_price=103.0, exit_price=100.0, size=99,
          pnl=d * 99 * (100 - 103), reason="TIME_STOP", direction=d)
    assert r.closed == [(5, "SIGNAL"), (8, "TIME_STOP")]
    assert len(r.trades) == 2
    assert r.equity[-1] == A(10297.0 + d * 99 * (100 - 103))  # 10000 (exclusive long) or 10594 (short)


# ---------------------------------------------------------------- the end of the data

END = h.make_ohlc([
    FLAT,                    # 0
    FLAT,                    # 1  long signal
    (100, 102, 99, 101),     # 2  fill at 100, 99 units
    (101, 103, 100, 102),    # 3
    (102, 104, 101, 103),    # 4
    (104, 105, 103, 104),    # 5  the last bar: open 104
])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n, finalize, reason", [
    (3, True, "TIME_STOP"),     # due on the last bar: the time stop closes it, not finalize
    (3, False, "TIME_STOP"),
    (4, True, "END_OF_DATA"),   # due after the data: finalize closes it at the same open
])
def test_the_last_bar(path, n, finalize, reason):
    r = outcome(END, path, longs=[1], time_stops=[n], finalize=finalize)
    check(r.trades[0], entry_bar=2, exit_bar=5, entry_price=100.0, exit_price=104.0, size=99,
          pnl=99 * 4, reason=reason)
    assert r.closed == [(5, reason)]
    assert r.position[-1] == 0 and r.equity[-1] == A(CASH + 396)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n", [4, 100])
def test_a_time_stop_beyond_the_data_never_fires(path, n):
    r = outcome(END, path, longs=[1], time_stops=[n])
    plain = outcome(END, path, longs=[1])
    assert r.trades == [] and r.closed == []
    # marked at the last close: 10000 + 99 * (104 - 100)
    assert list(r.position) == [0, 0, 99, 99, 99, 99]
    assert r.equity[-1] == A(10396.0)
    assert np.array_equal(r.equity, plain.equity) and np.array_equal(r.position, plain.position)


# ---------------------------------------------------------------- re-entry

REENTRY = h.make_ohlc([
    FLAT,                    # 0
    FLAT,                    # 1  long signal
    (100, 102, 99, 101),     # 2  fill at 100, 99 units
    (101, 103, 100, 102),    # 3  long signal: IN_POSITION (the exit is only due at bar 4)
    (102, 104, 101, 103),    # 4  = 2 + 2: exit at 102; long signal: flat now, an order
    (104, 106, 103, 105),    # 5  fill at 104
    (105, 107, 104, 106),    # 6
    (106, 108, 105, 107),    # 7  = 5 + 2: exit at 106
    FLAT,                    # 8
    FLAT,                    # 9
])


@pytest.mark.parametrize("path", PATHS)
def test_re_entry_after_a_time_exit(path):
    r = outcome(REENTRY, path, longs=[1, 3, 4], time_stops=[2])
    # 99 * (102 - 100) = 198 -> cash 10198; floor(10198F / 104) = floor(98.06) = 98
    assert allin(10198.0, 104) == 98
    check(r.trades[0], entry_bar=2, exit_bar=4, entry_price=100.0, exit_price=102.0, size=99, pnl=198.0,
          reason="TIME_STOP")
    check(r.trades[1], entry_bar=5, exit_bar=7, entry_price=104.0, exit_price=106.0, size=98, pnl=196.0,
          reason="TIME_STOP")
    assert r.closed == [(4, "TIME_STOP"), (7, "TIME_STOP")]
    assert list(r.position) == [0, 0, 99, 99, 0, 98, 98, 0, 0, 0]
    assert r.equity[-1] == A(10394.0)
    if r.journal is not None:
        j = r.journal
        assert j.loc[j["bar"] == 3, "event"].tolist() == ["OPPORTUNITY_DETECTED", "OPPORTUNITY_SKIPPED"]
        assert j.loc[j["bar"] == 3, "reason"].tolist()[-1] == "IN_POSITION"
        assert j.loc[j["bar"] == 4, "event"].tolist() == ["TRADE_CLOSED", "OPPORTUNITY_DETECTED", "ORDER_PLACED"]


# ---------------------------------------------------------------- quiet stretches


def rising(n: int = 30):
    """Flat at 100 up to bar 1, then open[i] = 100 + (i - 2), high/low +-1, close open + 0.5."""
    rows = [FLAT, FLAT] + [(p, p + 1, p - 1, p + 0.5) for p in (100.0 + k for k in range(n - 2))]
    return h.make_ohlc(rows)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("levels", [False, True])
@pytest.mark.parametrize("more", [(), (5,), (20,), (5, 20)])
def test_a_time_stop_through_a_quiet_stretch_lands_on_its_bar(path, levels, more):
    """Between setups the loop marks equity in a tight loop (step 6) that stops early at
    the bar the time stop is due. Long at 100 (bar 2), 7 bars: exit at open[9] = 107,
    whether the stretch runs to the last bar, to a setup at bar 20 or is cut by a setup
    at bar 5 (skipped IN_POSITION); with or without far stop/target levels to watch."""
    df = rising(30)
    lv = {"stop_pct": 50.0, "target_pct": 100.0} if levels else {}
    r = outcome(df, path, longs=[1, *more], time_stops=[7], **lv)
    check(r.trades[0], entry_bar=2, exit_bar=9, entry_price=100.0, exit_price=107.0, size=99, pnl=99 * 7,
          reason="TIME_STOP")
    pos = np.zeros(30)
    pos[2:9] = 99
    eq = np.full(30, CASH + 693)
    eq[:2] = CASH
    eq[2:9] = [CASH + 99 * (k + 0.5) for k in range(7)]   # close[i] - 100 = (i - 2) + 0.5
    if 20 in more:
        # the setup at bar 20 fills at open[21] = 119 with floor(10693F / 119) = 89 units,
        # 7 bars: out at open[28] = 126
        assert allin(10693.0, 119) == 89
        check(r.trades[1], entry_bar=21, exit_bar=28, entry_price=119.0, exit_price=126.0, size=89,
              pnl=89 * 7, reason="TIME_STOP")
        pos[21:28] = 89
        eq[21:28] = [CASH + 693 + 89 * (k + 0.5) for k in range(7)]
        eq[28:] = CASH + 693 + 623
    assert len(r.trades) == (2 if 20 in more else 1)
    assert list(r.position) == pos.tolist()
    assert r.equity.tolist() == [A(x) for x in eq]


# ---------------------------------------------------------------- two time stops


@pytest.mark.parametrize("order", [(5, 3), (3, 5)])
@pytest.mark.parametrize("first", [False, True])
def test_the_shortest_of_two_time_stops_wins(order, first):
    """Two time_stop_exit planners beside percent_stops (in either place of the exit
    list): the shorter one applies, and the stop planner still gives the stop."""
    bp = with_time_stops(h.blueprint(longs=[1], stops={"stop_loss_pct": 5.0, "reference": "fill"}),
                         order, first=first)
    res = api.backtest(bp, h.operation(), data=SLIP_COMM)
    t = res.trades.iloc[0]
    # fill at 100 (bar 2), stop 95 never touched; 3 bars: out at open[5] = 106
    assert (t.entry_bar, t.exit_bar, t.exit_price, t.exit_reason) == (2, 5, 106.0, "TIME_STOP")
    assert t.stop_price == A(95.0)
    single = run_api(SLIP_COMM, longs=[1], stops={"stop_loss_pct": 5.0, "reference": "fill"}, time_stops=[3])
    assert res.trades.equals(single.trades)
    assert res.equity.equals(single.equity)


# ---------------------------------------------------------------- properties

import test_engine_invariants as inv  # noqa: E402  (its scenarios and settings, reused)

TIME_STOPS = st.lists(st.integers(1, 8), min_size=1, max_size=2)


def _scenario_specs(df, kw, time_stops, finalize):
    bp = h.blueprint(**{k: v for k, v in kw.items() if k not in ("commission", "leverage")})
    return mf.build_specs(with_time_stops(bp, time_stops),
                          h.operation(commission=kw["commission"], finalize=finalize, leverage=kw["leverage"]),
                          data=df)


@inv.SETTINGS
@given(inv.scenarios(), TIME_STOPS, st.booleans(), st.data())
def test_prefix_replay_with_time_stops(scenario, time_stops, finalize, data):
    """Cutting the data after bar t - 1 changes nothing settled before it: equity,
    positions, trades closed before t - 1 (time stops among them) and journal events."""
    df, kw = scenario
    n = len(df)
    t = data.draw(st.integers(2, n), label="t")
    full = run_api(df, finalize=finalize, time_stops=time_stops, **kw)
    part = run_api(df.iloc[:t].copy(), finalize=finalize, time_stops=time_stops, **kw)
    event(f"time stops closed {int((full.trades['exit_reason'] == 'TIME_STOP').sum() > 0)}")
    h.assert_prefix_settled(part, full, t)
    # every time exit lands exactly N bars after its entry, unless something came first
    ts = full.trades[full.trades["exit_reason"] == "TIME_STOP"]
    assert ((ts["exit_bar"] - ts["entry_bar"]) == min(time_stops)).all(), ts
    assert ((full.trades["exit_bar"] - full.trades["entry_bar"]) <= min(time_stops)).all()


@inv.SETTINGS
@given(inv.scenarios(), TIME_STOPS, st.booleans())
def test_skipping_quiet_bars_with_time_stops_changes_nothing(scenario, time_stops, finalize):
    """The quiet-bar loop (step 6) must stop at the bar a time stop is due: a run with a
    drawdown monitor that never fires (every bar on the full path) is the same bit for bit."""
    from metaflow_nb.assembly.run import prepare
    from metaflow_nb.engine.nb import simulate as nbsim

    df, kw = scenario
    args = list(prepare(_scenario_specs(df, kw, time_stops, finalize), df).records)
    assert args[3].time_stop_bars == min(time_stops)
    h.assert_same_run(nbsim.simulate(*args), nbsim.simulate(*h.on_full_path(args)))


# ---------------------------------------------------------------- batch == general path

import test_batch_path as bpath  # noqa: E402  (its bars, blueprint, spaces and comparison)


def sweep_base(direction: str, exclusive: bool, commission: float, second=None):
    """The batch-path test's SMA blueprint with ``time_1`` (swept) and, optionally, a
    fixed second time stop ``time_2``."""
    bp = with_time_stops(bpath.sma_blueprint(direction, exclusive), [20] + ([second] if second else []))
    return mf.build_specs(bp, bpath.operation(commission), data=bpath.BARS)


@st.composite
def time_spaces(draw):
    """The batch-path test's random spaces, with ``time_1.bars`` always swept."""
    columns, combos = draw(bpath.spaces())
    for combo in combos:
        combo.setdefault("time_1", {})["bars"] = draw(st.integers(1, 120))
    return columns + ["time_1.bars"], combos


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(space=time_spaces(), direction=st.sampled_from(["long_short", "long_only", "short_only"]),
       commission=st.sampled_from([0.0, 0.0005, 0.002]), exclusive=st.booleans(),
       second=st.one_of(st.none(), st.integers(1, 120)))
def test_batch_and_general_paths_agree_with_time_stops(space, direction, commission, exclusive, second):
    columns, combos = space
    batch, general = bpath.both_paths(sweep_base(direction, exclusive, commission, second), columns, combos)
    bpath.assert_bit_for_bit(batch, general)
    assert batch.successful_runs >= 1


def test_fixed_time_stop_sweep_changes_the_runs_and_both_paths_agree():
    """A hand-picked space where the time stop really cuts trades (so the property's space
    is not vacuous): per fast period, time stops of 2, 10, 40 bars and one longer than any
    trade; all distinct runs, and the same on both paths."""
    base = sweep_base("long_short", True, 0.001)
    combos = [{"sma_1": {"fast": f, "slow": 40}, "time_1": {"bars": b}} for f in (5, 10) for b in (2, 10, 40, 9999)]
    columns = ["sma_1.fast", "sma_1.slow", "time_1.bars"]
    batch, general = bpath.both_paths(base, columns, combos)
    bpath.assert_bit_for_bit(batch, general)
    assert batch.successful_runs == len(combos)
    assert len(set(batch.all_results["final_equity"].tolist())) == len(combos)
    one = mf.backtest(base.with_params("time_1", {"bars": 10}), data=bpath.BARS)
    reasons = one.trades["exit_reason"].value_counts()
    assert reasons.get("TIME_STOP", 0) > 10 and reasons.get("SIGNAL", 0) > 10, reasons
