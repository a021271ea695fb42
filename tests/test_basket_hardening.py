"""Bad and odd input around baskets, found by exploratory testing: each case exits 2 with
one line naming the file (or the instrument) and what was expected, or gives the same
tables a single run gives."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import metaflow_nb as mf
from metaflow_nb.cli import main
from metaflow_nb.errors import ConfigError, DataError
from metaflow_nb.services.portfolio import bar_length, run_portfolio

STRATEGY = "config/runs/sma_cross.yaml"


def refused(argv: list[str], capsys) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("metaflow-nb: error: "), err
    return err


def bars(n: int = 300, start: str = "2020-01-01", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame({"open": c, "high": c * 1.01, "low": c * 0.99, "close": c, "volume": 1.0},
                        index=pd.date_range(start, periods=n, freq="D"))


def test_a_default_to_csv_file_with_offsets_beside_a_naive_one_is_refused(tmp_path, capsys):
    # the offsets sit in pandas' unnamed first column: they went unseen, and the naive file was read as UTC
    aware = bars()
    aware.index = aware.index.tz_localize("America/New_York")
    aware.to_csv(tmp_path / "AWARE.csv")
    bars(seed=1).rename_axis("date").to_csv(tmp_path / "NAIVE.csv")
    (tmp_path / "op.yaml").write_text(f"universe: {{path: {tmp_path}}}\n")
    err = refused(["backtest", "--strategy", STRATEGY, "--operation", str(tmp_path / "op.yaml")], capsys)
    assert "mixed time zones" in err and "'AWARE'" in err and "'NAIVE'" in err


def test_an_empty_symbols_list_is_refused_in_both_modes(tmp_path, capsys):
    for mode in ("independent", "portfolio"):
        op = tmp_path / f"{mode}.yaml"
        op.write_text(f"mode: {mode}\nuniverse: {{path: us_stocks, symbols: []}}\n")
        err = refused(["backtest", "--strategy", STRATEGY, "--operation", str(op)], capsys)
        assert f"{op}: universe.symbols: is empty; list at least one symbol" in err


def test_universe_file_names_are_symbols_or_refused(tmp_path, capsys):
    bars().rename_axis("date").to_csv(tmp_path / "IBM.csv")
    bars(seed=2).rename_axis("date").to_csv(tmp_path / ".csv")       # hidden: skipped
    bars(seed=3).rename_axis("date").to_csv(tmp_path / "._IBM.csv")  # macOS's resource fork: skipped
    bars(seed=4).rename_axis("date").to_csv(tmp_path / "^GSPC.csv")  # an index ticker
    res = mf.backtest(STRATEGY, {"universe": {"path": str(tmp_path)}})
    assert res.symbols == ["IBM", "^GSPC"] and res.starting_cash == 20_000
    assert mf.backtest(STRATEGY, {"instruments": [{"symbol": "^GSPC", "source": str(tmp_path / "^GSPC.csv")}]}).symbols \
        == ["^GSPC"]
    bars().rename_axis("date").to_csv(tmp_path / "BRK B.csv")
    (tmp_path / "op.yaml").write_text(f"universe: {{path: {tmp_path}}}\n")
    err = refused(["backtest", "--strategy", STRATEGY, "--operation", str(tmp_path / "op.yaml")], capsys)
    assert "BRK B.csv: the file name 'BRK B' is not a symbol" in err


def test_close_only_on_a_bundled_sample_with_ranges_is_refused():
    # it was silently ignored (the same data as a file was refused)
    with pytest.raises(Exception, match=r"instrument 'SPX': sp500_daily: .*prices: close_only is for files with a "
                                        r"close only"):
        mf.backtest(STRATEGY, {"instruments": [{"symbol": "SPX", "source": "sp500_daily", "prices": "close_only"}]})


@pytest.mark.parametrize("mode", ["independent", "portfolio"])
def test_basket_trades_keep_the_single_runs_dtypes_when_an_instrument_never_trades(tmp_path, mode):
    # the empty trades table was all float64: concatenated, ids became floats and times objects
    bars(n=300).rename_axis("date").to_csv(tmp_path / "A.csv")
    bars(n=40, seed=5).rename_axis("date").to_csv(tmp_path / "B.csv")   # too short for slow=50: no trade
    res = run_portfolio(STRATEGY, {"mode": mode, "universe": {"path": str(tmp_path)}})
    single = mf.backtest(STRATEGY, data=str(tmp_path / "A.csv"))
    assert len(res.trades) > 0 and (res.trades["symbol"] == "A").all()
    assert res.trades.drop(columns="symbol").dtypes.to_dict() == single.trades.dtypes.to_dict()
    empty = mf.backtest(STRATEGY, data=str(tmp_path / "B.csv")).trades
    assert empty.empty and empty.dtypes.to_dict() == single.trades.dtypes.to_dict()


def test_errors_of_a_basket_name_the_operation_and_the_instrument(tmp_path, capsys):
    op = tmp_path / "ranked.yaml"
    op.write_text("mode: portfolio\nrank: score\nuniverse: {path: us_stocks, symbols: [IBM, MSFT]}\n")
    strategy = tmp_path / "no_score.yaml"
    doc = {"name": "no score", "workforce": {
        "opportunity_workers": [{"instance_id": "x_1", "plugin": "test_scripted", "params": {"longs": [60]}}]}}
    strategy.write_text(json.dumps(doc))
    import engine_helpers  # noqa: F401  registers test_scripted, which has no score
    err = refused(["backtest", "--strategy", str(strategy), "--operation", str(op)], capsys)
    assert err.startswith(f"metaflow-nb: error: {op}: rank: score: opportunity worker 'x_1'")
    op2 = tmp_path / "shared.yaml"
    op2.write_text("mode: portfolio\nuniverse: {path: us_stocks, symbols: [IBM, MSFT]}\n")
    import yaml
    bp = yaml.safe_load(Path(STRATEGY).read_text())
    bp["workforce"]["planning_workers"]["exit_planning"].append(
        {"instance_id": "trail_1", "plugin": "trailing_stop", "params": {"mode": "percent", "percent": 5}})
    (tmp_path / "trail.yaml").write_text(yaml.safe_dump(bp))
    err = refused(["backtest", "--strategy", str(tmp_path / "trail.yaml"), "--operation", str(op2)], capsys)
    assert err.startswith(f"metaflow-nb: error: {op2}: mode: portfolio: instrument 'IBM': the strategy uses a "
                          f"trailing stop")


def test_check_causality_on_a_basket_says_it_replays_one_instrument(capsys):
    err = refused(["check-causality", STRATEGY, "--operation", "config/operations/us_stocks_basket.yaml"], capsys)
    assert "config/operations/us_stocks_basket.yaml: a basket operation" in err and "unknown key" not in err


def test_optimize_basket_takes_the_documented_keywords(tmp_path):
    op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
    space = {"sma_1": {"fast": [5, 10], "slow": [30]}}
    fresh = mf.optimize_basket(STRATEGY, op, space, store=tmp_path / "store", constraints={"min_trades": 1000})
    assert fresh.message.startswith("no combination satisfies the constraints")
    again = mf.optimize_basket(STRATEGY, op, space, store=tmp_path / "store", resume=True,
                               constraints={"min_trades": 1000})
    pd.testing.assert_frame_equal(again.table, fresh.table)
    low = mf.optimize_basket(STRATEGY, op, space, target="max_drawdown_pct", maximize=False)
    assert low.table["max_drawdown_pct"].iloc[0] == low.table["max_drawdown_pct"].min()


def test_an_optimization_over_a_basket_names_the_strategy_file_of_a_bad_param(tmp_path, capsys):
    import yaml
    bp = yaml.safe_load(Path(STRATEGY).read_text())
    bp["workforce"]["opportunity_workers"][0]["params"] = {"fast": 50, "slow": 10}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bp))
    cfg = tmp_path / "opt.yaml"
    cfg.write_text(json.dumps({"optimization_config": {
        "name": "x", "base_strategy": str(tmp_path / "bad.yaml"), "base_operation": "config/operations/us_stocks_basket.yaml",
        "parameter_space": [{"worker_instance": "exit_1", "parameters": {"exclusive_orders": {"values": [True]}}}]}}))
    err = refused(["optimize", str(cfg), "--no-progress"], capsys)
    assert err.startswith(f"metaflow-nb: error: {tmp_path / 'bad.yaml'}: workforce.opportunity_workers[0].params"), err


def test_basket_summaries_state_their_costs_and_outputs_of_two_modes_do_not_overwrite(tmp_path, capsys):
    assert main(["backtest", "--strategy", STRATEGY, "--operation", "config/operations/us_stocks_basket.yaml"]) == 0
    out = capsys.readouterr().out
    assert "costs: AAPL, FB, IBM, MSFT, NASDAQ: commission 0.1 % per side" in out \
        and "GOOG: commission 0.2 % per side" in out
    res = mf.backtest(STRATEGY, "config/operations/us_stocks_basket.yaml")
    assert "costs:" in repr(res) and "mf-costs" in res._repr_html_()
    folders = set()
    for mode in ("independent", "portfolio"):
        op = tmp_path / f"{mode}.yaml"
        op.write_text(f"name: two\nmode: {mode}\nuniverse: {{path: us_stocks, symbols: [IBM, MSFT]}}\n")
        assert main(["backtest", "--strategy", STRATEGY, "--operation", str(op), "--out", str(tmp_path / "o")]) == 0
        capsys.readouterr()
        folders = {p.name for p in (tmp_path / "o").iterdir()}
    assert len(folders) == 2 and {f.split("-")[1] for f in folders} == {"independent", "portfolio"}
    with pytest.raises(ConfigError, match=r"report: top=-3; expected a whole number >= 0"):
        res.report(tmp_path / "page", top=-3)
    assert not (tmp_path / "page").exists()


def test_an_impossible_unquoted_date_in_yaml_names_the_file_and_line(tmp_path, capsys):
    # PyYAML's own timestamp constructor raised a bare ValueError: a traceback, exit 1
    for text, words in (("data: {source: sp500_daily, start: 2015-02-30}\n", "'2015-02-30' is not a date"),
                        ("name: x\ndata:\n  end: 2015-13-01\n", "(line 3, column 8): '2015-13-01' is not a date")):
        op = tmp_path / "op.yaml"
        op.write_text(text)
        err = refused(["backtest", "--strategy", STRATEGY, "--operation", str(op)], capsys)
        assert err.startswith(f"metaflow-nb: error: {op}: malformed YAML") and words in err, err
    op.write_text("data: {source: sp500_daily, start: 2015-02-27}\n")   # a real one still reads as a date
    assert main(["backtest", "--strategy", STRATEGY, "--operation", str(op), "--json"]) == 0
    capsys.readouterr()


def test_a_negative_seed_is_refused(tmp_path, capsys):
    # it silently turned the variants' significance tests off; check-causality crashed
    op = tmp_path / "op.yaml"
    op.write_text("data: {source: sp500_daily}\nseed: -1\n")
    err = refused(["backtest", "--strategy", STRATEGY, "--operation", str(op)], capsys)
    assert f"{op}: seed: must be >= 0" in err
    # argparse's own usage errors are one line too, in its words
    assert main(["check-causality", STRATEGY, "--data", "sp500_daily", "--seed", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "metaflow-nb check-causality: argument --seed: '-1' is not a whole number >= 0"
    with pytest.raises(ConfigError, match=r"^seed: -2; expected a whole number >= 0"):
        mf.check_causality(STRATEGY, data="sp500_daily", cuts=2, seed=-2)


def _write_bars(folder: Path, files: dict[str, pd.DatetimeIndex], fmt: str = "%Y-%m-%d") -> None:
    """One CSV of rising bars per symbol, stamped ``fmt``, in ``folder``."""
    for sym, idx in files.items():
        c = np.linspace(50, 60, len(idx))
        pd.DataFrame({"date": idx.strftime(fmt), "open": c, "high": c * 1.01, "low": c * 0.99,
                      "close": c}).to_csv(folder / f"{sym}.csv", index=False)


def _trailing_strategy(tmp_path: Path) -> Path:
    import yaml
    bp = yaml.safe_load(Path(STRATEGY).read_text())
    bp["workforce"]["planning_workers"]["exit_planning"].append(
        {"instance_id": "trail_1", "plugin": "trailing_stop", "params": {"mode": "percent", "percent": 5}})
    (tmp_path / "trail.yaml").write_text(yaml.safe_dump(bp))
    return tmp_path / "trail.yaml"


@pytest.mark.parametrize("engine", ["batch", "general"])
def test_an_optimization_over_a_shared_account_names_the_operation_of_a_refusal(tmp_path, capsys, engine):
    # a single run named the operation file; the sweep over the same basket did not (batch: no file at all;
    # general: '<operation>', the basket being loaded once before the combinations ran)
    strategy = _trailing_strategy(tmp_path)
    op = tmp_path / "shared.yaml"
    op.write_text("mode: portfolio\nuniverse: {path: us_stocks, symbols: [IBM, MSFT]}\ndata: {start: '2012-01-01'}\n")
    refusal = (f"{op}: mode: portfolio: instrument 'IBM': the strategy uses a trailing stop, which the portfolio loop "
               "does not apply yet; run it with mode: independent")
    with pytest.raises(ConfigError) as info:
        mf.optimize_basket(str(strategy), str(op), {"sma_1": {"fast": [5, 10], "slow": [30]}}, engine=engine)
    assert str(info.value) == refusal
    cfg = tmp_path / "opt.yaml"
    cfg.write_text(json.dumps({"optimization_config": {
        "name": "x", "base_strategy": str(strategy), "base_operation": str(op), "parallel": {"engine": engine},
        "parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": {"values": [5, 10]}}}]}}))
    err = refused(["optimize", str(cfg), "--no-progress"], capsys)
    assert refusal in err, err
    # a walk-forward's in-sample searches run on slices of the basket: they keep its file
    wf = tmp_path / "wf.yaml"
    wf.write_text(json.dumps({"walk_forward_config": {
        "name": "x", "base_strategy": str(strategy), "base_operation": str(op), "parallel": {"engine": engine},
        "parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": {"values": [5, 10]}}}],
        "windows": {"in_sample_bars": 150, "out_of_sample_bars": 50, "step_bars": 50, "warmup_bars": 0}}}))
    err = refused(["walk-forward", str(wf), "--no-progress"], capsys)
    assert refusal in err, err
    if engine == "batch":
        # a variant comparison's portfolio runs, each a failed variant
        variants = tmp_path / "variants.yaml"
        variants.write_text(json.dumps({"variant_config": {
            "name": "x", "base_strategy": str(strategy), "base_operation": str(op), "variants": [{"name": "a"}]}}))
        run = mf.compare_variants(str(variants), progress=False).variants[0]
        assert run.outcome.error_message == refusal


def test_an_optimization_ranked_by_score_names_the_operation_of_a_worker_without_one(tmp_path):
    # rank: score is refused while the sweep packs the shared account's setups: it named no file
    import yaml

    import engine_helpers  # noqa: F401  registers test_scripted, which has no score
    op = tmp_path / "ranked.yaml"
    op.write_text("mode: portfolio\nrank: score\nuniverse: {path: us_stocks, symbols: [IBM, MSFT]}\n")
    bp = yaml.safe_load(Path(STRATEGY).read_text())
    bp["workforce"]["opportunity_workers"] = [{"instance_id": "x_1", "plugin": "test_scripted",
                                               "params": {"longs": [60]}}]
    (tmp_path / "no_score.yaml").write_text(yaml.safe_dump(bp))
    for engine in ("batch", "general"):
        with pytest.raises(ConfigError) as info:
            mf.optimize_basket(str(tmp_path / "no_score.yaml"), str(op), {"exit_1": {"exclusive_orders": [True, False]}},
                               engine=engine)
        assert str(info.value).startswith(f"{op}: rank: score: opportunity worker 'x_1'"), (engine, str(info.value))


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "  ", "x:*?"])
def test_out_folder_names_are_made_safe_like_the_report_files(tmp_path, capsys, name):
    """A blueprint's or a basket's ``name`` becomes one folder directly under ``--out``: no
    ``..`` escape, no nested folders, no characters a file system refuses."""
    single = tmp_path / "s.yaml"
    single.write_text(f"name: {name!r}\ndirection: long_only\nworkforce:\n  opportunity_workers:\n"
                      "    - {instance_id: sma_1, plugin: sma_cross, params: {fast: 5, slow: 20}}\n")
    basket = tmp_path / "b.yaml"
    basket.write_text(f"name: {name!r}\nmode: independent\nuniverse: {{path: us_stocks, symbols: [IBM, MSFT]}}\n")
    out = tmp_path / "out" / "inner"
    assert main(["backtest", "--strategy", str(single), "--data", "sp500_daily", "--out", str(out)]) == 0
    assert main(["backtest", "--strategy", STRATEGY, "--operation", str(basket), "--out", str(out)]) == 0
    capsys.readouterr()
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("result.json"))
    assert len(written) == 2
    for rel in written:
        folder = rel.split("/")
        assert folder[:2] == ["out", "inner"] and len(folder) == 4, rel
        assert all(c.isalnum() or c in "_-" for c in folder[2]), rel


def test_a_shared_account_over_bars_of_different_lengths_is_refused(tmp_path, capsys):
    """hunt29 F2: a daily bar is stamped at its open (00:00) and its close went into the
    shared account there: an hourly instrument's drawdown threat, sizing and slots saw the
    day's close at 10:00, hours before it prints. Refused in mode portfolio, naming both
    instruments, their files and bar lengths; independent accounts do not share, and run."""
    bars(120).rename_axis("date").to_csv(tmp_path / "DAILY.csv")
    hourly = bars(24 * 120, seed=1)
    hourly.index = pd.date_range("2020-01-01", periods=24 * 120, freq="h")
    hourly.rename_axis("date").to_csv(tmp_path / "HOURLY.csv")
    (tmp_path / "op.yaml").write_text(f"mode: portfolio\nuniverse: {{path: {tmp_path}}}\n")
    err = refused(["backtest", "--strategy", STRATEGY, "--operation", str(tmp_path / "op.yaml")], capsys)
    assert str(tmp_path / "op.yaml") in err and "'DAILY'" in err and "'HOURLY'" in err
    assert "1-day bars" in err and "1-hour bars" in err and "mode: independent" in err
    (tmp_path / "op.yaml").write_text(f"mode: independent\nuniverse: {{path: {tmp_path}}}\n")
    assert main(["backtest", "--strategy", STRATEGY, "--operation", str(tmp_path / "op.yaml")]) == 0
    # the same length with other gaps (weekdays only beside every day) is one basket
    weekdays = bars(120, seed=2)
    weekdays = weekdays[weekdays.index.day_of_week < 5]
    weekdays.rename_axis("date").to_csv(tmp_path / "HOURLY.csv")
    (tmp_path / "op.yaml").write_text(f"mode: portfolio\nuniverse: {{path: {tmp_path}}}\n")
    assert main(["backtest", "--strategy", STRATEGY, "--operation", str(tmp_path / "op.yaml")]) == 0


def test_a_sparse_daily_file_has_daily_bars():
    """A weekday file missing many days steps 3 days (Friday to Monday, or over a gap) more
    often than 1 day: its most frequent step read it as 3-day bars, and a shared account
    with a complete daily file was refused (the property test's seed 1508). The bar length
    is the shortest step that recurs; a rare shorter one (a stray stamp, a DST day) is not it."""
    days = pd.bdate_range("2024-01-01", periods=40)
    sparse = days[[0, 3, 4, 5, 10, 13, 15, 20, 25, 26, 30, 35, 36, 39]]
    steps = np.diff(sparse.as_unit("ns").asi8) // 86_400_000_000_000
    assert (steps >= 3).sum() > (steps == 1).sum()
    assert bar_length(sparse) == 86_400 * 10**9
    hourly = pd.date_range("2024-01-01", periods=200, freq="h")
    stray = hourly.append(pd.DatetimeIndex([hourly[50] + pd.Timedelta(minutes=1)])).sort_values()
    assert bar_length(stray) == 3_600 * 10**9
    daily = pd.date_range("2024-01-01", periods=60, freq="D")
    assert bar_length(daily.insert(1, daily[0] + pd.Timedelta(hours=23))) == 86_400 * 10**9
    # hunt55 F6: hourly stock bars on the clock hour after a 09:30 open (09:30, 10:00 .. 15:00)
    days = pd.bdate_range("2024-01-02", periods=60)
    on_the_hour = pd.DatetimeIndex([t for d in days for t in [d + pd.Timedelta(hours=9.5)] +
                                    [d + pd.Timedelta(hours=h) for h in range(10, 16)]])
    assert bar_length(on_the_hour) == 3_600 * 10**9


def test_an_illiquid_daily_file_joins_a_shared_account(tmp_path):
    """hunt91 F7: a daily file traded every other business day has no 1-day step at all: it
    was refused as "2-day bars" beside a complete daily file (the property test drew such a
    prefix). Dates without a time of day stepping less than a week are days; weekly bars
    beside daily ones are still refused."""
    days = pd.bdate_range("2020-01-01", "2020-03-31")
    assert bar_length(days[::2]) == 86_400 * 10**9
    assert bar_length(days[::2] + pd.Timedelta(hours=16)) == 86_400 * 10**9   # stamped at the close (hunt94 F8)
    assert bar_length(pd.date_range("2020-01-03", periods=20, freq="W-FRI")) == 7 * 86_400 * 10**9
    # hunt94 F7: a short window of weekly bars holding a holiday week steps 6 days: not daily
    holiday = pd.DatetimeIndex(["2020-03-20", "2020-03-27", "2020-04-03", "2020-04-09", "2020-04-17", "2020-04-24"])
    assert bar_length(holiday) == 6 * 86_400 * 10**9
    for sym, idx in {"DAILY": days, "SPARSE": days[::2]}.items():
        c = 50 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.02, len(idx))))
        pd.DataFrame({"date": idx.strftime("%Y-%m-%d"), "open": c, "high": c * 1.01, "low": c * 0.99,
                      "close": c}).to_csv(tmp_path / f"{sym}.csv", index=False)
    res = run_portfolio(STRATEGY, {"mode": "portfolio", "universe": {"path": str(tmp_path)}, "cash": 1_000})
    assert res.symbols == ["DAILY", "SPARSE"]
    weekly = pd.date_range("2020-01-03", "2020-03-27", freq="W-FRI")
    c = np.linspace(50, 60, len(weekly))
    pd.DataFrame({"date": weekly.strftime("%Y-%m-%d"), "open": c, "high": c, "low": c, "close": c}
                 ).to_csv(tmp_path / "SPARSE.csv", index=False)
    with pytest.raises(DataError, match="has 7-day bars but 'DAILY'"):
        run_portfolio(STRATEGY, {"mode": "portfolio", "universe": {"path": str(tmp_path)}, "cash": 1_000})


def test_a_short_window_of_weekly_bars_with_a_short_week_stays_weekly():
    """hunt95 F3: with a few weekly bars, one short week (9/11 2001 stamped on each week's
    last trading day: Fri 7 Sep -> Mon 10 Sep) was a "recurring" 3-day step at one time of
    day, read as daily bars with gaps, and the weekly file joined a daily one in a shared
    account (each weekly close seen days early). Bars mostly a week apart are not daily."""
    nine_eleven = pd.DatetimeIndex(["2001-08-24", "2001-08-31", "2001-09-07", "2001-09-10", "2001-09-21",
                                    "2001-09-28"])
    assert bar_length(nine_eleven) == 3 * 86_400 * 10**9
    golden_week = pd.DatetimeIndex(["2019-09-13", "2019-09-20", "2019-09-27", "2019-09-30", "2019-10-11"])
    assert bar_length(golden_week) == 3 * 86_400 * 10**9
    days = pd.bdate_range("2020-01-01", "2020-03-31")
    assert bar_length(days[::3]) == 86_400 * 10**9   # every third business day (steps 3 and 5): daily, as before


def test_close_stamps_on_a_daylight_saving_clock_are_daily_bars_with_gaps():
    """hunt95 F4: an illiquid daily file stamped at the New York close has two UTC times of
    day (21:00 in winter, 20:00 in summer): it was still refused as "2-day bars" beside a
    complete daily file, and a New York and a Tokyo illiquid file (each accepted alone
    before 8bf007e) could no longer share an account."""
    days = pd.bdate_range("2020-01-01", "2020-12-31")[::2]
    ny = (days + pd.Timedelta(hours=16)).tz_localize("America/New_York").tz_convert("UTC").tz_localize(None)
    assert len(np.unique(ny.as_unit("ns").asi8 % (86_400 * 10**9))) == 2
    assert bar_length(ny) == 86_400 * 10**9
    tokyo = (days + pd.Timedelta(hours=15)).tz_localize("Asia/Tokyo").tz_convert("UTC").tz_localize(None)
    assert bar_length(tokyo) == 86_400 * 10**9
    # a time of day wandering by more than a clock change: not one daily stamp
    wander = days + pd.to_timedelta((np.arange(len(days)) % 2) * 5, unit="h")
    assert bar_length(wander) != 86_400 * 10**9


def test_an_instrument_with_one_bar_in_the_window_is_measured_on_its_file(tmp_path):
    """hunt95 F6: a window holding one bar of a weekly file beside daily ones skipped the
    bar-length check (one bar has no length): the account marked the week's close at its
    stamp, days early, and sized the daily instruments' orders by it. Its whole file says
    how long its bars are."""
    days = pd.bdate_range("2020-01-01", "2020-03-31")
    weekly = pd.date_range("2020-01-03", "2020-03-27", freq="W-FRI")
    _write_bars(tmp_path, {"DAILY": days, "WEEKLY": weekly})
    op = {"mode": "portfolio", "universe": {"path": str(tmp_path)}, "cash": 1_000,
          "data": {"start": "2020-03-02", "end": "2020-03-06"}}   # one Friday: one weekly bar
    with pytest.raises(DataError, match="'WEEKLY' .* has 7-day bars but 'DAILY'"):
        run_portfolio(STRATEGY, op)


def test_crypto_candles_of_two_or_three_days_are_not_daily_bars(tmp_path):
    """hunt96 F2: 2-day and 3-day crypto candles (stamped at midnight on every weekday) were
    read as an illiquid instrument's daily bars and joined a daily file in a shared account
    (their close seen a day or two early). Daily bars with gaps skip days of the week a
    market closes on; candles of a market that never closes fall on all seven."""
    for days in (2, 3, 4):
        assert bar_length(pd.date_range("2021-01-01", periods=60, freq=f"{days}D")) == days * 86_400 * 10**9
    daily = pd.date_range("2021-01-01", "2021-03-31", freq="D")
    two = pd.date_range("2021-01-01", "2021-03-31", freq="2D")
    _write_bars(tmp_path, {"BTC": daily, "ETH2D": two})
    with pytest.raises(DataError, match="'ETH2D' .* has 2-day bars but 'BTC'"):
        run_portfolio(STRATEGY, {"mode": "portfolio", "universe": {"path": str(tmp_path)}, "cash": 1_000})
    with pytest.raises(DataError, match="'ETH2D' .* has 2-day bars but 'BTC'"):   # a window of three candles
        run_portfolio(STRATEGY, {"mode": "portfolio", "universe": {"path": str(tmp_path)}, "cash": 1_000,
                                 "data": {"start": "2021-02-01", "end": "2021-02-06"}})


def test_a_few_weekly_bars_in_the_window_are_measured_on_their_file(tmp_path):
    """hunt96 F4: two or three weekly bars in the window, one of a short week (a Friday, then
    the Monday after), read as daily bars with gaps and joined a daily file. With fewer than
    eight bars in the window, an instrument's bar length is its whole file's."""
    days = pd.bdate_range("2020-01-01", "2020-03-31")
    weekly = pd.DatetimeIndex([d for d in pd.date_range("2020-01-03", "2020-03-27", freq="W-FRI")
                               if d != pd.Timestamp("2020-01-24")] + [pd.Timestamp("2020-01-20")]).sort_values()
    _write_bars(tmp_path, {"DAILY": days, "WEEKLY": weekly})
    op = {"mode": "portfolio", "universe": {"path": str(tmp_path)}, "cash": 1_000,
          "data": {"start": "2020-01-09", "end": "2020-01-21"}}   # weekly bars 01-10, 01-17, 01-20
    with pytest.raises(DataError, match="'WEEKLY' .* has 7-day bars but 'DAILY'"):
        run_portfolio(STRATEGY, op)


def test_a_sparse_daily_file_refused_beside_a_daily_one_is_told_why(tmp_path):
    """hunt96 F3: a daily file with most days missing (traded on one day in six) reads as
    longer bars and is refused beside a complete one; the message said only that it had
    "2-day bars". It says how such a file reads, and what runs it."""
    days = pd.bdate_range("2020-01-01", "2020-12-31")
    sparse = days[np.random.default_rng(3).random(len(days)) < 0.15]
    _write_bars(tmp_path, {"DAILY": days, "SPARSE": sparse})
    with pytest.raises(DataError, match="a daily file with most days missing reads as longer bars"):
        run_portfolio(STRATEGY, {"mode": "portfolio", "universe": {"path": str(tmp_path)}, "cash": 1_000})
    # hunt98 F6: one day in eight reads as 7-day bars, and is told the same
    rarer = days[np.random.default_rng(3).random(len(days)) < 0.12]
    c = np.linspace(50, 60, len(rarer))
    pd.DataFrame({"date": rarer.strftime("%Y-%m-%d"), "open": c, "high": c * 1.01, "low": c * 0.99, "close": c}
                 ).to_csv(tmp_path / "SPARSE.csv", index=False)
    with pytest.raises(DataError, match="has 7-day bars .*a daily file with most days missing"):
        run_portfolio(STRATEGY, {"mode": "portfolio", "universe": {"path": str(tmp_path)}, "cash": 1_000})


def test_a_few_hourly_bars_of_a_file_that_was_daily_are_measured_in_the_window(tmp_path):
    """hunt98 F6: a file daily for years, then hourly; a window of fewer than eight hourly
    bars read the whole file (daily) and joined a daily file in a shared account, whose
    daily closes the hourly bars would then see hours early. Intraday bars in the window
    are measured there."""
    days = pd.bdate_range("2015-01-01", "2020-06-30")   # years of days: the hourly steps are rare in the file
    hours = pd.date_range("2020-06-22 09:00", "2020-06-30 16:00", freq="h")
    mixed = days[days < "2020-06-22"].append(hours[(hours.hour >= 9) & (hours.hour <= 16)])
    _write_bars(tmp_path, {"DAILY": days, "MIXED": mixed}, fmt="%Y-%m-%d %H:%M")
    op = {"mode": "portfolio", "universe": {"path": str(tmp_path)}, "cash": 1_000,
          "data": {"start": "2020-06-24", "end": "2020-06-24 13:00"}}   # a daily bar, five hourly ones
    with pytest.raises(DataError, match="'DAILY' .* has 1-day bars but 'MIXED' .* has 1-hour bars"):
        run_portfolio(STRATEGY, op)


def test_a_frame_where_a_config_wants_a_name_is_one_line():
    """hunt50 F5: a DataFrame as an instrument's source put its 15-line repr in the message."""
    d = mf.load_data("sp500_daily").iloc[-300:]
    with pytest.raises(ConfigError) as exc:
        mf.backtest(STRATEGY, {"name": "b", "instruments": [{"symbol": "A", "source": d}]})
    msg = str(exc.value)
    assert "\n" not in msg and "instruments[0].source" in msg and "(got a DataFrame)" in msg, msg


@pytest.mark.parametrize("at", ["00:00", "21:00"])
def test_a_shared_account_refuses_a_session_exit_whether_or_not_it_fires(at):
    # daily bars stamped 00:00: a session exit at 21:00 flags no bar, and was run as if it were
    # not there, while one at 00:00 was refused: whether a strategy ran depended on its data
    # (a walk-forward window, a shorter range), not on what it asks for (hunt99 F1)
    import yaml
    bp = yaml.safe_load(Path(STRATEGY).read_text())
    bp["workforce"]["planning_workers"]["size_planning"] = [
        {"instance_id": "z", "plugin": "fixed_fraction_sizer", "params": {"fraction": 0.3}}]
    bp["workforce"]["planning_workers"]["exit_planning"].append(
        {"instance_id": "q", "plugin": "session_exit", "params": {"at": at}})
    op = {"name": "p", "mode": "portfolio", "max_positions": 2, "data": {"start": "2010-01-01", "end": "2011-01-01"},
          "instruments": [{"symbol": "AAPL", "source": "us_stocks"}, {"symbol": "IBM", "source": "us_stocks"}],
          "cash": 10000}
    with pytest.raises(ConfigError, match=r"^<operation>: mode: portfolio: instrument 'AAPL': the strategy uses a session or "
                                          r"time-of-day exit.*run it with mode: independent$"):
        mf.backtest(bp, op)
    with pytest.raises(ConfigError, match="session or time-of-day exit"):
        mf.optimize_basket(bp, op, {"sma_1": {"fast": [5, 10], "slow": [30]}}, engine="batch")
    op["mode"] = "independent"
    del op["max_positions"]
    assert mf.backtest(bp, op).metrics["total_trades"] >= 0
