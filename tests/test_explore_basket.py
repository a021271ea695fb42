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


# ---------------------------------------------------------------- the portfolio view's controls

def test_the_portfolio_view_has_controls_that_rerun_the_basket():
    ex = mf.explore(STRATEGY, BASKET, background=False)
    try:
        pe = ex.portfolio_explorer
        assert pe.widget is ex.portfolio_view and set(pe.controls) >= {"sma_1.fast", "sma_1.slow"}
        # the blueprint's run is shown as it was made, not run again
        assert pe.last_result is ex.portfolio and pe.baseline is ex.portfolio and pe.run_count == 1
        pe.set_params({"sma_1.fast": 5})
        ref = run_portfolio(STRATEGY, BASKET, sma_1={"fast": 5})   # an independent run
        pd.testing.assert_frame_equal(pe.last_result.equity, ref.equity)
        assert pe.last_result.metrics == ref.metrics and pe.run_count == 2 and pe.last_error is None
        rows = re.findall(r"<tr><th>([A-Z]+)</th>(.*?)</tr>", pe.breakdown_html.value)
        trades = {s: int(re.findall(r"<td>([^<]*)</td>", cells)[3]) for s, cells in rows}
        assert trades == {s: len(r.trades) for s, r in ref.results.items()}
        assert trades != {s: len(r.trades) for s, r in ex.portfolio.results.items()}
        assert "trades on 3 instruments" in pe.status.value
        # the blueprint's run stays the reference column and the grey line
        assert pe.baseline is ex.portfolio
        # a combination the params refuse: the status says so, the last valid run stays
        pe.set_params({"sma_1.fast": 40, "sma_1.slow": 40})
        assert pe.last_error is not None and "invalid" in pe.status.value
        pd.testing.assert_frame_equal(pe.last_result.equity, ref.equity)
        pe.reset()
        assert pe.last_result is ex.portfolio and pe.last_error is None
    finally:
        ex.close()


def test_shared_account_controls_and_accounts_drawn_on_request():
    ex = mf.explore(STRATEGY, SHARED, background=False)
    try:
        pe = ex.portfolio_explorer
        assert pe.accounts_image.layout.display == "none"
        pe.draw_accounts()
        assert pe.accounts_image.value[:8] == b"\x89PNG\r\n\x1a\n" and pe.accounts_image.layout.display is None
        pe.set_params({"sma_1.slow": 50})
        ref = run_portfolio(STRATEGY, SHARED, sma_1={"slow": 50})
        assert pe.last_result.mode == "portfolio" and pe.last_result.metrics == ref.metrics
        np.testing.assert_array_equal(pe.last_result.basket.records.equity, ref.basket.records.equity)
        # the accounts drawn belong to the run before: hidden until drawn again
        assert pe.accounts_image.layout.display == "none"
        assert "skipped: max_positions" in pe.breakdown_html.value
        # the status counts the trades the trades table lists
        assert f"{len(pe.last_result.trades)} trades on" in pe.status.value
    finally:
        ex.close()


def test_basket_views_say_where_a_space_without_the_blueprints_values_starts():
    space = {"sma_1": {"fast": [5, 10, 20], "slow": [50, 100]}}  # the blueprint's slow is 20
    ex = mf.explore(STRATEGY, BASKET, space, background=False)
    try:
        pe = ex.portfolio_explorer
        assert pe.moved_from_blueprint == ["sma_1.slow 20 \u2192 50 (options 50, 100)"]
        assert "sma_1.slow 20 &rarr; 50" in pe.header.value and pe.reset_button.description == "Reset to start"
        ref = run_portfolio(STRATEGY, BASKET, sma_1={"slow": 50})
        assert pe.last_result.metrics == ref.metrics  # the start run, not the blueprint's
        ibm = ex.explorer_for("IBM")
        assert f"start run <code>{ibm.last_result.run_id}</code>" in ibm.header.value
        assert "&lt;DataFrame&gt;" not in ibm.header.value and "IBM" in ibm.header.value
    finally:
        ex.close()


def test_a_title_and_run_false_reach_every_view_of_a_basket():
    # explore's documented options: the title heads the portfolio view and each symbol's
    # explorer; picking a symbol shows its run (picking is asking for it)
    ex = mf.explore(STRATEGY, BASKET, title="my basket", run=False, background=False)
    try:
        assert "<b>my basket</b>" in ex.portfolio_explorer.header.value
        ex.selector.value = "IBM"
        assert ex.body.children == (ex.explorers["IBM"].widget,)
        ibm = ex.explorers["IBM"]
        assert "<b>my basket: IBM</b>" in ibm.header.value
        assert ibm.last_result is not None and ibm.last_result.run_id == ex.portfolio.results["IBM"].run_id
    finally:
        ex.close()


def test_the_portfolio_views_costs_are_the_run_shown():
    # the costs line (commission paid) belongs to the run on screen, and the status names its run id
    space = {"sma_1": {"fast": [5, 10, 20], "slow": [50, 100]}}  # the blueprint's slow is 20: starts at 50
    ex = mf.explore(STRATEGY, BASKET, space, background=False)
    try:
        pe = ex.portfolio_explorer
        start = run_portfolio(STRATEGY, BASKET, sma_1={"slow": 50})
        assert start.costs_text() != ex.portfolio.costs_text()
        assert start.costs_text() in _unescaped(pe.breakdown_html.value)
        assert ex.portfolio.costs_text() not in _unescaped(pe.header.value + pe.breakdown_html.value)
        assert f"<code>{start.basket_specs.run_id}</code>" in pe.status.value
        pe.controls["sma_1.fast"].value = 5
        moved = run_portfolio(STRATEGY, BASKET, sma_1={"fast": 5, "slow": 50})
        assert moved.costs_text() in _unescaped(pe.breakdown_html.value)
        assert f"<code>{moved.basket_specs.run_id}</code>" in pe.status.value
    finally:
        ex.close()


def _unescaped(text: str) -> str:
    import html
    return html.unescape(text)


def test_a_basket_explorer_takes_params_as_a_single_one_does():
    """hunt116 F4, F5: set_params, current_params, controls and last_result were missing on a
    basket (AttributeError, no word of portfolio_explorer); an unknown key was a bare
    KeyError and the nested form opt.best_params has was refused."""
    op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
    ex = mf.explore("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [20, 30]}},
                    background=False)
    try:
        assert ex.controls is ex.portfolio_explorer.controls
        ex.set_params({"sma_1": {"fast": 5, "slow": 30}})
        assert ex.current_params() == {"sma_1.fast": 5, "sma_1.slow": 30}
        assert ex.last_result.metrics == run_portfolio("config/runs/sma_cross.yaml", op, sma_1__fast=5,
                                                       sma_1__slow=30).metrics
        ex.select("IBM")
        ex.set_params(sma_1__fast=10)
        assert ex.last_result.specs.params("sma_1")["fast"] == 10 and ex.controls is ex.explorers["IBM"].controls
        with pytest.raises(ConfigError, match=r"^no control sma_1.nope; controls: sma_1.fast, sma_1.slow$"):
            ex.set_params({"sma_1.nope": 1})
    finally:
        ex.close()
