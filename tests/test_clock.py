"""Data clocks (issue 18, part 1): naive timestamps read on a declared clock and kept in
UTC; sessions and killzones in their own market's zone across daylight-saving weeks; the
bundled EURUSD sample's clock, checked against what is in the data; the CLI's options."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import metaflow_nb as mf
from metaflow_nb.cli import main
from metaflow_nb.data.clock import get_clock, local_to_utc
from metaflow_nb.errors import ConfigError, DataError
from metaflow_nb.services.operation import resolve_data
from metaflow_nb.workers.base import get_plugin
from metaflow_nb.workers.features import FeatureContext

SAMPLE_CLOCK = "Europe/Athens"  # what the data shows (see metaflow_nb/data/samples/README.md)


def ns(*stamps: str) -> np.ndarray:
    return pd.DatetimeIndex(list(stamps)).as_unit("ns").asi8


def utc_text(values: np.ndarray) -> list[str]:
    return [str(t) for t in pd.DatetimeIndex(values.view("datetime64[ns]"))]


# ====================================================================== the clock rule

def test_iana_zone_summer_and_winter():
    out = local_to_utc(ns("2022-07-01 10:00", "2022-12-01 10:00"), "Europe/London")
    assert utc_text(out) == ["2022-07-01 09:00:00", "2022-12-01 10:00:00"]


def test_repeated_hour_is_read_in_file_order():
    # New York, 2022-11-06: 01:00-02:00 happens twice (EDT, then EST)
    wall = ns("2022-11-06 00:30", "2022-11-06 01:00", "2022-11-06 01:30", "2022-11-06 01:00",
              "2022-11-06 01:30", "2022-11-06 02:00")
    assert utc_text(local_to_utc(wall, "America/New_York")) == [
        "2022-11-06 04:30:00", "2022-11-06 05:00:00", "2022-11-06 05:30:00", "2022-11-06 06:00:00",
        "2022-11-06 06:30:00", "2022-11-06 07:00:00"]


def test_the_clock_stays_gone_back_for_the_rest_of_the_repeated_hour():
    # the first pass misses its last bars (01:30, 01:45 EDT): a later time of the second pass was
    # read as the first pass again, earlier than the bar before it, and the file refused as
    # unsorted (hunt102 F2); once the clock went back, the repeated hour is standard time
    wall = ns("2022-11-06 00:45", "2022-11-06 01:00", "2022-11-06 01:15", "2022-11-06 01:00", "2022-11-06 01:15",
              "2022-11-06 01:30", "2022-11-06 01:45", "2022-11-06 02:00")
    assert utc_text(local_to_utc(wall, "America/New_York")) == [
        "2022-11-06 04:45:00", "2022-11-06 05:00:00", "2022-11-06 05:15:00", "2022-11-06 06:00:00",
        "2022-11-06 06:15:00", "2022-11-06 06:30:00", "2022-11-06 06:45:00", "2022-11-06 07:00:00"]
    # a year later the next change is read afresh: its first pass is daylight saving time again
    again = np.r_[wall, ns("2023-11-05 01:30", "2023-11-05 01:15")]
    assert utc_text(local_to_utc(again, "America/New_York"))[-2:] == ["2023-11-05 05:30:00", "2023-11-05 06:15:00"]


def test_repeated_hour_seen_once_is_daylight_saving_time():
    out = local_to_utc(ns("2022-11-06 00:00", "2022-11-06 01:30", "2022-11-06 03:00"), "America/New_York")
    assert utc_text(out)[1] == "2022-11-06 05:30:00"  # 01:30 EDT


def test_skipped_time_cannot_be_resolved():
    with pytest.raises(DataError, match=r"^f\.csv: row 2: 2022-03-13 02:30:00 does not exist in America/New_York "
                                        r"\(the clock skips from 02:00 to 03:00"):
        local_to_utc(ns("2022-03-13 01:30", "2022-03-13 02:30"), "America/New_York", origin="f.csv")


def test_a_third_occurrence_is_a_duplicate(tmp_path):
    path = tmp_path / "three.csv"
    rows = ["00:30", "01:30", "01:30", "01:30"]
    path.write_text("time,open,high,low,close\n" + "".join(f"2022-11-06 {r},1,2,1,2\n" for r in rows))
    with pytest.raises(DataError, match=r"rows 3 and 4: duplicate timestamp 2022-11-06 01:30:00 in column 'time' "
                                        r"\(read on the America/New_York clock\)"):
        mf.load_data(path, timezone="America/New_York")


@pytest.mark.parametrize("zone", ["Europe/Berlin", "Asia/Tokyo", "America/New_York"])
def test_dates_without_a_time_stay_on_their_date_under_any_clock(tmp_path, zone):
    # a daily bar's date names its trading day; read as local midnight, a clock east of UTC
    # moved every bar to the previous UTC day (Monday's bar on Sunday, a month's first
    # day's return into the previous month)
    days = pd.bdate_range("2012-05-28", "2012-06-15")
    close = np.linspace(10.0, 12.0, len(days))
    frame = pd.DataFrame({"Date": days.strftime("%Y-%m-%d"), "Open": close, "High": close + 1, "Low": close - 1,
                          "Close": close})
    frame.to_csv(tmp_path / "daily.csv", index=False)
    bars = mf.load_data(tmp_path / "daily.csv", timezone=zone, cache=False)
    assert bars.index.equals(pd.DatetimeIndex(days, name="time"))
    weekly = FeatureContext(bars).feature("previous_period_levels", {})["prev_week_high"]
    tue = bars.index.get_loc(pd.Timestamp("2012-06-12"))
    assert weekly[tue] == frame["High"].iloc[5:10].max()    # the week of 06-04 .. 06-08
    # a time of day on one row makes them times: the clock applies to all
    frame.loc[0, "Date"] = "2012-05-28 09:00"
    frame.to_csv(tmp_path / "timed.csv", index=False)
    timed = mf.load_data(tmp_path / "timed.csv", timezone=zone, cache=False)
    offset = pd.Timestamp("2012-06-01", tz=zone).utcoffset()
    assert timed.index[1] == pd.Timestamp("2012-05-29") - offset


def test_broker_ny_plus_7_follows_the_us_dates():
    # broker Monday 00:00 = New York Sunday 17:00, the FX week's open, in both US seasons
    out = local_to_utc(ns("2023-03-06 00:00", "2023-03-13 00:00", "2023-11-06 00:00"), "broker_ny+7")
    assert utc_text(out) == ["2023-03-05 22:00:00", "2023-03-12 21:00:00", "2023-11-05 22:00:00"]
    # the US gap (02:00-03:00 New York on 2023-03-12) is 09:00-10:00 broker time
    with pytest.raises(DataError, match=r"09:30:00 does not exist in broker_ny\+7 .* skips from 09:00 to 10:00"):
        local_to_utc(ns("2023-03-12 09:30"), "broker_ny+7")


def test_utc_clock_changes_nothing():
    wall = ns("2022-03-27 02:30", "2022-10-30 02:30")
    assert np.array_equal(local_to_utc(wall, "UTC"), wall)
    assert get_clock("UTC").is_utc and not get_clock("broker_ny+7").is_utc


def test_unknown_clock():
    with pytest.raises(ValueError, match="unknown timezone 'New York'.*broker_ny\\+7"):
        get_clock("New York")


# ====================================================================== the bundled sample's clock

@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return mf.load_data("eurusd_15m", timezone=SAMPLE_CLOCK)


def week_closes(index: pd.DatetimeIndex) -> pd.Series:
    """New York time of each trading week's end (last bar start + 15 min), by week start."""
    gap = np.diff(index.asi8) > 6 * 3600 * 10**9
    last = index[np.r_[gap, True]]
    first = index[np.r_[True, gap]]
    ends = (last + pd.Timedelta(minutes=15)).tz_localize("UTC").tz_convert("America/New_York")
    return pd.Series([t.strftime("%a %H:%M") for t in ends], index=first.strftime("%Y-%m-%d"))


def test_every_sample_week_closes_at_17_new_york(sample):
    closes = week_closes(sample.index)
    odd = closes[closes != "Fri 17:00"]
    # the only exceptions: a week the file stops early (2023-07-14) and the last, cut-off week
    assert list(odd.index) == ["2023-07-09", "2023-10-01"]
    # read as broker_ny+7 the three weeks between the US and the EU switches end an hour early
    ny7 = week_closes(mf.load_data("eurusd_15m", timezone="broker_ny+7").index)
    gap_weeks = ny7[ny7 == "Fri 16:00"]
    assert list(gap_weeks.index) == ["2022-10-30", "2023-03-12", "2023-03-19"]


@pytest.mark.parametrize("day, utc_time", [
    ("2022-11-04", "12:30"),  # US payrolls in the gap week: New York on EDT, Europe on winter time
    ("2022-12-02", "13:30"),  # both on winter time
    ("2023-03-14", "12:30"),  # US CPI in the spring gap week
    ("2023-04-07", "12:30"),  # both on summer time
])
def test_us_releases_at_0830_new_york(sample, day, utc_time):
    bars = sample.loc[day]
    biggest = (bars["high"] - bars["low"]).idxmax()
    assert biggest.strftime("%H:%M") == utc_time
    assert biggest.tz_localize("UTC").tz_convert("America/New_York").strftime("%H:%M") == "08:30"


def session_hours(bars: pd.DataFrame) -> dict[str, tuple[str, str]]:
    out = get_plugin("session_filter")("s", get_plugin("session_filter").Params()).compute(FeatureContext(bars))
    hours = {}
    for name in ("london", "new_york", "london_killzone", "new_york_killzone"):
        inside = bars.index[out[name]]
        hours[name] = (inside[0].strftime("%H:%M"), (inside[-1] + pd.Timedelta(minutes=15)).strftime("%H:%M"))
    return hours


@pytest.mark.parametrize("day, london, new_york", [
    ("2022-10-26", ("07:00", "16:00"), ("12:00", "21:00")),  # both on summer time
    ("2022-11-01", ("08:00", "17:00"), ("12:00", "21:00")),  # gap week: Europe switched 10-30, US 11-06
    ("2022-11-08", ("08:00", "17:00"), ("13:00", "22:00")),  # both on winter time
    ("2023-03-08", ("08:00", "17:00"), ("13:00", "22:00")),  # both on winter time
    ("2023-03-15", ("08:00", "17:00"), ("12:00", "21:00")),  # gap weeks: US switched 03-12, EU 03-26
    ("2023-03-22", ("08:00", "17:00"), ("12:00", "21:00")),
    ("2023-03-29", ("07:00", "16:00"), ("12:00", "21:00")),  # both on summer time
])
def test_sample_sessions_at_the_right_utc_hours(sample, day, london, new_york):
    hours = session_hours(sample.loc[day])
    assert hours["london"] == london and hours["new_york"] == new_york
    # killzones 07:00-10:00 local: London's opens with its session an hour earlier, New York's 1 h before its
    assert hours["london_killzone"][0] == f"{int(london[0][:2]) - 1:02d}:00"
    assert hours["new_york_killzone"][0] == f"{int(new_york[0][:2]) - 1:02d}:00"


def test_naive_sample_read_as_utc_puts_sessions_off(sample):
    # the trap the clock removes: read as UTC, the London session starts 2-3 h early in UTC terms
    raw = mf.load_data("eurusd_15m").loc["2022-11-01"]
    assert session_hours(raw)["london"][0] == "08:00"  # 08:00 on the broker's clock = 06:00 UTC
    assert str(mf.load_data("eurusd_15m", timezone=SAMPLE_CLOCK).loc["2022-11-01"].index[0].time()) == "00:00:00"


# ====================================================================== operations and the CLI

CLOCK_OP = {"name": "clocked", "data": {"source": "eurusd_15m", "timezone": SAMPLE_CLOCK},
            "instrument": {"symbol": "EURUSD", "pip_size": 0.0001}}
SESSION_BP = {"name": "s", "workforce": {
    "context_workers": [{"instance_id": "sess_1", "plugin": "session_filter", "params": {}}],
    "opportunity_workers": [{"instance_id": "sma_1", "plugin": "sma_cross", "params": {"fast": 10, "slow": 30}}]}}


def test_operation_clock_reaches_the_run_path():
    specs = mf.build_specs(SESSION_BP, CLOCK_OP)
    assert specs.data_timezone == SAMPLE_CLOCK and specs.operation["data"]["timezone"] == SAMPLE_CLOCK
    bars = resolve_data(specs)
    assert str(bars.index[0]) == "2022-10-09 21:00:00"
    assert specs.data_fingerprint == bars.attrs["fingerprint"] != mf.load_data("eurusd_15m").attrs["fingerprint"]


def test_unset_clock_leaves_run_ids_alone():
    plain = mf.build_specs(SESSION_BP, {"name": "p", "data": {"source": "eurusd_15m"}})
    assert "timezone" not in plain.operation["data"] and "date_column" not in plain.operation["data"]
    utc = mf.build_specs(SESSION_BP, {"name": "p", "data": {"source": "eurusd_15m", "timezone": "UTC"}})
    assert utc.data_fingerprint == plain.data_fingerprint and utc.run_id != plain.run_id


def test_operation_with_an_unknown_clock():
    with pytest.raises(ConfigError, match=r"data\.timezone.*unknown timezone 'Europe/Atlantis'"):
        mf.build_specs(SESSION_BP, {**CLOCK_OP, "data": {"source": "eurusd_15m", "timezone": "Europe/Atlantis"}})


def test_worker_zone_under_a_data_clock_is_refused():
    bp = {**SESSION_BP, "workforce": {**SESSION_BP["workforce"], "context_workers": [
        {"instance_id": "sess_1", "plugin": "session_filter", "params": {"timezone": "Europe/Athens"}}]}}
    with pytest.raises(ConfigError, match=r"context_workers\[0\]\.params\.timezone: 'Europe/Athens' would read "
                                          r"the timestamps again"):
        mf.build_specs(bp, CLOCK_OP)
    # without a data clock the old meaning holds (old configs keep working)
    specs = mf.build_specs(bp, {"name": "p", "data": {"source": "eurusd_15m"}})
    assert specs.params("sess_1")["timezone"] == "Europe/Athens"


@pytest.mark.parametrize("zone", ["Etc/UTC", "GMT", "Etc/GMT", "Zulu", "UTC"])
def test_a_worker_zone_that_is_utc_by_another_name_is_accepted_under_a_data_clock(zone):
    bp = {**SESSION_BP, "workforce": {**SESSION_BP["workforce"], "context_workers": [
        {"instance_id": "sess_1", "plugin": "session_filter", "params": {"timezone": zone}}]}}
    assert mf.build_specs(bp, CLOCK_OP).params("sess_1")["timezone"] == zone


def test_old_worker_zone_equals_the_data_clock():
    # the same UTC sessions either way: worker timezone on naive data == data.timezone
    old = get_plugin("session_filter")("s", get_plugin("session_filter").Params(timezone=SAMPLE_CLOCK))
    new = get_plugin("session_filter")("s", get_plugin("session_filter").Params())
    a = old.compute(FeatureContext(mf.load_data("eurusd_15m", start="2022-10-24", end="2022-11-11")))
    b = new.compute(FeatureContext(mf.load_data("eurusd_15m", start="2022-10-23", end="2022-11-11",
                                                timezone=SAMPLE_CLOCK).loc["2022-10-23 21:00":"2022-11-11 21:45"]))
    for key in ("london", "new_york", "asia"):
        assert np.array_equal(a[key], b[key]), key


@pytest.fixture()
def strategy_yaml(tmp_path):
    path = tmp_path / "sma.yaml"
    path.write_text("name: sma\nworkforce:\n  opportunity_workers:\n"
                    "    - {instance_id: sma_1, plugin: sma_cross, params: {fast: 3, slow: 5}}\n")
    return path


@pytest.fixture()
def odd_csv(tmp_path):
    index = pd.date_range("2024-01-01", periods=40, freq="D")
    close = 100 + np.sin(np.arange(40)) * 5
    # stamped at the close, 16:00 local: times, which a declared clock converts (dates would stay)
    df = pd.DataFrame({"When": index.strftime("%Y-%m-%d 16:00"), "Open": close, "High": close + 1, "Low": close - 1,
                       "Close": close})
    path = tmp_path / "odd.csv"
    df.to_csv(path, index=False)
    return path


def test_cli_no_date_column_exits_2_with_one_line(strategy_yaml, odd_csv, capsys):
    code = main(["backtest", "--strategy", str(strategy_yaml), "--data", str(odd_csv)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(odd_csv) in err and "missing a date column" in err
    assert "columns found: 'When', 'Open', 'High', 'Low', 'Close'" in err and "--date-column" in err


def test_cli_date_column_option(strategy_yaml, odd_csv, capsys):
    assert main(["backtest", "--strategy", str(strategy_yaml), "--data", str(odd_csv), "--date-column", "When",
                 "--json"]) == 0
    assert '"run_id"' in capsys.readouterr().out
    code = main(["backtest", "--strategy", str(strategy_yaml), "--data", str(odd_csv), "--date-column", "Wann"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "date_column='Wann' is not a column" in err


def test_cli_unknown_timezone_exits_2(strategy_yaml, capsys):
    code = main(["backtest", "--strategy", str(strategy_yaml), "--data", "eurusd_15m", "--timezone", "Mars/Base"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown timezone 'Mars/Base'" in err


def test_operation_yaml_date_column(strategy_yaml, odd_csv, tmp_path, capsys):
    op = tmp_path / "op.yaml"
    op.write_text(f"name: odd\ndata:\n  source: {odd_csv.name}\n  date_column: When\n  timezone: America/New_York\n")
    specs = mf.build_specs(str(strategy_yaml), str(op))
    assert specs.data_read_options == {"timezone": "America/New_York", "date_column": "When"}
    assert str(resolve_data(specs).index[0]) == "2024-01-01 21:00:00"
    assert main(["backtest", "--strategy", str(strategy_yaml), "--operation", str(op)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: odd\ndata:\n  source: {odd_csv.name}\n  date_column: ''\n")
    assert main(["backtest", "--strategy", str(strategy_yaml), "--operation", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "data.date_column" in err and err.count("\n") == 1


def test_bundled_operation_declares_the_sample_clock():
    # the clock the tests above verify is the one the bundled EURUSD operation declares
    specs = mf.build_specs("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml")
    assert specs.data_timezone == SAMPLE_CLOCK
    assert str(resolve_data(specs).index[0]) == "2022-10-09 21:00:00"


@pytest.mark.parametrize("ts", ["2010-06-01T00:00:00Z", "2010-06-01T02:00:00+02:00"])
def test_trade_start_with_a_utc_offset_is_that_instant(ts):
    """data.trade_start written with its offset is the instant in UTC, as start and end are
    (a traceback comparing a zone-aware stamp with the bars' UTC index before)."""
    import metaflow_nb as mf
    op = {"data": {"source": "sp500_daily", "start": "2010-01-01", "end": "2011-12-31"},
          "instrument": {"symbol": "SPX", "pip_size": 0.01}}
    plain = mf.backtest("config/runs/sma_cross.yaml", {**op, "data": {**op["data"], "trade_start": "2010-06-01"}})
    res = mf.backtest("config/runs/sma_cross.yaml", {**op, "data": {**op["data"], "trade_start": ts}})
    assert res.metrics == plain.metrics and res.trades.equals(plain.trades)


def test_a_dataframe_runs_on_the_declared_clock_or_is_refused():
    """hunt56 F1: a naive DataFrame ran as UTC whatever clock the operation (or timezone=)
    declared: the clock was dropped for every frame. A frame of the user's own is read on
    it, as load_data(frame, timezone=...) reads it; a frame load_data read on another clock
    is refused, naming both (reading it again would shift its times twice)."""
    strategy = "config/runs/sma_cross.yaml"
    op = {"name": "o", "data": {"source": "eurusd_15m", "timezone": "Europe/Athens", "end": "2022-11-15"}}
    from_file = mf.backtest(strategy, op)
    wall = mf.load_data("eurusd_15m", end="2022-11-16")
    raw = pd.DataFrame(wall.to_numpy(), index=wall.index.rename("time"), columns=wall.columns)   # a user's frame
    for res in (mf.backtest(strategy, op, data=raw),
                mf.backtest(strategy, {**op, "data": {"end": "2022-11-15"}}, data=raw, timezone="Europe/Athens"),
                mf.backtest(strategy, op, data=mf.load_data("eurusd_15m", timezone="Europe/Athens"))):
        pd.testing.assert_index_equal(res.equity.index, from_file.equity.index)
        assert res.metrics == from_file.metrics
    with pytest.raises(ConfigError, match=r"data.timezone 'Europe/Athens': the DataFrame was read on UTC"):
        mf.backtest(strategy, op, data=mf.load_data("eurusd_15m"))


def test_meta_verbs_read_a_dataframe_on_the_declared_clock():
    """A user's naive DataFrame handed to optimize, compare_variants or walk_forward is read
    on the base operation's clock, as mf.backtest reads it (it was read as UTC first and
    then refused as "read on UTC (mf.load_data)", which the user never called)."""
    op = {"name": "o", "data": {"source": "eurusd_15m", "timezone": "Europe/Athens", "end": "2022-11-15"},
          "instrument": {"symbol": "EURUSD", "pip_size": 0.0001}}
    wall = mf.load_data("eurusd_15m", end="2022-11-16")
    raw = pd.DataFrame(wall.to_numpy(), index=wall.index.rename("time"), columns=wall.columns)
    grid = {"optimization_config": {
        "name": "g", "base_strategy": str(Path("config/runs/sma_cross.yaml").resolve()),
        "parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": {"values": [5, 10]}}}],
        "optimization_target": {"primary_metric": "sharpe_ratio"}}}
    kw = {"operation": op, "backend": "sequential", "progress": False}
    cols = ["sma_1.fast", "total_trades", "sharpe_ratio", "final_equity"]
    from_file = mf.optimize(grid, **kw).all_results[cols]
    pd.testing.assert_frame_equal(mf.optimize(grid, data=raw, **kw).all_results[cols], from_file)
    variants = {"variant_config": {
        "name": "v", "base_strategy": grid["optimization_config"]["base_strategy"],
        "variants": [{"name": "a"}, {"name": "b", "overrides": {"workforce": {"opportunity_workers": [
            {"instance_id": "sma_1", "plugin": "sma_cross", "params": {"fast": 5, "slow": 20}}]}}}]}}
    got = mf.compare_variants(variants, data=raw, **kw)
    want = mf.compare_variants(variants, **kw)
    assert [r.metrics for r in got.results.values()] == [r.metrics for r in want.results.values()]
    wf = {"walk_forward_config": {**grid["optimization_config"],
                                  "windows": {"in_sample_bars": 1000, "out_of_sample_bars": 500, "warmup_bars": 100}}}
    a, b = mf.walk_forward(wf, data=raw, **kw), mf.walk_forward(wf, **kw)
    assert a.oos_metrics == b.oos_metrics and a.oos_equity.equals(b.oos_equity)
