"""The tear sheet's numbers against independent computations, its page, costs, and the
single-run report command.

Oracles: quantstats (the ``dev`` extra) for monthly returns, drawdown periods and the
rolling Sharpe ratio on the run's own daily returns; plain pandas written here for
month-end equity, the costs the fills paid and the deepest bar drawdown. Conventions that
differ from quantstats, translated in the assertions: our drawdown starts at its peak
(quantstats: the first day under water) and recovers on the first day back at the peak
(quantstats ``end``: the last day under water); months without trading days are empty
(quantstats: 0).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SMA = str(ROOT / "config/runs/sma_cross.yaml")
SP500 = str(ROOT / "config/operations/sp500_daily.yaml")


@pytest.fixture(scope="module")
def sma():
    """SMA crossover on the S&P 500 sample (exchange calendar, 0.2 % commission)."""
    import metaflow_nb as mf
    return mf.backtest(SMA, SP500)


@pytest.fixture(scope="module")
def sheet(sma):
    return sma.tearsheet()


@pytest.fixture(scope="module")
def qs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("quantstats")


def test_monthly_returns_match_month_end_equity_in_plain_pandas(sma, sheet):
    # independent: the equity at the last bar of each calendar month (exchange days are UTC
    # days), against the month before; the first month against the starting cash
    eq = sma.equity
    month_end = eq.groupby([eq.index.year, eq.index.month]).last()
    prev = month_end.shift(1).fillna(sma.specs.cash)
    expected = (month_end / prev - 1.0) * 100.0
    got = sheet.monthly.drop(columns="Year").stack()
    got.index = got.index.set_levels([got.index.levels[0], range(1, 13)])
    assert len(got) == len(expected) > 200
    np.testing.assert_allclose(got.to_numpy(), expected.reindex(got.index).to_numpy(), rtol=1e-9, atol=1e-9)
    year_end = eq.groupby(eq.index.year).last()
    yearly = (year_end / year_end.shift(1).fillna(sma.specs.cash) - 1.0) * 100.0
    np.testing.assert_allclose(sheet.monthly["Year"].to_numpy(), yearly.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(sheet.yearly["return_pct"].to_numpy(), yearly.to_numpy(), rtol=1e-9)


def test_each_years_deepest_drawdown_starts_from_the_years_opening_equity(sma, sheet):
    """hunt28 F1: the year's return runs from the last equity of the year before (the cash
    for the first year), so its deepest drawdown must too; it restarted its peak at the
    year's first bar, and 2009 lost 37.20 % with a deepest drawdown of 36.50 %."""
    from metaflow_nb.services.tearsheet import yearly_returns

    eq = sma.equity
    prev = sma.specs.cash
    expected = {}
    for year, e in eq.groupby(eq.index.year):
        peak = np.maximum.accumulate(np.concatenate([[prev], e.to_numpy()]))
        expected[year] = float(((peak[1:] - e.to_numpy()) / peak[1:]).max() * 100.0)
        prev = float(e.iloc[-1])
    got = sheet.yearly["max_drawdown_pct"]
    np.testing.assert_allclose(got.to_numpy(), [expected[y] for y in got.index], rtol=1e-12)
    # a year cannot lose more than its deepest drawdown
    losing = sheet.yearly["return_pct"] < 0
    assert (sheet.yearly.loc[losing, "max_drawdown_pct"] >= -sheet.yearly.loc[losing, "return_pct"] - 1e-9).all()
    # by hand: 100 at the end of 2023, 50 on the first day of 2024, then 60
    e = pd.Series([100.0, 100.0, 50.0, 60.0], index=pd.to_datetime(["2023-12-28", "2023-12-29", "2024-01-02",
                                                                    "2024-01-03"]))
    daily = e / e.shift(1).fillna(100.0) - 1.0
    out = yearly_returns(daily, e, start_value=100.0)
    assert out["max_drawdown_pct"].tolist() == [0.0, 50.0] and out["return_pct"].round(6).tolist() == [0.0, -40.0]


def test_a_ruined_run_has_a_tear_sheet_for_the_years_after_its_ruin():
    """hunt34 F1: the year after a ruin opens at equity 0; its drawdown divided by that
    peak and the tear sheet (res.report, metaflow-nb report) raised ZeroDivisionError."""
    import metaflow_nb as mf
    from metaflow_nb.services.tearsheet import yearly_returns

    e = pd.Series([100.0, 0.0, 0.0, 0.0], index=pd.to_datetime(["2023-12-28", "2023-12-29", "2024-01-02",
                                                                 "2024-01-03"]))
    out = yearly_returns(pd.Series([0.0, -1.0, 0.0, 0.0], index=e.index), e, start_value=100.0)
    assert out["max_drawdown_pct"].tolist() == [100.0, 0.0]   # nothing left to fall in 2024
    # a 20x long wiped out by a crash in December, the data going on into January
    idx = pd.bdate_range("2020-12-01", "2021-01-29")
    close = np.r_[[100.0, 99, 98, 97, 96, 95, 96, 97, 98, 99, 101, 103, 103, 103], np.full(len(idx) - 14, 50.0)]
    bars = pd.DataFrame({"open": np.r_[100.0, close[:-1]], "close": close}, index=idx)
    bars["high"], bars["low"] = bars[["open", "close"]].max(axis=1), bars[["open", "close"]].min(axis=1)
    strategy = {"name": "s", "direction": "long_only", "workforce": {
        "opportunity_workers": [{"instance_id": "sma_1", "plugin": "sma_cross", "params": {"fast": 2, "slow": 5}}],
        "planning_workers": {"size_planning": [{"instance_id": "size_1", "plugin": "all_in_sizer"}]}}}
    res = mf.backtest(strategy, {"name": "o", "cash": 10000, "leverage": 20, "data": {"calendar": "exchange"}},
                      data=bars)
    assert res.metrics["final_equity"] == 0.0 and res.trades["exit_reason"].iloc[-1] == "OUT_OF_MONEY"
    yearly = res.tearsheet().yearly
    assert yearly.loc[2020, "max_drawdown_pct"] == 100.0 and yearly.loc[2021, "max_drawdown_pct"] == 0.0


def test_monthly_returns_match_quantstats(sheet, qs):
    theirs = qs.stats.monthly_returns(sheet.daily, eoy=True, compounded=True) * 100.0
    ours = sheet.monthly
    assert list(theirs.index.astype(int)) == list(ours.index)
    for k, month in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")):
        mine = ours.iloc[:, k].to_numpy(float)
        np.testing.assert_allclose(np.nan_to_num(mine), theirs[month].to_numpy(float), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours["Year"].to_numpy(float), theirs["EOY"].to_numpy(float), rtol=1e-9)


def test_worst_drawdowns_match_quantstats_and_the_metric(sma, sheet, qs):
    from metaflow_nb.services.tearsheet import drawdown_periods
    # on bar equity (the tear sheet's table): the deepest is the run's max drawdown
    assert sheet.drawdowns["depth_pct"].iloc[0] == pytest.approx(sma.metrics["max_drawdown_pct"], rel=1e-12)
    assert list(sheet.drawdowns["depth_pct"]) == sorted(sheet.drawdowns["depth_pct"], reverse=True)
    assert len(sheet.drawdowns) == 5
    # on daily equity, period by period against quantstats
    daily = sheet.daily
    equity = sma.specs.cash * (1.0 + daily).cumprod()
    ours = drawdown_periods(equity, top=5, start_value=sma.specs.cash)
    dd = qs.stats.to_drawdown_series(daily)
    theirs = qs.stats.drawdown_details(dd).sort_values("max drawdown").head(5)
    np.testing.assert_allclose(ours["depth_pct"].to_numpy(), -theirs["max drawdown"].to_numpy(float), rtol=1e-9)
    days = daily.index
    for (_, o), (_, t) in zip(ours.iterrows(), theirs.iterrows()):
        assert o["trough"] == pd.Timestamp(t["valley"])
        # ours starts at the peak, theirs on the next day (the first under water)
        assert days[days.get_loc(o["start"]) + 1] == pd.Timestamp(t["start"])
        if pd.isna(o["recovery"]):
            assert pd.Timestamp(t["end"]) == days[-1]
        else:   # ours recovers on the day after their last day under water
            assert days[days.get_loc(pd.Timestamp(t["end"])) + 1] == o["recovery"]


def test_rolling_sharpe_matches_quantstats_with_the_calendars_window(sheet, qs):
    assert sheet.periods_per_year == 252.0 and sheet.window == 126
    theirs = qs.stats.rolling_sharpe(sheet.daily, rolling_period=sheet.window, periods_per_year=252,
                                     prepare_returns=False)
    ours = sheet.rolling_sharpe
    both = ours.notna() & theirs.notna()
    assert both.sum() > 4000
    np.testing.assert_allclose(ours[both].to_numpy(), theirs[both].to_numpy(float), rtol=1e-9, atol=1e-12)
    # plain pandas for the volatility: sample std of the window, annualised, in percent
    vol = sheet.daily.rolling(126).std() * math.sqrt(252) * 100.0
    np.testing.assert_allclose(sheet.rolling_volatility.dropna().to_numpy(), vol.dropna().to_numpy(), rtol=1e-9)


def test_trade_stats_split_long_and_short(sma, sheet):
    t = sma.trades
    st = sheet.trades
    assert st.at["trades", "all"] == len(t) == st.at["trades", "long"] + st.at["trades", "short"]
    for side in ("long", "short"):
        sub = t[t["direction"] == side]
        assert st.at["net_pnl", side] == pytest.approx(sub["pnl"].sum())
        assert st.at["win_rate_pct", side] == pytest.approx((sub["pnl"] > 0).mean() * 100)
        wins, losses = sub.loc[sub["pnl"] > 0, "pnl"].sum(), -sub.loc[sub["pnl"] < 0, "pnl"].sum()
        assert st.at["profit_factor", side] == pytest.approx(wins / losses)
    assert st.at["profit_factor", "all"] == pytest.approx(sma.metrics["profit_factor"])
    assert st.at["commission_paid", "all"] == pytest.approx(t["commission"].sum())


def test_slippage_paid_counts_session_and_time_stop_exits():
    """Session exits fill at the bar's close and time stops at the open, both paying
    slippage: the costs count every such fill (the session exit's reason is SESSION_EXIT)."""
    import yaml

    import metaflow_nb as mf
    strategy = yaml.safe_load(Path(SMA).read_text())
    strategy["workforce"]["planning_workers"]["exit_planning"] += [
        {"instance_id": "time_1", "plugin": "time_stop_exit", "params": {"bars": 40}},
        {"instance_id": "session_1", "plugin": "session_exit", "params": {"at": "21:45", "zone": "UTC"}}]
    op = yaml.safe_load((ROOT / "config/operations/ict_backtest.yaml").read_text())
    op.update(commission=0.0, slippage=0.0002, leverage=1)
    res = mf.backtest(strategy, op, start="2023-03-01", end="2023-05-01")
    t, data = res.trades, res.data
    reasons = set(t["exit_reason"])
    assert {"SESSION_EXIT", "TIME_STOP", "SIGNAL"} <= reasons <= {"SESSION_EXIT", "TIME_STOP", "SIGNAL", "END_OF_DATA"}
    d = np.where(t["direction"] == "long", 1.0, -1.0)
    at_close = (t["exit_reason"] == "SESSION_EXIT").to_numpy()
    exit_ref = np.where(at_close, data["close"].to_numpy()[t["exit_bar"]], data["open"].to_numpy()[t["exit_bar"]])
    assert np.allclose(t["exit_price"], exit_ref * (1.0 - d * 0.0002), rtol=1e-12, atol=0.0)
    entry_ref = data["open"].to_numpy()[t["entry_bar"]]
    expected = float((t["size"] * 0.0002 * (entry_ref + exit_ref)).sum())
    c = res.costs()
    assert c.slipped_fills == 2 * len(t)
    assert c.slippage_paid == pytest.approx(expected, rel=1e-9)


def test_slippage_paid_is_what_the_fills_paid():
    import metaflow_nb as mf
    op = {"data": {"source": "sp500_daily", "calendar": "exchange"}, "cash": 10000, "commission": 0.0,
          "slippage": 0.001}
    res = mf.backtest(SMA, op, start="2015-01-01")
    c = res.costs()
    t, opens = res.trades, res.data["open"].to_numpy()
    # SMA crossover: market entries and signal (or end-of-data) exits at the bar's open
    assert set(t["exit_reason"]) <= {"SIGNAL", "END_OF_DATA"} and len(t) > 10
    expected = float((t["size"] * 0.001 * (opens[t["entry_bar"]] + opens[t["exit_bar"]])).sum())
    assert c.slippage_paid == pytest.approx(expected, rel=1e-9)
    assert c.slipped_fills == 2 * len(t) and c.commission_paid == 0.0
    # the short opened on 2018-12-17 is still open: its entry slippage is in the equity only
    assert res.position.iloc[-1] != 0 and c.open_at_end == 1
    assert c.text() == (f"costs: commission 0, slippage 0.1 % (paid {c.slippage_paid:,.2f}); "
                        f"paid by closed trades (1 position open at the end)")
    assert c.frame()["paid"].tolist() == [f"0.00 (closed trades)", f"{c.slippage_paid:,.2f} (closed trades)"]
    # finalized, the same position is a closed trade and counts
    closed = mf.backtest(SMA, {**op, "finalize_trades": True}, start="2015-01-01").costs()
    assert closed.open_at_end == 0 and closed.slippage_paid > c.slippage_paid
    assert closed.text() == f"costs: commission 0, slippage 0.1 % (paid {closed.slippage_paid:,.2f})"
    free = mf.backtest(SMA, {**op, "slippage": 0.0}, start="2015-01-01")
    assert free.costs().text() == "costs: none (commission 0, slippage 0)"
    assert repr(free).splitlines()[-1] == "costs: none (commission 0, slippage 0)"
    assert "costs: none (commission 0, slippage 0)" in free._repr_html_()


def test_report_writes_an_offline_page_and_every_trade_as_csv(sma, tmp_path):
    from metaflow_nb.reporting.export import remote_references
    page = sma.report(tmp_path, log=True)
    assert page.parent == tmp_path and page.name == f"sma_cross-{sma.run_id[:8]}.html"
    text = page.read_text()
    assert remote_references(text) == [] and "<script" not in text.lower()
    for section in ("Costs", "Equity against buy-and-hold", "Monthly and yearly returns", "Return distribution",
                    "Rolling Sharpe ratio and volatility", "Worst drawdowns", "Trade statistics", "Parameters",
                    "costs: commission 0.2 % per side (paid "):
        assert section in text, section
    csv = page.with_name(page.stem + "_trades.csv")
    assert f"href='{csv.name}'" in text
    back = pd.read_csv(csv)
    assert len(back) == len(sma.trades) and np.allclose(back["pnl"], sma.trades["pnl"])
    assert text.count("<img src='data:image/png;base64,") == 4
    named = sma.report(tmp_path / "x" / "mine.html", title="A <b> title")
    assert named.name == "mine.html" and "A &lt;b&gt; title" in named.read_text()


def _cli(argv: list[str]) -> tuple[int, str, str]:
    from metaflow_nb.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_report_command_for_one_strategy(tmp_path):
    rc, out, err = _cli(["report", SMA, "--data", "sp500_daily", "--out", str(tmp_path), "--json"])
    assert rc == 0, err
    doc = json.loads(out)
    assert Path(doc["page"]).is_file() and Path(doc["trades_csv"]).is_file()
    assert doc["costs"] == {"commission": 0.0, "slippage": 0.0, "commission_paid": 0.0, "slippage_paid": 0.0,
                            "open_at_end": 1}
    rc, out, err = _cli(["report", SMA, "--operation", SP500, "--out", str(tmp_path)])
    assert rc == 0 and Path(out.strip()).is_file() and "costs: commission 0.2 % per side" in err


@pytest.mark.parametrize("argv, says", [
    (["report", SMA, "--data", "no_such_sample"], "no_such_sample"),
    (["report", SMA, "--operation", "/no/such/op.yaml"], "/no/such/op.yaml"),
    (["report", str(ROOT / "config/variants/exit_strategy_test.yaml"), "--data", "sp500_daily"], "--data"),
    (["report", SP500], "is an operation (keys cash, commission, data, instrument, slippage), not a strategy"),
])
def test_report_command_bad_input_exits_2_with_one_line(argv, says):
    rc, out, err = _cli(argv)
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metaflow-nb: error: ") and says in lines[0]


def test_summaries_state_costs():
    from types import SimpleNamespace as S

    from metaflow_nb.services.tearsheet import specs_costs_text
    rc, out, _ = _cli(["backtest", "--strategy", SMA, "--data", "sp500_daily"])
    assert rc == 0 and "costs: none (commission 0, slippage 0)" in out.splitlines()
    text = specs_costs_text({"a": S(commission=0.0, slippage=0.0), "b": S(commission=0.001, slippage=0.0)})
    assert text == "costs: a: none (commission 0, slippage 0); b: commission 0.1 % per side, slippage 0"


def test_a_pages_facts_and_the_explorers_header_name_timeframe_clock_and_fills():
    """hunt20 F3: a 1h run resampled from 15m bars, intrabar-resolved, read on a broker
    clock, read 'Data eurusd_15m (6107 bars ...)' like the pessimistic run beside it."""
    import re

    import metaflow_nb as mf
    from metaflow_nb.services.tearsheet_page import _page_html

    def facts(page: str) -> dict:
        import html
        return {k: html.unescape(v) for k, v in
                re.findall(r"<tr><th>([^<]*)</th><td style='text-align:left'>([^<]*)</td></tr>", page)}

    plain = mf.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_1h.yaml")
    finer = mf.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_1h_intrabar.yaml")
    a, b = facts(_page_html(plain)), facts(_page_html(finer))
    assert a["Data"].startswith("eurusd_15m resampled to 1h (6107 bars")
    assert a["Clock"] == "Europe/Athens (the file's timestamps), shown in UTC"
    assert a["Ambiguous bars"] == "the stop first (no finer bars)"
    assert b["Ambiguous bars"] == "decided by the finer bars of the source (eurusd_15m)"
    base = facts(_page_html(mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")))
    assert "Clock" not in base and base["Data"].startswith("sp500_daily (")
    ex = mf.explore("config/runs/ict_smc_strategy.yaml", "config/operations/ict_1h_intrabar.yaml", run=False,
                    background=False)
    try:
        assert "eurusd_15m resampled to 1h" in ex.header.value and "finer bars" in ex.header.value
    finally:
        ex.close()


def test_tear_sheet_costs_and_specs_show_themselves_briefly_in_a_notebook(sma):
    """hunt19 F13: repr(res.tearsheet()) printed every Series and DataFrame inline; the tear
    sheet, its costs and BuildSpecs had no notebook view."""
    ts = sma.tearsheet()
    text = repr(ts)
    assert text.startswith("TearSheet(") and "\n" not in text and len(text) < 300
    assert f"{len(ts.daily)} days" in text and f"{len(ts.drawdowns)} drawdowns" in text
    page = ts._repr_html_()
    assert page.count("<table") >= 4 and "Monthly returns" in page and "Worst drawdowns" in page
    assert ts.costs.text().replace("'", "&#x27;") in ts.costs._repr_html_()
    specs_html = sma.specs._repr_html_()
    assert sma.specs.run_id in specs_html and "sma_1" in specs_html and "<table" in specs_html


def test_a_run_whose_returns_never_move_says_so_and_draws_its_volatility():
    """hunt27 F3, F4: a run that never trades over 1,006 days said "fewer than 126 trading
    days: no rolling window" (the Sharpe ratio is undefined because nothing moves), drew
    no volatility (0 %, a number), and its returns table spelled skew and kurtosis nan."""
    import metaflow_nb as mf
    from metaflow_nb.services.tearsheet import tearsheet
    from metaflow_nb.services.tearsheet_page import _distribution_table, rolling_figure

    short_run = tearsheet(mf.backtest(SMA, SP500, start="2018-11-01"))
    still = tearsheet(mf.backtest(SMA, SP500, start="2015-01-01", end="2018-12-31",
                                  **{"sma_1__fast": 998, "sma_1__slow": 999}))
    assert len(still.daily) > still.window and still.rolling_sharpe.notna().sum() == 0
    fig = rolling_figure(still)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("do not move" in t for t in texts) and not any("fewer than" in t for t in texts)
    vol = fig.axes[1].lines[0].get_ydata()
    assert len(vol) and np.nanmax(np.abs(vol)) == 0.0
    table = _distribution_table(still)
    assert "nan" not in table and "<td>n/a</td>" in table
    short = [t.get_text() for ax in rolling_figure(short_run).axes for t in ax.texts]
    assert any("fewer than" in t for t in short)


def test_one_days_returns_have_no_spread():
    """hunt73 F4: a run of one trading day showed 'std nan %' beside skew and kurtosis n/a."""
    from types import SimpleNamespace

    from metaflow_nb.services.tearsheet_page import _distribution_table

    one = SimpleNamespace(daily=pd.Series([0.01], index=pd.to_datetime(["2024-01-02"])))
    html_ = _distribution_table(one)
    assert "nan" not in html_ and html_.count("n/a") == 3


def test_a_pages_data_facts_name_a_users_file_not_where_it_sits(tmp_path):
    """hunt118 F4: a page showed the data file's absolute path: the same report from another
    checkout had other pages (and manifest file hashes), and a mailed page told the author's
    folders. The file's name says it; its fingerprint is on the page beside it."""
    import metaflow_nb as mf
    from metaflow_nb.services.tearsheet_page import data_facts

    hourly = mf.load_data("eurusd_15m").resample("1h").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}).dropna()
    hourly.to_csv(tmp_path / "h1.csv")
    mf.load_data("eurusd_15m").to_csv(tmp_path / "m15.csv")
    specs = mf.build_specs("config/runs/sma_cross.yaml",
                           {"data": {"source": str(tmp_path / "h1.csv"), "intrabar": str(tmp_path / "m15.csv")}})
    facts = dict(data_facts(specs, hourly["close"]))
    assert facts["Data"].startswith("h1.csv (") and str(tmp_path) not in str(facts)
    assert facts["Ambiguous bars"] == "decided by the finer bars of m15.csv"
