"""Exit rules that act on the path: trailing stops (percent, distance, level), the
break-even move and exits at a time of day.

Hand-computed bars through the kernel and through the planners; prefix replay; the
quiet-bar loop changes nothing; the batch sweep equals the single run bit for bit.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine_helpers as h
import metaflow_nb as mf
from metaflow_nb.engine import codes
from metaflow_nb.errors import ConfigError

NAN = float("nan")


def one_trade(out) -> Any:
    trades = out["trades"]
    assert len(trades) == 1, trades
    return trades[0]


# ---------------------------------------------------------------- the kernel, by hand

def test_percent_trailing_stop_follows_the_best_close_and_exits_where_touched():
    # long from bar 0's signal, filled at bar 1's open (100). 5 % trail:
    # close 1: best 101 -> stop 95.95; close 2: best 110 -> stop 104.5;
    # bar 3 trades down to 104 <= 104.5: exit at the stop, 104.5.
    df = h.make_ohlc([(100, 100, 100, 100), (100, 101, 99.5, 101), (102, 110, 101, 110),
                      (108, 109, 104, 105), (105, 106, 104, 105)])
    out = h.kernel(df, [0], [1], trail_mode=codes.TRAIL_PERCENT, trail_param=0.05)
    t = one_trade(out)
    assert (t["entry_bar"], t["entry_price"], t["exit_bar"], t["exit_reason"]) == (1, 100.0, 3, codes.EXIT_STOP_LOSS)
    assert t["exit_price"] == pytest.approx(104.5) and t["stop"] == pytest.approx(104.5)


def test_distance_trailing_stop_of_a_short_only_moves_down():
    # short filled at bar 1's open (100); stop = close + 2 x distance:
    # close 1: 99 + 2 = 101; close 2: 95 + 2 = 97; close 3: 96.4 + 1.0 = 97.4 (worse: kept 97);
    # bar 4 trades up to 97.5 >= 97: exit at max(open 96.8, 97) = 97.
    df = h.make_ohlc([(100, 100, 100, 100), (100, 100.5, 99, 99), (98, 98.5, 95, 95),
                      (96, 96.5, 94, 96.4), (96.8, 97.5, 96.5, 97), (97, 97, 97, 97)])
    dist = np.array([1.0, 1.0, 1.0, 0.5, 0.5, 0.5])
    out = h.kernel(df, [0], [-1], trail_mode=codes.TRAIL_DISTANCE, trail_param=2.0, trail_long=dist, trail_short=dist)
    t = one_trade(out)
    assert (t["exit_bar"], t["exit_price"], t["exit_reason"]) == (4, 97.0, codes.EXIT_STOP_LOSS)


def test_level_trailing_stop_exits_at_the_open_when_the_bar_gaps_through_it():
    # long at 100 (bar 1); levels 98 (close 1), 99 (close 2), 97 (close 3: lower, ignored);
    # bar 4 opens at 98.5 below the 99 stop: exit at the open.
    df = h.make_ohlc([(100, 100, 100, 100), (100, 101, 99.5, 100.5), (100.5, 102, 100, 101),
                      (101, 101.5, 99.5, 100), (98.5, 99, 98, 98.8), (99, 99, 99, 99)])
    levels = np.array([NAN, 98.0, 99.0, 97.0, 96.0, 96.0])
    out = h.kernel(df, [0], [1], trail_mode=codes.TRAIL_LEVEL, trail_long=levels)
    t = one_trade(out)
    assert (t["exit_bar"], t["exit_price"], t["exit_reason"], t["stop"]) == (4, 98.5, codes.EXIT_STOP_LOSS, 99.0)


def test_break_even_moves_the_stop_to_the_entry_after_one_r():
    # long at 100, stop 2 below the fill (98): 1 R = 2. Bar 1 reaches 101 (< 102): no move;
    # bar 2 reaches 102.5: at its close the stop goes to 100; bar 3 dips to 99.9: exit at 100.
    df = h.make_ohlc([(100, 100, 100, 100), (100, 101, 98.5, 100.5), (100.5, 102.5, 100.2, 102),
                      (101, 101.5, 99.9, 100.5), (100.5, 101, 100, 100.5)])
    out = h.kernel(df, [0], [1], stop=[2.0], stop_mode=codes.PRICE_DISTANCE, breakeven_r=1.0)
    t = one_trade(out)
    assert (t["exit_bar"], t["exit_price"], t["exit_reason"], t["stop"]) == (3, 100.0, codes.EXIT_STOP_LOSS, 100.0)
    # without the move the same trade stays open
    assert len(h.kernel(df, [0], [1], stop=[2.0], stop_mode=codes.PRICE_DISTANCE)["trades"]) == 0


def test_break_even_without_a_stop_does_nothing_and_never_loosens_a_tighter_trail():
    df = h.make_ohlc([(100, 100, 100, 100), (100, 101, 99.5, 101), (102, 110, 101, 110),
                      (108, 109, 104, 105), (105, 106, 104, 105)])
    assert len(h.kernel(df, [0], [1], breakeven_r=0.5)["trades"]) == 0
    # trail 5 % (104.5 after bar 2) beats the break-even level (100): 104.5 stays
    out = h.kernel(df, [0], [1], stop=[1.0], stop_mode=codes.PRICE_DISTANCE, breakeven_r=0.5,
                   trail_mode=codes.TRAIL_PERCENT, trail_param=0.05)
    assert one_trade(out)["exit_price"] == pytest.approx(104.5)


def test_flat_at_closes_at_the_bar_close_with_slippage():
    df = h.make_ohlc([(100, 100, 100, 100), (100, 101, 99, 100.5), (100.5, 103, 100, 102), (102, 103, 101, 102.5)])
    out = h.kernel(df, [0], [1], flat_at=[0, 0, 1, 0], slippage=0.001)
    t = one_trade(out)
    assert (t["exit_bar"], t["exit_reason"]) == (2, codes.EXIT_SESSION)
    assert t["entry_price"] == pytest.approx(100 * 1.001) and t["exit_price"] == pytest.approx(102 * 0.999)
    j = out["journal"]
    closed = j[j["event"] == codes.EV_TRADE_CLOSED]
    assert closed["bar"].tolist() == [2] and closed["reason"].tolist() == [codes.EXIT_SESSION]


def test_flat_at_the_fill_bar_closes_the_same_bar_and_a_stop_touched_first_wins():
    df = h.make_ohlc([(100, 100, 100, 100), (100, 101, 99, 100.5), (100.5, 101, 100, 100.8)])
    t = one_trade(h.kernel(df, [0], [1], flat_at=[0, 1, 0]))
    assert (t["entry_bar"], t["exit_bar"], t["exit_price"]) == (1, 1, 100.5)
    # the stop (99.5) is touched inside bar 1: the stop fills, not the close
    t = one_trade(h.kernel(df, [0], [1], flat_at=[0, 1, 0], stop=[0.5], stop_mode=codes.PRICE_DISTANCE))
    assert (t["exit_bar"], t["exit_price"], t["exit_reason"]) == (1, 99.5, codes.EXIT_STOP_LOSS)


# ---------------------------------------------------------------- partial take-profit, by hand

def partial_run(rows, **kw):
    # long at bar 1's open (100): stop 2 below (98, 1 R = 2), TP1 at 1 R (102) for half, TP2 at 2 R (104);
    # all in, whole units: 99 units (the FULL_EQUITY rule), so TP1 closes 49 and TP2 the other 50
    args = dict(stop=[2.0], stop_mode=codes.PRICE_DISTANCE, target=[2.0], target_mode=codes.PRICE_R_MULTIPLE,
                partial=[1.0], partial_mode=codes.PRICE_R_MULTIPLE, partial_fraction=0.5)
    args.update(kw)
    return h.kernel(h.make_ohlc(rows), [0], [1], **args)["trades"]


def test_partial_take_profit_closes_a_fraction_at_tp1_and_the_rest_at_tp2():
    t = partial_run([(100, 100, 100, 100), (100, 101, 99, 100.5), (100.5, 102.5, 100, 102), (102, 104.5, 101.5, 104),
                     (104, 104, 104, 104)])
    assert t["exit_bar"].tolist() == [2, 3] and t["entry_bar"].tolist() == [1, 1] and t["opp"].tolist() == [0, 0]
    assert t["exit_price"].tolist() == [102.0, 104.0] and t["size"].tolist() == [49.0, 50.0]
    assert t["exit_reason"].tolist() == [codes.EXIT_PARTIAL, codes.EXIT_TAKE_PROFIT]
    assert t["pnl"].tolist() == [49 * 2.0, 50 * 4.0]


def test_partial_take_profit_shares_the_entry_commission():
    t = partial_run([(100, 100, 100, 100), (100, 101, 99, 100.5), (100.5, 102.5, 100, 102), (102, 104.5, 101.5, 104),
                     (104, 104, 104, 104)], commission=0.001, cash=10_000.0)
    size = math.floor(10_000.0 * (1 - 2.220446049250313e-16) / (100 + 100 * 0.001))  # all in, net of the fee
    part = math.floor(size * 0.5)
    entry_fee = size * 100 * 0.001
    share = entry_fee * (part / size)
    assert t["size"].tolist() == [part, size - part]
    assert t["commission"][0] == pytest.approx(part * 102 * 0.001 + share)
    assert t["commission"][1] == pytest.approx((size - part) * 104 * 0.001 + entry_fee - share)
    assert t["pnl"].sum() == pytest.approx(part * 2 + (size - part) * 4 - entry_fee - part * 102e-3 - (size - part) * 104e-3)


def test_a_bar_gapping_through_both_levels_fills_both_at_its_open():
    t = partial_run([(100, 100, 100, 100), (100, 101, 99, 100.5), (105, 106, 104.5, 105.5), (105, 105, 105, 105)])
    assert t["exit_bar"].tolist() == [2, 2] and t["exit_price"].tolist() == [105.0, 105.0]
    assert t["exit_reason"].tolist() == [codes.EXIT_PARTIAL, codes.EXIT_TAKE_PROFIT]


def test_the_rest_stops_out_after_tp1_and_the_stop_beats_tp1_on_one_bar():
    t = partial_run([(100, 100, 100, 100), (100, 101, 99, 100.5), (100.5, 102.5, 100, 102), (101, 101.5, 97, 97.5),
                     (97, 97, 97, 97)])
    assert t["exit_reason"].tolist() == [codes.EXIT_PARTIAL, codes.EXIT_STOP_LOSS]
    assert t["exit_price"].tolist() == [102.0, 98.0] and t["size"].tolist() == [49.0, 50.0]
    # a bar touching the stop and TP1: the stop (pessimistic), all of it
    t = partial_run([(100, 100, 100, 100), (100, 101, 99, 100.5), (100.5, 102.5, 97.5, 100), (100, 100, 100, 100)])
    assert t["exit_reason"].tolist() == [codes.EXIT_STOP_LOSS] and t["size"].tolist() == [99.0]


def test_tp1_on_the_market_fill_bar_and_a_position_too_small_to_split():
    t = partial_run([(100, 100, 100, 100), (100, 102.5, 99, 101), (101, 101, 101, 101)])
    assert t["exit_bar"].tolist() == [1] and t["exit_reason"].tolist() == [codes.EXIT_PARTIAL]
    # 1 unit: half rounds down to 0, nothing closes at TP1 and the unit goes on to TP2
    t = partial_run([(100, 100, 100, 100), (100, 101, 99, 100.5), (100.5, 102.5, 100, 102), (102, 104.5, 101.5, 104),
                     (104, 104, 104, 104)], cash=150.0)
    assert t["exit_reason"].tolist() == [codes.EXIT_TAKE_PROFIT] and t["size"].tolist() == [1.0]


def test_partial_planner_and_its_bad_params(sp500):
    bp = exit_blueprint([{"instance_id": "tp1", "plugin": "partial_take_profit", "params": {"fraction": 0.5, "at_r": 1.0}}],
                        longs=[20, 400, 900], stops={"stop_loss_pct": 2.0, "take_profit_pct": 6.0, "reference": "fill"})
    res = mf.backtest(bp, h.operation(), data=sp500)
    reasons = res.trades["exit_reason"].tolist()
    assert "PARTIAL_TAKE_PROFIT" in reasons
    parts = res.trades[res.trades["exit_reason"] == "PARTIAL_TAKE_PROFIT"]
    for _, row in parts.iterrows():  # TP1 is 1 R (2 %) above the fill
        assert row.exit_price == pytest.approx(row.entry_price * 1.02) or row.exit_price > row.entry_price * 1.02
    bad = exit_blueprint([{"instance_id": "tp1", "plugin": "partial_take_profit",
                           "params": {"fraction": 0.5, "at_r": 1.0, "at_pct": 2.0}}], longs=[1])
    with pytest.raises(ConfigError, match="exactly one of at_r and at_pct"):
        mf.build_specs(bad, h.operation(), data="sp500_daily")


@pytest.mark.parametrize("planner, key", [
    ({"plugin": "partial_take_profit", "params": {"fraction": 0.5, "at_r": 1.0}}, "params.at_r"),
    ({"plugin": "break_even", "params": {"after_r": 1.0}}, "params.after_r"),
])
def test_levels_in_r_without_any_stop_are_refused_with_the_config(planner, key):
    """R is the entry-to-stop distance: with no planner setting a stop the rule would do
    nothing on every trade, silently."""
    # a target but no stop (percent_stops with stop_loss_pct null sets none)
    bp = exit_blueprint([{"instance_id": "r_1", **planner}], longs=[1],
                        stops={"stop_loss_pct": None, "take_profit_pct": 6.0, "reference": "fill"})
    with pytest.raises(ConfigError) as err:
        mf.build_specs(bp, h.operation(), data="sp500_daily")
    msg = str(err.value)
    assert f"workforce.planning_workers.exit_planning[1].{key}:" in msg
    assert "no exit planner sets a stop" in msg and "\n" not in msg
    # at_pct needs no stop; with a stop, R is measured from it
    if planner["plugin"] == "partial_take_profit":
        ok = exit_blueprint([{"instance_id": "r_1", "plugin": "partial_take_profit",
                              "params": {"fraction": 0.5, "at_r": None, "at_pct": 2.0}}], longs=[1],
                            stops={"stop_loss_pct": None, "take_profit_pct": 6.0, "reference": "fill"})
        mf.build_specs(ok, h.operation(), data="sp500_daily")
    mf.build_specs(exit_blueprint([{"instance_id": "r_1", **planner}], longs=[1],
                                  stops={"stop_loss_pct": 2.0, "take_profit_pct": 6.0, "reference": "fill"}),
                   h.operation(), data="sp500_daily")


# ---------------------------------------------------------------- the planners

def exit_blueprint(exits: list[dict[str, Any]], longs=(), shorts=(), stops=None) -> dict:
    bp = h.blueprint(longs=longs, shorts=shorts, stops=stops)
    bp["workforce"]["planning_workers"]["exit_planning"] += exits
    return bp


def test_trailing_percent_planner_gives_the_kernels_trade():
    df = h.make_ohlc([(100, 100, 100, 100), (100, 101, 99.5, 101), (102, 110, 101, 110),
                      (108, 109, 104, 105), (105, 106, 104, 105)])
    bp = exit_blueprint([{"instance_id": "trail_1", "plugin": "trailing_stop", "params": {"mode": "percent",
                                                                                         "percent": 5.0}}], longs=[0])
    res = mf.backtest(bp, h.operation(), data=df)
    t = res.trades.iloc[0]
    assert (t.exit_bar, t.exit_reason) == (3, "STOP_LOSS") and t.exit_price == pytest.approx(104.5)


def test_trailing_atr_planner_reads_the_atr_feature(sp500):
    bp = exit_blueprint([{"instance_id": "trail_1", "plugin": "trailing_stop",
                          "params": {"mode": "atr", "atr_multiple": 2.0, "atr_period": 10}}], longs=[20, 300])
    specs = mf.build_specs(bp, h.operation(), data=sp500)
    from metaflow_nb.assembly.run import prepare
    from metaflow_nb.engine.nb.indicators import atr
    p = prepare(specs, sp500)
    rules, exits = p.records[3], p.records[5]
    assert (rules.trail_mode, rules.trail_param) == (codes.TRAIL_DISTANCE, 2.0)
    want = atr(sp500["high"].to_numpy(), sp500["low"].to_numpy(), sp500["close"].to_numpy(), 10)
    np.testing.assert_array_equal(exits.trail_long, want)
    res = mf.backtest(specs, data=sp500)
    assert (res.trades["exit_reason"] == "STOP_LOSS").all() and len(res.trades) == 2


def test_trailing_swing_planner_uses_the_last_swing_low_and_high(sp500):
    bp = exit_blueprint([{"instance_id": "trail_1", "plugin": "trailing_stop", "params": {"mode": "swing"}}],
                        longs=[50], shorts=[900])
    bp["workforce"]["context_workers"] = [{"instance_id": "sw", "plugin": "swing_points",
                                           "params": {"left": 3, "right": 3}}]
    specs = mf.build_specs(bp, h.operation(), data=sp500)
    from metaflow_nb.assembly.run import prepare
    exits = prepare(specs, sp500).records[5]
    from metaflow_nb.engine.nb.structure import swing_points
    *_, lsh, lsl = swing_points(sp500["high"].to_numpy(), sp500["low"].to_numpy(), 3, 3)
    np.testing.assert_array_equal(exits.trail_long, lsl)
    np.testing.assert_array_equal(exits.trail_short, lsh)


def test_session_exit_planner_flattens_from_the_local_time_on_across_dst():
    # 15-minute bars in UTC around the US DST change (2024-03-10): 16:00 New York is
    # 21:00 UTC before and 20:00 UTC after
    idx = pd.date_range("2024-03-08 18:00", "2024-03-12 23:45", freq="15min")
    df = h.make_ohlc([(1.0, 1.0, 1.0, 1.0)] * len(idx), start=str(idx[0]), freq="15min")
    from metaflow_nb.workers.features import FeatureContext
    from metaflow_nb.workers.planning.exit import SessionExit, SessionExitParams
    flat = SessionExit("eod", SessionExitParams(at="16:00", zone="America/New_York")).plan(
        FeatureContext(df), None, None).flat_at
    stamps = pd.Series(df.index[flat != 0])
    local_day = stamps.dt.tz_localize("UTC").dt.tz_convert("America/New_York").dt.date
    first = stamps.groupby(local_day).min()
    assert str(first[pd.Timestamp("2024-03-08").date()].time()) == "21:00:00"
    assert str(first[pd.Timestamp("2024-03-11").date()].time()) == "20:00:00"
    # and flat to the end of the local day (midnight New York = 04:00/05:00 UTC next day)
    assert flat[df.index.get_loc(pd.Timestamp("2024-03-09 04:45"))] == 1
    assert flat[df.index.get_loc(pd.Timestamp("2024-03-09 05:00"))] == 0


@pytest.mark.parametrize("params, key", [({"at": "25:00"}, "at"), ({"zone": "Mars/Base"}, "zone"),
                                         ({"mode": "fib"}, "mode"), ({"after_r": 0}, "after_r")])
def test_bad_exit_params_are_config_errors(params, key):
    plugin = "break_even" if "after_r" in params else ("trailing_stop" if "mode" in params else "session_exit")
    bp = exit_blueprint([{"instance_id": "x_1", "plugin": plugin, "params": params}], longs=[1])
    with pytest.raises(ConfigError, match=rf"exit_planning\[\d\]\.params\.{key}"):
        mf.build_specs(bp, h.operation(), data="sp500_daily")


def test_an_unquoted_time_of_day_is_that_time(tmp_path):
    """YAML 1.1 reads 21:45 unquoted as the base-60 number 1305 (PyYAML's safe_load does);
    the configs are read as YAML 1.2 reads them (hunt64 F1), so it is the time written. The
    number of minutes a YAML 1.1 reader gives (a dict built with one) is refused with the hint."""
    import yaml
    text = yaml.safe_dump(exit_blueprint([{"instance_id": "eod_1", "plugin": "session_exit"}], longs=[1]))
    path = tmp_path / "s.yaml"
    line = next(t for t in text.splitlines() if t.strip() == "plugin: session_exit")
    indent = line[:len(line) - len(line.lstrip())]
    path.write_text(text.replace(line, f"{line}\n{indent}params: {{at: 21:45}}"))
    assert yaml.safe_load(path.read_text())["workforce"]["planning_workers"]["exit_planning"][-1]["params"] == \
        {"at": 1305}
    assert mf.build_specs(str(path), h.operation(), data="sp500_daily").params("eod_1")["at"] == "21:45"
    as_11 = yaml.safe_load(path.read_text())
    with pytest.raises(ConfigError, match=r"exit_planning\[\d\]\.params\.at: .*unquoted 21:45 is read as the "
                                          r"number 1305.*quote it: at: \"21:45\""):
        mf.build_specs(as_11, h.operation(), data="sp500_daily")


# ---------------------------------------------------------------- properties

import test_engine_invariants as inv  # noqa: E402  (its scenarios and settings, reused)

EXIT_RULES = st.fixed_dictionaries({
    "trail": st.one_of(st.none(), st.sampled_from([{"mode": "percent", "percent": 1.5},
                                                   {"mode": "percent", "percent": 4.0},
                                                   {"mode": "atr", "atr_multiple": 1.5, "atr_period": 3},
                                                   {"mode": "swing"}])),
    "be": st.one_of(st.none(), st.sampled_from([0.5, 1.0, 2.0])),
    "flat": st.one_of(st.none(), st.sampled_from(["00:00", "12:00"])),
    "partial": st.one_of(st.none(), st.sampled_from([{"fraction": 0.5, "at_r": 1.0},
                                                     {"fraction": 0.3, "at_r": None, "at_pct": 1.0}])),
})


def rule_exits(rules: dict) -> list[dict[str, Any]]:
    out = []
    if rules["trail"] is not None:
        out.append({"instance_id": "trail_1", "plugin": "trailing_stop", "params": rules["trail"]})
    if rules["be"] is not None:
        out.append({"instance_id": "be_1", "plugin": "break_even", "params": {"after_r": rules["be"]}})
    if rules["flat"] is not None:
        out.append({"instance_id": "eod_1", "plugin": "session_exit", "params": {"at": rules["flat"]}})
    if rules["partial"] is not None:
        out.append({"instance_id": "tp1_1", "plugin": "partial_take_profit", "params": rules["partial"]})
    return out


def scenario_specs(df, kw, rules, finalize):
    if (kw.get("stops") or {}).get("stop_loss_pct") is None:
        # the rules measured in R need a stop (refused with the config without one)
        partial = rules["partial"]
        rules = {**rules, "be": None, "partial": partial if partial is None or partial["at_r"] is None else None}
    bp = h.blueprint(**{k: v for k, v in kw.items() if k not in ("commission", "leverage")})
    bp["workforce"]["planning_workers"].setdefault("exit_planning", []).extend(rule_exits(rules))
    return mf.build_specs(bp, h.operation(commission=kw["commission"], finalize=finalize, leverage=kw["leverage"]),
                          data=df)


@inv.SETTINGS
@given(inv.scenarios(), EXIT_RULES, st.booleans(), st.data())
def test_prefix_replay_with_exit_rules(scenario, rules, finalize, data):
    """Cutting the data after bar t - 1 changes nothing settled before it."""
    df, kw = scenario
    t = data.draw(st.integers(2, len(df)), label="t")
    full = mf.backtest(scenario_specs(df, kw, rules, finalize), data=df)
    part_df = df.iloc[:t].copy()
    part = mf.backtest(scenario_specs(part_df, kw, rules, finalize), data=part_df)
    h.assert_prefix_settled(part, full, t)


@inv.SETTINGS
@given(inv.scenarios(), EXIT_RULES, st.booleans())
def test_metrics_only_and_kept_runs_agree_with_exit_rules(scenario, rules, finalize):
    """The streamed metrics of a backtest equal run_metrics of the kept arrays."""
    from metaflow_nb.assembly.run import prepare
    from metaflow_nb.engine.metrics import calendar
    from metaflow_nb.engine.nb import metrics as nbm
    from metaflow_nb.engine.nb import simulate as nbsim

    df, kw = scenario
    args = prepare(scenario_specs(df, kw, rules, finalize), df).records
    day_end, ppy, years = calendar(df.index)
    kept = nbm.run_metrics(nbsim.simulate(*args), 0, day_end, args[4].cash, ppy, years)
    day_ret = np.empty(int(day_end.sum()))
    acc, n_tr = nbsim.simulate_metrics(*args, np.flatnonzero(day_end), day_ret)
    streamed = nbm.stream_metrics(acc, day_ret, n_tr, len(df), args[4].cash, ppy, years)
    np.testing.assert_array_equal(kept, streamed)


@inv.SETTINGS
@given(inv.scenarios(), EXIT_RULES, st.booleans())
def test_skipping_quiet_bars_with_exit_rules_changes_nothing(scenario, rules, finalize):
    """A drawdown monitor that never fires puts every bar on the full path: same run."""
    from metaflow_nb.assembly.run import prepare
    from metaflow_nb.engine.nb import simulate as nbsim

    df, kw = scenario
    records = prepare(scenario_specs(df, kw, rules, finalize), df).records
    h.assert_same_run(nbsim.simulate(*records), nbsim.simulate(*h.on_full_path(records)))


import test_batch_path as bpath  # noqa: E402  (its bars, blueprint, spaces and comparison)


@st.composite
def rule_spaces(draw):
    """The batch-path test's random spaces with the trailing and break-even params swept."""
    columns, combos = draw(bpath.spaces())
    if combos[0].get("stops_1", {}).get("stop_loss_pct", 3.0) is None:
        # the break-even and TP1 are in R: a combination without a stop is refused, the first stays valid
        combos[0]["stops_1"]["stop_loss_pct"] = 3.0
    for combo in combos:
        combo.setdefault("trail_1", {})["percent"] = draw(st.sampled_from([0.5, 2.0, 5.0]))
        combo.setdefault("be_1", {})["after_r"] = draw(st.sampled_from([0.5, 1.0, 3.0]))
        combo.setdefault("tp1_1", {})["fraction"] = draw(st.sampled_from([0.25, 0.5]))
    return columns + ["trail_1.percent", "be_1.after_r", "tp1_1.fraction"], combos


def sweep_base(direction: str, exclusive: bool, commission: float, mode: str):
    bp = bpath.sma_blueprint(direction, exclusive)
    trail = {"mode": mode, "percent": 2.0, "atr_multiple": 2.0, "atr_period": 10}
    bp["workforce"]["planning_workers"]["exit_planning"] += [
        {"instance_id": "trail_1", "plugin": "trailing_stop", "params": trail},
        {"instance_id": "be_1", "plugin": "break_even", "params": {"after_r": 1.0}},
        {"instance_id": "eod_1", "plugin": "session_exit", "params": {"at": "23:00"}},
        {"instance_id": "tp1_1", "plugin": "partial_take_profit", "params": {"fraction": 0.5, "at_r": 1.0}},
    ]
    return mf.build_specs(bp, bpath.operation(commission), data=bpath.BARS)


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(space=rule_spaces(), direction=st.sampled_from(["long_short", "long_only", "short_only"]),
       commission=st.sampled_from([0.0, 0.002]), exclusive=st.booleans(),
       mode=st.sampled_from(["percent", "atr", "swing"]))
def test_batch_and_general_paths_agree_with_exit_rules(space, direction, commission, exclusive, mode):
    columns, combos = space
    batch, general = bpath.both_paths(sweep_base(direction, exclusive, commission, mode), columns, combos)
    bpath.assert_bit_for_bit(batch, general)
    assert batch.engine == "batch" and batch.successful_runs >= 1
