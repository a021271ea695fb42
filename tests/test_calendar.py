"""Annualization from the calendar (issue 18, part 5): trading days and periods per year.

Hand-built bar indexes whose days and periods per year are known: FX weeks (Sunday 17:00
to Friday 17:00 New York, across both US daylight-saving changes), crypto 24x7 bars, and
exchange days with holidays. The FX day is data/timeframe.py's (period_ids "1d" "fx"):
the calendar's day ends must be the bars where that period number changes, on both of
its paths (a search per day on dense sorted bars, a day number per bar otherwise).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metaflow_nb as mf
from metaflow_nb.assembly.dataset import dataset_calendar, dataset_day_ends
from metaflow_nb.data.timeframe import period_ids
from metaflow_nb.engine import metrics as em
from metaflow_nb.errors import ConfigError

NY = "America/New_York"


def fx_weeks(sundays: list[str], freq: str = "15min") -> pd.DatetimeIndex:
    """Naive UTC bar open times of FX weeks: Sunday 17:00 to Friday 17:00 New York (the
    last bar opens one step before the close), one week per Sunday date."""
    parts = []
    for sunday in sundays:
        start = pd.Timestamp(f"{sunday} 17:00").tz_localize(NY)
        end = (pd.Timestamp(sunday) + pd.Timedelta(days=5)).replace(hour=17).tz_localize(NY)
        local = pd.date_range(start, end, freq=freq, inclusive="left")
        parts.append(local.tz_convert("UTC").tz_localize(None))
    return parts[0].append(parts[1:])


def fx_day_ends_by_period(index: pd.DatetimeIndex) -> np.ndarray:
    """The FX day ends as data/timeframe.py defines the FX day: where period_ids changes."""
    d = period_ids(index, "1d", "fx")
    return np.append(d[1:] != d[:-1], True) if d.size else np.zeros(0, dtype=np.bool_)


# ====================================================================== FX 24x5


# the Sundays US daylight saving starts (2024-03-10) and ends (2024-11-03) on, with the
# weeks around them; 2024-03-31 is the EU change (New York's FX day does not move)
DST_SUNDAYS = ["2024-03-03", "2024-03-10", "2024-03-17", "2024-03-31", "2024-10-27", "2024-11-03", "2024-11-10"]


def test_fx_week_has_five_fx_days_ending_at_17_new_york_across_dst():
    idx = fx_weeks(DST_SUNDAYS)
    day_end, ppy, _ = em.calendar(idx, "fx_24x5")
    assert ppy == 260.0
    assert day_end.sum() == 5 * len(DST_SUNDAYS)
    last_bars = idx[day_end]
    # each FX day's last bar opens 16:45 New York: 20:45 UTC in summer, 21:45 in winter
    local = last_bars.tz_localize("UTC").tz_convert(NY)
    assert set(local.strftime("%H:%M")) == {"16:45"}
    utc = dict(zip(last_bars.strftime("%Y-%m-%d"), last_bars.strftime("%H:%M")))
    assert utc["2024-03-08"] == "21:45" and utc["2024-03-11"] == "20:45"    # EST -> EDT on Sunday 03-10
    assert utc["2024-11-01"] == "20:45" and utc["2024-11-04"] == "21:45"    # EDT -> EST on Sunday 11-03
    # labels: the FX day's date, Monday to Friday (the Sunday-evening open is Monday's)
    labels = em.day_labels(idx, day_end, "fx_24x5")
    assert set(labels.day_name()) == {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}
    assert labels.is_unique and labels.is_monotonic_increasing
    np.testing.assert_array_equal(day_end, fx_day_ends_by_period(idx))


def test_fx_week_in_utc_days_counts_the_sunday_evening_as_a_day():
    # what the colleague saw on EURUSD (256 -> 306 days): without the FX calendar a week
    # is six UTC days, the first of them 2-3 hours of Sunday evening
    idx = fx_weeks(DST_SUNDAYS)
    day_end, ppy, _ = em.calendar(idx)
    assert day_end.sum() == 6 * len(DST_SUNDAYS)
    assert set(em.day_labels(idx, day_end).day_name()) >= {"Sunday"}
    assert ppy == pytest.approx(em.measured_periods_per_year(em._days(idx[day_end])))


def test_fx_day_on_24x7_bars_is_25_hours_when_new_york_falls_back():
    # continuous hourly bars declared fx_24x5: days still end 17:00 New York, so the FX
    # day holding the fall-back night (Saturday 17:00 EDT -> Sunday 17:00 EST) has 25
    # bars and the spring-forward one 23
    idx = pd.date_range("2024-03-07", "2024-03-14", freq="h", inclusive="left").append(
        pd.date_range("2024-10-31", "2024-11-07", freq="h", inclusive="left"))
    day_end = em.calendar(idx, "fx_24x5")[0]
    np.testing.assert_array_equal(day_end, fx_day_ends_by_period(idx))
    ends = np.flatnonzero(day_end)
    lengths = dict(zip(em.day_labels(idx, ends, "fx_24x5").strftime("%Y-%m-%d"), np.diff(np.r_[-1, ends])))
    assert lengths["2024-03-10"] == 23 and lengths["2024-11-03"] == 25
    assert lengths["2024-03-12"] == 24 and lengths["2024-11-05"] == 24


@pytest.mark.parametrize("index", [
    fx_weeks(DST_SUNDAYS),
    fx_weeks(["2023-12-31"], freq="4h"),          # few bars a day: the per-bar path
    pd.date_range("2024-03-01", "2024-04-15", freq="17min"),
    pd.date_range("2024-01-01 21:30", periods=400, freq="D"),   # daily bars near the FX close
    pd.DatetimeIndex(["2024-03-08 21:00", "2024-03-08 22:00", "2024-03-10 21:00", "2024-03-10 22:00"]),
    pd.date_range("2024-10-30", periods=3000, freq="13min", tz="Europe/Berlin"),   # zone-aware: its instants
    pd.DatetimeIndex([]),
])
def test_fx_day_ends_are_timeframe_fx_days(index):
    got = em.calendar(index, "fx_24x5")[0]
    assert got.dtype == np.bool_
    utc = index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index
    np.testing.assert_array_equal(got, fx_day_ends_by_period(utc))


@given(start=st.integers(1_500_000_000, 1_800_000_000),
       steps=st.lists(st.sampled_from([60, 900, 3600, 3 * 3600, 86_399, 86_400, 2 * 86_400]), min_size=1,
                      max_size=400))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fx_day_ends_are_timeframe_fx_days_on_random_indexes(start, steps):
    t = (start + np.cumsum(np.asarray([0, *steps], dtype=np.int64))) * 10**9
    idx = pd.DatetimeIndex(t.astype("datetime64[ns]"))
    np.testing.assert_array_equal(em.calendar(idx, "fx_24x5")[0], fx_day_ends_by_period(idx))


def test_fx_daily_returns_are_fx_days_and_sharpe_uses_260():
    idx = fx_weeks(DST_SUNDAYS, freq="1h")
    rng = np.random.default_rng(3)
    equity = pd.Series(10_000 * np.cumprod(1 + rng.normal(0, 1e-3, len(idx))), index=idx)
    r = em.daily_returns(equity, 10_000.0, "fx_24x5")
    assert len(r) == 5 * len(DST_SUNDAYS)
    ends = np.flatnonzero(fx_day_ends_by_period(idx))
    e = equity.to_numpy()[ends]
    np.testing.assert_allclose(r.to_numpy(), np.r_[e[0] / 10_000.0, e[1:] / e[:-1]] - 1, rtol=1e-12)
    trades = pd.DataFrame(columns=["pnl", "entry_price", "size", "entry_bar", "exit_bar"], dtype=float)
    m = em.metrics_from_frames(equity, np.zeros(len(idx)), trades, 10_000.0, 0, 0, calendar_name="fx_24x5")
    x = r.to_numpy()
    assert m["sharpe_ratio"] == pytest.approx(x.mean() / x.std(ddof=1) * math.sqrt(260), rel=1e-12)
    assert m["volatility_ann_pct"] == pytest.approx(x.std(ddof=1) * math.sqrt(260) * 100, rel=1e-12)
    down = math.sqrt(np.sum(np.minimum(x, 0) ** 2) / (len(x) - 1))
    assert m["sortino_ratio"] == pytest.approx(x.mean() / down * math.sqrt(260), rel=1e-12)


# ====================================================================== crypto 24x7


def test_crypto_24x7_days_are_utc_days_seven_a_week():
    idx = pd.date_range("2024-03-04", "2024-04-01", freq="h", inclusive="left")   # 4 weeks from a Monday
    day_end, ppy, _ = em.calendar(idx, "crypto_24x7")
    assert ppy == 365.0 and day_end.sum() == 28
    assert set(idx[day_end].strftime("%H:%M")) == {"23:00"}
    # measured: seven days a week of a 365.25-day year; the old Saturday rule gave 365 too
    assert em.calendar(idx)[1] == pytest.approx(365.25)
    np.testing.assert_array_equal(em.calendar(idx)[0], day_end)


def test_crypto_measured_on_a_partial_week_and_short_spans():
    # Friday to Tuesday: 5 days, every one with bars -> 365.25 (under a week: days per calendar day)
    idx = pd.date_range("2024-03-08", "2024-03-13", freq="h", inclusive="left")
    assert em.calendar(idx)[1] == pytest.approx(365.25)
    # 10 days, every one -> 365.25: partial first and last weeks count only the weekdays they hold
    idx = pd.date_range("2024-03-08", "2024-03-18", freq="30min", inclusive="left")
    assert em.calendar(idx)[1] == pytest.approx(365.25)


# ====================================================================== exchange


def exchange_days(holidays: list[str]) -> pd.DatetimeIndex:
    """52 weeks of Monday-to-Friday days from Monday 2023-01-02, without ``holidays``."""
    days = pd.bdate_range("2023-01-02", "2023-12-29")
    return days[~days.isin(pd.DatetimeIndex(holidays))]


HOLIDAYS = ["2023-01-16", "2023-02-20", "2023-04-07", "2023-05-29", "2023-06-19", "2023-07-04", "2023-09-04",
            "2023-11-23"]


def test_exchange_daily_bars_declared_and_measured():
    idx = exchange_days(HOLIDAYS)
    assert len(idx) == 252
    day_end, ppy, _ = em.calendar(idx, "exchange")
    assert ppy == 252.0 and day_end.all()
    # measured: 252 sessions in 52 weeks (Monday to Friday each 52 times in the span)
    assert em.calendar(idx)[1] == pytest.approx(252 / 52 * 365.25 / 7)
    # without holidays: five days a week
    assert em.calendar(exchange_days([]))[1] == pytest.approx(5 * 365.25 / 7)


def test_exchange_intraday_bars_one_day_per_session():
    # New York sessions 09:30-16:00 in 30-minute bars, stored in UTC (14:30/13:30 on)
    sessions = []
    for day in exchange_days(HOLIDAYS)[:40]:
        local = pd.date_range(f"{day.date()} 09:30", f"{day.date()} 16:00", freq="30min", inclusive="left")
        sessions.append(local.tz_localize(NY).tz_convert("UTC").tz_localize(None))
    idx = sessions[0].append(sessions[1:])
    day_end, ppy, _ = em.calendar(idx, "exchange")
    assert ppy == 252.0 and day_end.sum() == 40
    assert set(idx[day_end].tz_localize("UTC").tz_convert(NY).strftime("%H:%M")) == {"15:30"}


@pytest.mark.parametrize("freq, per_year", [("W-FRI", 365.25 / 7), ("2W-FRI", 365.25 / 14), ("ME", None)])
@pytest.mark.parametrize("name", ["exchange", "fx_24x5", "crypto_24x7"])
def test_bars_coarser_than_the_calendars_day_are_annualized_by_their_own_count(name, freq, per_year):
    # a weekly bar's return is a week's, not a trading day's: with the calendar's P (252)
    # a weekly Sharpe ratio came out sqrt(252 / 52) = 2.2 times too large
    idx = pd.date_range("2001-01-01", "2020-12-31", freq=freq)
    day_end, ppy, _ = em.calendar(idx, name)
    assert day_end.all()
    measured = em.calendar(idx)[1]
    assert ppy == measured and em.periods_per_year(idx, name) == measured
    if per_year is not None:
        assert ppy == pytest.approx(per_year, rel=0.01)
    else:
        assert ppy == pytest.approx(12.0, rel=0.01)


@pytest.mark.parametrize("months", [6, 12, 24])
@pytest.mark.parametrize("name", [None, "exchange"])
def test_a_short_monthly_history_is_annualized_by_twelve(months, name):
    """n monthly bars span n - 1 months from the first bar's date to the last's: counting
    n bars over that span made P 14.3 for 6 bars, 13.0 for 12 (Sharpe x sqrt(13 / 12))."""
    idx = pd.date_range("2020-01-31", periods=months, freq="ME")
    assert em.calendar(idx, name)[1] == pytest.approx(12.0, rel=0.01)
    weeks = pd.date_range("2020-01-03", periods=months, freq="W-FRI")
    assert em.calendar(weeks, name)[1] == 365.25 / 7.0


def test_daily_bars_keep_the_declared_calendar_even_with_gaps():
    # a quarter of the trading days missing and a month of halt is still daily data
    idx = exchange_days(HOLIDAYS)
    gappy = idx[(np.arange(len(idx)) % 4 != 0) & ~((idx >= "2023-06-01") & (idx < "2023-07-01"))]
    assert em.calendar(gappy, "exchange")[1] == 252.0
    assert em.periods_per_year(gappy, "exchange") == 252.0


def test_a_weekly_timeframe_of_the_daily_sample_is_annualized_weekly():
    daily = mf.backtest("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml")
    op = yaml.safe_load(open("config/operations/sp500_daily.yaml"))
    op["data"]["timeframe"] = "1w"
    weekly = mf.backtest("config/runs/sma_cross.yaml", op)
    assert daily.specs.data_calendar == weekly.specs.data_calendar == "exchange"
    r = em.daily_returns(weekly.equity, weekly.specs.cash, "exchange")
    ppy = em.periods_per_year(weekly.equity.index, "exchange")
    assert 51.5 < ppy < 52.5
    expected = r.mean() / r.std(ddof=1) * math.sqrt(ppy)
    assert weekly.metrics["sharpe_ratio"] == pytest.approx(expected, rel=1e-9)
    from metaflow_nb.services.tearsheet import periods_per_year
    assert periods_per_year(weekly) == ppy


def test_periods_per_year_of_daily_return_labels_is_the_bars_measure():
    idx = fx_weeks(DST_SUNDAYS[:3], freq="1h")
    equity = pd.Series(np.linspace(10_000, 10_500, len(idx)), index=idx)
    for name in (None, "fx_24x5", "crypto_24x7", "exchange"):
        r = em.daily_returns(equity, 10_000.0, name)
        assert em.periods_per_year(r.index, name) == em.calendar(idx, name)[1]


def test_unknown_calendar_is_refused():
    with pytest.raises(ValueError, match="unknown calendar 'nyse'; known: fx_24x5, crypto_24x7, exchange"):
        em.calendar(pd.DatetimeIndex([]), "nyse")


# ====================================================================== operations


def _operation(tmp_path, calendar=None, source="eurusd_15m"):
    op = yaml.safe_load(open("config/operations/ict_backtest.yaml"))
    op["data"].pop("calendar", None)
    if calendar is not None:
        op["data"]["calendar"] = calendar
    path = tmp_path / f"op_{calendar}.yaml"
    path.write_text(yaml.safe_dump(op))
    return str(path)


def test_operation_calendar_is_left_out_when_unset_and_part_of_the_run_id_when_set(tmp_path):
    unset = mf.build_specs("config/runs/sma_cross.yaml", _operation(tmp_path))
    fx = mf.build_specs("config/runs/sma_cross.yaml", _operation(tmp_path, "fx_24x5"))
    assert unset.data_calendar is None and "calendar" not in unset.operation["data"]
    assert fx.data_calendar == "fx_24x5" and fx.run_id != unset.run_id
    with pytest.raises(ConfigError, match="unknown calendar 'nyse'"):
        mf.build_specs("config/runs/sma_cross.yaml", _operation(tmp_path, "nyse"))


def test_bundled_operations_declare_their_calendars():
    assert mf.build_specs("config/runs/ict_smc_strategy.yaml",
                          "config/operations/ict_backtest.yaml").data_calendar == "fx_24x5"
    assert mf.build_specs("config/runs/sma_cross.yaml",
                          "config/operations/sp500_daily.yaml").data_calendar == "exchange"


def test_eurusd_backtest_on_fx_days(tmp_path):
    res = mf.backtest("config/runs/sma_cross.yaml", _operation(tmp_path, "fx_24x5"))
    r = em.daily_returns(res.equity, res.specs.cash, "fx_24x5")
    assert set(r.index.day_name()) <= {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}
    x = r.to_numpy()
    assert res.metrics["sharpe_ratio"] == pytest.approx(x.mean() / x.std(ddof=1) * math.sqrt(260), rel=1e-9)
    utc = mf.backtest("config/runs/sma_cross.yaml", _operation(tmp_path))
    r_utc = em.daily_returns(utc.equity, utc.specs.cash)
    assert len(r_utc) > len(r)       # the Sunday evenings were days of their own
    assert "Sunday" in set(r_utc.index.day_name())


def test_dataset_calendar_is_memoized_per_calendar():
    bars = mf.load_data("eurusd_15m", timezone="Europe/Athens")
    fx = dataset_day_ends(bars, "fx_24x5")
    assert dataset_day_ends(bars, "fx_24x5") is fx
    assert dataset_calendar(bars, 0, "fx_24x5") is dataset_calendar(bars, 0, "fx_24x5")
    utc = dataset_day_ends(bars)
    assert utc is not fx and len(utc) > len(fx)
    np.testing.assert_array_equal(fx, np.flatnonzero(fx_day_ends_by_period(bars.index)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-3, 40), max_size=60), st.booleans())
def test_measured_periods_per_year_is_numpy_unique_of_the_days_in_any_order(values, presorted):
    # the measure dedupes day numbers in O(n) when they come sorted (as bars give them);
    # it must agree with numpy's own unique to the bit, sorted or not
    days = np.array(sorted(values) if presorted else values, dtype=np.int64)
    assert np.array_equal(em._distinct(days), np.unique(days))
    assert em.measured_periods_per_year(days) == em.measured_periods_per_year(np.unique(days))
    assert em.measured_periods_per_year_coarse(days) == em.measured_periods_per_year_coarse(np.unique(days))


def test_a_long_gap_is_left_out_of_the_measured_year():
    """hunt68 F2: with data.calendar unset, a 3-year hole in 7-day data measured 97.7 trading
    days a year, and a 13-month halt of a weekday stock 152: Sharpe, Sortino and volatility
    shrank while the trades stayed the same. A gap of more than two weeks is no part of
    the market's calendar (a holiday, even a long one, is shorter)."""
    every = np.arange(16_000, 16_000 + 700)                     # 700 calendar days
    holed = np.r_[every[:350], every[350:] + 3 * 365]           # the same days, a 3-year hole between
    assert em.measured_periods_per_year(holed) == pytest.approx(em.measured_periods_per_year(every), rel=1e-3)
    assert em.measured_periods_per_year(every) == pytest.approx(365.25, rel=2e-3)
    wk = every[(every + 3) % 7 < 5]
    halted = np.r_[wk[:200], wk[200:] + 400]
    assert em.measured_periods_per_year(halted) == pytest.approx(260.89, rel=5e-3)
    # holidays stay what they are: a week off (a long Chinese New Year) still counts
    cny = wk[(wk < 16_300) | (wk > 16_309)]
    assert em.measured_periods_per_year(cny) < em.measured_periods_per_year(wk)
    # the metrics read it: the hole changes no daily return, so neither Sharpe nor volatility
    rng = np.random.default_rng(2)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, every.size)))
    frames = []
    for days in (every, holed):
        idx = pd.to_datetime(days, unit="D")
        frames.append(pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
                                    "volume": 1.0}, index=idx))
    import metaflow_nb as mf
    a, b = (mf.backtest("config/runs/sma_cross.yaml", data=f).metrics for f in frames)
    assert a["total_trades"] == b["total_trades"] > 0
    assert b["sharpe_ratio"] == pytest.approx(a["sharpe_ratio"], rel=2e-3)
    assert b["volatility_ann_pct"] == pytest.approx(a["volatility_ann_pct"], rel=2e-3)


def test_a_long_gap_is_left_out_of_weekly_and_monthly_bars_year_too():
    """hunt71 F5: weekly and monthly bars with a 3-year hole measured 44.4 weeks and 10.2
    months a year (the step across the hole counted as one)."""
    weeks = np.arange(0, 7 * 520, 7) + 12_000
    months = pd.date_range("2000-01-31", periods=240, freq="ME").values.astype("datetime64[D]").astype(np.int64)
    for days, per_year in ((weeks, 365.25 / 7), (months, None)):
        whole = em.measured_periods_per_year_coarse(days)
        holed = np.r_[days[: len(days) // 3], days[len(days) // 3 + 36 * len(days) // 240:]]
        assert em.measured_periods_per_year_coarse(holed) == pytest.approx(whole, rel=2e-3)
        if per_year is not None:
            assert whole == per_year
