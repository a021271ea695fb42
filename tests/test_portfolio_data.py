"""Bundled baskets and how an instrument file is read (issue #17 part 5)."""
from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from metaflow_nb.data.basket import basket_files, list_baskets, load_instrument
from metaflow_nb.data.loader import SAMPLES_DIR
from metaflow_nb.errors import DataError


def test_bundled_baskets_have_ten_or_more_instruments_with_licences():
    files = {b: basket_files(b) for b in list_baskets()}
    assert sum(len(f) for f in files.values()) >= 10
    assert list(files["us_stocks"]) == ["AAPL", "FB", "GOOG", "IBM", "MSFT", "NASDAQ"]
    assert len(files["sp500_20_close"]) == 20
    assert "public domain" in (SAMPLES_DIR / "us_stocks" / "LICENSE.md").read_text().lower()
    assert "Kevin Sheppard" in (SAMPLES_DIR / "us_stocks" / "NASDAQ.LICENSE.md").read_text()
    assert "BSD 3-Clause" in (SAMPLES_DIR / "sp500_20_close" / "LICENSE").read_text()
    readme = (SAMPLES_DIR / "README.md").read_text()
    for name in list_baskets():
        assert f"`{name}`" in readme
    total = sum(p.stat().st_size for f in files.values() for p in f.values())
    assert total < 3 * 2**20, total


def test_ohlcv_file_read_as_published():
    path = basket_files("us_stocks")["IBM"]
    raw = pd.read_csv(path)  # the published columns, read independently of the loader
    bars, aware = load_instrument(path, "IBM")
    assert aware is False
    assert len(bars) == len(raw) == 3270
    np.testing.assert_array_equal(bars["close"].to_numpy(), raw["Close"].to_numpy())
    np.testing.assert_array_equal(bars["low"].to_numpy(), raw["Low"].to_numpy())


def test_close_only_needs_its_fill_mode_and_makes_no_range():
    path = basket_files("sp500_20_close")["KO"]
    with pytest.raises(DataError, match=r"instrument 'KO': .*KO\.csv\.gz: has a close column but no open.*close_only"):
        load_instrument(path, "KO")
    bars, _ = load_instrument(path, "KO", prices="close_only", start="2020-01-01")
    raw = pd.read_csv(path, index_col=0, parse_dates=True).loc["2020-01-01":]
    np.testing.assert_array_equal(bars["close"].to_numpy(), raw["Close"].to_numpy())
    for col in ("open", "high", "low"):
        np.testing.assert_array_equal(bars[col].to_numpy(), bars["close"].to_numpy())
    assert bars.attrs["prices"] == "close_only"
    with pytest.raises(DataError, match=r"instrument 'IBM': .*has open/high/low columns"):
        load_instrument(basket_files("us_stocks")["IBM"], "IBM", prices="close_only")


def test_universe_of_a_folder_or_glob(tmp_path):
    for sym in ("B", "A"):
        (tmp_path / f"{sym}.csv").write_text("date,open,high,low,close\n2024-01-02,1,2,1,2\n")
    (tmp_path / "README.md").write_text("not data")
    assert list(basket_files(str(tmp_path))) == ["A", "B"]
    assert list(basket_files(str(tmp_path / "A*"))) == ["A"]
    with gzip.open(tmp_path / "A.csv.gz", "wt") as fh:
        fh.write("date,close\n2024-01-02,1\n")
    with pytest.raises(DataError, match="symbol 'A' has two files"):
        basket_files(str(tmp_path))
    with pytest.raises(DataError, match="universe 'nowhere': not a bundled basket"):
        basket_files("nowhere")


def test_universe_symbols_differing_only_in_case_are_refused(tmp_path):
    # tickers are case-blind, and on a case-blind file system the two files are one
    for sym in ("ibm", "IBM", "MSFT"):
        (tmp_path / f"{sym}.csv").write_text("date,open,high,low,close\n2024-01-02,1,2,1,2\n")
    with pytest.raises(DataError, match=r"symbols 'IBM' and 'ibm' differ only in case .*IBM\.csv and .*ibm\.csv"):
        basket_files(str(tmp_path))
    (tmp_path / "ibm.csv").unlink()
    assert list(basket_files(str(tmp_path))) == ["IBM", "MSFT"]


def test_missing_or_invalid_instrument_file_names_instrument_and_file(tmp_path):
    with pytest.raises(DataError, match=r"^instrument 'X': .*missing\.csv: file not found$"):
        load_instrument(tmp_path / "missing.csv", "X")
    bad = tmp_path / "bad.csv"
    bad.write_text("date,open,high,low,close\n2024-01-02,1,2,1,oops\n")
    with pytest.raises(DataError, match=r"^instrument 'Y': .*bad\.csv"):
        load_instrument(bad, "Y")
    aware = tmp_path / "aware.csv"
    aware.write_text("date,open,high,low,close\n2024-01-02T10:00:00+02:00,1,2,1,2\n")
    bars, is_aware = load_instrument(aware, "Z")
    assert is_aware is True and bars.index[0] == pd.Timestamp("2024-01-02 08:00")


def test_an_instrument_without_bars_in_the_operations_dates_sits_the_run_out(tmp_path):
    """hunt43 F3: data.start after an instrument's file ends (a delisting in a
    survivorship-free universe), or data.end before it begins (FB, listed in May 2012),
    refused the whole basket; walk-forward windows let such an instrument sit out. Now the
    run does too, named in a warning, as a basket without it; none left is refused."""
    import warnings

    from metaflow_nb.cli import main
    from metaflow_nb.services.portfolio import SatOutWarning, run_portfolio
    strategy = "config/runs/sma_cross.yaml"
    op = {"universe": {"path": "us_stocks", "symbols": ["AAPL", "FB", "IBM"]}, "data": {"start": "2010-01-01",
                                                                                        "end": "2012-03-01"}}
    with pytest.warns(SatOutWarning, match=r"FB has no bar between 2010-01-01 and 2012-03-01: it sits this run out"):
        res = run_portfolio(strategy, op)
    assert res.symbols == ["AAPL", "IBM"]
    without = run_portfolio(strategy, {**op, "universe": {"path": "us_stocks", "symbols": ["AAPL", "IBM"]}})
    assert res.metrics == without.metrics and res.starting_cash == without.starting_cash
    none = {"universe": {"path": "us_stocks", "symbols": ["FB"]}, "data": {"end": "2012-03-01"}}
    with pytest.raises(DataError, match="no instrument has a bar between"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SatOutWarning)
            run_portfolio(strategy, none)
    p = tmp_path / "op.yaml"
    p.write_text("universe: {path: us_stocks, symbols: [FB]}\ndata: {end: 2012-03-01}\n")
    assert main(["backtest", "--strategy", strategy, "--operation", str(p)]) == 2


def test_an_instruments_clock_refuses_a_worker_zone_as_its_single_run_does(tmp_path):
    """hunt48 F2: an instrument read on its own clock (timezone: Europe/Berlin) took a
    session worker's timezone param (Asia/Tokyo), which its single run refuses (the times
    read twice): the basket was not its single runs."""
    import yaml

    from metaflow_nb.cli import main
    from metaflow_nb.errors import ConfigError
    from metaflow_nb.services.portfolio import run_portfolio
    idx = pd.date_range("2024-01-01", periods=300, freq="h")
    close = 1.1 + np.cumsum(np.random.default_rng(3).normal(0, 0.001, len(idx)))
    frame = pd.DataFrame({"Date": idx.strftime("%Y-%m-%d %H:%M"), "Open": close, "High": close + 0.001,
                          "Low": close - 0.001, "Close": close, "Volume": 1.0})
    frame.to_csv(tmp_path / "a.csv", index=False)
    strat = yaml.safe_load(open("config/runs/sma_cross.yaml"))
    strat["workforce"]["planning_workers"]["exit_planning"].append(
        {"instance_id": "session_1", "plugin": "session_exit", "params": {"at": "16:00", "timezone": "Asia/Tokyo"}})
    op = {"name": "clk", "instruments": [{"symbol": "A", "source": str(tmp_path / "a.csv"),
                                          "timezone": "Europe/Berlin"}]}
    single = {"name": "a", "data": {"source": str(tmp_path / "a.csv"), "timezone": "Europe/Berlin"}}
    for run in (lambda: mf_backtest(strat, single), lambda: run_portfolio(strat, op)):
        with pytest.raises(ConfigError, match="would read the timestamps again"):
            run()
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(strat))
    (tmp_path / "op.yaml").write_text(yaml.safe_dump(op))
    assert main(["backtest", "--strategy", str(tmp_path / "s.yaml"), "--operation", str(tmp_path / "op.yaml")]) == 2
    strat["workforce"]["planning_workers"]["exit_planning"][-1]["params"].pop("timezone")   # UTC: both run
    assert run_portfolio(strat, op).results["A"].metrics == mf_backtest(strat, single).metrics


def mf_backtest(*args, **kwargs):
    import metaflow_nb as mf
    return mf.backtest(*args, **kwargs)


def test_a_baskets_timeframe_refusal_names_the_instruments_file(capsys):
    """hunt48 F4: a higher timeframe finer than a basket instrument's bars named 'a
    DataFrame' (the single run names its data); the instrument's file is named now."""
    from metaflow_nb.cli import main
    assert main(["backtest", "--strategy", "config/runs/ict_htf_bias_strategy.yaml", "--operation",
                 "config/operations/us_stocks_basket.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert "timeframe 4h is finer than the data's bars (" in err and "AAPL.csv.gz, 1440 minutes apart)" in err


def test_a_close_only_file_may_name_its_close_adj_close_and_its_errors_name_that_column(tmp_path):
    """hunt68 F3: 'Adj Close' stands in for a missing close everywhere else but was refused
    here ('no close column'), and a NaN close was reported in column 'open', which the
    file does not have (open, high and low are made from the close)."""
    days = pd.bdate_range("2024-01-01", periods=30)
    close = np.linspace(10, 12, 30)
    pd.DataFrame({"Date": days, "Adj Close": close}).to_csv(tmp_path / "A.csv", index=False)
    bars, _ = load_instrument(tmp_path / "A.csv", "A", prices="close_only")
    assert (bars["close"].to_numpy() == close).all() and (bars["open"] == bars["close"]).all()
    gaps = close.copy()
    gaps[:5] = np.nan
    pd.DataFrame({"Date": days, "Close": gaps}).to_csv(tmp_path / "B.csv", index=False)
    with pytest.raises(DataError, match=r"B\.csv: row 1 \(2024-01-01\): column 'Close' is missing \(NaN\)"):
        load_instrument(tmp_path / "B.csv", "B", prices="close_only")


def test_a_close_only_file_read_alone_says_how_to_read_it():
    """hunt72 F1: load_data on a bundled close-only basket file said which columns were
    missing and nothing of prices: close_only."""
    import metaflow_nb as mf

    with pytest.raises(DataError, match=r"missing required columns 'open', 'high', 'low'; columns found: 'Date', "
                                        r"'Close'; a file of closes only: a basket operation reads it with prices: "
                                        r"close_only"):
        mf.load_data(basket_files("sp500_20_close")["KO"])
