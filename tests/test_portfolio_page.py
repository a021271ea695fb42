"""The portfolio page (``res.report()`` of a basket, ``metaflow-nb report STRATEGY
--operation BASKET``): the numbers on it, read back from the HTML, equal the result's;
the trades CSV has every trade with its symbol; bad input exits 2 with one line."""
from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from metaflow_nb.services.portfolio import run_portfolio

ROOT = Path(__file__).resolve().parents[1]
STRATEGY = str(ROOT / "config/runs/sma_cross.yaml")
SHARED = {"mode": "portfolio", "max_positions": 2, "cash": 100_000,
          "universe": {"path": "us_stocks", "symbols": ["AAPL", "FB", "IBM", "MSFT"]},
          "data": {"start": "2012-01-01", "end": "2014-12-31"}, "name": "four_shared"}
INDEPENDENT = {"universe": {"path": "us_stocks", "symbols": ["AAPL", "FB", "IBM"]},
               "data": {"start": "2012-01-01", "end": "2014-12-31"}, "name": "three_independent"}


class _Tables(HTMLParser):
    """Every table's rows as lists of cell texts, by the table's class."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._cls: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._cls = dict(attrs).get("class") or ""
            self.tables.setdefault(self._cls, [])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._cls].append(self._row)
            self._row = None


def _number(text: str) -> float:
    return float(re.sub(r"[^0-9eE.+-]", "", text.replace("\u2212", "-")))


@pytest.fixture(scope="module", params=["portfolio", "independent"])
def written(request, tmp_path_factory):
    res = run_portfolio(STRATEGY, SHARED if request.param == "portfolio" else INDEPENDENT)
    page = res.report(tmp_path_factory.mktemp(request.param), top=10)
    parser = _Tables()
    parser.feed(page.read_text(encoding="utf-8"))
    return res, page, parser.tables


def _close(text: str, value: float, decimals: int) -> None:
    """``text`` is ``value`` rounded to the decimals it shows (at least ``decimals`` of
    them when the formatter shows fewer, as exposure's one)."""
    if text == "n/a":
        assert not np.isfinite(value), (text, value)
        return
    shown = len(text.split(".")[1].rstrip(" %")) if "." in text else 0
    assert shown >= min(decimals, 1), text
    assert abs(_number(text) - value) <= 0.51 * 10.0 ** -shown + 1e-9, (text, value)


def test_breakdown_and_metrics_on_the_page_equal_the_result(written):
    res, page, tables = written
    b = res.breakdown()
    head, *rows = tables["mf-breakdown"]
    assert [r[0] for r in rows] == res.symbols
    col = {h: i for i, h in enumerate(head)}
    for r in rows:
        sym = r[0]
        # the pnl holds the open positions at the last close beside the closed trades' count: its header
        # says so (hunt103 F7: AAPL's 85 trades summed 12,126.36 beside a pnl of 12,984.43)
        assert int(r[col["closed trades"]]) == b.at[sym, "trades"] == (res.trades["symbol"] == sym).sum()
        _close(r[col["pnl (open at last close)"]], b.at[sym, "pnl"], 2)
        _close(r[col["contribution"]], b.at[sym, "contribution_pct"], 2)
        _close(r[col["exposure"]], b.at[sym, "exposure_pct"], 2)
        if res.mode == "portfolio":
            rej = res.journal[res.journal["symbol"] == sym]   # skipped or rejected setups carry the reason
            assert int(r[col["skipped: max_positions"]]) == (rej["reason"] == "MAX_POSITIONS").sum()
            assert int(r[col["skipped: cash"]]) == (rej["reason"] == "INSUFFICIENT_CASH").sum()
    # contributions add up to the portfolio's return, computed here from the total equity
    total = (res.equity["total"].iloc[-1] / res.starting_cash - 1.0) * 100.0
    assert sum(_number(r[col["contribution"]]) for r in rows) == pytest.approx(total, abs=0.01 * len(rows))
    metrics = {r[0]: r[1] for r in tables["mf-metrics"]}
    _close(metrics["Total return"], total, 2)
    assert int(_number(metrics["Total trades"])) == len(res.trades)
    if res.mode == "portfolio":
        assert any(int(r[col["skipped: max_positions"]]) for r in rows)   # the constraint binds on this basket


def test_correlation_and_trades_on_the_page_equal_the_result(written):
    res, page, tables = written
    head, *rows = tables["mf-correlation"]
    daily = res.daily_returns()
    for r in rows:
        for other, cell in zip(head[1:], r[1:]):
            both = daily[list(dict.fromkeys([r[0], other]))].dropna().to_numpy()
            with np.errstate(invalid="ignore", divide="ignore"):   # an instrument that never traded: n/a
                expected = np.corrcoef(both[:, 0], both[:, -1])[0, 1]
            _close(cell, expected, 2)
    thead, *trows = tables["mf-trades"]
    assert len(trows) == min(10, len(res.trades))
    top = res.trades.loc[res.trades["pnl"].abs().sort_values(ascending=False, kind="stable").index[:10]]
    assert [r[0] for r in trows] == list(top["symbol"])
    for r, pnl in zip(trows, top["pnl"]):
        _close(r[thead.index("pnl")], pnl, 2)
    csv = pd.read_csv(page.with_name(page.stem + "_trades.csv"))
    assert len(csv) == len(res.trades) and list(csv["symbol"]) == list(res.trades["symbol"])
    np.testing.assert_allclose(csv["pnl"].to_numpy(), res.trades["pnl"].to_numpy(), rtol=1e-12)
    assert "<script" not in page.read_text(encoding="utf-8")


def test_report_cli_bad_input_exits_2_with_one_line(tmp_path):
    import subprocess
    import sys
    bad = tmp_path / "basket.yaml"
    bad.write_text("mode: portfolio\nuniverse: {path: %s}\n" % (tmp_path / "missing"))
    out = subprocess.run([sys.executable, "-m", "metaflow_nb.cli", "report", STRATEGY, "--operation", str(bad),
                          "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "universe.path" in lines[0] and str(bad) in lines[0], lines


def test_pages_of_two_runs_on_one_basket_do_not_overwrite_each_other(tmp_path):
    # it was <basket>-<mode>.html: a second strategy's page replaced the first's
    strategy = yaml.safe_load(Path(STRATEGY).read_text())
    strategy["workforce"]["opportunity_workers"][0]["params"] = {"fast": 5, "slow": 20}
    first, second = run_portfolio(STRATEGY, INDEPENDENT), run_portfolio(strategy, INDEPENDENT)
    pages = [r.report(tmp_path) for r in (first, second)]
    assert pages[0] != pages[1] and all(p.is_file() for p in pages)
    assert pages[0].name == f"three_independent-independent-{first.basket_specs.run_id[:8]}.html"
    assert first.report(tmp_path) == pages[0]   # the same run: the same page


def test_a_shared_accounts_run_id_reads_its_rules():
    """hunt36 F3: four runs of one basket (independent; shared with max_positions 5, 2, and 2
    ranked by score) had four results and one run id, so their pages took one file name and
    the second report replaced the first. A shared account's rules are part of its id now;
    an independent basket's id is still its instruments' run ids."""
    from metaflow_nb.services.portfolio import run_portfolio

    base = {"universe": {"path": "us_stocks", "symbols": ["AAPL", "IBM", "MSFT"]}, "data": {"start": "2012-01-01"}}
    ids = {}
    for key, extra in {"independent": {"mode": "independent"},
                       "max5": {"mode": "portfolio", "max_positions": 5},
                       "max2": {"mode": "portfolio", "max_positions": 2},
                       "max2score": {"mode": "portfolio", "max_positions": 2, "rank": "score"}}.items():
        ids[key] = run_portfolio("config/runs/sma_cross.yaml", {**base, **extra}).basket_specs
    assert len({bs.run_id for bs in ids.values()}) == 4
    indep = ids["independent"]
    assert indep.run_id == hashlib.sha256("|".join(i["run_id"] for i in indep.instruments).encode()).hexdigest()[:16]
    # the same rules again: the same id
    again = run_portfolio("config/runs/sma_cross.yaml", {**base, "mode": "portfolio", "max_positions": 2})
    assert again.basket_specs.run_id == ids["max2"].run_id


def test_a_large_basket_has_a_page_and_figures_of_a_readable_size(tmp_path):
    """hunt37 F6: at 500 instruments the page embedded a 500 x 500 table of numbers (3.4 MB
    of 5.1), the equity legend covered its plot and res.plot("contributions") drew a PNG
    25,200 pixels wide. Past their limits the page and figures summarise."""
    from portfolio_helpers import write_basket

    from metaflow_nb.services import portfolio_page as pp

    write_basket(tmp_path, seed=3, n_inst=70, n_days=300, drop=0.02)
    res = run_portfolio("config/runs/sma_cross.yaml", {"universe": {"path": str(tmp_path)}, "mode": "independent"})
    assert len(res.symbols) == 70 > pp.MATRIX_MAX and 70 > pp.LABELS_MAX
    page = res.report(tmp_path / "page.html").read_text()
    assert page.count("<tr>") < 200   # the breakdown's 70 rows, 10 pairs, metrics and trades; not 70 x 70 cells
    assert "most correlated pairs" in page and "mean correlation over the 2,415 pairs" in page
    bars = res.plot("contributions")
    assert len(bars.axes[0].patches) == pp.BARS_MAX and bars.get_size_inches()[0] <= 11.0
    assert "largest and smallest" in bars.axes[0].get_title()
    eq = res.plot("equity")
    assert all(ax.get_legend() is None for ax in eq.axes)
    # a small basket keeps its legend, its bars and its whole matrix
    small = run_portfolio("config/runs/sma_cross.yaml", {"universe": {"path": "us_stocks"}, "data": {"start": "2012-01-01"}})
    assert small.plot("equity").axes[0].get_legend() is not None
    assert len(small.plot("contributions").axes[0].patches) == len(small.symbols)
    assert "most correlated pairs" not in pp.correlation_table_html(small.correlation())


def test_the_page_shows_minutes_and_says_why_a_flat_instrument_has_no_correlation(tmp_path):
    """hunt47 F7: the Calendar row read '2012-01-03 00:00:00 .. ' (README: YYYY-MM-DD HH:MM),
    and an instrument that never traded showed n/a on its own diagonal without a word."""
    op = {**INDEPENDENT, "universe": {"path": "us_stocks", "symbols": ["AAPL", "FB"]},
          "data": {"start": "2011-01-01", "end": "2012-06-08"}, "name": "flat_fb"}
    res = run_portfolio(STRATEGY, op)   # FB's 15 bars (from its listing) warm no 20-bar average up
    assert (res.trades["symbol"] == "FB").sum() == 0 and (res.trades["symbol"] == "AAPL").sum() > 0
    import html
    text = html.unescape(res.report(tmp_path).read_text(encoding="utf-8"))
    idx = res.equity.index
    assert f"union of the instruments' bars: {len(idx)} bars, 2011-01-03 00:00 .. 2012-06-08 00:00" in text
    assert ("n/a for FB: its strategy returns never moved (no trade), and a constant has no correlation"
            in text)


def test_more_instruments_than_colours_are_told_apart():
    """hunt104 F3: a basket's 11th to 20th instruments were drawn in the colours and solid
    lines of its 1st to 10th (the variants' plots were fixed so by hunt59 F2)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from metaflow_nb.services.portfolio_page import draw_curves

    symbols = [f"S{k:02d}" for k in range(20)]
    curves = pd.DataFrame(np.arange(60.0).reshape(3, 20), columns=symbols)
    ax = Figure().subplots()
    draw_curves(ax, curves, symbols, ncol=5)
    styles = [(ln.get_color(), ln.get_linestyle()) for ln in ax.get_lines()]
    assert len(styles) == 20 and len(set(styles)) == 20


def test_a_basket_of_one_is_one_instrument_and_a_page_of_one_trade_is_one_trade():
    """hunt104 L1, L2: '1 instruments' in the basket's repr and chart title; 'trades 1-1 of 1'."""
    res = run_portfolio(STRATEGY, {"universe": {"path": "us_stocks", "symbols": ["IBM"]},
                                   "data": {"start": "2012-01-01", "end": "2012-12-31"}})
    assert ", 1 instrument, " in repr(res) and "1 instrument &middot;" in res._repr_html_()
    assert "1 instrument," in res.plot().axes[0].get_title()
    import metaflow_nb as mf
    one = mf.backtest(STRATEGY, data="sp500_daily", start="2018-01-01", end="2018-12-31")
    last = len(one.trades)
    assert f": trade {last} of {last} (page" in one.plot("trades", page=-1, trades_per_page=1).axes[0].get_title()
