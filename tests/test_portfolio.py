"""Portfolio operations, independent mode (issue #17 parts 1-3): one strategy over a basket."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import metaflow_nb as mf
from metaflow_nb.cli import main
from metaflow_nb.data.basket import basket_files
from metaflow_nb.errors import ConfigError, DataError
from metaflow_nb.services.portfolio import PortfolioResult

STRATEGY = "config/runs/sma_cross.yaml"
WINDOW = {"start": "2011-06-01", "end": "2013-03-01", "calendar": "exchange"}


def _single(symbol: str, commission: float = 0.001, pip: float = 0.01):
    """The single run the portfolio's account of ``symbol`` must equal, built as a user would."""
    op = {"name": "basket", "data": {"source": str(basket_files("us_stocks")[symbol]), **WINDOW},
          "instrument": {"symbol": symbol, "pip_size": pip}, "cash": 10_000, "commission": commission}
    return mf.backtest(STRATEGY, op)


@pytest.fixture(scope="module")
def basket() -> PortfolioResult:
    op = {"name": "basket", "data": WINDOW, "commission": 0.001,
          "instruments": [{"symbol": "IBM", "source": "us_stocks"},
                          {"symbol": "FB", "source": "us_stocks", "commission": 0.002},
                          {"symbol": "MSFT", "source": "us_stocks"}]}
    return mf.backtest(STRATEGY, op)


def test_one_instrument_is_the_single_run():
    res = mf.backtest(STRATEGY, {"name": "basket", "data": WINDOW, "commission": 0.001,
                                 "universe": {"path": "us_stocks", "symbols": ["IBM"]}})
    single = _single("IBM")
    acct = res.results["IBM"]
    pd.testing.assert_frame_equal(acct.trades, single.trades)
    assert acct.metrics == single.metrics
    pd.testing.assert_frame_equal(res.trades.drop(columns="symbol"), single.trades)
    # the portfolio's own metrics, computed from its total equity and trades, too
    assert res.metrics == single.metrics
    pd.testing.assert_series_equal(res.equity["total"], single.equity.rename("total"), check_freq=False)


def test_independent_is_the_n_single_runs(basket):
    for sym, commission in (("IBM", 0.001), ("FB", 0.002), ("MSFT", 0.001)):
        single = _single(sym, commission)
        pd.testing.assert_frame_equal(basket.results[sym].trades, single.trades)
        assert basket.results[sym].metrics == single.metrics
        mine = basket.trades[basket.trades["symbol"] == sym].drop(columns="symbol").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, single.trades.sort_values("entry_time", kind="stable")
                                      .reset_index(drop=True))


def test_union_calendar_and_aggregates(basket):
    own = {s: r.equity.index for s, r in basket.results.items()}
    union = own["IBM"].union(own["FB"]).union(own["MSFT"])
    assert basket.index.equals(union)
    fb = basket.equity["FB"]
    before = basket.index < own["FB"][0]
    assert before.sum() > 200 and (fb[before] == 10_000).all()  # no bar yet: its cash, no trade
    # no fill of an instrument at a timestamp where it has no bar
    for sym, idx in own.items():
        t = basket.trades[basket.trades["symbol"] == sym]
        assert t["entry_time"].isin(idx).all() and t["exit_time"].isin(idx).all()
    total = basket.equity[["IBM", "FB", "MSFT"]].sum(axis=1)
    np.testing.assert_array_equal(basket.equity["total"].to_numpy(), total.to_numpy())
    b = basket.breakdown()
    assert b["trades"].sum() == len(basket.trades) == basket.metrics["total_trades"]
    final = basket.equity["total"].iloc[-1]
    assert b["pnl"].sum() == pytest.approx(final - 30_000, rel=1e-12)
    assert b["contribution_pct"].sum() == pytest.approx(basket.metrics["total_return_pct"], rel=1e-9)
    assert basket.metrics["final_equity"] == pytest.approx(final, rel=1e-12)


def test_symbol_columns_and_correlation(basket):
    assert basket.trades.columns[0] == basket.journal.columns[0] == "symbol"
    assert set(basket.journal["symbol"]) == {"IBM", "FB", "MSFT"}
    assert basket.journal["time"].is_monotonic_increasing
    corr = basket.correlation()
    # independently: returns of each account's equity at its own day closes
    rets = {s: r.equity.pct_change().fillna(r.equity.iloc[0] / 10_000 - 1) for s, r in basket.results.items()}
    expected = pd.DataFrame(rets).corr()
    pd.testing.assert_frame_equal(corr.loc[expected.index, expected.columns], expected, check_names=False,
                                  atol=1e-12)
    assert "independent" in repr(basket) and "<table" in basket._repr_html_()


def test_close_only_fills_at_closes():
    res = mf.backtest(STRATEGY, {"name": "c", "data": {"start": "2021-01-01"},
                                 "universe": {"path": "sp500_20_close", "symbols": ["KO", "XOM"],
                                              "prices": "close_only"}})
    closes = {s: pd.read_csv(basket_files("sp500_20_close")[s], index_col=0, parse_dates=True)["Close"]
              for s in ("KO", "XOM")}
    t = res.trades
    assert len(t) > 10
    for _, row in t.iterrows():
        assert row["entry_price"] == closes[row["symbol"]].loc[row["entry_time"]]
        assert row["exit_price"] == closes[row["symbol"]].loc[row["exit_time"]]


def test_cli_json_and_bad_input(tmp_path, capsys):
    assert main(["backtest", "--strategy", STRATEGY, "--operation", "config/operations/us_stocks_basket.yaml",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "independent" and len(doc["symbols"]) == 6
    assert doc["trades"] == sum(v["trades"] for v in doc["instruments"].values())

    def fails(op_text: str) -> str:
        p = tmp_path / "op.yaml"
        p.write_text(op_text)
        assert main(["backtest", "--strategy", STRATEGY, "--operation", str(p)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err
        return err

    # hunt106 F1: each refusal of the basket names its key, not "<root>"
    where = f"metaflow-nb: error: {tmp_path / 'op.yaml'}: "
    assert fails("instruments: [{symbol: IBM, source: us_stocks}, {symbol: MSFT, source: us_stocks}, "
                 "{symbol: IBM, source: us_stocks}]\n").startswith(
        f"{where}instruments[2].symbol: symbol 'IBM' is listed twice")
    err = fails("instruments: [{symbol: IBM, source: us_stocks}, {symbol: ibm, source: us_stocks}]\n")
    assert err.startswith(f"{where}instruments[1].symbol: symbols 'IBM' and 'ibm' differ only in case"), err
    assert fails("max_positions: 2\nuniverse: {path: us_stocks}\n").startswith(
        f"{where}max_positions: max_positions caps the positions of a shared account")
    assert fails("rank: score\nuniverse: {path: us_stocks}\n").startswith(f"{where}rank: rank orders the setups")
    assert fails("delisted: all\nuniverse: {path: us_stocks}\n").startswith(f"{where}delisted: delisted frees")
    assert fails("instruments: []\n").startswith(f"{where}instruments: is empty")
    err = fails("instruments: [{symbol: XX, source: missing.csv}]\n")
    assert "instrument 'XX'" in err and "'missing.csv': no such file beside the operation" in err
    # the config and its key, as a single run's data.source names them
    err = fails("instruments: [{symbol: IBM, source: us_stocks}, {symbol: XX, source: missing.csv}]\n")
    assert err.startswith(f"metaflow-nb: error: {tmp_path / 'op.yaml'}: instruments[1].source: instrument 'XX': ")
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "BAD.csv").write_text("date,open,high,low,close\n2024-01-02,1,2,1,oops\n")
    err = fails("universe: {path: u}\n")
    assert err.startswith(f"metaflow-nb: error: {tmp_path / 'op.yaml'}: universe.path: instrument 'BAD': ")
    (tmp_path / "aware.csv").write_text("date,open,high,low,close\n2024-01-02T10:00:00+02:00,1,2,1,2\n")
    (tmp_path / "naive.csv").write_text("date,open,high,low,close\n2024-01-02 10:00:00,1,2,1,2\n")
    err = fails("instruments: [{symbol: A, source: aware.csv}, {symbol: N, source: naive.csv}]\n")
    assert "mixed time zones" in err and "'N'" in err and "naive.csv" in err
    assert "not both" in fails("instruments: [{symbol: A, source: us_stocks}]\nuniverse: {path: us_stocks}\n")
    assert "'ZZ' not in 'us_stocks'" in fails("universe: {path: us_stocks, symbols: [ZZ]}\n")
    with pytest.raises(ConfigError, match="data=, start= and end= are for single runs"):
        mf.backtest(STRATEGY, {"universe": {"path": "us_stocks"}}, data="sp500_daily")
    with pytest.raises(DataError, match="instrument 'KO'.*close_only"):
        mf.backtest(STRATEGY, {"universe": {"path": "sp500_20_close", "symbols": ["KO"]}})


def test_plots_draw_what_the_result_holds(basket):
    """hunt104 L5: as a single run's ``plot()``, a basket's draws the drawdown (%) of its
    total underneath (the README's table promised it), takes ``figsize``/``dpi``/``title``
    and refuses an unknown kind with a ConfigError (it raised ValueError; ``figsize=`` was a
    TypeError)."""
    from metaflow_nb.services.plots import drawdown_pct

    fig = basket.plot()
    top, middle, bottom = fig.axes
    assert [line.get_label() for line in top.get_lines()] == basket.symbols
    np.testing.assert_array_equal(middle.get_lines()[0].get_ydata(), basket.equity["total"].to_numpy())
    assert bottom.get_ylabel() == "Drawdown (%)"
    dd = drawdown_pct(basket.equity["total"])
    assert dd.min() < 0 and f"max {dd.min():.2f} %" in [t.get_text() for t in bottom.texts]
    sized = basket.plot(figsize=(6, 4), dpi=80, title="mine")
    assert tuple(sized.get_size_inches()) == (6, 4) and sized.dpi == 80 and sized.axes[0].get_title() == "mine"
    bars = basket.plot("contributions").axes[0].patches
    np.testing.assert_allclose([p.get_height() for p in bars], basket.breakdown()["contribution_pct"].to_numpy())
    assert tuple(basket.plot("contributions", figsize=(5, 3)).get_size_inches()) == (5, 3)
    with pytest.raises(ConfigError, match="unknown plot kind 'pie'; kinds: 'equity', 'contributions'"):
        basket.plot("pie")


def test_clocks_are_converted_to_utc(tmp_path):
    (tmp_path / "aware.csv").write_text("date,open,high,low,close\n" + "".join(
        f"2024-01-{d:02d}T10:00:00+02:00,1,5,1,{1 + d % 3}\n" for d in range(2, 30)))
    (tmp_path / "naive.csv").write_text("date,open,high,low,close\n" + "".join(
        f"2024-01-{d:02d} 10:00:00,1,5,1,{1 + d % 2}\n" for d in range(2, 30)))
    op = {"instruments": [{"symbol": "A", "source": str(tmp_path / "aware.csv")},
                          {"symbol": "N", "source": str(tmp_path / "naive.csv"), "timezone": "Europe/Berlin"}]}
    res = mf.backtest(STRATEGY, op, sma_1__fast=2, sma_1__slow=4)
    assert res.results["A"].equity.index[0] == pd.Timestamp("2024-01-02 08:00")  # +02:00 -> UTC
    assert res.results["N"].equity.index[0] == pd.Timestamp("2024-01-02 09:00")  # Berlin winter: UTC+1
    assert len(res.index) == 2 * 28  # the union: two bars a day, an hour apart
    # a bundled sample with its own clock, as a single run reads it
    fx = mf.backtest(STRATEGY, {"data": {"end": "2022-10-20"}, "instruments": [
        {"symbol": "EURUSD", "source": "eurusd_15m", "timezone": "Europe/Athens", "pip_size": 0.0001}]})
    assert fx.index.equals(mf.load_data("eurusd_15m", end="2022-10-20", timezone="Europe/Athens").index)


def test_backtest_out_writes_the_same_files_for_a_run_and_a_basket(tmp_path, capsys):
    import json as _json
    from metaflow_nb.cli import main
    for name, op, extra in (("single", "config/operations/sp500_daily.yaml", []),
                            ("basket", "config/operations/us_stocks_basket.yaml", ["breakdown", "correlation"])):
        out = tmp_path / name
        assert main(["backtest", "--strategy", "config/runs/sma_cross.yaml", "--operation", op, "--out", str(out),
                     "--trades-csv", str(out / "t.csv"), "--json"]) == 0
        doc = _json.loads(capsys.readouterr().out)
        assert list(doc["outputs"]) == ["trades_csv", "trades", "journal", "equity", *extra, "result"]
        for key, path in doc["outputs"].items():
            assert Path(path).is_file() and Path(path).stat().st_size > 0, key
        result = _json.loads(Path(doc["outputs"]["result"]).read_text())
        assert result["metrics"]["total_trades"] == len(pd.read_csv(doc["outputs"]["trades"]))


@pytest.mark.parametrize("operation", ["config/operations/us_stocks_basket.yaml",
                                       "config/operations/sp500_20_portfolio.yaml"])
def test_costs_line_says_what_open_positions_left_out(operation):
    """The commission paid sums the closed trades; a position still open after its
    instrument's last bar paid its entry commission too, which only the equity shows."""
    from metaflow_nb.services.portfolio import run_portfolio

    res = run_portfolio(STRATEGY, operation)
    held = {s for s in res.symbols
            if (res.results[s].position.iloc[-1] != 0 if res.mode == "independent"
                else res.basket.records.position[res.symbols.index(s)][res.basket.own_at[res.symbols.index(s)][-1]])}
    assert res.open_at_end() == len(held) > 0
    paid = res.trades["commission"].sum()
    assert res.costs_text().endswith(f"; commission paid {paid:,.2f} by closed trades ({len(held)} positions open "
                                     f"at the end)")
