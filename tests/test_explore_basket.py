"""The explorer on a basket operation: an instrument selector (``portfolio`` and every
symbol), the portfolio view's numbers, and a symbol's ordinary explorer on its own run."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import metaflow_nb as mf
from metaflow_nb.errors import ConfigError
from metaflow_nb.notebook.explore import PORTFOLIO, BasketExplorer
from metaflow_nb.services.portfolio import run_portfolio

STRATEGY = "config/runs/sma_cross.yaml"
BASKET = {"name": "three", "universe": {"path": "us_stocks", "symbols": ["AAPL", "IBM", "MSFT"]},
          "data": {"start": "2012-01-01", "end": "2014-12-31"}, "commission": 0.001}
SHARED = dict(BASKET, name="three_shared", mode="portfolio", max_positions=1)


@pytest.fixture(scope="module")
def bex():
    ex = mf.explore(STRATEGY, BASKET, background=False)
    yield ex
    ex.close()


def test_a_basket_operation_gives_the_selector(bex):
    assert isinstance(bex, BasketExplorer)
    assert list(bex.selector.options) == [PORTFOLIO, "AAPL", "IBM", "MSFT"]
    assert bex.selector.value == PORTFOLIO and bex.current is None
    assert bex.body.children == (bex.portfolio_view,)
    assert bex.image.value[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_portfolio_view_shows_the_portfolio_run(bex):
    ref = run_portfolio(STRATEGY, BASKET)   # an independent run of the same basket
    pd.testing.assert_frame_equal(bex.portfolio.equity, ref.equity)
    rows = re.findall(r"<tr><th>([A-Z]+)</th>(.*?)</tr>", bex.breakdown_html.value)
    assert [s for s, _ in rows] == ref.symbols
    trades = {s: int(re.findall(r"<td>([^<]*)</td>", cells)[3]) for s, cells in rows}   # bars, first, last, trades
    assert trades == {s: len(r.trades) for s, r in ref.results.items()}
    total = (ref.equity["total"].iloc[-1] / ref.starting_cash - 1.0) * 100.0
    shown = re.search(r"Total return</th><td[^>]*>([-0-9.]+) %", bex.metrics_html.value).group(1)
    assert abs(float(shown) - total) <= 0.005 + 1e-9


def test_a_symbol_opens_its_single_run_explorer(bex):
    bex.selector.value = "IBM"
    ex = bex.current
    assert ex is bex.explorers["IBM"] and bex.body.children == (ex.widget,)
    single = bex.portfolio.results["IBM"]   # mode independent: the basket's IBM account is IBM's single run
    pd.testing.assert_frame_equal(ex.last_result.trades, single.trades)
    np.testing.assert_array_equal(ex.last_result.equity.to_numpy(), single.equity.to_numpy())
    # its controls run that instrument alone; the portfolio view keeps the blueprint's run
    before = bex.portfolio.metrics["total_trades"]
    ex.set_params({"sma_1.fast": 5})
    assert ex.run_count == 2 and ex.last_result.specs.params("sma_1")["fast"] == 5
    assert bex.portfolio.metrics["total_trades"] == before
    bex.select(PORTFOLIO)
    assert bex.selector.value == PORTFOLIO and bex.body.children == (bex.portfolio_view,)
    bex.select("IBM")
    assert bex.current is ex and ex.last_params["sma_1.fast"] == 5   # kept where it was left


def test_shared_account_view_and_bad_input():
    ex = mf.explore(STRATEGY, SHARED, background=False, run=False)
    try:
        b = ex.portfolio.breakdown()
        assert ex.portfolio.mode == "portfolio" and "skipped: max_positions" in ex.breakdown_html.value
        assert int(b["skipped_max_positions"].sum()) > 0
        with pytest.raises(ConfigError, match="'XOM': not in this basket"):
            ex.select("XOM")
    finally:
        ex.close()
    with pytest.raises(ConfigError, match="a basket operation names each instrument's data"):
        mf.explore(STRATEGY, BASKET, data="sp500_daily", background=False)
