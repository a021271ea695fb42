"""``mf.describe_data`` / ``metaflow-nb data``: how a file is read and what its bars look
like, read exactly as ``load_data`` reads it."""
from __future__ import annotations

import json

import pandas as pd
import pytest

import metaflow_nb as mf
from metaflow_nb.cli import main
from metaflow_nb.errors import DataError

MT5 = ("<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n"
       "2024.01.05\t23:45:00\t1.10370\t1.10400\t1.10300\t1.10350\t120\t0\t8\n"
       "2024.01.08\t00:00:00\t1.10350\t1.10420\t1.10340\t1.10410\t95\t0\t8\n"
       "2024.01.08\t00:15:00\t1.10410\t1.10450\t1.10400\t1.10440\t80\t0\t8\n")


def test_a_metatrader_export_on_a_broker_clock(tmp_path):
    (tmp_path / "mt5.csv").write_text(MT5)
    d = mf.describe_data(tmp_path / "mt5.csv", timezone="broker_ny+7")
    assert (d.kind, d.layout) == ("csv", "tab-separated, a header row")
    assert (d.time_column, d.date_format) == ("<DATE> + <TIME>", "%Y.%m.%d %H:%M:%S")
    assert d.columns == {"open": "<OPEN>", "high": "<HIGH>", "low": "<LOW>", "close": "<CLOSE>",
                         "volume": "<TICKVOL>"}
    assert d.clock == "broker_ny+7: naive times converted to UTC"
    # UTC+2 in January: Friday 23:45 is 21:45 UTC; Monday 00:00 is Sunday 22:00 UTC
    assert (str(d.first), str(d.last), d.bars, d.spacing) == ("2024-01-05 21:45:00", "2024-01-07 22:15:00", 3, "15min")
    assert d.largest_gap == pd.Timedelta("2 days 00:15:00") and str(d.largest_gap_after) == "2024-01-05 21:45:00"
    assert d.weekdays == {"Mon": 0, "Tue": 0, "Wed": 0, "Thu": 0, "Fri": 1, "Sat": 0, "Sun": 2}
    assert "volume is the tick volume (<TICKVOL>)" in d.notes
    assert d.fingerprint == mf.load_data(tmp_path / "mt5.csv", timezone="broker_ny+7").attrs["fingerprint"]


def test_the_bundled_samples():
    sp = mf.describe_data("sp500_daily", calendar="exchange")
    assert (sp.bars, sp.spacing, sp.periods_per_year, sp.date_format) == (5031, "1d", 252.0, "%m/%d/%Y")
    assert sp.calendar_hint == "exchange looks right: weekday bars only"
    # the longest closure: the four days after 11 September 2001
    assert (sp.largest_gap, str(sp.largest_gap_after)) == (pd.Timedelta(days=7), "2001-09-10 00:00:00")
    assert sum(sp.weekdays.values()) == 5031 and sp.weekdays["Sat"] == sp.weekdays["Sun"] == 0
    fx = mf.describe_data("eurusd_15m")
    assert fx.calendar_hint.startswith("fx_24x5 looks right") and fx.columns["volume"] == "Tickvol"
    # read as UTC its weeks start at Monday 00:00: the broker clock shows (samples README, "Clocks")
    assert any(n.startswith("its weeks start at Monday 00:00") for n in fx.notes)
    athens = mf.describe_data("eurusd_15m", timezone="Europe/Athens", calendar="fx_24x5")
    assert athens.weekdays["Sun"] > 0 and not any("Monday 00:00" in n for n in athens.notes)
    assert athens.periods_per_year == 260.0


def test_weekly_bars_say_a_year_is_their_own_count(tmp_path):
    days = mf.load_data("sp500_daily")
    weekly = days.resample("W-FRI").agg({"open": "first", "high": "max", "low": "min", "close": "last",
                                          "volume": "sum"}).dropna()
    weekly.to_csv(tmp_path / "weekly.csv")
    d = mf.describe_data(tmp_path / "weekly.csv", calendar="exchange")
    assert d.spacing == "7d" and 51.5 < d.periods_per_year < 52.5
    assert d.calendar_hint == ("bars coarser than a day: under any data.calendar a year is their own count "
                               f"({d.periods_per_year:.1f})")
    assert f"  a year       {d.periods_per_year:.1f} bars, data.calendar exchange" in repr(d).splitlines()


def test_intraday_exchange_hours_are_counted_in_words(tmp_path):
    from metaflow_nb.services.data_description import _calendar_hint
    idx = pd.date_range("2024-01-01 14:00", periods=5, freq="D")
    counts = {k: 0 for k in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")}
    assert _calendar_hint(idx, counts, True) == "exchange looks right: weekday bars only, in 1 hour of the day"


def test_epoch_instants_and_a_file_without_a_header(tmp_path):
    rows = "".join(f"{1704067200000 + k * 3_600_000},1,2,0.5,1.5,{k}\n" for k in range(24 * 8))
    (tmp_path / "btc.csv").write_text("open_time,open,high,low,close,volume\n" + rows)
    d = mf.describe_data(tmp_path / "btc.csv", timezone="Europe/Berlin", date_column="open_time")
    assert (d.date_format, d.spacing, d.largest_gap) == ("epoch milliseconds", "1h", None)
    assert d.clock == "instants (epoch numbers): read as UTC; timezone Europe/Berlin does not apply"
    assert d.calendar_hint == "crypto_24x7 looks right: bars on every day of the week"
    (tmp_path / "EURUSD15.csv").write_text("2024.01.02,00:00,1.1037,1.1040,1.1030,1.1035,120\n")
    d = mf.describe_data(tmp_path / "EURUSD15.csv")
    assert d.layout == "comma-separated, no header: date, time, open, high, low, close, volume"
    assert (d.time_column, d.spacing, d.largest_gap) == ("date + time", "-", None)


def test_binance_klines_are_named_as_such(tmp_path, capsys):
    header = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
              "taker_buy_quote_volume,ignore\n")
    rows = "".join(f"{1735689600000000 + k * 60_000_000},1,2,0.5,1.5,{k},{1735689659999999 + k * 60_000_000},"
                   f"{k * 1.5},{k},0,0,0\n" for k in range(5))   # spot, 2025: microseconds
    (tmp_path / "BTCUSDT-1m-2025-01.csv").write_text(rows)
    d = mf.describe_data(tmp_path / "BTCUSDT-1m-2025-01.csv")
    assert d.layout.startswith("comma-separated, no header: Binance klines (open_time, open, high, low, close, "
                               "volume, close_time, ")
    assert (d.time_column, d.date_format, d.spacing) == ("open_time", "epoch microseconds", "1min")
    assert d.columns == {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume"}
    assert d.clock == "instants (epoch numbers): read as UTC" and str(d.first) == "2025-01-01 00:00:00"
    # futures files of some periods have a header row of these names
    (tmp_path / "futures.csv").write_text(header + rows)
    f = mf.describe_data(tmp_path / "futures.csv")
    assert (f.layout, f.time_column, f.fingerprint) == ("comma-separated, a header row: Binance klines", "open_time",
                                                        d.fingerprint)
    assert main(["data", str(tmp_path / "futures.csv")]) == 0
    assert "read as      csv: comma-separated, a header row: Binance klines" in capsys.readouterr().out


def test_cli_prints_the_report_or_one_json_object_and_refuses_bad_input(tmp_path, capsys):
    (tmp_path / "mt5.csv").write_text(MT5)
    assert main(["data", str(tmp_path / "mt5.csv")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(str(tmp_path / "mt5.csv")) and "time         <DATE> + <TIME>" in out
    assert main(["data", "sp500_daily", "--calendar", "exchange", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["bars"] == 5031 and doc["largest_gap"] == "7 days 00:00:00" and doc["periods_per_year"] == 252.0
    for argv, words in ((["data", "eurusd_15m", "--calendar", "fx"], "eurusd_15m: calendar: unknown calendar 'fx'"),
                        (["data", str(tmp_path / "none.csv")], "none.csv: file not found"),
                        (["data", "sp500_daily", "--timezone", "Mars/Olympus"], "--timezone 'Mars/Olympus': unknown")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
    with pytest.raises(DataError, match="no header row, and its 3 columns match no layout"):
        (tmp_path / "three.csv").write_text("2024-01-02,1,2\n")
        mf.describe_data(tmp_path / "three.csv")


def test_the_readme_shows_what_the_command_prints():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split("$ metaflow-nb data eurusd_15m\n", 1)[1].split("```", 1)[0]
    shown = [line[2:] for line in block.rstrip().splitlines()]
    assert shown == repr(mf.describe_data("eurusd_15m")).splitlines()


def test_a_clock_beside_dates_says_the_dates_stay(tmp_path):
    """A file of dates names trading days: a declared clock leaves them (README "Data
    clocks"), and the description says so rather than 'converted to UTC'."""
    days = pd.bdate_range("2024-01-02", periods=10)
    (tmp_path / "d.csv").write_text("date,open,high,low,close\n" + "".join(
        f"{d:%Y-%m-%d},1,2,0.5,1.5\n" for d in days))
    d = mf.describe_data(tmp_path / "d.csv", timezone="Asia/Tokyo")
    assert d.clock == "Asia/Tokyo: dates without a time of day stay on their dates (trading days)"
    assert d.first == days[0]


def test_slashed_dates_that_read_either_way_are_named(tmp_path, capsys):
    """hunt46 F2: a short UK export (02/01/2024 .. 03/01/2024, days 2-3 January) loads
    month-first, a month apart per day, as the README says slashed dates do; nothing said
    the file could mean either. The data command says so when no day is above 12."""
    rows = [f"0{d}/01/2024 {h:02d}:00,1.1,1.2,1.0,1.1,5" for d in (2, 3) for h in range(12)]
    (tmp_path / "uk.csv").write_text("Date,Open,High,Low,Close,Volume\n" + "\n".join(rows) + "\n")
    d = mf.describe_data(tmp_path / "uk.csv")
    assert str(d.first) == "2024-02-01 00:00:00"   # month-first, as documented
    note = [n for n in d.notes if n.startswith("slashed dates")]
    assert note == ["slashed dates read month-first (02/01/2024 is 1 February 2024); no date's day is above 12, so "
                    "a day-first file would load as well, on other dates: write ISO dates (2024-01-02) if its days "
                    "come first"]
    assert main(["data", str(tmp_path / "uk.csv")]) == 0
    assert "slashed dates read month-first" in capsys.readouterr().out
    # a day above 12 tells: no note (the bundled S&P 500 file is slashed too)
    (tmp_path / "us.csv").write_text("Date,Open,High,Low,Close,Volume\n" + "\n".join(rows) + "\n"
                                     "03/13/2024 00:00,1.1,1.2,1.0,1.1,5\n")
    assert not any(n.startswith("slashed") for n in mf.describe_data(tmp_path / "us.csv").notes)
    assert not any(n.startswith("slashed") for n in mf.describe_data("sp500_daily").notes)


def test_a_file_of_closes_only_is_described_as_a_basket_reads_it(capsys):
    """hunt109 F4: the data command refused the bundled sp500_20_close files (and an MT4
    'date, close' export) with 'missing required columns', though a basket reads them
    with prices: close_only; it was the README's way to check a file before a run."""
    from metaflow_nb.data.basket import basket_files

    path = basket_files("sp500_20_close")["KO"]
    d = mf.describe_data(path)
    assert d.columns["close"] and d.columns["open"] is None and d.bars > 1000
    assert any(n.startswith("closes only: a basket operation reads this file with prices: close_only") for n in d.notes)
    assert main(["data", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["columns"]["open"] is None


def test_a_file_whose_numbers_read_either_way_says_which_way_it_was_read(tmp_path, capsys):
    """hunt109 F2: a ';' file of '151.234' prices and '1,234' volumes reads as a decimal
    comma (prices 151234, volume 1.234) or a decimal point (151.234, 1234): nothing in it
    tells. It is read as a ';' file's numbers usually are (a decimal comma), and the data
    command now says what that made of a price, as it does for a file of 16.751s."""
    rows = [f"2024-01-{d:02d} 00:00;151.234;151.250;151.200;151.240;1,234" for d in range(2, 12)]
    (tmp_path / "jpy.csv").write_text("Date;Open;High;Low;Close;Volume\n" + "\n".join(rows) + "\n")
    d = mf.describe_data(tmp_path / "jpy.csv")
    assert d.layout.endswith("; 151.234 read as 151234 (a point grouping thousands beside a decimal comma, as in "
                             "1,234), not as a decimal point: nothing in the file tells which"), d.layout
