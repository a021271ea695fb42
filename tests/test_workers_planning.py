"""ICT planning workers: limit_entry_at_fvg, liquidity_target_exit, atr_based_stops,
fixed_rr_exit and fixed_risk_sizer; the shipped ICT strategy and its variants.

Most tests run one hand-made EURUSD-like sequence of 15-minute bars (``SCENARIO``)
through ``metaflow_nb.api.backtest`` with the real ``fvg_detector``, ``swing_points`` and
``liquidity_levels`` workers. What the context sees, bar by bar (prices x 1e-4 = pips):

* bar 2 is a swing high at 1.1100 (bars 0-1 and 3-4 are lower), confirmed on bar 4: from
  bar 4 on it is unswept buy-side liquidity above price until bar 11 trades through it;
* bar 6 is a swing low at 1.0990, confirmed on bar 8 (``last_swing_low[8] = 1.0990``);
* bar 8 completes a bullish fair value gap: ``high[6] = 1.1010 < low[8] = 1.1030``, a
  20-pip zone [1.1010, 1.1030], midpoint 1.1020. (Smaller gaps in the sequence are
  filtered out by ``min_gap_size = 0.0018``, in price units.)

The long setup is stamped on bar 8; its limit order is live from bar 9.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaflow_nb import api
from metaflow_nb.data import load_data
from metaflow_nb.engine import codes
from metaflow_nb.engine.nb import simulate as nbsim
from metaflow_nb.assembly.group import merge_signals
from metaflow_nb.assembly.run import prepare
from metaflow_nb.errors import ConfigError
from metaflow_nb.services.operation import OperationService
from metaflow_nb.workers.base import (
    EntryPlan, FeatureContext, Opportunities, get_plugin, suggested_space,
)

FULL_EQUITY = 1.0 - 2.220446049250313e-16
PIP = 0.0001

SCENARIO = [
    # open    high    low     close
    (1.1050, 1.1060, 1.1040, 1.1055),  # 0
    (1.1055, 1.1080, 1.1050, 1.1075),  # 1
    (1.1075, 1.1100, 1.1065, 1.1070),  # 2  swing high 1.1100
    (1.1070, 1.1075, 1.1040, 1.1045),  # 3
    (1.1045, 1.1050, 1.1020, 1.1025),  # 4  swing high confirmed -> buy-side liquidity 1.1100
    (1.1025, 1.1030, 1.1000, 1.1005),  # 5
    (1.1005, 1.1010, 1.0990, 1.1000),  # 6  swing low 1.0990; high 1.1010 = the gap's bottom
    (1.1000, 1.1045, 1.0995, 1.1040),  # 7  displacement candle
    (1.1040, 1.1060, 1.1030, 1.1055),  # 8  low 1.1030 = the gap's top: bullish FVG, setup
    (1.1055, 1.1058, 1.1015, 1.1030),  # 9  retrace: low 1.1015 <= 1.1020 fills the limit
    (1.1030, 1.1070, 1.1025, 1.1065),  # 10
    (1.1065, 1.1105, 1.1060, 1.1095),  # 11 high 1.1105 takes the 1.1100 liquidity
    (1.1095, 1.1100, 1.1080, 1.1090),  # 12
]


def frame(rows):
    idx = pd.date_range("2024-01-02", periods=len(rows), freq="15min", name="time")
    df = pd.DataFrame([list(map(float, r)) for r in rows], columns=["open", "high", "low", "close"], index=idx)
    df["volume"] = 100.0
    return df


def with_rows(**replace):
    """SCENARIO with some rows replaced (``b9=(o, h, l, c)``) and/or cut (``upto=n``)."""
    rows = list(SCENARIO)
    upto = replace.pop("upto", len(rows))
    for key, row in replace.items():
        rows[int(key[1:])] = row
    return frame(rows[:upto])


OPERATION = {"name": "t", "instrument": {"symbol": "EURUSD", "pip_size": PIP}, "cash": 10_000,
             "commission": 0.0, "slippage": 0.0, "leverage": 30}


def ict(entry=None, exit=None, size=None, threats=(), fvg=None):
    """A blueprint: fvg_detector -> limit_entry_at_fvg -> exit -> fixed_risk_sizer."""
    exit = dict(exit or {"plugin": "liquidity_target_exit"})
    exit["params"] = {**HAND_DEFAULTS.get(exit["plugin"], {}), **exit.get("params", {})}
    exits = [{"instance_id": "exit_1", **exit}]
    return {
        "name": "ict_test",
        "workforce": {
            "context_workers": [{"instance_id": "sw_1", "plugin": "swing_points", "params": {"left": 2, "right": 2}},
                                {"instance_id": "liq_1", "plugin": "liquidity_levels",
                                 "params": {"left": 2, "right": 2}}],
            "opportunity_workers": [{"instance_id": "fvg_det_1", "plugin": "fvg_detector",
                                     "params": fvg or {"min_gap_size": 0.0018, "gap_unit": "price"}}],
            "threat_workers": list(threats),
            "planning_workers": {
                "entry_planning": [{"instance_id": "entry_1", "plugin": "limit_entry_at_fvg",
                                    "params": entry or {}}],
                "exit_planning": exits,
                "size_planning": [{"instance_id": "size_1", "plugin": "fixed_risk_sizer",
                                   "params": size or {"risk_pct": 1.0}}],
            },
        },
    }


def run(df=None, operation=None, **kw):
    return api.backtest(ict(**kw), operation or OPERATION, data=frame(SCENARIO) if df is None else df)


def events(res, kind):
    j = res.journal
    return j[j.event == kind].reset_index(drop=True)


def check_journal_links(res):
    """Every TRADE_OPENED links to a detected opportunity and to its trade; every rejection
    names a threat of the workforce and a reason."""
    j = res.journal
    detected = set(j.loc[j.event == "OPPORTUNITY_DETECTED", "opportunity_id"])
    opened = j[j.event == "TRADE_OPENED"]
    assert (opened.opportunity_id >= 0).all() and opened.opportunity_id.isin(detected).all()
    by_trade = opened.set_index("trade_id").opportunity_id
    assert list(by_trade.loc[res.trades.trade_id]) == list(res.trades.opportunity_id)
    rej = j[j.event == "OPPORTUNITY_REJECTED"]
    threat_ids = {w["instance_id"] for w in res.specs.workers() if w["section"] == "threat_workers"}
    assert rej.opportunity_id.isin(detected).all()
    assert rej.threat_id.isin(threat_ids).all() and (rej.reason != "").all()


def opps_of(*setups):
    """Hand-made Opportunities from (bar, direction, top, bottom, signal_close) tuples."""
    a = np.array(setups, dtype=np.float64).reshape(-1, 5)
    return Opportunities(bar=a[:, 0].astype(np.int64), direction=a[:, 1].astype(np.int64),
                         worker=np.zeros(len(a), np.int64), top=a[:, 2], bottom=a[:, 3], signal_close=a[:, 4])


# the hand-computed scenarios below were worked out with zone stops and no ATR target;
# the plugin defaults are swing stops and a 2 R ATR target (see the defaults test)
HAND_DEFAULTS = {"liquidity_target_exit": {"stop_placement": "zone"}, "atr_based_stops": {"target_r": None}}


def planner(plugin, **params):
    params = {**HAND_DEFAULTS.get(plugin, {}), **params}
    cls = get_plugin(plugin)
    return cls(plugin + "_1", cls.Params.model_validate(params))


# ---------------------------------------------------------------- registry


def test_plugins_registered_with_roles_defaults_and_ranges():
    roles = {"limit_entry_at_fvg": "entry", "liquidity_target_exit": "exit", "atr_based_stops": "exit",
             "fixed_rr_exit": "exit", "fixed_risk_sizer": "size"}
    for name, role in roles.items():
        cls = get_plugin(name)
        assert cls.role == role and cls.__doc__ and len(cls.__doc__) > 200, name
    assert get_plugin("fixed_risk_sizer").needs_stop
    assert suggested_space("fixed_risk_sizer")["risk_pct"] == {"start": 0.25, "end": 2.0, "step": 0.25}
    assert suggested_space("atr_based_stops")["atr_multiplier"] == {"start": 1.0, "end": 4.0, "step": 0.5}
    assert suggested_space("limit_entry_at_fvg")["price"] == {"values": ["midpoint", "edge"]}
    e = get_plugin("limit_entry_at_fvg").Params()
    assert (e.price, e.expiry_bars, e.cancel_on_far_edge) == ("midpoint", 16, True)
    x = get_plugin("liquidity_target_exit").Params()
    assert (x.target_opposite_liquidity, x.stop_placement, x.stop_buffer_pips, x.fallback_rr) == (True, "swing", 2.0, 2.0)
    a = get_plugin("atr_based_stops").Params()
    assert (a.atr_multiplier, a.atr_period, a.target_r) == (2.0, 14, 2.0)
    assert get_plugin("fixed_rr_exit").Params().rr == 2.0
    s = get_plugin("fixed_risk_sizer").Params()
    assert (s.risk_pct, s.whole_units) == (1.0, False)
    # atr_based_stops only provides a target when target_r is set
    cls = get_plugin("atr_based_stops")
    assert not cls.gives_target(cls.Params(target_r=None)) and cls.gives_target(cls.Params())


def test_fixed_risk_sizer_needs_a_stop_provider():
    bp = ict()
    bp["workforce"]["planning_workers"]["exit_planning"] = []
    with pytest.raises(ConfigError, match="stop"):
        api.build_specs(bp, OPERATION, data=frame(SCENARIO))


# ---------------------------------------------------------------- planner arrays by hand


def test_limit_entry_levels_by_hand():
    opps = opps_of((8, +1, 1.1030, 1.1010, 1.1055),      # long, zone [1.1010, 1.1030]
                   (9, -1, 1.2020, 1.2000, 1.1990),      # short, zone [1.2000, 1.2020]
                   (10, +1, np.nan, np.nan, 1.1000))     # no zone
    ctx = FeatureContext(frame(SCENARIO), PIP)
    p = planner("limit_entry_at_fvg").plan(ctx, opps)
    np.testing.assert_allclose(p.limit, [1.1020, 1.2010, np.nan])   # midpoints; zoneless -> market
    np.testing.assert_allclose(p.cancel, [1.1010, 1.2020, np.nan])  # far edges
    assert p.expiry_bars == 16
    p = planner("limit_entry_at_fvg", price="edge", expiry_bars=3, cancel_on_far_edge=False).plan(ctx, opps)
    np.testing.assert_allclose(p.limit, [1.1030, 1.2000, np.nan])   # near edges: top long, bottom short
    assert np.isnan(p.cancel).all() and p.expiry_bars == 3


def test_liquidity_target_levels_by_hand():
    ctx = FeatureContext(frame(SCENARIO), PIP, context_params={"swing_points": {"left": 2, "right": 2},
                                                               "liquidity_levels": {"left": 2, "right": 2}})
    opps = opps_of((8, +1, 1.1030, 1.1010, 1.1055), (8, +1, 1.1030, 1.1010, 1.1055), (9, +1, np.nan, np.nan, 1.1030))
    # planned entries: the limit 1.1020; a limit 1.1110 ABOVE the 1.1100 liquidity; a market order (close 1.1030)
    entry = EntryPlan(limit=np.array([1.1020, 1.1110, np.nan]), cancel=np.full(3, np.nan))
    lv = planner("liquidity_target_exit").levels(ctx, opps, entry)
    np.testing.assert_allclose(lv["entry"], [1.1020, 1.1110, 1.1030])
    # zone stops 1.1010 - 2 pips; the zoneless setup falls back to the swing: 1.0990 - 2 pips
    np.testing.assert_allclose(lv["stop"], [1.1008, 1.1008, 1.0988])
    # 1: buy-side liquidity 1.1100 lies above the entry -> the target
    # 2: liquidity below the entry (wrong side) -> fallback 1.1110 + 2 x (1.1110 - 1.1008) = 1.1314
    # 3: liquidity 1.1100 above 1.1030 -> the target
    np.testing.assert_allclose(lv["target"], [1.1100, 1.1314, 1.1100])
    assert list(lv["liquidity_target"]) == [True, False, True]
    # the swing placement: 1.0988 for all; R = 0.0032 for the first -> liquidity is 2.5 R away
    lv = planner("liquidity_target_exit", stop_placement="swing", min_target_rr=3.0).levels(ctx, opps, entry)
    np.testing.assert_allclose(lv["stop"], [1.0988, 1.0988, 1.0988])
    # 2.5 R < min_target_rr 3 -> fallback 1.1020 + 2 x 0.0032 = 1.1084
    np.testing.assert_allclose(lv["target"][0], 1.1084)
    # no liquidity targets at all: every target is the fallback
    lv = planner("liquidity_target_exit", target_opposite_liquidity=False, fallback_rr=3).levels(ctx, opps, entry)
    np.testing.assert_allclose(lv["target"], [1.1020 + 3 * 0.0012, 1.1110 + 3 * 0.0102, 1.1030 + 3 * 0.0042])
    # a short with its stop above: zone stop = top + 2 pips; target = nearest sell-side 1.0990 below
    sh = opps_of((9, -1, 1.1040, 1.1035, 1.1030))
    lv = planner("liquidity_target_exit").levels(ctx, sh, EntryPlan(np.array([1.10375]), np.array([np.nan])))
    np.testing.assert_allclose([lv["stop"][0], lv["target"][0]], [1.1042, 1.0990])
    plan = planner("liquidity_target_exit").plan(ctx, opps, entry)
    assert plan.stop_mode == codes.PRICE_ABSOLUTE and plan.target_mode == codes.PRICE_ABSOLUTE


def test_fixed_rr_and_atr_arrays_by_hand():
    ctx = FeatureContext(frame(SCENARIO), PIP)
    opps = opps_of((8, +1, 1.1030, 1.1010, 1.1055), (9, -1, np.nan, np.nan, 1.1030))
    nan2 = np.full(2, np.nan)
    p = planner("fixed_rr_exit", rr=3, stop_buffer_pips=1, stop_pct=0.5).plan(ctx, opps, EntryPlan(nan2, nan2))
    assert p.stop_mode == codes.PRICE_ABSOLUTE and p.target_mode == codes.PRICE_R_MULTIPLE
    # zone: 1.1010 - 1 pip; zoneless short: close x (1 + 0.5 %)
    np.testing.assert_allclose(p.stop, [1.1009, 1.1030 * 1.005])
    np.testing.assert_allclose(p.target, [3.0, 3.0])
    # ATR(1) is the true range: bar 8 max(1.1060 - 1.1030, |1.1060 - 1.1040|, |1.1030 - 1.1040|) = 30 pips,
    # bar 9 max(43 pips, |1.1058 - 1.1055|, |1.1015 - 1.1055|) = 43 pips
    p = planner("atr_based_stops", atr_multiplier=2, atr_period=1, target_r=1.5).plan(ctx, opps, EntryPlan(nan2, nan2))
    assert p.stop_mode == codes.PRICE_DISTANCE and p.target_mode == codes.PRICE_R_MULTIPLE
    np.testing.assert_allclose(p.stop, [0.0060, 0.0086])
    np.testing.assert_allclose(p.target, [1.5, 1.5])
    p = planner("atr_based_stops").plan(ctx, opps, EntryPlan(nan2, nan2))
    assert p.target_mode == codes.PRICE_NONE and p.target is None
    assert np.isnan(p.stop).all()  # ATR(14) is still warming up on bars 8 and 9


# ---------------------------------------------------------------- backtests: entry


def test_limit_fills_at_the_zone_midpoint_and_targets_liquidity():
    res = run()
    j = res.journal
    assert list(events(res, "OPPORTUNITY_DETECTED").bar) == [8]
    assert list(events(res, "ORDER_PLACED").bar) == [8]
    t = res.trades.iloc[0]
    # bar 9 opens at 1.1055 above the limit and trades down to 1.1015: filled at 1.1020
    assert (t.entry_bar, t.entry_price) == (9, pytest.approx(1.1020))
    # stop beyond the far edge: 1.1010 - 2 pips; target: the buy-side liquidity at 1.1100
    assert t.stop_price == pytest.approx(1.1008) and t.target_price == pytest.approx(1.1100)
    # bar 11 trades up to 1.1105: take profit at 1.1100
    assert (t.exit_bar, t.exit_reason, t.exit_price) == (11, "TAKE_PROFIT", pytest.approx(1.1100))
    # fixed risk 1 % of 10 000 over a 12-pip stop: 100 / 0.0012 units (cap 10 000 x 30 / 1.102 = 272 232)
    assert t["size"] == pytest.approx(100 / 0.0012)
    assert t.pnl == pytest.approx(100 / 0.0012 * 0.0080)  # +80 pips = 6.67 R
    assert j.loc[j.event == "TRADE_OPENED", "opportunity_id"].tolist() == [0]
    check_journal_links(res)


def test_gap_through_the_limit_fills_at_the_open():
    # bar 9 opens at 1.1018, below the 1.1020 limit: a buy limit fills at the better open
    res = run(with_rows(b9=(1.1018, 1.1030, 1.1012, 1.1025)))
    t = res.trades.iloc[0]
    assert (t.entry_bar, t.entry_price) == (9, pytest.approx(1.1018))
    # risk uses the real fill: 100 / (1.1018 - 1.1008)
    assert t["size"] == pytest.approx(100 / 0.0010)


def test_edge_limit_fills_at_the_near_edge():
    res = run(entry={"price": "edge"})
    assert res.trades.entry_price.tolist() == [pytest.approx(1.1030)]


def test_unfilled_limit_expires():
    # after the setup price stays above the zone (lows 1.1040 > 1.1030): never filled
    calm = (1.1055, 1.1065, 1.1040, 1.1060)
    df = with_rows(b9=calm, b10=calm, b11=calm, b12=calm)
    res = run(df, entry={"expiry_bars": 3})
    # live on bars 9, 10, 11 (8 + 3); at the close of bar 11 it expires
    exp = events(res, "ORDER_EXPIRED")
    assert list(exp.bar) == [11] and list(exp.reason) == ["EXPIRED"] and list(exp.opportunity_id) == [0]
    assert len(res.trades) == 0 and events(res, "TRADE_OPENED").empty
    # expiry_bars = 0: good till cancelled, still pending at the end
    res = run(df, entry={"expiry_bars": 0})
    assert events(res, "ORDER_EXPIRED").empty and events(res, "TRADE_OPENED").empty


def test_close_beyond_the_far_edge():
    # Bar 9 closes at 1.1005, below the zone's far edge 1.1010 (the cancel level). On the
    # way down it traded through the 1.1020 limit (low 1.1000), and fills are checked
    # before the close-based cancel: the order fills at 1.1020 and the stop at 1.1008
    # (beyond the far edge) takes it out on the same bar. A limit inside the zone is
    # therefore never left unfilled by a bar closing beyond the far edge.
    df = with_rows(b9=(1.1055, 1.1058, 1.1000, 1.1005), upto=10)
    res = run(df)
    t = res.trades.iloc[0]
    assert (t.entry_bar, t.entry_price, t.exit_bar, t.exit_reason) == (9, pytest.approx(1.1020), 9, "STOP_LOSS")
    assert t.exit_price == pytest.approx(1.1008)
    assert t.pnl == pytest.approx(-100.0)  # exactly the 1 % risk
    assert events(res, "ORDER_CANCELLED").empty
    # The cancel level the planner hands to the loop is the far edge; with a limit the bar
    # did not reach (here deliberately moved below the zone, to 1.0995), the loop cancels
    # the order at the close of bar 9 as ZONE_INVALIDATED.
    specs = api.build_specs(ict(), OPERATION, data=df)
    inp = prepare(specs, df)
    assert inp.plan.entry.cancel.tolist() == [pytest.approx(1.1010)]
    args = list(inp.records)
    args[1] = args[1]._replace(limit=np.array([1.0995]))
    journal = nbsim.simulate(*args).journal
    cancelled = journal[journal["event"] == codes.EV_ORDER_CANCELLED]
    assert cancelled["bar"].tolist() == [9]
    assert cancelled["reason"].tolist() == [codes.REASON_ZONE_INVALIDATED]


def test_an_open_beyond_the_far_edge_cancels_the_limit():
    # hunt23 F1: with the limit inside the zone, a close beyond the far edge always comes
    # with a fill (above), so the cancel could never fire. Bar 9 opens at 1.1005, below the
    # far edge 1.1010: the gap is invalidated before the 1.1020 limit could fill at its
    # level, and the order is cancelled at that open (ORDER_CANCELLED, ZONE_INVALIDATED)
    df = with_rows(b9=(1.1005, 1.1009, 1.0995, 1.1000), upto=10)
    res = run(df)
    assert res.trades.empty and events(res, "TRADE_OPENED").empty
    cancelled = events(res, "ORDER_CANCELLED")
    assert cancelled[["bar", "reason"]].values.tolist() == [[9, "ZONE_INVALIDATED"]]
    # without the cancel it fills at that open (a gap through the limit), its stop 1.1008
    # above the fill: out at the open on the same bar, nothing won or lost but the costs
    res = run(df, entry={"cancel_on_far_edge": False})
    t = res.trades.iloc[0]
    assert (t.entry_bar, t.entry_price, t.exit_bar, t.exit_reason) == (9, pytest.approx(1.1005), 9, "STOP_LOSS")
    assert t.exit_price == pytest.approx(1.1005) and events(res, "ORDER_CANCELLED").empty
    # an open at the far edge itself is not beyond it: the limit fills at that open
    res = run(with_rows(b9=(1.1010, 1.1012, 1.0995, 1.1000), upto=10))
    assert events(res, "ORDER_CANCELLED").empty and res.trades["entry_price"].tolist() == [pytest.approx(1.1010)]


# ---------------------------------------------------------------- backtests: exits and size


def test_fallback_r_target_when_liquidity_targets_are_off():
    res = run(exit={"plugin": "liquidity_target_exit", "params": {"target_opposite_liquidity": False}})
    t = res.trades.iloc[0]
    # 2 R from the planned entry: 1.1020 + 2 x (1.1020 - 1.1008) = 1.1044, hit on bar 10 (high 1.1070)
    assert t.target_price == pytest.approx(1.1044)
    assert (t.exit_bar, t.exit_reason, t.exit_price) == (10, "TAKE_PROFIT", pytest.approx(1.1044))


def test_fallback_when_no_liquidity_is_left():
    # the setup bar 8 itself trades up to 1.1101 and sweeps the 1.1100 buy-side level:
    # no unswept liquidity above price at the signal -> fallback 2 R target
    res = run(with_rows(b8=(1.1040, 1.1101, 1.1030, 1.1055)))
    t = res.trades.iloc[0]
    assert t.target_price == pytest.approx(1.1044) and t.exit_reason == "TAKE_PROFIT"


def test_swing_stop_placement():
    res = run(exit={"plugin": "liquidity_target_exit", "params": {"stop_placement": "swing"}})
    t = res.trades.iloc[0]
    # beyond the swing low 1.0990 confirmed on bar 8: 1.0988; risk 100 over 32 pips
    assert t.stop_price == pytest.approx(1.0988) and t["size"] == pytest.approx(100 / 0.0032)
    assert t.target_price == pytest.approx(1.1100)


def test_atr_based_stops_in_a_backtest():
    res = run(exit={"plugin": "atr_based_stops", "params": {"atr_multiplier": 2.0, "atr_period": 1,
                                                              "target_r": 1.0}})
    t = res.trades.iloc[0]
    # ATR(1) on bar 8 = 30 pips -> stop 60 pips under the 1.1020 fill, target 1 R above:
    # 1.1080, reached on bar 11 (high 1.1105; bar 10 only reached 1.1070)
    assert t.stop_price == pytest.approx(1.0960) and t.target_price == pytest.approx(1.1080)
    assert (t.exit_bar, t.exit_reason, t.exit_price) == (11, "TAKE_PROFIT", pytest.approx(1.1080))
    assert t["size"] == pytest.approx(100 / 0.0060)


def test_fixed_rr_exit_in_a_backtest():
    res = run(exit={"plugin": "fixed_rr_exit", "params": {"rr": 2.0, "stop_buffer_pips": 2}})
    t = res.trades.iloc[0]
    # stop 1.1008, target 1.1020 + 2 x 12 pips = 1.1044 on bar 10
    assert t.stop_price == pytest.approx(1.1008) and t.target_price == pytest.approx(1.1044)
    assert (t.exit_bar, t.exit_reason) == (10, "TAKE_PROFIT")


def test_fixed_risk_size_is_capped_by_leverage():
    # risk 10 % over 12 pips would be 833 333 units; leverage 1 caps it at
    # equity x (1 - eps) / (price x (1 + commission)) = 10 000 / 1.1020 (no commission)
    res = run(operation={**OPERATION, "leverage": 1}, size={"risk_pct": 10.0})
    t = res.trades.iloc[0]
    assert t["size"] == pytest.approx(10_000 * FULL_EQUITY / 1.1020, rel=1e-12)
    # whole units round the risk size down
    res = run(size={"risk_pct": 1.0, "whole_units": True})
    assert res.trades["size"].iloc[0] == math.floor(100 / 0.0012)


def test_threat_rejection_is_linked_in_the_journal():
    res = run(threats=[{"instance_id": "vol_1", "plugin": "volatility_spike_detector",
                        "params": {"lookback": 3, "percentile": 50, "atr_period": 1}}])
    # ATR(1) on bars 6..8 = 20, 50, 30 pips (true ranges); median 30 -> bar 8's 30 is not above: passes
    assert events(res, "OPPORTUNITY_REJECTED").empty
    res = run(threats=[{"instance_id": "vol_1", "plugin": "volatility_spike_detector",
                        "params": {"lookback": 3, "percentile": 10, "atr_period": 1}}])
    # p10 of {20, 30, 50} = 22 pips < 30: the setup is rejected
    rej = events(res, "OPPORTUNITY_REJECTED")
    assert rej[["bar", "threat_id", "reason"]].values.tolist() == [[8, "vol_1", "VOLATILITY_SPIKE"]]
    assert len(res.trades) == 0
    check_journal_links(res)


# ---------------------------------------------------------------- causality


@pytest.fixture(scope="module")
def eurusd():
    return load_data("eurusd_15m").iloc[:4000].copy()


def _planner_arrays(df, gap, placement, price, liq, atr_mult):
    cp = {"swing_points": {"left": 2, "right": 2}, "liquidity_levels": {"left": 2, "right": 2}}
    ctx = FeatureContext(df, PIP, context_params=cp)
    fvg = get_plugin("fvg_detector")("fvg_det_1", get_plugin("fvg_detector").Params(min_gap_size=gap))
    opps = merge_signals(ctx, [fvg])
    entry = planner("limit_entry_at_fvg", price=price).plan(ctx, opps)
    liq_plan = planner("liquidity_target_exit", stop_placement=placement,
                       target_opposite_liquidity=liq).plan(ctx, opps, entry)
    atr_plan = planner("atr_based_stops", atr_multiplier=atr_mult, target_r=2.0).plan(ctx, opps, entry)
    rr_plan = planner("fixed_rr_exit").plan(ctx, opps, entry)
    return {"bar": opps.bar, "limit": entry.limit, "cancel": entry.cancel, "liq_stop": liq_plan.stop,
            "liq_target": liq_plan.target, "atr_stop": atr_plan.stop, "rr_stop": rr_plan.stop}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(t=st.integers(100, 4000), gap=st.integers(1, 6), placement=st.sampled_from(["zone", "swing"]),
       price=st.sampled_from(["midpoint", "edge"]), liq=st.booleans(), atr_mult=st.floats(0.5, 4))
def test_planner_arrays_are_causal(eurusd, t, gap, placement, price, liq, atr_mult):
    full = _planner_arrays(eurusd, gap, placement, price, liq, atr_mult)
    part = _planner_arrays(eurusd.iloc[:t], gap, placement, price, liq, atr_mult)
    k = int(np.sum(full["bar"] < t))
    assert len(part["bar"]) == k
    for name in full:
        np.testing.assert_array_equal(part[name], full[name][:k], err_msg=name)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(t=st.integers(600, 4000))
def test_ict_backtest_prefix_replay(eurusd, t):
    """Cutting the data after bar t changes nothing before it (journal, equity), drawdown
    monitor included."""
    full = api.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml", data=eurusd)
    part = api.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml",
                        data=eurusd.iloc[:t].copy())
    cut = t - 1  # the last bar places no orders, so compare what happened before it
    cols = ["bar", "event", "opportunity_id", "trade_id", "threat_id", "reason"]
    a = full.journal[full.journal.bar < cut][cols].reset_index(drop=True)
    b = part.journal[part.journal.bar < cut][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    np.testing.assert_array_equal(full.equity.to_numpy()[:cut], part.equity.to_numpy()[:cut])


# ---------------------------------------------------------------- the shipped strategy


STRATEGY = "config/runs/ict_smc_strategy.yaml"
OPERATION_FILE = "config/operations/ict_backtest.yaml"


@pytest.fixture(scope="module")
def shipped():
    return api.backtest(STRATEGY, OPERATION_FILE)


def test_shipped_ict_strategy_is_meaningful(shipped):
    m = shipped.metrics
    assert m["total_trades"] >= 30
    reasons = events(shipped, "OPPORTUNITY_REJECTED").reason.value_counts()
    for reason in ("MAX_DRAWDOWN", "VOLATILITY_SPIKE", "MARKET_RISK"):
        assert reasons.get(reason, 0) > 0
    check_journal_links(shipped)
    t = shipped.trades
    assert set(t.exit_reason) == {"STOP_LOSS", "TAKE_PROFIT"}
    # fixed risk: size x |fill - stop| is 0.75 % of the equity at the fill (the previous
    # close's equity when no trade closed on the fill bar), less when leverage caps it
    eq = shipped.equity.to_numpy()
    clean = ~t.entry_bar.isin(set(t.exit_bar))
    risk = (t["size"] * (t.entry_price - t.stop_price).abs() / eq[t.entry_bar - 1])[clean]
    assert len(risk) > 30 and (risk <= 0.0075 * (1 + 1e-9)).all()
    assert np.median(risk) == pytest.approx(0.0075)
    spec = shipped.specs
    assert spec.params("fvg_det_1")["require_structure_break"] is True
    assert spec.params("exit_1")["target_opposite_liquidity"] is True


@pytest.mark.parametrize("exit_worker", [
    {"instance_id": "exit_1", "plugin": "liquidity_target_exit", "params": {"target_opposite_liquidity": True}},
    {"instance_id": "exit_1", "plugin": "atr_based_stops", "params": {"atr_multiplier": 2.0}},
])
def test_source_design_exit_variants_validate_and_run(exit_worker):
    with open(STRATEGY) as fh:
        bp = yaml.safe_load(fh)
    bp["workforce"]["planning_workers"]["exit_planning"] = [exit_worker]
    res = api.backtest(bp, OPERATION_FILE)
    assert res.metrics["total_trades"] > 0
    check_journal_links(res)


def test_source_design_optimization_has_feasible_combinations():
    """fvg_det_1 min_gap_size 3..10 x require_structure_break [true, false] with the
    constraints min_trades 10 and max_drawdown 15 %: most combinations are feasible."""
    base = api.build_specs(STRATEGY, OPERATION_FILE)
    svc = OperationService()
    feasible = 0
    for gap in range(3, 11):
        for brk in (True, False):
            m = svc.run_metrics(base.with_params("fvg_det_1", {"min_gap_size": gap, "require_structure_break": brk}))
            feasible += m["total_trades"] >= 10 and m["max_drawdown_pct"] <= 15.0
    assert feasible >= 8
