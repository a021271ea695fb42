"""A market's own trading day (``data.trading_day``, a worker's ``trading_day``): sessions
that cross midnight UTC (Sydney, Auckland, CME's Globex evening open) stay one day for the
daily returns, the annualization and the resampled bars. Hand-made bars, hand-counted days.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import engine_helpers as h
import metaflow_nb as mf
from metaflow_nb.cli import main
from metaflow_nb.data.timeframe import check_trading_day, period_ids, resample, trading_day_rule
from metaflow_nb.engine.metrics import calendar, day_labels
from metaflow_nb.errors import ConfigError


def asx_hours(days: list[str], zone: str = "Australia/Sydney") -> pd.DatetimeIndex:
    """Hourly bars opening 10:00 .. 15:00 local on each of ``days``, as naive UTC."""
    local = [pd.Timestamp(f"{d} {hh:02d}:00").tz_localize(zone) for d in days for hh in range(10, 16)]
    return pd.DatetimeIndex(local).tz_convert("UTC").tz_localize(None)


def ohlc(index: pd.DatetimeIndex) -> pd.DataFrame:
    close = 100.0 + np.arange(len(index), dtype=float)
    return pd.DataFrame({"open": close, "high": close + 0.5, "low": close - 0.5, "close": close,
                         "volume": 1.0}, index=index)


def test_the_forms_of_a_trading_day():
    assert trading_day_rule("utc") == ("UTC", 0) and trading_day_rule("fx") == ("America/New_York", 1020)
    assert trading_day_rule("Australia/Sydney") == ("Australia/Sydney", 0)
    assert trading_day_rule("America/Chicago 16:45") == ("America/Chicago", 16 * 60 + 45)
    assert check_trading_day("America/Chicago  17:00 ") == "America/Chicago 17:00"
    for bad in ("Mars/Olympus", "America/Chicago 25:00", "America/Chicago 5pm", ""):
        with pytest.raises(ValueError, match="unknown trading day"):
            trading_day_rule(bad)


def test_a_sydney_session_is_one_day_not_two():
    # Mon 8 and Tue 9 Jan 2024, 10:00-15:00 AEDT (UTC+11): 23:00 the evening before .. 04:00 UTC
    idx = asx_hours(["2024-01-08", "2024-01-09"])
    assert str(idx[0]) == "2024-01-07 23:00:00" and str(idx[6]) == "2024-01-08 23:00:00"
    utc_days = calendar(idx, "exchange")[0]
    assert np.flatnonzero(utc_days).tolist() == [0, 6, 11]      # 7 Jan (one bar), 8 Jan, 9 Jan
    own = calendar(idx, "exchange@Australia/Sydney")
    assert np.flatnonzero(own[0]).tolist() == [5, 11] and own[1] == 252.0
    assert day_labels(idx, own[0], "exchange@Australia/Sydney").strftime("%a %d").tolist() == ["Mon 08", "Tue 09"]
    # measured (no calendar): the days with bars are the sessions' local dates
    assert np.flatnonzero(calendar(idx, "@Australia/Sydney")[0]).tolist() == [5, 11]


def test_a_sydney_session_across_the_april_clock_change():
    # Fri 5 Apr at UTC+11 (23:00 UTC on the 4th), Mon 8 Apr at UTC+10 (00:00 UTC on the 8th)
    idx = asx_hours(["2024-04-05", "2024-04-08"])
    assert str(idx[0]) == "2024-04-04 23:00:00" and str(idx[6]) == "2024-04-08 00:00:00"
    ends = calendar(idx, "exchange@Australia/Sydney")[0]
    assert np.flatnonzero(ends).tolist() == [5, 11]
    assert period_ids(idx, "1d", "Australia/Sydney").tolist() == [19818] * 6 + [19821] * 6  # 5 Apr, 8 Apr


def test_many_bars_a_day_take_the_day_starts_path_and_agree_with_the_per_bar_one():
    # 5-minute bars: the binary search per day (many bars a day) must cut where the per-bar rule does
    local = pd.date_range("2024-03-25 10:00", "2024-04-12 16:00", freq="5min", tz="Australia/Sydney")
    local = local[(local.hour >= 10) & (local.hour < 16) & (local.day_of_week < 5)]
    idx = local.tz_convert("UTC").tz_localize(None)
    ends = calendar(idx, "exchange@Australia/Sydney")[0]
    dates = local.normalize()
    expected = np.append(dates[1:] != dates[:-1], True)
    np.testing.assert_array_equal(ends, expected)
    assert int(ends.sum()) == 15                                # three weeks of sessions


def test_cme_evening_open_belongs_to_the_next_date():
    # Mon 8 Jan 2024 16:00 and 17:00 Chicago (CST, UTC-6): 22:00 and 23:00 UTC
    idx = pd.DatetimeIndex(["2024-01-08 22:00", "2024-01-08 23:00", "2024-01-09 21:00"])
    assert period_ids(idx, "1d", "America/Chicago 17:00").tolist() == [19730, 19731, 19731]
    ends = calendar(idx, "exchange@America/Chicago 17:00")[0]
    assert ends.tolist() == [True, False, True]


def test_daily_bars_of_a_sydney_session_resampled():
    idx = asx_hours(["2024-01-08", "2024-01-09"])
    htf = resample(ohlc(idx), "1d", "Australia/Sydney")
    assert htf.group.tolist() == [0] * 6 + [1] * 6
    assert htf.frame["open"].tolist() == [100.0, 106.0] and htf.frame["close"].tolist() == [105.0, 111.0]
    # in UTC days the Monday session is cut in two: its first hour is a day of its own
    assert resample(ohlc(idx), "1d").group.tolist() == [0] + [1] * 6 + [2] * 5


def sydney_operation(**data) -> dict:
    return {**h.operation(), "data": {"source": "x", **data}}


def test_the_operation_s_trading_day_runs_the_metrics_on_sessions(tmp_path):
    days = [str(d.date()) for d in pd.bdate_range("2024-01-08", periods=15)]
    df = ohlc(asx_hours(days))
    bp = h.blueprint(longs=[2, 30], shorts=[50])
    utc = mf.build_specs(bp, sydney_operation(calendar="exchange"), data=df)
    own = mf.build_specs(bp, sydney_operation(calendar="exchange", trading_day="Australia/Sydney"), data=df)
    assert own.data_calendar == "exchange@Australia/Sydney" and own.data_trading_day == "Australia/Sydney"
    assert utc.data_calendar == "exchange" and own.hash != utc.hash     # part of the run id
    a, b = mf.backtest(utc, data=df), mf.backtest(own, data=df)
    from metaflow_nb.engine.metrics import daily_returns

    assert len(daily_returns(b.equity, 10_000.0, own.data_calendar)) == 15      # one per session
    # in UTC days each week's Monday session opens on Sunday evening: a day of one bar a week
    assert len(daily_returns(a.equity, 10_000.0, utc.data_calendar)) == 18
    assert a.trades.equals(b.trades)                                # trading itself does not change
    assert a.metrics["sharpe_ratio"] != b.metrics["sharpe_ratio"]


def test_data_timeframe_1d_makes_one_bar_per_session(tmp_path):
    days = ["2024-01-08", "2024-01-09", "2024-01-10"]
    path = tmp_path / "asx.csv"
    ohlc(asx_hours(days)).to_csv(path)
    op = sydney_operation(timeframe="1d", trading_day="Australia/Sydney")
    op["data"]["source"] = str(path)
    specs = mf.build_specs(h.blueprint(longs=[0]), op)
    res = mf.backtest(specs)
    assert len(res.equity) == 3 and [str(t) for t in res.equity.index] == [
        "2024-01-07 23:00:00", "2024-01-08 23:00:00", "2024-01-09 23:00:00"]


def test_a_worker_on_the_sessions_own_days():
    idx = asx_hours(["2024-01-08", "2024-01-09", "2024-01-10"])
    df = ohlc(idx)
    from metaflow_nb.workers.base import FeatureContext

    out = FeatureContext(df).feature("previous_period_levels", {"trading_day": "Australia/Sydney"})
    # Wednesday's bars see Tuesday's whole session (high 111.5); Tuesday's see Monday's: the
    # data's first day opens at 10:00 Sydney as the next one does, a whole session
    assert out["prev_day_high"][12:].tolist() == [111.5] * 6
    assert out["prev_day_high"][6:12].tolist() == [df["high"][:6].max()] * 6
    assert np.isnan(out["prev_day_high"][:6]).all()
    # on UTC days Wednesday's first bar (23:00 UTC Tuesday) would be in Tuesday's day
    utc = FeatureContext(df).feature("previous_period_levels")
    assert utc["prev_day_high"][12] != 111.5


@pytest.mark.parametrize("data, key, expected", [
    ({"trading_day": "Mars/Olympus"}, "data.trading_day", "unknown trading day 'Mars/Olympus'"),
    ({"calendar": "exchange@Australia/Sydney"}, "data.calendar", "set the market's day apart, in data.trading_day"),
])
def test_a_bad_trading_day_is_exit_2_naming_the_key(tmp_path, capsys, data, key, expected):
    op = tmp_path / "op.yaml"
    import yaml

    op.write_text(yaml.safe_dump({"name": "x", "data": {"source": "sp500_daily", **data}}))
    assert main(["backtest", "--strategy", "config/runs/sma_cross.yaml", "--operation", str(op)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0] and expected in err[0] and str(op) in err[0], err


def test_a_basket_shares_its_trading_day(tmp_path):
    from metaflow_nb.config.portfolio import BasketData

    assert BasketData(trading_day="Australia/Sydney").trading_day == "Australia/Sydney"
    with pytest.raises(ValueError, match="unknown trading day"):
        BasketData(trading_day="nowhere")


def test_the_data_command_notes_sessions_crossing_midnight_utc(tmp_path, capsys):
    days = [str(d.date()) for d in pd.bdate_range("2024-01-08", periods=10)]
    local = ohlc(asx_hours(days))
    local.index = local.index.tz_localize("UTC").tz_convert("Australia/Sydney").tz_localize(None)  # its own clock
    local.to_csv(tmp_path / "asx.csv")
    d = mf.describe_data(tmp_path / "asx.csv", timezone="Australia/Sydney")
    assert ("its sessions cross midnight UTC: 12 UTC days hold 10 days on its clock; data.trading_day: "
            "Australia/Sydney keeps each session one day") in " ".join(d.notes)
    # London's sessions stay inside UTC days: no note
    lon = ohlc(pd.DatetimeIndex([f"{day} {hh:02d}:00" for day in days for hh in range(8, 16)]))
    lon.to_csv(tmp_path / "lse.csv")
    assert not any("midnight UTC" in n for n in mf.describe_data(tmp_path / "lse.csv", timezone="Europe/London").notes)


def test_a_basket_hands_its_trading_day_to_every_instrument():
    from metaflow_nb.config.portfolio import PortfolioOperation, instrument_operations

    op = PortfolioOperation(universe={"path": "us_stocks", "symbols": ["IBM", "AAPL"]},
                            data={"calendar": "exchange", "trading_day": "America/New_York"})
    ops = instrument_operations(op, "<operation>", None)
    assert [o["operation"]["data"]["trading_day"] for o in ops] == ["America/New_York"] * 2
    specs = mf.build_specs("config/runs/sma_cross.yaml", ops[0]["operation"])
    assert specs.data_calendar == "exchange@America/New_York"


@pytest.mark.parametrize("day", ["America/New_York", "America/Chicago 17:00", "fx", "Australia/Sydney"])
def test_a_file_of_dates_stays_on_its_dates_under_any_trading_day(day):
    """Daily bars as dates (00:00): each is its own trading day. West of UTC a zone's day
    put every date on the evening before (hunt13 F2: S&P 500 returns labelled Sun-Thu,
    Monday's bar in the previous week)."""
    idx = pd.bdate_range("2024-01-01", periods=15)          # Mon 1 Jan .. Fri 19 Jan
    ends = calendar(idx, f"exchange@{day}" if day != "fx" else "fx_24x5")[0]
    assert ends.all()
    labels = day_labels(idx, ends, f"exchange@{day}" if day != "fx" else "fx_24x5")
    assert list(labels) == list(idx)
    assert np.diff(period_ids(idx, "1w", day)).tolist() == [0, 0, 0, 0, 1] * 2 + [0] * 4   # Monday opens a week
    htf = resample(ohlc(idx), "1w", day)
    assert htf.group.tolist() == [0] * 5 + [1] * 5 + [2] * 5 and htf.first_complete


@pytest.mark.parametrize("name", ["localtime", "posixrules", "Factory", "right/UTC", "posix/Australia/Sydney"])
def test_the_machines_own_zone_is_no_market_zone(name):
    """localtime means the machine's zone: the same run id gave another Sharpe ratio on a
    Sydney machine (hunt13 F3). Refused for the trading day, the data's clock and the
    session workers alike."""
    from metaflow_nb.data.clock import get_clock
    from metaflow_nb.workers.context.sessions import known_zone

    with pytest.raises(ValueError, match="unknown trading day"):
        trading_day_rule(name)
    with pytest.raises(ValueError, match="unknown timezone"):
        get_clock(name)
    with pytest.raises(ValueError, match="unknown time zone"):
        known_zone(name)


def test_the_data_command_finds_a_cme_day_that_ends_in_the_afternoon(tmp_path):
    """Hourly bars 17:00 .. 15:00 Chicago, Sunday evening to Friday: the zone's own
    calendar day cuts each session at midnight too; the note names the local time the
    sessions open at after their break (hunt13 F6)."""
    days = pd.bdate_range("2024-01-08", periods=10)
    local = []
    for d in days:
        start = (d - pd.Timedelta("1D")).replace(hour=17)          # the evening before
        local.extend(pd.date_range(start, periods=23, freq="h"))     # 17:00 .. 15:00
    idx = pd.DatetimeIndex(local)
    frame = ohlc(idx)
    frame.to_csv(tmp_path / "cme.csv")
    notes = " ".join(mf.describe_data(tmp_path / "cme.csv", timezone="America/Chicago").notes)
    assert "data.trading_day: America/Chicago 17:00 keeps each session one day" in notes
    assert "hold 10 days on its clock" in notes
    utc = frame.index.tz_localize("America/Chicago").tz_convert("UTC").tz_localize(None)
    assert int(calendar(utc, "exchange@America/Chicago 17:00")[0].sum()) == 10


def test_a_sessions_last_bar_at_midnight_utc_keeps_its_own_date():
    """Hourly bars 15:00 .. 19:00 New York (20:00 .. 00:00 UTC in winter): the last bar of
    each day is a midnight in UTC, but the bars are no file of dates; its day is New
    York's date, decided on all the bars, not on the day-end bars alone."""
    local = [pd.Timestamp(f"2024-01-{d:02d} {hh}:00", tz="America/New_York") for d in (8, 9, 10) for hh in range(15, 20)]
    idx = pd.DatetimeIndex(local).tz_convert("UTC").tz_localize(None)
    assert str(idx[4]) == "2024-01-09 00:00:00"
    name = "exchange@America/New_York"
    ends = calendar(idx, name)[0]
    assert np.flatnonzero(ends).tolist() == [4, 9, 14]
    assert day_labels(idx, ends, name).strftime("%d").tolist() == ["08", "09", "10"]


@pytest.mark.parametrize("a, b", [("fx", "America/New_York 17:00"), ("utc", "UTC"), ("fx", " America/New_York 17:00")])
def test_one_trading_day_spelled_two_ways_is_one_value(a, b):
    """hunt22 F2: 'fx' and 'America/New_York 17:00' (or 'utc' and 'UTC') are one rule: one
    canonical spelling, so one run id, and a sweep listing both is refused as 4h/240m is."""
    assert trading_day_rule(a) == trading_day_rule(b) and check_trading_day(b) == check_trading_day(a) == a
    cfg = {"name": "dup", "base_strategy": "config/runs/ict_htf_bias_strategy.yaml",
           "base_operation": "config/operations/ict_1h.yaml",
           "parameter_space": [{"worker_instance": "htf_bias_1", "parameters": {"trading_day": {"values": [a, b]}}}]}
    with pytest.raises(ConfigError, match="written again"):
        mf.optimize(cfg, engine="batch", progress=False)
    one = mf.build_specs("config/runs/ict_htf_bias_strategy.yaml", "config/operations/ict_1h.yaml")
    assert one.with_params("htf_bias_1", {"trading_day": b}).run_id == one.with_params(
        "htf_bias_1", {"trading_day": a}).run_id


def test_the_data_command_offers_the_fx_calendar_before_a_zones_day():
    # broker-time EURUSD: the note told to set data.trading_day: Europe/Athens right after "fx_24x5
    # looks right", whose day ends 17:00 New York (another day in the weeks between the US and EU
    # clock changes): the README's advice for FX is the calendar (hunt99 F8)
    d = mf.describe_data("eurusd_15m", timezone="Europe/Athens")
    assert d.calendar_hint.startswith("fx_24x5 looks right")
    note = next(n for n in d.notes if "midnight UTC" in n)
    assert ("306 UTC days hold 256 days on its clock; data.calendar: fx_24x5 (its day ends 17:00 New York) or "
            "data.trading_day: Europe/Athens keeps each session one day") in note
    # the calendar set: nothing to add
    assert not any("midnight UTC" in n for n in mf.describe_data("eurusd_15m", timezone="Europe/Athens",
                                                                  calendar="fx_24x5").notes)
